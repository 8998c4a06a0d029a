//! A coordinator node: the Raft group wired to its stores, serving the
//! catalog through [`spoor_common::Catalog`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, SnapshotPolicy};
use spoor_common::TenantId;
use spoor_common::catalog::ListingInfo;
use spoor_common::catalog::{
    Catalog, CatalogError, CatalogFile, CatalogStatus, ChangeOutcome, ChangePage, CommitBatch,
    CommitOutcome, FileQuery, FileRemoval, FileSwap, SourceCheckpoint,
};
use spoor_common::catalog_client::GrpcCatalog;
use spoor_common::config::CoordinatorConfig;
use spoor_common::control::{
    ClusterStatus, ControlClient, CoordinatorReplica, Heartbeat, HeartbeatReply, MemberStatus,
    RuleSet, ShardCommit, TenantRecord, TokenRecord,
};

use crate::control_state::{ControlOp, ControlOutcome};
use crate::log_store::LogStore;
use crate::network::{GrpcRaftNetwork, NetworkFaults};
use crate::raft_types::{Command, Op, Outcome, Reply, TypeConfig};
use crate::scheduler::Liveness;
use crate::state_machine::StateMachine;
use spoor_common::auth::{AuthChannel, Credential};

/// How long a write forwarded to the leader may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long taking a backup (on the leader) or committing a restore (one
/// entry holding the whole state) may take.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(300);

/// How long sending one snapshot chunk to a peer may take.
const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 60_000;

/// Why a coordinator could not start.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The Raft folder could not be created.
    #[error("cannot create the raft folder {path}: {source}")]
    CreateDir {
        /// The folder.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The log database could not be opened.
    #[error("cannot open the raft log {path}: {source}")]
    OpenLog {
        /// The log file.
        path: String,
        /// The cause.
        source: Box<redb::DatabaseError>,
    },
    /// The log file opened but its contents are damaged; the node refuses to serve.
    #[error(
        "the raft log {path} is damaged: {reason}; the node will not serve from it (restore it, or remove the node's folder and let it rejoin from its peers)"
    )]
    CorruptLog {
        /// The log file.
        path: String,
        /// What is wrong and where.
        reason: String,
    },
    /// The state machine snapshot could not be read.
    #[error("cannot open the state machine in {path}: {source}")]
    OpenStateMachine {
        /// The snapshot file.
        path: String,
        /// The cause.
        source: Box<openraft::StorageError<u64>>,
    },
    /// openraft refused the configuration.
    #[error("invalid raft configuration: {0}")]
    RaftConfig(#[from] openraft::ConfigError),
    /// Raft failed to start or initialize.
    #[error("raft failed to start: {0}")]
    Start(String),
    /// No leader was elected in time.
    #[error("no raft leader after {0:?}")]
    NoLeader(Duration),
}

/// Voters, learners and leader of the coordinator group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Voting members.
    pub voters: Vec<u64>,
    /// Learners (catching up, not voting).
    pub learners: Vec<u64>,
    /// The leader, if known.
    pub leader_id: Option<u64>,
}

enum MembershipChange {
    Add { id: u64, url: String },
    Remove { id: u64 },
}

type MembershipResult<T> = Result<T, RaftError<u64, ClientWriteError<u64, BasicNode>>>;

/// Runs a membership change, waiting (bounded) while an earlier change is
/// still being committed: joint consensus allows one change at a time.
async fn retry_in_progress<T, F, Fut>(mut change: F) -> MembershipResult<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = MembershipResult<T>>,
{
    let deadline = std::time::Instant::now() + FORWARD_TIMEOUT * 3;
    loop {
        match change().await {
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                openraft::error::ChangeMembershipError::InProgress(_),
            ))) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other.map(|_| ()),
        }
    }
}

fn membership_error(what: &str, e: impl std::fmt::Display) -> CatalogError {
    CatalogError::Unavailable {
        reason: format!("{what}: {e}"),
    }
}

/// A running coordinator node.
#[derive(Clone)]
pub struct CoordinatorNode {
    id: u64,
    write_timeout: Duration,
    member_timeout: Duration,
    election_timeout_max_ms: u64,
    heartbeat_interval_ms: u64,
    raft: Raft<TypeConfig>,
    state: StateMachine,
    /// Clients for the last known leader, reused across forwarded calls so a
    /// follower does not open a connection per commit.
    leader_client: Arc<std::sync::Mutex<Option<(String, LeaderClients)>>>,
    /// What this node, when leader, has heard from members (monotonic clock).
    liveness: Arc<std::sync::Mutex<Liveness>>,
    faults: NetworkFaults,
    /// Presented to the other coordinators (the cluster secret).
    credential: Credential,
    /// How `https://` peers are reached (`[tls]`).
    tls: spoor_common::tls::PeerTls,
    stopped: Arc<std::sync::atomic::AtomicBool>,
    /// Flips to true at shutdown, ending open catalog watches.
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Clients of one leader address.
#[derive(Clone)]
struct LeaderClients {
    catalog: GrpcCatalog,
    control: ControlClient,
    channel: AuthChannel,
}

impl std::fmt::Debug for CoordinatorNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorNode")
            .field("id", &self.id)
            .finish()
    }
}

impl CoordinatorNode {
    /// Opens a single-node coordinator in `dir` and waits until it leads
    /// (standalone, tests).
    pub async fn start(
        id: u64,
        dir: &std::path::Path,
        config: &CoordinatorConfig,
    ) -> Result<Self, CoordinatorError> {
        let node = Self::open(id, BTreeMap::new(), dir, config).await?;
        node.wait_for_leader(Duration::from_millis(config.election_timeout_max_ms * 10))
            .await?;
        Ok(node)
    }

    /// Opens the stores in `dir` and starts Raft. On first start the node
    /// initializes the cluster with `members` (id → gRPC URL; every initial
    /// member does so with the same set, which openraft allows), or as a
    /// single node when `members` is empty. Serve [`Self::raft_service`] before
    /// waiting for a leader.
    pub async fn open(
        id: u64,
        members: BTreeMap<u64, String>,
        dir: &std::path::Path,
        config: &CoordinatorConfig,
    ) -> Result<Self, CoordinatorError> {
        Self::open_with_faults(id, members, dir, config, NetworkFaults::default()).await
    }

    /// [`Self::open`], with faults injected into every message this node
    /// sends to other coordinators (tests of partitions, loss and delay).
    pub async fn open_with_faults(
        id: u64,
        members: BTreeMap<u64, String>,
        dir: &std::path::Path,
        config: &CoordinatorConfig,
        faults: NetworkFaults,
    ) -> Result<Self, CoordinatorError> {
        std::fs::create_dir_all(dir).map_err(|source| CoordinatorError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
        let log_path = dir.join("log.redb");
        let log = LogStore::open(&log_path).map_err(|e| CoordinatorError::OpenLog {
            path: log_path.display().to_string(),
            source: Box::new(e),
        })?;
        let entries = log
            .verify()
            .map_err(|reason| CoordinatorError::CorruptLog {
                path: log_path.display().to_string(),
                reason,
            })?;
        tracing::debug!(entries, path = %log_path.display(), "raft log verified");
        let state = StateMachine::open(dir).map_err(|e| CoordinatorError::OpenStateMachine {
            path: StateMachine::snapshot_file(dir).display().to_string(),
            source: Box::new(e),
        })?;
        let raft_config = openraft::Config {
            cluster_name: "spoor".into(),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_after_entries),
            // Per snapshot chunk (3 MiB, about 12 MiB as JSON): openraft's
            // 200 ms default is too short for a large catalog's snapshot,
            // which a joining coordinator then never finishes receiving.
            install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
            max_in_snapshot_log_to_keep: config.log_kept_after_snapshot,
            ..Default::default()
        }
        .validate()?;
        let network = GrpcRaftNetwork::new(
            id,
            Duration::from_millis(config.election_timeout_min_ms),
            faults.clone(),
            config.peer_credential.clone(),
            config.peer_tls.clone(),
        );
        let raft = Raft::new(id, Arc::new(raft_config), network, log, state.clone())
            .await
            .map_err(|e| CoordinatorError::Start(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| CoordinatorError::Start(e.to_string()))?;
        if !initialized && !config.join {
            let members: BTreeMap<u64, BasicNode> = if members.is_empty() {
                BTreeMap::from([(
                    id,
                    BasicNode {
                        addr: String::new(),
                    },
                )])
            } else {
                members
                    .into_iter()
                    .map(|(id, addr)| (id, BasicNode { addr }))
                    .collect()
            };
            raft.initialize(members)
                .await
                .map_err(|e| CoordinatorError::Start(e.to_string()))?;
        }
        tracing::info!(node_id = id, dir = %dir.display(), "coordinator started");
        let write_timeout = Duration::from_millis(config.write_timeout_ms);
        let node = CoordinatorNode {
            id,
            write_timeout,
            member_timeout: Duration::from_millis(config.member_timeout_ms),
            election_timeout_max_ms: config.election_timeout_max_ms,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            raft,
            state,
            leader_client: Arc::default(),
            liveness: Arc::default(),
            faults,
            credential: config.peer_credential.clone(),
            tls: config.peer_tls.clone(),
            stopped: Arc::default(),
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
        };
        tokio::spawn(
            node.clone()
                .run_scheduler(Duration::from_millis(config.scheduler_interval_ms)),
        );
        tokio::spawn(node.clone().run_usage_report(USAGE_REPORT_INTERVAL));
        Ok(node)
    }

    /// Waits until the group has a leader and returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, CoordinatorError> {
        let metrics = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .map_err(|_| CoordinatorError::NoLeader(timeout))?;
        let leader = metrics
            .current_leader
            .ok_or(CoordinatorError::NoLeader(timeout))?;
        tracing::info!(node_id = self.id, leader, "raft leader known");
        Ok(leader)
    }

    /// Adds a started, uninitialized coordinator: as a learner until it has
    /// caught up, then as a voter. Forwarded to the leader from a follower.
    pub async fn add_node(&self, id: u64, url: String) -> Result<Membership, CatalogError> {
        if self.tls.0.is_some() && url.starts_with("http://") {
            return Err(CatalogError::Invalid {
                reason: format!(
                    "url {url:?} is http:// but this cluster uses TLS ([tls]): the cluster secret \
                     would cross the network in clear text; give the coordinator's https:// URL"
                ),
            });
        }
        let node = BasicNode { addr: url.clone() };
        match retry_in_progress(|| self.raft.add_learner(id, node.clone(), true)).await {
            Ok(()) => {}
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                return self
                    .forward_membership(f.leader_node, MembershipChange::Add { id, url })
                    .await;
            }
            Err(e) => return Err(membership_error("adding a learner", e)),
        }
        let change = openraft::ChangeMembers::AddVoterIds(std::collections::BTreeSet::from([id]));
        retry_in_progress(|| self.raft.change_membership(change.clone(), false))
            .await
            .map_err(|e| membership_error("promoting to voter", e))?;
        Ok(self.membership())
    }

    /// Removes a coordinator from the group. Forwarded to the leader from a follower.
    pub async fn remove_node(&self, id: u64) -> Result<Membership, CatalogError> {
        let change = openraft::ChangeMembers::RemoveVoters(std::collections::BTreeSet::from([id]));
        match retry_in_progress(|| self.raft.change_membership(change.clone(), false)).await {
            Ok(()) => Ok(self.membership()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                self.forward_membership(f.leader_node, MembershipChange::Remove { id })
                    .await
            }
            Err(e) => Err(membership_error("removing a voter", e)),
        }
    }

    /// Clients for the leader at `addr`, reused while the leader stays.
    fn leader_clients(&self, addr: &str) -> Result<LeaderClients, CatalogError> {
        let mut cached = self
            .leader_client
            .lock()
            .map_err(|_| CatalogError::Internal {
                reason: "leader client lock poisoned".into(),
            })?;
        if let Some((cached_addr, clients)) = cached.as_ref()
            && cached_addr == addr
        {
            return Ok(clients.clone());
        }
        let channel = lazy_channel(addr, FORWARD_TIMEOUT, &self.credential, &self.tls)?;
        let clients = LeaderClients {
            catalog: GrpcCatalog::connect_lazy_with_tls(
                addr,
                FORWARD_TIMEOUT,
                self.tls.0.as_ref(),
            )?
            .with_credential(self.credential.clone()),
            control: ControlClient::connect_lazy_with_tls(
                addr,
                FORWARD_TIMEOUT,
                self.tls.0.as_ref(),
            )?
            .with_credential(self.credential.clone()),
            channel,
        };
        *cached = Some((addr.to_string(), clients.clone()));
        Ok(clients)
    }

    /// Clients for the leader these metrics name.
    fn current_leader_clients(
        &self,
        m: &openraft::RaftMetrics<u64, BasicNode>,
    ) -> Result<LeaderClients, CatalogError> {
        let leader = m
            .current_leader
            .and_then(|l| m.membership_config.membership().get_node(&l).cloned());
        self.forward_to(m.current_leader, leader)
    }

    /// Clients for the leader named in a forward-to-leader answer, unless
    /// injected faults cut this node off from it.
    fn forward_to(
        &self,
        leader_id: Option<u64>,
        leader: Option<BasicNode>,
    ) -> Result<LeaderClients, CatalogError> {
        if let Some(l) = leader_id
            && self.faults.is_cut(self.id, l)
        {
            return Err(CatalogError::Unavailable {
                reason: format!("node {}: leader {l} unreachable (injected fault)", self.id),
            });
        }
        let addr = self.leader_addr(leader)?;
        self.leader_clients(&addr)
    }

    /// The gRPC URL of the leader named in a forward-to-leader answer.
    fn leader_addr(&self, leader: Option<BasicNode>) -> Result<String, CatalogError> {
        leader
            .map(|n| n.addr)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| CatalogError::Unavailable {
                reason: format!(
                    "node {} is not the leader and no leader is known yet",
                    self.id
                ),
            })
    }

    /// This node's Raft id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Stops this node from starting elections for `hold` (0: allows them
    /// again now). Part of a leader transfer; lifts itself, so a transfer
    /// whose leader dies midway cannot leave the group without elections.
    pub fn hold_elections(&self, hold: Duration) {
        if hold.is_zero() {
            self.raft.runtime_config().elect(true);
            return;
        }
        self.raft.runtime_config().elect(false);
        let raft = self.raft.clone();
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            raft.runtime_config().elect(true);
        });
    }

    /// Starts an election on this node now (leader transfer).
    pub async fn elect(&self) -> Result<(), CatalogError> {
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| CatalogError::Unavailable {
                reason: format!("node {}: cannot start an election: {e}", self.id),
            })
    }

    /// Hands leadership to `target`, a caught-up voter: the other voters
    /// hold their elections, the leader stops its heartbeats until the
    /// followers' leader lease lapses, then `target` stands for election.
    /// Forwarded to the leader from a follower. Under a steady write load
    /// the replication traffic keeps the lease alive and the transfer may
    /// time out; the error says so and leadership stays where it was.
    pub async fn transfer_leader(&self, target: u64) -> Result<Membership, CatalogError> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        if m.current_leader != Some(self.id) {
            let clients = self.current_leader_clients(&m)?;
            let reply =
                spoor_proto::v1::cluster_service_client::ClusterServiceClient::new(clients.channel)
                    .transfer_leader(spoor_proto::v1::TransferLeaderRequest { node_id: target })
                    .await
                    .map_err(spoor_common::catalog_client::status_to_error)?
                    .into_inner();
            return Ok(Membership {
                voters: reply.voters,
                learners: reply.learners,
                leader_id: reply.leader_id,
            });
        }
        if target == self.id {
            return Ok(self.membership());
        }
        if !membership.voter_ids().any(|v| v == target) {
            return Err(CatalogError::Invalid {
                reason: format!("node {target} is not a voter of the coordinator group"),
            });
        }
        // Wait (bounded) for the target to hold everything the leader has.
        let caught_up = self
            .raft
            .wait(Some(self.write_timeout))
            .metrics(
                |x| {
                    let matched = x
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&target).cloned().flatten())
                        .map_or(0, |l| l.index);
                    matched >= x.last_log_index.unwrap_or(0)
                },
                "the transfer target caught up",
            )
            .await;
        if caught_up.is_err() {
            return Err(CatalogError::Unavailable {
                reason: format!(
                    "node {target} did not catch up with the leader's log within {:?}; retry later",
                    self.write_timeout
                ),
            });
        }
        let lease = Duration::from_millis(self.election_timeout_max_ms);
        let hold = lease * 4;
        let peer = |id: u64| -> Result<_, CatalogError> {
            let addr = self.leader_addr(membership.get_node(&id).cloned())?;
            let channel = lazy_channel(&addr, FORWARD_TIMEOUT, &self.credential, &self.tls)?;
            Ok(spoor_proto::v1::cluster_service_client::ClusterServiceClient::new(channel))
        };
        let others: Vec<u64> = membership
            .voter_ids()
            .filter(|v| *v != target && *v != self.id)
            .collect();
        for id in &others {
            let held = peer(*id)?
                .hold_elections(spoor_proto::v1::HoldElectionsRequest {
                    hold_ms: hold.as_millis() as u64,
                })
                .await;
            if let Err(e) = held {
                tracing::warn!(node_id = id, error = %e, "could not hold elections for a leader transfer");
            }
        }
        self.raft.runtime_config().heartbeat(false);
        self.raft.runtime_config().elect(false);
        tokio::time::sleep(lease + Duration::from_millis(self.heartbeat_interval_ms)).await;
        let elected = peer(target)?
            .elect(spoor_proto::v1::ElectRequest {})
            .await
            .map_err(spoor_common::catalog_client::status_to_error);
        let moved = match elected {
            Ok(_) => self
                .raft
                .wait(Some(hold))
                .metrics(
                    |x| x.current_leader == Some(target),
                    "leadership moved to the target",
                )
                .await
                .is_ok(),
            Err(e) => {
                tracing::warn!(target, error = %e, "leader transfer: the target did not stand");
                false
            }
        };
        self.raft.runtime_config().heartbeat(true);
        self.raft.runtime_config().elect(true);
        for id in &others {
            if let Ok(mut c) = peer(*id) {
                let _ = c
                    .hold_elections(spoor_proto::v1::HoldElectionsRequest { hold_ms: 0 })
                    .await;
            }
        }
        if moved {
            Ok(self.membership())
        } else {
            Err(CatalogError::Unavailable {
                reason: format!(
                    "leadership did not move to node {target} within {hold:?} (a steady write load keeps the followers' leader lease alive); leader now: {:?}",
                    self.raft.metrics().borrow().current_leader
                ),
            })
        }
    }

    /// Voters, learners and leader as this node sees them.
    pub fn membership(&self) -> Membership {
        let m = self.raft.metrics().borrow().clone();
        let config = m.membership_config.membership();
        Membership {
            voters: config.voter_ids().collect(),
            learners: config.learner_ids().collect(),
            leader_id: m.current_leader,
        }
    }

    async fn forward_membership(
        &self,
        leader: Option<BasicNode>,
        change: MembershipChange,
    ) -> Result<Membership, CatalogError> {
        let addr = self.leader_addr(leader)?;
        let channel = lazy_channel(&addr, FORWARD_TIMEOUT * 6, &self.credential, &self.tls)?;
        let mut client =
            spoor_proto::v1::cluster_service_client::ClusterServiceClient::new(channel);
        let reply = match change {
            MembershipChange::Add { id, url } => {
                client
                    .add_node(spoor_proto::v1::AddNodeRequest { node_id: id, url })
                    .await
            }
            MembershipChange::Remove { id } => {
                client
                    .remove_node(spoor_proto::v1::RemoveNodeRequest { node_id: id })
                    .await
            }
        }
        .map_err(spoor_common::catalog_client::status_to_error)?
        .into_inner();
        Ok(Membership {
            voters: reply.voters,
            learners: reply.learners,
            leader_id: reply.leader_id,
        })
    }

    /// Builds a snapshot now (after which the log up to it may be purged,
    /// per `coordinator.log_kept_after_snapshot`).
    pub async fn trigger_snapshot(&self) -> Result<(), CatalogError> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| CatalogError::Unavailable {
                reason: format!("node {}: cannot build a snapshot: {e}", self.id),
            })
    }

    /// This node's current Raft metrics (leader, term, log, snapshot, purge point).
    pub fn raft_metrics(&self) -> openraft::RaftMetrics<u64, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    /// The gRPC service through which peers reach this node's Raft.
    pub fn raft_service(&self) -> crate::network::RaftGrpc {
        crate::network::RaftGrpc::new(self.raft.clone())
    }

    /// Stops Raft and the scheduler.
    pub async fn shutdown(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.stopping.send_replace(true);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }

    /// Proposes an operation through Raft; on a follower, forwards it to the
    /// leader (every coordinator serves `ClusterService.Propose`). Bounded by
    /// the write timeout: without a quorum it fails, retryably, never hangs.
    pub(crate) async fn propose(&self, op: Op) -> Result<Outcome, CatalogError> {
        let command = Command {
            op,
            now_micros: spoor_common::time::now_micros(),
        };
        // While leadership moves (an election, a transfer) the forwarded call
        // may meet a node that just stopped leading; try again, bounded by
        // the write timeout. Safe: every command is idempotent.
        let deadline = tokio::time::Instant::now() + self.write_timeout;
        loop {
            let failure = match self.propose_local(command.clone()).await {
                Ok(outcome) => return Ok(outcome),
                Err(Forward::Failed(e)) => return Err(e),
                Err(Forward::To(leader_id, leader)) => match self.forward_to(leader_id, leader) {
                    Ok(clients) => match forward_propose(clients.channel, &command).await {
                        Ok(outcome) => return Ok(outcome),
                        Err(e) => e,
                    },
                    Err(e) => e,
                },
            };
            if !failure.is_retryable() || tokio::time::Instant::now() >= deadline {
                return Err(failure);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Proposes on this node only: a follower answers with where the leader is.
    pub(crate) async fn propose_local(&self, command: Command) -> Result<Outcome, Forward> {
        self.propose_local_within(command, self.write_timeout).await
    }

    /// [`Self::propose_local`], waiting at most `timeout` for the quorum.
    async fn propose_local_within(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<Outcome, Forward> {
        let written = tokio::time::timeout(timeout, self.raft.client_write(command)).await;
        let Ok(written) = written else {
            return Err(Forward::Failed(CatalogError::Unavailable {
                reason: format!(
                    "node {}: the write was not acknowledged by a quorum within {:?}; it may still be applied, retry (writes are idempotent)",
                    self.id, timeout
                ),
            }));
        };
        match written {
            Ok(resp) => resp.data.0.map_err(Forward::Failed),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Forward::To(f.leader_id, f.leader_node))
            }
            Err(e) => Err(Forward::Failed(CatalogError::Unavailable {
                reason: format!("raft write failed: {e}"),
            })),
        }
    }

    async fn write(&self, batch: CommitBatch) -> Result<CommitOutcome, CatalogError> {
        match self.propose(Op::Commit(batch)).await? {
            Outcome::Commit(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    async fn change(&self, op: Op) -> Result<ChangeOutcome, CatalogError> {
        match self.propose(op).await? {
            Outcome::Change(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    /// Applies a control-plane change through Raft.
    pub async fn control(&self, op: ControlOp) -> Result<ControlOutcome, CatalogError> {
        match self.propose(Op::Control(op)).await? {
            Outcome::Control(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    /// A worker's commit under its shard lease (checkpoint and/or alert files).
    pub async fn commit_shard(
        &self,
        commit: ShardCommit,
        batch: Option<CommitBatch>,
    ) -> Result<CommitOutcome, CatalogError> {
        match self.propose(Op::ShardCommit { commit, batch }).await? {
            Outcome::Commit(o) => Ok(o),
            other => Err(unexpected(other)),
        }
    }

    /// A receiver that changes whenever this node applied entries.
    pub fn applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.state.applied()
    }

    /// A receiver that turns true when this node shuts down.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Whether this node currently leads.
    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Takes a heartbeat: on the leader, records it on the monotonic clock,
    /// registers the member when it is new, changed or was declared dead, and
    /// answers with its leases; on a follower, forwards it to the leader.
    pub async fn heartbeat(&self, hb: Heartbeat) -> Result<HeartbeatReply, CatalogError> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.id) {
            return self
                .current_leader_clients(&m)?
                .control
                .heartbeat(&hb)
                .await;
        }
        {
            let mut l = self.lock_liveness()?;
            l.on_term(m.current_term, std::time::Instant::now());
            l.heard(
                hb.member.node_id,
                hb.shard_loads.clone(),
                std::time::Instant::now(),
            );
        }
        let registered = self.state.read(|d| {
            d.control
                .member(hb.member.node_id)
                .is_some_and(|x| x.alive && x.info == hb.member)
        })?;
        if !registered {
            self.control(ControlOp::Register(hb.member.clone())).await?;
        }
        let leases = self
            .state
            .read(|d| d.control.leases_of(hb.member.node_id))?;
        Ok(HeartbeatReply {
            leader_id: self.id,
            leases,
            member_timeout: self.member_timeout,
        })
    }

    fn lock_liveness(&self) -> Result<std::sync::MutexGuard<'_, Liveness>, CatalogError> {
        self.liveness.lock().map_err(|_| CatalogError::Internal {
            reason: "liveness lock poisoned".into(),
        })
    }

    /// The cluster as the leader sees it; a follower asks the leader.
    /// `include_usage` adds what each tenant stores (a walk over every
    /// file of the catalog, under the state's read lock).
    pub async fn cluster_status(&self, include_usage: bool) -> Result<ClusterStatus, CatalogError> {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.id) {
            let control = &self.current_leader_clients(&m)?.control;
            return if include_usage {
                control.cluster_status_with_usage().await
            } else {
                control.cluster_status().await
            };
        }
        let last_log_index = m.last_log_index.unwrap_or(0);
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let coordinators = membership
            .nodes()
            .map(|(id, node)| {
                let matched_index = if *id == self.id {
                    Some(last_log_index)
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned().flatten())
                        .map(|l| l.index)
                };
                CoordinatorReplica {
                    node_id: *id,
                    url: node.addr.clone(),
                    voter: voters.contains(id),
                    matched_index,
                    lag: matched_index.map(|i| last_log_index.saturating_sub(i)),
                }
            })
            .collect();
        let now = std::time::Instant::now();
        let (members, shards, tenants, usage) = {
            let l = self.lock_liveness()?;
            self.state.read(|d| {
                let shards = d.control.shards();
                let members = d
                    .control
                    .members()
                    .map(|member| MemberStatus {
                        last_heartbeat_ms: l.last_heartbeat_ms(member.info.node_id, now),
                        shards: shards
                            .iter()
                            .filter(|s| s.holder == Some(member.info.node_id))
                            .count() as u32,
                        member: member.clone(),
                    })
                    .collect();
                (
                    members,
                    shards,
                    d.control.tenants(),
                    if include_usage {
                        d.catalog.tenant_totals()
                    } else {
                        Vec::new()
                    },
                )
            })?
        };
        Ok(ClusterStatus {
            leader_id: self.id,
            term: m.current_term,
            commit_index: m.last_applied.map_or(0, |l| l.index),
            last_log_index,
            coordinators,
            members,
            shards,
            tenants,
            usage,
        })
    }

    /// A backup of everything committed when it was asked for: read on the
    /// leader after a read barrier (its leadership confirmed by a quorum
    /// and everything committed applied), fetched from the leader by a
    /// follower. The file's bytes and header.
    pub async fn backup(&self) -> Result<(Vec<u8>, crate::backup::BackupHeader), CatalogError> {
        let confirmed =
            tokio::time::timeout(self.write_timeout, self.raft.ensure_linearizable()).await;
        match confirmed {
            Err(_) => Err(CatalogError::Unavailable {
                reason: format!(
                    "node {}: leadership not confirmed by a quorum within {:?}",
                    self.id, self.write_timeout
                ),
            }),
            Ok(Ok(_)) => {
                // A copy under the lock, the encoding outside it: applying
                // entries waits only for the copy.
                let (catalog, control, last_applied) = self
                    .state
                    .read(|d| (d.catalog.clone(), d.control.clone(), d.last_applied))?;
                let id = self.id;
                tokio::task::spawn_blocking(move || {
                    crate::backup::encode(
                        &catalog,
                        &control,
                        last_applied,
                        id,
                        spoor_common::time::now_micros(),
                    )
                })
                .await
                .map_err(|e| CatalogError::Internal {
                    reason: format!("encoding the backup: {e}"),
                })?
                .map_err(CatalogError::from)
            }
            Ok(Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(
                f,
            )))) => {
                let addr = self.leader_addr(f.leader_node)?;
                let channel = lazy_channel(&addr, BACKUP_TIMEOUT, &self.credential, &self.tls)?;
                let bytes = crate::backup::download(channel)
                    .await
                    .map_err(spoor_common::catalog_client::status_to_error)?;
                let header = crate::backup::verify(&bytes)?;
                Ok((bytes, header))
            }
            Ok(Err(e)) => Err(CatalogError::Unavailable {
                reason: format!("linearizable read: {e}"),
            }),
        }
    }

    /// Restores the backup file `bytes` into this group through one Raft
    /// entry, refused unless the state is empty (see
    /// [`crate::state_machine::StateMachineData`]). A follower forwards the
    /// file to the leader, unless it was itself `forwarded` (leadership
    /// moved meanwhile: the caller retries, a retry of an applied restore
    /// is recognized).
    pub async fn restore(
        &self,
        bytes: &[u8],
        forwarded: bool,
    ) -> Result<crate::backup::RestoreOutcome, CatalogError> {
        let restore = crate::backup::decode(bytes)?;
        let command = Command {
            op: Op::RestoreCatalog(Box::new(restore)),
            now_micros: spoor_common::time::now_micros(),
        };
        match self.propose_local_within(command, BACKUP_TIMEOUT).await {
            Ok(Outcome::Restored(outcome)) => {
                if !outcome.already_applied {
                    tokio::spawn(self.clone().snapshot_past_restore());
                }
                Ok(outcome)
            }
            Ok(other) => Err(unexpected(other)),
            Err(Forward::Failed(e)) => Err(e),
            Err(Forward::To(leader_id, _)) if forwarded => Err(CatalogError::Unavailable {
                reason: format!(
                    "node {} is no longer the leader (leader now: {leader_id:?}); retry",
                    self.id
                ),
            }),
            Err(Forward::To(leader_id, leader)) => {
                if let Some(l) = leader_id
                    && self.faults.is_cut(self.id, l)
                {
                    return Err(CatalogError::Unavailable {
                        reason: format!(
                            "node {}: leader {l} unreachable (injected fault)",
                            self.id
                        ),
                    });
                }
                let addr = self.leader_addr(leader)?;
                let channel = lazy_channel(&addr, BACKUP_TIMEOUT, &self.credential, &self.tls)?;
                crate::backup::upload(channel, bytes, true)
                    .await
                    .map_err(spoor_common::catalog_client::status_to_error)
            }
        }
    }

    /// After a restore: a snapshot holding it, and the log up to it
    /// purged, so coordinators added later receive the restored state by
    /// snapshot (in chunks) rather than as one log entry: openraft bounds
    /// an AppendEntries call by the heartbeat interval, far too short to
    /// send the whole state in one message.
    async fn snapshot_past_restore(self) {
        let restored = self
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        let done =
            async {
                self.trigger_snapshot().await?;
                self.raft
                    .wait(Some(BACKUP_TIMEOUT))
                    .metrics(
                        |m| m.snapshot.is_some_and(|s| s.index >= restored),
                        "a snapshot holds the restore",
                    )
                    .await
                    .map_err(|e| CatalogError::Unavailable {
                        reason: format!("waiting for the snapshot: {e}"),
                    })?;
                self.raft.trigger().purge_log(restored).await.map_err(|e| {
                    CatalogError::Unavailable {
                        reason: format!("purging the log: {e}"),
                    }
                })
            };
        match done.await {
            Ok(()) => tracing::info!(
                node_id = self.id,
                index = restored,
                "snapshot taken after a restore; log purged up to it"
            ),
            Err(e) => {
                tracing::warn!(node_id = self.id, error = %e, "no snapshot after the restore: coordinators added now may not catch up until the next snapshot")
            }
        }
    }

    /// A token's record if it is valid (read from this node's applied state).
    pub fn authenticate(&self, token: &str) -> Result<TokenRecord, CatalogError> {
        self.state.read(|d| d.control.authenticate(token))?
    }

    /// A tenant's rule sets (this node's applied state).
    pub fn rule_sets(&self, tenant: &TenantId) -> Result<Vec<RuleSet>, CatalogError> {
        self.state.read(|d| d.control.rule_sets(tenant))
    }

    /// Tenants (this node's applied state).
    pub fn tenants(&self) -> Result<Vec<TenantRecord>, CatalogError> {
        self.state.read(|d| d.control.tenants())
    }

    /// Token records, hashes included (this node's applied state).
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, CatalogError> {
        self.state.read(|d| d.control.tokens())
    }

    /// Exports what each tenant stores, per table, as gauges from this
    /// node's applied state (every coordinator reports the same figures:
    /// aggregate them with `max`, not `sum`). A table or tenant whose files
    /// are all gone reports 0 rather than its last figures.
    async fn run_usage_report(self, interval: Duration) {
        let mut reported = std::collections::BTreeSet::<(String, String)>::new();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.stopped.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let Ok(totals) = self.state.read(|d| d.catalog.tenant_totals()) else {
                continue;
            };
            let mut now = std::collections::BTreeSet::new();
            for tenant in totals {
                for t in tenant.tables {
                    let labels = [
                        ("tenant", tenant.tenant.clone()),
                        ("table", t.table.clone()),
                    ];
                    metrics::gauge!("spoor_tenant_stored_bytes", &labels).set(t.byte_size as f64);
                    metrics::gauge!("spoor_tenant_stored_rows", &labels).set(t.row_count as f64);
                    metrics::gauge!("spoor_tenant_stored_files", &labels).set(t.file_count as f64);
                    now.insert((tenant.tenant.clone(), t.table));
                }
            }
            for (tenant, table) in reported.difference(&now) {
                let labels = [("tenant", tenant.clone()), ("table", table.clone())];
                for name in [
                    "spoor_tenant_stored_bytes",
                    "spoor_tenant_stored_rows",
                    "spoor_tenant_stored_files",
                ] {
                    metrics::gauge!(name, &labels).set(0.0);
                }
            }
            reported.extend(now);
        }
    }

    /// The leader's periodic work: expire silent members, then move shard
    /// leases (see [`crate::scheduler`]). Runs on every node, acts only
    /// while this node leads.
    async fn run_scheduler(self, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.stopped.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            if !self.is_leader() {
                continue;
            }
            if let Err(e) = self.schedule_once().await {
                tracing::warn!(node_id = self.id, error = %e, "shard scheduler round failed");
            }
        }
    }

    async fn schedule_once(&self) -> Result<(), CatalogError> {
        let term = self.raft.metrics().borrow().current_term;
        let now = std::time::Instant::now();
        let expired: Vec<(u64, u64)> = {
            let mut l = self.lock_liveness()?;
            l.on_term(term, now);
            self.state.read(|d| {
                d.control
                    .members()
                    .filter(|m| m.alive && l.silent_for(m.info.node_id, now) > self.member_timeout)
                    .map(|m| (m.info.node_id, m.incarnation))
                    .collect()
            })?
        };
        for (node_id, incarnation) in expired {
            tracing::warn!(node_id, "member missed its heartbeats; declaring it dead");
            self.control(ControlOp::Expire {
                node_id,
                incarnation,
            })
            .await?;
        }
        let moves = {
            let l = self.lock_liveness()?;
            self.state.read(|d| {
                let workers: Vec<u64> = d
                    .control
                    .members()
                    .filter(|m| d.control.is_live_worker(m.info.node_id))
                    .map(|m| m.info.node_id)
                    .collect();
                crate::scheduler::plan(&d.control.shards(), &workers, |w, s| l.load(w, s))
            })?
        };
        if !moves.is_empty() {
            tracing::info!(moves = moves.len(), "moving shard leases");
            self.control(ControlOp::Assign(moves)).await?;
        }
        Ok(())
    }
}

/// How often each coordinator exports the tenants' storage figures.
const USAGE_REPORT_INTERVAL: Duration = Duration::from_secs(15);

/// A lazily connecting channel to a coordinator's gRPC URL.
fn lazy_channel(
    addr: &str,
    timeout: Duration,
    credential: &Credential,
    tls: &spoor_common::tls::PeerTls,
) -> Result<AuthChannel, CatalogError> {
    let channel = spoor_common::tls::lazy_channel(addr, timeout, tls.0.as_ref()).map_err(|e| {
        CatalogError::Invalid {
            reason: format!("coordinator address: {e}"),
        }
    })?;
    Ok(AuthChannel::new(channel, credential.clone()))
}

/// Why a local proposal did not apply.
pub(crate) enum Forward {
    /// This node is not the leader; the leader is there (if known).
    To(Option<u64>, Option<BasicNode>),
    /// It failed.
    Failed(CatalogError),
}

fn unexpected(outcome: Outcome) -> CatalogError {
    CatalogError::Internal {
        reason: format!("the state machine answered with an unexpected outcome {outcome:?}"),
    }
}

/// Sends a command to the leader's `ClusterService.Propose`.
async fn forward_propose(channel: AuthChannel, command: &Command) -> Result<Outcome, CatalogError> {
    let json = serde_json::to_vec(command).map_err(|e| CatalogError::Internal {
        reason: format!("encoding a forwarded command: {e}"),
    })?;
    let reply = spoor_proto::v1::cluster_service_client::ClusterServiceClient::new(channel)
        .propose(spoor_proto::v1::ProposeRequest { command: json })
        .await
        .map_err(spoor_common::catalog_client::status_to_error)?
        .into_inner();
    let reply: Reply =
        serde_json::from_slice(&reply.reply).map_err(|e| CatalogError::Internal {
            reason: format!("decoding the leader's reply: {e}"),
        })?;
    reply.0
}

#[async_trait]
impl Catalog for CoordinatorNode {
    async fn commit_batch(&self, batch: CommitBatch) -> Result<CommitOutcome, CatalogError> {
        let outcome = self.write(batch).await;
        match &outcome {
            Ok(o) if o.already_committed => {
                metrics::counter!("spoor_catalog_commits_total", "outcome" => "duplicate")
                    .increment(1)
            }
            Ok(_) => metrics::counter!("spoor_catalog_commits_total", "outcome" => "committed")
                .increment(1),
            Err(_) => metrics::counter!("spoor_catalog_commits_total", "outcome" => "refused")
                .increment(1),
        }
        outcome
    }

    async fn list_files(&self, query: FileQuery) -> Result<Vec<CatalogFile>, CatalogError> {
        self.state.read(|d| d.catalog.list_files(&query))
    }

    async fn list_files_as_of(
        &self,
        query: FileQuery,
        linearizable: bool,
    ) -> Result<(Vec<CatalogFile>, ListingInfo), CatalogError> {
        if linearizable {
            let confirmed =
                tokio::time::timeout(self.write_timeout, self.raft.ensure_linearizable()).await;
            match confirmed {
                Ok(Ok(_)) => {}
                Ok(Err(RaftError::APIError(
                    openraft::error::CheckIsLeaderError::ForwardToLeader(f),
                ))) => {
                    return self
                        .forward_to(f.leader_id, f.leader_node)?
                        .catalog
                        .list_files_as_of(query, true)
                        .await;
                }
                Ok(Err(e)) => {
                    return Err(CatalogError::Unavailable {
                        reason: format!("linearizable read: {e}"),
                    });
                }
                Err(_) => {
                    return Err(CatalogError::Unavailable {
                        reason: format!(
                            "node {}: leadership not confirmed by a quorum within {:?}",
                            self.id, self.write_timeout
                        ),
                    });
                }
            }
        }
        self.state.read(|d| {
            (
                d.catalog.list_files(&query),
                ListingInfo {
                    consistency: if linearizable {
                        "linearizable"
                    } else {
                        "local"
                    }
                    .into(),
                    served_by: self.id,
                    applied_index: d.last_applied.map_or(0, |l| l.index),
                    as_of_sequence: d.catalog.last_sequence(&query.tenant),
                },
            )
        })
    }

    async fn replace_files(&self, swap: FileSwap) -> Result<ChangeOutcome, CatalogError> {
        self.change(Op::Swap(swap)).await
    }

    async fn remove_files(&self, removal: FileRemoval) -> Result<ChangeOutcome, CatalogError> {
        self.change(Op::Remove(removal)).await
    }

    async fn changes_since(
        &self,
        tenant: &TenantId,
        after_sequence: u64,
        limit: usize,
    ) -> Result<ChangePage, CatalogError> {
        self.state
            .read(|d| d.catalog.changes_since(tenant, after_sequence, limit))?
    }

    async fn checkpoints(
        &self,
        source_id: &str,
        topic: &str,
    ) -> Result<Vec<SourceCheckpoint>, CatalogError> {
        // Checkpoints decide where ingest resumes, so they are read
        // linearizably: on the leader after confirming its leadership with a
        // quorum (read index), from a follower by asking the leader.
        let confirmed =
            tokio::time::timeout(self.write_timeout, self.raft.ensure_linearizable()).await;
        match confirmed {
            Err(_) => Err(CatalogError::Unavailable {
                reason: format!(
                    "node {}: leadership not confirmed by a quorum within {:?}",
                    self.id, self.write_timeout
                ),
            }),
            Ok(Ok(_)) => self.state.read(|d| d.catalog.checkpoints(source_id, topic)),
            Ok(Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(
                f,
            )))) => {
                self.forward_to(f.leader_id, f.leader_node)?
                    .catalog
                    .checkpoints(source_id, topic)
                    .await
            }
            Ok(Err(e)) => Err(CatalogError::Unavailable {
                reason: format!("linearizable read: {e}"),
            }),
        }
    }

    async fn status(&self) -> Result<CatalogStatus, CatalogError> {
        let m = self.raft.metrics().borrow().clone();
        let (file_count, tenants) = self
            .state
            .read(|d| (d.catalog.file_count(), d.catalog.tenant_totals()))?;
        Ok(CatalogStatus {
            node_id: self.id,
            leader_id: m.current_leader,
            current_term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            file_count,
            tenants,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoor_common::catalog::conformance;
    use spoor_common::{TenantId, schema::Table};

    fn config() -> CoordinatorConfig {
        CoordinatorConfig {
            raft_dir: String::new(),
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            snapshot_after_entries: 3,
            log_kept_after_snapshot: 0,
            write_timeout_ms: 5_000,
            member_timeout_ms: 2_000,
            scheduler_interval_ms: 100,
            join: false,
            initial_members: Vec::new(),
            peer_credential: Default::default(),
            peer_tls: Default::default(),
        }
    }

    #[tokio::test]
    async fn raft_catalog_conforms() {
        let dirs = std::sync::Mutex::new(Vec::new());
        conformance::run_all(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().to_path_buf();
            dirs.lock().expect("lock").push(dir);
            async move {
                CoordinatorNode::start(1, &path, &config())
                    .await
                    .expect("start")
            }
        })
        .await;
    }

    #[tokio::test]
    async fn damaged_files_stop_start_up_naming_the_file() {
        // A log entry that does not decode.
        let dir = tempfile::tempdir().expect("tempdir");
        let node = CoordinatorNode::start(1, dir.path(), &config())
            .await
            .expect("start");
        node.commit_batch(CommitBatch {
            files: vec![conformance::kafka_file("acme", "t", 0, 0, 9)],
            checkpoints: vec![],
        })
        .await
        .expect("commit");
        node.shutdown().await;
        drop(node);
        {
            let db = redb::Database::create(dir.path().join("log.redb")).expect("open log");
            let txn = db.begin_write().expect("txn");
            {
                let mut table = txn
                    .open_table(redb::TableDefinition::<u64, &[u8]>::new("logs"))
                    .expect("table");
                table
                    .insert(2u64, b"{not an entry".as_slice())
                    .expect("insert");
            }
            txn.commit().expect("commit");
        }
        let err = CoordinatorNode::start(1, dir.path(), &config())
            .await
            .expect_err("damaged log")
            .to_string();
        assert!(
            err.contains("log.redb") && err.contains("index 2") && err.contains("will not serve"),
            "{err}"
        );

        // A file that is not a redb database at all.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("log.redb"), b"garbage garbage garbage").expect("write");
        let err = CoordinatorNode::start(1, dir.path(), &config())
            .await
            .expect_err("not a log")
            .to_string();
        assert!(err.contains("log.redb"), "{err}");

        // A damaged snapshot, of the earlier format and of the current one.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("snapshot.json"), b"{\"meta\": 1").expect("write");
        let err = CoordinatorNode::start(1, dir.path(), &config())
            .await
            .expect_err("bad snapshot")
            .to_string();
        assert!(err.contains("snapshot.json"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("snapshot.bin"), b"spoor-snapshot/1\n\x10\0")
            .expect("write");
        let err = CoordinatorNode::start(1, dir.path(), &config())
            .await
            .expect_err("truncated snapshot")
            .to_string();
        assert!(err.contains("snapshot.bin"), "{err}");
    }

    #[tokio::test]
    async fn catalog_survives_restart_through_log_and_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = CoordinatorNode::start(1, dir.path(), &config())
            .await
            .expect("start");
        // More entries than snapshot_after_entries, so a snapshot and log purge happen.
        for i in 0..8 {
            let f = conformance::kafka_file("acme", "t", 0, i * 10, i * 10 + 9);
            node.commit_batch(CommitBatch {
                files: vec![f],
                checkpoints: vec![SourceCheckpoint {
                    source_id: "src".into(),
                    topic: "t".into(),
                    partition: 0,
                    next_offset: i * 10 + 10,
                }],
            })
            .await
            .expect("commit");
        }
        node.raft
            .trigger()
            .snapshot()
            .await
            .expect("trigger snapshot");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while node
            .raft
            .metrics()
            .borrow()
            .snapshot
            .is_none_or(|s| s.index < 8)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no snapshot was built"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(dir.path().join("snapshot.bin").exists());
        node.shutdown().await;
        drop(node);

        let node = CoordinatorNode::start(1, dir.path(), &config())
            .await
            .expect("restart");
        let files = node
            .list_files(FileQuery::all(
                TenantId::new("acme").expect("t"),
                Table::Events,
            ))
            .await
            .expect("list");
        assert_eq!(files.len(), 8);
        assert_eq!(files.last().map(|f| f.sequence), Some(8));
        let cps = node.checkpoints("src", "t").await.expect("checkpoints");
        assert_eq!(cps[0].next_offset, 80);
        // The next commit continues the sequence.
        let out = node
            .commit_batch(CommitBatch {
                files: vec![conformance::kafka_file("acme", "t", 0, 80, 89)],
                checkpoints: vec![],
            })
            .await
            .expect("commit after restart");
        assert_eq!(out.sequences, vec![9]);
        node.shutdown().await;
    }
}

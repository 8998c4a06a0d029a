//! A coordinator node: the Raft group wired to its stores, serving the
//! catalog through [`spoor_common::Catalog`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Raft, SnapshotPolicy};
use spoor_common::catalog::{
    Catalog, CatalogError, CatalogFile, CatalogStatus, CommitBatch, CommitOutcome, FileQuery,
    SourceCheckpoint,
};
use spoor_common::config::CoordinatorConfig;

use crate::log_store::LogStore;
use crate::network::GrpcRaftNetwork;
use spoor_common::catalog_client::GrpcCatalog;

/// How long a write forwarded to the leader may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
use crate::raft_types::{CatalogCommand, TypeConfig};
use crate::state_machine::StateMachine;

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
    raft: Raft<TypeConfig>,
    state: StateMachine,
    /// The client for the last known leader, reused across forwarded calls
    /// so a follower does not open a connection per commit.
    leader_client: Arc<std::sync::Mutex<Option<(String, GrpcCatalog)>>>,
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
            path: dir.join("snapshot.json").display().to_string(),
            source: Box::new(e),
        })?;
        let raft_config = openraft::Config {
            cluster_name: "spoor".into(),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_after_entries),
            max_in_snapshot_log_to_keep: config.log_kept_after_snapshot,
            ..Default::default()
        }
        .validate()?;
        let network = GrpcRaftNetwork::new(Duration::from_millis(config.election_timeout_min_ms));
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
        Ok(CoordinatorNode {
            id,
            write_timeout,
            raft,
            state,
            leader_client: Arc::default(),
        })
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

    /// The catalog client for the leader at `addr`, reused while the leader stays.
    fn leader_catalog(&self, addr: &str) -> Result<GrpcCatalog, CatalogError> {
        let mut cached = self
            .leader_client
            .lock()
            .map_err(|_| CatalogError::Internal {
                reason: "leader client lock poisoned".into(),
            })?;
        if let Some((cached_addr, client)) = cached.as_ref()
            && cached_addr == addr
        {
            return Ok(client.clone());
        }
        let client = GrpcCatalog::connect_lazy(addr, FORWARD_TIMEOUT)?;
        *cached = Some((addr.to_string(), client.clone()));
        Ok(client)
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
        let channel = tonic::transport::Endpoint::from_shared(addr.clone())
            .map_err(|e| CatalogError::Invalid {
                reason: format!("leader address {addr:?}: {e}"),
            })?
            .timeout(FORWARD_TIMEOUT * 6)
            .connect_lazy();
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

    /// This node's current Raft metrics (leader, term, log, snapshot, purge point).
    pub fn raft_metrics(&self) -> openraft::RaftMetrics<u64, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    /// The gRPC service through which peers reach this node's Raft.
    pub fn raft_service(&self) -> crate::network::RaftGrpc {
        crate::network::RaftGrpc::new(self.raft.clone())
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }

    /// Proposes a commit; on a follower, forwards it to the leader's catalog
    /// service (every coordinator serves both on its gRPC address).
    async fn write(&self, batch: CommitBatch) -> Result<CommitOutcome, CatalogError> {
        let now_micros = spoor_common::time::now_micros();
        let command = CatalogCommand::Commit {
            batch: batch.clone(),
            now_micros,
        };
        let written =
            tokio::time::timeout(self.write_timeout, self.raft.client_write(command)).await;
        let Ok(written) = written else {
            return Err(CatalogError::Unavailable {
                reason: format!(
                    "node {}: the commit was not acknowledged by a quorum within {:?}; it may still be applied, retry (commits are idempotent)",
                    self.id, self.write_timeout
                ),
            });
        };
        match written {
            Ok(resp) => resp.data.0,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                let addr = self.leader_addr(f.leader_node)?;
                let leader = self.leader_catalog(&addr)?;
                leader.commit_batch(batch).await
            }
            Err(e) => Err(CatalogError::Unavailable {
                reason: format!("raft write failed: {e}"),
            }),
        }
    }
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
                let addr = self.leader_addr(f.leader_node)?;
                self.leader_catalog(&addr)?
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
            join: false,
            initial_members: Vec::new(),
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

        // A damaged snapshot.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("snapshot.json"), b"{\"meta\": 1").expect("write");
        let err = CoordinatorNode::start(1, dir.path(), &config())
            .await
            .expect_err("bad snapshot")
            .to_string();
        assert!(err.contains("snapshot.json"), "{err}");
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
        assert!(dir.path().join("snapshot.json").exists());
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

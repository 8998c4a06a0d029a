//! Raft between coordinators over gRPC (`spoor.v1.RaftService`).
//!
//! The client side ([`GrpcRaftNetwork`]) turns openraft RPCs into gRPC calls
//! to the peer's `node.grpc_addr` (its `BasicNode::addr`, a URL); the server
//! side ([`RaftGrpc`]) hands them to the local `Raft`. A peer that cannot be
//! reached is reported `Unreachable` (openraft backs off); an error the peer's
//! Raft returned travels back as a `RemoteError`.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::Serialize;
use serde::de::DeserializeOwned;
use spoor_common::auth::{AuthChannel, Credential};
use spoor_proto::v1 as pb;

use crate::raft_types::TypeConfig;

/// Creates one gRPC client per peer.
#[derive(Debug, Clone)]
pub struct GrpcRaftNetwork {
    timeout: Duration,
    from: u64,
    faults: NetworkFaults,
    credential: Credential,
    tls: spoor_common::tls::PeerTls,
}

impl GrpcRaftNetwork {
    /// Clients of node `from` whose calls give up after `timeout` (openraft
    /// also bounds each RPC), passing every message through `faults` and
    /// presenting `credential` (the cluster secret) and reaching
    /// `https://` peers with `tls`.
    pub fn new(
        from: u64,
        timeout: Duration,
        faults: NetworkFaults,
        credential: Credential,
        tls: spoor_common::tls::PeerTls,
    ) -> Self {
        GrpcRaftNetwork {
            timeout,
            from,
            faults,
            credential,
            tls,
        }
    }
}

/// A client for one peer.
#[derive(Debug, Clone)]
pub struct RaftPeer {
    from: u64,
    target: u64,
    addr: String,
    client: Option<pb::raft_service_client::RaftServiceClient<AuthChannel>>,
    faults: NetworkFaults,
}

/// Faults injected into the messages between coordinators, for tests of
/// partitions, loss and delay on real gRPC connections. Empty (the default)
/// it lets everything through; production never sets it. It covers Raft
/// messages and the forwarding of client calls to the leader, so a node cut
/// off by it is cut off for everything another coordinator would send it.
#[derive(Debug, Clone, Default)]
pub struct NetworkFaults {
    rules: std::sync::Arc<std::sync::Mutex<FaultRules>>,
}

#[derive(Debug, Default)]
struct FaultRules {
    /// Directed links that carry nothing.
    cut: std::collections::HashSet<(u64, u64)>,
    /// Share of messages lost, 0.0..=1.0 (half before delivery, half the reply).
    loss: f64,
    /// Extra delay per message, up to this much (uniform).
    max_delay: Duration,
    /// xorshift state for loss and delay draws.
    rng: u64,
}

/// What happens to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered, after the delay.
    Deliver(Duration),
    /// Lost before reaching the peer.
    DropRequest,
    /// Delivered (after the delay), but the reply is lost.
    DropReply(Duration),
}

impl NetworkFaults {
    fn with<T>(&self, f: impl FnOnce(&mut FaultRules) -> T) -> T {
        match self.rules.lock() {
            Ok(mut r) => f(&mut r),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Cuts every link between `side` and the nodes not in it, both ways.
    pub fn partition(&self, side: &[u64], others: &[u64]) {
        self.with(|r| {
            for a in side {
                for b in others {
                    r.cut.insert((*a, *b));
                    r.cut.insert((*b, *a));
                }
            }
        });
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.with(|r| r.cut.clear());
    }

    /// Loses `loss` of all messages (0.0..=1.0) and delays each by up to `max_delay`.
    pub fn set_loss_and_delay(&self, loss: f64, max_delay: Duration) {
        self.with(|r| {
            r.loss = loss.clamp(0.0, 1.0);
            r.max_delay = max_delay;
        });
    }

    /// Whether messages from `from` to `to` are cut.
    pub fn is_cut(&self, from: u64, to: u64) -> bool {
        self.with(|r| r.cut.contains(&(from, to)))
    }

    /// Draws the fate of one message from `from` to `to`.
    pub fn fate(&self, from: u64, to: u64) -> Fate {
        self.with(|r| {
            if r.cut.contains(&(from, to)) {
                return Fate::DropRequest;
            }
            if r.loss == 0.0 && r.max_delay.is_zero() {
                return Fate::Deliver(Duration::ZERO);
            }
            let mut next = || {
                if r.rng == 0 {
                    r.rng = 0x9E37_79B9_7F4A_7C15 ^ (from << 32 | to);
                }
                r.rng ^= r.rng << 13;
                r.rng ^= r.rng >> 7;
                r.rng ^= r.rng << 17;
                (r.rng >> 11) as f64 / (1u64 << 53) as f64
            };
            let delay = r.max_delay.mul_f64(next());
            let draw = next();
            if draw < r.loss / 2.0 {
                Fate::DropRequest
            } else if draw < r.loss {
                Fate::DropReply(delay)
            } else {
                Fate::Deliver(delay)
            }
        })
    }
}

#[derive(Debug, thiserror::Error)]
enum PeerError {
    #[error("peer {target} address {addr:?} is not a valid URI: {reason}")]
    BadAddress {
        target: u64,
        addr: String,
        reason: String,
    },
    #[error("peer {target} at {addr}: {status}")]
    Call {
        target: u64,
        addr: String,
        status: tonic::Status,
    },
    #[error("peer {target} at {addr}: malformed raft message: {reason}")]
    Decode {
        target: u64,
        addr: String,
        reason: String,
    },
}

impl RaftNetworkFactory<TypeConfig> for GrpcRaftNetwork {
    type Network = RaftPeer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        // An unusable address leaves the peer without a client: its calls
        // fail as unreachable, as a down peer's would.
        let client = spoor_common::tls::lazy_channel(&node.addr, self.timeout, self.tls.0.as_ref())
            .ok()
            .map(|channel| AuthChannel::new(channel, self.credential.clone()))
            .map(pb::raft_service_client::RaftServiceClient::new);
        RaftPeer {
            from: self.from,
            target,
            addr: node.addr.clone(),
            client,
            faults: self.faults.clone(),
        }
    }
}

/// The reply of a peer: its Raft's answer, or its Raft's error.
type Reply<T, E> = Result<T, E>;

impl RaftPeer {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: &'static str,
        request: &Req,
        payload: Vec<u8>,
    ) -> Result<Resp, RPCError<u64, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let (target, addr) = (self.target, self.addr.clone());
        let Some(client) = self.client.as_mut() else {
            let reason = "cannot parse".to_string();
            return Err(RPCError::Unreachable(Unreachable::new(
                &PeerError::BadAddress {
                    target,
                    addr,
                    reason,
                },
            )));
        };
        let json =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let fate = self.faults.fate(self.from, target);
        let lost = || {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
                "message to {target} lost by injected fault"
            ))))
        };
        match fate {
            Fate::DropRequest => return Err(lost()),
            Fate::Deliver(d) | Fate::DropReply(d) if !d.is_zero() => tokio::time::sleep(d).await,
            _ => {}
        }
        let message = pb::RaftMessage { json, payload };
        let result = match kind {
            "append_entries" => client.append_entries(message).await,
            "vote" => client.vote(message).await,
            _ => client.install_snapshot(message).await,
        };
        let reply = result.map_err(|status| {
            let err = PeerError::Call {
                target,
                addr: addr.clone(),
                status,
            };
            RPCError::Unreachable(Unreachable::new(&err))
        })?;
        if matches!(fate, Fate::DropReply(_)) {
            return Err(lost());
        }
        let decoded: Reply<Resp, E> =
            serde_json::from_slice(&reply.into_inner().json).map_err(|e| {
                let err = PeerError::Decode {
                    target,
                    addr,
                    reason: e.to_string(),
                };
                RPCError::Network(NetworkError::new(&err))
            })?;
        decoded.map_err(|e| RPCError::RemoteError(RemoteError::new(target, e)))
    }
}

impl RaftNetwork<TypeConfig> for RaftPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call("append_entries", &rpc, Vec::new()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        // The chunk's bytes travel raw beside the JSON (raft.proto).
        let mut rpc = rpc;
        let data = std::mem::take(&mut rpc.data);
        self.call("install_snapshot", &rpc, data).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call("vote", &rpc, Vec::new()).await
    }
}

/// Serves `spoor.v1.RaftService` for the local Raft.
#[derive(Clone)]
pub struct RaftGrpc {
    raft: Raft<TypeConfig>,
}

impl RaftGrpc {
    /// The service for `raft`.
    pub fn new(raft: Raft<TypeConfig>) -> Self {
        RaftGrpc { raft }
    }

    /// As a tonic service.
    pub fn into_server(
        self,
        guard: crate::GrpcGuard,
    ) -> crate::grpc::Guarded<pb::raft_service_server::RaftServiceServer<Self>> {
        // Raft messages are JSON: a restore's entry holds the whole state,
        // and a snapshot chunk of openraft's 3 MiB is about 12 MiB; tonic's
        // 4 MiB default refused both (a follower joining a group whose
        // snapshot passed ~1 MiB never caught up). Only the cluster's roles
        // reach this service (the guard runs before the body is read).
        let server = pb::raft_service_server::RaftServiceServer::new(self)
            .max_decoding_message_size(crate::backup::MAX_RAFT_MESSAGE_BYTES);
        crate::grpc::Guarded::new(server, guard)
    }
}

fn decode<T: DeserializeOwned>(message: pb::RaftMessage) -> Result<T, tonic::Status> {
    serde_json::from_slice(&message.json)
        .map_err(|e| tonic::Status::invalid_argument(format!("malformed raft message: {e}")))
}

fn encode<T: Serialize>(reply: &T) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
    serde_json::to_vec(reply)
        .map(|json| {
            tonic::Response::new(pb::RaftMessage {
                json,
                payload: Vec::new(),
            })
        })
        .map_err(|e| tonic::Status::internal(format!("encoding raft reply: {e}")))
}

#[tonic::async_trait]
impl pb::raft_service_server::RaftService for RaftGrpc {
    async fn append_entries(
        &self,
        request: tonic::Request<pb::RaftMessage>,
    ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(request.into_inner())?;
        encode(&self.raft.append_entries(rpc).await)
    }

    async fn vote(
        &self,
        request: tonic::Request<pb::RaftMessage>,
    ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
        let rpc: VoteRequest<u64> = decode(request.into_inner())?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<pb::RaftMessage>,
    ) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
        let mut message = request.into_inner();
        let payload = std::mem::take(&mut message.payload);
        let mut rpc: InstallSnapshotRequest<TypeConfig> = decode(message)?;
        rpc.data = payload;
        encode(&self.raft.install_snapshot(rpc).await)
    }
}

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
use spoor_proto::v1 as pb;
use tonic::transport::{Channel, Endpoint};

use crate::raft_types::TypeConfig;

/// Creates one gRPC client per peer.
#[derive(Debug, Clone)]
pub struct GrpcRaftNetwork {
    timeout: Duration,
}

impl GrpcRaftNetwork {
    /// Clients whose calls give up after `timeout` (openraft also bounds each RPC).
    pub fn new(timeout: Duration) -> Self {
        GrpcRaftNetwork { timeout }
    }
}

/// A client for one peer.
#[derive(Debug, Clone)]
pub struct RaftPeer {
    target: u64,
    addr: String,
    client: Option<pb::raft_service_client::RaftServiceClient<Channel>>,
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
        let client = Endpoint::from_shared(node.addr.clone())
            .ok()
            .map(|e| {
                e.connect_timeout(self.timeout)
                    .timeout(self.timeout)
                    .connect_lazy()
            })
            .map(pb::raft_service_client::RaftServiceClient::new);
        RaftPeer {
            target,
            addr: node.addr.clone(),
            client,
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
        let message = pb::RaftMessage { json };
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
        self.call("append_entries", &rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call("install_snapshot", &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call("vote", &rpc).await
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
    pub fn into_server(self) -> pb::raft_service_server::RaftServiceServer<Self> {
        pb::raft_service_server::RaftServiceServer::new(self)
    }
}

fn decode<T: DeserializeOwned>(message: pb::RaftMessage) -> Result<T, tonic::Status> {
    serde_json::from_slice(&message.json)
        .map_err(|e| tonic::Status::invalid_argument(format!("malformed raft message: {e}")))
}

fn encode<T: Serialize>(reply: &T) -> Result<tonic::Response<pb::RaftMessage>, tonic::Status> {
    serde_json::to_vec(reply)
        .map(|json| tonic::Response::new(pb::RaftMessage { json }))
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
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(request.into_inner())?;
        encode(&self.raft.install_snapshot(rpc).await)
    }
}

//! The Raft network of a single-node group.
//!
//! This release runs the coordinator as one Raft node (standalone and
//! single-coordinator deployments). A single node never sends Raft RPCs, so
//! every call reports the peer unreachable; the gRPC transport between
//! coordinators replaces this with the multi-node coordinator work.

use openraft::BasicNode;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::raft_types::TypeConfig;

/// Creates [`NoPeers`] clients.
#[derive(Debug, Clone, Default)]
pub struct SingleNodeNetwork;

/// A client for a peer that a single-node group does not have.
#[derive(Debug, Clone)]
pub struct NoPeers {
    target: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("node {target} is not reachable: this coordinator runs as a single-node Raft group")]
struct NoPeer {
    target: u64,
}

impl RaftNetworkFactory<TypeConfig> for SingleNodeNetwork {
    type Network = NoPeers;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Self::Network {
        NoPeers { target }
    }
}

impl NoPeers {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<u64, BasicNode, E> {
        RPCError::Unreachable(Unreachable::new(&NoPeer {
            target: self.target,
        }))
    }
}

impl RaftNetwork<TypeConfig> for NoPeers {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(self.unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        Err(self.unreachable())
    }
}

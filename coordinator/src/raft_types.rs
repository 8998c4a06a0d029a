//! The Raft type configuration and the commands the state machine applies.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use spoor_common::catalog::{CatalogError, CommitBatch, CommitOutcome};

/// A command replicated through Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogCommand {
    /// Add files and advance checkpoints atomically. `now_micros` is stamped by
    /// the node that proposes the entry, so every replica applies the same time.
    Commit {
        /// What to commit.
        batch: CommitBatch,
        /// Commit time.
        now_micros: i64,
    },
}

/// The state machine's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogReply(pub Result<CommitOutcome, CatalogError>);

openraft::declare_raft_types!(
    /// Spoor's Raft types: catalog commands in, catalog replies out.
    pub TypeConfig:
        D = CatalogCommand,
        R = CatalogReply,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log id of this configuration.
pub type LogId = openraft::LogId<u64>;
/// A storage error of this configuration.
pub type StorageError = openraft::StorageError<u64>;

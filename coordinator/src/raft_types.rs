//! The Raft type configuration and the commands the state machine applies.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use spoor_common::catalog::{
    CatalogError, ChangeOutcome, CommitBatch, CommitOutcome, FileRemoval, FileSwap,
};
use spoor_common::control::ShardCommit;

use crate::control_state::{ControlOp, ControlOutcome};

/// A command replicated through Raft. `now_micros` is stamped by the node
/// that proposes the entry, so every replica applies the same time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// What to do.
    pub op: Op,
    /// Proposal time, microseconds since the epoch.
    pub now_micros: i64,
}

/// The operations of [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Add files and advance source checkpoints atomically.
    Commit(CommitBatch),
    /// Compaction: replace inputs with outputs atomically.
    Swap(FileSwap),
    /// Retention: take files out.
    Remove(FileRemoval),
    /// A control-plane change.
    Control(ControlOp),
    /// A worker's checkpoint and files under a shard lease, fenced by epoch.
    ShardCommit {
        /// The lease and checkpoint.
        commit: ShardCommit,
        /// Files (alerts) committed with it.
        batch: Option<CommitBatch>,
    },
}

/// What an operation produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// For `Commit` and `ShardCommit`.
    Commit(CommitOutcome),
    /// For `Swap` and `Remove`.
    Change(ChangeOutcome),
    /// For `Control`.
    Control(ControlOutcome),
    /// For entries that are not commands (blank, membership).
    None,
}

/// The state machine's answer to a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(pub Result<Outcome, CatalogError>);

openraft::declare_raft_types!(
    /// Spoor's Raft types: commands in, replies out.
    pub TypeConfig:
        D = Command,
        R = Reply,
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

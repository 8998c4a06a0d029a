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
#[serde(from = "CommandForms")]
pub struct Command {
    /// What to do.
    pub op: Op,
    /// Proposal time, microseconds since the epoch.
    pub now_micros: i64,
}

/// Every form a command has been written in: logs written by earlier
/// builds (commits only, `{"Commit":{"batch":…,"now_micros":…}}`) still
/// replay.
#[derive(Deserialize)]
#[serde(untagged)]
enum CommandForms {
    Current { op: Op, now_micros: i64 },
    FirstRelease(FirstReleaseCommand),
}

#[derive(Deserialize)]
enum FirstReleaseCommand {
    Commit { batch: CommitBatch, now_micros: i64 },
}

impl From<CommandForms> for Command {
    fn from(form: CommandForms) -> Self {
        match form {
            CommandForms::Current { op, now_micros } => Command { op, now_micros },
            CommandForms::FirstRelease(FirstReleaseCommand::Commit { batch, now_micros }) => {
                Command {
                    op: Op::Commit(batch),
                    now_micros,
                }
            }
        }
    }
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
    /// A backup's state replaces an empty state (`spoor cluster restore`).
    /// It replaces the catalog as well as the control state, so it is an
    /// operation of its own rather than a [`ControlOp`]; added after the
    /// other forms, which decode as they did.
    RestoreCatalog(Box<crate::backup::CatalogRestore>),
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
    /// For `RestoreCatalog`.
    Restored(crate::backup::RestoreOutcome),
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

#[cfg(test)]
mod tests {
    use super::*;
    use spoor_common::catalog::conformance::kafka_file;

    #[test]
    fn commands_of_the_first_release_still_decode() {
        let batch = CommitBatch {
            files: vec![kafka_file("acme", "t", 0, 0, 9)],
            checkpoints: vec![],
        };
        let old = serde_json::json!({"Commit": {"batch": batch, "now_micros": 42}});
        let decoded: Command = serde_json::from_value(old).expect("first-release form");
        assert_eq!(
            decoded,
            Command {
                op: Op::Commit(batch),
                now_micros: 42
            }
        );
        let current = serde_json::to_value(&decoded).expect("encode");
        assert_eq!(
            serde_json::from_value::<Command>(current).expect("current form"),
            decoded
        );
    }
}

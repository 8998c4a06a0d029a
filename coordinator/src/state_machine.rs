//! The Raft state machine: the catalog in memory, persisted as snapshots.
//!
//! `apply` changes memory only; durability comes from the Raft log (replayed
//! on start from the last snapshot) and from snapshots written atomically to
//! `{raft_dir}/snapshot.json` (temp file, fsync, rename).

// openraft's storage traits fix the error type (`StorageError`, ~224 bytes);
// the helpers here return it unchanged rather than box and unbox it.
#![allow(clippy::result_large_err)]

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use spoor_common::catalog::{CatalogError, CatalogState, CommitOutcome};

use crate::control_state::{ControlOp, ControlState};
use crate::raft_types::{Command, LogId, Op, Outcome, Reply, StorageError, TypeConfig};

/// What the state machine holds: the catalog and Raft's bookkeeping.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateMachineData {
    /// The last entry applied.
    pub last_applied: Option<LogId>,
    /// The last membership applied.
    pub last_membership: StoredMembership<u64, openraft::BasicNode>,
    /// The catalog.
    pub catalog: CatalogState,
    /// Members, tenants, tokens, rule sets, shards.
    #[serde(default)]
    pub control: ControlState,
}

impl StateMachineData {
    /// Applies one command; on error nothing changes.
    pub fn apply_command(&mut self, command: &Command) -> Result<Outcome, CatalogError> {
        let now = command.now_micros;
        match &command.op {
            Op::Commit(batch) => self.catalog.apply_commit(batch, now).map(Outcome::Commit),
            Op::Swap(swap) => self.catalog.apply_swap(swap, now).map(Outcome::Change),
            Op::Remove(removal) => self
                .catalog
                .apply_removal(removal, now)
                .map(Outcome::Change),
            Op::Control(op) => {
                let outcome = self.control.apply(op, now)?;
                if let ControlOp::DefineShards {
                    tenant, rule_group, ..
                } = op
                {
                    let head = self.catalog.last_sequence(tenant);
                    self.control.start_new_shards_at(tenant, rule_group, head);
                }
                Ok(Outcome::Control(outcome))
            }
            Op::ShardCommit { commit, batch } => {
                self.control.check_shard_commit(commit)?;
                let outcome = match batch {
                    Some(batch) => self.catalog.apply_commit(batch, now)?,
                    None => CommitOutcome {
                        sequences: Vec::new(),
                        already_committed: true,
                    },
                };
                let checkpoint_present = self.control.store_shard_checkpoint(commit);
                Ok(Outcome::Commit(CommitOutcome {
                    already_committed: outcome.already_committed && checkpoint_present,
                    ..outcome
                }))
            }
        }
    }
}

/// A snapshot as stored on disk.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, openraft::BasicNode>,
    data: Vec<u8>,
}

/// The state machine; cloning shares the data, so readers see every apply.
#[derive(Debug, Clone)]
pub struct StateMachine {
    data: Arc<RwLock<StateMachineData>>,
    /// The last applied index, for watchers that wait for changes.
    applied: Arc<tokio::sync::watch::Sender<u64>>,
    snapshot_path: PathBuf,
    snapshot_seq: Arc<std::sync::atomic::AtomicU64>,
}

fn sm_read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

fn snap_write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, &e).into()
}

fn snap_read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_snapshot(None, &e).into()
}

#[derive(Debug, thiserror::Error)]
#[error("state machine lock poisoned")]
struct Poisoned;

impl StateMachine {
    /// Opens the state machine in `dir`, restoring the last snapshot if any.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let snapshot_path = dir.join("snapshot.json");
        let mut data = StateMachineData::default();
        if snapshot_path.exists() {
            let bytes = std::fs::read(&snapshot_path).map_err(snap_read_err)?;
            let stored: StoredSnapshot = serde_json::from_slice(&bytes).map_err(snap_read_err)?;
            data = serde_json::from_slice(&stored.data).map_err(snap_read_err)?;
        }
        let applied = data.last_applied.map_or(0, |l| l.index);
        Ok(StateMachine {
            applied: Arc::new(tokio::sync::watch::Sender::new(applied)),
            data: Arc::new(RwLock::new(data)),
            snapshot_path,
            snapshot_seq: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        })
    }

    /// A receiver that changes whenever entries were applied.
    pub fn applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Reads the state under a shared lock.
    pub fn read<T>(&self, f: impl FnOnce(&StateMachineData) -> T) -> Result<T, CatalogError> {
        let guard = self.data.read().map_err(|_| CatalogError::Internal {
            reason: Poisoned.to_string(),
        })?;
        Ok(f(&guard))
    }

    fn write_snapshot_file(&self, stored: &StoredSnapshot) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(stored).map_err(snap_write_err)?;
        let tmp = self.snapshot_path.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(snap_write_err)?;
            f.write_all(&bytes).map_err(snap_write_err)?;
            f.sync_all().map_err(snap_write_err)?;
        }
        std::fs::rename(&tmp, &self.snapshot_path).map_err(snap_write_err)?;
        if let Some(dir) = self.snapshot_path.parent() {
            // Make the rename itself durable.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(snap_write_err)?;
        }
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (bytes, last_applied, last_membership) = {
            let data = self.data.read().map_err(|_| sm_read_err(Poisoned))?;
            (
                serde_json::to_vec(&*data).map_err(sm_read_err)?,
                data.last_applied,
                data.last_membership.clone(),
            )
        };
        let seq = self
            .snapshot_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
            None => format!("empty-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: bytes.clone(),
        };
        self.write_snapshot_file(&stored)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<u64, openraft::BasicNode>), StorageError> {
        let data = self.data.read().map_err(|_| sm_read_err(Poisoned))?;
        Ok((data.last_applied, data.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut data = self.data.write().map_err(|_| sm_read_err(Poisoned))?;
        let mut replies = Vec::new();
        for entry in entries {
            data.last_applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => Reply(Ok(Outcome::None)),
                EntryPayload::Normal(command) => Reply(data.apply_command(&command)),
                EntryPayload::Membership(m) => {
                    data.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    Reply(Ok(Outcome::None))
                }
            };
            replies.push(reply);
        }
        if let Some(last) = data.last_applied {
            self.applied.send_replace(last.index);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let new: StateMachineData = serde_json::from_slice(&bytes).map_err(snap_read_err)?;
        self.write_snapshot_file(&StoredSnapshot {
            meta: meta.clone(),
            data: bytes,
        })?;
        let mut data = self.data.write().map_err(|_| sm_read_err(Poisoned))?;
        *data = new;
        self.applied
            .send_replace(data.last_applied.map_or(0, |l| l.index));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        if !self.snapshot_path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(&self.snapshot_path).map_err(snap_read_err)?;
        let stored: StoredSnapshot = serde_json::from_slice(&bytes).map_err(snap_read_err)?;
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}

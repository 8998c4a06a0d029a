//! The Raft state machine: the catalog in memory, persisted as snapshots.
//!
//! `apply` changes memory only; durability comes from the Raft log (replayed
//! on start from the last snapshot) and from snapshots written atomically to
//! `{raft_dir}/snapshot.bin` (temp file, fsync, rename). The file is a magic
//! line, the snapshot's meta as JSON behind its length, then the state's
//! bytes as they are: a JSON envelope would write them as an array of
//! numbers (a 100 MB catalog became a 334 MB file, slow to read back for
//! every snapshot sent to a joining follower). A `snapshot.json` of the
//! earlier format is still read at start.

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

use crate::backup::{CatalogRestore, RestoreOutcome, RestoredFrom};
use crate::control_state::{ControlOp, ControlState, RestoreEffects};
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
    /// The backup this state was restored from, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<RestoredFrom>,
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
            Op::RestoreCatalog(restore) => self.restore(restore, now).map(Outcome::Restored),
        }
    }

    /// Puts a backup's state in place of an empty one, keeping this
    /// group's Raft membership and member registrations
    /// ([`ControlState::restored`]). Refused when the state holds anything
    /// but member registrations; the same backup again is a retry.
    fn restore(
        &mut self,
        restore: &CatalogRestore,
        now_micros: i64,
    ) -> Result<RestoreOutcome, CatalogError> {
        let counts = |catalog: &CatalogState, control: &ControlState, effects: RestoreEffects| {
            let c = control.counts();
            RestoreOutcome {
                already_applied: false,
                backup_last_applied_index: restore.backup_last_applied.map_or(0, |l| l.index),
                files: catalog.file_count(),
                tenants: c.tenants,
                checkpoints: catalog.checkpoint_count(),
                tokens: c.tokens,
                rule_sets: c.rule_sets,
                shards: c.shards,
                members_dropped: effects.members_dropped,
                leases_released: effects.leases_released,
            }
        };
        // Checked before the entry was proposed; an entry whose body does
        // not decode is refused alike on every replica.
        let (catalog, control) = restore.state().map_err(CatalogError::from)?;
        if let Some(done) = &self.restored
            && done.body_sha256 == restore.body_sha256
        {
            return Ok(RestoreOutcome {
                already_applied: true,
                ..counts(&catalog, &control, RestoreEffects::default())
            });
        }
        let held: Vec<String> = [self.catalog.contents(), self.control.contents()]
            .into_iter()
            .flatten()
            .collect();
        if !held.is_empty() || self.restored.is_some() {
            let held = if held.is_empty() {
                "another backup was restored into it".to_string()
            } else {
                format!("it holds {}", held.join(", "))
            };
            return Err(CatalogError::Conflict {
                reason: format!(
                    "refusing to restore: the coordinator group's catalog is not empty ({held}); \
                     a backup is restored only into a freshly initialized group (new raft \
                     folders), before any ingest node or token is added to it"
                ),
            });
        }
        let (control, effects) = ControlState::restored(&control, &self.control);
        self.catalog = catalog;
        self.control = control;
        self.restored = Some(RestoredFrom {
            body_sha256: restore.body_sha256.clone(),
            backup_last_applied: restore.backup_last_applied,
            backup_created_at: restore.backup_created_at.clone(),
            restored_at_micros: now_micros,
        });
        Ok(counts(&self.catalog, &self.control, effects))
    }
}

/// A snapshot as stored on disk.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, openraft::BasicNode>,
    data: Vec<u8>,
}

/// The first bytes of a `snapshot.bin`.
const SNAPSHOT_MAGIC: &[u8] = b"spoor-snapshot/1\n";

#[derive(Debug, thiserror::Error)]
enum SnapshotFileError {
    #[error("{path}: not a snapshot file (no spoor-snapshot/1 header)")]
    Magic { path: String },
    #[error("{path}: truncated (meta of {meta_len} bytes announced, {len} bytes in the file)")]
    Truncated {
        path: String,
        meta_len: u64,
        len: usize,
    },
    #[error("{path}: snapshot meta: {source}")]
    Meta {
        path: String,
        source: serde_json::Error,
    },
}

impl StoredSnapshot {
    /// The file's header: magic, meta length (u64 little endian), meta JSON;
    /// the data follows it as it is.
    fn header(meta: &SnapshotMeta<u64, openraft::BasicNode>) -> Result<Vec<u8>, serde_json::Error> {
        let meta = serde_json::to_vec(meta)?;
        let mut out = Vec::with_capacity(SNAPSHOT_MAGIC.len() + 8 + meta.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
        out.extend_from_slice(&meta);
        Ok(out)
    }

    fn decode(path: &Path, mut bytes: Vec<u8>) -> Result<StoredSnapshot, SnapshotFileError> {
        let path = || path.display().to_string();
        let Some(rest) = bytes.strip_prefix(SNAPSHOT_MAGIC) else {
            return Err(SnapshotFileError::Magic { path: path() });
        };
        let truncated = |meta_len| SnapshotFileError::Truncated {
            path: path(),
            meta_len,
            len: bytes.len(),
        };
        let (len, rest) = rest.split_first_chunk::<8>().ok_or_else(|| truncated(0))?;
        let meta_len = u64::from_le_bytes(*len);
        let meta_end = usize::try_from(meta_len)
            .ok()
            .filter(|&n| n <= rest.len())
            .ok_or_else(|| truncated(meta_len))?;
        let meta = serde_json::from_slice(&rest[..meta_end]).map_err(|source| {
            SnapshotFileError::Meta {
                path: path(),
                source,
            }
        })?;
        let data_start = SNAPSHOT_MAGIC.len() + 8 + meta_end;
        let data = bytes.split_off(data_start);
        Ok(StoredSnapshot { meta, data })
    }
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

/// The snapshot file in the Raft directory.
const SNAPSHOT_FILE: &str = "snapshot.bin";
/// The earlier format's file (one JSON document), still read.
const LEGACY_SNAPSHOT_FILE: &str = "snapshot.json";

/// The last snapshot stored in `dir`, if any.
fn read_snapshot(dir: &Path) -> Result<Option<StoredSnapshot>, StorageError> {
    let path = StateMachine::snapshot_file(dir);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).map_err(snap_read_err)?;
    let stored = if path.ends_with(LEGACY_SNAPSHOT_FILE) {
        serde_json::from_slice(&bytes).map_err(snap_read_err)?
    } else {
        StoredSnapshot::decode(&path, bytes).map_err(snap_read_err)?
    };
    Ok(Some(stored))
}

impl StateMachine {
    /// Opens the state machine in `dir`, restoring the last snapshot if any.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let snapshot_path = dir.join(SNAPSHOT_FILE);
        let mut data = StateMachineData::default();
        if let Some(stored) = read_snapshot(dir)? {
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

    /// The snapshot file a start in `dir` reads: `snapshot.bin`, or a
    /// `snapshot.json` of the earlier format when only that exists.
    pub fn snapshot_file(dir: &Path) -> PathBuf {
        let current = dir.join(SNAPSHOT_FILE);
        let legacy = dir.join(LEGACY_SNAPSHOT_FILE);
        if !current.exists() && legacy.exists() {
            legacy
        } else {
            current
        }
    }

    /// Writes the snapshot file from the state's bytes, without copying them
    /// (a large catalog's state is hundreds of MB).
    fn write_snapshot_file(
        &self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let header = StoredSnapshot::header(meta).map_err(snap_write_err)?;
        let tmp = self.snapshot_path.with_extension("bin.tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(snap_write_err)?;
            f.write_all(&header).map_err(snap_write_err)?;
            f.write_all(data).map_err(snap_write_err)?;
            f.sync_all().map_err(snap_write_err)?;
        }
        std::fs::rename(&tmp, &self.snapshot_path).map_err(snap_write_err)?;
        if let Some(dir) = self.snapshot_path.parent() {
            // A snapshot of the earlier format is superseded (and would
            // otherwise be read again should this file be removed).
            let legacy = dir.join(LEGACY_SNAPSHOT_FILE);
            if legacy.exists() {
                std::fs::remove_file(&legacy).map_err(snap_write_err)?;
            }
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
        self.write_snapshot_file(&meta, &bytes)?;
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
        self.write_snapshot_file(meta, &bytes)?;
        let mut data = self.data.write().map_err(|_| sm_read_err(Poisoned))?;
        *data = new;
        self.applied
            .send_replace(data.last_applied.map_or(0, |l| l.index));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let dir = self.snapshot_path.parent().unwrap_or(Path::new("."));
        let Some(stored) = read_snapshot(dir)? else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, Entry};
    use spoor_common::TenantId;
    use spoor_common::catalog::conformance::kafka_file;
    use spoor_common::catalog::{CommitBatch, SourceCheckpoint};
    use spoor_common::control::{
        MemberInfo, Role, ShardId, TenantRecord, TokenRole, generate_token,
    };

    fn acme() -> TenantId {
        TenantId::new("acme").expect("tenant")
    }

    fn member(id: u64, role: Role) -> MemberInfo {
        MemberInfo {
            node_id: id,
            role,
            http_addr: format!("10.0.0.{id}:7080"),
            grpc_addr: String::new(),
            version: "test".into(),
        }
    }

    fn command(op: Op) -> Command {
        Command { op, now_micros: 7 }
    }

    fn apply(d: &mut StateMachineData, op: Op) -> Outcome {
        d.apply_command(&command(op)).expect("apply")
    }

    /// A group's state as a backup would find it: files with their
    /// checkpoints, a tenant, a token, a rule set, a worker holding a shard.
    fn source() -> (StateMachineData, String) {
        let mut d = StateMachineData::default();
        for i in 0..5 {
            apply(
                &mut d,
                Op::Commit(CommitBatch {
                    files: vec![kafka_file("acme", "t", 0, i * 10, i * 10 + 9)],
                    checkpoints: vec![SourceCheckpoint {
                        source_id: "src".into(),
                        topic: "t".into(),
                        partition: 0,
                        next_offset: i * 10 + 10,
                    }],
                }),
            );
        }
        let control = |op| Op::Control(op);
        apply(
            &mut d,
            control(ControlOp::PutTenant(TenantRecord::new(acme()))),
        );
        let token =
            generate_token(vec![acme()], TokenRole::Analyst, "hunter".into()).expect("token");
        apply(
            &mut d,
            control(ControlOp::CreateToken(token.record.clone())),
        );
        apply(
            &mut d,
            control(ControlOp::PutRuleSet {
                tenant: acme(),
                name: "windows".into(),
                content: "rules".into(),
                enabled: true,
                expected_version: 0,
            }),
        );
        apply(
            &mut d,
            control(ControlOp::Register(member(11, Role::Worker))),
        );
        apply(
            &mut d,
            control(ControlOp::DefineShards {
                tenant: acme(),
                rule_group: "windows".into(),
                buckets: 2,
            }),
        );
        let shard = ShardId {
            tenant: "acme".into(),
            rule_group: "windows".into(),
            bucket: 0,
        };
        apply(&mut d, control(ControlOp::Assign(vec![(shard, Some(11))])));
        d.last_applied = Some(log_id(1, 12));
        (d, token.token)
    }

    fn log_id(term: u64, index: u64) -> LogId {
        openraft::LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn backup_of(d: &StateMachineData) -> Vec<u8> {
        crate::backup::encode(&d.catalog, &d.control, d.last_applied, 1, 1_000)
            .expect("encode")
            .0
    }

    fn restore_op(bytes: &[u8]) -> Op {
        Op::RestoreCatalog(Box::new(crate::backup::decode(bytes).expect("decode")))
    }

    #[test]
    fn a_restore_replaces_an_empty_state_but_not_its_members() {
        let (src, token) = source();
        let bytes = backup_of(&src);
        // The new group: its own worker has registered, nothing else.
        let mut d = StateMachineData::default();
        apply(
            &mut d,
            Op::Control(ControlOp::Register(member(21, Role::Worker))),
        );
        let out = match apply(&mut d, restore_op(&bytes)) {
            Outcome::Restored(o) => o,
            other => panic!("unexpected outcome {other:?}"),
        };
        assert_eq!(
            (
                out.files,
                out.tenants,
                out.checkpoints,
                out.tokens,
                out.rule_sets
            ),
            (5, 1, 1, 1, 1)
        );
        assert_eq!(
            (out.shards, out.members_dropped, out.leases_released),
            (2, 1, 1)
        );
        assert_eq!(out.backup_last_applied_index, 12);
        assert!(!out.already_applied);
        // The catalog as it was: files, sequences, history, checkpoints.
        assert_eq!(d.catalog, src.catalog);
        assert_eq!(d.catalog.checkpoints("src", "t")[0].next_offset, 50);
        assert_eq!(d.catalog.last_sequence(&acme()), 5);
        assert_eq!(d.control.tenants(), src.control.tenants());
        assert_eq!(d.control.rule_sets(&acme()), src.control.rule_sets(&acme()));
        assert!(
            d.control.authenticate(&token).is_ok(),
            "the token works here"
        );
        // This group's members stay; the backup's worker is not one of them.
        let members: Vec<u64> = d.control.members().map(|m| m.info.node_id).collect();
        assert_eq!(members, vec![21]);
        // Its lease is released with a new epoch; the checkpoint stays.
        for (old, new) in src.control.shards().iter().zip(d.control.shards()) {
            assert_eq!(new.holder, None);
            assert_eq!(new.checkpoint, old.checkpoint);
            let bump = u64::from(old.holder.is_some());
            assert_eq!(new.epoch, old.epoch + bump, "{}", new.id);
        }
        // The next commit continues the tenant's sequence.
        let next = apply(
            &mut d,
            Op::Commit(CommitBatch {
                files: vec![kafka_file("acme", "t", 0, 50, 59)],
                checkpoints: vec![],
            }),
        );
        assert!(matches!(next, Outcome::Commit(c) if c.sequences == vec![6]));

        // The same backup again is a retry: nothing changes.
        let before = serde_json::to_value(&d).expect("json");
        match apply(&mut d, restore_op(&bytes)) {
            Outcome::Restored(o) => assert!(o.already_applied),
            other => panic!("unexpected outcome {other:?}"),
        }
        assert_eq!(serde_json::to_value(&d).expect("json"), before);
        // Another backup is refused, naming what is there.
        let mut other = src.clone();
        apply(
            &mut other,
            Op::Control(ControlOp::PutTenant(TenantRecord::new(
                TenantId::new("globex").expect("tenant"),
            ))),
        );
        let err = d
            .apply_command(&command(restore_op(&backup_of(&other))))
            .expect_err("not empty");
        let message = err.to_string();
        assert!(
            message.contains("not empty") && message.contains("6 files"),
            "{message}"
        );
        assert_eq!(serde_json::to_value(&d).expect("json"), before);
    }

    #[test]
    fn a_restore_is_refused_over_anything_but_members() {
        let (src, _) = source();
        let bytes = backup_of(&src);
        let checkpoint_only = Op::Commit(CommitBatch {
            files: vec![],
            checkpoints: vec![SourceCheckpoint {
                source_id: "src".into(),
                topic: "t".into(),
                partition: 3,
                next_offset: 1,
            }],
        });
        for (op, named) in [
            (checkpoint_only, "1 source checkpoints"),
            (
                Op::Control(ControlOp::PutTenant(TenantRecord::new(acme()))),
                "1 tenants",
            ),
        ] {
            let mut d = StateMachineData::default();
            apply(&mut d, op);
            let err = d
                .apply_command(&command(restore_op(&bytes)))
                .expect_err("not empty");
            assert!(err.to_string().contains(named), "{err}");
            assert!(matches!(err, CatalogError::Conflict { .. }), "{err:?}");
            assert!(d.restored.is_none());
        }
    }

    fn entry(index: u64, op: Op) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(1, index),
            payload: EntryPayload::Normal(command(op)),
        }
    }

    #[tokio::test]
    async fn a_restored_state_comes_back_from_the_log_and_from_a_snapshot() {
        let (src, token) = source();
        let bytes = backup_of(&src);
        let entries = || {
            vec![
                entry(
                    1,
                    Op::Control(ControlOp::Register(member(21, Role::Ingest))),
                ),
                entry(2, restore_op(&bytes)),
                entry(
                    3,
                    Op::Commit(CommitBatch {
                        files: vec![kafka_file("acme", "t", 0, 50, 59)],
                        checkpoints: vec![SourceCheckpoint {
                            source_id: "src".into(),
                            topic: "t".into(),
                            partition: 0,
                            next_offset: 60,
                        }],
                    }),
                ),
            ]
        };
        // The log as it is stored: each entry through its JSON form.
        let stored: Vec<Entry<TypeConfig>> = entries()
            .into_iter()
            .map(|e| {
                let json = serde_json::to_vec(&e).expect("encode entry");
                serde_json::from_slice(&json).expect("decode entry")
            })
            .collect();
        assert_eq!(stored, entries());

        let dir = tempfile::tempdir().expect("tempdir");
        let mut sm = StateMachine::open(dir.path()).expect("open");
        let replies = sm.apply(stored.clone()).await.expect("apply");
        assert!(replies.iter().all(|r| r.0.is_ok()), "{replies:?}");
        let applied = sm
            .read(|d| serde_json::to_value(d).expect("json"))
            .expect("read");

        // Replayed from the log alone, on another replica.
        let mut replica =
            StateMachine::open(tempfile::tempdir().expect("tempdir").path()).expect("open");
        replica.apply(stored).await.expect("replay");
        assert_eq!(
            replica
                .read(|d| serde_json::to_value(d).expect("json"))
                .expect("read"),
            applied
        );

        // Snapshotted, then opened from the snapshot file.
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
        let reopened = StateMachine::open(dir.path()).expect("reopen");
        assert_eq!(
            reopened
                .read(|d| serde_json::to_value(d).expect("json"))
                .expect("read"),
            applied
        );
        reopened
            .read(|d| {
                assert_eq!(d.catalog.file_count(), 6);
                assert_eq!(d.catalog.checkpoints("src", "t")[0].next_offset, 60);
                assert!(d.control.authenticate(&token).is_ok());
                assert_eq!(
                    d.restored.as_ref().map(|r| r.backup_last_applied),
                    Some(Some(log_id(1, 12)))
                );
            })
            .expect("read");

        // A follower that installs the snapshot holds the same.
        let snapshot = sm
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("a snapshot");
        let follower_dir = tempfile::tempdir().expect("tempdir");
        let mut follower = StateMachine::open(follower_dir.path()).expect("open");
        follower
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .expect("install");
        assert_eq!(
            follower
                .read(|d| serde_json::to_value(d).expect("json"))
                .expect("read"),
            applied
        );
    }

    #[tokio::test]
    async fn snapshots_are_stored_raw_and_the_earlier_json_file_still_opens() {
        let (src, _token) = source();
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(3, 40)),
            last_membership: StoredMembership::default(),
            snapshot_id: "3-40-0".into(),
        };
        let state = serde_json::to_vec(&src).expect("state");
        let as_json = |d: &StateMachineData| serde_json::to_value(d).expect("json");

        // A Raft directory of the earlier format: one JSON document.
        let dir = tempfile::tempdir().expect("tempdir");
        let legacy = StoredSnapshot {
            meta: meta.clone(),
            data: state.clone(),
        };
        std::fs::write(
            dir.path().join(LEGACY_SNAPSHOT_FILE),
            serde_json::to_vec(&legacy).expect("legacy"),
        )
        .expect("write");
        let mut sm = StateMachine::open(dir.path()).expect("open legacy");
        assert_eq!(sm.read(as_json).expect("read"), as_json(&src));
        let current = sm.get_current_snapshot().await.expect("current");
        assert_eq!(current.map(|s| s.meta), Some(meta.clone()));

        // The next snapshot is written in the raw format and replaces it:
        // the state's bytes are in the file as they are, not as JSON numbers.
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("snapshot");
        assert!(!dir.path().join(LEGACY_SNAPSHOT_FILE).exists());
        let file = std::fs::read(dir.path().join(SNAPSHOT_FILE)).expect("read");
        assert!(file.starts_with(SNAPSHOT_MAGIC));
        assert!(file.len() < state.len() + 1024, "{} bytes", file.len());
        let reopened = StateMachine::open(dir.path()).expect("reopen");
        assert_eq!(reopened.read(as_json).expect("read"), as_json(&src));

        // Damage is named, with the file.
        let path = dir.path().join(SNAPSHOT_FILE);
        for (bytes, says) in [
            (b"{}".to_vec(), "no spoor-snapshot/1 header"),
            (file[..SNAPSHOT_MAGIC.len() + 4].to_vec(), "truncated"),
            (file[..SNAPSHOT_MAGIC.len() + 12].to_vec(), "truncated"),
        ] {
            let err = StoredSnapshot::decode(&path, bytes)
                .expect_err("damaged")
                .to_string();
            assert!(err.contains(says) && err.contains("snapshot.bin"), "{err}");
        }
    }

    #[test]
    fn log_entries_of_before_restores_still_decode_and_apply() {
        // Commands as earlier builds wrote them into the log, by hand: a
        // new operation must leave the existing forms as they were.
        let old = [
            serde_json::json!({"op": {"Control": {"Register": {"node_id": 5, "role": "worker",
                "http_addr": "10.0.0.5:7080", "grpc_addr": "", "version": "0.1.0"}}}, "now_micros": 1}),
            serde_json::json!({"op": {"Control": {"DefineShards": {"tenant": "acme",
                "rule_group": "windows", "buckets": 2}}}, "now_micros": 2}),
            serde_json::json!({"op": {"Control": {"PutRuleSet": {"tenant": "acme", "name": "windows",
                "content": "rules", "expected_version": 0}}}, "now_micros": 3}),
            serde_json::json!({"op": {"Control": {"Assign": [[{"tenant": "acme",
                "rule_group": "windows", "bucket": 0}, 5]]}}, "now_micros": 4}),
            serde_json::json!({"op": {"Commit": {"files": [], "checkpoints": [{"source_id": "src",
                "topic": "t", "partition": 0, "next_offset": 10}]}}, "now_micros": 5}),
            serde_json::json!({"op": {"Control": {"Expire": {"node_id": 5, "incarnation": 1}}},
                "now_micros": 6}),
        ];
        let mut d = StateMachineData::default();
        for json in old {
            let c: Command = serde_json::from_value(json.clone()).expect("an old entry");
            d.apply_command(&c)
                .unwrap_or_else(|e| panic!("{json}: {e}"));
        }
        assert_eq!(d.catalog.checkpoints("src", "t")[0].next_offset, 10);
        assert_eq!(d.control.rule_sets(&acme()).len(), 1);
        let shards = d.control.shards();
        assert_eq!(shards.len(), 2);
        assert_eq!(
            (shards[0].holder, shards[0].epoch),
            (None, 2),
            "assigned, then expired"
        );
        assert!(d.control.member(5).is_some_and(|m| !m.alive));
        assert!(d.restored.is_none());
        // A snapshot of before restores (no `restored`) loads as it was.
        let mut snapshot = serde_json::to_value(&d).expect("json");
        assert!(snapshot.get("restored").is_none());
        snapshot.as_object_mut().expect("object").remove("restored");
        let loaded: StateMachineData = serde_json::from_value(snapshot).expect("old snapshot");
        assert_eq!(loaded.catalog, d.catalog);
    }
}

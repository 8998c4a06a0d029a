//! The catalog: the Raft-replicated, ordered list of every durable file in the
//! lake, with the source checkpoints committed alongside them.
//!
//! Every role reaches the catalog through the [`Catalog`] trait. Two
//! implementations exist: [`MemoryCatalog`] for unit tests and the
//! Raft-backed one in the coordinator (reached remotely through
//! [`crate::catalog_client::GrpcCatalog`]). Both apply commits with the same
//! [`CatalogState::apply_commit`], and both pass [`conformance`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::layout;
use crate::schema::Table;
use crate::tenant::TenantId;

/// One contiguous offset range of one Kafka partition read by one source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceRange {
    /// The ingest source (its consumer group) that read the range.
    pub source_id: String,
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// First offset in the file, inclusive.
    pub first_offset: i64,
    /// Last offset in the file, inclusive.
    pub last_offset: i64,
}

/// For one source and partition, the next offset to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceCheckpoint {
    /// The ingest source (its consumer group).
    pub source_id: String,
    /// Kafka topic.
    pub topic: String,
    /// Kafka partition.
    pub partition: i32,
    /// The first offset not yet durable in the lake.
    pub next_offset: i64,
}

/// A Parquet file to add to the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewFile {
    /// Deterministic id (see [`layout::file_id`]); the key of idempotent commits.
    pub file_id: String,
    /// Owning tenant.
    pub tenant: TenantId,
    /// Table the file belongs to.
    pub table: Table,
    /// Object key relative to the lake root.
    pub object_key: String,
    /// Smallest `time` in the file, microseconds since the epoch.
    pub min_time_micros: i64,
    /// Largest `time` in the file, microseconds since the epoch.
    pub max_time_micros: i64,
    /// Number of rows.
    pub row_count: u64,
    /// File size in bytes.
    pub byte_size: u64,
    /// Schema version the file was written with.
    pub schema_version: u32,
    /// The Kafka range the rows came from, if they came from Kafka.
    pub source: Option<SourceRange>,
}

/// A file as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogFile {
    /// The file as committed.
    pub file: NewFile,
    /// Per-tenant sequence number: the position of the file in the tenant's stream.
    pub sequence: u64,
    /// When the catalog accepted the file, microseconds since the epoch.
    pub committed_at_micros: i64,
}

/// Files and checkpoints that become visible together, in one Raft entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommitBatch {
    /// Files to add.
    pub files: Vec<NewFile>,
    /// Checkpoints to advance.
    pub checkpoints: Vec<SourceCheckpoint>,
}

/// The result of a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOutcome {
    /// The sequence number of each file, in request order.
    pub sequences: Vec<u64>,
    /// True when every file was already in the catalog (a retried commit).
    pub already_committed: bool,
}

/// Files that replace other files of the same tenant and table atomically:
/// compaction's swap of many small inputs for one output. Readers see either
/// all inputs or all outputs, never both and never neither.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSwap {
    /// Tenant of every input and output.
    pub tenant: TenantId,
    /// Table of every input and output.
    pub table: Table,
    /// File ids of the inputs; all must be in the catalog.
    pub inputs: Vec<String>,
    /// The files that hold the inputs' rows from now on.
    pub outputs: Vec<NewFile>,
}

/// Files to take out of the catalog (retention). Their objects may be deleted
/// once the removal is committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRemoval {
    /// Tenant of every file.
    pub tenant: TenantId,
    /// File ids to remove. Ids no longer in the catalog are skipped, so a
    /// retried removal is harmless.
    pub file_ids: Vec<String>,
    /// Why (for example "retention 30d"), kept in the change history.
    pub reason: String,
}

/// The result of a swap or removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeOutcome {
    /// The tenant's sequence after the change.
    pub sequence: u64,
    /// Sequence of each output file, in request order (swaps only).
    pub added_sequences: Vec<u64>,
    /// The files taken out, with their object keys (what may now be deleted).
    pub removed: Vec<CatalogFile>,
    /// True when the change had already been applied (a retry).
    pub already_committed: bool,
}

/// A file taken out of the catalog, as the change history reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedFile {
    /// The file's id.
    pub file_id: String,
    /// Its table.
    pub table: Table,
    /// Its object key.
    pub object_key: String,
    /// The sequence it was added at.
    pub sequence: u64,
}

/// One atomic change to one tenant's files: what a Raft entry did to it.
/// Sequences `first_sequence..=last_sequence` belong to this change; added
/// files hold the first ones, a removal takes the last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogChange {
    /// The tenant.
    pub tenant: String,
    /// First sequence of the change.
    pub first_sequence: u64,
    /// Last sequence of the change; resume a watch after it.
    pub last_sequence: u64,
    /// When the catalog applied the change, microseconds since the epoch.
    pub committed_at_micros: i64,
    /// Files added.
    pub added: Vec<CatalogFile>,
    /// Files removed.
    pub removed: Vec<RemovedFile>,
}

/// Changes of one tenant after a sequence, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChangePage {
    /// The changes.
    pub changes: Vec<CatalogChange>,
    /// The tenant's last sequence when the page was read.
    pub last_sequence: u64,
}

/// Changes kept per tenant for [`Catalog::changes_since`] (and the Watch
/// stream); a watcher further behind re-lists the files and resumes from the
/// listing's sequence. A constant, not a setting: every replica must keep
/// the same history to apply entries identically.
pub const CHANGES_KEPT_PER_TENANT: usize = 100_000;

/// Which files to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileQuery {
    /// Tenant whose files to list.
    pub tenant: TenantId,
    /// Table whose files to list.
    pub table: Table,
    /// Only files whose time range reaches this time (microseconds) or later.
    pub min_time_micros: Option<i64>,
    /// Only files whose time range starts at this time (microseconds) or earlier.
    pub max_time_micros: Option<i64>,
}

impl FileQuery {
    /// All files of a tenant's table.
    pub fn all(tenant: TenantId, table: Table) -> Self {
        FileQuery {
            tenant,
            table,
            min_time_micros: None,
            max_time_micros: None,
        }
    }
}

/// How current a listing is, as the answering catalog reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingInfo {
    /// "local" (the answering node's applied state, which may trail the
    /// leader) or "linearizable" (confirmed current by a quorum).
    pub consistency: String,
    /// The node that answered (0: in-memory catalog).
    pub served_by: u64,
    /// Its applied Raft index.
    pub applied_index: u64,
    /// The tenant's last sequence in the listed state: follow changes from here.
    pub as_of_sequence: u64,
}

/// Per-tenant totals.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TenantTotals {
    /// Tenant id.
    pub tenant: String,
    /// Highest sequence number assigned.
    pub last_sequence: u64,
    /// Files in the catalog.
    pub file_count: u64,
    /// Rows over all files.
    pub row_count: u64,
    /// Bytes over all files.
    pub byte_size: u64,
    /// The same per table, by table name.
    #[serde(default)]
    pub tables: Vec<TableTotals>,
}

/// One table's files of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TableTotals {
    /// Table name (`events`, `alerts`, …).
    pub table: String,
    /// Files in the catalog.
    pub file_count: u64,
    /// Rows over its files.
    pub row_count: u64,
    /// Bytes over its files.
    pub byte_size: u64,
}

/// What a catalog node reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CatalogStatus {
    /// This node's Raft id (0 for the in-memory catalog).
    pub node_id: u64,
    /// The current leader, if known.
    pub leader_id: Option<u64>,
    /// Current Raft term.
    pub current_term: u64,
    /// Index of the last log entry.
    pub last_log_index: u64,
    /// Index of the last entry applied to the state machine.
    pub last_applied_index: u64,
    /// Files in the catalog.
    pub file_count: u64,
    /// Totals per tenant.
    pub tenants: Vec<TenantTotals>,
}

/// Why the catalog refused a request, or could not serve it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CatalogError {
    /// The request is malformed; retrying it will not help.
    #[error("invalid catalog request: {reason}")]
    Invalid {
        /// What is wrong, naming the field.
        reason: String,
    },
    /// The request conflicts with what is committed; retrying it will not help.
    #[error("catalog conflict: {reason}")]
    Conflict {
        /// What conflicts, naming the file or partition.
        reason: String,
    },
    /// The catalog cannot serve right now (no leader, node unreachable); retry later.
    #[error("catalog unavailable: {reason}")]
    Unavailable {
        /// What failed.
        reason: String,
    },
    /// The change history no longer reaches back to the sequence asked for;
    /// list the files again and follow changes from the listing's sequence.
    #[error("catalog history compacted: {reason}")]
    HistoryCompacted {
        /// Which tenant, and the oldest sequence still available.
        reason: String,
    },
    /// The caller's credential (cluster secret or token) is missing or
    /// wrong (`unauthenticated: …`), or does not allow the call
    /// (`permission denied: …`); retrying it will not help.
    #[error("{reason}")]
    Denied {
        /// Which of the two, and why, as the coordinator said.
        reason: String,
    },
    /// A fault inside the catalog.
    #[error("catalog internal error: {reason}")]
    Internal {
        /// What failed.
        reason: String,
    },
}

impl CatalogError {
    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CatalogError::Unavailable { .. })
    }
}

/// The catalog, as every role sees it.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// Atomically adds files and advances checkpoints. Idempotent: committing a
    /// batch whose files are all present returns their sequences with
    /// `already_committed` set and changes nothing.
    async fn commit_batch(&self, batch: CommitBatch) -> Result<CommitOutcome, CatalogError>;

    /// Files of one tenant's table, in sequence order.
    async fn list_files(&self, query: FileQuery) -> Result<Vec<CatalogFile>, CatalogError>;

    /// Files of one tenant's table with how current the listing is and the
    /// sequence it was taken at. `linearizable` confirms with a quorum that
    /// the answering state is current (slower); otherwise the answering node's
    /// applied state is used and the answer says so.
    async fn list_files_as_of(
        &self,
        query: FileQuery,
        linearizable: bool,
    ) -> Result<(Vec<CatalogFile>, ListingInfo), CatalogError>;

    /// Every checkpoint of a source on a topic.
    async fn checkpoints(
        &self,
        source_id: &str,
        topic: &str,
    ) -> Result<Vec<SourceCheckpoint>, CatalogError>;

    /// Node and catalog status.
    async fn status(&self) -> Result<CatalogStatus, CatalogError>;

    /// Atomically replaces input files with output files (compaction).
    /// Idempotent: when every output is present and every input gone, returns
    /// `already_committed`; when only some inputs are gone (another change
    /// took them) the swap is refused as a conflict.
    async fn replace_files(&self, swap: FileSwap) -> Result<ChangeOutcome, CatalogError>;

    /// Removes files (retention). Ids already gone are skipped.
    async fn remove_files(&self, removal: FileRemoval) -> Result<ChangeOutcome, CatalogError>;

    /// Up to `limit` changes of `tenant` whose last sequence is after
    /// `after_sequence`, oldest first.
    async fn changes_since(
        &self,
        tenant: &TenantId,
        after_sequence: u64,
        limit: usize,
    ) -> Result<ChangePage, CatalogError>;
}

type CheckpointKey = (String, String, i32);

/// The catalog's contents and the one implementation of its commit rules,
/// shared by the in-memory catalog and the Raft state machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogState {
    /// Files by tenant, then sequence.
    files: BTreeMap<String, BTreeMap<u64, CatalogFile>>,
    /// file id → (tenant, sequence).
    file_index: HashMap<String, (String, u64)>,
    /// Last sequence per tenant.
    last_sequence: BTreeMap<String, u64>,
    /// (source, topic, partition) → next offset.
    #[serde(with = "checkpoint_map")]
    checkpoints: BTreeMap<CheckpointKey, i64>,
    /// The last [`CHANGES_KEPT_PER_TENANT`] changes per tenant.
    history: BTreeMap<String, std::collections::VecDeque<CatalogChange>>,
}

/// Serde for the tuple-keyed checkpoint map (JSON keys must be strings).
mod checkpoint_map {
    use super::{BTreeMap, CheckpointKey, SourceCheckpoint};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<CheckpointKey, i64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let list: Vec<SourceCheckpoint> = map
            .iter()
            .map(|((source_id, topic, partition), next)| SourceCheckpoint {
                source_id: source_id.clone(),
                topic: topic.clone(),
                partition: *partition,
                next_offset: *next,
            })
            .collect();
        list.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<CheckpointKey, i64>, D::Error> {
        let list = Vec::<SourceCheckpoint>::deserialize(d)?;
        Ok(list
            .into_iter()
            .map(|c| ((c.source_id, c.topic, c.partition), c.next_offset))
            .collect())
    }
}

impl CatalogState {
    /// Applies a commit at time `now_micros` (stamped by the leader, so every
    /// replica applies the same value). On error nothing changes.
    pub fn apply_commit(
        &mut self,
        batch: &CommitBatch,
        now_micros: i64,
    ) -> Result<CommitOutcome, CatalogError> {
        validate_batch(batch)?;

        // A retry of a batch that landed: every file is present with the same content.
        let present: Vec<Option<&CatalogFile>> =
            batch.files.iter().map(|f| self.get(&f.file_id)).collect();
        if !batch.files.is_empty() && present.iter().all(Option::is_some) {
            let mut sequences = Vec::with_capacity(batch.files.len());
            for (new, existing) in batch.files.iter().zip(present) {
                let existing = existing.ok_or_else(|| CatalogError::Internal {
                    reason: "index out of step".into(),
                })?;
                if existing.file != *new {
                    return Err(CatalogError::Conflict {
                        reason: format!(
                            "file {} is committed with different contents",
                            new.file_id
                        ),
                    });
                }
                sequences.push(existing.sequence);
            }
            return Ok(CommitOutcome {
                sequences,
                already_committed: true,
            });
        }
        if let Some(f) = batch
            .files
            .iter()
            .find(|f| self.file_index.contains_key(&f.file_id))
        {
            return Err(CatalogError::Conflict {
                reason: format!(
                    "file {} is already committed but the rest of its batch is not",
                    f.file_id
                ),
            });
        }

        // Fence: a range at or behind the checkpoint is a duplicate (a zombie
        // consumer or a replay that missed the checkpoint).
        for f in &batch.files {
            if let Some(src) = &f.source {
                let key = (src.source_id.clone(), src.topic.clone(), src.partition);
                if let Some(next) = self.checkpoints.get(&key)
                    && src.first_offset < *next
                {
                    return Err(CatalogError::Conflict {
                        reason: format!(
                            "offsets {}..={} of {}/{} (source {}) are already committed up to {}",
                            src.first_offset,
                            src.last_offset,
                            src.topic,
                            src.partition,
                            src.source_id,
                            next
                        ),
                    });
                }
            }
        }
        for c in &batch.checkpoints {
            let key = (c.source_id.clone(), c.topic.clone(), c.partition);
            if let Some(current) = self.checkpoints.get(&key)
                && c.next_offset < *current
            {
                return Err(CatalogError::Conflict {
                    reason: format!(
                        "checkpoint of {}/{} (source {}) would move back from {} to {}",
                        c.topic, c.partition, c.source_id, current, c.next_offset
                    ),
                });
            }
        }

        let sequences = self.add_files(&batch.files, now_micros, Vec::new());
        for c in &batch.checkpoints {
            self.checkpoints.insert(
                (c.source_id.clone(), c.topic.clone(), c.partition),
                c.next_offset,
            );
        }
        Ok(CommitOutcome {
            sequences,
            already_committed: false,
        })
    }

    /// Adds validated files, and records one change per tenant holding the
    /// added files (and, for a swap, the removed ones). Returns the files'
    /// sequences in order.
    fn add_files(
        &mut self,
        files: &[NewFile],
        now_micros: i64,
        mut removed: Vec<CatalogFile>,
    ) -> Vec<u64> {
        let mut sequences = Vec::with_capacity(files.len());
        let mut changes: BTreeMap<String, CatalogChange> = BTreeMap::new();
        for f in files {
            let tenant = f.tenant.as_str().to_string();
            let seq = self.last_sequence.entry(tenant.clone()).or_insert(0);
            *seq += 1;
            let sequence = *seq;
            let file = CatalogFile {
                file: f.clone(),
                sequence,
                committed_at_micros: now_micros,
            };
            self.file_index
                .insert(f.file_id.clone(), (tenant.clone(), sequence));
            self.files
                .entry(tenant.clone())
                .or_default()
                .insert(sequence, file.clone());
            changes
                .entry(tenant.clone())
                .or_insert_with(|| CatalogChange {
                    tenant,
                    first_sequence: sequence,
                    last_sequence: sequence,
                    committed_at_micros: now_micros,
                    added: Vec::new(),
                    removed: Vec::new(),
                })
                .added
                .push(file);
            sequences.push(sequence);
        }
        if !removed.is_empty() {
            let tenant = removed[0].file.tenant.as_str().to_string();
            let change = changes.entry(tenant.clone()).or_insert_with(|| {
                let next = self.last_sequence.get(&tenant).copied().unwrap_or(0) + 1;
                CatalogChange {
                    tenant: tenant.clone(),
                    first_sequence: next,
                    last_sequence: next,
                    committed_at_micros: now_micros,
                    added: Vec::new(),
                    removed: Vec::new(),
                }
            });
            // The removal takes a sequence of its own, after the added files.
            let seq = self.last_sequence.entry(tenant).or_insert(0);
            *seq += 1;
            change.removed = removed
                .drain(..)
                .map(|f| RemovedFile {
                    file_id: f.file.file_id,
                    table: f.file.table,
                    object_key: f.file.object_key,
                    sequence: f.sequence,
                })
                .collect();
        }
        for (tenant, mut change) in changes {
            change.last_sequence = self.last_sequence.get(&tenant).copied().unwrap_or(0);
            let history = self.history.entry(tenant).or_default();
            history.push_back(change);
            while history.len() > CHANGES_KEPT_PER_TENANT {
                history.pop_front();
            }
        }
        sequences
    }

    /// Takes files out of the index and the file map (validated before).
    fn take_files(&mut self, tenant: &TenantId, ids: &[String]) -> Vec<CatalogFile> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some((t, seq)) = self.file_index.remove(id)
                && let Some(file) = self.files.get_mut(&t).and_then(|m| m.remove(&seq))
            {
                out.push(file);
            }
        }
        if self
            .files
            .get(tenant.as_str())
            .is_some_and(BTreeMap::is_empty)
        {
            self.files.remove(tenant.as_str());
        }
        out
    }

    /// Applies a compaction swap at `now_micros`. On error nothing changes.
    pub fn apply_swap(
        &mut self,
        swap: &FileSwap,
        now_micros: i64,
    ) -> Result<ChangeOutcome, CatalogError> {
        let invalid = |reason: String| Err(CatalogError::Invalid { reason });
        if swap.inputs.is_empty() || swap.outputs.is_empty() {
            return invalid("a swap needs at least one input and one output".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, id) in swap.inputs.iter().enumerate() {
            if !seen.insert(id) {
                return invalid(format!("inputs[{i}] {id} appears twice"));
            }
        }
        validate_files(&swap.outputs, "outputs")?;
        for (i, f) in swap.outputs.iter().enumerate() {
            if f.tenant != swap.tenant || f.table != swap.table {
                return invalid(format!(
                    "outputs[{i}] belongs to {}/{}, not {}/{}",
                    f.tenant,
                    f.table.name(),
                    swap.tenant,
                    swap.table.name()
                ));
            }
            if swap.inputs.contains(&f.file_id) {
                return invalid(format!("outputs[{i}] {} is also an input", f.file_id));
            }
        }
        let outputs_present: Vec<Option<&CatalogFile>> =
            swap.outputs.iter().map(|f| self.get(&f.file_id)).collect();
        let inputs_present = swap
            .inputs
            .iter()
            .filter(|id| self.file_index.contains_key(id.as_str()))
            .count();
        if inputs_present == 0 && outputs_present.iter().all(Option::is_some) {
            let mut added_sequences = Vec::new();
            for (new, existing) in swap.outputs.iter().zip(outputs_present) {
                match existing {
                    Some(e) if e.file == *new => added_sequences.push(e.sequence),
                    _ => {
                        return Err(CatalogError::Conflict {
                            reason: format!(
                                "output {} is committed with different contents",
                                new.file_id
                            ),
                        });
                    }
                }
            }
            return Ok(ChangeOutcome {
                sequence: self.last_sequence(&swap.tenant),
                added_sequences,
                removed: Vec::new(),
                already_committed: true,
            });
        }
        if let Some(f) = swap
            .outputs
            .iter()
            .find(|f| self.file_index.contains_key(&f.file_id))
        {
            return Err(CatalogError::Conflict {
                reason: format!("output {} is already in the catalog", f.file_id),
            });
        }
        for id in &swap.inputs {
            match self.get(id) {
                None => {
                    return Err(CatalogError::Conflict {
                        reason: format!(
                            "input {id} is no longer in the catalog (another compaction or retention took it); nothing was swapped"
                        ),
                    });
                }
                Some(f) if f.file.tenant != swap.tenant || f.file.table != swap.table => {
                    return invalid(format!(
                        "input {id} belongs to {}/{}, not {}/{}",
                        f.file.tenant,
                        f.file.table.name(),
                        swap.tenant,
                        swap.table.name()
                    ));
                }
                Some(_) => {}
            }
        }
        let removed = self.take_files(&swap.tenant, &swap.inputs);
        let added_sequences = self.add_files(&swap.outputs, now_micros, removed.clone());
        Ok(ChangeOutcome {
            sequence: self.last_sequence(&swap.tenant),
            added_sequences,
            removed,
            already_committed: false,
        })
    }

    /// Applies a retention removal at `now_micros`. On error nothing changes.
    pub fn apply_removal(
        &mut self,
        removal: &FileRemoval,
        now_micros: i64,
    ) -> Result<ChangeOutcome, CatalogError> {
        if removal.file_ids.is_empty() {
            return Err(CatalogError::Invalid {
                reason: "a removal needs at least one file id".into(),
            });
        }
        for id in &removal.file_ids {
            if let Some(f) = self.get(id)
                && f.file.tenant != removal.tenant
            {
                return Err(CatalogError::Invalid {
                    reason: format!(
                        "file {id} belongs to tenant {}, not {}",
                        f.file.tenant, removal.tenant
                    ),
                });
            }
        }
        let removed = self.take_files(&removal.tenant, &removal.file_ids);
        let already_committed = removed.is_empty();
        if !already_committed {
            self.add_files(&[], now_micros, removed.clone());
        }
        Ok(ChangeOutcome {
            sequence: self.last_sequence(&removal.tenant),
            added_sequences: Vec::new(),
            removed,
            already_committed,
        })
    }

    /// Up to `limit` changes of `tenant` ending after `after_sequence`.
    pub fn changes_since(
        &self,
        tenant: &TenantId,
        after_sequence: u64,
        limit: usize,
    ) -> Result<ChangePage, CatalogError> {
        let last_sequence = self
            .last_sequence
            .get(tenant.as_str())
            .copied()
            .unwrap_or(0);
        let Some(history) = self.history.get(tenant.as_str()) else {
            return Ok(ChangePage {
                changes: Vec::new(),
                last_sequence,
            });
        };
        if let Some(oldest) = history.front()
            && after_sequence + 1 < oldest.first_sequence
        {
            return Err(CatalogError::HistoryCompacted {
                reason: format!(
                    "tenant {tenant}: changes after sequence {after_sequence} are no longer kept (oldest kept starts at {}); list the files again and follow changes from the listing's sequence",
                    oldest.first_sequence
                ),
            });
        }
        // History is in sequence order: find the first change ending after the cursor.
        let start = history.partition_point(|c| c.last_sequence <= after_sequence);
        Ok(ChangePage {
            changes: history.iter().skip(start).take(limit).cloned().collect(),
            last_sequence,
        })
    }

    /// The tenant's last sequence (0 before its first file).
    pub fn last_sequence(&self, tenant: &TenantId) -> u64 {
        self.last_sequence
            .get(tenant.as_str())
            .copied()
            .unwrap_or(0)
    }

    fn get(&self, file_id: &str) -> Option<&CatalogFile> {
        let (tenant, seq) = self.file_index.get(file_id)?;
        self.files.get(tenant)?.get(seq)
    }

    /// Files matching a query, in sequence order.
    pub fn list_files(&self, q: &FileQuery) -> Vec<CatalogFile> {
        let Some(files) = self.files.get(q.tenant.as_str()) else {
            return Vec::new();
        };
        files
            .values()
            .filter(|f| f.file.table == q.table)
            .filter(|f| {
                q.min_time_micros
                    .is_none_or(|min| f.file.max_time_micros >= min)
            })
            .filter(|f| {
                q.max_time_micros
                    .is_none_or(|max| f.file.min_time_micros <= max)
            })
            .cloned()
            .collect()
    }

    /// Checkpoints of a source on a topic.
    pub fn checkpoints(&self, source_id: &str, topic: &str) -> Vec<SourceCheckpoint> {
        self.checkpoints
            .iter()
            .filter(|((s, t, _), _)| s == source_id && t == topic)
            .map(|((s, t, p), next)| SourceCheckpoint {
                source_id: s.clone(),
                topic: t.clone(),
                partition: *p,
                next_offset: *next,
            })
            .collect()
    }

    /// Number of files over all tenants.
    pub fn file_count(&self) -> u64 {
        self.file_index.len() as u64
    }

    /// Number of source checkpoints (source, topic, partition) over all sources.
    pub fn checkpoint_count(&self) -> u64 {
        self.checkpoints.len() as u64
    }

    /// What the catalog holds, for a refusal to overwrite it ("12 files,
    /// 2 source checkpoints"); `None` when it never held anything: no
    /// file, no checkpoint, and no tenant ever took a sequence (a tenant
    /// whose files were all removed has used sequences, so it counts).
    pub fn contents(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.file_index.is_empty() {
            parts.push(format!("{} files", self.file_index.len()));
        }
        if !self.checkpoints.is_empty() {
            parts.push(format!("{} source checkpoints", self.checkpoints.len()));
        }
        let sequenced = self.last_sequence.values().filter(|s| **s > 0).count();
        if parts.is_empty() && (sequenced > 0 || !self.history.is_empty()) {
            parts.push(format!("the change history of {sequenced} tenants"));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// Totals per tenant.
    pub fn tenant_totals(&self) -> Vec<TenantTotals> {
        self.files
            .iter()
            .map(|(tenant, files)| {
                let mut tables = BTreeMap::<&str, TableTotals>::new();
                for f in files.values() {
                    let t = tables
                        .entry(f.file.table.name())
                        .or_insert_with(|| TableTotals {
                            table: f.file.table.name().to_string(),
                            ..TableTotals::default()
                        });
                    t.file_count += 1;
                    t.row_count += f.file.row_count;
                    t.byte_size += f.file.byte_size;
                }
                // One pass over the files: the tenant's totals are its tables'.
                let tables: Vec<TableTotals> = tables.into_values().collect();
                TenantTotals {
                    tenant: tenant.clone(),
                    last_sequence: self.last_sequence.get(tenant).copied().unwrap_or(0),
                    file_count: tables.iter().map(|t| t.file_count).sum(),
                    row_count: tables.iter().map(|t| t.row_count).sum(),
                    byte_size: tables.iter().map(|t| t.byte_size).sum(),
                    tables,
                }
            })
            .collect()
    }
}

fn validate_batch(batch: &CommitBatch) -> Result<(), CatalogError> {
    let invalid = |reason: String| Err(CatalogError::Invalid { reason });
    if batch.files.is_empty() && batch.checkpoints.is_empty() {
        return invalid("a commit needs at least one file or checkpoint".into());
    }
    validate_files(&batch.files, "files")?;
    for (i, c) in batch.checkpoints.iter().enumerate() {
        if c.source_id.is_empty() || c.topic.is_empty() || c.next_offset < 0 {
            return invalid(format!(
                "checkpoints[{i}] needs a source_id, a topic and a non-negative next_offset"
            ));
        }
    }
    Ok(())
}

/// Checks new files; `what` names the list in messages.
fn validate_files(files: &[NewFile], what: &str) -> Result<(), CatalogError> {
    let invalid = |reason: String| Err(CatalogError::Invalid { reason });
    let mut ids = std::collections::HashSet::new();
    for (i, f) in files.iter().enumerate() {
        if f.file_id.is_empty() {
            return invalid(format!("{what}[{i}].file_id is empty"));
        }
        if !ids.insert(&f.file_id) {
            return invalid(format!(
                "{what}[{i}].file_id {} appears twice in the batch",
                f.file_id
            ));
        }
        let prefix = layout::table_prefix(&f.tenant, f.table);
        if !f.object_key.starts_with(&prefix) || !f.object_key.ends_with(".parquet") {
            return invalid(format!(
                "{what}[{i}].object_key {} is not a parquet file under {prefix}",
                f.object_key
            ));
        }
        if f.min_time_micros > f.max_time_micros {
            return invalid(format!("{what}[{i}] has min_time after max_time"));
        }
        if let Some(src) = &f.source
            && (src.first_offset < 0 || src.last_offset < src.first_offset)
        {
            return invalid(format!(
                "{what}[{i}].source has a bad offset range {}..={}",
                src.first_offset, src.last_offset
            ));
        }
    }
    Ok(())
}

/// The in-memory catalog, for unit tests of the roles.
#[derive(Debug, Default)]
pub struct MemoryCatalog {
    state: Mutex<CatalogState>,
}

impl MemoryCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, CatalogState>, CatalogError> {
        self.state.lock().map_err(|_| CatalogError::Internal {
            reason: "catalog lock poisoned".into(),
        })
    }
}

#[async_trait]
impl Catalog for MemoryCatalog {
    async fn commit_batch(&self, batch: CommitBatch) -> Result<CommitOutcome, CatalogError> {
        let now = crate::time::now_micros();
        self.lock()?.apply_commit(&batch, now)
    }

    async fn list_files(&self, query: FileQuery) -> Result<Vec<CatalogFile>, CatalogError> {
        Ok(self.lock()?.list_files(&query))
    }

    async fn checkpoints(
        &self,
        source_id: &str,
        topic: &str,
    ) -> Result<Vec<SourceCheckpoint>, CatalogError> {
        Ok(self.lock()?.checkpoints(source_id, topic))
    }

    async fn list_files_as_of(
        &self,
        query: FileQuery,
        _linearizable: bool,
    ) -> Result<(Vec<CatalogFile>, ListingInfo), CatalogError> {
        let state = self.lock()?;
        Ok((
            state.list_files(&query),
            ListingInfo {
                // One copy in one process: always current.
                consistency: "linearizable".into(),
                served_by: 0,
                applied_index: 0,
                as_of_sequence: state.last_sequence(&query.tenant),
            },
        ))
    }

    async fn replace_files(&self, swap: FileSwap) -> Result<ChangeOutcome, CatalogError> {
        let now = crate::time::now_micros();
        self.lock()?.apply_swap(&swap, now)
    }

    async fn remove_files(&self, removal: FileRemoval) -> Result<ChangeOutcome, CatalogError> {
        let now = crate::time::now_micros();
        self.lock()?.apply_removal(&removal, now)
    }

    async fn changes_since(
        &self,
        tenant: &TenantId,
        after_sequence: u64,
        limit: usize,
    ) -> Result<ChangePage, CatalogError> {
        self.lock()?.changes_since(tenant, after_sequence, limit)
    }

    async fn status(&self) -> Result<CatalogStatus, CatalogError> {
        let state = self.lock()?;
        Ok(CatalogStatus {
            file_count: state.file_count(),
            tenants: state.tenant_totals(),
            ..CatalogStatus::default()
        })
    }
}

/// The behaviour every [`Catalog`] implementation must show. Each function
/// takes a fresh, empty catalog and panics on a violation; implementations run
/// all of them from their own tests (see [`conformance::run_all`]).
pub mod conformance {
    use super::*;

    fn tenant(name: &str) -> TenantId {
        TenantId::new(name).expect("valid tenant id")
    }

    /// A file of `tenant`'s events from `topic`/`partition` offsets `first..=last`.
    pub fn kafka_file(
        tenant_name: &str,
        topic: &str,
        partition: i32,
        first: i64,
        last: i64,
    ) -> NewFile {
        let t = tenant(tenant_name);
        let source = SourceRange {
            source_id: "src".into(),
            topic: topic.into(),
            partition,
            first_offset: first,
            last_offset: last,
        };
        let file_id = layout::file_id_for_range(&source, &t, Table::Events, 1_700_000_000_000_000);
        NewFile {
            object_key: layout::object_key(&t, Table::Events, 1_700_000_000_000_000, &file_id),
            file_id,
            tenant: t,
            table: Table::Events,
            min_time_micros: 1_700_000_000_000_000 + first,
            max_time_micros: 1_700_000_000_000_000 + last,
            row_count: (last - first + 1) as u64,
            byte_size: 1000,
            schema_version: 1,
            source: Some(source),
        }
    }

    fn checkpoint(topic: &str, partition: i32, next: i64) -> SourceCheckpoint {
        SourceCheckpoint {
            source_id: "src".into(),
            topic: topic.into(),
            partition,
            next_offset: next,
        }
    }

    /// Sequences start at 1 per tenant and grow by one per file.
    pub async fn sequences_are_per_tenant(catalog: &dyn Catalog) {
        let a = catalog
            .commit_batch(CommitBatch {
                files: vec![
                    kafka_file("acme", "t", 0, 0, 9),
                    kafka_file("acme", "t", 1, 0, 4),
                ],
                checkpoints: vec![checkpoint("t", 0, 10), checkpoint("t", 1, 5)],
            })
            .await
            .expect("first commit");
        assert_eq!(a.sequences, vec![1, 2]);
        assert!(!a.already_committed);
        let b = catalog
            .commit_batch(CommitBatch {
                files: vec![kafka_file("globex", "t", 2, 0, 0)],
                checkpoints: vec![],
            })
            .await
            .expect("other tenant");
        assert_eq!(b.sequences, vec![1]);
        let files = catalog
            .list_files(FileQuery::all(tenant("acme"), Table::Events))
            .await
            .expect("list");
        assert_eq!(
            files.iter().map(|f| f.sequence).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(
            catalog
                .list_files(FileQuery::all(tenant("acme"), Table::DeadLetter))
                .await
                .expect("list")
                .is_empty()
        );
    }

    /// Committing the same batch twice changes nothing the second time.
    pub async fn commit_is_idempotent(catalog: &dyn Catalog) {
        let batch = CommitBatch {
            files: vec![kafka_file("acme", "t", 0, 0, 9)],
            checkpoints: vec![checkpoint("t", 0, 10)],
        };
        let first = catalog.commit_batch(batch.clone()).await.expect("first");
        let again = catalog.commit_batch(batch).await.expect("retry");
        assert_eq!(first.sequences, again.sequences);
        assert!(again.already_committed);
        let files = catalog
            .list_files(FileQuery::all(tenant("acme"), Table::Events))
            .await
            .expect("list");
        assert_eq!(files.len(), 1);
        let cps = catalog.checkpoints("src", "t").await.expect("checkpoints");
        assert_eq!(cps, vec![checkpoint("t", 0, 10)]);
    }

    /// A range behind the checkpoint is refused as a duplicate; nothing changes.
    pub async fn ranges_behind_checkpoint_are_refused(catalog: &dyn Catalog) {
        catalog
            .commit_batch(CommitBatch {
                files: vec![kafka_file("acme", "t", 0, 0, 9)],
                checkpoints: vec![checkpoint("t", 0, 10)],
            })
            .await
            .expect("first");
        // Same partition, overlapping range, different boundaries: a replay that missed the checkpoint.
        let err = catalog
            .commit_batch(CommitBatch {
                files: vec![kafka_file("acme", "t", 0, 5, 14)],
                checkpoints: vec![checkpoint("t", 0, 15)],
            })
            .await
            .expect_err("overlap must be refused");
        assert!(matches!(err, CatalogError::Conflict { .. }), "{err:?}");
        assert!(
            err.to_string().contains("already committed up to 10"),
            "{err}"
        );
        let err = catalog
            .commit_batch(CommitBatch {
                files: vec![],
                checkpoints: vec![checkpoint("t", 0, 3)],
            })
            .await
            .expect_err("checkpoint must not move back");
        assert!(matches!(err, CatalogError::Conflict { .. }), "{err:?}");
        assert_eq!(
            catalog
                .list_files(FileQuery::all(tenant("acme"), Table::Events))
                .await
                .expect("list")
                .len(),
            1
        );
        assert_eq!(
            catalog.checkpoints("src", "t").await.expect("cps"),
            vec![checkpoint("t", 0, 10)]
        );
        // The next range is accepted.
        catalog
            .commit_batch(CommitBatch {
                files: vec![kafka_file("acme", "t", 0, 10, 19)],
                checkpoints: vec![checkpoint("t", 0, 20)],
            })
            .await
            .expect("next range");
    }

    /// Malformed commits are refused naming the field.
    pub async fn malformed_commits_are_refused(catalog: &dyn Catalog) {
        let err = catalog
            .commit_batch(CommitBatch::default())
            .await
            .expect_err("empty");
        assert!(matches!(err, CatalogError::Invalid { .. }), "{err:?}");
        let mut f = kafka_file("acme", "t", 0, 0, 9);
        f.object_key = "elsewhere/x.parquet".into();
        let err = catalog
            .commit_batch(CommitBatch {
                files: vec![f],
                checkpoints: vec![],
            })
            .await
            .expect_err("bad key");
        assert!(err.to_string().contains("files[0].object_key"), "{err}");
        assert!(catalog.status().await.expect("status").file_count == 0);
    }

    /// Listing filters by time range overlap.
    pub async fn list_filters_by_time(catalog: &dyn Catalog) {
        catalog
            .commit_batch(CommitBatch {
                files: vec![
                    kafka_file("acme", "t", 0, 0, 9),
                    kafka_file("acme", "t", 1, 100, 109),
                ],
                checkpoints: vec![],
            })
            .await
            .expect("commit");
        let base = 1_700_000_000_000_000;
        let mut q = FileQuery::all(tenant("acme"), Table::Events);
        q.min_time_micros = Some(base + 50);
        let files = catalog.list_files(q.clone()).await.expect("list");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].file.min_time_micros, base + 100);
        q.min_time_micros = None;
        q.max_time_micros = Some(base + 9);
        assert_eq!(catalog.list_files(q).await.expect("list").len(), 1);
    }

    /// A compaction output of `tenant`'s events named `name` (no source range).
    pub fn compacted_file(tenant_name: &str, name: &str, rows: u64) -> NewFile {
        let t = tenant(tenant_name);
        let file_id = format!("compacted-{name}");
        NewFile {
            object_key: layout::object_key(&t, Table::Events, 1_700_000_000_000_000, &file_id),
            file_id,
            tenant: t,
            table: Table::Events,
            min_time_micros: 1_700_000_000_000_000,
            max_time_micros: 1_700_000_000_000_100,
            row_count: rows,
            byte_size: 5000,
            schema_version: 1,
            source: None,
        }
    }

    fn ids(files: &[CatalogFile]) -> Vec<String> {
        files.iter().map(|f| f.file.file_id.clone()).collect()
    }

    /// A swap replaces its inputs by its outputs in one step, once.
    pub async fn swap_replaces_inputs_atomically(catalog: &dyn Catalog) {
        let inputs: Vec<NewFile> = (0..3).map(|p| kafka_file("acme", "t", p, 0, 9)).collect();
        catalog
            .commit_batch(CommitBatch {
                files: inputs.clone(),
                checkpoints: vec![],
            })
            .await
            .expect("commit inputs");
        let swap = FileSwap {
            tenant: tenant("acme"),
            table: Table::Events,
            inputs: vec![inputs[0].file_id.clone(), inputs[1].file_id.clone()],
            outputs: vec![compacted_file("acme", "a", 20)],
        };
        let out = catalog.replace_files(swap.clone()).await.expect("swap");
        assert!(!out.already_committed);
        assert_eq!(out.added_sequences, vec![4]);
        assert_eq!(out.sequence, 5, "the removal takes its own sequence");
        assert_eq!(
            ids(&out.removed),
            vec![inputs[0].file_id.clone(), inputs[1].file_id.clone()]
        );
        let listed = catalog
            .list_files(FileQuery::all(tenant("acme"), Table::Events))
            .await
            .expect("list");
        assert_eq!(
            ids(&listed),
            vec![inputs[2].file_id.clone(), "compacted-a".to_string()]
        );
        let again = catalog.replace_files(swap.clone()).await.expect("retry");
        assert!(again.already_committed);
        assert_eq!(again.added_sequences, vec![4]);
        // A swap whose input another change took is refused and changes nothing.
        let err = catalog
            .replace_files(FileSwap {
                inputs: vec![inputs[0].file_id.clone(), inputs[2].file_id.clone()],
                outputs: vec![compacted_file("acme", "b", 20)],
                ..swap.clone()
            })
            .await
            .expect_err("input gone");
        assert!(matches!(err, CatalogError::Conflict { .. }), "{err:?}");
        assert!(err.to_string().contains(&inputs[0].file_id), "{err}");
        assert_eq!(
            catalog
                .list_files(FileQuery::all(tenant("acme"), Table::Events))
                .await
                .expect("list")
                .len(),
            2
        );
        // Outputs must belong to the swap's tenant.
        let err = catalog
            .replace_files(FileSwap {
                inputs: vec![inputs[2].file_id.clone()],
                outputs: vec![compacted_file("globex", "c", 1)],
                ..swap
            })
            .await
            .expect_err("wrong tenant");
        assert!(err.to_string().contains("outputs[0]"), "{err}");
    }

    /// Removal takes files out once; a retry is harmless.
    pub async fn removal_is_idempotent(catalog: &dyn Catalog) {
        let f = kafka_file("acme", "t", 0, 0, 9);
        catalog
            .commit_batch(CommitBatch {
                files: vec![f.clone(), kafka_file("acme", "t", 1, 0, 9)],
                checkpoints: vec![],
            })
            .await
            .expect("commit");
        let removal = FileRemoval {
            tenant: tenant("acme"),
            file_ids: vec![f.file_id.clone()],
            reason: "retention 30d".into(),
        };
        let out = catalog.remove_files(removal.clone()).await.expect("remove");
        assert!(!out.already_committed);
        assert_eq!(out.removed.len(), 1);
        assert_eq!(out.removed[0].file.object_key, f.object_key);
        let again = catalog.remove_files(removal).await.expect("retry");
        assert!(again.already_committed);
        assert!(again.removed.is_empty());
        assert_eq!(again.sequence, out.sequence);
        assert_eq!(
            catalog
                .list_files(FileQuery::all(tenant("acme"), Table::Events))
                .await
                .expect("list")
                .len(),
            1
        );
    }

    /// Following changes page by page from any sequence gives each change
    /// once, in order, and rebuilds the listing.
    pub async fn changes_resume_without_gap_or_duplicate(catalog: &dyn Catalog) {
        let acme = tenant("acme");
        for p in 0..4 {
            catalog
                .commit_batch(CommitBatch {
                    files: vec![
                        kafka_file("acme", "t", p, 0, 9),
                        kafka_file("globex", "u", p, 0, 9),
                    ],
                    checkpoints: vec![],
                })
                .await
                .expect("commit");
        }
        let first = kafka_file("acme", "t", 0, 0, 9).file_id;
        let second = kafka_file("acme", "t", 1, 0, 9).file_id;
        catalog
            .replace_files(FileSwap {
                tenant: acme.clone(),
                table: Table::Events,
                inputs: vec![first, second],
                outputs: vec![compacted_file("acme", "z", 20)],
            })
            .await
            .expect("swap");
        let mut cursor = 0;
        let mut live: Vec<String> = Vec::new();
        let mut seen = Vec::new();
        loop {
            let page = catalog.changes_since(&acme, cursor, 1).await.expect("page");
            let Some(change) = page.changes.first() else {
                break;
            };
            assert_eq!(change.tenant, "acme");
            assert!(change.first_sequence > cursor, "no change twice");
            seen.push((change.first_sequence, change.last_sequence));
            live.retain(|id| !change.removed.iter().any(|r| &r.file_id == id));
            live.extend(change.added.iter().map(|f| f.file.file_id.clone()));
            cursor = change.last_sequence;
        }
        assert_eq!(seen, vec![(1, 1), (2, 2), (3, 3), (4, 4), (5, 6)]);
        let listed = catalog
            .list_files(FileQuery::all(acme.clone(), Table::Events))
            .await
            .expect("list");
        assert_eq!(live, ids(&listed));
        let page = catalog
            .changes_since(&acme, 6, 10)
            .await
            .expect("at the end");
        assert!(page.changes.is_empty());
        assert_eq!(page.last_sequence, 6);
    }

    /// Runs every conformance check, each on a catalog from `fresh`.
    pub async fn run_all<C, F, Fut>(mut fresh: F)
    where
        C: Catalog,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = C>,
    {
        sequences_are_per_tenant(&fresh().await).await;
        commit_is_idempotent(&fresh().await).await;
        ranges_behind_checkpoint_are_refused(&fresh().await).await;
        malformed_commits_are_refused(&fresh().await).await;
        list_filters_by_time(&fresh().await).await;
        swap_replaces_inputs_atomically(&fresh().await).await;
        removal_is_idempotent(&fresh().await).await;
        changes_resume_without_gap_or_duplicate(&fresh().await).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_catalog_conforms() {
        conformance::run_all(|| async { MemoryCatalog::new() }).await;
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut state = CatalogState::default();
        state
            .apply_commit(
                &CommitBatch {
                    files: vec![conformance::kafka_file("acme", "t", 0, 0, 9)],
                    checkpoints: vec![SourceCheckpoint {
                        source_id: "src".into(),
                        topic: "t".into(),
                        partition: 0,
                        next_offset: 10,
                    }],
                },
                42,
            )
            .expect("commit");
        let json = serde_json::to_vec(&state).expect("serialize");
        let back: CatalogState = serde_json::from_slice(&json).expect("deserialize");
        assert_eq!(back, state);
    }
}

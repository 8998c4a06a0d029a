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

    /// Every checkpoint of a source on a topic.
    async fn checkpoints(
        &self,
        source_id: &str,
        topic: &str,
    ) -> Result<Vec<SourceCheckpoint>, CatalogError>;

    /// Node and catalog status.
    async fn status(&self) -> Result<CatalogStatus, CatalogError>;
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

        let mut sequences = Vec::with_capacity(batch.files.len());
        for f in &batch.files {
            let tenant = f.tenant.as_str().to_string();
            let seq = self.last_sequence.entry(tenant.clone()).or_insert(0);
            *seq += 1;
            let sequence = *seq;
            self.file_index
                .insert(f.file_id.clone(), (tenant.clone(), sequence));
            self.files.entry(tenant).or_default().insert(
                sequence,
                CatalogFile {
                    file: f.clone(),
                    sequence,
                    committed_at_micros: now_micros,
                },
            );
            sequences.push(sequence);
        }
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

    /// Totals per tenant.
    pub fn tenant_totals(&self) -> Vec<TenantTotals> {
        self.files
            .iter()
            .map(|(tenant, files)| TenantTotals {
                tenant: tenant.clone(),
                last_sequence: self.last_sequence.get(tenant).copied().unwrap_or(0),
                file_count: files.len() as u64,
                row_count: files.values().map(|f| f.file.row_count).sum(),
                byte_size: files.values().map(|f| f.file.byte_size).sum(),
            })
            .collect()
    }
}

fn validate_batch(batch: &CommitBatch) -> Result<(), CatalogError> {
    let invalid = |reason: String| Err(CatalogError::Invalid { reason });
    if batch.files.is_empty() && batch.checkpoints.is_empty() {
        return invalid("a commit needs at least one file or checkpoint".into());
    }
    let mut ids = std::collections::HashSet::new();
    for (i, f) in batch.files.iter().enumerate() {
        if f.file_id.is_empty() {
            return invalid(format!("files[{i}].file_id is empty"));
        }
        if !ids.insert(&f.file_id) {
            return invalid(format!(
                "files[{i}].file_id {} appears twice in the batch",
                f.file_id
            ));
        }
        let prefix = layout::table_prefix(&f.tenant, f.table);
        if !f.object_key.starts_with(&prefix) || !f.object_key.ends_with(".parquet") {
            return invalid(format!(
                "files[{i}].object_key {} is not a parquet file under {prefix}",
                f.object_key
            ));
        }
        if f.min_time_micros > f.max_time_micros {
            return invalid(format!("files[{i}] has min_time after max_time"));
        }
        if let Some(src) = &f.source
            && (src.first_offset < 0 || src.last_offset < src.first_offset)
        {
            return invalid(format!(
                "files[{i}].source has a bad offset range {}..={}",
                src.first_offset, src.last_offset
            ));
        }
    }
    for (i, c) in batch.checkpoints.iter().enumerate() {
        if c.source_id.is_empty() || c.topic.is_empty() || c.next_offset < 0 {
            return invalid(format!(
                "checkpoints[{i}] needs a source_id, a topic and a non-negative next_offset"
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
        let file_id = layout::file_id_for_range(&source, Table::Events, 1_700_000_000_000_000);
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

//! Compaction: the short flush interval (the floor of detection latency)
//! leaves many small Parquet files per (tenant, table, hour). Ingest nodes
//! merge them in the background into large, time-sorted files and swap
//! inputs for outputs in one catalog change ([`Catalog::replace_files`]), so
//! queries see either the small files or the merged one, never both.
//!
//! Every step is safe to interrupt or to run on several nodes at once:
//!
//! - the output's file id derives from its inputs' ids and the writer
//!   settings, and the merge is deterministic, so a retry after a crash
//!   between the write and the swap rewrites the same object and the swap is
//!   idempotent;
//! - the catalog refuses a swap whose inputs another swap took, and the
//!   losing node then deletes its own output, which no one committed;
//! - inputs are deleted from storage only after `delete_grace_ms` (see
//!   [`crate::retention::Janitor`]), so running queries can finish.
//!
//! To avoid wasted work each node takes the partitions whose hash modulo the
//! number of live ingest nodes is its rank ([`Assignment`]). This module also
//! holds the background loop ([`Maintenance`]) that runs retention,
//! compaction and the janitor every `interval_ms`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use spoor_common::catalog::{Catalog, CatalogError, CatalogFile, FileQuery, FileSwap, NewFile};
use spoor_common::config::CompactionConfig;
use spoor_common::control::{ControlClient, Role, TenantRecord};
use spoor_common::layout;
use spoor_common::schema::{
    ALERT_COLUMNS, ALERT_UPDATE_COLUMNS, ColumnDef, DEAD_LETTER_COLUMNS, EVENT_COLUMNS, Table,
};
use spoor_common::tenant::TenantId;
use tokio_util::sync::CancellationToken;

use crate::error::IngestError;
use crate::lake_writer::{encode_parquet, sort_by_time, time_range};
use crate::retention::{self, DeleteReason, Janitor};

/// One hour in microseconds: the lake's partition size.
pub const HOUR_MICROS: i64 = 3_600_000_000;

/// The tables whose small files are compacted (alerts are few and large;
/// an alert update is one small file per API call, and the audit trail one
/// small file per node every few seconds, so they are merged too).
pub const COMPACTED_TABLES: [Table; 4] = [
    Table::Events,
    Table::DeadLetter,
    Table::AlertUpdates,
    Table::Audit,
];

/// How often a swap refused as unavailable is retried before the output is
/// left for a later round (the swap is idempotent, so a retry is harmless).
const SWAP_ATTEMPTS: u32 = 4;

/// What can go wrong while compacting, applying retention or deleting.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// The catalog refused or could not serve a request.
    #[error("{context}: {source}")]
    Catalog {
        /// What was being done.
        context: String,
        /// The cause.
        source: CatalogError,
    },
    /// The object store failed.
    #[error("{context} {key}: {source}")]
    Store {
        /// What was being done.
        context: &'static str,
        /// The object key or prefix.
        key: String,
        /// The cause.
        source: object_store::Error,
    },
    /// An input is not readable Parquet.
    #[error("reading parquet {key}: {source}")]
    Read {
        /// The input's object key.
        key: String,
        /// The cause.
        source: parquet::errors::ParquetError,
    },
    /// An input's rows could not be decoded.
    #[error("decoding parquet {key}: {source}")]
    Decode {
        /// The input's object key.
        key: String,
        /// The cause.
        source: arrow::error::ArrowError,
    },
    /// The inputs' rows could not be put together.
    #[error("merging the inputs of {output}: {source}")]
    Merge {
        /// The output's object key.
        output: String,
        /// The cause.
        source: arrow::error::ArrowError,
    },
    /// The merged rows could not be sorted or encoded.
    #[error("writing {output}: {source}")]
    Encode {
        /// The output's object key.
        output: String,
        /// The cause (boxed: it is large and rare).
        source: Box<IngestError>,
    },
    /// Inputs with different schemas cannot share a file.
    #[error("{key} has a different schema than the other inputs of {output}; not merged")]
    SchemaMismatch {
        /// The odd input.
        key: String,
        /// The output's object key.
        output: String,
    },
    /// The inputs do not hold the rows the catalog says they hold.
    #[error("the inputs of {output} hold {got} rows but the catalog lists {expected}; not swapped")]
    RowCount {
        /// The output's object key.
        output: String,
        /// Rows per the catalog.
        expected: u64,
        /// Rows read.
        got: u64,
    },
    /// The blocking merge task died.
    #[error("the merge task of {output} failed: {reason}")]
    Task {
        /// The output's object key.
        output: String,
        /// Why.
        reason: String,
    },
}

fn catalog_err(context: impl Into<String>) -> impl FnOnce(CatalogError) -> MaintenanceError {
    let context = context.into();
    move |source| MaintenanceError::Catalog { context, source }
}

/// Which partitions this node looks after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// Every partition: the member list is unknown, or this node is not in it yet.
    All,
    /// Partitions whose hash modulo `of` is `rank`.
    Share {
        /// This node's place among the live ingest nodes sorted by id.
        rank: usize,
        /// How many live ingest nodes there are.
        of: usize,
    },
}

impl Assignment {
    /// This node's share among `live_ingest_nodes` (ids, any order).
    pub fn among(node_id: u64, live_ingest_nodes: &[u64]) -> Assignment {
        let mut ids = live_ingest_nodes.to_vec();
        ids.sort_unstable();
        ids.dedup();
        match ids.iter().position(|&id| id == node_id) {
            Some(rank) => Assignment::Share {
                rank,
                of: ids.len(),
            },
            None => Assignment::All,
        }
    }

    /// Whether this node looks after the partition or prefix `key`.
    pub fn owns(&self, key: &str) -> bool {
        match *self {
            Assignment::All => true,
            Assignment::Share { rank, of } => stable_hash(key) % of.max(1) as u64 == rank as u64,
        }
    }
}

/// FNV-1a: the same on every node and every build, unlike `DefaultHasher`,
/// so that nodes agree on who owns a partition.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The partition (`tenants/{t}/{table}/date=…/hour=HH`) an object key is in.
pub fn partition_of(object_key: &str) -> &str {
    object_key
        .rsplit_once('/')
        .map_or(object_key, |(dir, _)| dir)
}

/// What this node knows of the cluster at the start of a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// Registered tenants with their retention; `None` when the
    /// coordinators could not be asked (retention then waits a round).
    pub tenants: Option<Vec<TenantRecord>>,
    /// This node's share of the partitions.
    pub assignment: Assignment,
    /// Per tenant with correlation shards, the lowest catalog position of
    /// its shards: `events` files after it are not compacted yet, because a
    /// worker still has to read them as committed (and their objects would
    /// be deleted after the grace). `None` when the coordinators could not
    /// be asked: no `events` file is compacted that round.
    pub correlation_positions: Option<BTreeMap<String, u64>>,
}

impl ClusterView {
    /// Asks the coordinators; falls back to every partition and no
    /// retention when they do not answer.
    pub async fn fetch(control: &ControlClient, node_id: u64) -> ClusterView {
        match control.cluster_status().await {
            Ok(status) => {
                let live: Vec<u64> = status
                    .members
                    .iter()
                    .filter(|m| m.member.alive)
                    .filter(|m| matches!(m.member.info.role, Role::Ingest | Role::Standalone))
                    .map(|m| m.member.info.node_id)
                    .collect();
                let mut positions: BTreeMap<String, u64> = BTreeMap::new();
                for shard in &status.shards {
                    let at = shard.checkpoint.as_ref().map_or(0, |c| c.catalog_sequence);
                    positions
                        .entry(shard.id.tenant.clone())
                        .and_modify(|p| *p = (*p).min(at))
                        .or_insert(at);
                }
                ClusterView {
                    tenants: Some(status.tenants),
                    assignment: Assignment::among(node_id, &live),
                    correlation_positions: Some(positions),
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "cluster status unavailable; compacting every partition, retention waits");
                ClusterView {
                    tenants: None,
                    assignment: Assignment::All,
                    correlation_positions: None,
                }
            }
        }
    }
}

/// Small files of one partition that become one output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionPlan {
    /// Owning tenant.
    pub tenant: TenantId,
    /// Table.
    pub table: Table,
    /// Start of the partition's hour, microseconds.
    pub hour_micros: i64,
    /// The inputs, sorted by file id.
    pub inputs: Vec<CatalogFile>,
}

impl CompactionPlan {
    /// The output's file id: derived from the input ids and the writer
    /// settings only, so a retry (same inputs, same settings) writes the same
    /// object, and nodes with other settings never overwrite it with other
    /// bytes under a committed id.
    pub fn output_id(&self, zstd_level: i32) -> String {
        let mut name = format!("compaction:{}:zstd{zstd_level}", env!("CARGO_PKG_VERSION"));
        for f in &self.inputs {
            name.push(':');
            name.push_str(&f.file.file_id);
        }
        layout::file_id_for_request(&name, &self.tenant, self.table, self.hour_micros)
    }

    /// Rows over all inputs, as the catalog lists them.
    pub fn row_count(&self) -> u64 {
        self.inputs.iter().map(|f| f.file.row_count).sum()
    }
}

/// How one plan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompactionOutcome {
    /// The swap was committed by this call.
    Swapped(NewFile),
    /// The same swap was already committed (a retry, or another node with
    /// the same inputs).
    AlreadySwapped(NewFile),
    /// Another change took an input first; this node's output was deleted.
    LostRace,
    /// The swap could not be confirmed in time; the output stays for a later
    /// round's retry or, if never committed, the orphan scan.
    Abandoned,
}

/// Merges the small files of partitions.
#[derive(Clone)]
pub struct Compactor {
    catalog: Arc<dyn Catalog>,
    store: Arc<dyn ObjectStore>,
    config: CompactionConfig,
    zstd_level: i32,
    multipart_threshold: usize,
}

impl std::fmt::Debug for Compactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compactor")
            .field("config", &self.config)
            .field("zstd_level", &self.zstd_level)
            .finish_non_exhaustive()
    }
}

/// What one compaction pass over a tenant did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Swaps committed.
    pub swaps: usize,
    /// Input files those swaps replaced.
    pub inputs: usize,
    /// Plans that lost to another change.
    pub lost: usize,
    /// Plans that failed (logged).
    pub failed: usize,
}

impl Compactor {
    /// A compactor writing with the same settings as the ingest writer.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        store: Arc<dyn ObjectStore>,
        config: CompactionConfig,
        zstd_level: i32,
    ) -> Self {
        Compactor {
            catalog,
            store,
            config,
            zstd_level,
            multipart_threshold: spoor_common::config::DEFAULT_MULTIPART_THRESHOLD_BYTES as usize,
        }
    }

    /// Outputs larger than `bytes` go up as multipart uploads
    /// (`storage.s3.multipart_threshold_bytes`).
    pub fn with_multipart_threshold(mut self, bytes: usize) -> Self {
        self.multipart_threshold = bytes;
        self
    }

    /// The plans for one tenant's table from its file listing: per
    /// partition this node owns, the small files of one schema version,
    /// once the hour has settled and holds `min_files` of them, or at once
    /// when it holds `max_files`; cut into groups of about
    /// `target_file_bytes`, in time order.
    pub fn plan(
        &self,
        tenant: &TenantId,
        table: Table,
        files: &[CatalogFile],
        assignment: &Assignment,
        now_micros: i64,
    ) -> Vec<CompactionPlan> {
        let c = &self.config;
        let settle = i64::try_from(c.settle_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let mut partitions: BTreeMap<(&str, u32), Vec<&CatalogFile>> = BTreeMap::new();
        for f in files
            .iter()
            .filter(|f| f.file.byte_size < c.small_file_bytes)
        {
            partitions
                .entry((partition_of(&f.file.object_key), f.file.schema_version))
                .or_default()
                .push(f);
        }
        let mut plans = Vec::new();
        for ((dir, _), mut small) in partitions {
            if !assignment.owns(dir) {
                continue;
            }
            let hour = layout::hour_start_micros(small[0].file.min_time_micros);
            let settled = hour.saturating_add(HOUR_MICROS).saturating_add(settle) <= now_micros;
            let due = small.len() >= c.max_files || (settled && small.len() >= c.min_files.max(2));
            if !due {
                continue;
            }
            small.sort_by(|a, b| {
                (a.file.min_time_micros, &a.file.file_id)
                    .cmp(&(b.file.min_time_micros, &b.file.file_id))
            });
            let mut groups: Vec<Vec<&CatalogFile>> = vec![Vec::new()];
            let mut bytes = 0u64;
            for f in small {
                let group_len = groups.last().map_or(0, Vec::len);
                if group_len > 0 && bytes.saturating_add(f.file.byte_size) > c.target_file_bytes {
                    groups.push(Vec::new());
                    bytes = 0;
                }
                bytes = bytes.saturating_add(f.file.byte_size);
                if let Some(g) = groups.last_mut() {
                    g.push(f);
                }
            }
            for group in groups.into_iter().filter(|g| g.len() >= 2) {
                let mut inputs: Vec<CatalogFile> = group.into_iter().cloned().collect();
                inputs.sort_by(|a, b| a.file.file_id.cmp(&b.file.file_id));
                plans.push(CompactionPlan {
                    tenant: tenant.clone(),
                    table,
                    hour_micros: hour,
                    inputs,
                });
            }
        }
        plans
    }

    /// Lists, plans and compacts one tenant's tables. Failures of single
    /// plans are logged and counted; the pass goes on.
    /// `events_up_to`: only `events` files at or before this catalog
    /// sequence are inputs (the correlation workers' lowest position).
    pub async fn compact_tenant(
        &self,
        tenant: &TenantId,
        assignment: &Assignment,
        now_micros: i64,
        events_up_to: Option<u64>,
    ) -> Result<CompactionReport, MaintenanceError> {
        let mut report = CompactionReport::default();
        for table in COMPACTED_TABLES {
            let mut files = self
                .catalog
                .list_files(FileQuery::all(tenant.clone(), table))
                .await
                .map_err(catalog_err(format!("listing {tenant}/{table}")))?;
            if let (Table::Events, Some(limit)) = (table, events_up_to) {
                files.retain(|f| f.sequence <= limit);
            }
            for plan in self.plan(tenant, table, &files, assignment, now_micros) {
                match self.execute(&plan).await {
                    Ok(CompactionOutcome::Swapped(out)) => {
                        report.swaps += 1;
                        report.inputs += plan.inputs.len();
                        tracing::info!(
                            tenant = %tenant,
                            table = %table,
                            inputs = plan.inputs.len(),
                            rows = out.row_count,
                            bytes = out.byte_size,
                            output = %out.object_key,
                            "compacted"
                        );
                    }
                    Ok(CompactionOutcome::AlreadySwapped(_)) => {}
                    Ok(CompactionOutcome::LostRace) => report.lost += 1,
                    Ok(CompactionOutcome::Abandoned) => report.failed += 1,
                    Err(e) => {
                        report.failed += 1;
                        tracing::warn!(error = %e, tenant = %tenant, table = %table, "compaction failed; the inputs stay as they are");
                    }
                }
            }
        }
        Ok(report)
    }

    /// Writes the plan's output and swaps it for the inputs.
    pub async fn execute(
        &self,
        plan: &CompactionPlan,
    ) -> Result<CompactionOutcome, MaintenanceError> {
        let written_at = Instant::now();
        let output = self.write_output(plan).await?;
        // An object not committed within the orphan grace may be taken for an
        // orphan and deleted by a scan; committing it after that would list a
        // file that is gone. Leave well inside the grace.
        let orphan_grace = Duration::from_millis(self.config.orphan_grace_ms / 2);
        let swap = FileSwap {
            tenant: plan.tenant.clone(),
            table: plan.table,
            inputs: plan.inputs.iter().map(|f| f.file.file_id.clone()).collect(),
            outputs: vec![output.clone()],
        };
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=SWAP_ATTEMPTS {
            if written_at.elapsed() >= orphan_grace {
                break;
            }
            match self.catalog.replace_files(swap.clone()).await {
                Ok(out) if out.already_committed => {
                    return Ok(CompactionOutcome::AlreadySwapped(output));
                }
                Ok(_) => {
                    metrics::counter!("spoor_ingest_compactions_total", "table" => plan.table.name())
                        .increment(1);
                    metrics::counter!("spoor_ingest_compacted_files_total", "table" => plan.table.name())
                        .increment(plan.inputs.len() as u64);
                    return Ok(CompactionOutcome::Swapped(output));
                }
                Err(CatalogError::Conflict { reason }) => {
                    tracing::info!(%reason, output = %output.object_key, "compaction lost to another change");
                    self.delete_uncommitted(&output).await?;
                    return Ok(CompactionOutcome::LostRace);
                }
                Err(e) if e.is_retryable() && attempt < SWAP_ATTEMPTS => {
                    tracing::debug!(error = %e, retry_in = ?delay, "compaction swap unavailable; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
                Err(e) => {
                    return Err(MaintenanceError::Catalog {
                        context: format!("swapping {}", output.object_key),
                        source: e,
                    });
                }
            }
        }
        tracing::warn!(output = %output.object_key, "compaction swap not confirmed; a later round retries it");
        Ok(CompactionOutcome::Abandoned)
    }

    /// Deletes this node's output after a refused swap, unless the catalog
    /// lists it (then someone committed the same output and it is live).
    async fn delete_uncommitted(&self, output: &NewFile) -> Result<(), MaintenanceError> {
        let (listed, _) = self
            .catalog
            .list_files_as_of(FileQuery::all(output.tenant.clone(), output.table), true)
            .await
            .map_err(catalog_err(format!("checking {}", output.object_key)))?;
        if listed.iter().any(|f| f.file.file_id == output.file_id) {
            return Ok(());
        }
        retention::delete_object(
            &self.store,
            &output.object_key,
            DeleteReason::UncommittedOutput,
        )
        .await
    }

    /// Reads the inputs, merges their rows sorted by time and writes the
    /// output object; returns the file to commit. Deterministic: the same
    /// plan gives the same bytes under the same key.
    pub async fn write_output(&self, plan: &CompactionPlan) -> Result<NewFile, MaintenanceError> {
        let file_id = plan.output_id(self.zstd_level);
        let key = layout::object_key(&plan.tenant, plan.table, plan.hour_micros, &file_id);
        let mut inputs = Vec::with_capacity(plan.inputs.len());
        for f in &plan.inputs {
            let path = ObjectPath::from(f.file.object_key.as_str());
            let store_err = |source| MaintenanceError::Store {
                context: "reading compaction input",
                key: f.file.object_key.clone(),
                source,
            };
            let bytes = self
                .store
                .get(&path)
                .await
                .map_err(store_err)?
                .bytes()
                .await
                .map_err(store_err)?;
            inputs.push((f.file.object_key.clone(), bytes));
        }
        let columns = match plan.table {
            Table::DeadLetter => DEAD_LETTER_COLUMNS,
            Table::AlertUpdates => ALERT_UPDATE_COLUMNS,
            Table::Alerts => ALERT_COLUMNS,
            Table::Events => EVENT_COLUMNS,
            Table::Audit => spoor_common::schema::AUDIT_COLUMNS,
        };
        let (level, output) = (self.zstd_level, key.clone());
        // Decoding, sorting and encoding are CPU work: keep them off the
        // async workers that serve ingest and queries.
        let merged = tokio::task::spawn_blocking(move || merge(inputs, columns, level, &output))
            .await
            .map_err(|e| MaintenanceError::Task {
                output: key.clone(),
                reason: e.to_string(),
            })??;
        if merged.rows != plan.row_count() {
            return Err(MaintenanceError::RowCount {
                output: key,
                expected: plan.row_count(),
                got: merged.rows,
            });
        }
        let size = merged.bytes.len() as u64;
        // The output's key derives from its inputs, so a retried plan
        // overwrites its own earlier output rather than adding a file.
        spoor_common::storage::put_object(
            self.store.as_ref(),
            &ObjectPath::from(key.as_str()),
            PutPayload::from(merged.bytes),
            self.multipart_threshold,
        )
        .await
        .map_err(|source| MaintenanceError::Store {
            context: "writing compaction output",
            key: key.clone(),
            source,
        })?;
        Ok(NewFile {
            file_id,
            tenant: plan.tenant.clone(),
            table: plan.table,
            object_key: key,
            min_time_micros: merged.min_time,
            max_time_micros: merged.max_time,
            row_count: merged.rows,
            byte_size: size,
            schema_version: plan.inputs.first().map_or(0, |f| f.file.schema_version),
            source: None,
        })
    }
}

/// The merged output of a plan.
struct Merged {
    bytes: Vec<u8>,
    rows: u64,
    min_time: i64,
    max_time: i64,
}

/// Decodes every input, concatenates, sorts by time and encodes with the
/// ingest writer's settings.
fn merge(
    inputs: Vec<(String, Bytes)>,
    columns: &'static [ColumnDef],
    zstd_level: i32,
    output: &str,
) -> Result<Merged, MaintenanceError> {
    let mut schema = None;
    let mut batches: Vec<RecordBatch> = Vec::new();
    for (key, bytes) in inputs {
        let read_err = |source| MaintenanceError::Read {
            key: key.clone(),
            source,
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(read_err)?;
        let file_schema = builder.schema().clone();
        match &schema {
            None => schema = Some(file_schema),
            Some(first) if *first != file_schema => {
                return Err(MaintenanceError::SchemaMismatch {
                    key,
                    output: output.to_string(),
                });
            }
            Some(_) => {}
        }
        for batch in builder.build().map_err(read_err)? {
            batches.push(batch.map_err(|source| MaintenanceError::Decode {
                key: key.clone(),
                source,
            })?);
        }
    }
    let schema = schema.ok_or_else(|| MaintenanceError::Task {
        output: output.to_string(),
        reason: "a compaction needs at least one input".into(),
    })?;
    let all = concat_batches(&schema, &batches).map_err(|source| MaintenanceError::Merge {
        output: output.to_string(),
        source,
    })?;
    drop(batches);
    let encode_err = |source| MaintenanceError::Encode {
        output: output.to_string(),
        source: Box::new(source),
    };
    let sorted = sort_by_time(all).map_err(encode_err)?;
    let (min_time, max_time) = time_range(&sorted);
    let bytes = encode_parquet(&sorted, columns, zstd_level).map_err(encode_err)?;
    Ok(Merged {
        bytes,
        rows: sorted.num_rows() as u64,
        min_time,
        max_time,
    })
}

/// What one maintenance round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Files retention took out of the catalog.
    pub retention_removed: usize,
    /// Compaction swaps committed.
    pub compactions: usize,
    /// Files those swaps replaced.
    pub compacted_files: usize,
    /// Objects deleted after their grace period.
    pub deleted: usize,
    /// Orphan objects deleted.
    pub orphans_deleted: usize,
    /// Steps that failed (logged); the next round tries again.
    pub errors: usize,
}

/// The background upkeep of one ingest node: retention, compaction, the
/// deferred deletion of objects and the orphan scan, every `interval_ms`.
pub struct Maintenance {
    node_id: u64,
    config: CompactionConfig,
    catalog: Arc<dyn Catalog>,
    compactor: Compactor,
    janitor: Janitor,
    last_orphan_scan_micros: Option<i64>,
}

impl std::fmt::Debug for Maintenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maintenance")
            .field("node_id", &self.node_id)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Maintenance {
    /// Upkeep for node `node_id` of the lake in `store` indexed by `catalog`.
    pub fn new(
        node_id: u64,
        config: CompactionConfig,
        zstd_level: i32,
        catalog: Arc<dyn Catalog>,
        store: Arc<dyn ObjectStore>,
    ) -> Self {
        let grace = Duration::from_millis(config.delete_grace_ms);
        Maintenance {
            node_id,
            compactor: Compactor::new(catalog.clone(), store.clone(), config.clone(), zstd_level),
            janitor: Janitor::new(catalog.clone(), store.clone(), grace),
            config,
            catalog,
            last_orphan_scan_micros: None,
        }
    }

    /// Compaction outputs larger than `bytes` go up as multipart uploads
    /// (`storage.s3.multipart_threshold_bytes`).
    pub fn with_multipart_threshold(mut self, bytes: usize) -> Self {
        self.compactor = self.compactor.with_multipart_threshold(bytes);
        self
    }

    /// Runs a round every `interval_ms` until `stop`. Every step is safe to
    /// interrupt (see the module comment), so stopping cancels a round.
    pub async fn run(mut self, control: ControlClient, stop: CancellationToken) {
        let period = Duration::from_millis(self.config.interval_ms.max(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(interval = ?period, "compaction and retention running");
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            let view = tokio::select! {
                v = ClusterView::fetch(&control, self.node_id) => v,
                () = stop.cancelled() => return,
            };
            let now = spoor_common::time::now_micros();
            tokio::select! {
                report = self.round(&view, now) => {
                    if report != RoundReport::default() {
                        tracing::debug!(?report, "maintenance round");
                    }
                }
                () = stop.cancelled() => return,
            }
        }
    }

    /// One round at `now_micros`: retention, compaction, due deletions and,
    /// when due, the orphan scan. Errors are logged and counted.
    pub async fn round(&mut self, view: &ClusterView, now_micros: i64) -> RoundReport {
        let mut report = RoundReport::default();
        let mut tenants: BTreeSet<TenantId> = self.janitor.known_tenants();
        match self.catalog.status().await {
            Ok(status) => {
                tenants.extend(
                    status
                        .tenants
                        .into_iter()
                        .filter_map(|t| TenantId::new(t.tenant).ok()),
                );
            }
            Err(e) => {
                report.errors += 1;
                tracing::warn!(error = %e, "catalog status unavailable; maintenance covers known tenants only");
            }
        }
        if let Some(records) = &view.tenants {
            tenants.extend(records.iter().map(|r| r.id.clone()));
            let outcome = retention::apply_retention(
                self.catalog.as_ref(),
                records,
                &view.assignment,
                now_micros,
            )
            .await;
            report.retention_removed += outcome.removed;
            report.errors += outcome.errors;
        }
        for tenant in &tenants {
            match self
                .compactor
                .compact_tenant(
                    tenant,
                    &view.assignment,
                    now_micros,
                    match &view.correlation_positions {
                        None => Some(0),
                        Some(p) => p.get(tenant.as_str()).copied(),
                    },
                )
                .await
            {
                Ok(r) => {
                    report.compactions += r.swaps;
                    report.compacted_files += r.inputs;
                    report.errors += r.failed;
                }
                Err(e) => {
                    report.errors += 1;
                    tracing::warn!(error = %e, tenant = %tenant, "compaction pass failed");
                }
            }
            if let Err(e) = self.janitor.poll(tenant, now_micros).await {
                report.errors += 1;
                tracing::warn!(error = %e, tenant = %tenant, "following catalog changes failed");
            }
        }
        let deleted = self.janitor.delete_due(now_micros, &view.assignment).await;
        report.deleted += deleted.deleted;
        report.errors += deleted.errors;
        let scan_every = i64::try_from(self.config.orphan_scan_interval_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let scan_due = self
            .last_orphan_scan_micros
            .is_none_or(|last| now_micros.saturating_sub(last) >= scan_every);
        if scan_due {
            let grace = Duration::from_millis(self.config.orphan_grace_ms);
            let swept = self
                .janitor
                .sweep_orphans(now_micros, grace, &view.assignment)
                .await;
            report.orphans_deleted += swept.deleted;
            report.errors += swept.errors;
            if swept.errors == 0 {
                self.last_orphan_scan_micros = Some(now_micros);
            }
        }
        report
    }
}

/// Fixtures shared by the compaction and retention tests: real Parquet
/// files written by the ingest writer into an in-memory lake, committed to
/// the in-memory catalog.
#[cfg(test)]
pub(crate) mod testkit {
    use std::sync::Arc;

    use arrow::array::{Array, Int32Array, Int64Array, StringArray};
    use object_store::memory::InMemory;
    use object_store::path::Path as ObjectPath;
    use object_store::{ObjectStore, ObjectStoreExt};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use spoor_common::catalog::{
        Catalog, CatalogFile, CommitBatch, FileQuery, MemoryCatalog, NewFile, SourceRange,
    };
    use spoor_common::config::CompactionConfig;
    use spoor_common::schema::Table;
    use spoor_common::tenant::TenantId;

    use crate::lake_writer::{DeadLetterRow, FileOrigin, LakeWriter};
    use crate::parse::{EventRow, JsonNormalizer, Provenance};

    /// 2024-03-05T07:00:00Z, the hour the fixtures' rows fall in.
    pub(crate) const HOUR_07: i64 = 1_709_622_000_000_000;

    pub(crate) fn tenant(name: &str) -> TenantId {
        TenantId::new(name).expect("tenant id")
    }

    /// Settings that compact any two small files of a settled hour.
    pub(crate) fn config() -> CompactionConfig {
        CompactionConfig {
            enabled: true,
            interval_ms: 1000,
            small_file_bytes: 1 << 20,
            target_file_bytes: 32 << 20,
            min_files: 2,
            max_files: 8,
            settle_ms: 600_000,
            delete_grace_ms: 600_000,
            orphan_grace_ms: 3_600_000,
            orphan_scan_interval_ms: 3_600_000,
        }
    }

    /// An in-memory lake and catalog.
    pub(crate) struct Lake {
        pub(crate) catalog: Arc<MemoryCatalog>,
        pub(crate) store: Arc<dyn ObjectStore>,
        pub(crate) writer: LakeWriter,
        normalizer: JsonNormalizer,
    }

    impl Lake {
        pub(crate) fn new() -> Lake {
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            Lake {
                catalog: Arc::new(MemoryCatalog::new()),
                writer: LakeWriter::new(store.clone(), 3),
                store,
                normalizer: JsonNormalizer::new(),
            }
        }

        pub(crate) fn catalog(&self) -> Arc<dyn Catalog> {
            self.catalog.clone()
        }

        /// Writes `n` events of Kafka partition `partition` from offset
        /// `first` at `hour` (minute = offset), plus one dead letter, without
        /// committing them (a crash before the commit).
        pub(crate) async fn write(
            &self,
            tenant: &TenantId,
            hour: i64,
            partition: i32,
            first: i64,
            n: i64,
        ) -> Vec<NewFile> {
            let normalizer = &self.normalizer;
            let events: Vec<EventRow> = (first..first + n)
                .map(|offset| {
                    // Times out of order within a batch, so sorting is tested.
                    let micros = hour + ((offset * 7919) % 3600) * 1_000_000;
                    let time = spoor_common::time::to_datetime(micros).to_rfc3339();
                    let json = format!(
                        r#"{{"time":"{time}","src_ip":"10.0.{partition}.{}","user":"u{offset}"}}"#,
                        offset % 250
                    );
                    let prov = Provenance {
                        topic: "t".into(),
                        partition: Some(partition),
                        offset: Some(offset),
                        ingest_time_micros: hour,
                    };
                    normalizer
                        .normalize(json.as_bytes(), &prov)
                        .expect("fixture event normalizes")
                })
                .collect();
            let dead = vec![DeadLetterRow {
                ingest_time_micros: hour + first * 1_000_000,
                topic: "t".into(),
                partition: Some(partition),
                offset: Some(first + n),
                error: "invalid JSON".into(),
                raw: format!("{{bad {first}").into_bytes(),
            }];
            let range = SourceRange {
                source_id: "g".into(),
                topic: "t".into(),
                partition,
                first_offset: first,
                last_offset: first + n,
            };
            self.writer
                .write(tenant, &FileOrigin::Kafka(range), &events, &dead)
                .await
                .expect("write fixture files")
        }

        /// Writes and commits a batch (see [`Lake::write`]).
        pub(crate) async fn ingest(
            &self,
            tenant: &TenantId,
            hour: i64,
            partition: i32,
            first: i64,
            n: i64,
        ) -> Vec<NewFile> {
            let files = self.write(tenant, hour, partition, first, n).await;
            self.catalog
                .commit_batch(CommitBatch {
                    files: files.clone(),
                    checkpoints: Vec::new(),
                })
                .await
                .expect("commit fixture files");
            files
        }

        pub(crate) async fn listed(&self, tenant: &TenantId, table: Table) -> Vec<CatalogFile> {
            self.catalog
                .list_files(FileQuery::all(tenant.clone(), table))
                .await
                .expect("list")
        }

        pub(crate) async fn exists(&self, key: &str) -> bool {
            self.store.head(&ObjectPath::from(key)).await.is_ok()
        }

        /// Every object key in the lake.
        pub(crate) async fn keys(&self) -> Vec<String> {
            use futures::StreamExt;
            let mut keys: Vec<String> = self
                .store
                .list(None)
                .map(|m| m.expect("list object").location.to_string())
                .collect()
                .await;
            keys.sort();
            keys
        }

        /// `(source_topic, source_partition, source_offset)` of every row of
        /// the listed files of a table, sorted: a multiset to compare.
        pub(crate) async fn provenance(
            &self,
            tenant: &TenantId,
            table: Table,
        ) -> Vec<(String, Option<i32>, Option<i64>)> {
            let mut out = Vec::new();
            for f in self.listed(tenant, table).await {
                let bytes = self
                    .store
                    .get(&ObjectPath::from(f.file.object_key.as_str()))
                    .await
                    .expect("get")
                    .bytes()
                    .await
                    .expect("bytes");
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .expect("parquet")
                    .build()
                    .expect("reader");
                for batch in reader {
                    let batch = batch.expect("batch");
                    let topics = batch
                        .column_by_name("source_topic")
                        .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
                        .expect("source_topic");
                    let parts = batch
                        .column_by_name("source_partition")
                        .and_then(|c| c.as_any().downcast_ref::<Int32Array>().cloned())
                        .expect("source_partition");
                    let offsets = batch
                        .column_by_name("source_offset")
                        .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
                        .expect("source_offset");
                    for i in 0..batch.num_rows() {
                        out.push((
                            topics.value(i).to_string(),
                            (!parts.is_null(i)).then(|| parts.value(i)),
                            (!offsets.is_null(i)).then(|| offsets.value(i)),
                        ));
                    }
                }
            }
            out.sort();
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use arrow::array::{Array, TimestampMicrosecondArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use spoor_common::schema::{dead_letter_schema, event_schema};

    use super::testkit::{HOUR_07, Lake, config, tenant};
    use super::*;

    fn now() -> i64 {
        spoor_common::time::now_micros()
    }

    fn compactor(lake: &Lake) -> Compactor {
        Compactor::new(lake.catalog(), lake.store.clone(), config(), 3)
    }

    /// The plans of one tenant's table, as a round would make them.
    async fn plans(lake: &Lake, c: &Compactor, table: Table) -> Vec<CompactionPlan> {
        let acme = tenant("acme");
        let files = lake.listed(&acme, table).await;
        c.plan(&acme, table, &files, &Assignment::All, now())
    }

    #[tokio::test]
    async fn swap_merges_small_files_keeping_rows_schema_and_metadata() {
        let lake = Lake::new();
        let acme = tenant("acme");
        let mut inputs = Vec::new();
        for p in 0..4 {
            inputs.extend(lake.ingest(&acme, HOUR_07, p, 100 * i64::from(p), 25).await);
        }
        let before_events = lake.provenance(&acme, Table::Events).await;
        let before_dead = lake.provenance(&acme, Table::DeadLetter).await;
        assert_eq!(before_events.len(), 100);
        assert_eq!(before_dead.len(), 4);
        let events_in: Vec<CatalogFile> = lake.listed(&acme, Table::Events).await;
        assert_eq!(events_in.len(), 4);

        let report = compactor(&lake)
            .compact_tenant(&acme, &Assignment::All, now(), None)
            .await
            .expect("compaction pass");
        assert_eq!(report.swaps, 2, "{report:?}");
        assert_eq!(report.inputs, 8);

        let events_out = lake.listed(&acme, Table::Events).await;
        let dead_out = lake.listed(&acme, Table::DeadLetter).await;
        assert_eq!(events_out.len(), 1);
        assert_eq!(dead_out.len(), 1);
        assert_eq!(lake.provenance(&acme, Table::Events).await, before_events);
        assert_eq!(lake.provenance(&acme, Table::DeadLetter).await, before_dead);

        // The output's catalog entry says what the object holds.
        let out = &events_out[0].file;
        assert_eq!(out.row_count, 100);
        assert_eq!(
            out.min_time_micros,
            events_in
                .iter()
                .map(|f| f.file.min_time_micros)
                .min()
                .expect("min")
        );
        assert_eq!(
            out.max_time_micros,
            events_in
                .iter()
                .map(|f| f.file.max_time_micros)
                .max()
                .expect("max")
        );
        assert!(out.source.is_none());
        assert!(
            out.object_key
                .starts_with("tenants/acme/events/date=2024-03-05/hour=07/")
        );
        let bytes = lake
            .store
            .get(&ObjectPath::from(out.object_key.as_str()))
            .await
            .expect("get output")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(out.byte_size, bytes.len() as u64);
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet");
        assert_eq!(
            builder.schema(),
            &event_schema(),
            "schema and metadata kept"
        );
        let meta = builder.metadata().clone();
        assert!(matches!(
            meta.row_group(0).column(0).compression(),
            parquet::basic::Compression::ZSTD(_)
        ));
        let src_ip = EVENT_COLUMNS
            .iter()
            .position(|c| c.name == "src_ip")
            .expect("src_ip column");
        assert!(
            meta.row_group(0)
                .column(src_ip)
                .bloom_filter_offset()
                .is_some()
        );
        let mut times = Vec::new();
        for batch in builder.build().expect("reader") {
            let batch = batch.expect("batch");
            let t = batch
                .column(0)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("time column");
            times.extend((0..t.len()).map(|i| t.value(i)));
        }
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "sorted by time");
        assert_eq!(times.first(), Some(&out.min_time_micros));
        assert_eq!(times.last(), Some(&out.max_time_micros));

        let dead_bytes = lake
            .store
            .get(&ObjectPath::from(dead_out[0].file.object_key.as_str()))
            .await
            .expect("get dead letters")
            .bytes()
            .await
            .expect("bytes");
        let dead_builder = ParquetRecordBatchReaderBuilder::try_new(dead_bytes).expect("parquet");
        assert_eq!(dead_builder.schema(), &dead_letter_schema());

        // Inputs stay in storage until the janitor's grace has passed.
        for f in &inputs {
            assert!(
                lake.exists(&f.object_key).await,
                "{} deleted early",
                f.object_key
            );
        }
    }

    #[tokio::test]
    async fn alert_updates_are_compacted_with_their_own_columns() {
        use arrow::array::{ArrayRef, StringArray};
        use spoor_common::schema::{ALERT_UPDATE_SCHEMA_VERSION, alert_update_schema};
        let lake = Lake::new();
        let acme = tenant("acme");
        let schema = alert_update_schema();
        for i in 0..3i64 {
            let time = HOUR_07 + (3 - i) * 1_000_000;
            let text = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v])) };
            let columns: Vec<ArrayRef> = vec![
                Arc::new(TimestampMicrosecondArray::from(vec![time]).with_timezone("UTC")),
                text(&format!("alert{i}")),
                text("closed"),
                text("alice"),
                text("note"),
                text("tok"),
                text(&format!("u{i}")),
            ];
            let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
            let bytes = encode_parquet(&batch, ALERT_UPDATE_COLUMNS, 3).expect("parquet");
            let file_id = format!("update{i}");
            let key = layout::object_key(&acme, Table::AlertUpdates, HOUR_07, &file_id);
            lake.store
                .put(
                    &ObjectPath::from(key.as_str()),
                    PutPayload::from(bytes.clone()),
                )
                .await
                .expect("put");
            lake.catalog
                .commit_batch(spoor_common::catalog::CommitBatch {
                    files: vec![NewFile {
                        file_id,
                        tenant: acme.clone(),
                        table: Table::AlertUpdates,
                        object_key: key,
                        min_time_micros: time,
                        max_time_micros: time,
                        row_count: 1,
                        byte_size: bytes.len() as u64,
                        schema_version: ALERT_UPDATE_SCHEMA_VERSION,
                        source: None,
                    }],
                    checkpoints: Vec::new(),
                })
                .await
                .expect("commit");
        }
        let report = compactor(&lake)
            .compact_tenant(&acme, &Assignment::All, now(), None)
            .await
            .expect("compaction pass");
        assert_eq!((report.swaps, report.inputs), (1, 3), "{report:?}");
        let out = lake.listed(&acme, Table::AlertUpdates).await;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].file.row_count, 3);
        assert_eq!(out[0].file.schema_version, ALERT_UPDATE_SCHEMA_VERSION);
        let bytes = lake
            .store
            .get(&ObjectPath::from(out[0].file.object_key.as_str()))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet");
        assert_eq!(reader.schema().fields(), schema.fields());
        let meta = reader.metadata().row_group(0);
        let alert_id = meta
            .columns()
            .iter()
            .find(|c| c.column_path().string() == "alert_id")
            .expect("alert_id column");
        assert!(alert_id.bloom_filter_offset().is_some(), "lookup column");
        let batches: Vec<RecordBatch> = reader
            .build()
            .expect("reader")
            .collect::<Result<_, _>>()
            .expect("rows");
        let times = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("time")
            .values()
            .to_vec();
        assert!(times.is_sorted(), "sorted by time: {times:?}");
    }

    #[tokio::test]
    async fn retry_after_a_crash_between_write_and_swap_writes_the_same_object() {
        let lake = Lake::new();
        let acme = tenant("acme");
        for p in 0..3 {
            lake.ingest(&acme, HOUR_07, p, 0, 10).await;
        }
        let c = compactor(&lake);
        let plan = plans(&lake, &c, Table::Events).await.remove(0);
        // The first attempt writes its output and dies before the swap.
        let crashed = c.write_output(&plan).await.expect("first write");
        assert_eq!(lake.listed(&acme, Table::Events).await.len(), 3);
        let objects_after_crash = lake.keys().await;

        // The retry plans the same inputs, so the same output key.
        let again = plans(&lake, &c, Table::Events).await.remove(0);
        assert_eq!(again, plan);
        let outcome = c.execute(&again).await.expect("retry");
        let CompactionOutcome::Swapped(out) = outcome else {
            panic!("expected a swap, got {outcome:?}");
        };
        assert_eq!(out, crashed, "same key, same bytes, same catalog entry");
        assert_eq!(
            lake.keys().await,
            objects_after_crash,
            "no second output object"
        );
        let listed = lake.listed(&acme, Table::Events).await;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].file, out);

        // Running the very same swap again changes nothing.
        assert_eq!(
            c.execute(&plan).await.expect("third attempt"),
            CompactionOutcome::AlreadySwapped(out)
        );
        assert_eq!(lake.listed(&acme, Table::Events).await.len(), 1);
    }

    #[tokio::test]
    async fn racing_compactors_swap_once_and_the_loser_deletes_only_its_own_output() {
        let lake = Lake::new();
        let acme = tenant("acme");
        for p in 0..3 {
            lake.ingest(&acme, HOUR_07, p, 0, 10).await;
        }
        let before = lake.provenance(&acme, Table::Events).await;
        let (a, b) = (compactor(&lake), compactor(&lake));
        let plan = plans(&lake, &a, Table::Events).await.remove(0);

        // Same inputs on two nodes at once: one swap, one no-op.
        let (ra, rb) = tokio::join!(a.execute(&plan), b.execute(&plan));
        let outcomes = [ra.expect("node a"), rb.expect("node b")];
        let swapped = outcomes
            .iter()
            .filter(|o| matches!(o, CompactionOutcome::Swapped(_)))
            .count();
        assert_eq!(swapped, 1, "{outcomes:?}");
        assert!(
            outcomes.iter().all(|o| matches!(
                o,
                CompactionOutcome::Swapped(_) | CompactionOutcome::AlreadySwapped(_)
            )),
            "{outcomes:?}"
        );
        let listed = lake.listed(&acme, Table::Events).await;
        assert_eq!(listed.len(), 1);
        assert!(lake.exists(&listed[0].file.object_key).await);
        assert_eq!(lake.provenance(&acme, Table::Events).await, before);

        // Overlapping inputs: node a took three files, node b planned two of
        // them (a stale listing). b's swap is refused and b deletes its own,
        // never-committed output, and nothing else.
        for p in 3..6 {
            lake.ingest(&acme, HOUR_07, p, 0, 10).await;
        }
        let before = lake.provenance(&acme, Table::Events).await;
        let all = lake.listed(&acme, Table::Events).await;
        let small: Vec<CatalogFile> = all
            .iter()
            .filter(|f| f.file.source.is_some())
            .cloned()
            .collect();
        assert_eq!(small.len(), 3);
        let mut stale = CompactionPlan {
            tenant: acme.clone(),
            table: Table::Events,
            hour_micros: HOUR_07,
            inputs: small[..2].to_vec(),
        };
        stale
            .inputs
            .sort_by(|x, y| x.file.file_id.cmp(&y.file.file_id));
        let mut full = stale.clone();
        full.inputs = small.clone();
        full.inputs
            .sort_by(|x, y| x.file.file_id.cmp(&y.file.file_id));
        let won = a.execute(&full).await.expect("node a");
        let CompactionOutcome::Swapped(won) = won else {
            panic!("node a should swap, got {won:?}");
        };
        let stale_key = layout::object_key(&acme, Table::Events, HOUR_07, &stale.output_id(3));
        assert_eq!(
            b.execute(&stale).await.expect("node b"),
            CompactionOutcome::LostRace
        );
        assert!(
            !lake.exists(&stale_key).await,
            "the loser's output is deleted"
        );
        assert!(
            lake.exists(&won.object_key).await,
            "the winner's output stays"
        );
        for f in &small {
            assert!(
                lake.exists(&f.file.object_key).await,
                "inputs wait for the grace"
            );
        }
        assert_eq!(lake.provenance(&acme, Table::Events).await, before);
    }

    #[tokio::test]
    async fn plans_wait_for_settled_hours_or_many_files_and_cut_at_the_target() {
        let lake = Lake::new();
        let acme = tenant("acme");
        let current_hour = layout::hour_start_micros(now());
        for p in 0..3 {
            lake.ingest(&acme, current_hour, p, 0, 5).await;
        }
        let mut settings = config();
        settings.max_files = 4;
        let c = Compactor::new(lake.catalog(), lake.store.clone(), settings.clone(), 3);
        assert!(
            plans(&lake, &c, Table::Events).await.is_empty(),
            "three files of the open hour wait"
        );
        lake.ingest(&acme, current_hour, 3, 0, 5).await;
        let p = plans(&lake, &c, Table::Events).await;
        assert_eq!(p.len(), 1, "max_files reached in the open hour");
        assert_eq!(p[0].inputs.len(), 4);

        // A settled hour with min_files; a large file is left alone; inputs
        // are cut into groups of about target_file_bytes.
        let old = HOUR_07;
        let mut sizes = Vec::new();
        for p in 0..5 {
            let files = lake.ingest(&acme, old, p, 0, 5).await;
            sizes.push(files[0].byte_size);
        }
        let biggest = sizes.iter().copied().max().expect("sizes");
        settings.small_file_bytes = biggest + 1;
        settings.target_file_bytes = biggest * 2;
        let c = Compactor::new(lake.catalog(), lake.store.clone(), settings.clone(), 3);
        let p: Vec<CompactionPlan> = plans(&lake, &c, Table::Events)
            .await
            .into_iter()
            .filter(|p| p.hour_micros == old)
            .collect();
        assert_eq!(
            p.iter().map(|p| p.inputs.len()).collect::<Vec<_>>(),
            vec![2, 2],
            "five files in groups of two; the fifth waits for company"
        );
        settings.small_file_bytes = 1;
        let c = Compactor::new(lake.catalog(), lake.store.clone(), settings, 3);
        assert!(
            plans(&lake, &c, Table::Events).await.is_empty(),
            "no small files"
        );
    }

    #[test]
    fn assignment_gives_each_partition_to_exactly_one_live_node() {
        assert_eq!(
            Assignment::among(2, &[3, 1, 2, 2]),
            Assignment::Share { rank: 1, of: 3 }
        );
        assert_eq!(Assignment::among(9, &[1, 2]), Assignment::All);
        assert_eq!(Assignment::among(9, &[]), Assignment::All);
        let nodes = [4, 7, 9];
        let mut owners_seen = HashSet::new();
        for h in 0..200 {
            let key = format!("tenants/acme/events/date=2024-03-05/hour={h:02}");
            let owners: Vec<u64> = nodes
                .iter()
                .copied()
                .filter(|&n| Assignment::among(n, &nodes).owns(&key))
                .collect();
            assert_eq!(owners.len(), 1, "{key}: {owners:?}");
            owners_seen.insert(owners[0]);
        }
        assert_eq!(owners_seen.len(), 3, "every node gets a share");
        assert_eq!(
            partition_of("tenants/a/events/date=2024-03-05/hour=07/x.parquet"),
            "tenants/a/events/date=2024-03-05/hour=07"
        );
    }

    #[tokio::test]
    async fn a_share_plans_only_its_own_partitions() {
        let lake = Lake::new();
        let acme = tenant("acme");
        for h in 0..6 {
            for p in 0..2 {
                lake.ingest(&acme, HOUR_07 + h * HOUR_MICROS, p, 0, 3).await;
            }
        }
        let c = compactor(&lake);
        let files = lake.listed(&acme, Table::Events).await;
        let mut hours = Vec::new();
        for rank in 0..2 {
            let share = Assignment::Share { rank, of: 2 };
            for plan in c.plan(&acme, Table::Events, &files, &share, now()) {
                let dir = partition_of(&plan.inputs[0].file.object_key).to_string();
                assert!(share.owns(&dir));
                hours.push(plan.hour_micros);
            }
        }
        hours.sort_unstable();
        assert_eq!(
            hours,
            (0..6)
                .map(|h| HOUR_07 + h * HOUR_MICROS)
                .collect::<Vec<_>>(),
            "the two shares cover every partition once"
        );
    }

    #[tokio::test]
    async fn events_a_correlation_worker_has_not_read_are_left_alone() {
        let lake = Lake::new();
        let acme = tenant("acme");
        for p in 0..4 {
            lake.ingest(&acme, HOUR_07, p, 0, 10).await;
        }
        let events = lake.listed(&acme, Table::Events).await;
        assert_eq!(events.len(), 4);
        let mut m = Maintenance::new(1, config(), 3, lake.catalog(), lake.store.clone());
        let round = |positions: Option<BTreeMap<String, u64>>| ClusterView {
            tenants: None,
            assignment: Assignment::All,
            correlation_positions: positions,
        };
        // Coordinators unknown: no events file is compacted.
        m.round(&round(None), now()).await;
        assert_eq!(lake.listed(&acme, Table::Events).await, events);
        // The slowest shard has read the first file only: nothing to merge it with.
        let first = events.iter().map(|f| f.sequence).min().expect("files");
        let at_first = BTreeMap::from([("acme".to_string(), first)]);
        m.round(&round(Some(at_first)), now()).await;
        assert_eq!(lake.listed(&acme, Table::Events).await, events);
        // Every shard has read them all.
        let last = events.iter().map(|f| f.sequence).max().expect("files");
        let read_all = BTreeMap::from([("acme".to_string(), last)]);
        let report = m.round(&round(Some(read_all)), now()).await;
        assert!(report.compactions >= 1, "{report:?}");
        assert_eq!(lake.listed(&acme, Table::Events).await.len(), 1);
    }

    #[tokio::test]
    async fn a_round_compacts_then_deletes_the_inputs_after_the_grace() {
        let lake = Lake::new();
        let acme = tenant("acme");
        let mut inputs = Vec::new();
        for p in 0..3 {
            inputs.extend(lake.ingest(&acme, HOUR_07, p, 0, 10).await);
        }
        let before = lake.provenance(&acme, Table::Events).await;
        let mut m = Maintenance::new(1, config(), 3, lake.catalog(), lake.store.clone());
        let view = ClusterView {
            tenants: None,
            assignment: Assignment::All,
            correlation_positions: Some(BTreeMap::new()),
        };
        let t0 = now();
        let report = m.round(&view, t0).await;
        assert_eq!(report.compactions, 2, "{report:?}");
        assert_eq!(report.compacted_files, 6);
        assert_eq!(report.deleted, 0, "the grace has not passed");
        assert_eq!(report.errors, 0, "{report:?}");
        for f in &inputs {
            assert!(lake.exists(&f.object_key).await);
        }
        let grace = i64::try_from(config().delete_grace_ms).expect("grace") * 1000;
        let report = m.round(&view, t0 + grace / 2).await;
        assert_eq!(report.deleted, 0, "{report:?}");
        // The catalog stamps the swap with the real clock, a little after t0.
        let report = m.round(&view, t0 + grace + 120_000_000).await;
        assert_eq!(report.deleted, 6, "{report:?}");
        assert_eq!(report.compactions, 0, "nothing left to compact");
        for f in &inputs {
            assert!(!lake.exists(&f.object_key).await, "{} kept", f.object_key);
        }
        assert_eq!(
            lake.keys().await.len(),
            2,
            "one events and one dead_letter file"
        );
        assert_eq!(lake.provenance(&acme, Table::Events).await, before);
    }
}

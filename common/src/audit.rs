//! The audit trail: authentication failures, token, tenant and rule
//! changes, and queries, appended to the `audit` table of the cluster's
//! own tenant (`spoor`), which only the cluster's admin reads with SQL.
//!
//! Every role records through an [`AuditLog`] (cheap to clone, never
//! blocks the request: records go into a bounded queue) and runs one
//! [`AuditWriter`], which writes the queued records as Parquet files every
//! [`FLUSH_EVERY`] and commits them to the catalog. A write that fails is
//! retried with the same records and file ids (a commit is idempotent);
//! new records wait in the queue meanwhile. Only a queue full for longer
//! than the writer can drain (coordinators unreachable for minutes under
//! load) drops records, each drop counted in `spoor_audit_dropped_total`
//! and logged, never silently.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, CommitBatch, NewFile};
use crate::layout;
use crate::schema::{AUDIT_COLUMNS, AUDIT_SCHEMA_VERSION, Table, audit_schema};
use crate::tenant::TenantId;

/// How often the writer writes what is queued.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// Records queued per node before new ones are dropped (and counted).
const QUEUE: usize = 100_000;

/// Most records one write takes from the queue.
const MAX_BATCH: usize = 50_000;

/// Most bytes of a detail kept (a query's SQL can be a megabyte).
const MAX_DETAIL_BYTES: usize = 16 * 1024;

/// Refusals of bad credentials (`auth_failure` rows other than
/// `forbidden`) recorded one by one per second per node. A flood of bad credentials beyond it is counted, not recorded row
/// by row: one `suppressed` row per second says how many were left out,
/// so a credential-stuffing run cannot fill the audit table or its queue.
pub const REFUSALS_PER_SECOND: u32 = 200;

/// One row of the `audit` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When, µs since the epoch.
    pub time_micros: i64,
    /// `auth_failure`, `token_created`, `token_revoked`, `tenant_changed`,
    /// `rule_set_changed`, `query`.
    pub kind: &'static str,
    /// `ok`, or the error code.
    pub outcome: String,
    /// Token id, `cluster`, or none.
    pub actor: Option<String>,
    /// The token's role.
    pub role: Option<String>,
    /// Tenants concerned.
    pub tenants: Vec<String>,
    /// `grpc`, `http`, `http_ingest`, `hec`, `flight_sql`, `postgres`.
    pub interface: &'static str,
    /// What it was done to.
    pub target: Option<String>,
    /// The reason, the SQL, the change.
    pub detail: Option<String>,
}

impl AuditRecord {
    /// A record of `kind` on `interface` now, with outcome `ok` and
    /// nothing else set.
    pub fn new(kind: &'static str, interface: &'static str) -> Self {
        AuditRecord {
            time_micros: crate::time::now_micros(),
            kind,
            outcome: "ok".into(),
            actor: None,
            role: None,
            tenants: Vec::new(),
            interface,
            target: None,
            detail: None,
        }
    }

    /// An authentication or authorization failure: `code` and `reason`.
    pub fn refusal(interface: &'static str, code: &str, reason: impl Into<String>) -> Self {
        AuditRecord {
            outcome: code.to_string(),
            detail: Some(reason.into()),
            ..AuditRecord::new("auth_failure", interface)
        }
    }
}

/// Where a node records audit events. The default records nowhere (tests
/// and tools that have no lake).
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    queue: Option<mpsc::Sender<AuditRecord>>,
    refusals: Arc<std::sync::Mutex<RefusalWindow>>,
}

/// The refusals of the current second.
#[derive(Debug)]
struct RefusalWindow {
    started: std::time::Instant,
    recorded: u32,
    suppressed: u64,
}

impl Default for RefusalWindow {
    fn default() -> Self {
        RefusalWindow {
            started: std::time::Instant::now(),
            recorded: 0,
            suppressed: 0,
        }
    }
}

impl AuditLog {
    /// A log and the receiver its [`AuditWriter`] drains.
    pub fn new() -> (Self, mpsc::Receiver<AuditRecord>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (
            AuditLog {
                queue: Some(tx),
                refusals: Arc::default(),
            },
            rx,
        )
    }

    /// Queues `record`; never waits. Refusals past
    /// [`REFUSALS_PER_SECOND`] are counted instead, and the count is
    /// recorded with the next refusal after that second.
    pub fn record(&self, record: AuditRecord) {
        if self.queue.is_none() {
            return;
        }
        // Refusals of valid tokens (`forbidden`) name an insider and are
        // never summarized; bad credentials are anyone's and can flood.
        if record.kind == "auth_failure" && record.outcome != "forbidden" {
            let (admitted, summary) = self.admit_refusal(record.interface);
            if let Some(summary) = summary {
                self.enqueue(summary);
            }
            if !admitted {
                metrics::counter!("spoor_audit_refusals_suppressed_total").increment(1);
                return;
            }
        }
        self.enqueue(record);
    }

    /// Whether one more refusal is recorded row by row this second, and
    /// the summary of the last second's suppressed ones, if any.
    fn admit_refusal(&self, interface: &'static str) -> (bool, Option<AuditRecord>) {
        let mut window = match self.refusals.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut summary = None;
        if window.started.elapsed() >= Duration::from_secs(1) {
            if window.suppressed > 0 {
                summary = Some(AuditRecord::refusal(
                    interface,
                    "suppressed",
                    format!(
                        "{} more refusals in one second were not recorded one by one (over \
                         {REFUSALS_PER_SECOND} a second on this node)",
                        window.suppressed
                    ),
                ));
            }
            *window = RefusalWindow::default();
        }
        let admitted = window.recorded < REFUSALS_PER_SECOND;
        if admitted {
            window.recorded += 1;
        } else {
            window.suppressed += 1;
        }
        (admitted, summary)
    }

    fn enqueue(&self, mut record: AuditRecord) {
        let Some(queue) = &self.queue else {
            return;
        };
        if let Some(detail) = &mut record.detail
            && detail.len() > MAX_DETAIL_BYTES
        {
            let mut end = MAX_DETAIL_BYTES;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            let total = detail.len();
            detail.truncate(end);
            detail.push_str(&format!("… ({total} bytes in all)"));
        }
        if let Err(e) = queue.try_send(record) {
            metrics::counter!("spoor_audit_dropped_total").increment(1);
            tracing::error!(error = %e, "audit record dropped: the audit queue is full or closed");
        }
    }
}

/// Writes queued records to the `audit` table.
pub struct AuditWriter {
    node_id: u64,
    catalog: Arc<dyn Catalog>,
    store: Arc<dyn ObjectStore>,
    /// A number per writer start, so file ids of two runs never collide.
    run: String,
    batches: u64,
}

/// The cluster's own tenant.
pub fn cluster_tenant() -> TenantId {
    #[allow(clippy::expect_used)]
    TenantId::new(TenantId::CLUSTER).expect("TenantId::CLUSTER is a valid tenant id")
}

impl AuditWriter {
    /// A writer for node `node_id`.
    pub fn new(node_id: u64, catalog: Arc<dyn Catalog>, store: Arc<dyn ObjectStore>) -> Self {
        let mut nonce = [0u8; 8];
        // Randomness only keeps two runs' file ids apart; the start time
        // does too when there is none.
        if getrandom::fill(&mut nonce).is_err() {
            nonce = crate::time::now_micros().to_be_bytes();
        }
        AuditWriter {
            node_id,
            catalog,
            store,
            run: hex::encode(nonce),
            batches: 0,
        }
    }

    /// Drains `queue` until `stop`, writing every [`FLUSH_EVERY`]; writes
    /// what is left before returning. A batch that failed is retried as it
    /// was (the same records, so the same objects and file ids: a commit
    /// that applied but whose answer was lost is found committed); new
    /// records wait in the queue meanwhile, and once it is full they are
    /// dropped and counted, so memory stays bounded.
    pub async fn run(mut self, mut queue: mpsc::Receiver<AuditRecord>, stop: CancellationToken) {
        let mut batch: Vec<AuditRecord> = Vec::new();
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = FLUSH_EVERY;
        loop {
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                _ = tick.tick() => false,
            };
            if batch.is_empty() {
                while batch.len() < MAX_BATCH
                    && let Ok(r) = queue.try_recv()
                {
                    batch.push(r);
                }
            }
            if !batch.is_empty() {
                match self.write(&batch).await {
                    Ok(()) => {
                        metrics::counter!("spoor_audit_records_total")
                            .increment(batch.len() as u64);
                        batch.clear();
                        self.batches += 1;
                        backoff = FLUSH_EVERY;
                    }
                    Err(e) => {
                        metrics::counter!("spoor_audit_write_failures_total").increment(1);
                        tracing::warn!(error = %e, records = batch.len(), "writing the audit trail failed; retrying");
                        if !stopping {
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                        }
                    }
                }
            }
            if stopping {
                let left = batch.len() + queue.len();
                if left > 0 {
                    tracing::error!(records = left, "audit records not written at shutdown");
                }
                return;
            }
        }
    }

    /// Writes `records` as one file per hour and commits them at once.
    /// The file ids depend on the writer's run and batch number only, so a
    /// retry of the same batch writes the same objects.
    pub async fn write(&self, records: &[AuditRecord]) -> Result<(), String> {
        let tenant = cluster_tenant();
        let mut by_hour: BTreeMap<i64, Vec<&AuditRecord>> = BTreeMap::new();
        for r in records {
            by_hour
                .entry(layout::hour_start_micros(r.time_micros))
                .or_default()
                .push(r);
        }
        let mut files = Vec::new();
        for (hour, mut rows) in by_hour {
            rows.sort_by_key(|r| r.time_micros);
            let batch = audit_batch(&rows, self.node_id).map_err(|e| e.to_string())?;
            let bytes = crate::lake_file::encode_parquet(&batch, AUDIT_COLUMNS, 3)
                .map_err(|e| e.to_string())?;
            let request = format!("audit-{}-{}-{}", self.node_id, self.run, self.batches);
            let file_id = layout::file_id_for_request(&request, &tenant, Table::Audit, hour);
            let key = layout::object_key(&tenant, Table::Audit, hour, &file_id);
            let byte_size = bytes.len() as u64;
            self.store
                .put(&ObjectPath::from(key.as_str()), PutPayload::from(bytes))
                .await
                .map_err(|e| format!("writing {key}: {e}"))?;
            files.push(NewFile {
                file_id,
                tenant: tenant.clone(),
                table: Table::Audit,
                object_key: key,
                min_time_micros: rows.first().map_or(hour, |r| r.time_micros),
                max_time_micros: rows.last().map_or(hour, |r| r.time_micros),
                row_count: rows.len() as u64,
                byte_size,
                schema_version: AUDIT_SCHEMA_VERSION,
                source: None,
            });
        }
        self.catalog
            .commit_batch(CommitBatch {
                files,
                checkpoints: Vec::new(),
            })
            .await
            .map_err(|e| format!("committing audit files: {e}"))?;
        Ok(())
    }
}

fn audit_batch(
    rows: &[&AuditRecord],
    node_id: u64,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let text = |f: &dyn Fn(&AuditRecord) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(
            rows.iter().map(|r| f(r)).collect::<Vec<_>>(),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from(rows.iter().map(|r| r.time_micros).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        text(&|r| Some(r.kind.to_string())),
        text(&|r| Some(r.outcome.clone())),
        text(&|r| r.actor.clone()),
        text(&|r| r.role.clone()),
        text(&|r| (!r.tenants.is_empty()).then(|| r.tenants.join(","))),
        text(&|r| Some(r.interface.to_string())),
        text(&|r| r.target.clone()),
        text(&|r| r.detail.clone()),
        Arc::new(Int64Array::from(vec![
            i64::try_from(node_id)
                .unwrap_or(i64::MAX);
            rows.len()
        ])),
    ];
    RecordBatch::try_new(audit_schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{FileQuery, MemoryCatalog};

    #[test]
    fn a_flood_of_refusals_is_counted_not_recorded_row_by_row() {
        let (log, mut rx) = AuditLog::new();
        for i in 0..REFUSALS_PER_SECOND + 50 {
            log.record(AuditRecord::refusal(
                "http",
                "unauthenticated",
                format!("bad {i}"),
            ));
        }
        // Other kinds are never limited.
        log.record(AuditRecord::new("token_created", "grpc"));
        let mut rows = Vec::new();
        while let Ok(r) = rx.try_recv() {
            rows.push(r);
        }
        assert_eq!(rows.len() as u32, REFUSALS_PER_SECOND + 1);
        assert_eq!(rows.last().map(|r| r.kind), Some("token_created"));
        // The next second's first refusal brings the count of the last.
        log.refusals.lock().expect("lock").started -= Duration::from_secs(1);
        log.record(AuditRecord::refusal("http", "unauthenticated", "again"));
        let summary = rx.try_recv().expect("summary");
        assert_eq!(summary.outcome, "suppressed");
        assert!(
            summary
                .detail
                .as_deref()
                .is_some_and(|d| d.starts_with("50 more refusals")),
            "{summary:?}"
        );
        assert_eq!(
            rx.try_recv().expect("the refusal").detail.as_deref(),
            Some("again")
        );
    }

    #[tokio::test]
    async fn records_become_rows_of_the_clusters_audit_table_once() {
        let catalog = Arc::new(MemoryCatalog::new());
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let writer = AuditWriter::new(7, catalog.clone(), store.clone());
        let mut refused = AuditRecord::refusal("http", "unauthenticated", "unknown token");
        refused.detail = Some("x".repeat(MAX_DETAIL_BYTES + 10));
        let records = vec![
            refused,
            AuditRecord {
                actor: Some("0123456789abcdef".into()),
                tenants: vec!["acme".into(), "globex".into()],
                target: Some("q-1".into()),
                detail: Some("SELECT 1".into()),
                ..AuditRecord::new("query", "postgres")
            },
        ];
        writer.write(&records).await.expect("write");
        // A retry of the same batch is the same file.
        writer.write(&records).await.expect("retry");
        let files = catalog
            .list_files(FileQuery::all(cluster_tenant(), Table::Audit))
            .await
            .expect("list");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].file.row_count, 2);
        assert!(files[0].file.object_key.starts_with("tenants/spoor/audit/"));

        // Long details are cut when recorded.
        let (log, mut rx) = AuditLog::new();
        log.record(AuditRecord {
            detail: Some("é".repeat(MAX_DETAIL_BYTES)),
            ..AuditRecord::new("query", "http")
        });
        let got = rx.recv().await.expect("queued");
        let detail = got.detail.expect("detail");
        assert!(detail.len() < MAX_DETAIL_BYTES + 40, "{}", detail.len());
        assert!(detail.ends_with("bytes in all)"));
        // The default log records nowhere and never fails.
        AuditLog::default().record(AuditRecord::new("query", "http"));
    }
}

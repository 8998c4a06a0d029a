//! Turning buffered rows into durable, committed files: write every Parquet
//! file, then commit them with the source checkpoints in one catalog entry.
//! Only after that commit may a source acknowledge its input (Kafka offset
//! commit, HTTP 200).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use spoor_common::catalog::{
    Catalog, CatalogError, CommitBatch, CommitOutcome, SourceCheckpoint, SourceRange,
};
use spoor_common::tenant::TenantId;
use tracing::Instrument;

use crate::error::IngestError;
use crate::lake_writer::{FileOrigin, LakeWriter};
use crate::routing::TenantRows;

/// Test-only fault injection, read from `SPOOR_TEST_FAULT` at start-up: lets
/// end-to-end tests crash the process at the two points where a crash can
/// lose or duplicate data, and prove that it does neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Abort after the Parquet files are written, before the catalog commit.
    CrashAfterWrite,
    /// Abort after the catalog commit, before the Kafka offset commit.
    CrashAfterCommit,
}

impl Fault {
    /// The fault named by `SPOOR_TEST_FAULT`, if any.
    pub fn from_env() -> Option<Fault> {
        match std::env::var("SPOOR_TEST_FAULT").ok()?.as_str() {
            "crash_after_write" => Some(Fault::CrashAfterWrite),
            "crash_after_commit" => Some(Fault::CrashAfterCommit),
            other => {
                tracing::warn!(value = other, "ignoring unknown SPOOR_TEST_FAULT");
                None
            }
        }
    }

    /// Aborts the process if this fault is armed at `point`.
    pub fn trigger(armed: Option<Fault>, point: Fault) {
        if armed == Some(point) {
            eprintln!("SPOOR_TEST_FAULT: aborting at {point:?}");
            std::process::abort();
        }
    }
}

/// The rows read from one Kafka partition range, by tenant.
#[derive(Debug, Clone)]
pub struct PartitionBatch {
    /// The offsets the rows came from.
    pub range: SourceRange,
    /// Events and dead letters of each tenant.
    pub rows: BTreeMap<TenantId, TenantRows>,
}

impl PartitionBatch {
    /// Events and dead letters of every tenant.
    pub fn len(&self) -> usize {
        self.rows.values().map(TenantRows::len).sum()
    }

    /// Whether the batch holds no rows (its checkpoint still counts).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Writes and commits batches: every tenant's files of a flush in one
/// catalog entry with the source checkpoints.
#[derive(Clone)]
pub struct Flusher {
    writer: LakeWriter,
    catalog: Arc<dyn Catalog>,
    fault: Option<Fault>,
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher").finish_non_exhaustive()
    }
}

/// What a flush committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flushed {
    /// Files committed.
    pub files: usize,
    /// Events committed.
    pub events: usize,
    /// Dead letters committed.
    pub dead_letters: usize,
    /// The catalog's answer.
    pub outcome: CommitOutcome,
}

impl Flusher {
    /// A flusher writing with `writer` and committing to `catalog`.
    pub fn new(writer: LakeWriter, catalog: Arc<dyn Catalog>, fault: Option<Fault>) -> Self {
        Flusher {
            writer,
            catalog,
            fault,
        }
    }

    /// The armed test fault.
    pub fn fault(&self) -> Option<Fault> {
        self.fault
    }

    /// Writes the files of every partition batch and commits them with the
    /// partitions' next offsets in one catalog entry. Encoding runs on the
    /// blocking pool, so the caller's task keeps reading the next batch.
    pub async fn flush_kafka(
        &self,
        batches: Arc<[PartitionBatch]>,
    ) -> Result<Flushed, IngestError> {
        let span = tracing::info_span!("flush", partitions = batches.len());
        self.flush_kafka_inner(batches).instrument(span).await
    }

    async fn flush_kafka_inner(
        &self,
        batches: Arc<[PartitionBatch]>,
    ) -> Result<Flushed, IngestError> {
        let started = std::time::Instant::now();
        let writer = self.writer.clone();
        let to_encode = batches.clone();
        let encoded = tokio::task::spawn_blocking(move || {
            let mut encoded = Vec::new();
            for b in to_encode.iter() {
                let origin = FileOrigin::Kafka(b.range.clone());
                for (tenant, rows) in &b.rows {
                    encoded.extend(writer.encode(tenant, &origin, &rows.events, &rows.dead)?);
                }
            }
            Ok::<_, IngestError>(encoded)
        })
        .await
        .map_err(|e| IngestError::TaskFailed(format!("encoding files: {e}")))??;
        let files = self.writer.put_all(encoded).await?;
        let (mut events, mut dead) = (0, 0);
        for rows in batches.iter().flat_map(|b| b.rows.values()) {
            events += rows.events.len();
            dead += rows.dead.len();
        }
        let checkpoints = batches
            .iter()
            .map(|b| SourceCheckpoint {
                source_id: b.range.source_id.clone(),
                topic: b.range.topic.clone(),
                partition: b.range.partition,
                next_offset: b.range.last_offset + 1,
            })
            .collect();
        Fault::trigger(self.fault, Fault::CrashAfterWrite);
        let n_files = files.len();
        let outcome = self.commit(CommitBatch { files, checkpoints }).await?;
        record(events, dead, started);
        record_tenants(batches.iter().flat_map(|b| b.rows.iter()));
        Ok(Flushed {
            files: n_files,
            events,
            dead_letters: dead,
            outcome,
        })
    }

    /// Writes and commits the rows of one request without source offsets.
    pub async fn flush_request(
        &self,
        request_id: &str,
        rows: &BTreeMap<TenantId, TenantRows>,
    ) -> Result<Flushed, IngestError> {
        let started = std::time::Instant::now();
        let mut files = Vec::new();
        let (mut events, mut dead) = (0, 0);
        for (tenant, rows) in rows {
            files.extend(
                self.writer
                    .write(
                        tenant,
                        &FileOrigin::Request(request_id.to_string()),
                        &rows.events,
                        &rows.dead,
                    )
                    .await?,
            );
            events += rows.events.len();
            dead += rows.dead.len();
        }
        Fault::trigger(self.fault, Fault::CrashAfterWrite);
        let n_files = files.len();
        let outcome = if files.is_empty() {
            CommitOutcome {
                sequences: Vec::new(),
                already_committed: false,
            }
        } else {
            self.commit(CommitBatch {
                files,
                checkpoints: Vec::new(),
            })
            .await?
        };
        record(events, dead, started);
        record_tenants(rows);
        Ok(Flushed {
            files: n_files,
            events,
            dead_letters: dead,
            outcome,
        })
    }

    /// Commits, retrying while the catalog is unavailable (bounded: about a
    /// minute), since files already written are useless until committed.
    async fn commit(&self, batch: CommitBatch) -> Result<CommitOutcome, IngestError> {
        let mut delay = Duration::from_millis(50);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            match self.catalog.commit_batch(batch.clone()).await {
                Ok(out) => return Ok(out),
                Err(e @ CatalogError::Unavailable { .. })
                    if std::time::Instant::now() < deadline =>
                {
                    tracing::warn!(error = %e, retry_in = ?delay, "catalog commit failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn record(events: usize, dead: usize, started: std::time::Instant) {
    metrics::counter!("spoor_ingest_events_total").increment(events as u64);
    metrics::counter!("spoor_ingest_dead_letters_total").increment(dead as u64);
    metrics::histogram!("spoor_ingest_flush_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("spoor_ingest_flush_rows").record((events + dead) as f64);
}

/// Events and dead letters committed per tenant, for per-tenant rates.
fn record_tenants<'a>(rows: impl IntoIterator<Item = (&'a TenantId, &'a TenantRows)>) {
    for (tenant, rows) in rows {
        metrics::counter!("spoor_ingest_tenant_events_total", "tenant" => tenant.to_string())
            .increment(rows.events.len() as u64);
        metrics::counter!("spoor_ingest_tenant_dead_letters_total", "tenant" => tenant.to_string())
            .increment(rows.dead.len() as u64);
    }
}

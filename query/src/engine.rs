//! Tenant-scoped, read-only SQL over the lake.
//!
//! Every request gets its own DataFusion session holding only the caller's
//! tenant's tables, each listing exactly the files the catalog holds for it.
//! DDL, DML and session statements are refused, and tables can only be
//! named, never given as file paths or URLs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::datasource::MemTable;
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::cache::cache_manager::{CacheManager, CacheManagerConfig};
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, ScalarUDF, col, lit};
use futures::StreamExt;
use object_store::ObjectStore;
use spoor_common::catalog::{Catalog, CatalogError, FileQuery};
use spoor_common::config::QueryConfig;
use spoor_common::schema::{
    Table, alert_schema, alert_update_schema, dead_letter_schema, event_schema,
};
use spoor_common::storage::lake_url;
use spoor_common::tenant::TenantId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::audit::{Finished, QueryId, QueryLog, Scope};
use crate::counting_store::CountingStore;
use crate::intel::{IndicatorList, IntelCache, IntelError, IocMatch, LoadedList};
use crate::tenant_table::TenantTable;

/// The per-class views of `events` every session has: the OCSF class name
/// (snake case) and the `class_uid`s it holds. Hunters write
/// `FROM authentication` instead of remembering `class_uid = 3002`.
pub const CLASS_VIEWS: &[(&str, &[i64])] = &[
    ("file_activity", &[1001]),
    ("module_activity", &[1005]),
    ("process_activity", &[1007]),
    ("script_activity", &[1009]),
    ("registry_activity", &[201_001, 201_002]),
    ("windows_service_activity", &[201_004]),
    ("account_change", &[3001]),
    ("authentication", &[3002]),
    ("authorize_session", &[3003]),
    ("entity_management", &[3004]),
    ("network_activity", &[4001]),
    ("http_activity", &[4002]),
    ("dns_activity", &[4003]),
    ("api_activity", &[6003]),
];

/// Why a query failed. The message is safe to show the caller.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL does not parse, names something that does not exist, or is not allowed.
    #[error("invalid SQL: {0}")]
    InvalidSql(String),
    /// The query ran longer than allowed.
    #[error("query cancelled after {0:?} (query.timeout_ms)")]
    Timeout(Duration),
    /// The SQL text is larger than allowed.
    #[error("SQL text of {size} bytes exceeds query.max_sql_bytes ({limit})")]
    TooLarge {
        /// Size given.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The catalog could not list the tenant's files.
    #[error("listing files: {0}")]
    Catalog(#[from] CatalogError),
    /// The query needed more memory than `query.max_memory_bytes` and
    /// could not spill.
    #[error("query stopped at its memory limit (query.max_memory_bytes): {0}")]
    MemoryLimit(String),
    /// The tenant already runs as many queries here as its quota (or
    /// `query.max_concurrent_per_tenant`) allows.
    #[error(
        "tenant {tenant} already runs {limit} queries on this node (its max_concurrent_queries quota, or query.max_concurrent_per_tenant); retry when one ends"
    )]
    TooManyQueries {
        /// The tenant at its limit.
        tenant: String,
        /// The limit.
        limit: usize,
    },
    /// The query read more of the lake than a tenant's quota allows.
    #[error(
        "query stopped after reading {limit} bytes, tenant {tenant}'s max_query_scanned_bytes quota; narrow the time range or the columns"
    )]
    ScanLimit {
        /// The tenant whose quota it is.
        tenant: String,
        /// The limit, bytes.
        limit: u64,
    },
    /// The query was cancelled (`DELETE /v1/queries/{id}`, or its client went away).
    #[error("query cancelled")]
    Cancelled,
    /// Execution failed.
    #[error("query failed: {0}")]
    Execution(String),
}

impl QueryError {
    /// A stable, machine-readable code for the error.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::InvalidSql(_) => "invalid_sql",
            QueryError::Timeout(_) => "query_timeout",
            QueryError::TooLarge { .. } => "sql_too_large",
            QueryError::Catalog(e) if e.is_retryable() => "catalog_unavailable",
            QueryError::Catalog(_) => "catalog_error",
            QueryError::MemoryLimit(_) => "memory_limit",
            QueryError::TooManyQueries { .. } => "too_many_queries",
            QueryError::ScanLimit { .. } => "scan_limit",
            QueryError::Cancelled => "query_cancelled",
            QueryError::Execution(_) => "query_failed",
        }
    }
}

pub(crate) fn from_datafusion(e: DataFusionError) -> QueryError {
    // Unwrap DataFusion's context layers to decide the class by the root.
    if let Some(reached) = crate::counting_store::ScanLimitReached::find_in(&e) {
        return QueryError::ScanLimit {
            tenant: reached.tenant,
            limit: reached.limit,
        };
    }
    match e.find_root() {
        DataFusionError::SQL(..) | DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
            QueryError::InvalidSql(e.strip_backtrace())
        }
        DataFusionError::NotImplemented(_) => QueryError::InvalidSql(e.strip_backtrace()),
        DataFusionError::ResourcesExhausted(_) => QueryError::MemoryLimit(e.strip_backtrace()),
        _ => QueryError::Execution(e.strip_backtrace()),
    }
}

/// What callers' SQL may do: read, nothing else.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Every table and view a session has, with its type (`TABLE`, `VIEW`) and
/// schema: for catalog listings (Flight SQL GetTables).
pub fn catalog_tables() -> Vec<(&'static str, &'static str, SchemaRef)> {
    let events = TenantTable::new(&event_schema(), Vec::new()).schema();
    let mut tables = vec![
        ("events", "TABLE", events.clone()),
        (
            "dead_letter",
            "TABLE",
            TenantTable::new(&dead_letter_schema(), Vec::new()).schema(),
        ),
        (
            crate::triage::ALERT_RECORDS,
            "TABLE",
            TenantTable::new(&alert_schema(), Vec::new()).schema(),
        ),
        (
            crate::triage::ALERT_UPDATES,
            "TABLE",
            TenantTable::new(&alert_update_schema(), Vec::new()).schema(),
        ),
        (
            crate::triage::ALERTS,
            "VIEW",
            crate::triage::alerts_view_schema(),
        ),
    ];
    tables.extend(
        CLASS_VIEWS
            .iter()
            .map(|(view, _)| (*view, "VIEW", events.clone())),
    );
    tables
}

/// The schema name a session of `scope` has: the tenant, or `tenants` for
/// several.
pub fn schema_name(scope: &Scope) -> &str {
    match scope.tenants() {
        [one] => one.as_str(),
        _ => "tenants",
    }
}

/// A query's result.
#[derive(Debug)]
pub struct QueryOutput {
    /// The query's id (history, audit).
    pub query_id: QueryId,
    /// Result schema.
    pub schema: SchemaRef,
    /// Result rows.
    pub batches: Vec<RecordBatch>,
    /// Rows returned.
    pub row_count: usize,
    /// Whether rows were cut at `query.max_result_rows`.
    pub truncated: bool,
    /// Time taken.
    pub elapsed: Duration,
}

/// A query's rows as they are produced (see [`QueryEngine::execute_stream`]).
pub struct QueryStream {
    /// The query's id (history, audit, cancel).
    pub query_id: QueryId,
    /// Result schema.
    pub schema: SchemaRef,
    /// Result batches, capped and bounded in time.
    pub batches: futures::stream::BoxStream<'static, Result<RecordBatch, QueryError>>,
    /// Set once rows were cut at `query.max_result_rows`.
    pub truncated: Arc<AtomicBool>,
}

impl std::fmt::Debug for QueryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStream")
            .field("query_id", &self.query_id)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// Runs SQL for tenants.
#[derive(Clone)]
pub struct QueryEngine {
    catalog: Arc<dyn Catalog>,
    store: Arc<dyn ObjectStore>,
    config: QueryConfig,
    log: Arc<QueryLog>,
    /// Per tenant, the slots for concurrent queries.
    slots: Arc<Mutex<HashMap<TenantId, TenantSlots>>>,
    /// Parquet footers, page indexes and file statistics, shared by all
    /// queries: lake files never change once written (a new id for every
    /// rewrite), so what was read for one query holds for the next. No
    /// cache of file listings: the catalog says which files a query reads.
    caches: CacheManagerConfig,
    /// Indicator lists parsed once per stored version.
    intel: Arc<IntelCache>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("config", &self.config)
            .finish()
    }
}

/// A tenant's query slots on this node: the limit its semaphore was made
/// for, and the semaphore.
type TenantSlots = (usize, Arc<Semaphore>);

/// A query between its start and its end: when dropped (finished, failed,
/// cancelled, or its client gone) it writes the audit record.
struct Audited {
    log: Arc<QueryLog>,
    id: QueryId,
    rows: u64,
    /// Bytes read from the lake so far.
    read: Option<Arc<AtomicU64>>,
    /// The error code and message, once failed; `None` while all is well.
    failure: Option<(&'static str, String)>,
    /// Whether the rows ran out (or were capped) rather than being dropped.
    completed: bool,
    /// The tenants' query slots, held until the query ends.
    _slots: Vec<OwnedSemaphorePermit>,
}

impl Audited {
    fn fail(&mut self, e: &QueryError) {
        self.failure = Some((e.code(), e.to_string()));
    }

    /// Ends the query as answered in full (or up to the row cap).
    fn complete(mut self) {
        self.completed = true;
    }
}

impl Drop for Audited {
    fn drop(&mut self) {
        let bytes_scanned = self.read.as_ref().map_or(0, |r| r.load(Ordering::Relaxed));
        let (outcome, error) = match self.failure.take() {
            Some((code, message)) => (code, Some(message)),
            None if self.completed => ("ok", None),
            None => (
                "query_cancelled",
                Some("the client went away before the last row".to_string()),
            ),
        };
        metrics::counter!("spoor_query_total", "outcome" => outcome).increment(1);
        metrics::counter!("spoor_query_bytes_read_total").increment(bytes_scanned);
        self.log.finish(
            &self.id,
            Finished {
                rows: self.rows,
                bytes_scanned,
                outcome,
                error,
            },
        );
    }
}

impl QueryEngine {
    /// The same engine, appending every finished query to `audit` (set
    /// before the engine runs any query: the history starts afresh).
    pub fn with_audit(mut self, audit: spoor_common::audit::AuditLog) -> Self {
        self.log = QueryLog::with_audit(self.config.history_size, audit);
        self
    }

    /// An engine over the lake `store` whose files the `catalog` lists.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        store: Arc<dyn ObjectStore>,
        config: QueryConfig,
    ) -> Self {
        let log = QueryLog::new(config.history_size);
        let listing_off = CacheManagerConfig::default().with_list_files_cache_limit(0);
        let caches = match CacheManager::try_new(&listing_off) {
            Ok(shared) => listing_off
                .with_file_metadata_cache(Some(shared.get_file_metadata_cache()))
                .with_file_statistics_cache(shared.get_file_statistic_cache()),
            Err(e) => {
                tracing::warn!(error = %e, "query caches unavailable; every query reads Parquet footers");
                listing_off
            }
        };
        QueryEngine {
            catalog,
            store,
            config,
            log,
            slots: Arc::default(),
            caches,
            intel: Arc::default(),
        }
    }

    /// The running and finished queries.
    pub fn log(&self) -> &Arc<QueryLog> {
        &self.log
    }

    /// The catalog the engine lists files from.
    pub(crate) fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// The lake.
    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Runs one read-only statement in `scope` and collects its rows (at
    /// most `query.max_result_rows`).
    pub async fn execute(
        &self,
        scope: &Scope,
        interface: &'static str,
        sql: &str,
    ) -> Result<QueryOutput, QueryError> {
        let started = Instant::now();
        let stream = self.execute_stream(scope, interface, sql).await?;
        let QueryStream {
            query_id,
            schema,
            mut batches,
            truncated,
        } = stream;
        let mut collected = Vec::new();
        let mut rows = 0;
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            rows += batch.num_rows();
            collected.push(batch);
        }
        let elapsed = started.elapsed();
        metrics::histogram!("spoor_query_seconds").record(elapsed.as_secs_f64());
        Ok(QueryOutput {
            query_id,
            schema,
            batches: collected,
            row_count: rows,
            truncated: truncated.load(Ordering::Relaxed),
            elapsed,
        })
    }

    /// Runs one read-only statement in `scope` and streams its rows: at
    /// most `query.max_result_rows` of them, and an error in place of the
    /// rest once `query.timeout_ms` has passed since the start or the query
    /// was cancelled. Nothing is buffered beyond DataFusion's own batches;
    /// dropping the stream cancels the query. Every query is audited when
    /// it ends (see [`crate::audit`]).
    pub async fn execute_stream(
        &self,
        scope: &Scope,
        interface: &'static str,
        sql: &str,
    ) -> Result<QueryStream, QueryError> {
        let (query_id, cancel) = self.log.start(scope, interface, sql);
        let mut audited = Audited {
            log: self.log.clone(),
            id: query_id.clone(),
            rows: 0,
            read: None,
            failure: None,
            completed: false,
            _slots: Vec::new(),
        };
        match self.take_slots(scope) {
            Ok(slots) => audited._slots = slots,
            Err(e) => {
                audited.fail(&e);
                return Err(e);
            }
        }
        if sql.len() > self.config.max_sql_bytes {
            let e = QueryError::TooLarge {
                size: sql.len(),
                limit: self.config.max_sql_bytes,
            };
            audited.fail(&e);
            return Err(e);
        }
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        let planned = tokio::select! {
            planned = tokio::time::timeout_at(deadline, self.plan(scope, sql)) => match planned {
                Ok(planned) => planned,
                Err(_) => Err(QueryError::Timeout(timeout)),
            },
            () = cancel.cancelled() => Err(QueryError::Cancelled),
        };
        let (schema, read, stream) = match planned {
            Ok(p) => p,
            Err(e) => {
                audited.fail(&e);
                return Err(e);
            }
        };
        audited.read = Some(read);
        let limit = self.config.max_result_rows;
        let truncated = Arc::new(AtomicBool::new(false));
        let cut = truncated.clone();
        let batches = futures::stream::unfold(
            (stream, audited, false),
            move |(mut stream, mut audited, done)| {
                let (cancel, cut) = (cancel.clone(), cut.clone());
                async move {
                    if done {
                        return None;
                    }
                    let next = tokio::select! {
                        next = tokio::time::timeout_at(deadline, stream.next()) => {
                            next.map_err(|_| QueryError::Timeout(timeout))
                        }
                        () = cancel.cancelled() => Err(QueryError::Cancelled),
                    };
                    let rows = audited.rows as usize;
                    match next {
                        Err(e) => {
                            audited.fail(&e);
                            Some((Err(e), (stream, audited, true)))
                        }
                        Ok(None) => {
                            audited.complete();
                            None
                        }
                        Ok(Some(Err(e))) => {
                            let e = from_datafusion(e);
                            audited.fail(&e);
                            Some((Err(e), (stream, audited, true)))
                        }
                        Ok(Some(Ok(batch))) if rows >= limit => {
                            // More rows than the cap: say so, and stop.
                            if batch.num_rows() > 0 {
                                cut.store(true, Ordering::Relaxed);
                            }
                            audited.complete();
                            None
                        }
                        Ok(Some(Ok(batch))) => {
                            let take = batch.num_rows().min(limit - rows);
                            let batch = if take < batch.num_rows() {
                                cut.store(true, Ordering::Relaxed);
                                audited.completed = true;
                                batch.slice(0, take)
                            } else {
                                batch
                            };
                            audited.rows += take as u64;
                            let done = audited.completed;
                            Some((Ok(batch), (stream, audited, done)))
                        }
                    }
                }
            },
        )
        .boxed();
        Ok(QueryStream {
            query_id,
            schema,
            batches,
            truncated,
        })
    }

    /// The schema `sql` answers with in `scope`, without running it (Flight
    /// SQL's GetFlightInfo and prepared statements, PostgreSQL's Describe).
    pub async fn schema_of(&self, scope: &Scope, sql: &str) -> Result<SchemaRef, QueryError> {
        if sql.len() > self.config.max_sql_bytes {
            return Err(QueryError::TooLarge {
                size: sql.len(),
                limit: self.config.max_sql_bytes,
            });
        }
        let (ctx, _) = self.session(scope).await?;
        let df = ctx
            .sql_with_options(sql, read_only())
            .await
            .map_err(from_datafusion)?;
        Ok(Arc::new(df.schema().as_arrow().clone()))
    }

    /// Replaces (or creates) `tenant`'s indicator list `name` from an upload
    /// (see [`crate::intel::parse_upload`]).
    pub async fn put_intel(
        &self,
        tenant: &TenantId,
        name: &str,
        body: &[u8],
    ) -> Result<IndicatorList, IntelError> {
        let indicators = crate::intel::parse_upload(body)?;
        crate::intel::put(self.store.as_ref(), tenant, name, indicators).await
    }

    /// Deletes `tenant`'s indicator list `name`.
    pub async fn delete_intel(&self, tenant: &TenantId, name: &str) -> Result<(), IntelError> {
        crate::intel::delete(self.store.as_ref(), tenant, name).await
    }

    /// The indicator lists of the scope's tenants.
    pub async fn intel_lists(&self, scope: &Scope) -> Result<Vec<Arc<LoadedList>>, IntelError> {
        self.intel.load(self.store.as_ref(), scope.tenants()).await
    }

    /// One query slot of each of the scope's tenants, or which tenant is full.
    fn take_slots(&self, scope: &Scope) -> Result<Vec<OwnedSemaphorePermit>, QueryError> {
        let mut slots = self
            .slots
            .lock()
            .map_err(|_| QueryError::Execution("query slots poisoned".into()))?;
        scope
            .tenants()
            .iter()
            .map(|tenant| {
                // The tenant's own quota, else the node's setting.
                let limit = scope
                    .max_concurrent_queries(tenant)
                    .unwrap_or(self.config.max_concurrent_per_tenant);
                let entry = slots
                    .entry(tenant.clone())
                    .or_insert_with(|| (limit, Arc::new(Semaphore::new(limit))));
                if entry.0 != limit {
                    // A changed quota: a new semaphore; queries holding
                    // the old one's permits finish undisturbed.
                    *entry = (limit, Arc::new(Semaphore::new(limit)));
                }
                entry
                    .1
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| QueryError::TooManyQueries {
                        tenant: tenant.to_string(),
                        limit,
                    })
            })
            .collect()
    }

    /// Plans `sql` in a session of the scope's tables and starts it.
    async fn plan(
        &self,
        scope: &Scope,
        sql: &str,
    ) -> Result<(SchemaRef, Arc<AtomicU64>, SendableRecordBatchStream), QueryError> {
        let (ctx, read) = self.session(scope).await?;
        let df = ctx
            .sql_with_options(sql, read_only())
            .await
            .map_err(from_datafusion)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let task = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await.map_err(from_datafusion)?;
        let stream =
            datafusion::physical_plan::execute_stream(plan, task).map_err(from_datafusion)?;
        Ok((schema, read, stream))
    }

    /// A session with the scope's tables and nothing else: each table is
    /// the union of its tenants' files with a `tenant` column.
    /// Also returns the count of bytes the session reads from the lake.
    pub(crate) async fn session(
        &self,
        scope: &Scope,
    ) -> Result<(SessionContext, Arc<AtomicU64>), QueryError> {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("spoor", schema_name(scope));
        let opts = config.options_mut();
        // Filters are not pushed into the Parquet decoder: for the usual
        // hunting filter (a class, a time range: a quarter or more of the
        // rows) decoding every column and filtering after is faster (1.6 to
        // 1.8 times on the hunting benchmark's top-N and join), and needle
        // lookups are already cut to a few row groups and pages by bloom
        // filters, statistics and the page index, which stay on.
        opts.execution.parquet.pushdown_filters = false;
        opts.execution.parquet.enable_page_index = true;
        opts.execution.parquet.bloom_filter_on_read = true;
        // One memory pool per query: a query past its limit spills or fails
        // alone, and cannot starve the others.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.config.max_memory_bytes, 1.0)
            .with_cache_manager(self.caches.clone())
            .build_arc()
            .map_err(from_datafusion)?;
        let mut ctx = SessionContext::new_with_config_rt(config, runtime);
        crate::functions::register(&mut ctx).map_err(from_datafusion)?;
        let lists = self
            .intel_lists(scope)
            .await
            .map_err(|e| QueryError::Execution(e.to_string()))?;
        ctx.register_udf(ScalarUDF::from(IocMatch::new(&lists)));
        let rows: Vec<RecordBatch> = lists.iter().map(|l| l.rows().clone()).collect();
        ctx.register_table(
            "intel",
            Arc::new(
                MemTable::try_new(crate::intel::intel_schema(), vec![rows])
                    .map_err(from_datafusion)?,
            ),
        )
        .map_err(from_datafusion)?;
        let (store, read) = CountingStore::new(
            self.store.clone(),
            scope.max_scanned_bytes().map(|(limit, tenant)| {
                crate::counting_store::ScanLimitReached {
                    limit,
                    tenant: tenant.to_string(),
                }
            }),
        );
        ctx.register_object_store(&lake_url(), Arc::new(store));
        // The alert files are `alert_records`; `alerts` is the view of
        // them with their triage (crate::triage).
        for (table, name, schema) in [
            (Table::Events, Table::Events.name(), event_schema()),
            (
                Table::DeadLetter,
                Table::DeadLetter.name(),
                dead_letter_schema(),
            ),
            (Table::Alerts, crate::triage::ALERT_RECORDS, alert_schema()),
            (
                Table::AlertUpdates,
                crate::triage::ALERT_UPDATES,
                alert_update_schema(),
            ),
        ] {
            let mut parts = Vec::with_capacity(scope.tenants().len());
            for tenant in scope.tenants() {
                let files = self
                    .catalog
                    .list_files(FileQuery::all(tenant.clone(), table))
                    .await?;
                parts.push((tenant.clone(), files));
            }
            ctx.register_table(name, Arc::new(TenantTable::new(&schema, parts)))
                .map_err(from_datafusion)?;
        }
        // The audit trail: the cluster's own tenant's, for the cluster's
        // admin only.
        let cluster = spoor_common::audit::cluster_tenant();
        if scope.is_admin() && scope.tenants().contains(&cluster) {
            let files = self
                .catalog
                .list_files(FileQuery::all(cluster.clone(), Table::Audit))
                .await?;
            ctx.register_table(
                Table::Audit.name(),
                Arc::new(TenantTable::new(
                    &spoor_common::schema::audit_schema(),
                    vec![(cluster, files)],
                )),
            )
            .map_err(from_datafusion)?;
        }
        crate::triage::register_alerts_view(&ctx)
            .await
            .map_err(from_datafusion)?;
        // The views are built as plans, not SQL: parsing and planning
        // fourteen CREATE VIEWs would cost every query milliseconds.
        let events = ctx
            .table_provider(Table::Events.name())
            .await
            .map_err(from_datafusion)?;
        for (view, classes) in CLASS_VIEWS {
            let values: Vec<Expr> = classes.iter().map(|c| lit(*c as i32)).collect();
            let plan = LogicalPlanBuilder::scan(
                Table::Events.name(),
                provider_as_source(events.clone()),
                None,
            )
            .and_then(|b| b.filter(col("class_uid").in_list(values, false)))
            .and_then(|b| b.build())
            .map_err(from_datafusion)?;
            let definition = format!(
                "SELECT * FROM events WHERE class_uid IN ({})",
                classes
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            ctx.register_table(*view, Arc::new(ViewTable::new(plan, Some(definition))))
                .map_err(from_datafusion)?;
        }
        Ok((ctx, read))
    }
}

#[cfg(test)]
pub(crate) mod tests;

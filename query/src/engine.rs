//! Tenant-scoped, read-only SQL over the lake.
//!
//! Every request gets its own DataFusion session holding only the caller's
//! tenant's tables, each listing exactly the files the catalog holds for it.
//! DDL, DML and session statements are refused, and tables can only be
//! named, never given as file paths or URLs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use futures::StreamExt;
use object_store::ObjectStore;
use spoor_common::catalog::{Catalog, CatalogError, FileQuery};
use spoor_common::config::QueryConfig;
use spoor_common::schema::{Table, dead_letter_schema, event_schema};
use spoor_common::storage::{LAKE_URL, lake_url};
use spoor_common::tenant::TenantId;

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
            QueryError::Execution(_) => "query_failed",
        }
    }
}

fn from_datafusion(e: DataFusionError) -> QueryError {
    // Unwrap DataFusion's context layers to decide the class by the root.
    match e.find_root() {
        DataFusionError::SQL(..) | DataFusionError::Plan(_) | DataFusionError::SchemaError(..) => {
            QueryError::InvalidSql(e.strip_backtrace())
        }
        DataFusionError::NotImplemented(_) => QueryError::InvalidSql(e.strip_backtrace()),
        DataFusionError::ResourcesExhausted(_) => QueryError::MemoryLimit(e.strip_backtrace()),
        _ => QueryError::Execution(e.strip_backtrace()),
    }
}

/// A query's result.
#[derive(Debug)]
pub struct QueryOutput {
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
    /// Result schema.
    pub schema: SchemaRef,
    /// Result batches, capped and bounded in time.
    pub batches: futures::stream::BoxStream<'static, Result<RecordBatch, QueryError>>,
}

impl std::fmt::Debug for QueryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStream")
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
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("config", &self.config)
            .finish()
    }
}

impl QueryEngine {
    /// An engine over the lake `store` whose files the `catalog` lists.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        store: Arc<dyn ObjectStore>,
        config: QueryConfig,
    ) -> Self {
        QueryEngine {
            catalog,
            store,
            config,
        }
    }

    /// Runs one read-only statement for `tenant`.
    pub async fn execute(&self, tenant: &TenantId, sql: &str) -> Result<QueryOutput, QueryError> {
        let started = Instant::now();
        if sql.len() > self.config.max_sql_bytes {
            return Err(QueryError::TooLarge {
                size: sql.len(),
                limit: self.config.max_sql_bytes,
            });
        }
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let result = tokio::time::timeout(timeout, self.run(tenant, sql)).await;
        let outcome = match result {
            Ok(Ok(mut out)) => {
                out.elapsed = started.elapsed();
                Ok(out)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(QueryError::Timeout(timeout)),
        };
        let label = match &outcome {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        metrics::counter!("spoor_query_total", "outcome" => label).increment(1);
        metrics::histogram!("spoor_query_seconds").record(started.elapsed().as_secs_f64());
        outcome
    }

    /// Runs one read-only statement for `tenant` and streams its rows: at
    /// most `query.max_result_rows` of them, and an error in place of the
    /// rest once `query.timeout_ms` has passed since the start. Nothing is
    /// buffered beyond DataFusion's own batches; dropping the stream
    /// cancels the query.
    pub async fn execute_stream(
        &self,
        tenant: &TenantId,
        sql: &str,
    ) -> Result<QueryStream, QueryError> {
        if sql.len() > self.config.max_sql_bytes {
            return Err(QueryError::TooLarge {
                size: sql.len(),
                limit: self.config.max_sql_bytes,
            });
        }
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        let planned = match tokio::time::timeout_at(deadline, self.plan(tenant, sql)).await {
            Ok(planned) => planned,
            Err(_) => Err(QueryError::Timeout(timeout)),
        };
        let label = match &planned {
            Ok(_) => "streamed",
            Err(e) => e.code(),
        };
        metrics::counter!("spoor_query_total", "outcome" => label).increment(1);
        let (schema, stream) = planned?;
        let limit = self.config.max_result_rows;
        let batches = futures::stream::unfold(
            (stream, 0usize, false),
            move |(mut stream, rows, done)| async move {
                if done || rows >= limit {
                    return None;
                }
                match tokio::time::timeout_at(deadline, stream.next()).await {
                    Err(_) => Some((Err(QueryError::Timeout(timeout)), (stream, rows, true))),
                    Ok(None) => None,
                    Ok(Some(Err(e))) => Some((Err(from_datafusion(e)), (stream, rows, true))),
                    Ok(Some(Ok(batch))) => {
                        let take = batch.num_rows().min(limit - rows);
                        let batch = if take < batch.num_rows() {
                            batch.slice(0, take)
                        } else {
                            batch
                        };
                        Some((Ok(batch), (stream, rows + take, false)))
                    }
                }
            },
        )
        .boxed();
        Ok(QueryStream { schema, batches })
    }

    /// Plans `sql` in a session of `tenant`'s tables and starts it.
    async fn plan(
        &self,
        tenant: &TenantId,
        sql: &str,
    ) -> Result<(SchemaRef, SendableRecordBatchStream), QueryError> {
        let ctx = self.session(tenant).await?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx
            .sql_with_options(sql, options)
            .await
            .map_err(from_datafusion)?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let stream = df.execute_stream().await.map_err(from_datafusion)?;
        Ok((schema, stream))
    }

    async fn run(&self, tenant: &TenantId, sql: &str) -> Result<QueryOutput, QueryError> {
        let (schema, mut stream) = self.plan(tenant, sql).await?;
        let limit = self.config.max_result_rows;
        let mut batches = Vec::new();
        let mut rows = 0;
        let mut truncated = false;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(from_datafusion)?;
            if rows + batch.num_rows() > limit {
                batches.push(batch.slice(0, limit - rows));
                rows = limit;
                truncated = true;
                break;
            }
            rows += batch.num_rows();
            batches.push(batch);
        }
        Ok(QueryOutput {
            schema,
            batches,
            row_count: rows,
            truncated,
            elapsed: Duration::ZERO,
        })
    }

    /// A session with the tenant's tables and nothing else.
    async fn session(&self, tenant: &TenantId) -> Result<SessionContext, QueryError> {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("spoor", tenant.as_str());
        let opts = config.options_mut();
        opts.execution.parquet.pushdown_filters = true;
        opts.execution.parquet.reorder_filters = true;
        opts.execution.parquet.enable_page_index = true;
        opts.execution.parquet.bloom_filter_on_read = true;
        // One memory pool per query: a query past its limit spills or fails
        // alone, and cannot starve the others.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(self.config.max_memory_bytes, 1.0)
            .build_arc()
            .map_err(from_datafusion)?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        crate::functions::register(&ctx);
        ctx.register_object_store(&lake_url(), self.store.clone());
        for (table, schema) in [
            (Table::Events, event_schema()),
            (Table::DeadLetter, dead_letter_schema()),
        ] {
            let files = self
                .catalog
                .list_files(FileQuery::all(tenant.clone(), table))
                .await?;
            let provider: Arc<dyn datafusion::catalog::TableProvider> = if files.is_empty() {
                Arc::new(MemTable::try_new(schema.clone(), vec![vec![]]).map_err(from_datafusion)?)
            } else {
                let urls = files
                    .iter()
                    .map(|f| ListingTableUrl::parse(format!("{LAKE_URL}{}", f.file.object_key)))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(from_datafusion)?;
                let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                    .with_file_extension(".parquet");
                let config = ListingTableConfig::new_with_multi_paths(urls)
                    .with_listing_options(options)
                    .with_schema(schema);
                Arc::new(ListingTable::try_new(config).map_err(from_datafusion)?)
            };
            ctx.register_table(table.name(), provider)
                .map_err(from_datafusion)?;
        }
        for (view, classes) in CLASS_VIEWS {
            let classes: Vec<String> = classes.iter().map(i64::to_string).collect();
            // DDL of our own, before the caller's SQL (which may not do DDL).
            ctx.sql(&format!(
                "CREATE VIEW {view} AS SELECT * FROM events WHERE class_uid IN ({})",
                classes.join(", ")
            ))
            .await
            .map_err(from_datafusion)?;
        }
        Ok(ctx)
    }
}

#[cfg(test)]
mod tests;

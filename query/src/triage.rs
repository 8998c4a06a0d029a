//! Alert triage: the status (`new`, `acknowledged`, `closed`) and assignee
//! analysts give an alert, kept as an append-only history beside the
//! immutable alert rows.
//!
//! Workers write each alert once (`alerts` files, exactly once per id);
//! nothing ever rewrites them. A triage change is one row appended to the
//! tenant's `alert_updates` table (a small Parquet file committed to the
//! catalog like any other), holding the alert's whole triage state after
//! the change. Every session then has:
//!
//! - `alert_records`: the alert rows as the workers wrote them;
//! - `alert_updates`: the triage history;
//! - `alerts`: a view with one row per alert record and its current triage
//!   ([`TRIAGE_COLUMNS`]): `status` (`new` until changed), `assignee`,
//!   `status_updated_at` (the last change of status), `acknowledged_at`
//!   (when it first left `new`), `closed_at` (when it was last closed;
//!   null unless closed now). MTTD and MTTR are then plain SQL.
//!
//! The view reads only the session's own `alert_records` and
//! `alert_updates`, which hold only the caller's tenants' files, and joins
//! on (`tenant`, `alert_id`), so tenants never mix.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, new_null_array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::json::writer::{JsonArray, WriterBuilder};
use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::common::{Column, JoinType, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::expr_fn::{max, min};
use datafusion::functions_window::expr_fn::{lag, row_number};
use datafusion::logical_expr::{Expr, ExprFunctionExt, LogicalPlanBuilder, col, lit, when};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;
use serde_json::Value;
use spoor_common::catalog::{CatalogError, CommitBatch, NewFile};
use spoor_common::lake_file::encode_parquet;
use spoor_common::layout;
use spoor_common::schema::{
    ALERT_COLUMNS, ALERT_STATUSES, ALERT_UPDATE_COLUMNS, ALERT_UPDATE_SCHEMA_VERSION, Table,
    alert_schema, alert_update_col, alert_update_schema,
};
use spoor_common::tenant::TenantId;

use crate::audit::Scope;
use crate::engine::{QueryEngine, QueryError, from_datafusion};
use crate::tenant_table::{TENANT_COLUMN, TenantTable};

/// SQL name of the alert rows as written (the `alerts` table's files).
pub const ALERT_RECORDS: &str = "alert_records";
/// SQL name of the triage history.
pub const ALERT_UPDATES: &str = "alert_updates";
/// SQL name of the view of alerts with their current triage.
pub const ALERTS: &str = "alerts";

/// The columns the `alerts` view adds to the alert rows, before `tenant`.
pub const TRIAGE_COLUMNS: [&str; 5] = [
    "status",
    "assignee",
    "status_updated_at",
    "acknowledged_at",
    "closed_at",
];

/// The status of an alert nobody has triaged.
pub const NEW: &str = "new";

/// The `alerts` view: each alert record with its current triage.
///
/// Per alert, the history rows are numbered newest first (ties broken by
/// `update_id`, a hash, so every node picks the same), and each row is
/// compared with the one before it to find the changes of status.
pub fn alerts_view_sql() -> String {
    let records: Vec<String> = ALERT_COLUMNS
        .iter()
        .map(|c| format!("r.{}", c.name))
        .collect();
    format!(
        "WITH h AS (\
           SELECT tenant, alert_id, time, status, assignee, \
             coalesce(lag(status) OVER (PARTITION BY tenant, alert_id ORDER BY time, update_id), '{NEW}') AS previous, \
             row_number() OVER (PARTITION BY tenant, alert_id ORDER BY time DESC, update_id DESC) AS newest \
           FROM {ALERT_UPDATES}), \
         t AS (\
           SELECT tenant, alert_id, \
             max(CASE WHEN newest = 1 THEN status END) AS status, \
             max(CASE WHEN newest = 1 THEN assignee END) AS assignee, \
             max(CASE WHEN status <> previous THEN time END) AS status_updated_at, \
             min(CASE WHEN status <> '{NEW}' THEN time END) AS acknowledged_at, \
             max(CASE WHEN status = 'closed' AND previous <> 'closed' THEN time END) AS last_closed \
           FROM h GROUP BY tenant, alert_id) \
         SELECT {}, \
           coalesce(t.status, '{NEW}') AS status, t.assignee, t.status_updated_at, t.acknowledged_at, \
           CASE WHEN t.status = 'closed' THEN t.last_closed END AS closed_at, \
           r.{TENANT_COLUMN} \
         FROM {ALERT_RECORDS} r LEFT JOIN t ON r.{TENANT_COLUMN} = t.tenant AND r.alert_id = t.alert_id",
        records.join(", ")
    )
}

/// Registers the `alerts` view in a session that has `alert_records` and
/// `alert_updates`. The plan is built directly (the same plan as
/// [`alerts_view_sql`], which is its definition in `information_schema`):
/// planning the SQL would cost every session ten times as much.
pub(crate) async fn register_alerts_view(ctx: &SessionContext) -> Result<(), DataFusionError> {
    let records = ctx.table_provider(ALERT_RECORDS).await?;
    let updates = ctx.table_provider(ALERT_UPDATES).await?;
    let text = |v: &str| lit(ScalarValue::Utf8View(Some(v.to_string())));
    let key = || vec![col(TENANT_COLUMN), col("alert_id")];
    let order = |ascending: bool| {
        vec![
            col("time").sort(ascending, false),
            col("update_id").sort(ascending, false),
        ]
    };
    let previous = lag(col("status"), Some(1), None)
        .partition_by(key())
        .order_by(order(true))
        .build()?;
    let newest = row_number()
        .partition_by(key())
        .order_by(order(false))
        .build()?;
    let latest = |c: &str| -> Result<Expr, DataFusionError> {
        Ok(max(when(col("newest").eq(lit(1u64)), col(c)).end()?).alias(c))
    };
    let windowed = LogicalPlanBuilder::scan(ALERT_UPDATES, provider_as_source(updates), None)?
        .window(vec![previous])?
        .window(vec![newest])?;
    // Each window's column comes after its input's, named by the planner.
    let fields = windowed.schema().fields();
    let computed = |back: usize| {
        let name = fields
            .len()
            .checked_sub(back)
            .map(|i| fields[i].name().clone())
            .unwrap_or_default();
        Expr::Column(Column::new_unqualified(name))
    };
    let (previous, newest) = (computed(2), computed(1));
    let triage = windowed
        .project(vec![
            col(TENANT_COLUMN),
            col("alert_id"),
            col("time"),
            col("status"),
            col("assignee"),
            coalesce(vec![previous, text(NEW)]).alias("previous"),
            newest.alias("newest"),
        ])?
        .aggregate(
            key(),
            vec![
                latest("status")?,
                latest("assignee")?,
                max(when(col("status").not_eq(col("previous")), col("time")).end()?)
                    .alias("status_updated_at"),
                min(when(col("status").not_eq(text(NEW)), col("time")).end()?)
                    .alias("acknowledged_at"),
                max(when(
                    col("status")
                        .eq(text("closed"))
                        .and(col("previous").not_eq(text("closed"))),
                    col("time"),
                )
                .end()?)
                .alias("last_closed"),
            ],
        )?
        .alias("t")?
        .build()?;
    let r = |c: &str| Expr::Column(Column::new(Some(ALERT_RECORDS), c));
    let t = |c: &str| Expr::Column(Column::new(Some("t"), c));
    let mut columns: Vec<Expr> = ALERT_COLUMNS.iter().map(|c| r(c.name)).collect();
    columns.extend([
        coalesce(vec![t("status"), text(NEW)]).alias("status"),
        t("assignee").alias("assignee"),
        t("status_updated_at").alias("status_updated_at"),
        t("acknowledged_at").alias("acknowledged_at"),
        when(t("status").eq(text("closed")), t("last_closed"))
            .end()?
            .alias("closed_at"),
        r(TENANT_COLUMN),
    ]);
    let plan = LogicalPlanBuilder::scan(ALERT_RECORDS, provider_as_source(records), None)?
        .join(
            triage,
            JoinType::Left,
            (
                vec![
                    Column::new(Some(ALERT_RECORDS), TENANT_COLUMN),
                    Column::new(Some(ALERT_RECORDS), "alert_id"),
                ],
                vec![
                    Column::new(Some("t"), TENANT_COLUMN),
                    Column::new(Some("t"), "alert_id"),
                ],
            ),
            None,
        )?
        .project(columns)?
        .build()?;
    ctx.register_table(
        ALERTS,
        Arc::new(ViewTable::new(plan, Some(alerts_view_sql()))),
    )?;
    Ok(())
}

/// The `alerts` view's schema, for catalog listings (Flight SQL): the alert
/// columns, [`TRIAGE_COLUMNS`], then `tenant`.
pub fn alerts_view_schema() -> SchemaRef {
    let records = TenantTable::new(&alert_schema(), Vec::new()).schema();
    let mut fields: Vec<Field> = records
        .fields()
        .iter()
        .filter(|f| f.name() != TENANT_COLUMN)
        .map(|f| f.as_ref().clone())
        .collect();
    let time = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    fields.extend([
        Field::new("status", DataType::Utf8View, false),
        Field::new("assignee", DataType::Utf8View, true),
        Field::new("status_updated_at", time.clone(), true),
        Field::new("acknowledged_at", time.clone(), true),
        Field::new("closed_at", time, true),
        Field::new(TENANT_COLUMN, DataType::Utf8, false),
    ]);
    Arc::new(Schema::new_with_metadata(
        fields,
        records.metadata().clone(),
    ))
}

/// Most characters of an assignee.
pub const MAX_ASSIGNEE_CHARS: usize = 128;
/// Most bytes of a note.
pub const MAX_NOTE_BYTES: usize = 4096;
/// Most bytes of an alert id (workers write 32 hex digits).
pub const MAX_ALERT_ID_BYTES: usize = 128;

/// A triage change as an analyst asks for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriageChange {
    /// The new status; `None` keeps the current one.
    pub status: Option<String>,
    /// The new assignee: `None` keeps the current one, `Some(None)`
    /// unassigns.
    pub assignee: Option<Option<String>>,
    /// A note on the change.
    pub note: Option<String>,
    /// Who asks (the token id), when known.
    pub updated_by: Option<String>,
}

/// Why a triage change or lookup was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    /// A field of the request is not acceptable; the message names it.
    #[error("{field}: {reason}")]
    Invalid {
        /// The request field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The tenant has no alert with this id.
    #[error("tenant {tenant} has no alert {alert_id:?}")]
    NotFound {
        /// The tenant asked.
        tenant: String,
        /// The id asked.
        alert_id: String,
    },
    /// Reading the alert failed.
    #[error("reading alert {alert_id}: {source}")]
    Query {
        /// The alert.
        alert_id: String,
        /// The cause.
        source: QueryError,
    },
    /// Writing the update to the lake failed.
    #[error("writing {key}: {reason}")]
    Store {
        /// The object key.
        key: String,
        /// The cause.
        reason: String,
    },
    /// The catalog refused or could not take the update.
    #[error("committing the update of alert {alert_id}: {source}")]
    Catalog {
        /// The alert.
        alert_id: String,
        /// The cause.
        source: CatalogError,
    },
}

/// Checks an alert id from a request: 1 to [`MAX_ALERT_ID_BYTES`] of
/// `0-9 a-z A-Z _ -`.
pub fn check_alert_id(alert_id: &str) -> Result<(), TriageError> {
    let ok = !alert_id.is_empty()
        && alert_id.len() <= MAX_ALERT_ID_BYTES
        && alert_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(TriageError::Invalid {
            field: "alert_id",
            reason: format!(
                "{alert_id:?} is not an alert id (1 to {MAX_ALERT_ID_BYTES} of 0-9 a-z A-Z _ -)"
            ),
        })
    }
}

impl TriageChange {
    /// Checks every field, naming the first bad one.
    pub fn validate(&self) -> Result<(), TriageError> {
        if self.status.is_none() && self.assignee.is_none() && self.note.is_none() {
            return Err(TriageError::Invalid {
                field: "status",
                reason: "nothing to change: give status, assignee or note".into(),
            });
        }
        if let Some(status) = &self.status
            && !ALERT_STATUSES.contains(&status.as_str())
        {
            return Err(TriageError::Invalid {
                field: "status",
                reason: format!(
                    "{status:?} is not a status; one of {}",
                    ALERT_STATUSES.join(", ")
                ),
            });
        }
        if let Some(Some(assignee)) = &self.assignee {
            let chars = assignee.chars().count();
            if assignee.trim().is_empty() || chars > MAX_ASSIGNEE_CHARS {
                return Err(TriageError::Invalid {
                    field: "assignee",
                    reason: format!(
                        "must be 1 to {MAX_ASSIGNEE_CHARS} characters, not blank (null unassigns); got {chars}"
                    ),
                });
            }
            if assignee.chars().any(char::is_control) {
                return Err(TriageError::Invalid {
                    field: "assignee",
                    reason: "must not contain control characters".into(),
                });
            }
        }
        if let Some(note) = &self.note {
            if note.len() > MAX_NOTE_BYTES {
                return Err(TriageError::Invalid {
                    field: "note",
                    reason: format!(
                        "is {} bytes, more than the {MAX_NOTE_BYTES} allowed",
                        note.len()
                    ),
                });
            }
            if note
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t')
            {
                return Err(TriageError::Invalid {
                    field: "note",
                    reason: "must not contain control characters other than newline and tab".into(),
                });
            }
        }
        Ok(())
    }
}

/// One alert with its triage, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertWithHistory {
    /// The `alerts` view's row, as JSON (column → value).
    pub alert: Value,
    /// Its `alert_updates` rows, oldest first.
    pub history: Vec<Value>,
    /// Current status.
    #[serde(skip)]
    pub status: String,
    /// Current assignee.
    #[serde(skip)]
    pub assignee: Option<String>,
    /// Time of the newest update, microseconds.
    #[serde(skip)]
    pub last_update_micros: Option<i64>,
}

/// A recorded change, as the API answers it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedUpdate {
    /// The tenant.
    pub tenant: String,
    /// The alert.
    pub alert_id: String,
    /// The update's id.
    pub update_id: String,
    /// When, RFC 3339.
    pub updated_at: String,
    /// Status after the change.
    pub status: String,
    /// Assignee after the change.
    pub assignee: Option<String>,
    /// The note.
    pub note: Option<String>,
    /// Who.
    pub updated_by: Option<String>,
    /// Status before the change.
    pub previous_status: String,
    /// Assignee before the change.
    pub previous_assignee: Option<String>,
}

fn rows_json(batches: &[RecordBatch]) -> Result<Vec<Value>, String> {
    let mut buf = Vec::new();
    {
        let mut writer = WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, JsonArray>(&mut buf);
        for batch in batches {
            writer.write(batch).map_err(|e| e.to_string())?;
        }
        writer.finish().map_err(|e| e.to_string())?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&buf).map_err(|e| e.to_string())
}

/// The text of `column` in the first row of `batches`.
fn first_text(batches: &[RecordBatch], column: &str) -> Result<Option<String>, String> {
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let array = batch
        .column_by_name(column)
        .ok_or_else(|| format!("no column {column}"))?;
    let text = arrow::compute::cast(array, &DataType::Utf8).map_err(|e| e.to_string())?;
    let text = text
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| format!("{column} is not text"))?;
    Ok((!text.is_null(0)).then(|| text.value(0).to_string()))
}

/// The largest `time` in `batches`.
fn newest_time(batches: &[RecordBatch]) -> Option<i64> {
    batches
        .iter()
        .filter_map(|b| b.column_by_name("time"))
        .filter_map(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        .filter_map(arrow::compute::max)
        .max()
}

impl QueryEngine {
    /// `tenant`'s alert `alert_id` from the `alerts` view, with its
    /// history; `None` when the tenant has no such alert. Not a user
    /// query: no query slot, no history entry.
    pub async fn alert_with_history(
        &self,
        tenant: &TenantId,
        alert_id: &str,
    ) -> Result<Option<AlertWithHistory>, QueryError> {
        let (ctx, _) = self.session(&Scope::single(tenant.clone())).await?;
        let alert = ctx
            .table(ALERTS)
            .await
            .and_then(|df| df.filter(col("alert_id").eq(lit(alert_id))))
            .map_err(from_datafusion)?
            .collect()
            .await
            .map_err(from_datafusion)?;
        let mut rows = rows_json(&alert).map_err(QueryError::Execution)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let history = ctx
            .table(ALERT_UPDATES)
            .await
            .and_then(|df| df.filter(col("alert_id").eq(lit(alert_id))))
            .and_then(|df| {
                df.sort(vec![
                    col("time").sort(true, false),
                    col("update_id").sort(true, false),
                ])
            })
            .map_err(from_datafusion)?
            .collect()
            .await
            .map_err(from_datafusion)?;
        let status = first_text(&alert, "status")
            .map_err(QueryError::Execution)?
            .unwrap_or_else(|| NEW.to_string());
        let assignee = first_text(&alert, "assignee").map_err(QueryError::Execution)?;
        Ok(Some(AlertWithHistory {
            alert: rows.swap_remove(0),
            history: rows_json(&history).map_err(QueryError::Execution)?,
            status,
            assignee,
            last_update_micros: newest_time(&history),
        }))
    }

    /// Records a triage change of `tenant`'s alert `alert_id` at
    /// `now_micros` (or just after the alert's newest update, when a
    /// node's clock is behind): one `alert_updates` file, committed to the
    /// tenant's catalog. Concurrent changes of one alert: the one with the
    /// later time wins.
    pub async fn update_alert(
        &self,
        tenant: &TenantId,
        alert_id: &str,
        change: &TriageChange,
        now_micros: i64,
    ) -> Result<RecordedUpdate, TriageError> {
        check_alert_id(alert_id)?;
        change.validate()?;
        let current = self
            .alert_with_history(tenant, alert_id)
            .await
            .map_err(|source| TriageError::Query {
                alert_id: alert_id.to_string(),
                source,
            })?
            .ok_or_else(|| TriageError::NotFound {
                tenant: tenant.to_string(),
                alert_id: alert_id.to_string(),
            })?;
        let time = current
            .last_update_micros
            .map_or(now_micros, |last| now_micros.max(last.saturating_add(1)));
        let status = change
            .status
            .clone()
            .unwrap_or_else(|| current.status.clone());
        let assignee = match &change.assignee {
            Some(a) => a.clone(),
            None => current.assignee.clone(),
        };
        let update_id = layout::file_id_for_alert_update(
            tenant,
            alert_id,
            time,
            &[
                Some(status.as_str()),
                assignee.as_deref(),
                change.note.as_deref(),
                change.updated_by.as_deref(),
            ],
        );
        let key = layout::object_key(
            tenant,
            Table::AlertUpdates,
            layout::hour_start_micros(time),
            &update_id,
        );
        let store_err = |reason: String| TriageError::Store {
            key: key.clone(),
            reason,
        };
        let batch = update_batch(
            time,
            alert_id,
            &status,
            assignee.as_deref(),
            change.note.as_deref(),
            change.updated_by.as_deref(),
            &update_id,
        )
        .map_err(|e| store_err(e.to_string()))?;
        let bytes = encode_parquet(&batch, ALERT_UPDATE_COLUMNS, 3)
            .map_err(|e| store_err(e.to_string()))?;
        let byte_size = bytes.len() as u64;
        self.store()
            .put(&ObjectPath::from(key.as_str()), PutPayload::from(bytes))
            .await
            .map_err(|e| store_err(e.to_string()))?;
        self.catalog()
            .commit_batch(CommitBatch {
                files: vec![NewFile {
                    file_id: update_id.clone(),
                    tenant: tenant.clone(),
                    table: Table::AlertUpdates,
                    object_key: key.clone(),
                    min_time_micros: time,
                    max_time_micros: time,
                    row_count: 1,
                    byte_size,
                    schema_version: ALERT_UPDATE_SCHEMA_VERSION,
                    source: None,
                }],
                checkpoints: Vec::new(),
            })
            .await
            .map_err(|source| TriageError::Catalog {
                alert_id: alert_id.to_string(),
                source,
            })?;
        Ok(RecordedUpdate {
            tenant: tenant.to_string(),
            alert_id: alert_id.to_string(),
            update_id,
            updated_at: spoor_common::time::to_datetime(time)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            status,
            assignee,
            note: change.note.clone(),
            updated_by: change.updated_by.clone(),
            previous_status: current.status,
            previous_assignee: current.assignee,
        })
    }
}

/// One `alert_updates` row.
fn update_batch(
    time: i64,
    alert_id: &str,
    status: &str,
    assignee: Option<&str>,
    note: Option<&str>,
    updated_by: Option<&str>,
    update_id: &str,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema = alert_update_schema();
    let text = |v: Option<&str>| -> ArrayRef { Arc::new(StringArray::from(vec![v])) };
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            alert_update_col::TIME => {
                Arc::new(TimestampMicrosecondArray::from(vec![time]).with_timezone("UTC"))
                    as ArrayRef
            }
            alert_update_col::ALERT_ID => text(Some(alert_id)),
            alert_update_col::STATUS => text(Some(status)),
            alert_update_col::ASSIGNEE => text(assignee),
            alert_update_col::NOTE => text(note),
            alert_update_col::UPDATED_BY => text(updated_by),
            alert_update_col::UPDATE_ID => text(Some(update_id)),
            _ => new_null_array(f.data_type(), 1),
        })
        .collect();
    RecordBatch::try_new(schema, columns)
}

#[cfg(test)]
mod tests;

//! Scheduled SQL rules: a read-only DataFusion query over the events of a
//! sliding time range, run every `every`; each result row is an alert.
//!
//! The query sees one table, `events` (the events schema), holding only the
//! events of its range `[tick - range, tick)`. Statements other than
//! queries (DDL, DML, `SET`, `COPY`) are refused when the rule is checked.
//! A row seen by two overlapping runs is one alert: its id is derived from
//! the rule and the row's values.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::execution::context::{SQLOptions, SessionContext};
use sha2::{Digest, Sha256};
use spoor_common::schema::{event_col, event_schema};

use crate::sigma::SqlRule;

/// One result row of a scheduled SQL rule.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlAlert {
    /// Derived from the rule and the row.
    pub id: String,
    /// The run's range start (µs).
    pub range_start: i64,
    /// The run's range end (µs, exclusive).
    pub range_end: i64,
    /// The row, column → value.
    pub row: serde_json::Map<String, serde_json::Value>,
}

fn options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

fn context(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<SessionContext, String> {
    let ctx = SessionContext::new();
    let table = MemTable::try_new(schema, vec![batches]).map_err(|e| e.to_string())?;
    ctx.register_table("events", Arc::new(table))
        .map_err(|e| e.to_string())?;
    Ok(ctx)
}

/// Plans the rule's query against an empty `events` table: a query that
/// does not plan (bad SQL, unknown column, a statement that is not a
/// query) is refused with DataFusion's reason.
pub async fn check(rule: &SqlRule) -> Result<(), String> {
    let ctx = context(event_schema(), Vec::new())?;
    ctx.sql_with_options(&rule.query, options())
        .await
        .map(|_| ())
        .map_err(|e| format!("query: {e}"))
}

fn in_range(batch: &RecordBatch, start: i64, end: i64) -> Result<RecordBatch, String> {
    let Some(times) = batch
        .column_by_name(event_col::TIME)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
    else {
        return Err("the batch has no `time` column".into());
    };
    let mask: arrow::array::BooleanArray = (0..times.len())
        .map(|i| Some(times.is_valid(i) && times.value(i) >= start && times.value(i) < end))
        .collect();
    filter_record_batch(batch, &mask).map_err(|e| e.to_string())
}

fn row_id(rule: &SqlRule, row: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut h = Sha256::new();
    h.update(rule.id.as_deref().unwrap_or(&rule.title).as_bytes());
    h.update([0]);
    h.update(
        serde_json::Value::Object(row.clone())
            .to_string()
            .as_bytes(),
    );
    hex::encode(&h.finalize()[..16])
}

/// Runs the rule as its schedule would have over the batches' time span
/// (ticks at multiples of `every`, from the first event to one tick past
/// the last), returning each distinct row once.
pub async fn run_over(rule: &SqlRule, batches: &[RecordBatch]) -> Result<Vec<SqlAlert>, String> {
    let mut first = i64::MAX;
    let mut last = i64::MIN;
    for b in batches {
        if let Some(t) = b
            .column_by_name(event_col::TIME)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        {
            for i in 0..t.len() {
                if t.is_valid(i) {
                    first = first.min(t.value(i));
                    last = last.max(t.value(i));
                }
            }
        }
    }
    if first > last {
        return Ok(Vec::new());
    }
    let every = rule.every_secs * 1_000_000;
    let range = rule.range_secs * 1_000_000;
    let mut tick = first.div_euclid(every) * every + every;
    let mut seen = std::collections::HashSet::new();
    let mut alerts = Vec::new();
    while tick - range <= last {
        let start = tick - range;
        let selected = batches
            .iter()
            .map(|b| in_range(b, start, tick))
            .collect::<Result<Vec<_>, _>>()?;
        if selected.iter().any(|b| b.num_rows() > 0) {
            let ctx = context(event_schema(), selected)?;
            let frame = ctx
                .sql_with_options(&rule.query, options())
                .await
                .map_err(|e| format!("query: {e}"))?;
            let results = frame.collect().await.map_err(|e| format!("query: {e}"))?;
            let mut writer = arrow::json::ArrayWriter::new(Vec::new());
            for r in &results {
                writer.write(r).map_err(|e| e.to_string())?;
            }
            writer.finish().map_err(|e| e.to_string())?;
            let bytes = writer.into_inner();
            let rows: Vec<serde_json::Map<String, serde_json::Value>> = if bytes.is_empty() {
                Vec::new()
            } else {
                serde_json::from_slice(&bytes).map_err(|e| e.to_string())?
            };
            for row in rows {
                let id = row_id(rule, &row);
                if seen.insert(id.clone()) {
                    alerts.push(SqlAlert {
                        id,
                        range_start: start,
                        range_end: tick,
                        row,
                    });
                }
            }
        }
        tick += every;
    }
    Ok(alerts)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::batch;

    fn rule(query: &str) -> SqlRule {
        SqlRule {
            title: "t".into(),
            id: Some("sql-1".into()),
            level: None,
            query: query.into(),
            every_secs: 60,
            range_secs: 120,
            line: 1,
        }
    }

    #[tokio::test]
    async fn bad_sql_and_statements_are_refused_with_a_reason() {
        assert!(check(&rule("SELECT time FROM events")).await.is_ok());
        let e = check(&rule("SELECT nope FROM events"))
            .await
            .expect_err("unknown column");
        assert!(e.contains("nope"), "{e}");
        assert!(check(&rule("DROP TABLE events")).await.is_err());
        assert!(check(&rule("CREATE TABLE x AS SELECT 1")).await.is_err());
        assert!(check(&rule("SELEC 1")).await.is_err());
    }

    #[tokio::test]
    async fn runs_over_sliding_ranges_and_reports_each_row_once() {
        // Events at 0..300 s, one every 10 s; the query counts the events
        // of its 120 s range and reports ranges with at least 12.
        let rows: Vec<_> = (0..30).map(|i| (i * 10, json!({}))).collect();
        let b = batch(&rows);
        let alerts = run_over(
            &rule("SELECT count(*) AS n, min(time) AS first FROM events HAVING count(*) >= 12"),
            &[b],
        )
        .await
        .expect("run");
        // Ticks every 60 s; full 120 s windows hold 12 events.
        assert!(!alerts.is_empty());
        for a in &alerts {
            assert_eq!(a.range_end - a.range_start, 120_000_000);
            assert_eq!(a.row["n"], json!(12));
        }
        let mut ids: Vec<_> = alerts.iter().map(|a| a.id.clone()).collect();
        ids.dedup();
        assert_eq!(ids.len(), alerts.len(), "each row once");
        // A row the same in two overlapping runs is one alert.
        let constant = run_over(
            &rule("SELECT 'x' AS v FROM events LIMIT 1"),
            &[batch(&rows)],
        )
        .await
        .expect("run");
        assert_eq!(constant.len(), 1);
    }
}

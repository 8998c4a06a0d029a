//! Evaluation of one events file for a shard or a retro-hunt: the live
//! path and retro-hunts share this evaluator, so the same rule over the same
//! events gives the same alerts.

use arrow::array::{
    Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use spoor_common::schema::event_col;

use super::alerts::{self, AlertRow, RuleKind};
use super::files;
use crate::engine::{Engine, RuleInfo};
use crate::window::{Correlator, Output, key_bucket};

/// What evaluation needs to know of the file and shard.
pub(crate) struct FileContext {
    pub(crate) file_id: String,
    pub(crate) bucket: u32,
    pub(crate) buckets: u32,
    pub(crate) rule_set: String,
    pub(crate) rule_set_version: u64,
    /// The shard, or the retro-hunt job, that evaluates.
    pub(crate) shard: String,
    /// `live`, or `retro_hunt` for a retro-hunt job.
    pub(crate) origin: &'static str,
}

/// What a rule found: the events and, for a correlation, its group and
/// aggregate.
struct Found {
    group_key: Vec<(String, String)>,
    first: i64,
    last: i64,
    value: Option<f64>,
    events: Vec<String>,
    /// When ingest decoded the event that raised it, µs (0: unknown).
    ingested: i64,
}

impl FileContext {
    /// An alert row of this shard's rule set.
    fn alert(&self, rule: &RuleInfo, kind: RuleKind, alert_id: String, found: Found) -> AlertRow {
        AlertRow {
            alert_id,
            rule_id: rule.key().to_string(),
            rule_version: rule.version.clone(),
            rule_title: rule.title.clone(),
            rule_level: rule.level.clone(),
            rule_tags: rule.tags.clone(),
            rule_set: self.rule_set.clone(),
            rule_set_version: self.rule_set_version,
            rule_kind: kind,
            group_key: found.group_key,
            first_event_micros: found.first,
            last_event_micros: found.last,
            event_count: found.events.len() as u64,
            value: found.value,
            event_refs: found.events,
            origin: self.origin.into(),
            shard: self.shard.clone(),
            detected_at_micros: 0,
            ingested_micros: found.ingested,
        }
    }
}

/// The provenance columns of a batch, for event references.
struct Provenance<'a> {
    topic: Option<&'a StringArray>,
    partition: Option<&'a Int32Array>,
    offset: Option<&'a Int64Array>,
}

impl<'a> Provenance<'a> {
    fn of(batch: &'a RecordBatch) -> Self {
        let col = |name| batch.column_by_name(name).map(|c| c.as_any());
        Provenance {
            topic: col(event_col::SOURCE_TOPIC).and_then(|c| c.downcast_ref()),
            partition: col(event_col::SOURCE_PARTITION).and_then(|c| c.downcast_ref()),
            offset: col(event_col::SOURCE_OFFSET).and_then(|c| c.downcast_ref()),
        }
    }

    fn event_ref(&self, file_id: &str, file_row: usize, row: usize) -> String {
        let topic = self.topic.filter(|a| a.is_valid(row)).map(|a| a.value(row));
        let partition = self
            .partition
            .filter(|a| a.is_valid(row))
            .map(|a| a.value(row));
        let offset = self
            .offset
            .filter(|a| a.is_valid(row))
            .map(|a| a.value(row));
        alerts::event_ref(file_id, file_row, topic, partition, offset)
    }
}

/// Evaluates a file's batches: one-event alerts of this bucket's events and
/// correlation alerts of this bucket's group keys. Returns the alerts, the
/// latest event time and the rows evaluated.
pub(crate) fn evaluate(
    engine: &Engine,
    correlator: &mut Correlator,
    bytes: bytes::Bytes,
    cx: &FileContext,
) -> Result<(Vec<AlertRow>, i64, usize), String> {
    let batches = files::decode(bytes)?;
    super::quarantine::RuleFault::apply(engine);
    let mut found = Vec::new();
    let mut max_time = i64::MIN;
    let mut base = 0usize;
    let mut rows = 0usize;
    let suppression = engine.has_suppression();
    let mut suppressed = 0u64;
    for batch in &batches {
        let provenance = Provenance::of(batch);
        let refs: Vec<String> = (0..batch.num_rows())
            .map(|row| provenance.event_ref(&cx.file_id, base + row, row))
            .collect();
        let mine = |row: usize| key_bucket(&[refs[row].as_str()], cx.buckets) == cx.bucket;
        // Without correlations a bucket needs only its own events: the
        // others are not evaluated at all, so buckets on several workers
        // split the evaluation work. With correlations every bucket
        // evaluates every event (a group key is known only afterwards) and
        // keeps the windows of its own keys.
        // Suppression needs every alert of a key in one shard, so a rule
        // set with it is not split by event either.
        let split = cx.buckets > 1 && engine.correlations.is_empty() && !suppression;
        let (evaluated, refs): (std::borrow::Cow<'_, RecordBatch>, Vec<String>) = if split {
            let keep: Vec<bool> = (0..batch.num_rows()).map(mine).collect();
            let mask = arrow::array::BooleanArray::from(keep.clone());
            let filtered = arrow::compute::filter_record_batch(batch, &mask)
                .map_err(|e| format!("selecting the bucket's events: {e}"))?;
            let refs = refs
                .into_iter()
                .zip(keep)
                .filter_map(|(r, k)| k.then_some(r))
                .collect();
            (std::borrow::Cow::Owned(filtered), refs)
        } else {
            (std::borrow::Cow::Borrowed(batch), refs)
        };
        let mine = |row: usize| split || key_bucket(&[refs[row].as_str()], cx.buckets) == cx.bucket;
        let result = engine.evaluate(&evaluated)?;
        let ingest_times = evaluated
            .column_by_name(event_col::INGEST_TIME)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>());
        let ingest_time = |row: usize| {
            ingest_times
                .filter(|a| a.is_valid(row))
                .map_or(0, |a| a.value(row))
        };
        let latest_ingest = ingest_times.and_then(arrow::compute::max).unwrap_or(0);
        rows += evaluated.num_rows();
        if let Some(t) = result.values.times.iter().copied().max() {
            max_time = max_time.max(t);
        }
        for hit in &result.hits {
            let rule = &engine.detections[hit.rule];
            if !rule.alerts {
                continue;
            }
            let time = result.values.times[hit.row];
            if let Some(sup) = &rule.suppression {
                // The suppression key, not the event, decides the bucket:
                // one shard sees every alert of a key.
                let key: Vec<String> = sup
                    .fields
                    .iter()
                    .map(|f| {
                        result
                            .values
                            .get(*f, hit.row)
                            .unwrap_or_default()
                            .to_lowercase()
                    })
                    .collect();
                let parts: Vec<&str> = key.iter().map(String::as_str).collect();
                if key_bucket(&parts, cx.buckets) != cx.bucket {
                    continue;
                }
                if correlator.suppressed(rule.info.key(), key, time, sup.window_micros) {
                    suppressed += 1;
                    continue;
                }
            } else if !mine(hit.row) {
                continue;
            }
            let event = &refs[hit.row];
            found.push(cx.alert(
                &rule.info,
                RuleKind::Detection,
                alerts::detection_alert_id(rule.info.key(), &rule.info.version, event),
                Found {
                    group_key: Vec::new(),
                    first: time,
                    last: time,
                    value: None,
                    events: vec![event.clone()],
                    ingested: ingest_time(hit.row),
                },
            ));
        }
        if !engine.correlations.is_empty() {
            for output in correlator.push(&result, &|row| refs[row].clone()) {
                match output {
                    Output::Alert(a) => {
                        let rule = &engine.correlations[a.correlation];
                        if let Some(sup) = &rule.rule.suppression {
                            let key: Vec<String> = a
                                .group
                                .iter()
                                .filter(|(field, _)| {
                                    sup.group_by.is_empty() || sup.group_by.contains(field)
                                })
                                .map(|(_, value)| value.to_lowercase())
                                .collect();
                            let window = sup.window_secs.saturating_mul(1_000_000);
                            if correlator.suppressed(rule.info.key(), key, a.last, window) {
                                suppressed += 1;
                                continue;
                            }
                        }
                        found.push(cx.alert(
                            &rule.info,
                            RuleKind::Correlation,
                            a.id,
                            Found {
                                group_key: a.group,
                                first: a.first,
                                last: a.last,
                                value: Some(a.value),
                                events: a.events,
                                // Raised by one of this batch's events: at
                                // most the latest of them.
                                ingested: latest_ingest,
                            },
                        ));
                    }
                    Output::Late {
                        correlation, time, ..
                    } => {
                        tracing::warn!(
                            shard = cx.shard,
                            rule = engine.correlations[correlation].info.key(),
                            event_time = time,
                            "a match arrived after the allowed lateness; a retro-hunt over its time range finds it"
                        );
                    }
                    Output::Evicted { .. } => {}
                }
            }
        }
        if suppression {
            correlator.expire_suppression();
        }
        base += batch.num_rows();
    }
    if suppressed > 0 {
        metrics::counter!("spoor_worker_suppressed_alerts_total", "shard" => cx.shard.clone())
            .increment(suppressed);
    }
    Ok((found, max_time.max(0), rows))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use spoor_common::lake_file::encode_parquet;
    use spoor_common::schema::EVENT_COLUMNS;

    use super::*;
    use crate::testing::{batch, engine};
    use crate::window::WindowOptions;

    const RULES: &str = r#"title: Failed logon
id: fail
logsource: {product: test}
detection:
    selection: {action: logon_failed}
    condition: selection
suppression:
    window: 10m
    group_by: [host]
---
title: Burst
id: burst
correlation:
    type: event_count
    rules: [fail]
    group-by: [user, host]
    timespan: 5m
    condition: {gte: 2}
    generate: true
suppression:
    window: 1h
    group_by: [user]
"#;

    fn context(bucket: u32, buckets: u32) -> FileContext {
        FileContext {
            file_id: "f1".into(),
            bucket,
            buckets,
            rule_set: "auth".into(),
            rule_set_version: 1,
            shard: "acme/auth/0".into(),
            origin: "live",
        }
    }

    fn file(rows: &[(i64, serde_json::Value)]) -> bytes::Bytes {
        bytes::Bytes::from(encode_parquet(&batch(rows), EVENT_COLUMNS, 1).expect("encode"))
    }

    fn fail(t: i64, user: &str, host: &str) -> (i64, serde_json::Value) {
        (
            t,
            json!({"action": "logon_failed", "user": user, "host": host}),
        )
    }

    /// Alerts as (rule, first event time in seconds).
    fn run(rows: &[(i64, serde_json::Value)], bucket: u32, buckets: u32) -> Vec<(String, i64)> {
        let engine = engine(RULES);
        let mut correlator =
            Correlator::new(&engine, WindowOptions::default()).with_bucket(bucket, buckets);
        let (alerts, _, _) = evaluate(
            &engine,
            &mut correlator,
            file(rows),
            &context(bucket, buckets),
        )
        .expect("evaluate");
        alerts
            .into_iter()
            .map(|a| (a.rule_id, a.first_event_micros / 1_000_000))
            .collect()
    }

    #[test]
    fn suppression_keeps_one_alert_per_key_and_window() {
        let rows = [
            fail(0, "alice", "h1"),
            fail(60, "alice", "H1"),
            fail(120, "bob", "h1"),
            fail(130, "bob", "h2"),
            fail(700, "alice", "h1"),
            fail(710, "alice", "h1"),
        ];
        let alerts = run(&rows, 0, 1);
        let mut fails: Vec<i64> = alerts
            .iter()
            .filter(|(r, _)| r == "fail")
            .map(|(_, t)| *t)
            .collect();
        fails.sort_unstable();
        // h1 at 0 (60 and 120 suppressed, the key is case-blind), h2 at
        // 130, h1 again at 700 (past the 10 minutes; 710 suppressed).
        assert_eq!(fails, vec![0, 130, 700]);
        // Bursts: alice/h1 at 0–60 and again at 700–710, but one per hour
        // for alice.
        let bursts: Vec<i64> = alerts
            .iter()
            .filter(|(r, _)| r == "burst")
            .map(|(_, t)| *t)
            .collect();
        assert_eq!(bursts, vec![0]);
    }

    #[test]
    fn suppressed_alerts_stay_suppressed_after_a_checkpoint() {
        let engine = engine(RULES);
        let mut first = Correlator::new(&engine, WindowOptions::default());
        let (alerts, _, _) = evaluate(
            &engine,
            &mut first,
            file(&[fail(0, "alice", "h1")]),
            &context(0, 1),
        )
        .expect("evaluate");
        assert_eq!(alerts.len(), 1);
        let json = serde_json::to_string(&first.snapshot()).expect("snapshot");
        let mut resumed = Correlator::new(&engine, WindowOptions::default());
        resumed.restore(serde_json::from_str(&json).expect("snapshot back"));
        let (alerts, _, _) = evaluate(
            &engine,
            &mut resumed,
            file(&[fail(30, "alice", "h1")]),
            &context(0, 1),
        )
        .expect("evaluate");
        let fails = alerts.iter().filter(|a| a.rule_id == "fail").count();
        assert_eq!(fails, 0, "the anchor came back with the checkpoint");
    }

    #[test]
    fn buckets_split_suppressed_alerts_by_key_not_by_event() {
        let rows: Vec<_> = (0..40)
            .map(|i| fail(i, "u", &format!("host{}", i % 8)))
            .collect();
        let mut hosts_alerted = 0;
        for bucket in 0..4 {
            hosts_alerted += run(&rows, bucket, 4)
                .iter()
                .filter(|(r, _)| r == "fail")
                .count();
        }
        // One alert per host over all buckets, as with one bucket.
        assert_eq!(hosts_alerted, 8);
        assert_eq!(
            run(&rows, 0, 1).iter().filter(|(r, _)| r == "fail").count(),
            8
        );
    }
}

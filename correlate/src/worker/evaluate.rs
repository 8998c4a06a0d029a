//! Evaluation of one events file for a shard or a retro-hunt: the live
//! path and retro-hunts share this evaluator, so the same rule over the same
//! events gives the same alerts.

use arrow::array::{Array, Int32Array, Int64Array, RecordBatch, StringArray};
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
    let mut found = Vec::new();
    let mut max_time = i64::MIN;
    let mut base = 0usize;
    let mut rows = 0usize;
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
        let split = cx.buckets > 1 && engine.correlations.is_empty();
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
        rows += evaluated.num_rows();
        if let Some(t) = result.values.times.iter().copied().max() {
            max_time = max_time.max(t);
        }
        for hit in &result.hits {
            let rule = &engine.detections[hit.rule];
            if !rule.alerts || !mine(hit.row) {
                continue;
            }
            let time = result.values.times[hit.row];
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
                },
            ));
        }
        if !engine.correlations.is_empty() {
            for output in correlator.push(&result, &|row| refs[row].clone()) {
                match output {
                    Output::Alert(a) => {
                        let rule = &engine.correlations[a.correlation];
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
        base += batch.num_rows();
    }
    Ok((found, max_time.max(0), rows))
}

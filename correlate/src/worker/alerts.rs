//! Alerts as rows of the `alerts` table, and the Parquet files a shard
//! commits them in.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use sha2::{Digest, Sha256};
use spoor_common::control::ShardId;
use spoor_common::layout;
use spoor_common::schema::alert_schema;

/// What kind of rule raised an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// A detection rule, on one event.
    Detection,
    /// A Sigma correlation rule, over a window of matches.
    Correlation,
    /// Not a match: the rule panicked or overran its time budget and the
    /// shard disabled it (the reason is in `group_key`).
    RuleDisabled,
}

impl RuleKind {
    /// The `rule_kind` column's value.
    pub fn name(self) -> &'static str {
        match self {
            RuleKind::Detection => "detection",
            RuleKind::Correlation => "correlation",
            RuleKind::RuleDisabled => "rule_disabled",
        }
    }

    /// The kind a `rule_kind` value names.
    pub fn from_name(name: &str) -> Option<RuleKind> {
        [
            RuleKind::Detection,
            RuleKind::Correlation,
            RuleKind::RuleDisabled,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// One row of the `alerts` table (see `spoor_common::schema::alert_col`).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    /// The alert's id.
    pub alert_id: String,
    /// The rule's id (or title).
    pub rule_id: String,
    /// The rule's version hash.
    pub rule_version: String,
    /// The rule's title.
    pub rule_title: String,
    /// The rule's level.
    pub rule_level: Option<String>,
    /// The rule's tags.
    pub rule_tags: Vec<String>,
    /// The rule set.
    pub rule_set: String,
    /// The rule set's version.
    pub rule_set_version: u64,
    /// Detection or correlation.
    pub rule_kind: RuleKind,
    /// `group-by` field → value.
    pub group_key: Vec<(String, String)>,
    /// First matching event time, µs.
    pub first_event_micros: i64,
    /// Last matching event time, µs.
    pub last_event_micros: i64,
    /// Matching events.
    pub event_count: u64,
    /// The correlation's aggregate.
    pub value: Option<f64>,
    /// The matching events' references (JSON objects as text).
    pub event_refs: Vec<String>,
    /// `live` or `retro_hunt`.
    pub origin: String,
    /// The shard that raised it.
    pub shard: String,
    /// Wall clock when raised, µs.
    pub detected_at_micros: i64,
    /// When ingest decoded the event that raised it (its `ingest_time`),
    /// µs; 0 when unknown. Not a column: the shard records the detection
    /// latency histogram from it when the alert is committed.
    pub ingested_micros: i64,
}

/// The id of a one-event alert: the rule, its version and the event.
pub fn detection_alert_id(rule_key: &str, rule_version: &str, event_ref: &str) -> String {
    let mut h = Sha256::new();
    for part in [rule_key, rule_version, event_ref] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// A reference to one event: its Kafka position when it came from Kafka
/// (stable whatever file holds it later), else the events file and row.
pub fn event_ref(
    file_id: &str,
    row: usize,
    topic: Option<&str>,
    partition: Option<i32>,
    offset: Option<i64>,
) -> String {
    // Written by hand so the text (and the alert ids hashed from it) does
    // not depend on how serde_json orders object keys in this build.
    match (topic, partition, offset) {
        (Some(topic), Some(partition), Some(offset)) => format!(
            r#"{{"topic":{},"partition":{partition},"offset":{offset}}}"#,
            serde_json::Value::from(topic)
        ),
        _ => format!(
            r#"{{"file":{},"row":{row}}}"#,
            serde_json::Value::from(file_id)
        ),
    }
}

/// The rows as an `alerts` batch, sorted by time then id (files are sorted
/// by time, and the order must not depend on how alerts were found).
pub fn alert_batch(rows: &[AlertRow]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut order: Vec<&AlertRow> = rows.iter().collect();
    order.sort_by(|a, b| {
        a.last_event_micros
            .cmp(&b.last_event_micros)
            .then_with(|| a.alert_id.cmp(&b.alert_id))
    });
    let n = order.len();
    let ts = || TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let (mut time, mut first, mut last, mut detected) = (ts(), ts(), ts(), ts());
    let text = || StringBuilder::with_capacity(n, n * 16);
    let (mut id, mut rule_id, mut version, mut title, mut level, mut tags) =
        (text(), text(), text(), text(), text(), text());
    let (mut set, mut kind, mut group, mut refs, mut origin, mut shard) =
        (text(), text(), text(), text(), text(), text());
    let mut set_version = Int64Builder::with_capacity(n);
    let mut count = Int64Builder::with_capacity(n);
    let mut value = Float64Builder::with_capacity(n);
    for a in order {
        time.append_value(a.last_event_micros);
        id.append_value(&a.alert_id);
        rule_id.append_value(&a.rule_id);
        version.append_value(&a.rule_version);
        title.append_value(&a.rule_title);
        level.append_option(a.rule_level.as_deref());
        tags.append_value(serde_json::Value::from(a.rule_tags.clone()).to_string());
        set.append_value(&a.rule_set);
        set_version.append_value(i64::try_from(a.rule_set_version).unwrap_or(i64::MAX));
        kind.append_value(a.rule_kind.name());
        let group_key: serde_json::Map<String, serde_json::Value> = a
            .group_key
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
            .collect();
        group.append_value(serde_json::Value::Object(group_key).to_string());
        first.append_value(a.first_event_micros);
        last.append_value(a.last_event_micros);
        count.append_value(i64::try_from(a.event_count).unwrap_or(i64::MAX));
        value.append_option(a.value.filter(|v| v.is_finite()));
        refs.append_value(format!("[{}]", a.event_refs.join(",")));
        origin.append_value(&a.origin);
        shard.append_value(&a.shard);
        detected.append_value(a.detected_at_micros);
    }
    // In the order of ALERT_COLUMNS.
    let columns: Vec<ArrayRef> = vec![
        Arc::new(time.finish()),
        Arc::new(id.finish()),
        Arc::new(rule_id.finish()),
        Arc::new(version.finish()),
        Arc::new(title.finish()),
        Arc::new(level.finish()),
        Arc::new(tags.finish()),
        Arc::new(set.finish()),
        Arc::new(set_version.finish()),
        Arc::new(kind.finish()),
        Arc::new(group.finish()),
        Arc::new(first.finish()),
        Arc::new(last.finish()),
        Arc::new(count.finish()),
        Arc::new(value.finish()),
        Arc::new(refs.finish()),
        Arc::new(origin.finish()),
        Arc::new(shard.finish()),
        Arc::new(detected.finish()),
    ];
    RecordBatch::try_new(alert_schema(), columns)
}

/// Alerts grouped by the hour of their time (files are per hour).
pub(crate) fn by_hour(rows: Vec<AlertRow>) -> BTreeMap<i64, Vec<AlertRow>> {
    let mut hours: BTreeMap<i64, Vec<AlertRow>> = BTreeMap::new();
    for row in rows {
        hours
            .entry(layout::hour_start_micros(row.last_event_micros))
            .or_default()
            .push(row);
    }
    hours
}

/// The id of the alerts file a shard writes for one hour of the alerts it
/// found in catalog sequences `first..=last` under lease `epoch`. The epoch
/// is in it so that a deposed owner still writing never overwrites the
/// object its successor committed.
pub(crate) fn alerts_file_id(
    shard: &ShardId,
    epoch: u64,
    first: u64,
    last: u64,
    hour: i64,
) -> String {
    let mut h = Sha256::new();
    for part in [
        b"alerts".as_slice(),
        shard.tenant.as_bytes(),
        shard.rule_group.as_bytes(),
        &shard.bucket.to_be_bytes(),
        &epoch.to_be_bytes(),
        &first.to_be_bytes(),
        &last.to_be_bytes(),
        &hour.to_be_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(&h.finalize()[..16])
}

/// Writes one hour's alerts as an `alerts` Parquet file under `file_id`
/// and returns the catalog entry to commit: the live shards and
/// retro-hunts write their alerts the same way.
pub(crate) async fn write_alerts_file(
    store: &dyn object_store::ObjectStore,
    tenant: &spoor_common::tenant::TenantId,
    hour: i64,
    file_id: String,
    rows: &[AlertRow],
) -> Result<spoor_common::catalog::NewFile, String> {
    use object_store::ObjectStoreExt;
    use spoor_common::schema::{ALERT_COLUMNS, ALERT_SCHEMA_VERSION, Table};

    let batch = alert_batch(rows).map_err(|e| format!("alerts: {e}"))?;
    let bytes = spoor_common::lake_file::encode_parquet(&batch, ALERT_COLUMNS, 3)
        .map_err(|e| format!("encoding alerts: {e}"))?;
    let object_key = layout::object_key(tenant, Table::Alerts, hour, &file_id);
    let byte_size = bytes.len() as u64;
    store
        .put(
            &object_store::path::Path::from(object_key.as_str()),
            object_store::PutPayload::from(bytes),
        )
        .await
        .map_err(|e| format!("writing alerts file {object_key}: {e}"))?;
    let times = rows.iter().map(|r| r.last_event_micros);
    Ok(spoor_common::catalog::NewFile {
        file_id,
        tenant: tenant.clone(),
        table: Table::Alerts,
        object_key,
        min_time_micros: times.clone().min().unwrap_or(hour),
        max_time_micros: times.max().unwrap_or(hour),
        row_count: rows.len() as u64,
        byte_size,
        schema_version: ALERT_SCHEMA_VERSION,
        source: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoor_common::schema::ALERT_COLUMNS;

    fn row(id: &str, time: i64) -> AlertRow {
        AlertRow {
            alert_id: id.into(),
            rule_id: "r1".into(),
            rule_version: "v".into(),
            rule_title: "T".into(),
            rule_level: Some("high".into()),
            rule_tags: vec!["attack.t1059".into()],
            rule_set: "windows".into(),
            rule_set_version: 3,
            rule_kind: RuleKind::Correlation,
            group_key: vec![("User".into(), "bob".into())],
            first_event_micros: time - 5,
            last_event_micros: time,
            event_count: 2,
            value: Some(2.0),
            event_refs: vec![event_ref("f", 1, None, None, None)],
            origin: "live".into(),
            shard: "acme/windows/0".into(),
            detected_at_micros: 9,
            ingested_micros: 0,
        }
    }

    #[test]
    fn batches_follow_the_schema_sorted_by_time_then_id() {
        let batch = alert_batch(&[row("b", 20), row("c", 10), row("a", 20)]).expect("batch");
        assert_eq!(batch.num_columns(), ALERT_COLUMNS.len());
        let ids = batch
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("ids");
        assert_eq!(
            ids.iter().flatten().collect::<Vec<_>>(),
            vec!["c", "a", "b"]
        );
        let group = batch
            .column(10)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("group");
        assert_eq!(group.value(0), r#"{"User":"bob"}"#);
    }

    #[test]
    fn event_refs_prefer_kafka_positions() {
        assert_eq!(
            event_ref("f", 3, Some("edr"), Some(1), Some(42)),
            r#"{"topic":"edr","partition":1,"offset":42}"#
        );
        assert_eq!(
            event_ref("f", 3, Some("http:x"), None, Some(2)),
            r#"{"file":"f","row":3}"#
        );
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = detection_alert_id("r", "v1", "e");
        assert_eq!(a, detection_alert_id("r", "v1", "e"));
        assert_ne!(a, detection_alert_id("r", "v2", "e"));
        assert_ne!(a, detection_alert_id("r", "v1", "e2"));
        let shard = ShardId {
            tenant: "acme".into(),
            rule_group: "w".into(),
            bucket: 0,
        };
        assert_ne!(
            alerts_file_id(&shard, 1, 1, 5, 0),
            alerts_file_id(&shard, 2, 1, 5, 0)
        );
    }
}

//! The Kafka pipeline's buffers, kept apart from rdkafka so its rules can be
//! tested without a broker:
//!
//! - per partition, an offset floor: a message below it is a duplicate (a
//!   re-delivery after a seek, or a stale message queued before one) and is
//!   dropped, so a partition's offsets only move forward;
//! - after a refused commit a partition restarts at the catalog checkpoint:
//!   until the poll thread confirms the seek, messages of that partition
//!   still in flight (fetched before the seek, possibly *ahead* of the
//!   restart point) are dropped, since accepting one would raise the floor
//!   past the restart point and turn the re-read messages into "duplicates";
//! - a revoked partition's buffer is dropped: its new owner starts from the
//!   catalog checkpoint, which is exactly where this buffer began;
//! - each partition has its own decoder (the topic's configured parser), kept
//!   across flushes for stateful formats (Zeek TSV headers) but told to emit
//!   what it holds back (auditd records) before every flush;
//! - a flush hands every buffer over as one [`PartitionBatch`] per partition.

use std::collections::BTreeMap;
use std::time::Instant;

use spoor_common::catalog::SourceRange;

use crate::flush::PartitionBatch;
use crate::parse::{Decoder, Provenance, Sources};
use crate::routing::{Envelope, TenantRouter};

/// (topic, partition).
pub type TopicPartition = (String, i32);

/// One message from Kafka.
#[derive(Debug, Clone)]
pub struct KafkaRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Payload (empty when the message had none).
    pub payload: Vec<u8>,
    /// Headers (name, value), for routing by header.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Buffers of every assigned partition.
#[derive(Debug)]
pub struct PartitionBuffers {
    source_id: String,
    sources: Sources,
    router: TenantRouter,
    decoders: BTreeMap<TopicPartition, Decoder>,
    /// The headers of each partition's latest message: events a decoder
    /// held back are routed with them at a flush.
    last_headers: BTreeMap<TopicPartition, Vec<(String, Vec<u8>)>>,
    buffers: BTreeMap<TopicPartition, PartitionBatch>,
    floors: BTreeMap<TopicPartition, i64>,
    /// Partitions restarted by a seek the poll thread has not confirmed yet.
    seeking: std::collections::BTreeSet<TopicPartition>,
    /// Where each (re)started partition should resume: the first message
    /// after a start is checked against it (see [`PartitionBuffers::push`]).
    resume_at: BTreeMap<TopicPartition, i64>,
    /// Raw bytes buffered per partition, so dropping one keeps the total exact.
    bytes: BTreeMap<TopicPartition, usize>,
    buffered_events: usize,
    buffered_bytes: usize,
    oldest: Option<Instant>,
}

impl PartitionBuffers {
    /// Empty buffers for a source (consumer group), every topic read as
    /// generic JSON into the `default` tenant.
    pub fn new(source_id: impl Into<String>) -> Self {
        let default = spoor_common::tenant::TenantId::new(spoor_common::tenant::TenantId::DEFAULT)
            .unwrap_or_else(|e| unreachable!("the default tenant id is valid: {e}"));
        Self::with_sources(source_id, Sources::default(), TenantRouter::single(default))
    }

    /// Empty buffers for a source, each topic read by its configured parser
    /// and its events routed to their tenants.
    pub fn with_sources(
        source_id: impl Into<String>,
        sources: Sources,
        router: TenantRouter,
    ) -> Self {
        PartitionBuffers {
            source_id: source_id.into(),
            sources,
            router,
            decoders: BTreeMap::new(),
            last_headers: BTreeMap::new(),
            buffers: BTreeMap::new(),
            floors: BTreeMap::new(),
            seeking: std::collections::BTreeSet::new(),
            resume_at: BTreeMap::new(),
            bytes: BTreeMap::new(),
            buffered_events: 0,
            buffered_bytes: 0,
            oldest: None,
        }
    }

    /// A partition was assigned, starting at `start` when known.
    pub fn assigned(&mut self, tp: TopicPartition, start: Option<i64>) {
        self.drop_partition(&tp);
        self.seeking.remove(&tp);
        match start {
            Some(offset) => {
                self.floors.insert(tp.clone(), offset);
                self.resume_at.insert(tp, offset);
            }
            None => {
                self.floors.remove(&tp);
            }
        }
    }

    /// A partition was revoked: forget its buffer and floor.
    pub fn revoked(&mut self, tp: &TopicPartition) {
        self.drop_partition(tp);
        self.floors.remove(tp);
        self.seeking.remove(tp);
        self.resume_at.remove(tp);
    }

    /// The poll thread confirmed the seek of a restarted partition: its
    /// messages from now on come from the restart point.
    pub fn seeked(&mut self, tp: &TopicPartition) {
        self.seeking.remove(tp);
    }

    /// Whether a partition waits for its seek to be confirmed.
    pub fn awaiting_seek(&self, tp: &TopicPartition) -> bool {
        self.seeking.contains(tp)
    }

    /// After a refused commit: drop the named partitions' buffers and restart
    /// each at the given offset (the catalog's checkpoint), dropping their
    /// messages until [`PartitionBuffers::seeked`].
    pub fn reset_to(&mut self, restarts: impl IntoIterator<Item = (TopicPartition, i64)>) {
        for (tp, next) in restarts {
            self.drop_partition(&tp);
            self.floors.insert(tp.clone(), next);
            self.resume_at.insert(tp.clone(), next);
            self.seeking.insert(tp);
        }
    }

    fn drop_partition(&mut self, tp: &TopicPartition) {
        // The decoder's held-back state belongs to the dropped buffer: the
        // next owner of these offsets re-reads them from the checkpoint.
        self.decoders.remove(tp);
        self.last_headers.remove(tp);
        if let Some(b) = self.buffers.remove(tp) {
            self.buffered_events -= b.len();
        }
        if let Some(bytes) = self.bytes.remove(tp) {
            self.buffered_bytes -= bytes;
        }
        if self.buffers.is_empty() {
            self.buffered_events = 0;
            self.buffered_bytes = 0;
            self.oldest = None;
        }
    }

    /// Adds a message; returns false when it was a duplicate and was dropped.
    pub fn push(&mut self, record: KafkaRecord, now_micros: i64) -> bool {
        self.push_batch(vec![record], now_micros) == 1
    }

    /// Adds messages in their order; returns how many were taken (the rest
    /// were duplicates or stale and were dropped).
    pub fn push_batch(&mut self, records: Vec<KafkaRecord>, now_micros: i64) -> usize {
        let mut taken = 0;
        for record in records {
            if let Some(tp) = self.admit(&record) {
                self.decode(tp, record, now_micros);
                taken += 1;
            }
        }
        if taken > 0 {
            self.oldest.get_or_insert_with(Instant::now);
        }
        taken
    }

    /// The offset checks of one message: its partition when it is taken
    /// (the partition's floor, range and byte count move on), else `None`.
    fn admit(&mut self, record: &KafkaRecord) -> Option<TopicPartition> {
        let tp = (record.topic.clone(), record.partition);
        if self.seeking.contains(&tp) {
            // Fetched before the restart's seek: it will be read again.
            metrics::counter!("spoor_ingest_stale_dropped_total").increment(1);
            return None;
        }
        if let Some(floor) = self.floors.get(&tp)
            && record.offset < *floor
        {
            metrics::counter!("spoor_ingest_duplicates_dropped_total").increment(1);
            return None;
        }
        if let Some(expected) = self.resume_at.remove(&tp)
            && record.offset > expected
        {
            // Kafka offsets may skip (compaction, transaction markers), but
            // a broker that cannot serve a fetch from inside a record batch
            // also shows up here: say so, since those offsets are never read.
            metrics::counter!("spoor_ingest_resume_gaps_total").increment(1);
            tracing::warn!(
                topic = record.topic,
                partition = record.partition,
                expected,
                got = record.offset,
                "the first message after a (re)start is past the resume point; offsets in between were not delivered by the broker"
            );
        }
        self.floors.insert(tp.clone(), record.offset + 1);
        let buffer = self
            .buffers
            .entry(tp.clone())
            .or_insert_with(|| PartitionBatch {
                range: SourceRange {
                    source_id: self.source_id.clone(),
                    topic: record.topic.clone(),
                    partition: record.partition,
                    first_offset: record.offset,
                    last_offset: record.offset,
                },
                rows: BTreeMap::new(),
            });
        buffer.range.last_offset = record.offset;
        *self.bytes.entry(tp.clone()).or_default() += record.payload.len();
        self.buffered_bytes += record.payload.len();
        Some(tp)
    }

    /// Decodes an admitted message with its partition's decoder and routes
    /// its rows.
    fn decode(&mut self, tp: TopicPartition, record: KafkaRecord, now_micros: i64) {
        let sources = &self.sources;
        let decoder = self
            .decoders
            .entry(tp.clone())
            .or_insert_with(|| sources.decoder_for(&tp.0));
        let Some(buffer) = self.buffers.get_mut(&tp) else {
            return;
        };
        let prov = Provenance {
            topic: record.topic.clone(),
            partition: Some(record.partition),
            offset: Some(record.offset),
            ingest_time_micros: now_micros,
        };
        let mut decoded = Vec::new();
        decoder.decode(&record.payload, &prov, &mut decoded);
        self.buffered_events += decoded.len();
        let envelope = Envelope {
            topic: &record.topic,
            headers: &record.headers,
        };
        self.router.route(envelope, decoded, &mut buffer.rows);
        self.last_headers.insert(tp, record.headers);
    }

    /// Events and dead letters buffered.
    pub fn buffered_events(&self) -> usize {
        self.buffered_events
    }

    /// Raw bytes buffered.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// When the oldest buffered message arrived.
    pub fn oldest(&self) -> Option<Instant> {
        self.oldest
    }

    /// Takes every buffer as batches (they are committed or retried by the
    /// caller), after each decoder has emitted what it held back.
    pub fn take(&mut self) -> Vec<PartitionBatch> {
        let now = spoor_common::time::now_micros();
        for (tp, decoder) in &mut self.decoders {
            let Some(buffer) = self.buffers.get_mut(tp) else {
                // Nothing pushed since the last take, so nothing held back.
                continue;
            };
            let prov = Provenance {
                topic: tp.0.clone(),
                partition: Some(tp.1),
                offset: Some(buffer.range.last_offset),
                ingest_time_micros: now,
            };
            let mut decoded = Vec::new();
            decoder.flush(&prov, &mut decoded);
            // Held-back events (auditd records joined into one) are routed
            // with the headers of the partition's latest message.
            let envelope = Envelope {
                topic: &tp.0,
                headers: self.last_headers.get(tp).map_or(&[], Vec::as_slice),
            };
            self.router.route(envelope, decoded, &mut buffer.rows);
        }
        let batches = std::mem::take(&mut self.buffers).into_values().collect();
        self.buffered_events = 0;
        self.buffered_bytes = 0;
        self.bytes.clear();
        self.oldest = None;
        batches
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::SourceType;

    fn rec(partition: i32, offset: i64, payload: &str) -> KafkaRecord {
        KafkaRecord {
            topic: "t".into(),
            partition,
            offset,
            payload: payload.as_bytes().to_vec(),
            headers: Vec::new(),
        }
    }

    fn default_rows(batch: &PartitionBatch) -> &crate::routing::TenantRows {
        &batch.rows[&spoor_common::tenant::TenantId::new("default").expect("tenant")]
    }

    #[test]
    fn buffers_ranges_per_partition_and_dead_letters_bad_events() {
        let mut b = PartitionBuffers::new("g");
        assert!(b.push(rec(0, 5, r#"{"a":1}"#), 1));
        assert!(b.push(rec(0, 6, "{oops"), 1));
        assert!(b.push(rec(1, 0, r#"{"a":2}"#), 1));
        assert_eq!(b.buffered_events(), 3);
        let batches = b.take();
        assert_eq!(batches.len(), 2);
        assert_eq!(
            (batches[0].range.first_offset, batches[0].range.last_offset),
            (5, 6)
        );
        assert_eq!(default_rows(&batches[0]).events.len(), 1);
        assert_eq!(default_rows(&batches[0]).dead.len(), 1);
        let error = &default_rows(&batches[0]).dead[0].error;
        assert!(error.starts_with("offset 6: invalid JSON"), "{error}");
        assert_eq!(b.buffered_events(), 0);
    }

    #[test]
    fn offsets_below_the_floor_are_duplicates() {
        let mut b = PartitionBuffers::new("g");
        b.assigned(("t".into(), 0), Some(10));
        assert!(!b.push(rec(0, 9, "{}"), 1), "below the assigned start");
        assert!(b.push(rec(0, 10, "{}"), 1));
        assert!(!b.push(rec(0, 10, "{}"), 1), "re-delivery");
        assert!(b.push(rec(0, 12, "{}"), 1), "gaps are fine");
        let batches = b.take();
        assert_eq!(
            (batches[0].range.first_offset, batches[0].range.last_offset),
            (10, 12)
        );
        assert_eq!(default_rows(&batches[0]).events.len(), 2);
    }

    #[test]
    fn messages_in_flight_ahead_of_a_restart_do_not_hide_the_re_read() {
        // A batch 10..=19 was refused (the catalog is at 10); messages 20..
        // were already fetched when the pipeline re-seeks to 10.
        let mut b = PartitionBuffers::new("g");
        b.assigned(("t".into(), 0), Some(10));
        for o in 10..20 {
            assert!(b.push(rec(0, o, "{}"), 1));
        }
        let _refused = b.take();
        b.reset_to([(("t".to_string(), 0), 10)]);
        assert!(b.awaiting_seek(&("t".to_string(), 0)));
        assert!(
            !b.push(rec(0, 20, "{}"), 1),
            "fetched before the seek: dropped"
        );
        b.seeked(&("t".to_string(), 0));
        for o in 10..25 {
            assert!(b.push(rec(0, o, "{}"), 1), "offset {o} after the seek");
        }
        let batches = b.take();
        assert_eq!(
            (batches[0].range.first_offset, batches[0].range.last_offset),
            (10, 24)
        );
        assert_eq!(default_rows(&batches[0]).events.len(), 15, "no hole");
    }

    #[test]
    fn revoke_drops_the_buffer_and_reset_moves_the_floor() {
        let mut b = PartitionBuffers::new("g");
        b.push(rec(0, 0, "{}"), 1);
        b.push(rec(1, 0, "{}"), 1);
        b.revoked(&("t".into(), 0));
        assert_eq!(b.buffered_events(), 1);
        assert_eq!(b.buffered_bytes(), 2, "only partition 1's bytes remain");
        b.push(rec(2, 0, "{}"), 1);
        b.reset_to([(("t".to_string(), 1), 50)]);
        assert_eq!(b.buffered_events(), 1, "partition 2 keeps its buffer");
        b.seeked(&("t".to_string(), 1));
        assert!(!b.push(rec(1, 49, "{}"), 1));
        assert!(b.push(rec(1, 50, "{}"), 1));
    }

    fn buffers_of(source_type: SourceType) -> PartitionBuffers {
        let default = spoor_common::tenant::TenantId::new("default").expect("tenant");
        let sources = Sources::new(vec![spoor_common::config::SourceConfig {
            topics: vec!["t".into()],
            ..spoor_common::config::SourceConfig::of_type(source_type)
        }])
        .expect("sources");
        PartitionBuffers::with_sources("g", sources, TenantRouter::single(default))
    }

    /// Rows of every partition batch, in order, as (offset, time, raw or error).
    fn rows_of(batches: &[PartitionBatch]) -> Vec<(Option<i64>, String)> {
        let mut out = Vec::new();
        for b in batches {
            for rows in b.rows.values() {
                for e in &rows.events {
                    out.push((
                        e.get_int("source_offset"),
                        e.get_str("raw").unwrap_or_default().to_string(),
                    ));
                }
                for d in &rows.dead {
                    out.push((d.offset, d.error.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn a_batch_equals_its_messages_pushed_one_at_a_time() {
        // The rows of a batch of 300 messages (two partitions, bad ones too)
        // must be exactly those of pushing them one by one, in offset order.
        let records: Vec<KafkaRecord> = (0..300)
            .map(|o| {
                let payload = if o % 50 == 7 {
                    "{not json".to_string()
                } else {
                    format!(
                        r#"{{"Channel":"Security","EventID":4624,"TimeCreated":"2024-03-05T07:{:02}:00Z","TargetUserName":"u{o}","IpAddress":"10.0.0.{}"}}"#,
                        o % 60,
                        o % 250
                    )
                };
                rec(o as i32 % 2, o, &payload)
            })
            .collect();
        // Partition 0's messages, then partition 1's: two runs of 150.
        let (mut even, mut odd): (Vec<_>, Vec<_>) =
            records.into_iter().partition(|r| r.partition == 0);
        even.append(&mut odd);

        let mut one_by_one = buffers_of(SourceType::Windows);
        for r in even.clone() {
            assert!(one_by_one.push(r, 1));
        }
        let mut batched = buffers_of(SourceType::Windows);
        assert_eq!(batched.push_batch(even, 1), 300);
        assert_eq!(batched.buffered_events(), one_by_one.buffered_events());
        assert_eq!(batched.buffered_bytes(), one_by_one.buffered_bytes());
        let (a, b) = (one_by_one.take(), batched.take());
        assert_eq!(rows_of(&a), rows_of(&b));
        assert_eq!(rows_of(&b).len(), 300);
        assert_eq!(
            b.iter()
                .map(|b| (b.range.partition, b.range.first_offset, b.range.last_offset))
                .collect::<Vec<_>>(),
            vec![(0, 0, 298), (1, 1, 299)]
        );
    }

    #[test]
    fn a_stateful_parser_sees_a_batch_in_order() {
        // Zeek TSV: the header message sets the layout the next ones use.
        let mut b = buffers_of(SourceType::Zeek);
        let mut records = vec![rec(
            0,
            0,
            "#separator \\x09\n#path\tconn\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\n#types\ttime\tstring\taddr\tport\taddr\tport",
        )];
        for o in 1..200 {
            records.push(rec(
                0,
                o,
                &format!("1709625600.{o:06}\tC{o}\t10.0.0.1\t5{o:04}\t10.0.0.2\t443"),
            ));
        }
        assert_eq!(b.push_batch(records, 1), 200);
        let batches = b.take();
        let rows = &default_rows(&batches[0]);
        assert_eq!(rows.dead.len(), 0, "{:?}", rows.dead.first());
        assert_eq!(rows.events.len(), 199);
        assert_eq!(rows.events[0].get_str("src_ip"), Some("10.0.0.1"));
    }
}

//! The Kafka source.
//!
//! A dedicated OS thread polls a librdkafka consumer (consumer group, no
//! auto-commit) and hands messages to the async pipeline through a bounded
//! channel, which is the back-pressure. On assignment the rebalance callback,
//! running on that thread, asks the catalog for the partitions' checkpoints
//! and assigns at them: the catalog, not Kafka, says where to resume. After a
//! flush is committed to the catalog, the pipeline commits the same offsets to
//! Kafka, for lag monitoring only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message};
use spoor_common::catalog::{Catalog, CatalogError};
use spoor_common::config::{IngestConfig, StartFrom};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::IngestError;
use crate::flush::{Fault, Flusher, PartitionBatch};
use crate::parse::Sources;
use crate::partitions::{KafkaRecord, PartitionBuffers, TopicPartition};
use crate::routing::TenantRouter;

/// What the poll thread tells the pipeline, in order.
#[derive(Debug)]
enum SourceEvent {
    Message(KafkaRecord),
    Assigned(Vec<(TopicPartition, Option<i64>)>),
    Revoked(Vec<TopicPartition>),
    /// The poll thread performed a seek (or failed to); every message of
    /// the partition after this one comes from the new position.
    Seeked {
        tp: TopicPartition,
        offset: i64,
        ok: bool,
    },
}

/// Commands from the pipeline to the poll thread.
#[derive(Debug)]
enum PollCommand {
    Seek(TopicPartition, i64),
}

struct SpoorContext {
    catalog: Arc<dyn Catalog>,
    runtime: tokio::runtime::Handle,
    source_id: String,
    start_from: StartFrom,
    events: mpsc::Sender<SourceEvent>,
    stop: Arc<AtomicBool>,
}

impl ClientContext for SpoorContext {
    /// librdkafka's statistics (every `statistics.interval.ms`): consumer
    /// lag per assigned partition as `spoor_ingest_kafka_lag`.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's "unknown" and its internal partition.
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!(
                    "spoor_ingest_kafka_lag",
                    "topic" => topic.clone(),
                    "partition" => partition.to_string()
                )
                .set(p.consumer_lag as f64);
            }
        }
    }
}

impl SpoorContext {
    /// Sends to the pipeline, blocking only on a plain thread (the poll
    /// thread); on any other thread a full channel drops the notice, which
    /// only happens while shutting down.
    fn notify(&self, event: SourceEvent) -> bool {
        if tokio::runtime::Handle::try_current().is_ok() {
            return self.events.try_send(event).is_ok();
        }
        self.events.blocking_send(event).is_ok()
    }

    /// Checkpoints of every topic in `tpl`, retried until the catalog answers
    /// or the source stops: consuming without them could re-ingest data.
    fn checkpoints_for(&self, topics: &[String]) -> Option<BTreeMap<TopicPartition, i64>> {
        if tokio::runtime::Handle::try_current().is_ok() {
            // Only reachable while the consumer closes on a runtime thread;
            // assigning nothing is right then.
            return None;
        }
        let mut result = BTreeMap::new();
        for topic in topics {
            let mut delay = Duration::from_millis(100);
            loop {
                if self.stop.load(Ordering::Relaxed) {
                    return None;
                }
                match self
                    .runtime
                    .block_on(self.catalog.checkpoints(&self.source_id, topic))
                {
                    Ok(cps) => {
                        for c in cps {
                            result.insert((c.topic, c.partition), c.next_offset);
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, topic, "cannot read checkpoints from the catalog; retrying");
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
        Some(result)
    }
}

impl ConsumerContext for SpoorContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions: Vec<TopicPartition> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut topics: Vec<String> = partitions.iter().map(|(t, _)| t.clone()).collect();
                topics.dedup();
                let Some(checkpoints) = self.checkpoints_for(&topics) else {
                    return;
                };
                let mut assigned = Vec::new();
                for tp in &partitions {
                    let start = checkpoints.get(tp).copied();
                    let offset = match (start, self.start_from) {
                        (Some(next), _) => Offset::Offset(next),
                        (None, StartFrom::Earliest) => Offset::Beginning,
                        (None, StartFrom::Latest) => Offset::End,
                    };
                    if let Err(e) = tpl.set_partition_offset(&tp.0, tp.1, offset) {
                        tracing::error!(error = %e, topic = tp.0, partition = tp.1, "cannot set start offset");
                    }
                    assigned.push((tp.clone(), start));
                }
                tracing::info!(partitions = ?assigned, "partitions assigned; starting at catalog checkpoints");
                // The pipeline learns the floors before any message of the new assignment.
                if !self.notify(SourceEvent::Assigned(assigned)) {
                    return;
                }
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "kafka assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = ?partitions, "partitions revoked; dropping their uncommitted buffers");
                let _ = self.notify(SourceEvent::Revoked(partitions));
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "kafka unassign failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "kafka rebalance error; unassigning");
                let _ = self.notify(SourceEvent::Revoked(partitions));
                let _ = consumer.unassign();
            }
        }
    }
}

/// Runs the Kafka source until `shutdown`: consumes, normalizes, flushes
/// through `flusher`, and commits offsets to Kafka after each catalog commit.
pub async fn run(
    config: IngestConfig,
    instance_id: Option<String>,
    catalog: Arc<dyn Catalog>,
    flusher: Flusher,
    router: TenantRouter,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let kafka = &config.kafka;
    // Back-pressure: while a flush is under way (or failing because object
    // storage is slow), the pipeline stops receiving; this channel fills, the
    // poll thread blocks, and librdkafka stops fetching once its queue is
    // full. Memory stays bounded by max_batch_bytes plus this channel plus
    // librdkafka's queue (queued.max.messages.kbytes, 16 MiB by default here).
    let (events_tx, mut events_rx) = mpsc::channel::<SourceEvent>(EVENT_CHANNEL_CAPACITY);
    let (commands_tx, commands_rx) = std::sync::mpsc::channel::<PollCommand>();
    let stop = Arc::new(AtomicBool::new(false));
    let context = SpoorContext {
        catalog: catalog.clone(),
        runtime: tokio::runtime::Handle::current(),
        source_id: kafka.group_id.clone(),
        start_from: kafka.start_from,
        events: events_tx.clone(),
        stop: stop.clone(),
    };
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        .set(
            "auto.offset.reset",
            match kafka.start_from {
                StartFrom::Earliest => "earliest",
                StartFrom::Latest => "latest",
            },
        );
    if let Some(instance_id) = &instance_id {
        // Static membership: a restarted node rejoins as itself and takes its
        // partitions back at once instead of waiting out the session timeout.
        client.set("group.instance.id", instance_id);
    }
    client
        .set("queued.max.messages.kbytes", "16384")
        .set("statistics.interval.ms", "5000");
    for (k, v) in &kafka.properties {
        client.set(k, v);
    }
    let consumer: Arc<BaseConsumer<SpoorContext>> = Arc::new(
        client
            .create_with_context(context)
            .map_err(|source| IngestError::Kafka {
                context: "creating the consumer".into(),
                source,
            })?,
    );
    let topics: Vec<&str> = kafka.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|source| IngestError::Kafka {
            context: format!("subscribing to {topics:?}"),
            source,
        })?;
    tracing::info!(brokers = %kafka.brokers, topics = ?kafka.topics, group = %kafka.group_id, "kafka source started");

    let poller = {
        let consumer = consumer.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("spoor-kafka-poll".into())
            .spawn(move || {
                poll_loop(&consumer, &events_tx, &commands_rx, &stop);
                consumer.unsubscribe();
                drop(events_tx);
                // Closing the consumer (the last handle) leaves the group cleanly.
                drop(consumer);
            })
            .map_err(|e| IngestError::Kafka {
                context: format!("starting the poll thread: {e}"),
                source: KafkaError::Canceled,
            })?
    };

    let sources = Sources::new(config.sources.clone())?;
    let mut buffers = PartitionBuffers::with_sources(kafka.group_id.clone(), sources, router);
    let flush_every = Duration::from_millis(config.flush_interval_ms);
    let mut tick = tokio::time::interval(flush_every / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Vec<PartitionBatch> = Vec::new();
    loop {
        let due = buffers.oldest().is_some_and(|t| t.elapsed() >= flush_every)
            || buffers.buffered_events() >= config.max_batch_events
            || buffers.buffered_bytes() >= config.max_batch_bytes;
        if due && pending.is_empty() {
            pending = buffers.take();
        }
        if !pending.is_empty() {
            match flush(&flusher, &consumer, &pending).await {
                Ok(()) => pending.clear(),
                Err(IngestError::Catalog(CatalogError::Conflict { reason })) => {
                    // Someone committed these partitions further (a zombie of
                    // ours, or a rebalance race): restart at the catalog.
                    tracing::warn!(
                        reason,
                        "catalog refused the batch; re-seeking to catalog checkpoints"
                    );
                    let reset = reseek(&catalog, &kafka.group_id, &pending, &commands_tx).await;
                    buffers.reset_to(reset);
                    pending.clear();
                }
                Err(e) => {
                    tracing::error!(error = %e, "flush failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            event = events_rx.recv() => match event {
                Some(SourceEvent::Message(record)) => {
                    buffers.push(record, spoor_common::time::now_micros());
                }
                Some(SourceEvent::Assigned(parts)) => {
                    for (tp, start) in parts {
                        buffers.assigned(tp, start);
                    }
                }
                Some(SourceEvent::Seeked { tp, offset, ok }) => {
                    if ok {
                        buffers.seeked(&tp);
                    } else if buffers.awaiting_seek(&tp) {
                        // The partition's position is unknown until a seek
                        // succeeds; its messages are dropped meanwhile.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let _ = commands_tx.send(PollCommand::Seek(tp, offset));
                    }
                }
                Some(SourceEvent::Revoked(parts)) => {
                    for tp in &parts {
                        buffers.revoked(tp);
                    }
                    pending.retain(|b| !parts.contains(&(b.range.topic.clone(), b.range.partition)));
                }
                None => break,
            },
        }
    }

    // Shutting down: commit what is buffered, then stop the consumer.
    let mut last = buffers.take();
    last.extend(pending);
    if !last.is_empty()
        && let Err(e) = flush(&flusher, &consumer, &last).await
    {
        tracing::warn!(error = %e, "final flush failed; the events will be read again on restart");
    }
    stop.store(true, Ordering::Relaxed);
    drop(events_rx);
    // The poll thread leaves the group and drops the last handle: librdkafka
    // runs rebalance callbacks inside those calls, and they must not run on
    // an async worker thread.
    drop(consumer);
    let _ = tokio::task::spawn_blocking(move || poller.join()).await;
    tracing::info!("kafka source stopped");
    Ok(())
}

fn poll_loop(
    consumer: &BaseConsumer<SpoorContext>,
    events: &mpsc::Sender<SourceEvent>,
    commands: &std::sync::mpsc::Receiver<PollCommand>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        while let Ok(PollCommand::Seek((topic, partition), offset)) = commands.try_recv() {
            let ok = match consumer.seek(
                &topic,
                partition,
                Offset::Offset(offset),
                Duration::from_secs(10),
            ) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(error = %e, topic, partition, offset, "seek failed; retrying");
                    false
                }
            };
            // In order with the messages: what follows is from the new position.
            let seeked = SourceEvent::Seeked {
                tp: (topic, partition),
                offset,
                ok,
            };
            if events.blocking_send(seeked).is_err() {
                return;
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                metrics::counter!("spoor_ingest_messages_total", "source" => "kafka").increment(1);
                metrics::counter!("spoor_ingest_bytes_total", "source" => "kafka")
                    .increment(m.payload().map_or(0, <[u8]>::len) as u64);
                let record = KafkaRecord {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.to_string(),
                                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                };
                if events.blocking_send(SourceEvent::Message(record)).is_err() {
                    return;
                }
            }
            Some(Err(e)) => {
                metrics::counter!("spoor_ingest_kafka_errors_total").increment(1);
                tracing::warn!(error = %e, "kafka poll error");
            }
        }
    }
}

/// Messages in flight between the poll thread and the pipeline.
const EVENT_CHANNEL_CAPACITY: usize = 2_000;

async fn flush(
    flusher: &Flusher,
    consumer: &BaseConsumer<SpoorContext>,
    batches: &[PartitionBatch],
) -> Result<(), IngestError> {
    for b in batches {
        tracing::debug!(
            topic = b.range.topic,
            partition = b.range.partition,
            first = b.range.first_offset,
            last = b.range.last_offset,
            rows = b.len(),
            "flushing"
        );
    }
    let flushed = flusher.flush_kafka(batches).await?;
    tracing::debug!(
        events = flushed.events,
        dead = flushed.dead_letters,
        files = flushed.files,
        "flushed"
    );
    Fault::trigger(flusher.fault(), Fault::CrashAfterCommit);
    let mut tpl = TopicPartitionList::new();
    for b in batches {
        if let Err(e) = tpl.add_partition_offset(
            &b.range.topic,
            b.range.partition,
            Offset::Offset(b.range.last_offset + 1),
        ) {
            tracing::warn!(error = %e, "building the kafka offset commit");
        }
    }
    // Lag monitoring only: the catalog already holds these offsets.
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::warn!(error = %e, "kafka offset commit failed (the catalog checkpoint stands)");
    }
    Ok(())
}

/// After a refused commit, every partition of the refused batch restarts at
/// its catalog checkpoint, or where the batch began if the catalog has none
/// (or cannot be read), so nothing of the batch is skipped.
async fn reseek(
    catalog: &Arc<dyn Catalog>,
    source_id: &str,
    batches: &[PartitionBatch],
    commands: &std::sync::mpsc::Sender<PollCommand>,
) -> Vec<(TopicPartition, i64)> {
    let mut known: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let mut topics: Vec<&str> = batches.iter().map(|b| b.range.topic.as_str()).collect();
    topics.sort_unstable();
    topics.dedup();
    for topic in topics {
        match catalog.checkpoints(source_id, topic).await {
            Ok(cps) => known.extend(
                cps.into_iter()
                    .map(|c| ((c.topic, c.partition), c.next_offset)),
            ),
            Err(e) => {
                tracing::error!(error = %e, topic, "cannot read checkpoints to re-seek; re-reading the batch")
            }
        }
    }
    batches
        .iter()
        .map(|b| {
            let tp = (b.range.topic.clone(), b.range.partition);
            let next = known.get(&tp).copied().unwrap_or(b.range.first_offset);
            let _ = commands.send(PollCommand::Seek(tp.clone(), next));
            (tp, next)
        })
        .collect()
}

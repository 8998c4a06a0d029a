//! The Kafka source.
//!
//! A dedicated OS thread polls a librdkafka consumer (consumer group, no
//! auto-commit) and hands messages to the async pipeline through a bounded
//! channel, which is the back-pressure. On assignment the rebalance callback,
//! running on that thread, asks the catalog for the partitions' checkpoints
//! and assigns at them: the catalog, not Kafka, says where to resume. After a
//! flush is committed to the catalog, the pipeline commits the same offsets to
//! Kafka, for lag monitoring only.
//!
//! Per-tenant ingest quotas ([`crate::quota`]) are back-pressure here, never
//! a refusal: each batch of messages is charged to its tenants after
//! routing, and while a tenant is over its quota the pipeline reads no
//! further message and starts no flush until the budget allows the charge.
//! Flushes already under way end, and their outcomes (commit, retry,
//! re-seek) are handled as usual meanwhile.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
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
use crate::quota::{Charge, IngestQuotas};
use crate::routing::TenantRouter;

/// What the poll thread tells the pipeline, in order.
#[derive(Debug)]
enum SourceEvent {
    /// Messages in poll order (at most [`MESSAGES_PER_SEND`] or about
    /// [`BYTES_PER_SEND`]): one channel send per batch, not per message.
    Messages(Vec<KafkaRecord>),
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
    /// Messages polled but not yet sent to the pipeline. Rebalance callbacks
    /// run inside `poll`, so [`SpoorContext::notify`] sends these first: the
    /// pipeline must see every message polled before a revocation before
    /// the revocation itself.
    polled: std::sync::Mutex<PolledMessages>,
}

/// Messages accumulated on the poll thread for one channel send.
#[derive(Default)]
struct PolledMessages {
    records: Vec<KafkaRecord>,
    bytes: usize,
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
    /// Sends to the pipeline, after the messages polled before it, blocking
    /// only on a plain thread (the poll thread); on any other thread a full
    /// channel drops the notice, which only happens while shutting down (the
    /// dropped messages are uncommitted and read again after a restart).
    fn notify(&self, event: SourceEvent) -> bool {
        self.send_polled() && self.send(event)
    }

    fn send(&self, event: SourceEvent) -> bool {
        if tokio::runtime::Handle::try_current().is_ok() {
            return self.events.try_send(event).is_ok();
        }
        self.events.blocking_send(event).is_ok()
    }

    /// Adds a polled message; sends the accumulated ones when they are many
    /// or large enough.
    fn push_polled(&self, record: KafkaRecord) -> bool {
        let full = {
            let mut polled = self.polled.lock().unwrap_or_else(|e| e.into_inner());
            polled.bytes += record.payload.len();
            polled.records.push(record);
            polled.records.len() >= MESSAGES_PER_SEND || polled.bytes >= BYTES_PER_SEND
        };
        !full || self.send_polled()
    }

    /// Sends the messages polled so far, if any.
    fn send_polled(&self) -> bool {
        let polled = std::mem::take(&mut *self.polled.lock().unwrap_or_else(|e| e.into_inner()));
        if polled.records.is_empty() {
            return true;
        }
        metrics::counter!("spoor_ingest_messages_total", "source" => "kafka")
            .increment(polled.records.len() as u64);
        metrics::counter!("spoor_ingest_bytes_total", "source" => "kafka")
            .increment(polled.bytes as u64);
        self.send(SourceEvent::Messages(polled.records))
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
/// through `flusher`, and commits offsets to Kafka after each catalog commit;
/// a tenant over its quota in `quotas` holds the pipeline until its budget
/// allows what was read.
pub async fn run(
    config: IngestConfig,
    instance_id: Option<String>,
    catalog: Arc<dyn Catalog>,
    flusher: Flusher,
    router: TenantRouter,
    quotas: IngestQuotas,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let kafka = &config.kafka;
    // Back-pressure: while one flush is under way (or failing because object
    // storage is slow) and the next batch is full, the pipeline stops
    // receiving; this channel fills, the poll thread blocks, and librdkafka
    // stops fetching once its queue is full. Memory stays bounded by two
    // batches (max_batch_bytes each: one flushing, one filling) plus this
    // channel (about 4 MiB) plus librdkafka's queue
    // (queued.max.messages.kbytes, librdkafka's default of 64 MiB).
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
        polled: std::sync::Mutex::default(),
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
    // librdkafka's prefetch queue is left at its default of 64 MiB: at
    // 16 MiB the fetcher idled between fetches and halved the rate
    // (docs/performance.md). `ingest.kafka.properties` can lower it.
    client.set("statistics.interval.ms", "5000");
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
                poll_loop(&consumer, &commands_rx, &stop);
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
    // The buffers route with a metered router: what each batch of messages
    // brought each tenant is charged to its quota.
    let router = router.metered();
    let mut buffers =
        PartitionBuffers::with_sources(kafka.group_id.clone(), sources, router.clone());
    // While set, a tenant of the last batch is over quota: this waits for
    // the budget, and nothing more is read or flushed until it has it.
    let mut over_quota: Option<QuotaWait> = None;
    let flush_every = Duration::from_millis(config.flush_interval_ms);
    let mut tick = tokio::time::interval(flush_every / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One flush at a time runs in its own task while this loop reads and
    // normalizes the next batch; commits stay in order because the next
    // flush starts only after the previous one ended.
    let mut in_flight: Option<InFlight> = None;
    // A flush that failed (not refused), retried after a pause.
    let mut retry: Option<(Arc<[PartitionBatch]>, tokio::time::Instant)> = None;
    // The pause before that retry: doubles while flushes keep failing (a
    // store or catalog that is down is not hammered), back to the first
    // after a success.
    let mut retry_pause = FLUSH_RETRY_PAUSE;
    loop {
        let full = buffers.buffered_events() >= config.max_batch_events
            || buffers.buffered_bytes() >= config.max_batch_bytes;
        let due = full || buffers.oldest().is_some_and(|t| t.elapsed() >= flush_every);
        if in_flight.is_none() {
            let next = match retry.take() {
                Some((batches, at)) if at <= tokio::time::Instant::now() => Some(batches),
                Some(waiting) => {
                    retry = Some(waiting);
                    None
                }
                // Rows not paid for yet are not handed on.
                None if due && over_quota.is_none() => Some(Arc::from(buffers.take())),
                None => None,
            };
            if let Some(batches) = next {
                in_flight = Some(InFlight::start(&flusher, &consumer, batches));
            }
        }
        // Back-pressure: with a flush under way (or waiting to be retried)
        // and the next batch already full, stop reading until it ends; and
        // while a tenant waits for its quota.
        let read = !(full && (in_flight.is_some() || retry.is_some())) && over_quota.is_none();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
            waited = QuotaWait::finished(&mut over_quota), if over_quota.is_some() => {
                metrics::histogram!("spoor_ingest_quota_delayed_seconds")
                    .record(waited.as_secs_f64());
            }
            (batches, result) = InFlight::finished(&mut in_flight), if in_flight.is_some() => {
                match result {
                    Ok(()) => retry_pause = FLUSH_RETRY_PAUSE,
                    Err(IngestError::Catalog(CatalogError::Conflict { reason })) => {
                        // Someone committed these partitions further (a zombie of
                        // ours, or a rebalance race): restart at the catalog.
                        tracing::warn!(
                            reason,
                            "catalog refused the batch; re-seeking to catalog checkpoints"
                        );
                        let reset = reseek(&catalog, &kafka.group_id, &batches, &commands_tx).await;
                        buffers.reset_to(reset);
                    }
                    Err(e) => {
                        // Nothing of the batch is committed (catalog or Kafka): the
                        // same rows are written again under the same file ids.
                        tracing::error!(error = %e, retry_in = ?retry_pause, "flush failed; retrying the same batch");
                        metrics::counter!("spoor_ingest_flush_failures_total").increment(1);
                        retry = Some((batches, tokio::time::Instant::now() + retry_pause));
                        retry_pause = (retry_pause * 2).min(FLUSH_RETRY_PAUSE_MAX);
                    }
                }
            }
            event = events_rx.recv(), if read => match event {
                Some(SourceEvent::Messages(records)) => {
                    buffers.push_batch(records, spoor_common::time::now_micros());
                    let charges = Charge::from_tally(router.take_tally());
                    if quotas.try_acquire_all(&charges).is_err() {
                        over_quota = Some(QuotaWait::start(&quotas, charges));
                    }
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
                    // A flush waiting for its retry gives up the revoked
                    // partitions: their new owner reads them from the catalog
                    // checkpoint. (A flush in flight runs on; if it commits,
                    // the new owner's first commit is refused and re-seeks.)
                    retry = retry.and_then(|(batches, at)| {
                        let kept: Vec<PartitionBatch> = batches
                            .iter()
                            .filter(|b| !parts.contains(&(b.range.topic.clone(), b.range.partition)))
                            .cloned()
                            .collect();
                        (!kept.is_empty()).then(|| (Arc::from(kept), at))
                    });
                }
                None => break,
            },
        }
    }

    // Shutting down: let the flush in flight end, then commit what is left
    // (a failed flush first, then the buffers: ranges of one partition must
    // be committed in order), then stop the consumer.
    let mut last: Vec<Arc<[PartitionBatch]>> = Vec::new();
    if let Some(f) = in_flight.take() {
        match f.task.await {
            Ok(Ok(())) => {}
            Ok(Err(IngestError::Catalog(CatalogError::Conflict { reason }))) => {
                // The buffers of these partitions may continue a refused
                // range: leave them to be read again from the catalog.
                tracing::warn!(reason, "catalog refused the last batch in flight");
                for b in f.batches.iter() {
                    buffers.revoked(&(b.range.topic.clone(), b.range.partition));
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "flush in flight failed; retrying once before stopping");
                last.push(f.batches);
            }
            Err(e) => {
                tracing::warn!(error = %e, "flush task failed; retrying once before stopping");
                last.push(f.batches);
            }
        }
    }
    if let Some((batches, _)) = retry.take() {
        last.push(batches);
    }
    let remaining = buffers.take();
    if !remaining.is_empty() {
        last.push(Arc::from(remaining));
    }
    for batches in last {
        if let Err(e) = flush(flusher.clone(), consumer.clone(), batches).await {
            // Later batches may continue these ranges: committing them now
            // would leave a gap behind the checkpoint.
            tracing::warn!(error = %e, "final flush failed; the events will be read again on restart");
            break;
        }
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

/// Pause before retrying a flush that failed (storage or catalog down).
const FLUSH_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Longest pause between retries of a failing flush: bounds how long ingest
/// lags behind once the store or catalog is back.
const FLUSH_RETRY_PAUSE_MAX: Duration = Duration::from_secs(8);

/// Waiting for the tenants of a batch to have the budget for it (no limit
/// on the wait: Kafka data is never refused; the wait is finite, see
/// [`crate::quota`]).
struct QuotaWait(Pin<Box<dyn Future<Output = Duration> + Send>>);

impl QuotaWait {
    fn start(quotas: &IngestQuotas, charges: Vec<Charge>) -> QuotaWait {
        let quotas = quotas.clone();
        let tenants: Vec<String> = charges.iter().map(|c| c.tenant.to_string()).collect();
        tracing::debug!(?tenants, "over ingest quota; holding the kafka source");
        QuotaWait(Box::pin(async move {
            // Without a limit on the wait, acquiring only ends in success.
            quotas.acquire_all(&charges, None).await.unwrap_or_default()
        }))
    }

    /// Waits until the charge in `slot` is admitted and clears it; pending
    /// forever when there is none.
    async fn finished(slot: &mut Option<QuotaWait>) -> Duration {
        let Some(wait) = slot.as_mut() else {
            return std::future::pending().await;
        };
        let waited = (&mut wait.0).await;
        *slot = None;
        waited
    }
}

/// A flush running in its own task, with the batches it commits (kept here
/// too, to retry or re-seek them when it fails).
struct InFlight {
    batches: Arc<[PartitionBatch]>,
    task: tokio::task::JoinHandle<Result<(), IngestError>>,
}

impl InFlight {
    fn start(
        flusher: &Flusher,
        consumer: &Arc<BaseConsumer<SpoorContext>>,
        batches: Arc<[PartitionBatch]>,
    ) -> InFlight {
        let task = tokio::spawn(flush(flusher.clone(), consumer.clone(), batches.clone()));
        InFlight { batches, task }
    }

    /// Waits for the flush in `slot` to end and takes it out; pending forever
    /// when there is none.
    async fn finished(
        slot: &mut Option<InFlight>,
    ) -> (Arc<[PartitionBatch]>, Result<(), IngestError>) {
        let Some(f) = slot.as_mut() else {
            return std::future::pending().await;
        };
        let result = (&mut f.task)
            .await
            .unwrap_or_else(|e| Err(IngestError::TaskFailed(format!("flush task: {e}"))));
        let batches = f.batches.clone();
        *slot = None;
        (batches, result)
    }
}

fn poll_loop(
    consumer: &BaseConsumer<SpoorContext>,
    commands: &std::sync::mpsc::Receiver<PollCommand>,
    stop: &AtomicBool,
) {
    let context = consumer.context();
    // Wait for messages only when none are at hand: after a message, poll
    // without waiting and send what was gathered once the queue is empty.
    let mut wait = POLL_WAIT;
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
            if !context.notify(seeked) {
                return;
            }
        }
        match consumer.poll(wait) {
            None => {
                if !context.send_polled() {
                    return;
                }
                wait = POLL_WAIT;
            }
            Some(Ok(m)) => {
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
                if !context.push_polled(record) {
                    return;
                }
                wait = Duration::ZERO;
            }
            Some(Err(e)) => {
                metrics::counter!("spoor_ingest_kafka_errors_total").increment(1);
                tracing::warn!(error = %e, "kafka poll error");
            }
        }
    }
}

/// How long a poll waits for a message when none is queued.
const POLL_WAIT: Duration = Duration::from_millis(100);

/// Batches of messages in flight between the poll thread and the pipeline.
/// With [`MESSAGES_PER_SEND`] and [`BYTES_PER_SEND`] this bounds the memory
/// of the channel to about 4 MiB plus one message per batch.
const EVENT_CHANNEL_CAPACITY: usize = 4;

/// Messages per channel send at most.
const MESSAGES_PER_SEND: usize = 512;

/// Payload bytes per channel send, about (the message that crosses it is
/// included).
const BYTES_PER_SEND: usize = 1 << 20;

async fn flush(
    flusher: Flusher,
    consumer: Arc<BaseConsumer<SpoorContext>>,
    batches: Arc<[PartitionBatch]>,
) -> Result<(), IngestError> {
    for b in batches.iter() {
        tracing::debug!(
            topic = b.range.topic,
            partition = b.range.partition,
            first = b.range.first_offset,
            last = b.range.last_offset,
            rows = b.len(),
            "flushing"
        );
    }
    let flushed = flusher.flush_kafka(batches.clone()).await?;
    tracing::debug!(
        events = flushed.events,
        dead = flushed.dead_letters,
        files = flushed.files,
        "flushed"
    );
    Fault::trigger(flusher.fault(), Fault::CrashAfterCommit);
    let mut tpl = TopicPartitionList::new();
    for b in batches.iter() {
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

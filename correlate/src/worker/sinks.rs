//! Alert sinks: every alert a shard commits is delivered, at least once, to
//! the sinks configured for its tenant (`[[alerts.sinks]]`): a Kafka topic
//! (idempotent producer, key = `alert_id`) or a webhook (one `POST` of JSON
//! per alert, `Idempotency-Key: {alert_id}`).
//!
//! Delivery follows the catalog, not the worker's memory. Each shard keeps
//! `delivered_sequence` in its checkpoint: every alerts file of the shard at
//! or before that catalog sequence has reached every sink. A shard hands the
//! rows of each commit to its sink task ([`ShardSinks`]) right after the
//! commit is accepted; the task delivers them and advances its delivered
//! sequence, which the shard writes with its next commit (or alone, once a
//! commit interval passed). A new holder of the shard (after a crash or a
//! lease move) starts by reading the shard's alerts files committed after
//! the checkpoint's delivered sequence from the catalog and delivers them
//! again. Alerts can thus arrive twice, never not at all; receivers
//! deduplicate on `alert_id`, which a replay reproduces.
//!
//! An alert that a sink still refuses after `max_attempts` (exponential
//! backoff from `initial_backoff_ms` up to `max_backoff_ms`) becomes a row of
//! its tenant's `dead_letter` table (`source_topic` = `sink:{name}`, `raw` =
//! the alert's JSON, `error` = the last failure), committed under the shard's
//! lease, and delivery moves on. A sink that ran out of attempts counts as
//! down: the next alerts get one attempt each until one succeeds, so a dead
//! receiver costs seconds, not hours, and the backlog never grows without
//! bound. A webhook answer 4xx other than 408 and 429 is final at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder, new_null_array,
};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sha2::{Digest, Sha256};
use spoor_common::catalog::{CatalogError, CatalogFile, CommitBatch, FileQuery, NewFile};
use spoor_common::config::{SinkConfig, SinkKind};
use spoor_common::control::{ShardCommit, ShardId};
use spoor_common::lake_file::encode_parquet;
use spoor_common::layout;
use spoor_common::schema::{
    DEAD_LETTER_COLUMNS, DEAD_LETTER_SCHEMA_VERSION, Table, dead_letter_schema,
};
use spoor_common::tenant::TenantId;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::alerts::{AlertRow, RuleKind};
use super::{Shared, files};

/// Commits handed to a shard's sink task and not yet taken; past this the
/// shard does not wait: the task re-reads the catalog instead.
const QUEUE: usize = 256;

/// Changes read per catalog page when catching up.
const PAGE: usize = 256;

/// Delivery counts of one sink (also exported as metrics).
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Alerts delivered.
    pub delivered: AtomicU64,
    /// Failed attempts.
    pub failures: AtomicU64,
    /// Alerts written to `dead_letter` instead.
    pub dead_letters: AtomicU64,
}

enum Backend {
    Webhook(reqwest::Client),
    Kafka(FutureProducer),
}

/// One configured sink.
pub(crate) struct Sink {
    config: SinkConfig,
    backend: Backend,
    /// Set when an alert ran out of attempts; the next success clears it.
    down: AtomicBool,
    stats: SinkStats,
}

/// The sinks of a worker, shared by its shards.
#[derive(Clone, Default)]
pub struct Sinks {
    sinks: Vec<Arc<Sink>>,
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.sinks.iter().map(|s| &s.config.name))
            .finish()
    }
}

/// Why delivery stopped short.
enum Halt {
    /// The shard is stopping.
    Stopped,
    /// The coordinators refused a dead letter: another worker holds the shard.
    LeaseLost(String),
}

/// One alert ready to send.
struct Outgoing {
    alert_id: String,
    body: Vec<u8>,
    level: Option<String>,
    detected_at_micros: i64,
}

/// An attempt that failed: retry, or final.
enum Failure {
    Retry(String),
    Final(String),
}

impl Sinks {
    /// No sinks.
    pub fn none() -> Self {
        Sinks::default()
    }

    /// The sinks of `configs` (checked by the config loader), with their
    /// HTTP clients and Kafka producers; an error names the sink.
    pub fn new(configs: &[SinkConfig]) -> Result<Self, String> {
        let mut sinks = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let backend = match c.kind {
                SinkKind::Webhook => Backend::Webhook(
                    reqwest::Client::builder()
                        .timeout(Duration::from_millis(c.timeout_ms))
                        .build()
                        .map_err(|e| format!("alerts.sinks[{i}] ({}): {e}", c.name))?,
                ),
                SinkKind::Kafka => {
                    let timeout = c.timeout_ms.to_string();
                    let mut kc = ClientConfig::new();
                    kc.set("bootstrap.servers", &c.brokers)
                        .set("enable.idempotence", "true")
                        .set("message.timeout.ms", &timeout)
                        .set("request.timeout.ms", &timeout)
                        .set("linger.ms", "5");
                    for (k, v) in &c.properties {
                        kc.set(k, v);
                    }
                    Backend::Kafka(kc.create().map_err(|e| {
                        format!(
                            "alerts.sinks[{i}] ({}): the Kafka producer: {e} (check brokers and properties)",
                            c.name
                        )
                    })?)
                }
            };
            sinks.push(Arc::new(Sink {
                config: c.clone(),
                backend,
                down: AtomicBool::new(false),
                stats: SinkStats::default(),
            }));
        }
        Ok(Sinks { sinks })
    }

    /// Whether any sink is configured.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// The counts of the sink `name`.
    pub fn stats(&self, name: &str) -> Option<&SinkStats> {
        self.sinks
            .iter()
            .find(|s| s.config.name == name)
            .map(|s| &s.stats)
    }

    fn for_tenant(&self, tenant: &str) -> Vec<Arc<Sink>> {
        self.sinks
            .iter()
            .filter(|s| s.config.takes_tenant(tenant))
            .cloned()
            .collect()
    }
}

fn micros_text(micros: i64) -> serde_json::Value {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into()
        })
        .unwrap_or(serde_json::Value::Null)
}

/// An alert as the sinks send it: the `alerts` columns (times in RFC 3339,
/// tags, group key and event references as JSON, not text) and the tenant.
pub fn alert_json(tenant: &str, a: &AlertRow) -> serde_json::Value {
    let group: serde_json::Map<String, serde_json::Value> = a
        .group_key
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect();
    let refs: Vec<serde_json::Value> = a
        .event_refs
        .iter()
        .map(|r| serde_json::from_str(r).unwrap_or_else(|_| serde_json::Value::from(r.as_str())))
        .collect();
    serde_json::json!({
        "alert_id": a.alert_id,
        "tenant": tenant,
        "time": micros_text(a.last_event_micros),
        "rule_id": a.rule_id,
        "rule_version": a.rule_version,
        "rule_title": a.rule_title,
        "rule_level": a.rule_level,
        "rule_tags": a.rule_tags,
        "rule_set": a.rule_set,
        "rule_set_version": a.rule_set_version,
        "rule_kind": a.rule_kind.name(),
        "group_key": group,
        "first_event_time": micros_text(a.first_event_micros),
        "last_event_time": micros_text(a.last_event_micros),
        "event_count": a.event_count,
        "value": a.value.filter(|v| v.is_finite()),
        "event_refs": refs,
        "origin": a.origin,
        "shard": a.shard,
        "detected_at": micros_text(a.detected_at_micros),
    })
}

fn column(batch: &RecordBatch, name: &str, ty: &DataType) -> Result<ArrayRef, String> {
    let i = batch
        .schema()
        .index_of(name)
        .map_err(|_| format!("no column {name}"))?;
    arrow::compute::cast(batch.column(i), ty).map_err(|e| format!("column {name}: {e}"))
}

/// The rows of an `alerts` file, back as [`AlertRow`]s.
pub(crate) fn rows_from_batch(batch: &RecordBatch) -> Result<Vec<AlertRow>, String> {
    use spoor_common::schema::alert_col as c;
    let text = |name: &str| column(batch, name, &DataType::Utf8);
    let int = |name: &str| column(batch, name, &DataType::Int64);
    let (id, rule_id, version, title, level, tags) = (
        text(c::ALERT_ID)?,
        text(c::RULE_ID)?,
        text(c::RULE_VERSION)?,
        text(c::RULE_TITLE)?,
        text(c::RULE_LEVEL)?,
        text(c::RULE_TAGS)?,
    );
    let (set, kind, group, refs, origin, shard) = (
        text(c::RULE_SET)?,
        text(c::RULE_KIND)?,
        text(c::GROUP_KEY)?,
        text(c::EVENT_REFS)?,
        text(c::ORIGIN)?,
        text(c::SHARD)?,
    );
    let (set_version, first, last, count, detected) = (
        int(c::RULE_SET_VERSION)?,
        int(c::FIRST_EVENT_TIME)?,
        int(c::LAST_EVENT_TIME)?,
        int(c::EVENT_COUNT)?,
        int(c::DETECTED_AT)?,
    );
    let value = column(batch, c::VALUE, &DataType::Float64)?;
    let s = |a: &ArrayRef, i: usize| -> Option<String> {
        let a = a.as_string::<i32>();
        (!a.is_null(i)).then(|| a.value(i).to_string())
    };
    let n = |a: &ArrayRef, i: usize| -> i64 { a.as_primitive::<Int64Type>().value(i) };
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let tags: Vec<String> = s(&tags, i)
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let group_key: Vec<(String, String)> = s(&group, i)
            .and_then(|g| {
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&g).ok()
            })
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(v) => (k, v),
                other => (k, other.to_string()),
            })
            .collect();
        let event_refs: Vec<String> = s(&refs, i)
            .and_then(|r| serde_json::from_str::<Vec<serde_json::Value>>(&r).ok())
            .unwrap_or_default()
            .iter()
            .map(serde_json::Value::to_string)
            .collect();
        let value = value.as_primitive::<Float64Type>();
        out.push(AlertRow {
            alert_id: s(&id, i).unwrap_or_default(),
            rule_id: s(&rule_id, i).unwrap_or_default(),
            rule_version: s(&version, i).unwrap_or_default(),
            rule_title: s(&title, i).unwrap_or_default(),
            rule_level: s(&level, i),
            rule_tags: tags,
            rule_set: s(&set, i).unwrap_or_default(),
            rule_set_version: u64::try_from(n(&set_version, i)).unwrap_or(0),
            rule_kind: s(&kind, i)
                .as_deref()
                .and_then(RuleKind::from_name)
                .unwrap_or(RuleKind::Detection),
            group_key,
            first_event_micros: n(&first, i),
            last_event_micros: n(&last, i),
            event_count: u64::try_from(n(&count, i)).unwrap_or(0),
            value: (!value.is_null(i)).then(|| value.value(i)),
            event_refs,
            origin: s(&origin, i).unwrap_or_default(),
            shard: s(&shard, i).unwrap_or_default(),
            detected_at_micros: n(&detected, i),
            ingested_micros: 0,
        });
    }
    Ok(out)
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Sleeps `d`, or returns false when `stop` comes first.
async fn pause(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

impl Sink {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn attempts(&self) -> u32 {
        if self.down.load(Ordering::Relaxed) {
            1
        } else {
            self.config.max_attempts
        }
    }

    fn backoff(&self, retry: u32) -> Duration {
        let ms = self
            .config
            .initial_backoff_ms
            .saturating_mul(1u64 << retry.min(30))
            .min(self.config.max_backoff_ms);
        Duration::from_millis(ms)
    }

    fn delivered(&self, alert: &Outgoing) {
        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("spoor_sink_delivered_total", "sink" => self.name().to_string())
            .increment(1);
        let lag = (spoor_common::time::now_micros() - alert.detected_at_micros).max(0);
        metrics::histogram!("spoor_sink_delivery_lag_seconds", "sink" => self.name().to_string())
            .record(lag as f64 / 1e6);
    }

    fn failed(&self, alert_id: &str, error: &str) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("spoor_sink_failures_total", "sink" => self.name().to_string())
            .increment(1);
        tracing::debug!(sink = self.name(), alert_id, error, "alert delivery failed");
    }

    /// Delivers `alerts`; returns those that ran out of attempts, with the
    /// last failure.
    async fn deliver(
        &self,
        alerts: &[&Outgoing],
        stop: &CancellationToken,
    ) -> Result<Vec<(usize, String)>, Halt> {
        match &self.backend {
            Backend::Webhook(client) => self.deliver_webhook(client, alerts, stop).await,
            Backend::Kafka(producer) => self.deliver_kafka(producer, alerts, stop).await,
        }
    }

    async fn post(&self, client: &reqwest::Client, alert: &Outgoing) -> Result<(), Failure> {
        let c = &self.config;
        let mut request = client
            .post(&c.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &alert.alert_id)
            .header("X-Spoor-Alert-Id", &alert.alert_id)
            .header("X-Spoor-Sink", &c.name);
        if !c.bearer_token.is_empty() {
            request = request.bearer_auth(&c.bearer_token);
        }
        if !c.hmac_secret.is_empty() {
            let mac = hmac_sha256(c.hmac_secret.as_bytes(), &alert.body);
            request = request.header("X-Spoor-Signature", format!("sha256={}", hex::encode(mac)));
        }
        let response = request.body(alert.body.clone()).send().await.map_err(|e| {
            Failure::Retry(format!("POST {}: {}", c.url, spoor_common::error_chain(&e)))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(200).collect();
        let what = format!("POST {}: HTTP {status}: {body}", c.url);
        let code = status.as_u16();
        if status.is_client_error() && code != 408 && code != 429 {
            Err(Failure::Final(what))
        } else {
            Err(Failure::Retry(what))
        }
    }

    async fn deliver_webhook(
        &self,
        client: &reqwest::Client,
        alerts: &[&Outgoing],
        stop: &CancellationToken,
    ) -> Result<Vec<(usize, String)>, Halt> {
        let mut dead = Vec::new();
        for (i, alert) in alerts.iter().enumerate() {
            let attempts = self.attempts();
            let mut last = String::new();
            let mut done = false;
            let mut exhausted = false;
            for attempt in 0..attempts {
                let result = tokio::select! {
                    () = stop.cancelled() => return Err(Halt::Stopped),
                    r = self.post(client, alert) => r,
                };
                match result {
                    Ok(()) => {
                        self.delivered(alert);
                        self.down.store(false, Ordering::Relaxed);
                        done = true;
                        break;
                    }
                    Err(Failure::Final(e)) => {
                        self.failed(&alert.alert_id, &e);
                        last = e;
                        break;
                    }
                    Err(Failure::Retry(e)) => {
                        self.failed(&alert.alert_id, &e);
                        last = e;
                        if attempt + 1 == attempts {
                            exhausted = true;
                        } else if !pause(self.backoff(attempt), stop).await {
                            return Err(Halt::Stopped);
                        }
                    }
                }
            }
            if !done {
                if exhausted {
                    self.down.store(true, Ordering::Relaxed);
                }
                dead.push((i, last));
            }
        }
        Ok(dead)
    }

    async fn deliver_kafka(
        &self,
        producer: &FutureProducer,
        alerts: &[&Outgoing],
        stop: &CancellationToken,
    ) -> Result<Vec<(usize, String)>, Halt> {
        let topic = &self.config.topic;
        let mut pending: Vec<(usize, String)> =
            (0..alerts.len()).map(|i| (i, String::new())).collect();
        let attempts = self.attempts();
        for attempt in 0..attempts {
            // Enqueue all, then wait for every delivery report.
            let mut reports = Vec::with_capacity(pending.len());
            let mut failed = Vec::new();
            for (i, _) in &pending {
                let alert = alerts[*i];
                let record = FutureRecord::to(topic)
                    .key(alert.alert_id.as_bytes())
                    .payload(&alert.body);
                match producer.send_result(record) {
                    Ok(report) => reports.push((*i, report)),
                    Err((e, _)) => failed.push((*i, format!("producing to {topic}: {e}"))),
                }
            }
            for (i, report) in reports {
                let result = tokio::select! {
                    () = stop.cancelled() => return Err(Halt::Stopped),
                    r = report => r,
                };
                match result {
                    Ok(Ok(_)) => {
                        self.delivered(alerts[i]);
                        self.down.store(false, Ordering::Relaxed);
                    }
                    Ok(Err((e, _))) => failed.push((i, format!("producing to {topic}: {e}"))),
                    Err(_) => failed.push((i, format!("producing to {topic}: report lost"))),
                }
            }
            for (i, e) in &failed {
                self.failed(&alerts[*i].alert_id, e);
            }
            pending = failed;
            if pending.is_empty() {
                return Ok(pending);
            }
            if attempt + 1 < attempts && !pause(self.backoff(attempt), stop).await {
                return Err(Halt::Stopped);
            }
        }
        self.down.store(true, Ordering::Relaxed);
        pending.sort_unstable_by_key(|(i, _)| *i);
        Ok(pending)
    }
}

/// What a shard's sink task needs to know of its shard.
struct Task {
    shared: Arc<Shared>,
    shard: ShardId,
    tenant: TenantId,
    name: String,
    epoch: u64,
    sinks: Vec<Arc<Sink>>,
    delivered: Arc<AtomicU64>,
    overflow: Arc<AtomicBool>,
    stop: CancellationToken,
}

/// A commit's alerts, handed to the sink task.
struct Handoff {
    rows: Vec<AlertRow>,
    /// Every alerts file of the shard at or before this sequence is in this
    /// or an earlier hand-off (or was committed before the task started).
    upto: u64,
}

/// A shard's handle on its sink task; dropping it stops the task.
pub(crate) struct ShardSinks {
    tx: mpsc::Sender<Handoff>,
    delivered: Arc<AtomicU64>,
    overflow: Arc<AtomicBool>,
    _stop: DropGuard,
}

impl ShardSinks {
    /// Starts the sink task of a shard whose alerts files up to `delivered`
    /// reached every sink; None when no sink takes the shard's tenant.
    pub(crate) fn start(
        shared: Arc<Shared>,
        shard: ShardId,
        tenant: TenantId,
        epoch: u64,
        delivered: u64,
        stop: &CancellationToken,
    ) -> Option<ShardSinks> {
        let sinks = shared.sinks.for_tenant(tenant.as_str());
        if sinks.is_empty() {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let delivered = Arc::new(AtomicU64::new(delivered));
        // Set: the task first delivers what the catalog holds after
        // `delivered` (a previous holder's undelivered alerts).
        let overflow = Arc::new(AtomicBool::new(true));
        let stop = stop.child_token();
        let task = Task {
            shared,
            name: shard.to_string(),
            shard,
            tenant,
            epoch,
            sinks,
            delivered: delivered.clone(),
            overflow: overflow.clone(),
            stop: stop.clone(),
        };
        tokio::spawn(task.run(rx));
        Some(ShardSinks {
            tx,
            delivered,
            overflow,
            _stop: stop.drop_guard(),
        })
    }

    /// Hands the rows of an accepted commit to the task; never waits. When
    /// the queue is full, the task reads them back from the catalog.
    pub(crate) fn hand_over(&self, rows: Vec<AlertRow>, upto: u64) {
        if let Err(e) = self.tx.try_send(Handoff { rows, upto }) {
            // Flagged before any later hand-off is sent, so the task sees it
            // before it could count a later one as delivered.
            self.overflow.store(true, Ordering::SeqCst);
            if matches!(e, mpsc::error::TrySendError::Closed(_)) {
                tracing::debug!("sink task gone; its alerts wait for the next holder");
            }
        }
    }

    /// The catalog sequence up to which the shard's alerts reached every sink.
    pub(crate) fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::SeqCst)
    }
}

impl Task {
    async fn run(self, mut rx: mpsc::Receiver<Handoff>) {
        match self.follow(&mut rx).await {
            Ok(()) | Err(Halt::Stopped) => {}
            Err(Halt::LeaseLost(reason)) => {
                tracing::info!(shard = %self.name, reason, "alert sinks stopped: lease lost");
            }
        }
    }

    async fn follow(&self, rx: &mut mpsc::Receiver<Handoff>) -> Result<(), Halt> {
        loop {
            if self.overflow.swap(false, Ordering::SeqCst) {
                self.catch_up().await?;
            }
            let handoff = tokio::select! {
                () = self.stop.cancelled() => return Err(Halt::Stopped),
                h = rx.recv() => h,
            };
            let Some(handoff) = handoff else {
                return Ok(());
            };
            if self.overflow.swap(false, Ordering::SeqCst) {
                self.catch_up().await?;
            }
            if handoff.upto <= self.delivered.load(Ordering::SeqCst) {
                continue;
            }
            self.deliver(handoff.rows).await?;
            self.delivered.fetch_max(handoff.upto, Ordering::SeqCst);
        }
    }

    /// Delivers the shard's alerts files committed after the delivered
    /// sequence, as the catalog holds them.
    async fn catch_up(&self) -> Result<(), Halt> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let at = self.delivered.load(Ordering::SeqCst);
            let page = match self
                .shared
                .catalog
                .changes_since(&self.tenant, at, PAGE)
                .await
            {
                Ok(page) => page,
                Err(CatalogError::HistoryCompacted { .. }) => {
                    return self.catch_up_by_listing().await;
                }
                Err(e) => {
                    tracing::warn!(shard = %self.name, error = %e, "alert sinks: reading the catalog; retrying");
                    if !pause(backoff, &self.stop).await {
                        return Err(Halt::Stopped);
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if page.changes.is_empty() {
                self.delivered
                    .fetch_max(page.last_sequence, Ordering::SeqCst);
                return Ok(());
            }
            for change in page.changes {
                for file in change
                    .added
                    .iter()
                    .filter(|f| f.file.table == Table::Alerts)
                {
                    self.deliver_file(file).await?;
                }
                self.delivered
                    .fetch_max(change.last_sequence, Ordering::SeqCst);
            }
        }
    }

    /// [`Self::catch_up`] when the catalog's change history no longer
    /// reaches back to the delivered sequence: the current alerts files.
    async fn catch_up_by_listing(&self) -> Result<(), Halt> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let at = self.delivered.load(Ordering::SeqCst);
            match self
                .shared
                .catalog
                .list_files_as_of(FileQuery::all(self.tenant.clone(), Table::Alerts), false)
                .await
            {
                Ok((files, info)) => {
                    tracing::warn!(shard = %self.name, from = at, "alert sinks: catalog history compacted; delivering from the file listing");
                    for file in files.iter().filter(|f| f.sequence > at) {
                        self.deliver_file(file).await?;
                    }
                    self.delivered
                        .fetch_max(info.as_of_sequence, Ordering::SeqCst);
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(shard = %self.name, error = %e, "alert sinks: listing alerts files; retrying");
                    if !pause(backoff, &self.stop).await {
                        return Err(Halt::Stopped);
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Delivers this shard's rows of one alerts file.
    async fn deliver_file(&self, file: &CatalogFile) -> Result<(), Halt> {
        let key = &file.file.object_key;
        let mut backoff = Duration::from_millis(100);
        let bytes = loop {
            match self.shared.store.get(&ObjectPath::from(key.as_str())).await {
                Ok(got) => match got.bytes().await {
                    Ok(b) => break b,
                    Err(e) => {
                        tracing::warn!(shard = %self.name, key, error = %e, "alert sinks: reading an alerts file; retrying")
                    }
                },
                Err(object_store::Error::NotFound { .. }) => {
                    tracing::warn!(shard = %self.name, key, "alert sinks: alerts file gone (retention); its alerts are not redelivered");
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(shard = %self.name, key, error = %e, "alert sinks: reading an alerts file; retrying")
                }
            }
            if !pause(backoff, &self.stop).await {
                return Err(Halt::Stopped);
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        };
        let rows = match files::decode(bytes).and_then(|batches| {
            let mut rows = Vec::new();
            for b in &batches {
                rows.extend(rows_from_batch(b)?);
            }
            Ok(rows)
        }) {
            Ok(rows) => rows,
            Err(e) => {
                // Retrying cannot mend a damaged file; say so loudly.
                tracing::error!(shard = %self.name, key, error = %e, "alert sinks: alerts file unreadable; its alerts are not redelivered");
                return Ok(());
            }
        };
        let mine: Vec<AlertRow> = rows.into_iter().filter(|r| r.shard == self.name).collect();
        if !mine.is_empty() {
            tracing::info!(shard = %self.name, key, alerts = mine.len(), "alert sinks: delivering committed alerts again");
        }
        self.deliver(mine).await
    }

    /// Delivers rows to every sink at once; what a sink refuses for good
    /// becomes dead letters.
    async fn deliver(&self, rows: Vec<AlertRow>) -> Result<(), Halt> {
        if rows.is_empty() {
            return Ok(());
        }
        let outgoing: Vec<Outgoing> = rows
            .iter()
            .map(|r| Outgoing {
                alert_id: r.alert_id.clone(),
                body: serde_json::to_vec(&alert_json(self.tenant.as_str(), r)).unwrap_or_default(),
                level: r.rule_level.clone(),
                detected_at_micros: r.detected_at_micros,
            })
            .collect();
        let runs = self.sinks.iter().map(|sink| {
            let outgoing = &outgoing;
            async move {
                let taken: Vec<&Outgoing> = outgoing
                    .iter()
                    .filter(|o| sink.config.takes_level(o.level.as_deref()))
                    .collect();
                if taken.is_empty() {
                    return Ok(());
                }
                let dead = sink.deliver(&taken, &self.stop).await?;
                if dead.is_empty() {
                    return Ok(());
                }
                let dead: Vec<(&Outgoing, String)> =
                    dead.into_iter().map(|(i, e)| (taken[i], e)).collect();
                self.dead_letter(sink, &dead).await
            }
        });
        for result in futures::future::join_all(runs).await {
            result?;
        }
        Ok(())
    }

    /// Commits `dead` as `dead_letter` rows of the tenant, under the lease.
    async fn dead_letter(&self, sink: &Sink, dead: &[(&Outgoing, String)]) -> Result<(), Halt> {
        let now = spoor_common::time::now_micros();
        let hour = layout::hour_start_micros(now);
        let source = format!("sink:{}", sink.name());
        let batch = match dead_letter_batch(now, &source, dead) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(sink = sink.name(), error = %e, "cannot build dead letters; the alerts stay undelivered");
                return Ok(());
            }
        };
        let bytes = match encode_parquet(&batch, DEAD_LETTER_COLUMNS, 3) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(sink = sink.name(), error = %e, "cannot encode dead letters; the alerts stay undelivered");
                return Ok(());
            }
        };
        let mut h = Sha256::new();
        for part in [
            b"sink-dead-letter".as_slice(),
            sink.name().as_bytes(),
            self.name.as_bytes(),
            &self.epoch.to_be_bytes(),
            &now.to_be_bytes(),
        ]
        .into_iter()
        .chain(dead.iter().map(|(o, _)| o.alert_id.as_bytes()))
        {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        let file_id = hex::encode(&h.finalize()[..16]);
        let object_key = layout::object_key(&self.tenant, Table::DeadLetter, hour, &file_id);
        let file = NewFile {
            file_id,
            tenant: self.tenant.clone(),
            table: Table::DeadLetter,
            object_key: object_key.clone(),
            min_time_micros: now,
            max_time_micros: now,
            row_count: dead.len() as u64,
            byte_size: bytes.len() as u64,
            schema_version: DEAD_LETTER_SCHEMA_VERSION,
            source: None,
        };
        let payload = PutPayload::from(bytes);
        let commit = ShardCommit {
            shard: self.shard.clone(),
            worker: self.shared.node_id,
            epoch: self.epoch,
            checkpoint: None,
        };
        let batch = CommitBatch {
            files: vec![file],
            checkpoints: Vec::new(),
        };
        let mut backoff = Duration::from_millis(100);
        let mut written = false;
        loop {
            let result = if written {
                Ok(())
            } else {
                self.shared
                    .store
                    .put(&ObjectPath::from(object_key.as_str()), payload.clone())
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("writing {object_key}: {e}"))
            };
            written = result.is_ok();
            let result: Result<(), String> = match result {
                Ok(()) => match self
                    .shared
                    .control
                    .commit_shard(&commit, Some(&batch))
                    .await
                {
                    Ok(_) => break,
                    Err(CatalogError::Conflict { reason }) => return Err(Halt::LeaseLost(reason)),
                    Err(e) => Err(format!("committing {object_key}: {e}")),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(shard = %self.name, sink = sink.name(), error = %e, "dead letters not committed yet; retrying");
            }
            if !pause(backoff, &self.stop).await {
                return Err(Halt::Stopped);
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        sink.stats
            .dead_letters
            .fetch_add(dead.len() as u64, Ordering::Relaxed);
        metrics::counter!("spoor_sink_dead_letters_total", "sink" => sink.name().to_string())
            .increment(dead.len() as u64);
        tracing::warn!(
            shard = %self.name,
            sink = sink.name(),
            alerts = dead.len(),
            error = dead.first().map_or("", |(_, e)| e.as_str()),
            "alerts not delivered after every attempt; written to dead_letter"
        );
        Ok(())
    }
}

/// `dead_letter` rows for alerts a sink refused, column by column after the
/// table's schema.
fn dead_letter_batch(
    now: i64,
    source: &str,
    dead: &[(&Outgoing, String)],
) -> Result<RecordBatch, String> {
    use spoor_common::schema::dead_letter_col as c;
    let schema = dead_letter_schema();
    let n = dead.len();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name().as_str();
        let array: ArrayRef = if name == c::TIME {
            let mut b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
            for _ in dead {
                b.append_value(now);
            }
            Arc::new(b.finish())
        } else if name == c::RAW {
            let mut b = BinaryBuilder::new();
            for (o, _) in dead {
                b.append_value(&o.body);
            }
            Arc::new(b.finish())
        } else if [c::SOURCE_TOPIC, c::ERROR, c::RAW_TEXT].contains(&name) {
            let mut b = StringBuilder::new();
            for (o, e) in dead {
                if name == c::SOURCE_TOPIC {
                    b.append_value(source);
                } else if name == c::ERROR {
                    b.append_value(e);
                } else {
                    b.append_value(String::from_utf8_lossy(&o.body));
                }
            }
            Arc::new(b.finish())
        } else if field.is_nullable() {
            new_null_array(field.data_type(), n)
        } else {
            return Err(format!("dead_letter column {name} has no value for a sink"));
        };
        columns.push(array);
    }
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn row() -> AlertRow {
        AlertRow {
            alert_id: "a1".into(),
            rule_id: "r1".into(),
            rule_version: "v".into(),
            rule_title: "T".into(),
            rule_level: Some("high".into()),
            rule_tags: vec!["attack.t1110".into()],
            rule_set: "auth".into(),
            rule_set_version: 2,
            rule_kind: RuleKind::Correlation,
            group_key: vec![("user".into(), "bob".into())],
            first_event_micros: 1_800_000_000_000_000,
            last_event_micros: 1_800_000_060_000_000,
            event_count: 3,
            value: Some(3.0),
            event_refs: vec![
                super::super::alerts::event_ref("f", 1, Some("edr"), Some(0), Some(7)),
                super::super::alerts::event_ref("f", 2, None, None, None),
            ],
            origin: "live".into(),
            shard: "acme/auth/0".into(),
            detected_at_micros: 1_800_000_061_000_000,
            ingested_micros: 0,
        }
    }

    #[test]
    fn payload_is_the_same_from_memory_and_from_the_file() {
        let a = row();
        let json = alert_json("acme", &a);
        assert_eq!(json["alert_id"], "a1");
        assert_eq!(json["tenant"], "acme");
        assert_eq!(json["group_key"]["user"], "bob");
        assert_eq!(json["event_refs"][0]["offset"], 7);
        assert_eq!(json["rule_tags"][0], "attack.t1110");
        assert_eq!(json["time"], "2027-01-15T08:01:00.000000Z");
        let batch = super::super::alerts::alert_batch(std::slice::from_ref(&a)).expect("batch");
        let back = rows_from_batch(&batch).expect("rows");
        assert_eq!(back.len(), 1);
        assert_eq!(alert_json("acme", &back[0]), json);
    }

    #[test]
    fn dead_letters_follow_the_table_schema() {
        let o = Outgoing {
            alert_id: "a1".into(),
            body: br#"{"alert_id":"a1"}"#.to_vec(),
            level: None,
            detected_at_micros: 0,
        };
        let batch = dead_letter_batch(5, "sink:w", &[(&o, "HTTP 503".into())]).expect("batch");
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.schema(), dead_letter_schema());
        encode_parquet(&batch, DEAD_LETTER_COLUMNS, 3).expect("encodes");
    }

    #[tokio::test]
    async fn backoff_doubles_up_to_the_limit() {
        let mut c = SinkConfig::new("w", SinkKind::Webhook);
        c.url = "http://127.0.0.1:9/".into();
        c.initial_backoff_ms = 100;
        c.max_backoff_ms = 350;
        let sinks = Sinks::new(&[c]).expect("sinks");
        let s = &sinks.sinks[0];
        let waits: Vec<u64> = (0..4).map(|r| s.backoff(r).as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
    }
}

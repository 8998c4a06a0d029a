//! Where generated events go: JSON lines to a file or standard output,
//! batches POSTed to a node's HTTP ingest, or a Kafka topic per source
//! type. Each output tells the manifest when an attack's last record was
//! sent and confirmed.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use serde_json::{Value, json};

use super::SourceKind;
use super::generator::GenEvent;
use super::manifest::Manifest;
use super::records::iso_micros;

fn now() -> i64 {
    spoor_common::time::now_micros()
}

/// One output.
pub(crate) enum Output {
    File(FileOut),
    Http(Box<HttpOut>),
    Kafka(Box<KafkaOut>),
}

impl Output {
    pub(crate) async fn push(
        &mut self,
        event: &GenEvent,
        tenants: &[String],
        manifest: &mut Manifest,
    ) -> anyhow::Result<()> {
        match self {
            Output::File(o) => o.push(event, tenants, manifest),
            Output::Http(o) => o.push(event, tenants, manifest).await,
            Output::Kafka(o) => o.push(event, tenants, manifest).await,
        }
    }

    /// Sends what has waited for `linger` by `deadline`.
    pub(crate) async fn flush_due(
        &mut self,
        deadline: Instant,
        tenants: &[String],
        manifest: &mut Manifest,
    ) -> anyhow::Result<()> {
        match self {
            Output::File(o) => o.flush(),
            Output::Http(o) => o.flush_due(deadline, tenants, manifest).await,
            Output::Kafka(o) => {
                o.collect(manifest);
                Ok(())
            }
        }
    }

    /// Sends everything and waits for it to be confirmed.
    pub(crate) async fn finish(
        &mut self,
        tenants: &[String],
        manifest: &mut Manifest,
    ) -> anyhow::Result<()> {
        match self {
            Output::File(o) => o.flush(),
            Output::Http(o) => o.flush_due(far_future(), tenants, manifest).await,
            Output::Kafka(o) => o.finish(manifest).await,
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// `--out`: one JSON object a line, `{"tenant", "source_type", "time",
/// "marker"?, "raw"}` (`raw` is the record as its source writes it).
pub(crate) struct FileOut {
    writer: std::io::BufWriter<Box<dyn Write + Send>>,
    name: String,
}

impl FileOut {
    pub(crate) fn open(path: &PathBuf) -> anyhow::Result<FileOut> {
        let (sink, name): (Box<dyn Write + Send>, String) = if path.as_os_str() == "-" {
            (Box::new(std::io::stdout()), "standard output".into())
        } else {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating --out {}", path.display()))?;
            (Box::new(file), path.display().to_string())
        };
        Ok(FileOut {
            writer: std::io::BufWriter::with_capacity(1 << 16, sink),
            name,
        })
    }

    fn push(
        &mut self,
        event: &GenEvent,
        tenants: &[String],
        manifest: &mut Manifest,
    ) -> anyhow::Result<()> {
        let line = envelope(event, tenants, manifest);
        writeln!(self.writer, "{line}").with_context(|| format!("writing {}", self.name))?;
        let d = manifest.delivery("out");
        d.events += 1;
        d.requests += 1;
        if event.last_of_attack
            && let Some(a) = event.attack
        {
            // Written is as confirmed as a file gets before it is flushed.
            self.writer
                .flush()
                .with_context(|| format!("writing {}", self.name))?;
            let t = now();
            manifest.sent(a, t);
            manifest.acked(a, t);
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.writer
            .flush()
            .with_context(|| format!("writing {}", self.name))
    }
}

/// An event as one `--out` line.
pub(crate) fn envelope(event: &GenEvent, tenants: &[String], manifest: &Manifest) -> Value {
    let mut line = json!({
        "tenant": tenants[event.tenant],
        "source_type": event.kind.name(),
        "time": iso_micros(event.time),
    });
    if let (Some(a), Value::Object(o)) = (event.attack, &mut line)
        && let Some(record) = manifest.attacks.get(a)
    {
        o.insert("marker".into(), json!(record.marker));
    }
    if let Value::Object(o) = &mut line {
        o.insert("raw".into(), json!(event.raw));
    }
    line
}

/// Settings of `--http`.
pub(crate) struct HttpSettings {
    pub(crate) urls: Vec<String>,
    pub(crate) token: Option<String>,
    pub(crate) client: reqwest::Client,
    pub(crate) source_prefix: String,
    pub(crate) tenant_header: String,
    pub(crate) batch: usize,
    pub(crate) linger: Duration,
}

/// Events of one tenant and source type waiting to be sent.
#[derive(Default)]
struct Buffer {
    body: String,
    events: u64,
    since: Option<Instant>,
    /// Attacks whose last record is in the body.
    attacks_ending: Vec<usize>,
}

/// `--http`: `POST {url}/v1/ingest/{prefix}-{source}?source_type={source}`
/// with the tenant in a header, per tenant and source type, in batches.
pub(crate) struct HttpOut {
    settings: HttpSettings,
    next_url: usize,
    buffers: BTreeMap<(usize, SourceKind), Buffer>,
    warned_dead: bool,
}

/// How long a refused (429, 503) or unreachable request is retried.
const HTTP_RETRY_FOR: Duration = Duration::from_secs(60);

impl HttpOut {
    pub(crate) fn new(settings: HttpSettings) -> HttpOut {
        HttpOut {
            settings,
            next_url: 0,
            buffers: BTreeMap::new(),
            warned_dead: false,
        }
    }

    async fn push(
        &mut self,
        event: &GenEvent,
        tenants: &[String],
        manifest: &mut Manifest,
    ) -> anyhow::Result<()> {
        let key = (event.tenant, event.kind);
        let buffer = self.buffers.entry(key).or_default();
        buffer.body.push_str(&event.raw);
        buffer.body.push('\n');
        buffer.events += 1;
        buffer.since.get_or_insert_with(Instant::now);
        if event.last_of_attack
            && let Some(a) = event.attack
        {
            buffer.attacks_ending.push(a);
        }
        if buffer.events as usize >= self.settings.batch {
            let buffer = std::mem::take(buffer);
            self.post(key, buffer, tenants, manifest).await?;
        }
        Ok(())
    }

    async fn flush_due(
        &mut self,
        deadline: Instant,
        tenants: &[String],
        manifest: &mut Manifest,
    ) -> anyhow::Result<()> {
        let due: Vec<(usize, SourceKind)> = self
            .buffers
            .iter()
            .filter(|(_, b)| {
                b.since
                    .is_some_and(|s| s + self.settings.linger <= deadline)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(buffer) = self.buffers.remove(&key) {
                self.post(key, buffer, tenants, manifest).await?;
            }
        }
        Ok(())
    }

    async fn post(
        &mut self,
        (tenant, kind): (usize, SourceKind),
        buffer: Buffer,
        tenants: &[String],
        manifest: &mut Manifest,
    ) -> anyhow::Result<()> {
        let tenant = &tenants[tenant];
        let sent = now();
        for a in &buffer.attacks_ending {
            manifest.sent(*a, sent);
        }
        let started = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            let base = &self.settings.urls[self.next_url % self.settings.urls.len()];
            let url = format!(
                "{}/v1/ingest/{}-{}?source_type={}",
                base.trim_end_matches('/'),
                self.settings.source_prefix,
                kind.name(),
                kind.name()
            );
            let mut request = self
                .settings
                .client
                .post(&url)
                .header(self.settings.tenant_header.as_str(), tenant.as_str())
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .body(buffer.body.clone());
            if let Some(token) = &self.settings.token {
                request = request.bearer_auth(token);
            }
            let retry_after = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    if status.is_success() {
                        return self.accepted(&url, tenant, &buffer, &body, manifest);
                    }
                    let message = body["error"]["message"].as_str().unwrap_or("no message");
                    if status == reqwest::StatusCode::TOO_MANY_REQUESTS
                        || status == reqwest::StatusCode::SERVICE_UNAVAILABLE
                    {
                        // Refused before anything was written: safe to send again.
                        Some((retry_after, format!("{url} answered {status}: {message}")))
                    } else {
                        bail!(
                            "{url} answered {status} for {} events of tenant {tenant}: {message}",
                            buffer.events
                        );
                    }
                }
                // Never reached the node: safe to send again, to the next URL.
                Err(e) if e.is_connect() => {
                    self.next_url += 1;
                    Some((None, format!("cannot reach {url}: {e}")))
                }
                Err(e) => bail!(
                    "sending {} events of tenant {tenant} to {url}: {e} (the node may or may not have committed them)",
                    buffer.events
                ),
            };
            if let Some((wait, why)) = retry_after {
                if started.elapsed() > HTTP_RETRY_FOR {
                    bail!("{why}; gave up after {HTTP_RETRY_FOR:?}");
                }
                manifest.delivery("http").retries += 1;
                tokio::time::sleep(wait.unwrap_or(backoff)).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }

    fn accepted(
        &mut self,
        url: &str,
        tenant: &str,
        buffer: &Buffer,
        body: &Value,
        manifest: &mut Manifest,
    ) -> anyhow::Result<()> {
        let accepted = body["accepted"].as_u64().unwrap_or(0);
        let dead = body["dead_lettered"].as_u64().unwrap_or(0);
        if accepted + dead != buffer.events {
            bail!(
                "{url} took {accepted} events and {dead} dead letters of the {} sent: {body}",
                buffer.events
            );
        }
        let acked = now();
        for a in &buffer.attacks_ending {
            manifest.acked(*a, acked);
        }
        let d = manifest.delivery("http");
        d.events += accepted;
        d.dead_lettered += dead;
        d.requests += 1;
        if dead > 0 && !self.warned_dead {
            self.warned_dead = true;
            eprintln!(
                "spoor gen: {url} made {dead} of {} events of tenant {tenant} dead letters: is the tenant \
                 registered, and is the source routed by the {} header (docs/sources.md, Generating data)?",
                buffer.events, self.settings.tenant_header
            );
        }
        Ok(())
    }
}

/// Settings of `--kafka`.
pub(crate) struct KafkaSettings {
    pub(crate) brokers: String,
    /// `{source}` and `{tenant}` are replaced.
    pub(crate) topic: String,
    pub(crate) tenant_header: String,
    pub(crate) properties: Vec<(String, String)>,
    pub(crate) batch: usize,
}

/// Deliveries of attack-ending records, confirmed in the background so
/// their time is the broker's answer, not when the run got round to it.
type Acks = Arc<Mutex<Vec<(usize, i64)>>>;

/// `--kafka`: one message per event to the topic of its source type (and
/// tenant, when the template names it), the tenant in a header.
pub(crate) struct KafkaOut {
    settings: KafkaSettings,
    producer: FutureProducer,
    pending: VecDeque<DeliveryFuture>,
    acks: Acks,
    ack_tasks: Vec<tokio::task::JoinHandle<Result<(), String>>>,
}

/// Deliveries awaited at most at once before the run waits for the oldest.
const KAFKA_IN_FLIGHT: usize = 50_000;

impl KafkaOut {
    pub(crate) fn new(settings: KafkaSettings) -> anyhow::Result<KafkaOut> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &settings.brokers)
            // Retries must not duplicate: the manifest's counts are exact.
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000")
            .set("batch.num.messages", settings.batch.max(1).to_string());
        for (k, v) in &settings.properties {
            config.set(k, v);
        }
        let producer: FutureProducer = config
            .create()
            .with_context(|| format!("creating a Kafka producer for {}", settings.brokers))?;
        Ok(KafkaOut {
            settings,
            producer,
            pending: VecDeque::new(),
            acks: Arc::default(),
            ack_tasks: Vec::new(),
        })
    }

    fn topic(&self, tenant: &str, kind: SourceKind) -> String {
        self.settings
            .topic
            .replace("{source}", kind.name())
            .replace("{tenant}", tenant)
    }

    async fn push(
        &mut self,
        event: &GenEvent,
        tenants: &[String],
        manifest: &mut Manifest,
    ) -> anyhow::Result<()> {
        let tenant = &tenants[event.tenant];
        let topic = self.topic(tenant, event.kind);
        // An attack's records share a key, so they stay in order in one partition.
        let key = event
            .attack
            .and_then(|a| manifest.attacks.get(a))
            .map(|a| a.marker.clone());
        let headers = OwnedHeaders::new().insert(Header {
            key: &self.settings.tenant_header,
            value: Some(tenant.as_bytes()),
        });
        let delivery = loop {
            let mut record = FutureRecord::to(&topic)
                .payload(event.raw.as_bytes())
                .headers(headers.clone());
            if let Some(k) = &key {
                record = record.key(k.as_str());
            }
            match self.producer.send_result(record) {
                Ok(d) => break d,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => {
                    // The local queue is full: wait for the oldest delivery.
                    match self.pending.pop_front() {
                        Some(oldest) => confirm(oldest, &topic).await?,
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((e, _)) => bail!("producing to {topic}: {e}"),
            }
        };
        manifest.delivery("kafka").requests += 1;
        match event.attack.filter(|_| event.last_of_attack) {
            Some(a) => {
                manifest.sent(a, now());
                let acks = self.acks.clone();
                self.ack_tasks.push(tokio::spawn(async move {
                    confirm(delivery, "").await.map_err(|e| e.to_string())?;
                    acks.lock().map_err(|e| e.to_string())?.push((a, now()));
                    Ok(())
                }));
                manifest.delivery("kafka").events += 1;
            }
            None => self.pending.push_back(delivery),
        }
        while self.pending.len() > KAFKA_IN_FLIGHT {
            if let Some(oldest) = self.pending.pop_front() {
                confirm(oldest, &topic).await?;
                manifest.delivery("kafka").events += 1;
            }
        }
        self.collect(manifest);
        Ok(())
    }

    /// Moves background confirmations into the manifest.
    fn collect(&mut self, manifest: &mut Manifest) {
        let acks: Vec<(usize, i64)> = match self.acks.lock() {
            Ok(mut a) => std::mem::take(&mut *a),
            Err(_) => Vec::new(),
        };
        for (a, t) in acks {
            manifest.acked(a, t);
        }
    }

    async fn finish(&mut self, manifest: &mut Manifest) -> anyhow::Result<()> {
        while let Some(d) = self.pending.pop_front() {
            confirm(d, "").await?;
            manifest.delivery("kafka").events += 1;
        }
        for task in self.ack_tasks.drain(..) {
            task.await
                .map_err(|e| anyhow!("waiting for a delivery: {e}"))?
                .map_err(|e| anyhow!(e))?;
        }
        self.collect(manifest);
        Ok(())
    }
}

/// Waits for one delivery; an error names the broker's reason.
async fn confirm(delivery: DeliveryFuture, topic: &str) -> anyhow::Result<()> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => bail!(
            "the broker did not take a message{}: {e}",
            if topic.is_empty() {
                String::new()
            } else {
                format!(" for {topic}")
            }
        ),
        Err(_) => bail!("the producer dropped a message before delivering it"),
    }
}

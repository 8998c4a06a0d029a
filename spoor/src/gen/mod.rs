//! `spoor gen`: realistic, mixed security events for chosen tenants at a
//! chosen rate, with seeded attack scenarios that the rule pack in
//! `deploy/rules` detects, and a manifest of exactly what was produced and
//! which alerts it must raise (docs/sources.md, "Generating data").

mod benign;
mod generator;
mod manifest;
mod output;
mod records;
mod rng;
mod scenarios;
mod world;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use generator::{Clock, Generator, Plan, Schedule};
use manifest::Manifest;
use output::{FileOut, HttpOut, HttpSettings, KafkaOut, KafkaSettings, Output};
use scenarios::Scenario;

/// A source type the generator writes (the ingest parser that reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub(crate) enum SourceKind {
    /// Windows event logs as Winlogbeat JSON: Sysmon 1 and 3, Security
    /// 4624/4625/4634, System 7045.
    Windows,
    /// Zeek conn and dns logs, JSON.
    Zeek,
    /// Linux sshd, PAM, sudo and cron messages, RFC 5424.
    Syslog,
    /// Palo Alto firewall TRAFFIC logs, CEF.
    Cef,
}

impl SourceKind {
    pub(crate) const ALL: [SourceKind; 4] = [
        SourceKind::Windows,
        SourceKind::Zeek,
        SourceKind::Syslog,
        SourceKind::Cef,
    ];

    /// Its ingest `source_type`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SourceKind::Windows => "windows",
            SourceKind::Zeek => "zeek",
            SourceKind::Syslog => "syslog",
            SourceKind::Cef => "cef",
        }
    }
}

/// Options of `spoor gen`.
#[derive(Debug, clap::Args)]
pub(crate) struct GenArgs {
    /// Tenants the events are spread over, each with an optional weight:
    /// `acme,globex:3` (globex gets three times acme's share).
    #[arg(long, value_delimiter = ',', default_value = "default")]
    tenants: Vec<String>,
    /// Events per second, paced with a token bucket; 0 = as fast as the
    /// outputs take them. Otherwise at least 1, so that an attack's
    /// records stay within its rules' time windows.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Stop after this many events (attacks included).
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this many seconds (an attack under way is finished).
    /// Without `--count` or `--duration`, run until Ctrl-C.
    #[arg(long)]
    duration: Option<f64>,
    /// Seed of everything random: the same seed and options give the same
    /// events (and with `--start`, the same times).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Event times from a virtual clock starting here (RFC 3339) and
    /// advancing 1/rate seconds an event (1 ms with `--rate 0`), instead of
    /// the wall clock: a reproducible data set. Times more than a day
    /// ahead of the ingest time are replaced by ingest.
    #[arg(long)]
    start: Option<String>,
    /// An attack every N events (counting the attacks' own); 0 = none.
    /// Attacks go round the tenants, and for each tenant round the
    /// scenarios.
    #[arg(long, default_value_t = 1000, conflicts_with = "attacks")]
    attack_every: u64,
    /// Exactly K attacks, spread evenly over `--count` events (instead of
    /// `--attack-every`).
    #[arg(long, requires = "count")]
    attacks: Option<u64>,
    /// Attack scenarios to use (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Source types to produce (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    sources: Vec<SourceKind>,
    /// Write the events as JSON lines to a file, or `-` for standard
    /// output: `{"tenant", "source_type", "time", "marker"?, "raw"}`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// POST the events to a node's HTTP ingest (several URLs, comma
    /// separated: batches go to the next one when one is unreachable):
    /// `{url}/v1/ingest/{http-source}-{source type}?source_type={source type}`
    /// with the tenant in the `--tenant-header` header.
    #[arg(long, value_delimiter = ',')]
    http: Vec<String>,
    /// The HTTP source name's prefix (the source is `<prefix>-<source type>`,
    /// its ingest topic `http:<prefix>-<source type>`).
    #[arg(long, default_value = "spoor-gen")]
    http_source: String,
    /// The header carrying the tenant, on HTTP requests and Kafka messages
    /// (`tenant_header` of the `[[ingest.sources]]` entry routing them).
    #[arg(long, default_value = "x-spoor-tenant")]
    tenant_header: String,
    /// An ingest token (needed with `ingest.http_auth = "token"`). A
    /// token of one tenant puts every event in that tenant, whatever the
    /// header says: use an admin token to send for several tenants.
    #[arg(long, env = "SPOOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    tls: crate::tls_cli::TlsArgs,
    /// Produce the events to Kafka at these brokers (`host:port,…`).
    #[arg(long, requires = "topic")]
    kafka: Option<String>,
    /// The Kafka topic, with `{source}` replaced by the source type and
    /// `{tenant}` by the tenant: `spoor-gen-{source}`. Without `{source}`
    /// only one `--sources` may be given (a topic has one parser).
    #[arg(long)]
    topic: Option<String>,
    /// A librdkafka producer property (`key=value`, repeatable), such as
    /// `enable.idempotence=false` for a broker without idempotent producers.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    kafka_properties: Vec<String>,
    /// Events per HTTP request (per tenant and source type) and per Kafka
    /// producer batch.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Longest an event waits in an HTTP batch before it is sent, in ms.
    #[arg(long, default_value_t = 200)]
    linger_ms: u64,
    /// Write the manifest (JSON) here at the end: events per tenant and
    /// source type, every attack with its marker and expected alerts.
    #[arg(long)]
    manifest: Option<PathBuf>,
}

/// Runs `spoor gen`.
pub(crate) fn run(args: GenArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("spoor gen: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let setup = match runtime.block_on(async { setup(&args) }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("spoor gen: {e:#}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(generate(&args, setup))
}

/// Everything checked and opened before the first event.
struct Setup {
    tenants: Vec<String>,
    plan: Plan,
    outputs: Vec<Output>,
}

/// `name[:weight]`.
fn parse_tenant(spec: &str) -> anyhow::Result<(String, u64)> {
    let (name, weight) = match spec.split_once(':') {
        Some((n, w)) => (
            n,
            w.parse::<u64>().with_context(|| {
                format!("--tenants {spec}: the weight {w:?} is not a whole number")
            })?,
        ),
        None => (spec, 1),
    };
    spoor_common::tenant::TenantId::new(name.to_string())
        .map_err(|e| anyhow::anyhow!("--tenants {spec}: {e}"))?;
    Ok((name.to_string(), weight))
}

fn setup(args: &GenArgs) -> anyhow::Result<Setup> {
    let tenants = args
        .tenants
        .iter()
        .map(|t| parse_tenant(t.trim()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut names: Vec<&str> = tenants.iter().map(|(t, _)| t.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        bail!("--tenants names a tenant twice");
    }
    if !(args.rate == 0.0 || (args.rate >= 1.0 && args.rate.is_finite())) {
        bail!(
            "--rate {} must be 0 (as fast as possible) or at least 1 event a second",
            args.rate
        );
    }
    let sources = if args.sources.is_empty() {
        SourceKind::ALL.to_vec()
    } else {
        dedup(args.sources.clone())
    };
    let scenarios = if args.scenarios.is_empty() {
        Scenario::ALL
            .iter()
            .copied()
            .filter(|s| sources.contains(&s.source()))
            .collect()
    } else {
        dedup(args.scenarios.clone())
    };
    let longest = scenarios.iter().map(|s| s.len() as u64).max().unwrap_or(0);
    let schedule = match (args.attacks, args.count) {
        (Some(k), Some(count)) => {
            Schedule::spread(k, count, longest).map_err(anyhow::Error::msg)?
        }
        (Some(_), None) => bail!("--attacks needs --count"),
        (None, _) if args.attack_every == 0 => Schedule::Never,
        (None, _) => Schedule::Every(args.attack_every),
    };
    let clock = match &args.start {
        None => Clock::Wall,
        Some(s) => Clock::Virtual {
            start: spoor_ingest::parse::draft::parse_time_str(s)
                .with_context(|| format!("--start {s:?} is not an RFC 3339 time"))?,
            step_micros: if args.rate > 0.0 {
                1e6 / args.rate
            } else {
                1_000.0
            },
        },
    };
    let plan = Plan {
        seed: args.seed,
        tenants: tenants.clone(),
        sources: sources.clone(),
        scenarios,
        schedule,
        count: args.count,
        clock,
    };
    // Checked here, before any output is opened.
    Generator::new(plan.clone()).map_err(anyhow::Error::msg)?;
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let mut outputs = Vec::new();
    if let Some(path) = &args.out {
        outputs.push(Output::File(FileOut::open(path)?));
    }
    if !args.http.is_empty() {
        outputs.push(Output::Http(Box::new(HttpOut::new(HttpSettings {
            urls: args.http.iter().map(|u| u.trim().to_string()).collect(),
            token: args.token.clone(),
            client: args.tls.http_client().map_err(anyhow::Error::msg)?,
            source_prefix: args.http_source.clone(),
            tenant_header: args.tenant_header.clone(),
            batch: args.batch,
            linger: Duration::from_millis(args.linger_ms),
        }))));
    }
    if let Some(brokers) = &args.kafka {
        let topic = args.topic.clone().unwrap_or_default();
        if !topic.contains("{source}") && sources.len() > 1 {
            bail!(
                "--topic {topic:?} has no {{source}}: each source type needs its own topic (its own parser); \
                 add {{source}} or give one --sources"
            );
        }
        let properties = args
            .kafka_properties
            .iter()
            .map(|p| {
                p.split_once('=')
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .with_context(|| format!("--kafka-property {p:?} is not key=value"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        outputs.push(Output::Kafka(Box::new(KafkaOut::new(KafkaSettings {
            brokers: brokers.clone(),
            topic,
            tenant_header: args.tenant_header.clone(),
            properties,
            batch: args.batch,
        })?)));
    }
    if outputs.is_empty() {
        bail!("no output: give --out FILE|-, --http URL or --kafka BROKERS --topic T");
    }
    Ok(Setup {
        tenants: tenants.into_iter().map(|(t, _)| t).collect(),
        plan,
        outputs,
    })
}

fn dedup<T: Ord + Copy>(mut v: Vec<T>) -> Vec<T> {
    let mut seen = Vec::new();
    v.retain(|x| {
        if seen.contains(x) {
            false
        } else {
            seen.push(*x);
            true
        }
    });
    v
}

/// A token bucket: `rate` tokens a second, holding at most `burst`.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        // 50 ms of events may go at once, so high rates do not sleep per event.
        let burst = (rate / 20.0).max(1.0);
        Bucket {
            rate,
            burst,
            tokens: 1.0,
            last: Instant::now(),
        }
    }

    /// How long until a token is free.
    fn wait(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    fn take(&mut self) {
        self.tokens -= 1.0;
    }
}

fn options_json(args: &GenArgs, setup: &Setup) -> serde_json::Value {
    json!({
        "tenants": setup.plan.tenants.iter().map(|(t, w)| json!({"tenant": t, "weight": w})).collect::<Vec<_>>(),
        "sources": setup.plan.sources.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "scenarios": setup.plan.scenarios.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "rate": args.rate,
        "count": args.count,
        "duration_secs": args.duration,
        "start": args.start,
        "attack_every": if args.attacks.is_some() { None } else { Some(args.attack_every) },
        "attacks": args.attacks,
        "http": args.http,
        "http_source": args.http_source,
        "tenant_header": args.tenant_header,
        "kafka": args.kafka,
        "topic": args.topic,
        "batch": args.batch,
    })
}

async fn generate(args: &GenArgs, mut setup: Setup) -> ExitCode {
    let started = spoor_common::time::now_micros();
    let mut manifest = Manifest::new(
        args.seed,
        &setup.tenants,
        options_json(args, &setup),
        started,
    );
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::SeqCst);
            }
        });
    }
    let result = produce(args, &mut setup, &mut manifest, &stop).await;
    manifest.interrupted = stop.load(Ordering::SeqCst);
    manifest.finished_at = Some(records::iso_micros(spoor_common::time::now_micros()));
    let mut code = ExitCode::SUCCESS;
    match &result {
        Ok(()) => manifest.complete = true,
        Err(e) => {
            eprintln!("spoor gen: {e:#}");
            manifest.error = Some(format!("{e:#}"));
            code = ExitCode::FAILURE;
        }
    }
    let dead: u64 = manifest.delivery.values().map(|d| d.dead_lettered).sum();
    eprintln!(
        "spoor gen: {} events ({}), {} attacks, {dead} dead-lettered by the node",
        manifest.events,
        manifest
            .tenants
            .iter()
            .map(|(t, n)| format!("{t} {}", n.events))
            .collect::<Vec<_>>()
            .join(", "),
        manifest.attacks.len(),
    );
    if dead > 0 && result.is_ok() {
        code = ExitCode::FAILURE;
    }
    if let Some(path) = &args.manifest {
        let text = match serde_json::to_string_pretty(&manifest) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("spoor gen: encoding the manifest: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("spoor gen: writing the manifest {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    code
}

async fn produce(
    args: &GenArgs,
    setup: &mut Setup,
    manifest: &mut Manifest,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut generator = Generator::new(setup.plan.clone()).map_err(anyhow::Error::msg)?;
    let tenants = setup.tenants.clone();
    let outputs = &mut setup.outputs;
    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d.max(0.0)));
    let mut bucket = (args.rate > 0.0).then(|| Bucket::new(args.rate));
    let mut last_report = Instant::now();
    let began = Instant::now();
    loop {
        let ending = stop.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d);
        // An attack under way is finished, so the manifest holds whole attacks.
        if ending && !generator.in_attack() {
            break;
        }
        if let Some(bucket) = &mut bucket {
            loop {
                let wait = bucket.wait(Instant::now());
                if wait.is_zero() {
                    break;
                }
                for o in outputs.iter_mut() {
                    o.flush_due(Instant::now() + wait, &tenants, manifest)
                        .await?;
                }
                tokio::time::sleep(wait).await;
            }
            bucket.take();
        }
        let Some(event) = generator.next_event(spoor_common::time::now_micros()) else {
            break;
        };
        manifest.record(&tenants[event.tenant], &event, &generator.attacks);
        for o in outputs.iter_mut() {
            o.push(&event, &tenants, manifest).await?;
            o.flush_due(Instant::now(), &tenants, manifest).await?;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "spoor gen: {} events, {} attacks, {:.0} events/s",
                generator.produced(),
                generator.attacks.len(),
                generator.produced() as f64 / began.elapsed().as_secs_f64().max(1e-9)
            );
        }
    }
    for o in outputs.iter_mut() {
        o.finish(&tenants, manifest).await?;
    }
    Ok(())
}

//! Detection latency from Kafka produce to alert committed, and evaluation
//! throughput from 1 to 2 correlation workers, on a local cluster: the
//! release `spoor` binary (`spoor standalone`: coordinator, ingest, query
//! and a worker; plus a `spoor worker` process for the 2-worker runs) and a
//! loopback tansu broker (in-memory storage). Every process shares one lake
//! folder (`storage.url`); the worker reaches the standalone's catalog
//! through `catalog.endpoint`.
//!
//! **Latency** (`latency1`: the standalone alone; `latency2`: the standalone
//! and one `spoor worker`), default ingest and worker settings (flush every
//! 1 s, shards poll the catalog every 200 ms). A rule set of 2 buckets (so
//! each of 2 workers holds one shard) with a one-event rule matching
//! `bench_kind: probe` and an `event_count` correlation (`gte: 2`, grouped
//! by `bench_pair`) over a second one-event rule matching `bench_kind:
//! pair`. Background traffic: `LATENCY_BENCH_RATE` plain JSON events per
//! second that match nothing, spread over the topic's partitions. Every
//! `LATENCY_BENCH_PROBE_MS` a probe event with a unique marker is produced;
//! every fifth tick starts a pair, whose second event follows one tick
//! later. The producer's delivery report gives each probe's Kafka position;
//! a poller runs `SELECT … FROM alerts` over `/v1/query` every
//! `LATENCY_BENCH_POLL_MS` (time-bounded to the oldest probe not yet seen,
//! so it reads only recent alert files) and notes when an alert naming that
//! position first becomes visible. Latency = first visible − the moment the
//! bench handed the event to the producer; the poll interval bounds the
//! error (the alert was committed at most one poll interval, plus the
//! query's own time, earlier). A pair's latency counts from its second
//! event. Probes are sent for a warm-up (until the first alert is seen and
//! at least 5 s) before `LATENCY_BENCH_SECONDS` of measured probes, then
//! the bench waits up to 30 s for the stragglers (any still missing are
//! reported). Each measured probe is split into three legs from the
//! `events` row (`ingest_time`: when ingest decoded it) and the alert's
//! `detected_at` (the worker's wall clock just before it writes and commits
//! the alert): produce → ingest decoded it (Kafka), → alert raised (the
//! flush interval, the events file's catalog commit, the shard's poll,
//! reading and evaluating the file), → alert visible (alert file write,
//! Raft commit, the poll).
//!
//! **Evaluation scaling** (`scale1x1`: 1 worker, 1 bucket; `scale1x2`:
//! 1 worker, 2 buckets; `scale2x2`: 2 workers, 2 buckets, one shard each):
//! the SigmaHQ Windows rules (`../shared/corpus/sigma/rules/windows`, every
//! folder but `driver_load`, whose hash lists would take the rule set over
//! the 4 MiB a rule set may hold; or `LATENCY_BENCH_RULES`) applied
//! *disabled* before any event, so the shards are defined at catalog
//! sequence 0; then `LATENCY_BENCH_BACKLOG` events of
//! `../shared/corpus/events/otrf-windows` (repeated in order) are produced
//! and ingested (flush every `LATENCY_BENCH_BACKLOG_FLUSH_MS`, so the
//! backlog is many files, as a steady stream makes them); once the catalog
//! holds them all, the rule set is applied again enabled and every shard
//! starts on the whole backlog. Shards without correlation rules evaluate
//! only their bucket's events, so buckets split the work. Timed per shard
//! from its `shard started` log line (after the rule set is compiled) to
//! the first `/metrics` sample (every 50 ms) where its
//! `spoor_worker_events_total` reached its final value; the scenario's
//! rate is the backlog over the span from the first start to the last
//! finish. The throughput runs set `worker.rules_refresh_ms=1000` (default
//! 5000) so that the shards pick the enabled rule set up within a second of
//! each other.
//!
//! The machine has 2 cores: one worker with 2 shards already evaluates on
//! both (each shard evaluates on its own blocking thread), so `scale2x2`
//! against `scale1x2` can show the cost or gain of spreading shards over
//! processes, not the gain of adding a machine; `scale1x2` against
//! `scale1x1` shows what a second shard gets from the second core.
//!
//! Run: `cargo bench -p spoor-benches --bench detection_latency` (about 5
//! minutes). It builds the release `spoor` binary first (or uses
//! `LATENCY_BENCH_SPOOR_BIN`). Knobs: `LATENCY_BENCH_SECONDS` (measured
//! probing per latency run, default 40), `LATENCY_BENCH_RATE` (background
//! events/s, 2000), `LATENCY_BENCH_PROBE_MS` (200), `LATENCY_BENCH_POLL_MS`
//! (50), `LATENCY_BENCH_PARTITIONS` (partitions of the latency runs'
//! topics, 2; the backlog topics have 4),
//! `LATENCY_BENCH_BACKLOG` (events of the scaling runs, 200,000),
//! `LATENCY_BENCH_BACKLOG_FLUSH_MS` (250), `LATENCY_BENCH_RULES` (a rule
//! folder for the scaling runs), `LATENCY_BENCH_ONLY` (a comma-separated
//! subset of `latency1`, `latency2`, `scale1x1`, `scale1x2`, `scale2x2`),
//! `LATENCY_BENCH_SETS` (extra whitespace-separated `key=value` overrides
//! passed to every spoor process as `--set`),
//! `LATENCY_BENCH_KAFKA_PROPERTIES` (librdkafka properties of Spoor's
//! consumer, `k=v,k=v`; default `fetch.wait.max.ms=100`, see
//! [`DEFAULT_KAFKA_PROPERTIES`]), `TANSU_BIN`. (Not `SPOOR_*`: spoor reads
//! those as configuration.)

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde_json::{Value, json};

mod support;
use support::cluster::{Node, lake_sets, report_slow_stops, slow_stops};
use support::{
    Broker, Deliveries, corpus, env_choices, env_kafka_properties, env_number, http_get,
    http_get_json, http_post_json, kafka_properties_toml, load_average, load_corpus, metric,
    release_spoor_binary, report_line,
};

/// librdkafka properties of Spoor's consumer unless
/// `LATENCY_BENCH_KAFKA_PROPERTIES` says otherwise. tansu 0.6 holds every
/// fetch for the consumer's whole `fetch.wait.max.ms` (500 ms by default)
/// even when it has data to return, where a Kafka broker answers as soon as
/// data is waiting; 100 ms keeps that broker artefact under 100 ms of the
/// Kafka leg without the busy fetch loop of 0 on an idle topic.
const DEFAULT_KAFKA_PROPERTIES: &str = "fetch.wait.max.ms=100";
/// The tenant everything is ingested into and every rule set is applied to.
const TENANT: &str = "default";
/// How long a run may wait for anything (start-up, shards, ingest, drain).
const WAIT: Duration = Duration::from_secs(180);
/// Partitions of the scaling runs' backlog topics: tansu answers a fetch
/// only after the consumer's whole wait, with at most 1 MiB per partition
/// (librdkafka's `max.partition.fetch.bytes`), so partitions set how fast
/// the backlog is ingested (it is not timed).
const BACKLOG_PARTITIONS: i32 = 4;
/// How often the scaling runs read `/metrics`.
const METRICS_POLL: Duration = Duration::from_millis(50);
/// The anchors: Microsoft Sentinel's near-real-time rules run once a
/// minute; Elastic Security's rules default to every 5 minutes.
const ANCHORS: [(&str, f64); 2] = [
    ("Sentinel NRT rule schedule", 60.0),
    ("Elastic Security default rule interval", 300.0),
];

const PROBE_RULE: &str = "5b0e1f1e-7c4a-4d35-9f0e-0000000be001";
const PAIR_RULE: &str = "5b0e1f1e-7c4a-4d35-9f0e-0000000be002";
const CORRELATION_RULE: &str = "5b0e1f1e-7c4a-4d35-9f0e-0000000be003";

fn latency_rules() -> String {
    format!(
        r#"title: Bench probe
id: {PROBE_RULE}
status: test
logsource:
    product: spoorbench
detection:
    selection:
        bench_kind: probe
    condition: selection
level: high
---
title: Bench pair member
id: {PAIR_RULE}
status: test
logsource:
    product: spoorbench
detection:
    selection:
        bench_kind: pair
    condition: selection
level: informational
---
title: Bench pair
id: {CORRELATION_RULE}
status: test
correlation:
    type: event_count
    rules:
        - {PAIR_RULE}
    group-by:
        - bench_pair
    timespan: 1m
    condition:
        gte: 2
level: high
"#
    )
}

fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    let bin = release_spoor_binary("LATENCY_BENCH_SPOOR_BIN")?;
    let work = tempfile::Builder::new()
        .prefix("spoor-latency-bench")
        .tempdir()
        .context("temporary folder")?;
    let broker = Broker::start()?;
    println!("spoor: {}", bin.display());
    println!(
        "machine: {} CPUs, load average before the runs {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );

    let mut latencies = Vec::new();
    for (scenario, workers) in [(Scenario::Latency1, 1), (Scenario::Latency2, 2)] {
        if settings.only.contains(&scenario) {
            latencies.push(run_latency(&bin, &broker, &settings, work.path(), workers)?);
        }
    }
    let mut scaling = Vec::new();
    let corpus = if [Scenario::Scale1x1, Scenario::Scale1x2, Scenario::Scale2x2]
        .iter()
        .any(|s| settings.only.contains(s))
    {
        load_corpus()?
    } else {
        Vec::new()
    };
    for (scenario, workers, buckets) in [
        (Scenario::Scale1x1, 1, 1),
        (Scenario::Scale1x2, 1, 2),
        (Scenario::Scale2x2, 2, 2),
    ] {
        if settings.only.contains(&scenario) {
            scaling.push(run_scaling(
                &bin,
                &broker,
                &settings,
                work.path(),
                &corpus,
                workers,
                buckets,
            )?);
        }
    }
    report(&settings, &latencies, &scaling);
    let missing: usize = latencies.iter().map(|l| l.missing()).sum();
    if missing > 0 {
        bail!("{missing} probe alerts never became visible");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Latency1,
    Latency2,
    Scale1x1,
    Scale1x2,
    Scale2x2,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::Latency1,
        Scenario::Latency2,
        Scenario::Scale1x1,
        Scenario::Scale1x2,
        Scenario::Scale2x2,
    ];

    fn key(self) -> &'static str {
        match self {
            Scenario::Latency1 => "latency1",
            Scenario::Latency2 => "latency2",
            Scenario::Scale1x1 => "scale1x1",
            Scenario::Scale1x2 => "scale1x2",
            Scenario::Scale2x2 => "scale2x2",
        }
    }
}

/// Sizes and knobs, from the environment.
struct Settings {
    seconds: u64,
    rate: u64,
    probe_ms: u64,
    poll_ms: u64,
    partitions: i32,
    backlog: usize,
    backlog_flush_ms: u64,
    rules: Option<PathBuf>,
    only: Vec<Scenario>,
    extra_sets: Vec<String>,
    kafka_properties: Vec<(String, String)>,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let settings = Settings {
            seconds: env_number("LATENCY_BENCH_SECONDS", 40)?,
            rate: env_number("LATENCY_BENCH_RATE", 2000)?,
            probe_ms: env_number("LATENCY_BENCH_PROBE_MS", 200)?,
            poll_ms: env_number("LATENCY_BENCH_POLL_MS", 50)?,
            partitions: env_number("LATENCY_BENCH_PARTITIONS", 2)?,
            backlog: env_number("LATENCY_BENCH_BACKLOG", 200_000)?,
            backlog_flush_ms: env_number("LATENCY_BENCH_BACKLOG_FLUSH_MS", 250)?,
            rules: std::env::var("LATENCY_BENCH_RULES").ok().map(PathBuf::from),
            only: env_choices("LATENCY_BENCH_ONLY", &Scenario::ALL, Scenario::key)?,
            extra_sets: std::env::var("LATENCY_BENCH_SETS")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            kafka_properties: env_kafka_properties(
                "LATENCY_BENCH_KAFKA_PROPERTIES",
                DEFAULT_KAFKA_PROPERTIES,
            )?,
        };
        if settings.seconds == 0
            || settings.probe_ms == 0
            || settings.poll_ms == 0
            || settings.partitions < 1
            || settings.backlog == 0
            || settings.backlog_flush_ms == 0
        {
            bail!(
                "LATENCY_BENCH_SECONDS, _PROBE_MS, _POLL_MS, _PARTITIONS, _BACKLOG and \
                 _BACKLOG_FLUSH_MS must be > 0"
            );
        }
        Ok(settings)
    }
}

// ---------------------------------------------------------------------------
// Latency

/// What a tagged event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Probe,
    PairFirst,
    PairSecond,
}

/// A probe or pair event, from the producer's side.
#[derive(Debug, Clone)]
struct Tagged {
    kind: Kind,
    /// Sent after the warm-up: counted.
    measured: bool,
    sent: Instant,
    sent_micros: i64,
    /// Kafka position from the delivery report.
    position: Option<(i32, i64)>,
}

/// An alert row as first seen by the poller.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    at_micros: i64,
    detected_micros: i64,
    shard: String,
}

/// Alerts seen, by (is correlation, partition, offset of a referenced event).
type SeenMap = HashMap<(bool, i32, i64), Seen>;

/// One latency run's results.
struct LatencyRun {
    workers: usize,
    /// Seconds from produce to visible, per measured probe (detection).
    probes: Vec<f64>,
    /// The same for the correlation pairs, from the second event.
    pairs: Vec<f64>,
    missing_probes: usize,
    missing_pairs: usize,
    /// Per shard holder (node id): probe latencies.
    by_holder: BTreeMap<u64, Vec<f64>>,
    /// The three legs of each measured probe, seconds.
    kafka: Vec<f64>,
    raised: Vec<f64>,
    visible: Vec<f64>,
    sent_background: u64,
    polls: u64,
    poll_seconds: f64,
}

impl LatencyRun {
    fn missing(&self) -> usize {
        self.missing_probes + self.missing_pairs
    }
}

fn run_latency(
    bin: &Path,
    broker: &Broker,
    settings: &Settings,
    work: &Path,
    workers: usize,
) -> Result<LatencyRun> {
    let label = format!("latency{workers}");
    eprintln!("== {label}: {workers} worker(s), 2 buckets");
    let topic = format!("bench-{label}");
    broker.create_topic_blocking(&topic, settings.partitions)?;
    let dir = work.join(&label);
    let lake = dir.join("lake");
    std::fs::create_dir_all(&lake).context("lake folder")?;
    let standalone = Node::standalone(bin, broker, &dir, &lake, settings, &topic, "json", &[])?;
    let worker = if workers > 1 {
        Some(Node::worker(bin, &dir, &lake, settings, &standalone, 2)?)
    } else {
        None
    };
    let rules = dir.join("latency");
    std::fs::create_dir_all(&rules)?;
    std::fs::write(rules.join("latency.yml"), latency_rules())?;
    apply_rules(bin, &standalone, &[rules], "latency", 2, false)?;
    let holders = wait_for_holders(&standalone, "latency", |h| {
        h.len() == 2
            && if workers > 1 {
                h.values().filter(|&&n| n == 1).count() == 1
                    && h.values().filter(|&&n| n == 2).count() == 1
            } else {
                h.values().all(|&n| n == 1)
            }
    })?;
    eprintln!("shards held: {holders:?}");

    // The producer: background traffic on its own thread, tagged events
    // from this one.
    let tags: Arc<Mutex<Vec<Tagged>>> = Arc::new(Mutex::new(Vec::new()));
    let producer = Arc::new(broker.producer(tags.clone(), "5")?);
    let stop_background = Arc::new(AtomicBool::new(false));
    let background = {
        let (producer, stop, topic, rate) = (
            producer.clone(),
            stop_background.clone(),
            topic.clone(),
            settings.rate,
        );
        std::thread::spawn(move || background_traffic(&producer, &topic, rate, &stop))
    };

    // The poller.
    let seen: Arc<Mutex<SeenMap>> = Arc::new(Mutex::new(HashMap::new()));
    let stop_poller = Arc::new(AtomicBool::new(false));
    let poller = {
        let (http, tags, seen, stop, every) = (
            standalone.http.clone(),
            tags.clone(),
            seen.clone(),
            stop_poller.clone(),
            Duration::from_millis(settings.poll_ms),
        );
        std::thread::spawn(move || poll_alerts(&http, &tags, &seen, &stop, every))
    };

    let result = (|| -> Result<LatencyRun> {
        let period = Duration::from_millis(settings.probe_ms);
        let start = Instant::now();
        let mut tick: u64 = 0;
        let mut pair: u64 = 0;
        let mut warm_until: Option<Instant> = None;
        let mut measure_until: Option<Instant> = None;
        let mut measured_from_micros = 0;
        loop {
            let due = start + period * u32::try_from(tick).unwrap_or(u32::MAX);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let now = Instant::now();
            // Warm-up until the first alert is visible, plus 5 s.
            if warm_until.is_none() && !seen.lock().map_err(|_| anyhow!("poisoned"))?.is_empty() {
                warm_until = Some(now + Duration::from_secs(5));
            }
            if measure_until.is_none() && warm_until.is_some_and(|w| now >= w) {
                measure_until = Some(now + Duration::from_secs(settings.seconds));
                measured_from_micros = now_micros();
                eprintln!(
                    "warm-up done after {:.1} s; measuring",
                    start.elapsed().as_secs_f64()
                );
            }
            if measure_until.is_some_and(|m| now >= m) {
                break;
            }
            if measure_until.is_none() && start.elapsed() > WAIT {
                bail!(
                    "no probe alert visible {WAIT:?} after the first probe; log:\n{}",
                    standalone.log_tail()
                );
            }
            let measured = measure_until.is_some();
            send_tagged(&producer, &topic, &tags, Kind::Probe, tick, measured)?;
            match tick % 5 {
                0 => {
                    pair += 1;
                    send_tagged(&producer, &topic, &tags, Kind::PairFirst, pair, measured)?;
                }
                1 if pair > 0 => {
                    send_tagged(&producer, &topic, &tags, Kind::PairSecond, pair, measured)?;
                }
                _ => {}
            }
            tick += 1;
        }
        // Stragglers.
        let drain_until = Instant::now() + Duration::from_secs(30);
        loop {
            let left = unseen(&tags, &seen)?;
            if left == 0 || Instant::now() > drain_until {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        stop_poller.store(true, Ordering::Relaxed);
        stop_background.store(true, Ordering::Relaxed);
        let (polls, poll_seconds) = poller
            .join()
            .map_err(|_| anyhow!("the poller panicked"))??;
        let sent_background = background
            .join()
            .map_err(|_| anyhow!("the background producer panicked"))??;
        producer
            .flush(Duration::from_secs(30))
            .context("flushing the producer")?;
        // A probe the broker never acknowledged would count as missing:
        // say so instead.
        producer.context().deliveries.check()?;

        // The ingest time of every measured tagged event.
        let since = micros_to_rfc3339(measured_from_micros - 10_000_000);
        let body = http_post_json(
            &standalone.http,
            "/v1/query",
            &json!({ "sql": format!(
                "SELECT source_partition AS p, source_offset AS o, CAST(ingest_time AS BIGINT) AS t \
                 FROM events WHERE time >= TIMESTAMP '{since}' \
                 AND (raw LIKE '%\"bench_kind\":\"probe\"%' OR raw LIKE '%\"bench_kind\":\"pair\"%')"
            ) }),
        )?;
        let mut ingested: HashMap<(i32, i64), i64> = HashMap::new();
        for row in body["rows"].as_array().context("events rows")? {
            if let (Some(p), Some(o), Some(t)) =
                (row["p"].as_i64(), row["o"].as_i64(), row["t"].as_i64())
            {
                ingested.insert((i32::try_from(p).unwrap_or(-1), o), t);
            }
        }

        let status = http_get_json(&standalone.http, "/v1/status")?;
        let shard_holders = shard_names(&status);
        let tags = tags.lock().map_err(|_| anyhow!("poisoned"))?.clone();
        let seen = seen.lock().map_err(|_| anyhow!("poisoned"))?.clone();
        let mut run = LatencyRun {
            workers,
            probes: Vec::new(),
            pairs: Vec::new(),
            missing_probes: 0,
            missing_pairs: 0,
            by_holder: BTreeMap::new(),
            kafka: Vec::new(),
            raised: Vec::new(),
            visible: Vec::new(),
            sent_background,
            polls,
            poll_seconds,
        };
        for t in tags.iter().filter(|t| t.measured) {
            let correlation = match t.kind {
                Kind::Probe => false,
                Kind::PairSecond => true,
                Kind::PairFirst => continue,
            };
            let found = t.position.and_then(|(p, o)| seen.get(&(correlation, p, o)));
            let Some(s) = found else {
                if correlation {
                    run.missing_pairs += 1;
                } else {
                    run.missing_probes += 1;
                }
                continue;
            };
            let latency = s.at.duration_since(t.sent).as_secs_f64();
            if correlation {
                run.pairs.push(latency);
                continue;
            }
            run.probes.push(latency);
            if let Some(holder) = shard_holders.get(&s.shard) {
                run.by_holder.entry(*holder).or_default().push(latency);
            }
            if let Some(ingest) = t.position.and_then(|pos| ingested.get(&pos)) {
                run.kafka.push((ingest - t.sent_micros) as f64 / 1e6);
                run.raised.push((s.detected_micros - ingest) as f64 / 1e6);
            }
            run.visible
                .push((s.at_micros - s.detected_micros) as f64 / 1e6);
        }
        Ok(run)
    })();
    stop_poller.store(true, Ordering::Relaxed);
    stop_background.store(true, Ordering::Relaxed);
    let run = result?;
    eprintln!(
        "{label}: {} probes, p50 {:.2} s, p99 {:.2} s; {} pairs; {} missing",
        run.probes.len(),
        percentile(&run.probes, 0.5),
        percentile(&run.probes, 0.99),
        run.pairs.len(),
        run.missing()
    );
    if let Some(mut w) = worker {
        w.stop()?;
    }
    let mut standalone = standalone;
    standalone.stop()?;
    Ok(run)
}

/// Measured tagged events whose alert has not been seen yet.
fn unseen(tags: &Mutex<Vec<Tagged>>, seen: &Mutex<SeenMap>) -> Result<usize> {
    let tags = tags.lock().map_err(|_| anyhow!("poisoned"))?;
    let seen = seen.lock().map_err(|_| anyhow!("poisoned"))?;
    Ok(tags
        .iter()
        .filter(|t| t.measured && t.kind != Kind::PairFirst)
        .filter(|t| {
            let correlation = t.kind == Kind::PairSecond;
            !t.position
                .is_some_and(|(p, o)| seen.contains_key(&(correlation, p, o)))
        })
        .count())
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn micros_to_rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Produces one probe or pair event, recording when it was handed over.
fn send_tagged(
    producer: &ThreadedProducer<Acks>,
    topic: &str,
    tags: &Mutex<Vec<Tagged>>,
    kind: Kind,
    n: u64,
    measured: bool,
) -> Result<()> {
    let sent_micros = now_micros();
    let time = micros_to_rfc3339(sent_micros);
    let event = match kind {
        Kind::Probe => json!({
            "time": time, "bench_kind": "probe", "bench_probe": format!("probe-{n}"),
            "message": "latency probe",
        }),
        Kind::PairFirst | Kind::PairSecond => json!({
            "time": time, "bench_kind": "pair", "bench_pair": format!("pair-{n}"),
            "message": if kind == Kind::PairFirst { "pair, first" } else { "pair, second" },
        }),
    };
    let payload = event.to_string();
    let index = {
        let mut tags = tags.lock().map_err(|_| anyhow!("poisoned"))?;
        tags.push(Tagged {
            kind,
            measured,
            sent: Instant::now(),
            sent_micros,
            position: None,
        });
        tags.len() - 1
    };
    let mut record = BaseRecord::<(), str, usize>::with_opaque_to(topic, index).payload(&payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => bail!("producing a {kind:?}: {e}"),
        }
    }
}

/// Produces `rate` plain events per second until `stop`; returns how many.
fn background_traffic(
    producer: &ThreadedProducer<Acks>,
    topic: &str,
    rate: u64,
    stop: &AtomicBool,
) -> Result<u64> {
    let start = Instant::now();
    let mut sent: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let i = sent;
            let event = json!({
                "time": micros_to_rfc3339(now_micros()),
                "bench_kind": "background",
                "src_ip": format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
                "dst_ip": "192.0.2.10",
                "dst_port": 443,
                "user": format!("user{}", i % 500),
                "action": "allowed",
                "message": "connection accepted",
                "seq": i,
            })
            .to_string();
            let mut record = BaseRecord::<(), str, usize>::with_opaque_to(topic, usize::MAX)
                .payload(event.as_str());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((e, _)) => bail!("producing background event {i}: {e}"),
                }
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(sent)
}

/// Every `every`, reads the alerts raised since the oldest probe not yet
/// seen and notes when each (rule kind, referenced event) first appears.
/// Returns the number of polls and the seconds they took.
fn poll_alerts(
    http: &str,
    tags: &Mutex<Vec<Tagged>>,
    seen: &Mutex<SeenMap>,
    stop: &AtomicBool,
    every: Duration,
) -> Result<(u64, f64)> {
    let mut polls = 0u64;
    let mut busy = 0.0;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        next += every;
        // Alerts are partitioned and pruned by event time (= send time
        // here): read from 2 s before the oldest event still waiting.
        let oldest = {
            let tags = tags.lock().map_err(|_| anyhow!("poisoned"))?;
            let seen = seen.lock().map_err(|_| anyhow!("poisoned"))?;
            tags.iter()
                .filter(|t| t.kind != Kind::PairFirst)
                .filter(|t| {
                    let correlation = t.kind == Kind::PairSecond;
                    !t.position
                        .is_some_and(|(p, o)| seen.contains_key(&(correlation, p, o)))
                })
                .map(|t| t.sent_micros)
                .min()
                .unwrap_or_else(now_micros)
        };
        let since = micros_to_rfc3339(oldest - 2_000_000);
        let sql = format!(
            "SELECT rule_id, shard, event_refs, CAST(detected_at AS BIGINT) AS d FROM alerts \
             WHERE time >= TIMESTAMP '{since}'"
        );
        let t0 = Instant::now();
        let body = http_post_json(http, "/v1/query", &json!({ "sql": sql }))?;
        let (at, at_micros) = (Instant::now(), now_micros());
        busy += at.duration_since(t0).as_secs_f64();
        polls += 1;
        let rows = body["rows"]
            .as_array()
            .with_context(|| format!("alerts query answered {body}"))?;
        let mut seen = seen.lock().map_err(|_| anyhow!("poisoned"))?;
        for row in rows {
            let correlation = match row["rule_id"].as_str() {
                Some(PROBE_RULE) => false,
                Some(CORRELATION_RULE) => true,
                _ => continue,
            };
            let refs: Vec<Value> = row["event_refs"]
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default();
            for r in refs {
                let (Some(p), Some(o)) = (r["partition"].as_i64(), r["offset"].as_i64()) else {
                    continue;
                };
                seen.entry((correlation, i32::try_from(p).unwrap_or(-1), o))
                    .or_insert_with(|| Seen {
                        at,
                        at_micros,
                        detected_micros: row["d"].as_i64().unwrap_or(0),
                        shard: row["shard"].as_str().unwrap_or_default().to_string(),
                    });
            }
        }
    }
    Ok((polls, busy))
}

// ---------------------------------------------------------------------------
// Evaluation scaling

/// One scaling run's results.
struct ScalingRun {
    workers: usize,
    buckets: u32,
    events: usize,
    rules: usize,
    /// Per shard: holder, events evaluated, seconds from start to done.
    shards: Vec<(String, u64, u64, f64)>,
    /// From the first shard start to the last shard done.
    span: f64,
    /// The latest shard start minus the earliest.
    stagger: f64,
    /// CPU seconds per node over the span (node id, seconds).
    cpu: Vec<(u64, f64)>,
    /// `spoor_worker_evaluation_seconds_sum` per node.
    evaluation: Vec<(u64, f64)>,
    alerts: f64,
}

impl ScalingRun {
    fn rate(&self) -> f64 {
        self.events as f64 / self.span.max(f64::MIN_POSITIVE)
    }
}

/// The rule folders of the scaling runs.
fn scaling_rules(settings: &Settings) -> Result<Vec<PathBuf>> {
    if let Some(p) = &settings.rules {
        return Ok(vec![p.clone()]);
    }
    let dir = corpus().join("sigma/rules/windows");
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("rules at {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.ends_with("driver_load"))
        .collect();
    folders.sort();
    if folders.is_empty() {
        bail!("no rule folders in {}", dir.display());
    }
    Ok(folders)
}

fn count_rules(paths: &[PathBuf]) -> usize {
    fn walk(p: &Path) -> usize {
        if p.is_dir() {
            std::fs::read_dir(p)
                .map(|d| d.flatten().map(|e| walk(&e.path())).sum())
                .unwrap_or(0)
        } else {
            usize::from(p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        }
    }
    paths.iter().map(|p| walk(p)).sum()
}

fn run_scaling(
    bin: &Path,
    broker: &Broker,
    settings: &Settings,
    work: &Path,
    corpus: &[Vec<u8>],
    workers: usize,
    buckets: u32,
) -> Result<ScalingRun> {
    let label = format!("scale{workers}x{buckets}");
    eprintln!("== {label}: {workers} worker(s), {buckets} bucket(s)");
    let topic = format!("bench-{label}");
    broker.create_topic_blocking(&topic, BACKLOG_PARTITIONS)?;
    let dir = work.join(&label);
    let lake = dir.join("lake");
    std::fs::create_dir_all(&lake).context("lake folder")?;
    let sets = [
        format!("ingest.flush_interval_ms={}", settings.backlog_flush_ms),
        "worker.rules_refresh_ms=1000".to_string(),
    ];
    let standalone =
        Node::standalone(bin, broker, &dir, &lake, settings, &topic, "windows", &sets)?;
    let worker = if workers > 1 {
        Some(Node::worker(bin, &dir, &lake, settings, &standalone, 2)?)
    } else {
        None
    };
    let rules = scaling_rules(settings)?;
    let rule_count = count_rules(&rules);
    // Disabled: the shards are defined (at catalog sequence 0: nothing is
    // ingested yet) but evaluate nothing.
    apply_rules(bin, &standalone, &rules, "windows", buckets, true)?;
    let per_node = buckets as usize / workers;
    let holders = wait_for_holders(&standalone, "windows", |h| {
        h.len() == buckets as usize
            && (1..=workers as u64).all(|n| h.values().filter(|&&x| x == n).count() == per_node)
    })?;
    eprintln!("shards held: {holders:?}");

    let lines: Vec<&[u8]> = corpus
        .iter()
        .cycle()
        .take(settings.backlog)
        .map(Vec::as_slice)
        .collect();
    let t = Instant::now();
    broker.produce(&topic, BACKLOG_PARTITIONS, &lines)?;
    eprintln!(
        "produced {} events in {:.1} s",
        lines.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    loop {
        let m = http_get(&standalone.http, "/metrics")?;
        let done = metric(&m, "spoor_ingest_events_total");
        let dead = metric(&m, "spoor_ingest_dead_letters_total");
        if dead > 0.0 {
            bail!("{dead} backlog events went to dead letters");
        }
        if done >= settings.backlog as f64 {
            break;
        }
        if t.elapsed() > WAIT {
            bail!(
                "ingested {done} of {} backlog events in {WAIT:?}; log:\n{}",
                settings.backlog,
                standalone.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let counted = http_post_json(
        &standalone.http,
        "/v1/query",
        &json!({ "sql": "SELECT count(*) AS n FROM events" }),
    )?["rows"][0]["n"]
        .as_i64()
        .unwrap_or(-1);
    if counted != settings.backlog as i64 {
        bail!(
            "the catalog holds {counted} events, {} were produced",
            settings.backlog
        );
    }
    eprintln!(
        "ingested in {:.1} s; enabling the rule set",
        t.elapsed().as_secs_f64()
    );

    let nodes: Vec<(u64, &Node)> = std::iter::once((1, &standalone))
        .chain(worker.as_ref().map(|w| (2, w)))
        .collect();
    let enabled_at = Instant::now();
    let cpu0: Vec<f64> = nodes.iter().map(|(_, n)| n.cpu()).collect::<Result<_>>()?;
    apply_rules(bin, &standalone, &rules, "windows", buckets, false)?;
    // Per shard: (holder, samples of (time, events)).
    let mut series: BTreeMap<String, (u64, Vec<(Instant, u64)>)> = BTreeMap::new();
    let want = settings.backlog as u64;
    let (finished, metrics_text) = loop {
        let mut total = 0;
        let now = Instant::now();
        let mut texts = Vec::new();
        for (id, node) in &nodes {
            let text = http_get(&node.http, "/metrics")?;
            for (shard, v) in metric_by_label(&text, "spoor_worker_events_total", "shard") {
                let v = v as u64;
                total += v;
                let entry = series.entry(shard).or_insert_with(|| (*id, Vec::new()));
                entry.1.push((now, v));
            }
            texts.push((*id, text));
        }
        if total >= want {
            break (now, texts);
        }
        if enabled_at.elapsed() > WAIT {
            bail!(
                "the shards evaluated {total} of {want} events in {WAIT:?}; log:\n{}",
                standalone.log_tail()
            );
        }
        std::thread::sleep(METRICS_POLL);
    };
    let cpu1: Vec<f64> = nodes.iter().map(|(_, n)| n.cpu()).collect::<Result<_>>()?;
    let started: HashMap<String, Instant> = nodes
        .iter()
        .flat_map(|(_, n)| n.shard_starts())
        .filter(|(at, _)| *at >= enabled_at)
        .fold(HashMap::new(), |mut m, (at, shard)| {
            m.entry(shard).or_insert(at);
            m
        });
    let mut shards = Vec::new();
    let (mut first_start, mut last_done) = (finished, enabled_at);
    let (mut min_start, mut max_start) = (finished, enabled_at);
    for (shard, (holder, samples)) in &series {
        let Some(&(_, last)) = samples.last() else {
            continue;
        };
        let done = samples
            .iter()
            .find(|(_, v)| *v == last)
            .map_or(finished, |(t, _)| *t);
        let start = started.get(shard).copied().with_context(|| {
            format!("no `shard started` line for {shard} after the rule set was enabled")
        })?;
        first_start = first_start.min(start);
        min_start = min_start.min(start);
        max_start = max_start.max(start);
        last_done = last_done.max(done);
        shards.push((
            shard.clone(),
            *holder,
            last,
            done.saturating_duration_since(start).as_secs_f64(),
        ));
    }
    let run = ScalingRun {
        workers,
        buckets,
        events: settings.backlog,
        rules: rule_count,
        span: last_done
            .saturating_duration_since(first_start)
            .as_secs_f64(),
        stagger: max_start.saturating_duration_since(min_start).as_secs_f64(),
        shards,
        cpu: nodes
            .iter()
            .zip(cpu0.iter().zip(&cpu1))
            .map(|((id, _), (a, b))| (*id, b - a))
            .collect(),
        evaluation: metrics_text
            .iter()
            .map(|(id, t)| (*id, metric(t, "spoor_worker_evaluation_seconds_sum")))
            .collect(),
        alerts: metrics_text
            .iter()
            .map(|(_, t)| metric(t, "spoor_worker_alerts_total"))
            .sum(),
    };
    eprintln!(
        "{label}: {} events in {:.2} s = {:.0} events/s (shards started {:.2} s apart)",
        run.events,
        run.span,
        run.rate(),
        run.stagger
    );
    if let Some(mut w) = worker {
        w.stop()?;
    }
    let mut standalone = standalone;
    standalone.stop()?;
    Ok(run)
}

// ---------------------------------------------------------------------------
// Report

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

fn report(settings: &Settings, latencies: &[LatencyRun], scaling: &[ScalingRun]) {
    println!();
    if !latencies.is_empty() {
        println!(
            "Detection latency, Kafka produce → alert visible in `alerts` ({} s measured per run, \
             a probe every {} ms, {} background events/s, alerts polled every {} ms: each figure \
             is at most one poll interval late; default flush interval and worker settings):",
            settings.seconds, settings.probe_ms, settings.rate, settings.poll_ms
        );
        println!();
        println!(
            "| workers | rule | count | missing | p50 s | p99 s | max s | p99 vs 60 s NRT | p99 vs 300 s Elastic | target p99 < 5 s |"
        );
        println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
        for run in latencies {
            for (rule, values, missing) in [
                ("one-event probe", &run.probes, run.missing_probes),
                ("event_count pair", &run.pairs, run.missing_pairs),
            ] {
                let p99 = percentile(values, 0.99);
                println!(
                    "| {} | {rule} | {} | {missing} | {:.2} | {:.2} | {:.2} | {:.0}× | {:.0}× | {} |",
                    run.workers,
                    values.len(),
                    percentile(values, 0.5),
                    p99,
                    max(values),
                    ANCHORS[0].1 / p99,
                    ANCHORS[1].1 / p99,
                    if p99 < 5.0 && missing == 0 {
                        "met"
                    } else {
                        "MISSED"
                    }
                );
            }
        }
        println!();
        for run in latencies {
            let p99 = percentile(&run.probes, 0.99);
            for (name, anchor) in ANCHORS {
                println!(
                    "{} worker(s): p99 {:.2} s = {:.0}× faster than the {anchor:.0} s {name}",
                    run.workers,
                    p99,
                    anchor / p99
                );
            }
        }
        println!();
        println!("Where a probe's time goes (p50 / p99 of each leg, seconds):");
        println!();
        println!(
            "| workers | produce → ingest decoded | → alert raised (flush, catalog, poll, evaluate) | → alert visible (write, commit, poll) |"
        );
        println!("| ---: | ---: | ---: | ---: |");
        for run in latencies {
            println!(
                "| {} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} |",
                run.workers,
                percentile(&run.kafka, 0.5),
                percentile(&run.kafka, 0.99),
                percentile(&run.raised, 0.5),
                percentile(&run.raised, 0.99),
                percentile(&run.visible, 0.5),
                percentile(&run.visible, 0.99),
            );
        }
        println!();
        for run in latencies {
            for (holder, v) in &run.by_holder {
                println!(
                    "{} worker(s): probes alerted by node {holder} ({}): {} probes, p50 {:.2} s, p99 {:.2} s",
                    run.workers,
                    if *holder == 1 {
                        "standalone"
                    } else {
                        "spoor worker"
                    },
                    v.len(),
                    percentile(v, 0.5),
                    percentile(v, 0.99)
                );
            }
            println!(
                "{} worker(s): {} background events sent; {} alert polls, {:.1} ms each on average",
                run.workers,
                run.sent_background,
                run.polls,
                1000.0 * run.poll_seconds / (run.polls.max(1) as f64)
            );
        }
    }
    if !scaling.is_empty() {
        println!();
        println!(
            "Evaluation throughput: {} rules, a backlog of {} otrf-windows events:",
            scaling[0].rules, scaling[0].events
        );
        println!();
        println!(
            "| workers | buckets | events/s | span s | shards started apart s | per shard (node: events in s) | CPU s per node | evaluation s per node | alerts |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: |");
        for run in scaling {
            let shards: Vec<String> = run
                .shards
                .iter()
                .map(|(name, holder, events, s)| {
                    let bucket = name.rsplit('/').next().unwrap_or(name);
                    format!("b{bucket} on {holder}: {events} in {s:.2}")
                })
                .collect();
            let per_node = |v: &[(u64, f64)]| {
                v.iter()
                    .map(|(id, s)| format!("{id}: {s:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {:.0} |",
                run.workers,
                run.buckets,
                run.rate(),
                run.span,
                run.stagger,
                shards.join("; "),
                per_node(&run.cpu),
                per_node(&run.evaluation),
                run.alerts
            );
        }
        let find = |w: usize, b: u32| scaling.iter().find(|r| r.workers == w && r.buckets == b);
        println!();
        if let (Some(a), Some(b)) = (find(2, 2), find(1, 2)) {
            println!(
                "ratio 2 workers ÷ 1 worker (2 buckets), events/s: {:.2}",
                a.rate() / b.rate()
            );
        }
        if let (Some(a), Some(b)) = (find(1, 2), find(1, 1)) {
            println!(
                "ratio 2 buckets ÷ 1 bucket (1 worker), events/s: {:.2}",
                a.rate() / b.rate()
            );
        }
        if let (Some(a), Some(b)) = (find(2, 2), find(1, 1)) {
            println!(
                "ratio 2 workers × 2 buckets ÷ 1 worker × 1 bucket, events/s: {:.2}",
                a.rate() / b.rate()
            );
        }
    }
    println!();
    println!("load average after the runs: {}", load_average());
    report_slow_stops();
    report_summary(settings, latencies, scaling);
}

/// The machine-readable summary of the figures printed by [`report`].
fn report_summary(settings: &Settings, latencies: &[LatencyRun], scaling: &[ScalingRun]) {
    let number = |v: f64| {
        if v.is_finite() { json!(v) } else { Value::Null }
    };
    let latency: Vec<Value> = latencies
        .iter()
        .flat_map(|run| {
            [
                ("one-event probe", &run.probes, run.missing_probes),
                ("event_count pair", &run.pairs, run.missing_pairs),
            ]
            .map(|(rule, values, missing)| {
                let p99 = percentile(values, 0.99);
                json!({
                    "workers": run.workers,
                    "rule": rule,
                    "count": values.len(),
                    "missing": missing,
                    "p50_s": number(percentile(values, 0.5)),
                    "p99_s": number(p99),
                    "max_s": number(max(values)),
                    "vs_sentinel_nrt_60s": number(ANCHORS[0].1 / p99),
                    "vs_elastic_default_300s": number(ANCHORS[1].1 / p99),
                })
            })
        })
        .collect();
    let runs: Vec<Value> = scaling
        .iter()
        .map(|run| {
            json!({
                "workers": run.workers,
                "buckets": run.buckets,
                "events_per_s": number(run.rate()),
                "span_s": number(run.span),
                "stagger_s": number(run.stagger),
                "cpu_s": run.cpu.iter().map(|(id, s)| json!({"node": id, "cpu_s": number(*s)})).collect::<Vec<_>>(),
                "alerts": number(run.alerts),
            })
        })
        .collect();
    let find = |w: usize, b: u32| scaling.iter().find(|r| r.workers == w && r.buckets == b);
    let ratio = |a: Option<&ScalingRun>, b: Option<&ScalingRun>| match (a, b) {
        (Some(a), Some(b)) => number(a.rate() / b.rate()),
        _ => Value::Null,
    };
    report_line(
        "detection_latency",
        json!({
            "settings": {
                "seconds": settings.seconds,
                "background_events_per_s": settings.rate,
                "probe_ms": settings.probe_ms,
                "poll_ms": settings.poll_ms,
                "backlog": settings.backlog,
            },
            "latency": latency,
            "scaling": {
                "rules": scaling.first().map(|r| r.rules),
                "runs": runs,
                "workers_2_over_1_buckets_2": ratio(find(2, 2), find(1, 2)),
                "buckets_2_over_1_workers_1": ratio(find(1, 2), find(1, 1)),
                "workers_2x2_over_1x1": ratio(find(2, 2), find(1, 1)),
            },
            "slow_stops": slow_stops(),
            "load_average_after": load_average(),
        }),
    );
}

// ---------------------------------------------------------------------------
// Cluster (the process handling is `support::cluster`)

impl Node {
    /// `spoor standalone` reading `topic` with the `source_type` parser.
    #[allow(clippy::too_many_arguments)]
    fn standalone(
        bin: &Path,
        broker: &Broker,
        dir: &Path,
        lake: &Path,
        settings: &Settings,
        topic: &str,
        source_type: &str,
        sets: &[String],
    ) -> Result<Node> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join("spoor.toml");
        let mut toml = format!(
            "[ingest.kafka]\nbrokers = \"{}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{topic}\"\n\n\
             [[ingest.sources]]\ntopics = [\"{topic}\"]\nsource_type = \"{source_type}\"\n",
            broker.bootstrap
        );
        toml.push_str(&kafka_properties_toml(&settings.kafka_properties));
        std::fs::write(&config, toml).context("writing the spoor config")?;
        let mut all = vec!["--config".to_string(), config.display().to_string()];
        all.extend(node_sets(lake, settings, sets));
        Node::start(bin, "standalone", &dir.join("standalone"), &all)
    }

    /// `spoor worker` with member id `id`, on the standalone's catalog and lake.
    fn worker(
        bin: &Path,
        dir: &Path,
        lake: &Path,
        settings: &Settings,
        standalone: &Node,
        id: u64,
    ) -> Result<Node> {
        let grpc = standalone
            .grpc
            .as_deref()
            .context("the standalone serves no gRPC")?;
        let extra = [
            format!("node.id={id}"),
            format!("catalog.endpoint=\"http://{grpc}\""),
        ];
        let all = node_sets(lake, settings, &extra);
        Node::start(bin, "worker", &dir.join(format!("worker{id}")), &all)
    }
}

/// `--set` flags every node gets: the shared lake, the Flight SQL and
/// PostgreSQL listeners off, the extras and `LATENCY_BENCH_SETS`.
fn node_sets(lake: &Path, settings: &Settings, extra: &[String]) -> Vec<String> {
    let mut sets = extra.to_vec();
    sets.extend(settings.extra_sets.iter().cloned());
    lake_sets(lake, &sets)
}

/// `spoor rules apply` of `paths` as rule set `name` of the tenant.
fn apply_rules(
    bin: &Path,
    node: &Node,
    paths: &[PathBuf],
    name: &str,
    buckets: u32,
    disable: bool,
) -> Result<()> {
    let out = Command::new(bin)
        .args(["rules", "apply"])
        .args(paths)
        .args(["--tenant", TENANT, "--name", name])
        .args(["--buckets", &buckets.to_string()])
        .args(["--endpoint", &format!("http://{}", node.http)])
        .args(disable.then_some("--disable"))
        .output()
        .context("running spoor rules apply")?;
    if !out.status.success() {
        bail!(
            "spoor rules apply failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
    Ok(())
}

/// Shard name (`tenant/rule set/bucket`, as alerts and metrics name it) →
/// holder, from `/v1/status`.
fn shard_names(status: &Value) -> BTreeMap<String, u64> {
    status["cluster"]["shards"]
        .as_array()
        .map(|shards| {
            shards
                .iter()
                .filter_map(|s| {
                    let id = &s["id"];
                    let name = format!(
                        "{}/{}/{}",
                        id["tenant"].as_str()?,
                        id["rule_group"].as_str()?,
                        id["bucket"].as_u64()?
                    );
                    Some((name, s["holder"].as_u64()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the held shards of `rule_group` satisfy `done`.
fn wait_for_holders(
    node: &Node,
    rule_group: &str,
    done: impl Fn(&BTreeMap<String, u64>) -> bool,
) -> Result<BTreeMap<String, u64>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = http_get_json(&node.http, "/v1/status")?;
        let held: BTreeMap<String, u64> = shard_names(&status)
            .into_iter()
            .filter(|(name, _)| name.split('/').nth(1) == Some(rule_group))
            .collect();
        if done(&held) {
            return Ok(held);
        }
        if Instant::now() > deadline {
            bail!(
                "shards never reached the expected holders: {held:?}; log:\n{}",
                node.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------
// Broker

impl Broker {
    /// A producer whose delivery reports fill in the positions of `tags`.
    fn producer(
        &self,
        tags: Arc<Mutex<Vec<Tagged>>>,
        linger_ms: &str,
    ) -> Result<ThreadedProducer<Acks>> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", linger_ms)
            .set("message.timeout.ms", "60000")
            .set("queue.buffering.max.messages", "1000000")
            .create_with_context(Acks {
                tags,
                deliveries: Deliveries::default(),
            })
            .context("producer")
    }
}

/// Delivery reports: positions of tagged events, failures counted.
struct Acks {
    tags: Arc<Mutex<Vec<Tagged>>>,
    deliveries: Deliveries,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        if let Ok(m) = result
            && tag != usize::MAX
            && let Ok(mut tags) = self.tags.lock()
            && let Some(t) = tags.get_mut(tag)
        {
            t.position = Some((m.partition(), m.offset()));
        }
        self.deliveries.delivery(result, ());
    }
}

// ---------------------------------------------------------------------------
// HTTP and metrics

/// The samples of `name` by the value of its label `label`.
fn metric_by_label(text: &str, name: &str, label: &str) -> BTreeMap<String, f64> {
    let key = format!("{label}=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = rest.rsplit_once("} ")?;
            let start = labels.find(&key)? + key.len();
            let end = labels[start..].find('"')? + start;
            Some((labels[start..end].to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

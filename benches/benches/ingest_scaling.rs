//! Kafka ingest throughput from 1 to 2 ingest nodes in one consumer group,
//! side by side with a bare Kafka consumer reading the same backlog in the
//! same run.
//!
//! The cluster is the release `spoor` binary run as separate processes on
//! this machine (`support::cluster`): a `spoor standalone` without Kafka
//! that holds the catalog (its Raft group of one, fsynced redb) and answers
//! queries, and 1 or 2 `spoor ingest` processes (`node.id` 2 and 3) that
//! reach its catalog through `catalog.endpoint`, share its lake folder
//! through `storage.url`, and consume the topic in one consumer group with
//! the `windows` parser, writing zstd Parquet and committing every flush to
//! the catalog. Default ingest settings (flush every 1 s or 100,000 events
//! or 64 MiB), except compaction, which is off on every node so that no
//! background merge lands in a timed window.
//!
//! Input: the lines of `../shared/corpus/events/otrf-windows` (Sysmon and
//! Security events of about 1.8 KB) repeated in order to
//! `INGEST_SCALING_EVENTS`, produced round-robin to a topic of
//! `INGEST_SCALING_PARTITIONS` partitions on a loopback tansu broker
//! (in-memory storage); every run has a topic, consumer group, catalog and
//! lake of its own.
//!
//! A run, for 1 and for 2 ingest nodes:
//!
//! 1. the topic is created empty; the standalone and the ingest nodes start;
//!    the bench waits until the group is settled: the nodes' latest
//!    `partitions assigned` lines cover every partition once, each node has
//!    a share, and no assignment has changed for a second;
//! 2. the ingest nodes are frozen (SIGSTOP), the backlog is produced and
//!    acknowledged (not timed), and the nodes are thawed (SIGCONT): the
//!    clock starts. Freezing keeps the group's join and its rebalance out of
//!    the window, and also a hazard of tansu 0.6: a partition that changes
//!    hands after its first flush resumes at a catalog checkpoint inside a
//!    record batch, of which tansu returns nothing (see
//!    `tests/tests/ingest_failover.rs`);
//! 3. the clock stops at the first `/metrics` sample (every 50 ms) where
//!    the nodes' `spoor_ingest_events_total` add up to the backlog; then
//!    `SELECT count(*)` and a count of distinct (partition, offset) pairs on
//!    the standalone check that the catalog holds every event exactly once.
//!
//! The peer, `bare consumer` (`support::bare`): this bench's binary re-run
//! as a child process with an rdkafka `BaseConsumer`, assigned every
//! partition of the 1-node run's topic from the beginning, discarding each
//! message: the broker's read limit for this backlog. The ratios Spoor ÷
//! bare consumer are the house's (`docs/performance.md`, target ≥ 0.5).
//!
//! CPU: user + system seconds of every process over the timed window
//! (`/proc/<pid>/stat`): each ingest node, the standalone (catalog commits,
//! query), the broker, and this bench (it polls `/metrics`). The machine has
//! 2 cores shared by all of them, so a second ingest node can only use what
//! the first leaves idle; the CPU seconds per node and the cores the whole
//! run kept busy show how far that is from a second machine.
//!
//! Run: `cargo bench -p spoor-benches --bench ingest_scaling`. It builds the
//! release `spoor` binary first (or uses `INGEST_SCALING_SPOOR_BIN`). Knobs:
//! `INGEST_SCALING_EVENTS` (default 200,000), `INGEST_SCALING_PARTITIONS`
//! (4), `INGEST_SCALING_ROUNDS` (2; per configuration the round with the
//! least wall time counts), `INGEST_SCALING_ONLY` (a comma-separated subset
//! of `spoor1`, `spoor2`, `bare`), `INGEST_SCALING_SETS` (extra
//! whitespace-separated `key=value` overrides for every spoor process),
//! `INGEST_SCALING_KAFKA_PROPERTIES` (librdkafka properties of Spoor's
//! consumers and the bare one, `k=v,k=v`; see [`DEFAULT_KAFKA_PROPERTIES`]),
//! `TANSU_BIN`. (Not `SPOOR_*`: spoor reads those as configuration.)

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

mod support;
use support::cluster::{Node, lake_sets, report_slow_stops, slow_stops};
use support::{
    Broker, env_choices, env_kafka_properties, env_number, http_get, http_post_json,
    kafka_properties_toml, load_average, load_corpus, metric, process_cpu, release_spoor_binary,
    report_line,
};

/// librdkafka properties of every Kafka reader unless
/// `INGEST_SCALING_KAFKA_PROPERTIES` says otherwise:
/// - `fetch.wait.max.ms=0`: tansu 0.6 holds every fetch for the consumer's
///   whole wait even when it has data, which would cap every reader at
///   about 20 MB/s (as in `ingest_kafka`);
/// - `heartbeat.interval.ms=250`: a member learns of a rebalance within a
///   quarter second instead of 3 s, so the group settles sooner (set-up
///   only: the group is settled before the clock starts);
/// - `session.timeout.ms=60000`: the frozen nodes (step 2) miss no session
///   while the backlog is produced, so thawing them starts no rebalance.
const DEFAULT_KAFKA_PROPERTIES: &str =
    "fetch.wait.max.ms=0,heartbeat.interval.ms=250,session.timeout.ms=60000";
/// How long the timed window or the bare consumer may take.
const WAIT: Duration = Duration::from_secs(300);
/// How long the consumer group may take to settle.
const SETTLE_WAIT: Duration = Duration::from_secs(90);
/// How often the timed window reads `/metrics`.
const METRICS_POLL: Duration = Duration::from_millis(50);
/// How long the group's assignment must stay unchanged to count as settled.
const SETTLED: Duration = Duration::from_secs(1);

fn main() -> Result<()> {
    if let Some(done) = support::bare::child_main() {
        return done;
    }
    let settings = Settings::from_env()?;
    let bin = release_spoor_binary("INGEST_SCALING_SPOOR_BIN")?;
    let corpus = load_corpus()?;
    let lines: Vec<&[u8]> = corpus
        .iter()
        .cycle()
        .take(settings.events)
        .map(Vec::as_slice)
        .collect();
    let json_bytes: usize = lines.iter().map(|l| l.len()).sum();
    let work = tempfile::Builder::new()
        .prefix("spoor-ingest-scaling")
        .tempdir()
        .context("temporary folder")?;
    let broker = Broker::start()?;
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "input: otrf-windows repeated to {} events, {:.1} MB of JSON, {} partitions per topic",
        settings.events,
        json_bytes as f64 / 1e6,
        settings.partitions
    );
    println!("spoor: {}", bin.display());
    println!(
        "machine: {cpus} CPUs, load average before the runs {}",
        load_average()
    );

    let mut runs: BTreeMap<Contender, Vec<Run>> = BTreeMap::new();
    for round in 0..settings.rounds {
        let mut bare_topic = None;
        for &contender in &Contender::ALL {
            let wanted = settings.only.contains(&contender)
                // The bare consumer reads the topic of a Spoor run.
                || (contender == Contender::Spoor1
                    && settings.only.contains(&Contender::Bare));
            if !wanted {
                continue;
            }
            let run = match contender {
                Contender::Spoor1 | Contender::Spoor2 => {
                    let nodes = if contender == Contender::Spoor1 { 1 } else { 2 };
                    let topic = format!("scaling-r{round}-n{nodes}");
                    let run =
                        run_spoor(&bin, &broker, &settings, work.path(), &topic, nodes, &lines)?;
                    bare_topic.get_or_insert(topic);
                    run
                }
                Contender::Bare => {
                    let topic = bare_topic
                        .as_deref()
                        .context("no Spoor run produced a topic for the bare consumer")?;
                    run_bare(&broker, &settings, topic)?
                }
            };
            eprintln!(
                "round {}: {:<22} wall {:>6.2} s  {:>8.0} events/s  cpu {}",
                round + 1,
                contender.label(),
                run.wall,
                settings.events as f64 / run.wall,
                run.cpu
                    .iter()
                    .map(|(who, s)| format!("{who} {s:.2}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if settings.only.contains(&contender) {
                runs.entry(contender).or_default().push(run);
            }
        }
    }
    report(&settings, json_bytes, cpus, &runs);
    Ok(())
}

/// Sizes and knobs, from the environment.
struct Settings {
    events: usize,
    partitions: i32,
    rounds: usize,
    only: Vec<Contender>,
    extra_sets: Vec<String>,
    kafka_properties: Vec<(String, String)>,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let settings = Settings {
            events: env_number("INGEST_SCALING_EVENTS", 200_000)?,
            partitions: env_number("INGEST_SCALING_PARTITIONS", 4)?,
            rounds: env_number("INGEST_SCALING_ROUNDS", 2)?,
            only: env_choices("INGEST_SCALING_ONLY", &Contender::ALL, Contender::key)?,
            extra_sets: std::env::var("INGEST_SCALING_SETS")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            kafka_properties: env_kafka_properties(
                "INGEST_SCALING_KAFKA_PROPERTIES",
                DEFAULT_KAFKA_PROPERTIES,
            )?,
        };
        if settings.events == 0 || settings.rounds == 0 {
            bail!("INGEST_SCALING_EVENTS and INGEST_SCALING_ROUNDS must be > 0");
        }
        if settings.partitions < 2 {
            bail!("INGEST_SCALING_PARTITIONS must be at least 2 (one per ingest node)");
        }
        Ok(settings)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Contender {
    Spoor1,
    Spoor2,
    Bare,
}

impl Contender {
    /// Round order: the bare consumer reads the 1-node run's topic.
    const ALL: [Contender; 3] = [Contender::Spoor1, Contender::Bare, Contender::Spoor2];

    fn label(self) -> &'static str {
        match self {
            Contender::Spoor1 => "spoor, 1 ingest node",
            Contender::Spoor2 => "spoor, 2 ingest nodes",
            Contender::Bare => "bare consumer",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Contender::Spoor1 => "spoor1",
            Contender::Spoor2 => "spoor2",
            Contender::Bare => "bare",
        }
    }
}

/// One timed window.
#[derive(Debug, Clone, Default)]
struct Run {
    /// Seconds from the thaw (or the bare consumer's start) to the last
    /// event committed (or read).
    wall: f64,
    /// CPU seconds over the window, by process (`ingest node 2`,
    /// `standalone`, `broker`, `bench`, `bare consumer`).
    cpu: Vec<(String, f64)>,
    /// Per ingest node: events it committed and its partitions.
    nodes: Vec<(u64, u64, Vec<i32>)>,
    /// Seconds from starting the processes to a settled group (not timed).
    settle: f64,
    /// Seconds to produce the backlog while the nodes were frozen (not timed).
    produce: f64,
    /// `partitions revoked` lines logged inside the window (0 expected).
    revoked_in_window: usize,
    /// Flushes and files written by all the nodes.
    flushes: f64,
    files: f64,
}

impl Run {
    fn cpu_of(&self, prefix: &str) -> f64 {
        self.cpu
            .iter()
            .filter(|(who, _)| who.starts_with(prefix))
            .map(|(_, s)| s)
            .sum()
    }
}

fn run_spoor(
    bin: &Path,
    broker: &Broker,
    settings: &Settings,
    work: &Path,
    topic: &str,
    nodes: usize,
    lines: &[&[u8]],
) -> Result<Run> {
    eprintln!("== {topic}: {nodes} ingest node(s)");
    broker.create_topic_blocking(topic, settings.partitions)?;
    let dir = work.join(topic);
    let lake = dir.join("lake");
    std::fs::create_dir_all(&lake).context("lake folder")?;
    let mut sets = vec!["ingest.compaction.enabled=false".to_string()];
    sets.extend(settings.extra_sets.iter().cloned());
    let started = Instant::now();
    let mut standalone = Node::start(
        bin,
        "standalone",
        &dir.join("standalone"),
        &lake_sets(&lake, &sets),
    )?;
    let grpc = standalone
        .grpc
        .clone()
        .context("the standalone serves no gRPC")?;
    let config = dir.join("ingest.toml");
    let mut toml = format!(
        "[ingest.kafka]\nbrokers = \"{}\"\ntopics = [\"{topic}\"]\ngroup_id = \"{topic}\"\n\n\
         [[ingest.sources]]\ntopics = [\"{topic}\"]\nsource_type = \"windows\"\n",
        broker.bootstrap
    );
    toml.push_str(&kafka_properties_toml(&settings.kafka_properties));
    std::fs::write(&config, toml).context("writing the ingest config")?;
    let mut ingest = Vec::new();
    for id in 2..2 + nodes as u64 {
        let mut node_sets = sets.clone();
        node_sets.push(format!("node.id={id}"));
        node_sets.push(format!("catalog.endpoint=\"http://{grpc}\""));
        let mut args = vec!["--config".to_string(), config.display().to_string()];
        args.extend(lake_sets(&lake, &node_sets));
        ingest.push((
            id,
            Node::start(bin, "ingest", &dir.join(format!("ingest{id}")), &args)?,
        ));
    }

    // 1. A settled group on the empty topic.
    let shares = wait_settled(&ingest, topic, settings.partitions)?;
    let settle = started.elapsed().as_secs_f64();
    eprintln!("group settled after {settle:.1} s: {shares:?}");

    // 2. Frozen nodes, the backlog produced, the nodes thawed.
    signal_all(&ingest, "STOP")?;
    let produced = Instant::now();
    let produce_result = broker.produce(topic, settings.partitions, lines);
    let produce = produced.elapsed().as_secs_f64();
    if let Err(e) = produce_result {
        signal_all(&ingest, "CONT")?;
        return Err(e.context("producing the backlog"));
    }
    let mut cpu0 = cpu_snapshot(broker, &standalone, &ingest)?;
    let t0 = Instant::now();
    signal_all(&ingest, "CONT")?;
    eprintln!(
        "produced {} events in {produce:.1} s; nodes thawed",
        lines.len()
    );

    // 3. Until every event is committed.
    let want = lines.len() as f64;
    let texts = loop {
        let mut texts = Vec::with_capacity(ingest.len());
        for (id, node) in &ingest {
            texts.push((*id, http_get(&node.http, "/metrics")?));
        }
        let done: f64 = texts
            .iter()
            .map(|(_, t)| {
                metric(t, "spoor_ingest_events_total")
                    + metric(t, "spoor_ingest_dead_letters_total")
            })
            .sum();
        if done >= want {
            break texts;
        }
        if t0.elapsed() > WAIT {
            let logs: Vec<String> = ingest
                .iter()
                .map(|(id, n)| format!("ingest node {id}:\n{}", n.log_tail()))
                .collect();
            bail!(
                "the ingest nodes committed {done} of {want} events in {WAIT:?}; logs:\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(METRICS_POLL);
    };
    let wall = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_snapshot(broker, &standalone, &ingest)?;
    let cpu: Vec<(String, f64)> = cpu1
        .into_iter()
        .map(|(who, s)| {
            let before = cpu0.remove(&who).unwrap_or(0.0);
            (who, s - before)
        })
        .collect();

    let dead: f64 = texts
        .iter()
        .map(|(_, t)| metric(t, "spoor_ingest_dead_letters_total"))
        .sum();
    if dead > 0.0 {
        bail!("{dead} backlog events went to dead letters");
    }
    let count = |sql: &str| -> Result<i64> {
        let answer = http_post_json(&standalone.http, "/v1/query", &json!({ "sql": sql }))?;
        answer["rows"][0]["n"]
            .as_i64()
            .with_context(|| format!("answer to {sql}: {answer}"))
    };
    let counted = count("SELECT count(*) AS n FROM events")?;
    let distinct = count(
        "SELECT count(*) AS n FROM (SELECT DISTINCT source_partition, source_offset FROM events)",
    )?;
    if counted != lines.len() as i64 || distinct != counted {
        bail!(
            "the catalog holds {counted} events ({distinct} distinct Kafka positions), {} were produced",
            lines.len()
        );
    }
    let revoked_in_window = ingest.iter().map(|(_, n)| n.revocations_after(t0)).sum();
    let run = Run {
        wall,
        cpu,
        nodes: texts
            .iter()
            .map(|(id, t)| {
                let share = shares.get(id).cloned().unwrap_or_default();
                (*id, metric(t, "spoor_ingest_events_total") as u64, share)
            })
            .collect(),
        settle,
        produce,
        revoked_in_window,
        flushes: texts
            .iter()
            .map(|(_, t)| metric(t, "spoor_ingest_flush_seconds_count"))
            .sum(),
        files: texts
            .iter()
            .map(|(_, t)| metric(t, "spoor_ingest_files_written_total"))
            .sum(),
    };
    for (_, node) in &mut ingest {
        node.stop()?;
    }
    standalone.stop()?;
    // The run's lake and Raft log are not needed any more.
    let _ = std::fs::remove_dir_all(&dir);
    Ok(run)
}

/// Waits until the nodes' latest assignments of `topic` cover every
/// partition exactly once with a share for each node, unchanged for
/// [`SETTLED`]; returns each node's share.
fn wait_settled(
    nodes: &[(u64, Node)],
    topic: &str,
    partitions: i32,
) -> Result<BTreeMap<u64, Vec<i32>>> {
    let deadline = Instant::now() + SETTLE_WAIT;
    loop {
        let mut shares = BTreeMap::new();
        let mut last_change = None;
        for (id, node) in nodes {
            if let Some((at, share)) = node.assignments(topic, partitions).pop() {
                last_change = last_change.max(Some(at));
                shares.insert(*id, share);
            }
        }
        let mut all: Vec<i32> = shares.values().flatten().copied().collect();
        all.sort_unstable();
        let covered = shares.len() == nodes.len()
            && shares.values().all(|s| !s.is_empty())
            && all == (0..partitions).collect::<Vec<_>>();
        if covered && last_change.is_some_and(|at| at.elapsed() >= SETTLED) {
            return Ok(shares);
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = nodes
                .iter()
                .map(|(id, n)| format!("ingest node {id}:\n{}", n.log_tail()))
                .collect();
            bail!(
                "the consumer group did not settle in {SETTLE_WAIT:?} (latest shares {shares:?}); logs:\n{}",
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One `kill -<signal>` for every ingest node at once.
fn signal_all(nodes: &[(u64, Node)], signal: &str) -> Result<()> {
    let pids: Vec<String> = nodes
        .iter()
        .map(|(_, n)| n.pid().map(|p| p.to_string()))
        .collect::<Result<_>>()?;
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .args(&pids)
        .status()
        .context("running kill")?;
    if !status.success() {
        bail!("kill -{signal} {pids:?} failed ({status})");
    }
    Ok(())
}

/// CPU seconds so far of every process of the run.
fn cpu_snapshot(
    broker: &Broker,
    standalone: &Node,
    ingest: &[(u64, Node)],
) -> Result<BTreeMap<String, f64>> {
    let mut cpu = BTreeMap::new();
    for (id, node) in ingest {
        cpu.insert(format!("ingest node {id}"), node.cpu()?);
    }
    cpu.insert("standalone".to_string(), standalone.cpu()?);
    cpu.insert("broker".to_string(), broker.cpu()?);
    cpu.insert("bench".to_string(), process_cpu(std::process::id())?);
    Ok(cpu)
}

fn run_bare(broker: &Broker, settings: &Settings, topic: &str) -> Result<Run> {
    let bare = support::bare::run(
        broker,
        topic,
        settings.partitions,
        settings.events,
        &settings.kafka_properties,
        WAIT,
    )?;
    Ok(Run {
        wall: bare.wall.as_secs_f64(),
        cpu: vec![
            ("bare consumer".to_string(), bare.cpu_s),
            ("broker".to_string(), bare.broker_cpu_s),
        ],
        ..Run::default()
    })
}

// ---------------------------------------------------------------------------
// Report

fn report(
    settings: &Settings,
    json_bytes: usize,
    cpus: usize,
    runs: &BTreeMap<Contender, Vec<Run>>,
) {
    let events = settings.events as f64;
    let mb = json_bytes as f64 / 1e6;
    let best = |c: Contender| {
        runs.get(&c)
            .and_then(|r| r.iter().min_by(|a, b| a.wall.total_cmp(&b.wall)))
    };
    println!();
    println!(
        "{} rounds; per configuration the round with the least wall time (its CPU is from the same round). \
         Timed: from thawing the ingest nodes (or starting the bare consumer) to the last event committed (read).",
        settings.rounds
    );
    println!();
    println!(
        "| configuration | wall s | events/s | MB/s | CPU s per process | all processes CPU s | cores busy (of {cpus}) | events per ingest CPU-s | partitions per node | rebalances in window |"
    );
    println!("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | ---: |");
    for c in [Contender::Spoor1, Contender::Spoor2, Contender::Bare] {
        let Some(r) = best(c) else {
            continue;
        };
        let total: f64 = r.cpu.iter().map(|(_, s)| s).sum();
        let reader_cpu = if c == Contender::Bare {
            r.cpu_of("bare consumer")
        } else {
            r.cpu_of("ingest node")
        };
        println!(
            "| {} | {:.2} | {:.0} | {:.1} | {} | {:.2} | {:.2} | {:.0} | {} | {} |",
            c.label(),
            r.wall,
            events / r.wall,
            mb / r.wall,
            r.cpu
                .iter()
                .map(|(who, s)| format!("{who}: {s:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            total,
            total / r.wall,
            events / reader_cpu.max(f64::MIN_POSITIVE),
            r.nodes
                .iter()
                .map(|(id, n, share)| format!("node {id}: {share:?} ({n} events)"))
                .collect::<Vec<_>>()
                .join("; "),
            if c == Contender::Bare {
                String::new()
            } else {
                r.revoked_in_window.to_string()
            },
        );
    }
    for c in [Contender::Spoor1, Contender::Spoor2] {
        if let Some(r) = best(c) {
            println!(
                "{}: group settled {:.1} s after start, backlog produced in {:.1} s (neither timed); {:.0} flushes, {:.0} files",
                c.label(),
                r.settle,
                r.produce,
                r.flushes,
                r.files
            );
        }
    }
    let rate = |c: Contender| best(c).map(|r| events / r.wall);
    let per_ingest_cpu =
        |c: Contender| best(c).map(|r| events / r.cpu_of("ingest node").max(f64::MIN_POSITIVE));
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let two_over_one = ratio(rate(Contender::Spoor2), rate(Contender::Spoor1));
    let one_over_bare = ratio(rate(Contender::Spoor1), rate(Contender::Bare));
    let two_over_bare = ratio(rate(Contender::Spoor2), rate(Contender::Bare));
    let efficiency = ratio(
        per_ingest_cpu(Contender::Spoor2),
        per_ingest_cpu(Contender::Spoor1),
    );
    println!();
    if let Some(r) = two_over_one {
        println!("ratio 2 ingest nodes ÷ 1 ingest node, events/s: {r:.2}");
    }
    if let Some(r) = efficiency {
        println!("ratio 2 ingest nodes ÷ 1 ingest node, events per ingest CPU-s: {r:.2}");
    }
    for (label, r) in [
        ("1 ingest node", one_over_bare),
        ("2 ingest nodes", two_over_bare),
    ] {
        if let Some(r) = r {
            println!(
                "ratio spoor ({label}) ÷ bare consumer, events/s: {r:.3}  (target ≥ 0.5: {})",
                if r >= 0.5 { "met" } else { "MISSED" }
            );
        }
    }
    println!();
    println!("load average after the runs: {}", load_average());
    report_slow_stops();

    let summary: Vec<Value> = [Contender::Spoor1, Contender::Spoor2, Contender::Bare]
        .iter()
        .filter_map(|&c| {
            let r = best(c)?;
            let total: f64 = r.cpu.iter().map(|(_, s)| s).sum();
            Some(json!({
                "contender": c.key(),
                "label": c.label(),
                "wall_s": r.wall,
                "events_per_s": events / r.wall,
                "mb_per_s": mb / r.wall,
                "cpu_s": r.cpu.iter().map(|(who, s)| json!({"process": who, "cpu_s": s})).collect::<Vec<_>>(),
                "cpu_s_all": total,
                "cores_busy": total / r.wall,
                "nodes": r.nodes.iter().map(|(id, n, share)| json!({"node": id, "events": n, "partitions": share})).collect::<Vec<_>>(),
                "rebalances_in_window": r.revoked_in_window,
                "settle_s": r.settle,
                "produce_s": r.produce,
            }))
        })
        .collect();
    report_line(
        "ingest_scaling",
        json!({
            "events": settings.events,
            "json_mb": mb,
            "partitions": settings.partitions,
            "rounds": settings.rounds,
            "cpus": cpus,
            "runs": summary,
            "ratios": {
                "nodes_2_over_1_events_per_s": two_over_one,
                "nodes_2_over_1_events_per_ingest_cpu_s": efficiency,
                "nodes_1_over_bare_events_per_s": one_over_bare,
                "nodes_2_over_bare_events_per_s": two_over_bare,
            },
            "slow_stops": slow_stops(),
            "load_average_after": load_average(),
        }),
    );
}

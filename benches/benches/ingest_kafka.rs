//! End-to-end Kafka ingest throughput, per wall second and per CPU second,
//! side by side with two peers on the same data in the same run.
//!
//! Input: the lines of the public Windows corpus
//! (`../shared/corpus/events/otrf-windows`, Sysmon and Security events of
//! about 1.8 KB each) repeated in order up to `INGEST_BENCH_EVENTS` events.
//! They are produced to a loopback tansu broker (in-memory storage) before
//! anything is timed, so producing competes with nobody, and written once to
//! a local NDJSON file with the same lines in the same order.
//!
//! Contenders, one after the other in every round (the machine has 2 cores):
//!
//! - `spoor ingest`: the release `spoor standalone` binary consuming the
//!   topic with its default ingest settings (the topic configured with the
//!   `INGEST_BENCH_SOURCE_TYPE` parser), writing zstd Parquet to local
//!   disk and committing every flush to its Raft catalog (fsynced redb). The
//!   clock starts when it logs its partition assignment (so process start-up
//!   and the consumer-group join are not counted) and stops when its
//!   `spoor_ingest_events_total` + `spoor_ingest_dead_letters_total`
//!   counters on `/metrics` reach the event count; a `SELECT count(*)` then
//!   checks the catalog holds every event.
//! - `bare consumer`: this bench binary re-run as a child process holding an
//!   rdkafka `BaseConsumer` (the same bundled librdkafka Spoor links) that is
//!   assigned every partition from the beginning and discards each message:
//!   the most any consumer of this broker can read. Both Kafka readers get
//!   the librdkafka properties of `INGEST_BENCH_KAFKA_PROPERTIES` (default
//!   `fetch.wait.max.ms=0`, see [`DEFAULT_KAFKA_PROPERTIES`]).
//! - `duckdb 1 thread` / `duckdb all threads`: DuckDB (Python package, in a
//!   venv under `~/.cache/spoor/duckdb-venv`, installed by pip if missing)
//!   running `COPY (SELECT * FROM read_ndjson_auto(f)) TO out (FORMAT
//!   parquet, COMPRESSION zstd)` over the NDJSON file: a plain JSON → Parquet
//!   converter's cost per core. With more than 200 distinct keys DuckDB
//!   infers a single `MAP(VARCHAR, JSON)` column, so `duckdb columns …` runs
//!   the same with `map_inference_threshold = -1`: one column per key.
//!
//! Every contender runs in its own process, whose CPU time (user + system,
//! `/proc/<pid>/stat` or `getrusage`) over the timed window is reported
//! beside the wall time: events and MB of JSON per CPU second are the
//! per-core figures. For Spoor the CPU is also split by thread (the Kafka
//! poll thread, librdkafka's threads, the tokio workers that normalize,
//! encode and commit), with the time spent in flushes from
//! `spoor_ingest_flush_seconds`.
//!
//! Run: `cargo bench -p spoor-benches --bench ingest_kafka`. It builds the
//! release `spoor` binary first (or uses `INGEST_BENCH_SPOOR_BIN`). Knobs:
//! `INGEST_BENCH_EVENTS` (default 250,000, about 450 MB; a round then takes
//! about 80 s), `INGEST_BENCH_PARTITIONS` (4), `INGEST_BENCH_ROUNDS` (3),
//! `INGEST_BENCH_SOURCE_TYPE` (`windows`; the parser configured for the
//! topic), `INGEST_BENCH_SETS` (extra whitespace-separated `key=value`
//! overrides passed to spoor as `--set`), `INGEST_BENCH_KAFKA_PROPERTIES`
//! (`k=v,k=v`), `INGEST_BENCH_ONLY` (a comma-separated subset of `spoor`,
//! `bare`, `duckdb1`, `duckdb`, `duckdb-columns1`, `duckdb-columns`),
//! `INGEST_BENCH_PYTHON` (a Python with `duckdb`), `TANSU_BIN`. (Not
//! `SPOOR_*`: spoor reads those as configuration.)
//! The best round of each contender counts (the machine is shared): the
//! shortest wall time for the rates, the least CPU time for the per-core
//! figures.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

mod support;
use support::{
    Broker, duckdb_python, env_choices, env_kafka_properties, env_number, http_get, http_post_json,
    kafka_properties_toml, load_average, load_corpus, metric, process_cpu, ready_line,
    release_spoor_binary, report_line, stat_cpu, stop_spoor,
};

const TOPIC: &str = "bench-windows";
/// librdkafka properties given to both Kafka readers unless
/// `INGEST_BENCH_KAFKA_PROPERTIES` says otherwise. tansu 0.6 holds every
/// fetch for the consumer's whole `fetch.wait.max.ms` (500 ms by default)
/// even when it has data to return, which caps any consumer at about 20 MB/s
/// whatever it does with the messages; a Kafka broker answers at once when
/// data is waiting. With no wait the broker's read speed is the limit again.
const DEFAULT_KAFKA_PROPERTIES: &str = "fetch.wait.max.ms=0";
/// The longest any one contender may take before the run fails.
const CONTENDER_TIMEOUT: Duration = Duration::from_secs(300);
/// How often the bench reads Spoor's `/metrics` while it ingests: often
/// enough that the stop time is within a few percent of a multi-second run,
/// rarely enough that rendering the metrics costs Spoor nothing measurable.
const METRICS_POLL: Duration = Duration::from_millis(50);

/// The DuckDB side: one `COPY` of the NDJSON file to zstd Parquet, timed and
/// its process CPU measured around that statement alone.
const DUCKDB_SCRIPT: &str = r#"
import json, resource, sys, time
import duckdb
src, out, threads, options = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
if threads != "all":
    con.execute(f"SET threads={int(threads)}")
nthreads = con.execute("SELECT current_setting('threads')").fetchone()[0]
q = lambda s: "'" + s.replace("'", "''") + "'"
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c0, t0 = cpu(), time.perf_counter()
con.execute(f"COPY (SELECT * FROM read_ndjson_auto({q(src)}{options})) TO {q(out)} (FORMAT parquet, COMPRESSION zstd)")
t1, c1 = time.perf_counter(), cpu()
rows = con.execute(f"SELECT count(*) FROM read_parquet({q(out)})").fetchone()[0]
cols = len(con.execute(f"DESCRIBE SELECT * FROM read_parquet({q(out)})").fetchall())
print(json.dumps({"version": duckdb.__version__, "threads": nthreads, "wall_s": t1 - t0,
                  "cpu_s": c1 - c0, "rows": rows, "columns": cols}))
"#;

fn main() -> Result<()> {
    if let Some(done) = support::bare::child_main() {
        return done;
    }
    let settings = Settings::from_env()?;
    let corpus = load_corpus()?;
    let work = tempfile::Builder::new()
        .prefix("spoor-ingest-bench")
        .tempdir()
        .context("temporary folder")?;
    let spoor_bin = release_spoor_binary("INGEST_BENCH_SPOOR_BIN")?;
    let python = if settings.contenders.iter().any(|c| c.duckdb().is_some()) {
        Some(duckdb_python("INGEST_BENCH_PYTHON")?)
    } else {
        None
    };

    // The same lines, in the same order, for every contender.
    let lines: Vec<&[u8]> = corpus
        .iter()
        .cycle()
        .take(settings.events)
        .map(Vec::as_slice)
        .collect();
    let json_bytes: usize = lines.iter().map(|l| l.len()).sum();
    let ndjson = work.path().join("events.jsonl");
    write_ndjson(&ndjson, &lines)?;

    let broker = Broker::start()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime for the admin client")?
        .block_on(broker.create_topic(TOPIC, settings.partitions))?;
    let produced = Instant::now();
    broker.produce(TOPIC, settings.partitions, &lines)?;
    let produce_time = produced.elapsed();
    drop(lines);
    drop(corpus);

    println!(
        "input: otrf-windows repeated to {} events, {:.1} MB of JSON, topic `{TOPIC}` with {} partitions (produced in {:.1} s, not timed)",
        settings.events,
        json_bytes as f64 / 1e6,
        settings.partitions,
        produce_time.as_secs_f64(),
    );
    println!("spoor: {}", spoor_bin.display());
    println!(
        "machine: {} CPUs, load average before the rounds {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );

    let mut results: BTreeMap<Contender, Vec<Sample>> = BTreeMap::new();
    let mut spoor_details: Vec<SpoorDetail> = Vec::new();
    let mut duckdb_info = String::new();
    for round in 0..settings.rounds {
        for &contender in &settings.contenders {
            let sample = match (contender, contender.duckdb(), &python) {
                (Contender::Spoor, _, _) => {
                    let (sample, detail) =
                        run_spoor(&spoor_bin, &broker, &settings, work.path(), round)?;
                    spoor_details.push(detail);
                    sample
                }
                (Contender::Bare, _, _) => run_bare(&broker, &settings)?,
                (_, Some((threads, options)), Some(python)) => {
                    let (sample, info) = run_duckdb(
                        python,
                        &ndjson,
                        work.path(),
                        threads,
                        options,
                        settings.events,
                    )?;
                    duckdb_info = info;
                    sample
                }
                _ => bail!("no Python with duckdb for {}", contender.label()),
            };
            eprintln!(
                "round {}: {:<28} wall {:>7.2} s  cpu {:>7.2} s  broker cpu {:>6.2} s",
                round + 1,
                contender.label(),
                sample.wall.as_secs_f64(),
                sample.cpu_s,
                sample.broker_cpu_s
            );
            results.entry(contender).or_default().push(sample);
        }
    }

    report(
        &settings,
        json_bytes,
        &results,
        &spoor_details,
        &duckdb_info,
    );
    Ok(())
}

/// Sizes and knobs, from the environment.
struct Settings {
    events: usize,
    partitions: i32,
    rounds: usize,
    source_type: String,
    extra_sets: Vec<String>,
    /// librdkafka properties for both Kafka readers (`k=v,k=v`).
    kafka_properties: Vec<(String, String)>,
    contenders: Vec<Contender>,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let settings = Settings {
            events: env_number("INGEST_BENCH_EVENTS", 250_000)?,
            partitions: env_number("INGEST_BENCH_PARTITIONS", 4)?,
            rounds: env_number("INGEST_BENCH_ROUNDS", 3)?,
            source_type: std::env::var("INGEST_BENCH_SOURCE_TYPE")
                .unwrap_or_else(|_| "windows".into()),
            extra_sets: std::env::var("INGEST_BENCH_SETS")
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            kafka_properties: env_kafka_properties(
                "INGEST_BENCH_KAFKA_PROPERTIES",
                DEFAULT_KAFKA_PROPERTIES,
            )?,
            contenders: env_choices("INGEST_BENCH_ONLY", &Contender::ALL, Contender::key)?,
        };
        if settings.events == 0 || settings.partitions < 1 || settings.rounds == 0 {
            bail!(
                "INGEST_BENCH_EVENTS, INGEST_BENCH_PARTITIONS and INGEST_BENCH_ROUNDS must be > 0"
            );
        }
        Ok(settings)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Contender {
    Spoor,
    Bare,
    /// `read_ndjson_auto` as is: with more than 200 distinct keys (these
    /// events have about 250) DuckDB infers one `MAP(VARCHAR, JSON)` column.
    DuckDbMap1,
    DuckDbMapAll,
    /// `map_inference_threshold = -1`: one column per key, as a columnar
    /// lake would store them.
    DuckDbColumns1,
    DuckDbColumnsAll,
}

impl Contender {
    /// Round order: the Kafka readers between DuckDB runs, so no contender
    /// always follows the same one into a warm (or cold) machine.
    const ALL: [Contender; 6] = [
        Contender::Spoor,
        Contender::DuckDbMap1,
        Contender::DuckDbColumns1,
        Contender::Bare,
        Contender::DuckDbMapAll,
        Contender::DuckDbColumnsAll,
    ];

    fn label(self) -> &'static str {
        match self {
            Contender::Spoor => "spoor ingest",
            Contender::Bare => "bare consumer",
            Contender::DuckDbMap1 => "duckdb 1 thread",
            Contender::DuckDbMapAll => "duckdb all threads",
            Contender::DuckDbColumns1 => "duckdb columns 1 thread",
            Contender::DuckDbColumnsAll => "duckdb columns all threads",
        }
    }

    /// Its name in `INGEST_BENCH_ONLY`.
    fn key(self) -> &'static str {
        match self {
            Contender::Spoor => "spoor",
            Contender::Bare => "bare",
            Contender::DuckDbMap1 => "duckdb1",
            Contender::DuckDbMapAll => "duckdb",
            Contender::DuckDbColumns1 => "duckdb-columns1",
            Contender::DuckDbColumnsAll => "duckdb-columns",
        }
    }

    /// DuckDB's thread setting and extra `read_ndjson_auto` options.
    fn duckdb(self) -> Option<(&'static str, &'static str)> {
        const COLUMNS: &str = ", map_inference_threshold = -1";
        match self {
            Contender::Spoor | Contender::Bare => None,
            Contender::DuckDbMap1 => Some(("1", "")),
            Contender::DuckDbMapAll => Some(("all", "")),
            Contender::DuckDbColumns1 => Some(("1", COLUMNS)),
            Contender::DuckDbColumnsAll => Some(("all", COLUMNS)),
        }
    }
}

/// One contender's timed window.
#[derive(Debug, Clone, Copy)]
struct Sample {
    wall: Duration,
    /// CPU seconds of the contender's process over the window.
    cpu_s: f64,
    /// CPU seconds of the broker over the same window (0 for DuckDB).
    broker_cpu_s: f64,
    /// Parquet bytes written (0 for the bare consumer).
    out_bytes: u64,
}

/// What Spoor spent its CPU on in one round.
#[derive(Debug, Clone, Default)]
struct SpoorDetail {
    cpu_s: f64,
    /// CPU seconds by thread group over the window.
    threads: BTreeMap<String, f64>,
    flush_seconds: f64,
    flushes: f64,
    files: f64,
    startup: Duration,
}

// ---------------------------------------------------------------------------
// Input

fn write_ndjson(path: &Path, lines: &[&[u8]]) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    for l in lines {
        w.write_all(l)?;
        w.write_all(b"\n")?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Binaries

// ---------------------------------------------------------------------------
// CPU accounting from /proc

/// CPU seconds of each live thread of `pid`, by thread id, with its name.
fn thread_cpu(pid: u32) -> Result<BTreeMap<String, (String, f64)>> {
    let mut out = BTreeMap::new();
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let tid = entry.file_name().to_string_lossy().into_owned();
        // A thread can exit between the listing and the read: skip it, its
        // time stays in the process total and lands in "exited".
        let Ok(name) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        let Ok(cpu) = stat_cpu(&entry.path().join("stat")) else {
            continue;
        };
        out.insert(tid, (name.trim().to_string(), cpu));
    }
    Ok(out)
}

/// The group a Spoor thread's CPU is reported under: its role for the
/// threads whose names say it, else its own name.
fn thread_group(name: &str) -> String {
    if name.starts_with("spoor-kafka") {
        "kafka poll thread".into()
    } else if name.starts_with("rdk:") {
        "librdkafka threads".into()
    } else if name.starts_with("tokio-r") {
        // "tokio-rt-worker" (tokio ≥ 1.44) or "tokio-runtime-worker": the
        // async workers (normalize, encode, commit, Raft, HTTP) and the
        // blocking pool (file writes).
        "tokio threads".into()
    } else {
        format!("thread `{name}`")
    }
}

// ---------------------------------------------------------------------------
// Bare consumer

/// Runs the bare consumer (`support::bare`) over the topic.
fn run_bare(broker: &Broker, settings: &Settings) -> Result<Sample> {
    let bare = support::bare::run(
        broker,
        TOPIC,
        settings.partitions,
        settings.events,
        &settings.kafka_properties,
        CONTENDER_TIMEOUT,
    )?;
    Ok(Sample {
        wall: bare.wall,
        cpu_s: bare.cpu_s,
        broker_cpu_s: bare.broker_cpu_s,
        out_bytes: 0,
    })
}

// ---------------------------------------------------------------------------
// Spoor

/// A running `spoor standalone`, killed on drop if not stopped.
struct SpoorProcess {
    child: Option<Child>,
    http: String,
    /// The last lines of its log, for failure messages.
    log: Arc<Mutex<Vec<String>>>,
}

impl SpoorProcess {
    fn pid(&self) -> Result<u32> {
        self.child
            .as_ref()
            .map(Child::id)
            .context("spoor is not running")
    }

    fn log_tail(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// SIGTERM and wait for a clean exit (falls back to SIGKILL).
    fn stop(&mut self) -> Result<()> {
        stop_spoor(&mut self.child)
    }
}

impl Drop for SpoorProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run_spoor(
    bin: &Path,
    broker: &Broker,
    settings: &Settings,
    work: &Path,
    round: usize,
) -> Result<(Sample, SpoorDetail)> {
    let dir = tempfile::Builder::new()
        .prefix("spoor-data")
        .tempdir_in(work)
        .context("spoor data folder")?;
    let config = dir.path().join("spoor.toml");
    // A fresh consumer group per round: nothing of an earlier round's group
    // (static member, committed offsets) can touch this one.
    let mut toml = format!(
        "[ingest.kafka]\nbrokers = \"{}\"\ntopics = [\"{TOPIC}\"]\ngroup_id = \"spoor-bench-{round}\"\n\n\
         [[ingest.sources]]\ntopics = [\"{TOPIC}\"]\nsource_type = \"{}\"\n",
        broker.bootstrap, settings.source_type
    );
    toml.push_str(&kafka_properties_toml(&settings.kafka_properties));
    std::fs::write(&config, toml).context("writing the spoor config")?;
    let data = dir.path().join("data");
    let started = Instant::now();
    let mut child = Command::new(bin)
        .arg("standalone")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
        .args(
            settings
                .extra_sets
                .iter()
                .flat_map(|s| ["--set", s.as_str()]),
        )
        .env("SPOOR_LOG__FILTER", "info,openraft=warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("spoor stdout")?;
    let stderr = child.stderr.take().context("spoor stderr")?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let ready_rx = ready_line(stdout);
    let (assigned_tx, assigned_rx) = mpsc::channel();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("partitions assigned") {
                    let _ = assigned_tx.send(Instant::now());
                }
                if let Ok(mut log) = log.lock() {
                    if log.len() >= 40 {
                        log.remove(0);
                    }
                    log.push(line);
                }
            }
        });
    }
    let mut spoor = SpoorProcess {
        child: Some(child),
        http: String::new(),
        log,
    };
    let ready = ready_rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| {
            anyhow!(
                "spoor printed no ready line in 60 s; log:\n{}",
                spoor.log_tail()
            )
        })?;
    let http = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .with_context(|| format!("no http= in ready line {ready:?}"))?;
    spoor.http = http.to_string();
    let pid = spoor.pid()?;

    // The clock starts at the assignment: reading begins right after it.
    let t0 = assigned_rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| {
            anyhow!(
                "spoor was assigned no partitions in 60 s; log:\n{}",
                spoor.log_tail()
            )
        })?;
    let (cpu0, threads0, broker0) = (process_cpu(pid)?, thread_cpu(pid)?, broker.cpu()?);
    let startup = t0.duration_since(started);
    let want = settings.events as f64;
    let metrics = loop {
        let text = http_get(&spoor.http, "/metrics")?;
        let done = metric(&text, "spoor_ingest_events_total")
            + metric(&text, "spoor_ingest_dead_letters_total");
        if done >= want {
            break text;
        }
        if t0.elapsed() > CONTENDER_TIMEOUT {
            bail!(
                "spoor committed {done} of {want} events in {CONTENDER_TIMEOUT:?}; log:\n{}",
                spoor.log_tail()
            );
        }
        std::thread::sleep(METRICS_POLL);
    };
    let wall = t0.elapsed();
    let (cpu1, threads1, broker1) = (process_cpu(pid)?, thread_cpu(pid)?, broker.cpu()?);

    // The catalog must hold every event, not just the counter.
    let dead = metric(&metrics, "spoor_ingest_dead_letters_total");
    if dead > 0.0 {
        bail!(
            "spoor sent {dead} events to dead letters; log:\n{}",
            spoor.log_tail()
        );
    }
    let body = http_post_json(
        &spoor.http,
        "/v1/query",
        &serde_json::json!({ "sql": "SELECT count(*) AS n FROM events" }),
    )?;
    let counted = body["rows"][0]["n"]
        .as_i64()
        .with_context(|| format!("count(*) answer {body}"))?;
    if counted != settings.events as i64 {
        bail!(
            "the catalog holds {counted} events, {} were produced",
            settings.events
        );
    }

    let mut groups: BTreeMap<String, f64> = BTreeMap::new();
    for (tid, (name, cpu)) in &threads1 {
        let before = threads0.get(tid).map_or(0.0, |(_, c)| *c);
        *groups.entry(thread_group(name)).or_default() += cpu - before;
    }
    let cpu_s = cpu1 - cpu0;
    let live: f64 = groups.values().sum();
    // Threads that ran in the window and exited before its end.
    groups.insert("exited threads".into(), (cpu_s - live).max(0.0));
    let detail = SpoorDetail {
        cpu_s,
        threads: groups,
        flush_seconds: metric(&metrics, "spoor_ingest_flush_seconds_sum"),
        flushes: metric(&metrics, "spoor_ingest_flush_seconds_count"),
        files: metric(&metrics, "spoor_ingest_files_written_total"),
        startup,
    };
    spoor.stop()?;
    let out_bytes = dir_bytes(&data.join("lake"), "parquet");
    Ok((
        Sample {
            wall,
            cpu_s,
            broker_cpu_s: broker1 - broker0,
            out_bytes,
        },
        detail,
    ))
}

/// Bytes of the files ending in `.ext` under `dir`.
fn dir_bytes(dir: &Path, ext: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_bytes(&p, ext)
            } else if p.extension().is_some_and(|x| x == ext) {
                e.metadata().map_or(0, |m| m.len())
            } else {
                0
            }
        })
        .sum()
}

// ---------------------------------------------------------------------------
// DuckDB

fn run_duckdb(
    python: &Path,
    ndjson: &Path,
    work: &Path,
    threads: &str,
    options: &str,
    events: usize,
) -> Result<(Sample, String)> {
    let out_path = work.join("duckdb-out.parquet");
    let out = Command::new(python)
        .arg("-c")
        .arg(DUCKDB_SCRIPT)
        .arg(ndjson)
        .arg(&out_path)
        .arg(threads)
        .arg(options)
        .stderr(Stdio::inherit())
        .output()
        .context("running duckdb")?;
    if !out.status.success() {
        bail!("duckdb failed ({})", out.status);
    }
    // The report is the last line (anything DuckDB prints comes before it).
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().next_back().unwrap_or_default();
    let report: Value =
        serde_json::from_str(last).with_context(|| format!("duckdb output {stdout:?}"))?;
    let rows = report["rows"].as_u64().context("rows")?;
    if rows != events as u64 {
        bail!("duckdb wrote {rows} rows, wanted {events}");
    }
    let out_bytes = std::fs::metadata(&out_path).map_or(0, |m| m.len());
    std::fs::remove_file(&out_path).context("removing the duckdb output")?;
    let info = format!("DuckDB {}", report["version"].as_str().unwrap_or("?"));
    eprintln!(
        "duckdb threads={} options={options:?}: {} columns",
        report["threads"], report["columns"]
    );
    Ok((
        Sample {
            wall: Duration::from_secs_f64(report["wall_s"].as_f64().context("wall_s")?),
            cpu_s: report["cpu_s"].as_f64().context("cpu_s")?,
            broker_cpu_s: 0.0,
            out_bytes,
        },
        info,
    ))
}

// ---------------------------------------------------------------------------
// Report

fn report(
    settings: &Settings,
    json_bytes: usize,
    results: &BTreeMap<Contender, Vec<Sample>>,
    spoor: &[SpoorDetail],
    duckdb_info: &str,
) {
    let events = settings.events as f64;
    let mb = json_bytes as f64 / 1e6;
    let best_wall = |c: Contender| {
        results
            .get(&c)
            .and_then(|s| s.iter().min_by(|a, b| a.wall.cmp(&b.wall)).copied())
    };
    let best_cpu = |c: Contender| {
        results
            .get(&c)
            .and_then(|s| s.iter().min_by(|a, b| a.cpu_s.total_cmp(&b.cpu_s)).copied())
    };
    println!();
    println!(
        "{} rounds; per contender the round with the least wall time gives wall, events/s, MB/s, \
         broker CPU and Parquet size, the round with the least CPU time gives the CPU columns{}",
        settings.rounds,
        if duckdb_info.is_empty() {
            String::new()
        } else {
            format!("; {duckdb_info}")
        }
    );
    println!();
    println!(
        "| contender | wall s | events/s | MB/s | CPU s | events/CPU-s | MB/CPU-s | broker CPU s | Parquet MB |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut order = Contender::ALL;
    order.sort();
    for c in order {
        let (Some(w), Some(p)) = (best_wall(c), best_cpu(c)) else {
            continue;
        };
        let wall = w.wall.as_secs_f64();
        println!(
            "| {} | {:.2} | {:.0} | {:.1} | {:.2} | {:.0} | {:.1} | {} | {} |",
            c.label(),
            wall,
            events / wall,
            mb / wall,
            p.cpu_s,
            events / p.cpu_s,
            mb / p.cpu_s,
            if c.duckdb().is_none() {
                format!("{:.2}", w.broker_cpu_s)
            } else {
                String::new()
            },
            if w.out_bytes > 0 {
                format!("{:.1}", w.out_bytes as f64 / 1e6)
            } else {
                String::new()
            },
        );
    }
    // Spoor's throughput as a ratio of a peer's: > 1 means Spoor is faster.
    let by_wall = |peer: Contender| match (best_wall(Contender::Spoor), best_wall(peer)) {
        (Some(a), Some(b)) => Some(b.wall.as_secs_f64() / a.wall.as_secs_f64()),
        _ => None,
    };
    let by_cpu = |peer: Contender| match (best_cpu(Contender::Spoor), best_cpu(peer)) {
        (Some(a), Some(b)) => Some(b.cpu_s / a.cpu_s),
        _ => None,
    };
    println!();
    if let Some(r) = by_wall(Contender::Bare) {
        println!(
            "ratio spoor ÷ bare consumer, events/s: {r:.3}  (target ≥ 0.5: {})",
            verdict(r >= 0.5)
        );
    }
    if let Some(r) = by_cpu(Contender::Bare) {
        println!("ratio spoor ÷ bare consumer, events per CPU-s: {r:.3}");
    }
    for peer in [
        Contender::DuckDbMap1,
        Contender::DuckDbColumns1,
        Contender::DuckDbMapAll,
        Contender::DuckDbColumnsAll,
    ] {
        if let Some(r) = by_cpu(peer) {
            let target = if peer == Contender::DuckDbMap1 || peer == Contender::DuckDbColumns1 {
                format!("  (target > 1: {})", verdict(r > 1.0))
            } else {
                String::new()
            };
            println!(
                "ratio spoor ÷ {}, events per CPU-s: {r:.3}{target}",
                peer.label()
            );
        }
        if let Some(r) = by_wall(peer) {
            println!("ratio spoor ÷ {}, events/s: {r:.3}", peer.label());
        }
    }

    if let Some(d) = spoor.iter().min_by(|a, b| a.cpu_s.total_cmp(&b.cpu_s)) {
        println!();
        println!(
            "spoor, least-CPU round: {:.2} CPU s; start-up to partition assignment {:.2} s (not timed)",
            d.cpu_s,
            d.startup.as_secs_f64()
        );
        for (group, s) in &d.threads {
            println!(
                "  {group:<24} {s:>7.2} CPU s  ({:>4.1}%)",
                100.0 * s / d.cpu_s.max(f64::MIN_POSITIVE)
            );
        }
        println!(
            "  flushes: {:.0} taking {:.2} s in all (write Parquet + catalog commit, spoor_ingest_flush_seconds), {:.0} files",
            d.flushes, d.flush_seconds, d.files
        );
    }
    println!();
    println!("load average after the rounds: {}", load_average());

    let contenders: Vec<serde_json::Value> = order
        .iter()
        .filter_map(|&c| {
            let (w, p) = (best_wall(c)?, best_cpu(c)?);
            let wall = w.wall.as_secs_f64();
            Some(serde_json::json!({
                "contender": c.key(),
                "label": c.label(),
                "wall_s": wall,
                "events_per_s": events / wall,
                "mb_per_s": mb / wall,
                "cpu_s": p.cpu_s,
                "events_per_cpu_s": events / p.cpu_s,
                "broker_cpu_s": c.duckdb().is_none().then_some(w.broker_cpu_s),
            }))
        })
        .collect();
    let mut ratios = serde_json::Map::new();
    if let Some(r) = by_wall(Contender::Bare) {
        ratios.insert("spoor_over_bare_events_per_s".into(), r.into());
    }
    if let Some(r) = by_cpu(Contender::Bare) {
        ratios.insert("spoor_over_bare_events_per_cpu_s".into(), r.into());
    }
    for peer in [
        Contender::DuckDbMap1,
        Contender::DuckDbColumns1,
        Contender::DuckDbMapAll,
        Contender::DuckDbColumnsAll,
    ] {
        let key = peer.key().replace('-', "_");
        if let Some(r) = by_cpu(peer) {
            ratios.insert(format!("spoor_over_{key}_events_per_cpu_s"), r.into());
        }
        if let Some(r) = by_wall(peer) {
            ratios.insert(format!("spoor_over_{key}_events_per_s"), r.into());
        }
    }
    report_line(
        "ingest_kafka",
        serde_json::json!({
            "events": settings.events,
            "json_mb": mb,
            "partitions": settings.partitions,
            "rounds": settings.rounds,
            "duckdb": duckdb_info,
            "contenders": contenders,
            "ratios": ratios,
            "load_average_after": load_average(),
        }),
    );
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

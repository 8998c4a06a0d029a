//! Helpers shared by the benches, each of which includes this folder with
//! `mod support;` (a folder under `benches/` without a `main.rs` is no bench
//! target of its own): the Windows event corpus, the release `spoor` binary,
//! CPU accounting from `/proc`, a loopback tansu broker, plain HTTP to
//! Spoor's listeners, the machine-readable summary line, a local cluster of
//! spoor processes ([`cluster`]) and the bare Kafka consumer ([`bare`]).

// Every bench is a crate of its own that uses a subset of these helpers
// (`normalize_encode` and `detection` only the corpus, only `ingest_kafka`
// the broker's CPU), so what one leaves unused would warn as dead code there.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use serde_json::Value;

pub(crate) mod bare;
pub(crate) mod cluster;

// ---------------------------------------------------------------------------
// Summary

/// Prints the bench's machine-readable summary: one line `REPORT <json>`
/// with `"bench": name` added, which `benches/run-report.sh` collects into
/// `benches/report/REPORT.md`. Every figure in it is one the bench printed
/// above in its human-readable report.
pub(crate) fn report_line(name: &str, mut summary: Value) {
    if let Value::Object(map) = &mut summary {
        map.insert("bench".into(), Value::String(name.into()));
    }
    println!("REPORT {summary}");
}

// ---------------------------------------------------------------------------
// Input

/// The shared corpus (`../shared/corpus`).
pub(crate) fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")
}

/// The event files of the public Windows corpus
/// (`../shared/corpus/events/otrf-windows`), sorted.
pub(crate) fn event_files() -> Result<Vec<PathBuf>> {
    let dir = corpus().join("events/otrf-windows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("corpus at {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    Ok(files)
}

/// The lines of the event files, in order, blank lines left out.
pub(crate) fn load_corpus() -> Result<Vec<Vec<u8>>> {
    let mut lines = Vec::new();
    for f in event_files()? {
        let text = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
        lines.extend(
            text.split(|b| *b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .map(<[u8]>::to_vec),
        );
    }
    if lines.is_empty() {
        bail!(
            "no events in {}",
            corpus().join("events/otrf-windows").display()
        );
    }
    Ok(lines)
}

// ---------------------------------------------------------------------------
// Settings

/// The number in the environment variable `name` (`_` separators allowed:
/// `250_000`), else `default`.
pub(crate) fn env_number<T: FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .map_err(|_| anyhow!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// librdkafka properties (`k=v,k=v`) from the environment variable `name`,
/// else from `default`.
pub(crate) fn env_kafka_properties(name: &str, default: &str) -> Result<Vec<(String, String)>> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter(|kv| !kv.trim().is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .with_context(|| format!("{name}: {kv:?} is not key=value"))
        })
        .collect()
}

/// The choices named in the environment variable `name` (comma-separated
/// keys, as `key` gives them), else all of `all`.
pub(crate) fn env_choices<T: Copy>(
    name: &str,
    all: &[T],
    key: fn(T) -> &'static str,
) -> Result<Vec<T>> {
    match std::env::var(name) {
        Ok(names) => names
            .split(',')
            .map(|n| {
                all.iter()
                    .copied()
                    .find(|&c| key(c) == n.trim())
                    .with_context(|| {
                        let keys: Vec<_> = all.iter().map(|&c| key(c)).collect();
                        format!("{name}: unknown {n:?}, expected some of {keys:?}")
                    })
            })
            .collect(),
        Err(_) => Ok(all.to_vec()),
    }
}

/// The `[ingest.kafka.properties]` table of a spoor config holding
/// `properties` (nothing when there are none), to append to the config.
pub(crate) fn kafka_properties_toml(properties: &[(String, String)]) -> String {
    let mut toml = String::new();
    if !properties.is_empty() {
        toml.push_str("\n[ingest.kafka.properties]\n");
        for (k, v) in properties {
            toml.push_str(&format!("{k:?} = {v:?}\n"));
        }
    }
    toml
}

// ---------------------------------------------------------------------------
// Binaries and processes

/// The release `spoor` binary: the path in `env_var` (each bench has its
/// own, as `SPOOR_*` variables are spoor's configuration), else built now
/// with `cargo build --release` so it is never stale (a debug build's
/// figures would mean nothing).
pub(crate) fn release_spoor_binary(env_var: &str) -> Result<PathBuf> {
    if let Ok(p) = std::env::var(env_var) {
        return Ok(PathBuf::from(p));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building the release spoor binary (cargo build --release -p spoor)...");
    let mut build = Command::new(&cargo);
    // Not the variables cargo set for this bench crate: build scripts that
    // declare `rerun-if-env-changed` on them (ring's) would rebuild the
    // release tree whenever a bench and the shell build in turn.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_",
            "CARGO_PRIMARY_PACKAGE",
            "OUT_DIR",
        ]
        .iter()
        .any(|p| key.starts_with(p))
        {
            build.env_remove(&*key);
        }
    }
    let out = build
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "spoor",
            "--bin",
            "spoor",
            "--message-format",
            "json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build --release -p spoor")?;
    if !out.status.success() {
        bail!("cargo build --release -p spoor failed ({})", out.status);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "spoor")
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .next_back()
        .context("cargo did not report the spoor executable")
}

pub(crate) fn tansu_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cached = PathBuf::from(home).join(".cache/spoor/tansu/bin/tansu");
    if cached.exists() {
        return Ok(cached);
    }
    bail!(
        "no tansu broker: run `bash .ci/run` once (it installs one into ~/.cache/spoor/tansu) or set TANSU_BIN"
    )
}

/// SIGTERM to a running spoor and wait for a clean exit (falls back to
/// SIGKILL); `None` once it has been stopped.
pub(crate) fn stop_spoor(child: &mut Option<Child>) -> Result<()> {
    let Some(mut child) = child.take() else {
        return Ok(());
    };
    let pid = child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .context("running kill")?;
    if status.success() {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    child.kill().context("kill")?;
    child.wait().context("wait")?;
    bail!("spoor did not stop within 30 s of SIGTERM")
}

/// The first line a spoor process prints on its stdout (its ready line),
/// once printed; the rest is drained so the child never blocks on a full pipe.
pub(crate) fn ready_line(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = ready_tx.send(line);
        }
        for _ in lines {}
    });
    ready_rx
}

// ---------------------------------------------------------------------------
// Peers

/// The DuckDB release the peers are measured with (PyPI package `duckdb`),
/// installed when no venv has it; `benches/run-report.sh` installs the same.
pub(crate) const DUCKDB_VERSION: &str = "2.0.1";

/// A Python that imports `duckdb`: the one in the environment variable
/// `env_var` if set, else the venv under `~/.cache/spoor/duckdb-venv`,
/// created with pip ([`DUCKDB_VERSION`]) if missing.
pub(crate) fn duckdb_python(env_var: &str) -> Result<PathBuf> {
    if let Ok(p) = std::env::var(env_var) {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var("HOME").context("HOME is not set")?;
    let venv = PathBuf::from(home).join(".cache/spoor/duckdb-venv");
    let python = venv.join("bin/python");
    let has_duckdb = |py: &Path| {
        Command::new(py)
            .args(["-c", "import duckdb"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_duckdb(&python) {
        return Ok(python);
    }
    eprintln!(
        "installing duckdb {DUCKDB_VERSION} into {} (pip)...",
        venv.display()
    );
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("running python3 -m venv")?;
    if !status.success() {
        bail!("python3 -m venv {} failed", venv.display());
    }
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", &format!("duckdb=={DUCKDB_VERSION}")])
        .status()
        .context("running pip install duckdb")?;
    if !status.success() || !has_duckdb(&python) {
        bail!("pip install duckdb into {} failed", venv.display());
    }
    Ok(python)
}

// ---------------------------------------------------------------------------
// CPU accounting from /proc

/// Clock ticks per second of `/proc/*/stat` times.
pub(crate) fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds of a process (all its threads, live and
/// exited) or of one thread (`/proc/<pid>/task/<tid>/stat`).
pub(crate) fn stat_cpu(stat_path: &Path) -> Result<f64> {
    let text = std::fs::read_to_string(stat_path)
        .with_context(|| format!("reading {}", stat_path.display()))?;
    // The command name is in parentheses and may hold spaces: count fields
    // from the last ')'. After it come state (field 3) … utime (14), stime (15).
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("malformed {}", stat_path.display()))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("field {} of {}", i + 3, stat_path.display()))
    };
    Ok((field(11)? + field(12)?) / clock_ticks())
}

/// User + system CPU seconds of a process, all its threads.
pub(crate) fn process_cpu(pid: u32) -> Result<f64> {
    stat_cpu(&PathBuf::from(format!("/proc/{pid}/stat")))
}

pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

// ---------------------------------------------------------------------------
// Broker

/// A tansu broker with in-memory storage on a free loopback port.
pub(crate) struct Broker {
    child: Child,
    pub(crate) bootstrap: String,
}

impl Broker {
    pub(crate) fn start() -> Result<Broker> {
        let bin = tansu_binary()?;
        let mut last_err = anyhow!("not started");
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .context("finding a free port")?
                .port();
            let url = format!("tcp://127.0.0.1:{port}");
            let child = Command::new(&bin)
                .args(["broker", "--storage-engine", "memory://tansu/"])
                .args(["--listener-url", &url, "--advertised-listener-url", &url])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let broker = Broker {
                child,
                bootstrap: format!("127.0.0.1:{port}"),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if TcpStream::connect(&broker.bootstrap).is_ok() {
                    return Ok(broker);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            last_err = anyhow!("broker at {} did not listen within 30 s", broker.bootstrap);
        }
        Err(last_err)
    }

    pub(crate) fn cpu(&self) -> Result<f64> {
        process_cpu(self.child.id())
    }

    /// [`Broker::create_topic`] on a runtime of its own, for the benches'
    /// synchronous code.
    pub(crate) fn create_topic_blocking(&self, name: &str, partitions: i32) -> Result<()> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime for the admin client")?
            .block_on(self.create_topic(name, partitions))
    }

    pub(crate) async fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .context("admin client")?;
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let results = admin
            .create_topics(
                [&topic],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .context("create_topics")?;
        for r in results {
            r.map_err(|(t, e)| anyhow!("creating topic {t}: {e}"))?;
        }
        Ok(())
    }

    /// Produces `lines` round-robin over the partitions and waits for every
    /// acknowledgement. (What the topic holds is checked by its readers:
    /// `ingest_kafka`'s bare consumer reads exactly `lines.len()` messages
    /// and then none, and Spoor's catalog must count as many events. High
    /// watermarks cannot check it: tansu 0.6's trail the records it serves.)
    pub(crate) fn produce(&self, topic: &str, partitions: i32, lines: &[&[u8]]) -> Result<()> {
        let producer: ThreadedProducer<Deliveries> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("message.timeout.ms", "120000")
            .create_with_context(Deliveries::default())
            .context("producer")?;
        for (i, line) in lines.iter().enumerate() {
            let partition = i32::try_from(i % partitions as usize).context("partition")?;
            let mut record = BaseRecord::<(), [u8]>::to(topic)
                .partition(partition)
                .payload(line);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((e, _)) => return Err(anyhow!("producing event {i}: {e}")),
                }
            }
        }
        producer
            .flush(Duration::from_secs(120))
            .context("waiting for the broker to acknowledge every event")?;
        producer.context().check()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts failed deliveries.
#[derive(Default)]
pub(crate) struct Deliveries {
    failures: AtomicUsize,
    first_error: Mutex<Option<String>>,
}

impl Deliveries {
    /// An error if any delivery failed, with the first failure's.
    pub(crate) fn check(&self) -> Result<()> {
        let failed = self.failures.load(Ordering::Relaxed);
        if failed > 0 {
            let first = self
                .first_error
                .lock()
                .map(|e| e.clone().unwrap_or_default())
                .unwrap_or_default();
            bail!("{failed} events were not acknowledged, first error: {first}");
        }
        Ok(())
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((e, _)) = result {
            self.failures.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.first_error.lock() {
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP and metrics

/// The sum of every sample of `name` (all label sets) in Prometheus text.
pub(crate) fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// HTTP/1.0 (so the body is never chunked) to a loopback listener.
pub(crate) fn http_request(addr: &str, request: &[u8]) -> Result<String> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(request)?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("reading the answer of {addr}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("malformed HTTP answer from {addr}"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("{addr} answered {head:?}: {body}");
    }
    Ok(body.to_string())
}

pub(crate) fn http_get(addr: &str, path: &str) -> Result<String> {
    http_request(
        addr,
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
}

pub(crate) fn http_get_json(addr: &str, path: &str) -> Result<Value> {
    let body = http_get(addr, path)?;
    serde_json::from_str(&body).with_context(|| format!("JSON answer of {path}: {body}"))
}

pub(crate) fn http_post_json(addr: &str, path: &str, body: &Value) -> Result<Value> {
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = http_request(addr, request.as_bytes())?;
    serde_json::from_str(&answer).with_context(|| format!("JSON answer of {path}: {answer}"))
}

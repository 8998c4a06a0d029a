//! A local Spoor cluster for the benches that run the release binary as
//! several processes (`detection_latency`, `ingest_scaling`): one process per
//! role, each on loopback ports the OS picks, sharing one lake folder
//! (`storage.url`) and reaching the catalog of the process that serves it
//! through `catalog.endpoint`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use super::{process_cpu, ready_line, stop_spoor};

/// Nodes that had to be killed, for the summary.
pub(crate) static SLOW_STOPS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Log lines whose time of arrival a bench may need, with what they say.
const MARKS: [&str; 3] = ["shard started", "partitions assigned", "partitions revoked"];

/// A running spoor process, killed on drop if not stopped.
pub(crate) struct Node {
    child: Option<Child>,
    /// `host:port` of its HTTP listener.
    pub(crate) http: String,
    /// `host:port` of its gRPC listener, if it serves one.
    pub(crate) grpc: Option<String>,
    /// The last lines of its log, for failure messages.
    log: Arc<Mutex<VecDeque<String>>>,
    /// When each line of [`MARKS`] was logged, and the line (ANSI removed).
    marks: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Node {
    /// `spoor <role> --data-dir <data>` on loopback ports with `args`
    /// (`--config`, `--set`), once it has printed its ready line.
    pub(crate) fn start(bin: &Path, role: &str, data: &Path, args: &[String]) -> Result<Node> {
        let mut child = Command::new(bin)
            .arg(role)
            .arg("--data-dir")
            .arg(data)
            .args(["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
            .args(args)
            .env("SPOOR_LOG__FILTER", "info,openraft=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {} {role}", bin.display()))?;
        let stdout = child.stdout.take().context("spoor stdout")?;
        let stderr = child.stderr.take().context("spoor stderr")?;
        let ready_rx = ready_line(stdout);
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let marks = Arc::new(Mutex::new(Vec::new()));
        {
            let (log, marks) = (log.clone(), marks.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let line = strip_ansi(&line);
                    if MARKS.iter().any(|m| line.contains(m))
                        && let Ok(mut m) = marks.lock()
                    {
                        m.push((Instant::now(), line.clone()));
                    }
                    if let Ok(mut log) = log.lock() {
                        if log.len() >= 40 {
                            log.pop_front();
                        }
                        log.push_back(line);
                    }
                }
            });
        }
        let mut node = Node {
            child: Some(child),
            http: String::new(),
            grpc: None,
            log,
            marks,
        };
        let ready = ready_rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| {
                anyhow!(
                    "spoor {role} printed no ready line in 60 s; log:\n{}",
                    node.log_tail()
                )
            })?;
        let word = |key: &str| {
            ready
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(str::to_string)
        };
        node.http = word("http=").with_context(|| format!("no http= in {ready:?}"))?;
        node.grpc = word("grpc=");
        Ok(node)
    }

    pub(crate) fn log_tail(&self) -> String {
        self.log
            .lock()
            .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    fn marks(&self, what: &str) -> Vec<(Instant, String)> {
        self.marks
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, l)| l.contains(what))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// When each `shard started` line was logged, and its shard.
    pub(crate) fn shard_starts(&self) -> Vec<(Instant, String)> {
        self.marks("shard started")
            .into_iter()
            .filter_map(|(at, line)| Some((at, field(&line, "shard")?)))
            .collect()
    }

    /// Every Kafka partition assignment it logged, in order: when, and the
    /// partitions of `topic` it was given.
    pub(crate) fn assignments(&self, topic: &str, partitions: i32) -> Vec<(Instant, Vec<i32>)> {
        self.marks("partitions assigned")
            .into_iter()
            .map(|(at, line)| (at, partitions_in(&line, topic, partitions)))
            .collect()
    }

    /// How many `partitions revoked` lines it logged after `t`.
    pub(crate) fn revocations_after(&self, t: Instant) -> usize {
        self.marks("partitions revoked")
            .iter()
            .filter(|(at, _)| *at > t)
            .count()
    }

    pub(crate) fn pid(&self) -> Result<u32> {
        self.child.as_ref().map(Child::id).context("not running")
    }

    /// User + system CPU seconds of the process so far.
    pub(crate) fn cpu(&self) -> Result<f64> {
        process_cpu(self.pid()?)
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the process.
    pub(crate) fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.pid()?.to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .context("running kill")?;
        if !status.success() {
            anyhow::bail!("kill -{signal} {pid} failed ({status})");
        }
        Ok(())
    }

    /// SIGTERM and wait for a clean exit (falls back to SIGKILL). A node
    /// that does not stop within 30 s is killed and reported, with the end
    /// of its log, in [`SLOW_STOPS`]: the figures were taken before, so they
    /// stand, but a slow stop is a defect to see, not to hide.
    pub(crate) fn stop(&mut self) -> Result<()> {
        if let Err(e) = stop_spoor(&mut self.child) {
            let tail: Vec<String> = self
                .log
                .lock()
                .map(|l| l.iter().rev().take(8).rev().cloned().collect())
                .unwrap_or_default();
            let note = format!("{e:#}; its last log lines:\n  {}", tail.join("\n  "));
            eprintln!("warning: node at {}: {note}", self.http);
            if let Ok(mut stops) = SLOW_STOPS.lock() {
                stops.push(format!("node at {}: {note}", self.http));
            }
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `--set` flags for a node of a local cluster: the shared lake, the Flight
/// SQL and PostgreSQL listeners off (their default ports are fixed), then
/// `extra` (`key=value` each).
pub(crate) fn lake_sets(lake: &Path, extra: &[String]) -> Vec<String> {
    let mut sets = vec![
        format!("storage.url=\"file://{}\"", lake.display()),
        "query.flight_addr=\"\"".to_string(),
        "query.postgres_addr=\"\"".to_string(),
    ];
    sets.extend(extra.iter().cloned());
    sets.into_iter().flat_map(|s| ["--set".into(), s]).collect()
}

/// Prints the nodes that had to be killed, if any.
pub(crate) fn report_slow_stops() {
    if let Ok(stops) = SLOW_STOPS.lock()
        && !stops.is_empty()
    {
        println!();
        println!(
            "SLOW STOPS ({}): nodes killed after not stopping within 30 s of SIGTERM:",
            stops.len()
        );
        for s in stops.iter() {
            println!("- {s}");
        }
    }
}

/// How many nodes had to be killed so far.
pub(crate) fn slow_stops() -> usize {
    SLOW_STOPS.lock().map(|s| s.len()).unwrap_or(0)
}

pub(crate) fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `key=value` in a text log line.
pub(crate) fn field(line: &str, key: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim_matches('"').to_string())
}

/// The partitions of `topic` named in a `partitions assigned` line, whose
/// list prints each as `("topic", n)`.
fn partitions_in(line: &str, topic: &str, partitions: i32) -> Vec<i32> {
    (0..partitions)
        .filter(|p| line.contains(&format!("(\"{topic}\", {p})")))
        .collect()
}

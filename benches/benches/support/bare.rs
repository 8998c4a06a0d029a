//! The bare Kafka consumer, the peer of the benches that read Kafka: the
//! bench's own binary re-run as a child process (so its CPU is its own)
//! holding an rdkafka `BaseConsumer` (the same bundled librdkafka Spoor
//! links) that is assigned every partition of a topic from the beginning and
//! discards each message: the most any consumer can read from that broker.
//!
//! A bench calls [`child_main`] first thing in `main`: when the process is
//! the child it reads and exits there.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;

use super::{Broker, process_cpu};

/// Env vars of the child (not `SPOOR_*`: spoor reads those as configuration).
const ROLE_VAR: &str = "BENCH_BARE_CONSUMER";
const BOOTSTRAP_VAR: &str = "BENCH_BARE_BOOTSTRAP";
const TOPIC_VAR: &str = "BENCH_BARE_TOPIC";
const PARTITIONS_VAR: &str = "BENCH_BARE_PARTITIONS";
const EVENTS_VAR: &str = "BENCH_BARE_EVENTS";
const PROPERTIES_VAR: &str = "BENCH_BARE_KAFKA_PROPERTIES";
const TIMEOUT_VAR: &str = "BENCH_BARE_TIMEOUT_S";

/// The bare consumer's timed window, as it measured it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BareSample {
    pub(crate) wall: Duration,
    /// CPU seconds of the child over its window.
    pub(crate) cpu_s: f64,
    /// CPU seconds of the broker over the child's whole life (an upper
    /// bound for its window: it includes the child's start-up, which reads
    /// nothing).
    pub(crate) broker_cpu_s: f64,
    pub(crate) bytes: u64,
}

/// When this process is the bare-consumer child: reads, prints its window
/// as JSON and returns `Some(result)`, which `main` returns; else `None`.
pub(crate) fn child_main() -> Option<Result<()>> {
    if std::env::var(ROLE_VAR).as_deref() == Ok("1") {
        Some(child())
    } else {
        None
    }
}

/// Runs the bare consumer over `events` messages of `topic` (every one of
/// its `partitions`, from the beginning) as a child process of this binary
/// and reads its self-measured window. The child fails if the topic holds
/// fewer or more messages.
pub(crate) fn run(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    events: usize,
    properties: &[(String, String)],
    timeout: Duration,
) -> Result<BareSample> {
    let exe = std::env::current_exe().context("this bench's executable")?;
    let broker_cpu0 = broker.cpu()?;
    let child = Command::new(exe)
        .env(ROLE_VAR, "1")
        .env(BOOTSTRAP_VAR, &broker.bootstrap)
        .env(TOPIC_VAR, topic)
        .env(PARTITIONS_VAR, partitions.to_string())
        .env(EVENTS_VAR, events.to_string())
        .env(TIMEOUT_VAR, timeout.as_secs().to_string())
        .env(
            PROPERTIES_VAR,
            properties
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the bare consumer")?;
    let out = child
        .wait_with_output()
        .context("waiting for the bare consumer")?;
    let broker_cpu_s = broker.cpu()? - broker_cpu0;
    if !out.status.success() {
        bail!("the bare consumer failed ({})", out.status);
    }
    let report: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "bare consumer output {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let messages = report["messages"].as_u64().context("messages")?;
    if messages != events as u64 {
        bail!("the bare consumer read {messages} messages, wanted {events}");
    }
    Ok(BareSample {
        wall: Duration::from_secs_f64(report["wall_s"].as_f64().context("wall_s")?),
        cpu_s: report["cpu_s"].as_f64().context("cpu_s")?,
        broker_cpu_s,
        bytes: report["bytes"].as_u64().context("bytes")?,
    })
}

/// The child: assign every partition from the beginning, read `events`
/// messages touching each payload's length, print the window as JSON.
fn child() -> Result<()> {
    let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
    let bootstrap = var(BOOTSTRAP_VAR)?;
    let topic = var(TOPIC_VAR)?;
    let partitions: i32 = var(PARTITIONS_VAR)?.parse()?;
    let events: u64 = var(EVENTS_VAR)?.parse()?;
    let timeout = Duration::from_secs(var(TIMEOUT_VAR)?.parse()?);
    // Spoor's consumer settings minus group management (an assignment needs
    // no group join, which would only add a fixed delay).
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "spoor-bench-bare")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    for (k, v) in super::env_kafka_properties(PROPERTIES_VAR, "")? {
        config.set(k, v);
    }
    let consumer: BaseConsumer = config.create().context("bare consumer")?;
    let pid = std::process::id();
    let (cpu0, t0) = (process_cpu(pid)?, Instant::now());
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl).context("assign")?;
    let (mut messages, mut bytes) = (0u64, 0u64);
    while messages < events {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                messages += 1;
                bytes += m.payload().map_or(0, <[u8]>::len) as u64;
            }
            Some(Err(e)) => bail!("bare consumer: {e}"),
            None if t0.elapsed() > timeout => {
                bail!("bare consumer read {messages} of {events} in {timeout:?}")
            }
            None => {}
        }
    }
    let wall = t0.elapsed();
    let cpu = process_cpu(pid)? - cpu0;
    // Outside the window: the topic must hold exactly `events` messages.
    let extra_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < extra_until {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            bail!(
                "the topic holds more than {events} messages (partition {} offset {})",
                m.partition(),
                m.offset()
            );
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "messages": messages,
            "bytes": bytes,
            "wall_s": wall.as_secs_f64(),
            "cpu_s": cpu,
        })
    );
    Ok(())
}

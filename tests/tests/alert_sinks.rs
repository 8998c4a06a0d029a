//! Alert sinks through the real binary against a real Kafka-protocol
//! broker: rules applied, events produced, and every alert of the `alerts`
//! table arrives on the Kafka sink topic (keyed by its id) and at a webhook
//! receiver run by the test, with the same `alert_id`; then a node killed
//! while its webhook hangs delivers the alerts after its restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde_json::Value;
use spoor_tests::{
    Broker, Spoor, SpoorOptions, encoded_shell_rule, failed_logon_rule, kafka_env, logon_event,
    repeated_failed_logons_rule, tail, test_time, write_rules,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOPIC: &str = "auth-events";
const ALERT_TOPIC: &str = "spoor-alerts";
const WAIT: Duration = Duration::from_secs(120);

const ID1: &str = "5a0c1b52-1f0e-4d8a-9a51-000000000001";
const ID2: &str = "5a0c1b52-1f0e-4d8a-9a51-000000000002";
const ID3: &str = "5a0c1b52-1f0e-4d8a-9a51-000000000003";

/// The rules file: failed logons, four of one account within 10 minutes,
/// and encoded shells.
fn auth_rules() -> String {
    [
        failed_logon_rule(ID1),
        repeated_failed_logons_rule(ID2, ID1, 4, &[]),
        encoded_shell_rule(ID3),
    ]
    .join("---\n")
}

/// Events `start..end`, 20 s apart: failed logons of three accounts, and
/// now and then an encoded shell.
fn events(start: usize, end: usize) -> Vec<Vec<u8>> {
    (start..end)
        .map(|i| {
            logon_event(i, test_time(i * 20), format!("user{}", i % 3), i % 7 == 0)
                .to_string()
                .into_bytes()
        })
        .collect()
}

/// A webhook receiver on loopback: records each request's headers and
/// JSON body and answers 200, or, while `hang` is set, never answers.
#[derive(Default)]
struct Receiver {
    hang: std::sync::atomic::AtomicBool,
    received: Mutex<Vec<(BTreeMap<String, String>, Value)>>,
}

impl Receiver {
    async fn start() -> anyhow::Result<(Arc<Receiver>, String)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hooks/spoor", listener.local_addr()?);
        let receiver = Arc::new(Receiver::default());
        let r = receiver.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let r = r.clone();
                tokio::spawn(async move {
                    let _ = r.serve(socket).await;
                });
            }
        });
        Ok((receiver, url))
    }

    /// One HTTP/1.1 request per connection (answered with `Connection: close`).
    async fn serve(&self, mut socket: tokio::net::TcpStream) -> anyhow::Result<()> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = socket.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let headers: BTreeMap<String, String> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let n = socket.read(&mut chunk).await?;
            if n == 0 {
                bail!("request body cut short");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        if self.hang.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let body: Value = serde_json::from_slice(&buf[head_end..head_end + length])?;
        self.received
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .push((headers, body));
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await?;
        Ok(())
    }

    fn ids(&self) -> BTreeSet<String> {
        self.received
            .lock()
            .map(|r| {
                r.iter()
                    .filter_map(|(_, b)| b["alert_id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn settings(dir: &Path, broker: &Broker, webhook: &str) -> Vec<String> {
    vec![
        format!("storage.url=\"file://{}\"", dir.join("lake").display()),
        "node.heartbeat_interval_ms=300".into(),
        "coordinator.member_timeout_ms=1500".into(),
        "coordinator.scheduler_interval_ms=300".into(),
        "worker.commit_interval_ms=300".into(),
        "worker.poll_interval_ms=100".into(),
        "ingest.flush_interval_ms=200".into(),
        "ingest.compaction.enabled=false".into(),
        format!(
            "alerts.sinks=[{{name = \"bus\", kind = \"kafka\", brokers = \"{}\", topic = \"{ALERT_TOPIC}\"}}, \
             {{name = \"soar\", kind = \"webhook\", url = \"{webhook}\", bearer_token = \"tok\", \
             timeout_ms = 600000, initial_backoff_ms = 100, max_backoff_ms = 1000}}]",
            broker.bootstrap
        ),
    ]
}

fn start_node(dir: &Path, broker: &Broker, webhook: &str) -> anyhow::Result<Spoor> {
    let mut env = kafka_env(broker, TOPIC, "alert-sinks");
    env.retain(|(k, _)| k != "SPOOR_INGEST__FLUSH_INTERVAL_MS");
    Spoor::role(
        "standalone",
        &dir.join("standalone"),
        &settings(dir, broker, webhook),
        &SpoorOptions {
            env,
            ..SpoorOptions::default()
        },
    )
}

async fn wait_shards_held(node: &Spoor) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = node.status().await?;
        let shards = s["cluster"]["shards"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if shards.len() == 2 && shards.iter().all(|sh| sh["holder"].as_u64().is_some()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("shards never held: {s}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `alerts` table: alert id → row.
async fn alerts(node: &Spoor) -> anyhow::Result<BTreeMap<String, Value>> {
    let body = node
        .sql("SELECT alert_id, rule_title, rule_level, shard FROM alerts ORDER BY alert_id")
        .await?;
    let rows = body["rows"]
        .as_array()
        .with_context(|| format!("alerts query failed: {body}"))?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((r["alert_id"].as_str()?.to_string(), r.clone())))
        .collect())
}

/// Reads the sink topic from the start: alert id → (message key, JSON).
struct TopicReader {
    consumer: StreamConsumer,
    seen: BTreeMap<String, (String, Value)>,
}

impl TopicReader {
    fn new(broker: &Broker) -> anyhow::Result<TopicReader> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &broker.bootstrap)
            .set("group.id", "alert-sink-test")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .context("consumer")?;
        consumer.subscribe(&[ALERT_TOPIC])?;
        Ok(TopicReader {
            consumer,
            seen: BTreeMap::new(),
        })
    }

    /// Reads until every id of `want` was seen or the wait ends.
    async fn read_until(&mut self, want: &BTreeSet<String>) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        while !want.iter().all(|id| self.seen.contains_key(id)) {
            if Instant::now() > deadline {
                bail!(
                    "{} of {} alerts on {ALERT_TOPIC}",
                    want.iter().filter(|id| self.seen.contains_key(*id)).count(),
                    want.len()
                );
            }
            let Ok(message) =
                tokio::time::timeout(Duration::from_secs(1), self.consumer.recv()).await
            else {
                continue;
            };
            let message = message.context("consuming the alert topic")?;
            let key = String::from_utf8_lossy(message.key().unwrap_or_default()).to_string();
            let json: Value = serde_json::from_slice(message.payload().unwrap_or_default())
                .context("an alert message is JSON")?;
            let id = json["alert_id"].as_str().unwrap_or_default().to_string();
            self.seen.insert(id, (key, json));
        }
        Ok(())
    }
}

async fn wait_webhook(receiver: &Receiver, want: &BTreeSet<String>) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = receiver.ids();
        if got.is_superset(want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {} alerts at the webhook",
                want.intersection(&got).count(),
                want.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_the_kafka_topic_and_the_webhook_with_their_ids() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("rules");
    write_rules(&rules, &[("auth.yml", &auth_rules())])?;
    let broker = Broker::start()?;
    broker.create_topic(TOPIC, 1).await?;
    broker.create_topic(ALERT_TOPIC, 1).await?;
    let (receiver, url) = Receiver::start().await?;
    let node = start_node(dir.path(), &broker, &url)?;
    node.apply_rules(&rules, Some(2))?;
    wait_shards_held(&node).await?;
    broker.produce_in_order(TOPIC, &events(0, 120)).await?;
    node.wait_caught_up(120, WAIT).await?;
    let table = alerts(&node).await?;
    let kinds: BTreeSet<&str> = table
        .values()
        .filter_map(|r| r["rule_title"].as_str())
        .collect();
    // The base rule of the correlation raises none of its own (Sigma's
    // `generate: false` default).
    assert_eq!(
        kinds,
        BTreeSet::from(["Encoded shell", "Repeated failed logons for one account"]),
        "a detection and a correlation raise alerts"
    );
    let ids: BTreeSet<String> = table.keys().cloned().collect();

    let mut topic = TopicReader::new(&broker)?;
    topic.read_until(&ids).await?;
    wait_webhook(&receiver, &ids).await?;

    for (id, row) in &table {
        let (key, json) = &topic.seen[id];
        assert_eq!(key, id, "the message key is the alert id");
        assert_eq!(json["rule_title"], row["rule_title"]);
        assert_eq!(json["rule_level"], row["rule_level"]);
        assert_eq!(json["shard"], row["shard"]);
        assert_eq!(json["tenant"], "default");
    }
    let received = receiver
        .received
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .clone();
    for (headers, body) in &received {
        let id = body["alert_id"].as_str().context("alert_id")?;
        assert!(table.contains_key(id), "{id} is an alert of the table");
        assert_eq!(headers.get("idempotency-key").map(String::as_str), Some(id));
        assert_eq!(
            headers.get("authorization").map(String::as_str),
            Some("Bearer tok")
        );
        assert_eq!(body["rule_title"], table[id]["rule_title"]);
    }
    // Nothing was refused, so no dead letters.
    assert_eq!(
        node.scalar("SELECT count(*) FROM dead_letter").await?,
        0,
        "{}",
        tail(&node.log_path)
    );
    // The worker's metrics saw them: the detection latency of every
    // committed alert (ingest to commit), deliveries per sink.
    let metrics = reqwest::get(format!("{}/metrics", node.http))
        .await?
        .text()
        .await?;
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(
        sample("spoor_worker_detection_latency_seconds_count"),
        table.len() as f64,
        "one latency sample per committed alert"
    );
    assert!(sample("spoor_worker_detection_latency_seconds_sum") > 0.0);
    assert!(sample("spoor_sink_delivered_total") >= 2.0 * table.len() as f64);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_undelivered_at_a_crash_arrive_after_the_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("rules");
    write_rules(&rules, &[("auth.yml", &auth_rules())])?;
    let broker = Broker::start()?;
    broker.create_topic(TOPIC, 1).await?;
    broker.create_topic(ALERT_TOPIC, 1).await?;
    let (receiver, url) = Receiver::start().await?;
    // The webhook hangs: alerts are committed but never acknowledged.
    receiver
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut node = start_node(dir.path(), &broker, &url)?;
    node.apply_rules(&rules, Some(2))?;
    wait_shards_held(&node).await?;
    broker.produce_in_order(TOPIC, &events(0, 120)).await?;
    node.wait_caught_up(120, WAIT).await?;
    let ids: BTreeSet<String> = alerts(&node).await?.into_keys().collect();
    assert!(ids.len() > 10, "{ids:?}");
    node.kill()?;
    assert!(receiver.ids().is_empty());

    // Restarted on the same data, with the webhook answering again.
    receiver
        .hang
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let node = start_node(dir.path(), &broker, &url)?;
    wait_webhook(&receiver, &ids)
        .await
        .with_context(|| tail(&node.log_path))?;
    Ok(())
}

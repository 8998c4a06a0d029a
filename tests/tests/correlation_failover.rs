//! Correlation workers on a cluster, against a real Kafka-protocol broker:
//! a worker killed while it holds shards with open correlation windows, and
//! a worker joining a running cluster, leave exactly the `alerts` table of a
//! run without either (compared row by row, every column but the wall-clock
//! `detected_at`).
//!
//! Each run has its own broker with the same topic, and the events are
//! produced in order to one partition, so they get the same Kafka positions
//! (and hence the same event references and alert ids) in every run.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use spoor_tests::{
    Broker, Spoor, SpoorOptions, encoded_shell_rule, failed_logon_rule, kafka_env, logon_event,
    repeated_failed_logons_rule, test_time, write_rules,
};

const TOPIC: &str = "auth-events";
const WAIT: Duration = Duration::from_secs(120);
const BUCKETS: u32 = 4;
/// Every column of `alerts` but `detected_at`, in a total order.
const ALERTS: &str = "SELECT alert_id, time, rule_id, rule_version, rule_title, rule_level, \
     rule_tags, rule_set, rule_set_version, rule_kind, group_key, first_event_time, \
     last_event_time, event_count, value, event_refs, origin, shard \
     FROM alerts ORDER BY alert_id";

const LOGON_ID: &str = "7d6c1b52-1f0e-4d8a-9a51-000000000001";
const BURST_ID: &str = "7d6c1b52-1f0e-4d8a-9a51-000000000002";
const SHELL_ID: &str = "7d6c1b52-1f0e-4d8a-9a51-000000000004";

const MANY_HOSTS: &str = r#"title: Many hosts for one account
id: 7d6c1b52-1f0e-4d8a-9a51-000000000003
status: test
correlation:
    type: value_count
    rules:
        - 7d6c1b52-1f0e-4d8a-9a51-000000000001
    group-by:
        - test_user
    timespan: 15m
    condition:
        field: test_host
        gte: 3
level: medium
"#;

/// Events `start..end`, 20 s apart: failed logons of five accounts taking
/// turns, each moving to another of four hosts every five events, and now
/// and then an encoded shell.
fn events(start: usize, end: usize) -> Vec<Vec<u8>> {
    (start..end)
        .map(|i| {
            let user = format!("user{}", (i * 7) % 5);
            let mut event = logon_event(i, test_time(i * 20), user, i % 11 == 0);
            event["test_host"] = format!("ws{}", (i / 5) % 4).into();
            event.to_string().into_bytes()
        })
        .collect()
}

const TOTAL: usize = 720;

/// The rules: failed logons, bursts of them and accounts on many hosts
/// in `logons.yml`, encoded shells in `shell.yml`.
fn write_failover_rules(dir: &Path) -> anyhow::Result<()> {
    let logons = [
        failed_logon_rule(LOGON_ID),
        repeated_failed_logons_rule(
            BURST_ID,
            LOGON_ID,
            4,
            &["attack.credential-access", "attack.t1110"],
        ),
        MANY_HOSTS.to_string(),
    ]
    .join("---\n");
    write_rules(
        dir,
        &[
            ("logons.yml", &logons),
            ("shell.yml", &encoded_shell_rule(SHELL_ID)),
        ],
    )
}

/// The shards of the cluster and who holds them.
async fn holders(node: &Spoor) -> anyhow::Result<Vec<(u32, Option<u64>)>> {
    let s = node.status().await?;
    let shards = s["cluster"]["shards"]
        .as_array()
        .with_context(|| format!("no shards in {s}"))?;
    Ok(shards
        .iter()
        .map(|sh| {
            (
                sh["id"]["bucket"].as_u64().unwrap_or(0) as u32,
                sh["holder"].as_u64(),
            )
        })
        .collect())
}

async fn alerts(node: &Spoor) -> anyhow::Result<Vec<Value>> {
    let body = node.sql(ALERTS).await?;
    body["rows"]
        .as_array()
        .cloned()
        .with_context(|| format!("alerts query failed: {body}"))
}

fn cluster_settings(lake: &Path) -> Vec<String> {
    vec![
        format!("storage.url=\"file://{}\"", lake.display()),
        "node.heartbeat_interval_ms=300".into(),
        "coordinator.member_timeout_ms=1500".into(),
        "coordinator.scheduler_interval_ms=300".into(),
        "worker.commit_interval_ms=300".into(),
        "worker.poll_interval_ms=100".into(),
        "ingest.flush_interval_ms=200".into(),
        "ingest.compaction.enabled=false".into(),
    ]
}

/// `spoor standalone` (coordinator, ingest, query and a worker) on a fresh
/// broker, the rules applied; returns both.
async fn start_cluster(dir: &Path, rules: &Path) -> anyhow::Result<(Broker, Spoor)> {
    let broker = Broker::start()?;
    broker.create_topic(TOPIC, 1).await?;
    let lake = dir.join("lake");
    std::fs::create_dir_all(&lake)?;
    let mut env = kafka_env(&broker, TOPIC, "failover");
    env.retain(|(k, _)| k != "SPOOR_INGEST__FLUSH_INTERVAL_MS");
    let node = Spoor::role(
        "standalone",
        &dir.join("standalone"),
        &cluster_settings(&lake),
        &SpoorOptions {
            env,
            ..SpoorOptions::default()
        },
    )?;
    node.apply_rules(rules, Some(BUCKETS))?;
    Ok((broker, node))
}

fn start_worker(dir: &Path, node: &Spoor, id: u64) -> anyhow::Result<Spoor> {
    let mut sets = cluster_settings(&dir.join("lake"));
    sets.push(format!("node.id={id}"));
    sets.push(format!(
        "catalog.endpoint=\"{}\"",
        node.grpc.clone().context("standalone serves gRPC")?
    ));
    Spoor::role(
        "worker",
        &dir.join(format!("worker{id}")),
        &sets,
        &SpoorOptions::default(),
    )
}

async fn wait_held_by(
    node: &Spoor,
    pred: impl Fn(&[(u32, Option<u64>)]) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let h = holders(node).await?;
        if h.len() == BUCKETS as usize && pred(&h) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("shards never reached the expected holders: {h:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The reference: one node, no fault.
async fn reference(dir: &Path, rules: &Path) -> anyhow::Result<Vec<Value>> {
    let (broker, node) = start_cluster(dir, rules).await?;
    wait_held_by(&node, |h| h.iter().all(|(_, w)| w.is_some())).await?;
    broker.produce_in_order(TOPIC, &events(0, TOTAL)).await?;
    node.wait_caught_up(TOTAL as i64, WAIT).await?;
    alerts(&node).await
}

fn compare(reference: &[Value], got: &[Value], what: &str) {
    assert!(
        reference.len() > 20,
        "the reference run should raise alerts of every kind: {reference:?}"
    );
    let kinds: std::collections::BTreeSet<&str> = reference
        .iter()
        .filter_map(|r| r["rule_title"].as_str())
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert_eq!(
        got.len(),
        reference.len(),
        "{what}: {} alerts, the reference has {}",
        got.len(),
        reference.len()
    );
    for (a, b) in reference.iter().zip(got) {
        assert_eq!(a, b, "{what}: alert rows differ");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_leaves_the_same_alerts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("rules");
    write_failover_rules(&rules)?;
    let expected = reference(&dir.path().join("reference"), &rules).await?;

    let run = dir.path().join("failover");
    let (broker, node) = start_cluster(&run, &rules).await?;
    let mut worker = start_worker(&run, &node, 31)?;
    // The worker takes about half of the shards.
    wait_held_by(&node, |h| {
        let on_worker = h.iter().filter(|(_, w)| *w == Some(31)).count();
        on_worker >= 1 && h.iter().all(|(_, w)| w.is_some())
    })
    .await?;
    broker
        .produce_in_order(TOPIC, &events(0, TOTAL / 2))
        .await?;
    node.wait_caught_up((TOTAL / 2) as i64, WAIT).await?;
    // Windows are open on the worker now; it dies without a goodbye.
    worker.kill()?;
    broker
        .produce_in_order(TOPIC, &events(TOTAL / 2, TOTAL))
        .await?;
    wait_held_by(&node, |h| h.iter().all(|(_, w)| *w == Some(1))).await?;
    node.wait_caught_up(TOTAL as i64, WAIT).await?;
    compare(&expected, &alerts(&node).await?, "after the kill");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_worker_takes_half_the_shards_and_changes_no_alert() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("rules");
    write_failover_rules(&rules)?;
    let expected = reference(&dir.path().join("reference"), &rules).await?;

    let run = dir.path().join("rebalance");
    let (broker, node) = start_cluster(&run, &rules).await?;
    wait_held_by(&node, |h| h.iter().all(|(_, w)| *w == Some(1))).await?;
    broker
        .produce_in_order(TOPIC, &events(0, TOTAL / 2))
        .await?;
    node.wait_caught_up((TOTAL / 2) as i64, WAIT).await?;
    let _worker = start_worker(&run, &node, 32)?;
    wait_held_by(&node, |h| {
        h.iter().filter(|(_, w)| *w == Some(32)).count() == (BUCKETS / 2) as usize
    })
    .await?;
    broker
        .produce_in_order(TOPIC, &events(TOTAL / 2, TOTAL))
        .await?;
    node.wait_caught_up(TOTAL as i64, WAIT).await?;
    compare(&expected, &alerts(&node).await?, "after the rebalance");
    Ok(())
}

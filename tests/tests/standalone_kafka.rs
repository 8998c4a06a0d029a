//! `spoor standalone` against a real Kafka-protocol broker: exact counts in
//! `events` and `dead_letter`, across a restart, and after crashes at the two
//! points where a crash could lose or duplicate data.

use std::time::{Duration, Instant};

use spoor_tests::{Broker, Spoor, SpoorOptions, bad_events, good_events, kafka_env};

const WAIT: Duration = Duration::from_secs(90);
const EVENTS: &str = "SELECT count(*) FROM events";
const DEAD: &str = "SELECT count(*) FROM dead_letter";
const DISTINCT_OFFSETS: &str =
    "SELECT count(DISTINCT (source_partition, source_offset)) FROM events";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_events_land_exactly_once_and_survive_restart() -> anyhow::Result<()> {
    let broker = Broker::start()?;
    broker.create_topic("security-events", 3).await?;
    let mut batch = good_events(0, 300);
    batch.extend(bad_events(7));
    broker.produce("security-events", &batch).await?;

    let data = tempfile::tempdir()?;
    let opts = SpoorOptions {
        env: kafka_env(&broker, "security-events", "e2e-restart"),
        ..SpoorOptions::default()
    };
    let mut spoor = Spoor::standalone(data.path(), &opts)?;
    spoor.wait_for(EVENTS, 300, WAIT).await?;
    spoor.wait_for(DEAD, 7, WAIT).await?;
    assert_eq!(
        spoor.scalar(DISTINCT_OFFSETS).await?,
        300,
        "every offset once"
    );

    // Dead letters keep the bytes, the source position and the reason.
    let body = spoor.sql("SELECT raw_text, error, source_topic, source_offset FROM dead_letter ORDER BY raw_text").await?;
    let rows = body["rows"].as_array().expect("rows");
    assert_eq!(rows[0]["raw_text"], "{\"broken\": 0,");
    assert_eq!(rows[0]["source_topic"], "security-events");
    let error = rows[0]["error"].as_str().expect("error");
    assert!(
        error.starts_with("offset ") && error.contains("invalid JSON"),
        "{error}"
    );

    // Mapped columns are queryable.
    assert_eq!(
        spoor
            .scalar("SELECT count(*) FROM events WHERE src_ip = '10.0.0.7' AND dst_port = 443")
            .await?,
        1
    );

    // Events produced while running become visible within seconds.
    let produced_at = Instant::now();
    broker
        .produce("security-events", &good_events(300, 50))
        .await?;
    spoor.wait_for(EVENTS, 350, WAIT).await?;
    eprintln!(
        "50 new events visible {:?} after produce",
        produced_at.elapsed()
    );

    // The console's health page reads the consumer lag of every partition
    // (librdkafka's statistics, every 5 s, through the node's /metrics).
    let deadline = Instant::now() + WAIT;
    loop {
        let lag: serde_json::Value = spoor
            .client
            .get(format!("{}/v1/status/kafka-lag", spoor.http))
            .send()
            .await?
            .json()
            .await?;
        let partitions: Vec<i64> = lag["members"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["partitions"].as_array().cloned().unwrap_or_default())
            .filter(|p| {
                p["topic"] == "security-events" && p["lag"].as_i64().is_some_and(|l| l >= 0)
            })
            .filter_map(|p| p["partition"].as_i64())
            .collect();
        let mut seen = partitions.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen == [0, 1, 2] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lag of the 3 partitions is not reported: {lag}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A clean restart keeps everything and reads on from the catalog checkpoint.
    assert!(spoor.stop()?.success(), "clean shutdown");
    let spoor = Spoor::standalone(data.path(), &opts)?;
    assert_eq!(spoor.scalar(EVENTS).await?, 350, "events after restart");
    assert_eq!(spoor.scalar(DEAD).await?, 7, "dead letters after restart");
    broker
        .produce("security-events", &good_events(350, 10))
        .await?;
    spoor.wait_for(EVENTS, 360, WAIT).await?;
    assert_eq!(
        spoor.scalar(DISTINCT_OFFSETS).await?,
        360,
        "no duplicates after restart"
    );
    Ok(())
}

/// Crashes (abort, no cleanup) once at `fault`, restarts without it, and
/// checks every event is present exactly once.
async fn crash_and_recover(fault: &str, group: &str) -> anyhow::Result<()> {
    let broker = Broker::start()?;
    let topic = format!("crash-{group}");
    broker.create_topic(&topic, 2).await?;
    let mut batch = good_events(0, 200);
    batch.extend(bad_events(3));
    broker.produce(&topic, &batch).await?;

    let data = tempfile::tempdir()?;
    let mut env = kafka_env(&broker, &topic, group);
    env.push(("SPOOR_TEST_FAULT".into(), fault.into()));
    let mut crashing = Spoor::standalone(
        data.path(),
        &SpoorOptions {
            env,
            ..SpoorOptions::default()
        },
    )?;
    let status = crashing.wait_exit(WAIT)?;
    assert!(
        !status.success(),
        "the fault must kill the process, got {status}"
    );
    let parquet_files = walk(&data.path().join("lake"))
        .into_iter()
        .filter(|p| p.ends_with(".parquet"))
        .count();
    assert!(
        parquet_files > 0,
        "the crash came after Parquet files were written"
    );

    let spoor = Spoor::standalone(
        data.path(),
        &SpoorOptions {
            env: kafka_env(&broker, &topic, group),
            ..SpoorOptions::default()
        },
    )?;
    spoor.wait_for(EVENTS, 200, WAIT).await?;
    spoor.wait_for(DEAD, 3, WAIT).await?;
    // The restarted consumer owns the partitions and reads on from the
    // catalog checkpoint: new events arrive, old ones are not read twice.
    broker.produce(&topic, &good_events(200, 20)).await?;
    spoor.wait_for(EVENTS, 220, WAIT).await?;
    // Let several flush intervals pass: nothing more may appear.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(spoor.scalar(EVENTS).await?, 220);
    assert_eq!(spoor.scalar(DEAD).await?, 3);
    assert_eq!(spoor.scalar(DISTINCT_OFFSETS).await?, 220, "exactly once");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_parquet_write_before_catalog_commit_loses_nothing() -> anyhow::Result<()> {
    crash_and_recover("crash_after_write", "e2e-crash-write").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_catalog_commit_before_offset_commit_duplicates_nothing() -> anyhow::Result<()>
{
    crash_and_recover("crash_after_commit", "e2e-crash-commit").await
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

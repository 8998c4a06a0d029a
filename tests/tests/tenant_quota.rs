//! Per-tenant ingest quotas against the real binary: a tenant sending far
//! past its quota (`flood`, 1500 events/s) gets 429s with `Retry-After`,
//! and another tenant (`calm`, no quota) sending at a steady pace keeps its
//! throughput and its request latency, and nothing either of them had
//! accepted is missing from its `events` table.
//!
//! Calm sends the same paced load twice: alone, then while several flood
//! senders push as fast as they can (retrying each refused batch after
//! `Retry-After`, so none is lost). The comparison uses calm's achieved
//! events per second and its median request latency, which resist the noise
//! of a shared 2-core machine better than a maximum would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use spoor_tests::{
    Broker, Spoor, SpoorOptions, create_token, good_events, kafka_env, spoor_cli_json,
};

/// Flood's quota, events per second on the node.
const FLOOD_QUOTA: u64 = 1500;
/// Concurrent flood senders.
const FLOOD_SENDERS: usize = 4;
/// Events per flood request.
const FLOOD_BATCH: usize = 500;
/// Calm's paced load: this many requests of `CALM_BATCH` events, one every
/// `CALM_INTERVAL` (800 events/s offered).
const CALM_REQUESTS: usize = 20;
const CALM_BATCH: usize = 200;
const CALM_INTERVAL: Duration = Duration::from_millis(250);
/// How long ingest nodes may take to see changed tenant records (their
/// refresh interval is 5 s).
const TENANT_REFRESH: Duration = Duration::from_secs(6);

/// NDJSON of `n` events of `tenant`, numbered from `start`.
fn body(tenant: &str, start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| {
            json!({
                "time": "2026-11-30T08:00:00Z",
                "src_ip": format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256),
                "dst_port": 443,
                "process_name": tenant,
                "seq": i,
            })
            .to_string()
                + "\n"
        })
        .collect()
}

/// One ingest request: its status, `Retry-After` (seconds) and body.
async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: String,
) -> Result<(u16, Option<u64>, Value)> {
    let resp = client
        .post(url)
        .bearer_auth(token)
        .body(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = resp.text().await?;
    let value = serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?;
    Ok((status, retry_after, value))
}

/// What calm's paced run measured.
#[derive(Debug)]
struct CalmRun {
    /// Events accepted.
    accepted: u64,
    /// Accepted events per second, from the first request to the last answer.
    events_per_second: f64,
    /// Median request latency.
    p50: Duration,
    /// Slowest request.
    max: Duration,
}

/// Sends calm's paced load: request `i` starts at `i × CALM_INTERVAL` (or
/// as soon as the one before has answered, when that is later).
async fn calm_run(node: &Spoor, token: &str, first: usize) -> Result<CalmRun> {
    let client = reqwest::Client::new();
    let url = format!("{}/v1/ingest/app", node.http);
    let bodies: Vec<String> = (0..CALM_REQUESTS)
        .map(|i| body("calm", first + i * CALM_BATCH, CALM_BATCH))
        .collect();
    let start = tokio::time::Instant::now();
    let mut latencies = Vec::with_capacity(CALM_REQUESTS);
    let mut accepted = 0;
    for (i, b) in bodies.into_iter().enumerate() {
        tokio::time::sleep_until(start + CALM_INTERVAL * i as u32).await;
        let sent = Instant::now();
        let (status, _, answer) = post(&client, &url, token, b).await?;
        latencies.push(sent.elapsed());
        ensure!(status == 200, "calm request {i}: {status} {answer}");
        accepted += answer["accepted"].as_u64().context("accepted")?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let max = latencies.iter().max().copied().unwrap_or_default();
    latencies.sort();
    Ok(CalmRun {
        accepted,
        events_per_second: accepted as f64 / elapsed,
        p50: latencies[latencies.len() / 2],
        max,
    })
}

/// The first refusal a flood sender got: its `Retry-After` and body.
type FirstRefusal = Arc<std::sync::Mutex<Option<(Option<u64>, Value)>>>;

/// What the flood senders saw.
#[derive(Debug, Default)]
struct FloodTally {
    accepted: AtomicU64,
    requests: AtomicU64,
    rejected: AtomicU64,
}

/// One flood sender: the same batch again and again as fast as it is
/// taken; a refused batch is sent again after `Retry-After`, until `stop`.
async fn flood_sender(
    url: String,
    token: String,
    tally: Arc<FloodTally>,
    stop: Arc<AtomicBool>,
    first_refusal: FirstRefusal,
) -> Result<()> {
    let client = reqwest::Client::new();
    let batch = body("flood", 0, FLOOD_BATCH);
    while !stop.load(Ordering::Relaxed) {
        let (status, retry_after, answer) = post(&client, &url, &token, batch.clone()).await?;
        tally.requests.fetch_add(1, Ordering::Relaxed);
        match status {
            200 => {
                let n = answer["accepted"].as_u64().context("accepted")?;
                tally.accepted.fetch_add(n, Ordering::Relaxed);
            }
            429 => {
                tally.rejected.fetch_add(1, Ordering::Relaxed);
                first_refusal
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .get_or_insert((retry_after, answer));
                // Honour Retry-After, but stop waiting when the run ends.
                let until = Instant::now() + Duration::from_secs(retry_after.unwrap_or(1));
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            other => bail!("flood request: {other} {answer}"),
        }
    }
    Ok(())
}

/// `SELECT count(*) FROM events` as `token` sees it.
async fn count_events(node: &Spoor, token: &str) -> Result<u64> {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/query", node.http))
        .bearer_auth(token)
        .json(&json!({"sql": "SELECT count(*) AS n FROM events"}))
        .send()
        .await?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await?;
    ensure!(status == 200, "count: {status} {body}");
    body["rows"][0]["n"]
        .as_u64()
        .with_context(|| format!("no count in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_over_its_quota_does_not_slow_another_tenant() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Spoor::role(
        "standalone",
        &dir.path().join("data"),
        &[
            "ingest.http_auth=token".to_string(),
            "query.auth=token".to_string(),
        ],
        &SpoorOptions::default(),
    )?;
    let grpc = node.grpc.clone().context("standalone serves gRPC")?;
    let quota = FLOOD_QUOTA.to_string();
    spoor_cli_json(&[
        "tenant",
        "create",
        "flood",
        "--ingest-events-per-second",
        &quota,
        "--ingest-bytes-per-second",
        "0",
        "--coordinator",
        &grpc,
    ])?;
    spoor_cli_json(&["tenant", "create", "calm", "--coordinator", &grpc])?;
    let registered = Instant::now();
    let flood_ingest = create_token(&grpc, "ingest", Some("flood"))?;
    let calm_ingest = create_token(&grpc, "ingest", Some("calm"))?;
    let flood_analyst = create_token(&grpc, "analyst", Some("flood"))?;
    let calm_analyst = create_token(&grpc, "analyst", Some("calm"))?;
    let url = format!("{}/v1/ingest/app", node.http);

    // Warm-up (tokens verified and cached, first files written), counted.
    let client = reqwest::Client::new();
    let mut calm_accepted = 0;
    let mut flood_accepted = 0;
    for i in 0..3 {
        let (status, _, answer) = post(&client, &url, &calm_ingest, body("calm", i, 10)).await?;
        ensure!(status == 200, "calm warm-up: {status} {answer}");
        calm_accepted += answer["accepted"].as_u64().context("accepted")?;
    }
    let (status, _, answer) = post(&client, &url, &flood_ingest, body("flood", 0, 10)).await?;
    ensure!(status == 200, "flood warm-up: {status} {answer}");
    flood_accepted += answer["accepted"].as_u64().context("accepted")?;

    // Phase 1: calm alone.
    let solo = calm_run(&node, &calm_ingest, 1000).await?;
    calm_accepted += solo.accepted;

    // The node must know flood's quota before the flood starts.
    tokio::time::sleep(TENANT_REFRESH.saturating_sub(registered.elapsed())).await;

    // Phase 2: the same calm load while flood pushes as fast as it may.
    let tally = Arc::new(FloodTally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let first_refusal: FirstRefusal = Arc::default();
    let flood_started = Instant::now();
    let senders: Vec<_> = (0..FLOOD_SENDERS)
        .map(|_| {
            tokio::spawn(flood_sender(
                url.clone(),
                flood_ingest.clone(),
                tally.clone(),
                stop.clone(),
                first_refusal.clone(),
            ))
        })
        .collect();
    // Flood has spent its burst and is refused by then.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = calm_run(&node, &calm_ingest, 100_000).await?;
    calm_accepted += busy.accepted;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.context("flood sender")??;
    }
    let flood_seconds = flood_started.elapsed().as_secs_f64();
    let flood_phase = tally.accepted.load(Ordering::Relaxed);
    flood_accepted += flood_phase;
    let rejected = tally.rejected.load(Ordering::Relaxed);
    let requests = tally.requests.load(Ordering::Relaxed);

    println!(
        "calm solo:  {:.0} events/s, p50 {:?}, max {:?}",
        solo.events_per_second, solo.p50, solo.max
    );
    println!(
        "calm flood: {:.0} events/s, p50 {:?}, max {:?}",
        busy.events_per_second, busy.p50, busy.max
    );
    println!(
        "flood: {requests} requests, {rejected} refused (429), {flood_phase} events accepted in \
         {flood_seconds:.1} s ({:.0} events/s; quota {FLOOD_QUOTA}/s)",
        flood_phase as f64 / flood_seconds
    );

    // The quota acted: flood was refused, with Retry-After and the error
    // naming the tenant and its quota, and got no more than its rate plus
    // one second of burst (and one batch of debt).
    ensure!(rejected > 0, "flood was never refused: {requests} requests");
    let (retry_after, answer) = first_refusal
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone()
        .context("a refusal")?;
    let retry_after = retry_after.context("429 without Retry-After")?;
    assert_eq!(answer["error"]["code"], "quota_exceeded", "{answer}");
    assert_eq!(
        answer["error"]["message"],
        format!(
            "tenant flood is over its ingest quota of {FLOOD_QUOTA} events/s on this node; \
             retry after {retry_after} s"
        )
    );
    let ceiling = FLOOD_QUOTA as f64 * (flood_seconds + 1.0) + FLOOD_BATCH as f64;
    ensure!(
        (flood_phase as f64) <= ceiling,
        "flood got {flood_phase} events in {flood_seconds:.1} s, more than {ceiling:.0} at \
         {FLOOD_QUOTA}/s"
    );

    // Calm kept its throughput (the pure 20 % bound) and its median latency:
    // within 20 %, or 20 ms, whichever is larger. Calm's requests take tens
    // of milliseconds here, so a fixed scheduling hiccup on this shared
    // 2-core machine (the flood's own admitted 1500 events/s are parsed and
    // committed beside calm's) is a large fraction of them; 20 ms keeps
    // the bound meaningful without making it flaky.
    ensure!(
        busy.events_per_second >= 0.8 * solo.events_per_second,
        "calm's throughput fell from {:.0} to {:.0} events/s under the flood",
        solo.events_per_second,
        busy.events_per_second
    );
    let allowed = (solo.p50.mul_f64(1.2)).max(solo.p50 + Duration::from_millis(20));
    ensure!(
        busy.p50 <= allowed,
        "calm's median latency rose from {:?} to {:?} under the flood (allowed {allowed:?})",
        solo.p50,
        busy.p50
    );

    // Nothing accepted was lost, and nothing refused was written: each
    // tenant's events are exactly what it was told were accepted.
    assert_eq!(count_events(&node, &calm_analyst).await?, calm_accepted);
    assert_eq!(count_events(&node, &flood_analyst).await?, flood_accepted);

    // The refusals are counted per tenant.
    let metrics = reqwest::get(format!("{}/metrics", node.http))
        .await?
        .text()
        .await?;
    ensure!(
        metrics
            .lines()
            .any(|l| l.starts_with("spoor_ingest_quota_rejected_total{tenant=\"flood\"}")),
        "no spoor_ingest_quota_rejected_total for flood in /metrics"
    );
    ensure!(
        !metrics.contains("spoor_ingest_quota_rejected_total{tenant=\"calm\"}"),
        "calm was refused"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_waits_for_the_quota_and_loses_nothing() -> Result<()> {
    const QUOTA: u64 = 300;
    const EVENTS: usize = 2400;
    let broker = Broker::start()?;
    broker.create_topic("quota-events", 2).await?;
    let dir = tempfile::tempdir()?;
    let node = Spoor::role(
        "standalone",
        &dir.path().join("data"),
        &[],
        &SpoorOptions {
            env: kafka_env(&broker, "quota-events", "e2e-quota"),
            ..SpoorOptions::default()
        },
    )?;
    let grpc = node.grpc.clone().context("standalone serves gRPC")?;
    // Kafka events without [[ingest.sources]] go to tenant `default`.
    spoor_cli_json(&[
        "tenant",
        "create",
        "default",
        "--ingest-events-per-second",
        &QUOTA.to_string(),
        "--coordinator",
        &grpc,
    ])?;
    tokio::time::sleep(TENANT_REFRESH).await;

    let started = Instant::now();
    broker
        .produce("quota-events", &good_events(0, EVENTS))
        .await?;
    node.wait_for(
        "SELECT count(*) FROM events",
        EVENTS as i64,
        Duration::from_secs(40),
    )
    .await?;
    let took = started.elapsed();
    println!(
        "{EVENTS} kafka events at a quota of {QUOTA}/s took {took:?} ({:.0} events/s)",
        EVENTS as f64 / took.as_secs_f64()
    );
    // A tenant gets one second of burst, then its rate, and its last
    // charge may go into debt: the pipeline charges each batch from the
    // poll thread (at most 512 messages), so at least
    // (2400 - 300 - 512) / 300 = 5.3 s; unlimited, 1500 events took 1.3 s.
    let least = Duration::from_secs_f64((EVENTS as u64 - QUOTA - 512) as f64 / QUOTA as f64);
    ensure!(
        took >= least,
        "{EVENTS} events at {QUOTA}/s landed in {took:?}, faster than the quota allows"
    );
    // Every message exactly once, none dropped by the waits.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        node.scalar("SELECT count(DISTINCT (source_partition, source_offset)) FROM events")
            .await?,
        EVENTS as i64
    );
    assert_eq!(
        node.scalar("SELECT count(*) FROM events").await?,
        EVENTS as i64
    );
    assert_eq!(node.scalar("SELECT count(*) FROM dead_letter").await?, 0);
    let metrics = reqwest::get(format!("{}/metrics", node.http))
        .await?
        .text()
        .await?;
    ensure!(
        metrics.contains("spoor_ingest_quota_delayed_seconds"),
        "the kafka source never waited"
    );
    Ok(())
}

//! The lake on a real S3-compatible server (s3s-fs, checking SigV4
//! signatures): `spoor standalone` ingesting over Kafka and HTTP into a
//! bucket, refusing to start with wrong credentials or a missing bucket,
//! waiting for a store that is down at start, uploading large files in
//! parts, and riding out an outage of the server with nothing lost and
//! nothing duplicated.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;
use spoor_tests::s3::{S3Server, walk};
use spoor_tests::{Broker, Spoor, SpoorOptions, good_events, kafka_env};

const WAIT: Duration = Duration::from_secs(60);
const BUCKET: &str = "lake";
const MIB: u64 = 1 << 20;

/// Rows of one (partition, offset) of `topic` that appear more than once.
fn duplicates_sql(topic: &str) -> String {
    format!(
        "SELECT source_partition, source_offset, count(*) AS n FROM events \
         WHERE source_topic = '{topic}' GROUP BY source_partition, source_offset \
         HAVING count(*) > 1"
    )
}

/// An S3 server with the lake's bucket, and the environment that puts
/// spoor's lake at `s3://lake{prefix}` on it.
fn s3_lake(dir: &std::path::Path, prefix: &str) -> Result<(S3Server, Vec<(String, String)>)> {
    let s3 = S3Server::start(&dir.join("s3"))?;
    s3.create_bucket(BUCKET)?;
    let env = s3.spoor_env(BUCKET, prefix, &dir.join("s3-secret"))?;
    Ok((s3, env))
}

/// `POST /v1/ingest/{source}` of `events` as NDJSON: the status and body.
async fn post_events(spoor: &Spoor, source: &str, events: &[Vec<u8>]) -> Result<(u16, Value)> {
    let body = events.join(&b'\n');
    let resp = spoor
        .client
        .post(format!("{}/v1/ingest/{source}", spoor.http))
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .context("POST /v1/ingest")?;
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// The value of the first `/metrics` line starting with `prefix`.
async fn metric(spoor: &Spoor, prefix: &str) -> Result<Option<f64>> {
    let text = spoor
        .client
        .get(format!("{}/metrics", spoor.http))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_and_http_events_land_in_the_bucket() -> Result<()> {
    let broker = Broker::start()?;
    broker.create_topic("s3-events", 2).await?;
    broker.produce("s3-events", &good_events(0, 300)).await?;

    let dir = tempfile::tempdir()?;
    let (s3, mut env) = s3_lake(dir.path(), "/spoor/prod")?;
    env.extend(kafka_env(&broker, "s3-events", "e2e-s3"));
    let opts = SpoorOptions {
        env,
        ..SpoorOptions::default()
    };
    let data = dir.path().join("data");
    let mut spoor = Spoor::standalone(&data, &opts)?;
    spoor
        .wait_for("SELECT count(*) FROM events", 300, WAIT)
        .await?;

    let (status, body) = post_events(&spoor, "fw", &good_events(10_000, 25)).await?;
    assert_eq!(
        (status, body["accepted"].clone()),
        (200, 25.into()),
        "{body}"
    );
    spoor
        .wait_for("SELECT count(*) FROM events", 325, WAIT)
        .await?;
    assert_eq!(
        spoor
            .scalar("SELECT count(*) FROM events WHERE source_topic = 'http:fw'")
            .await?,
        25
    );
    let dups = spoor.sql(&duplicates_sql("s3-events")).await?;
    assert_eq!(dups["rows"], Value::Array(Vec::new()), "{dups}");

    // The files are objects in the bucket, under the URL's prefix, and
    // nowhere on local disk.
    let objects = s3.objects(BUCKET, ".parquet")?;
    assert!(
        objects
            .iter()
            .any(|o| o.key.starts_with("spoor/prod/tenants/default/events/")),
        "{objects:?}"
    );
    assert!(
        objects.iter().all(|o| o.key.starts_with("spoor/prod/")),
        "every object under the prefix: {objects:?}"
    );
    let local: Vec<_> = walk(&data)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(local.is_empty(), "no Parquet on local disk: {local:?}");

    // After a restart everything is read back from the bucket.
    assert!(spoor.stop()?.success(), "clean shutdown");
    let spoor = Spoor::standalone(&data, &opts)?;
    assert_eq!(spoor.scalar("SELECT count(*) FROM events").await?, 325);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_stops_on_refusals_and_waits_for_an_unreachable_store() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut s3, env) = s3_lake(dir.path(), "")?;
    let endpoint = s3.endpoint();
    let with = |extra: &[(&str, &str)]| {
        let mut env = env.clone();
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        SpoorOptions {
            env,
            ..SpoorOptions::default()
        }
    };

    // A wrong secret key: the server refuses the signature, at once.
    let wrong = dir.path().join("wrong-secret");
    std::fs::write(&wrong, "not-the-secret-key")?;
    let wrong = wrong.display().to_string();
    let started = Instant::now();
    let err = Spoor::standalone(
        &dir.path().join("a"),
        &with(&[("SPOOR_STORAGE__S3__SECRET_ACCESS_KEY_FILE", wrong.as_str())]),
    )
    .err()
    .context("spoor started with a wrong secret key")?;
    let err = format!("{err:#}");
    assert!(
        err.contains(&format!(
            "the lake's S3 bucket lake at {endpoint} refused the start-up check"
        )) && err.contains("SignatureDoesNotMatch"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a refusal is not retried"
    );

    // A bucket that does not exist.
    let err = Spoor::standalone(
        &dir.path().join("b"),
        &with(&[("SPOOR_STORAGE__URL", "s3://no-such-bucket/spoor")]),
    )
    .err()
    .context("spoor started on a missing bucket")?;
    let err = format!("{err:#}");
    assert!(
        err.contains("bucket no-such-bucket") && err.contains("NoSuchBucket"),
        "{err}"
    );

    // A plain http:// endpoint without allow_http is a configuration error
    // naming the key.
    let err = Spoor::standalone(
        &dir.path().join("c"),
        &with(&[("SPOOR_STORAGE__S3__ALLOW_HTTP", "false")]),
    )
    .err()
    .context("spoor started on http:// without allow_http")?;
    let err = format!("{err:#}");
    assert!(err.contains("storage.s3.allow_http"), "{err}");

    // The store down at start: retried until startup_timeout_ms, then an
    // error naming the endpoint.
    s3.stop()?;
    let started = Instant::now();
    let err = Spoor::standalone(
        &dir.path().join("d"),
        &with(&[("SPOOR_STORAGE__S3__STARTUP_TIMEOUT_MS", "2000")]),
    )
    .err()
    .context("spoor started without its store")?;
    let err = format!("{err:#}");
    assert!(
        err.contains(&format!(
            "the lake's S3 endpoint {endpoint} (bucket lake) was unreachable"
        )),
        "{err}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "an unreachable store is retried"
    );

    // ... and a store that comes up within the time is waited for.
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(3));
        s3.restart().map(|()| s3)
    });
    let spoor = Spoor::standalone(
        &dir.path().join("e"),
        &with(&[("SPOOR_STORAGE__S3__STARTUP_TIMEOUT_MS", "30000")]),
    )?;
    let _s3 = starter
        .join()
        .map_err(|_| anyhow::anyhow!("the restart thread panicked"))??;
    let log = std::fs::read_to_string(&spoor.log_path)?;
    assert!(
        log.contains("the lake's S3 endpoint is unreachable; retrying"),
        "{log}"
    );
    let (status, body) = post_events(&spoor, "fw", &good_events(0, 3)).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(spoor.scalar("SELECT count(*) FROM events").await?, 3);
    Ok(())
}

/// Events whose `blob` is `size` characters that zstd cannot shrink much,
/// so a few thousand of them make a Parquet file of several MiB.
fn bulky_events(n: usize, size: usize) -> Vec<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    good_events(50_000, n)
        .into_iter()
        .map(|event| {
            let mut event: Value = serde_json::from_slice(&event).expect("good_events are JSON");
            let blob: String = (0..size)
                .map(|_| {
                    // xorshift64: deterministic, and random enough to defeat zstd.
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(ALPHABET[(state % 64) as usize])
                })
                .collect();
            event["blob"] = blob.into();
            event.to_string().into_bytes()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_above_the_threshold_go_up_in_parts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (s3, mut env) = s3_lake(dir.path(), "")?;
    let threshold = 5 * MIB;
    env.push((
        "SPOOR_STORAGE__S3__MULTIPART_THRESHOLD_BYTES".into(),
        threshold.to_string(),
    ));
    let spoor = Spoor::standalone(
        &dir.path().join("data"),
        &SpoorOptions {
            env,
            ..SpoorOptions::default()
        },
    )?;

    let (status, body) = post_events(&spoor, "small", &good_events(0, 10)).await?;
    assert_eq!(status, 200, "{body}");
    // About 10 MB of request: one Parquet file of ~2 parts (the blob is in
    // both `raw` and `unmapped`).
    let (status, body) = post_events(&spoor, "bulky", &bulky_events(2_400, 4_000)).await?;
    assert_eq!(
        (status, body["accepted"].clone()),
        (200, 2_400.into()),
        "{body}"
    );
    assert_eq!(spoor.scalar("SELECT count(*) FROM events").await?, 2_410);
    assert_eq!(
        spoor
            .scalar("SELECT count(*) FROM events WHERE length(unmapped) > 4000")
            .await?,
        2_400,
        "the large file reads back whole"
    );

    // s3s-fs gives an object completed from parts the ETag `{md5}-{parts}`,
    // one from a single PUT the plain MD5: every object above the threshold
    // came from 8 MiB parts, every one below from one PUT.
    let objects = s3.objects(BUCKET, ".parquet")?;
    let (large, small): (Vec<_>, Vec<_>) = objects.iter().partition(|o| o.size > threshold);
    assert!(!large.is_empty(), "a file above the threshold: {objects:?}");
    assert!(!small.is_empty(), "a file below it: {objects:?}");
    for o in &large {
        let parts = u32::try_from(o.size.div_ceil(8 * MIB))?;
        assert_eq!(o.multipart_parts(), Some(parts), "{o:?}");
    }
    assert!(
        large.iter().any(|o| o.multipart_parts() >= Some(2)),
        "{large:?}"
    );
    for o in &small {
        assert!(
            o.e_tag.is_some() && o.multipart_parts().is_none(),
            "one PUT: {o:?}"
        );
    }
    let uploads = metric(&spoor, "spoor_storage_multipart_uploads_total")
        .await?
        .unwrap_or(0.0);
    assert!(uploads >= large.len() as f64, "{uploads}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_the_store_pauses_ingest_without_loss_or_duplicates() -> Result<()> {
    let broker = Arc::new(Broker::start()?);
    broker.create_topic("outage", 2).await?;
    broker.produce("outage", &good_events(0, 200)).await?;

    let dir = tempfile::tempdir()?;
    let (mut s3, mut env) = s3_lake(dir.path(), "/lake")?;
    env.extend(kafka_env(&broker, "outage", "e2e-outage"));
    let spoor = Arc::new(Spoor::standalone(
        &dir.path().join("data"),
        &SpoorOptions {
            env,
            ..SpoorOptions::default()
        },
    )?);
    let kafka_count = "SELECT count(*) FROM events WHERE source_topic = 'outage'";
    spoor.wait_for(kafka_count, 200, WAIT).await?;

    // Events keep coming from Kafka (40 × 25 over ~10 s) and over HTTP
    // (5 at a time) before, during and after the outage.
    let producer = {
        let broker = broker.clone();
        tokio::spawn(async move {
            for round in 0..40 {
                broker
                    .produce("outage", &good_events(200 + round * 25, 25))
                    .await?;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            anyhow::Ok(())
        })
    };
    let sender = {
        let spoor = spoor.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            let until = Instant::now() + Duration::from_secs(13);
            let mut i = 0;
            while Instant::now() < until {
                let (status, body) =
                    post_events(&spoor, "outage", &good_events(5_000 + i * 5, 5)).await?;
                answers.push((status, body));
                i += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            anyhow::Ok(answers)
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    s3.stop()?;
    tokio::time::sleep(Duration::from_secs(7)).await;
    s3.restart()?;

    producer.await??;
    let answers = sender.await??;
    let acked: i64 = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body["accepted"].as_i64().unwrap_or(0))
        .sum();
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        !refused.is_empty(),
        "HTTP ingest during the outage is refused: {answers:?}"
    );
    for (status, body) in &refused {
        assert_eq!(
            (*status, body["error"]["code"].as_str()),
            (503, Some("storage_unavailable")),
            "{body}"
        );
    }
    assert!(acked > 0, "{answers:?}");

    // Everything produced arrives once; every acknowledged HTTP event is
    // there, and nothing of the refused ones.
    spoor.wait_for(kafka_count, 1_200, WAIT).await?;
    assert_eq!(
        spoor
            .scalar("SELECT count(*) FROM events WHERE source_topic = 'http:outage'")
            .await?,
        acked
    );
    assert_eq!(
        spoor.scalar("SELECT count(*) FROM events").await?,
        1_200 + acked
    );
    let dups = spoor.sql(&duplicates_sql("outage")).await?;
    assert_eq!(dups["rows"], Value::Array(Vec::new()), "{dups}");

    // The writer saw the store unreachable and said so.
    let errors = metric(
        &spoor,
        "spoor_storage_write_errors_total{kind=\"unreachable\"}",
    )
    .await?
    .unwrap_or(0.0);
    assert!(errors > 0.0, "write errors counted");
    assert_eq!(
        metric(&spoor, "spoor_storage_unreachable").await?,
        Some(0.0),
        "reachable again"
    );
    let log = std::fs::read_to_string(&spoor.log_path)?;
    assert!(
        log.contains("the lake's object store is unreachable")
            && log.contains("the lake's object store is reachable again"),
        "{}",
        spoor_tests::tail(&spoor.log_path)
    );
    Ok(())
}

//! Compaction through the real binary: a standalone node with a one-second
//! compaction interval and a two-second delete grace takes several HTTP
//! batches of one hour (one small Parquet file each), merges them into one
//! file, keeps every row queryable throughout, and deletes the small files
//! from the lake once the grace has passed.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use spoor_tests::{Spoor, SpoorOptions, good_events, tail};

/// Parquet files under `dir`, recursively.
fn parquet_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                parquet_files(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_are_merged_and_deleted_after_the_grace() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("node");
    let env = |k: &str, v: &str| (k.to_string(), v.to_string());
    let opts = SpoorOptions {
        env: vec![
            env("SPOOR_INGEST__COMPACTION__INTERVAL_MS", "1000"),
            env("SPOOR_INGEST__COMPACTION__MIN_FILES", "2"),
            // Above the batch count: the settled hour, not the file count, triggers.
            env("SPOOR_INGEST__COMPACTION__MAX_FILES", "100"),
            env("SPOOR_INGEST__COMPACTION__DELETE_GRACE_MS", "2000"),
            // The grace must cover the longest query.
            env("SPOOR_QUERY__TIMEOUT_MS", "2000"),
        ],
        ..SpoorOptions::default()
    };
    let node = Spoor::standalone(&data, &opts)?;
    let events_dir = data.join("lake/tenants/default/events");

    // Five batches, one file each, all in 2024-03-05T07 (long settled).
    let batches = 5;
    let per_batch = 40;
    let client = reqwest::Client::new();
    for b in 0..batches {
        let body: Vec<u8> = good_events(b * per_batch, per_batch)
            .into_iter()
            .flat_map(|mut e| {
                e.push(b'\n');
                e
            })
            .collect();
        client
            .post(format!("{}/v1/ingest/edr", node.http))
            .body(body)
            .send()
            .await?
            .error_for_status()
            .context("HTTP ingest")?;
    }
    let total = i64::try_from(batches * per_batch)?;
    let count = "SELECT count(*) FROM events";
    assert_eq!(node.scalar(count).await?, total);
    let distinct = "SELECT count(DISTINCT source_offset || '/' || src_ip) FROM events";
    let distinct_before = node.scalar(distinct).await?;

    // The rows stay queryable the whole time, and the lake ends with one file.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut files = parquet_files(&events_dir);
    let mut saw_several = files > 1;
    while files != 1 {
        if Instant::now() > deadline {
            bail!(
                "{files} parquet files under {} after 60 s; log: {}",
                events_dir.display(),
                tail(&node.log_path)
            );
        }
        assert_eq!(node.scalar(count).await?, total, "rows during compaction");
        tokio::time::sleep(Duration::from_millis(200)).await;
        files = parquet_files(&events_dir);
        saw_several |= files > 1;
    }
    assert!(
        saw_several,
        "the batches were written as several files first"
    );
    assert_eq!(node.scalar(count).await?, total);
    assert_eq!(node.scalar(distinct).await?, distinct_before);
    assert_eq!(
        node.scalar("SELECT count(*) FROM events WHERE process_name = 'curl'")
            .await?,
        total
    );

    // The catalog agrees: one events file holding every row.
    let status: serde_json::Value = client
        .get(format!("{}/v1/status", node.http))
        .send()
        .await?
        .json()
        .await?;
    let tenants = status["catalog"]["tenants"]
        .as_array()
        .context("catalog tenants in /v1/status")?;
    let default = tenants
        .iter()
        .find(|t| t["tenant"] == "default")
        .context("default tenant in /v1/status")?;
    assert_eq!(default["row_count"].as_i64(), Some(total), "{default}");
    assert_eq!(default["file_count"].as_i64(), Some(1), "{default}");

    let metrics = client
        .get(format!("{}/metrics", node.http))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("spoor_ingest_compactions_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("spoor_ingest_objects_deleted_total{reason=\"compacted\"}"),
        "{metrics}"
    );
    Ok(())
}

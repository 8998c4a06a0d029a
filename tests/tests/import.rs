//! `spoor import` against a running standalone node: corpus files go through
//! the parsers into the lake and are counted by SQL; a second import of the
//! same content (under another name) adds nothing; an import that crashes
//! between two batches resumes after its last commit without duplicating;
//! an unregistered tenant is refused.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use spoor_tests::{Spoor, SpoorOptions, import};

fn corpus(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/events")
        .join(rel)
}

/// Lines of a file that hold data: not blank, not a Zeek `#` header.
fn data_lines(path: &Path) -> anyhow::Result<i64> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .count() as i64)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(-1)
}

/// Rows of `table` that came from the import stream of the content `sha`.
async fn rows_of(node: &Spoor, table: &str, sha: &str) -> anyhow::Result<i64> {
    node.scalar(&format!(
        "SELECT count(*) AS n FROM {table} WHERE source_topic = 'file:{sha}'"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_loads_files_once_and_resumes_after_a_crash() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("node");
    let node = Spoor::standalone(&data, &SpoorOptions::default())?;

    // Zeek TSV.
    let conn = corpus("otrf-zeek-tsv/conn.log");
    let (out, summary) = import(
        &node,
        &data,
        &[
            "--tenant",
            "default",
            "--source-type",
            "zeek",
            &conn.display().to_string(),
        ],
        &[],
    )?;
    if !out.status.success() {
        bail!(
            "spoor import exited {}: {}\n{summary}",
            out.status,
            stderr(&out)
        );
    }
    let conn_events = data_lines(&conn)?;
    assert_eq!(int(&summary["events"]), conn_events, "{summary}");
    assert_eq!(int(&summary["dead_letters"]), 0, "{summary}");
    let conn_sha = summary["imports"][0]["sha256"]
        .as_str()
        .context("sha256 in the summary")?
        .to_string();
    node.wait_for(
        &format!("SELECT count(*) AS n FROM events WHERE source_topic = 'file:{conn_sha}'"),
        conn_events,
        Duration::from_secs(20),
    )
    .await?;
    let conn_sql = node
        .scalar(&format!(
            "SELECT count(*) AS n FROM events WHERE source_topic = 'file:{conn_sha}' \
             AND metadata_log_name = 'conn' AND class_uid = 4001"
        ))
        .await?;
    assert_eq!(
        conn_sql, conn_events,
        "every conn line is a Network Activity"
    );

    let windows = corpus("otrf-windows/schtask_create.jsonl");
    let (out, summary) = import(
        &node,
        &data,
        &[
            "--tenant",
            "default",
            "-t",
            "windows",
            &windows.display().to_string(),
        ],
        &[],
    )?;
    assert!(out.status.success(), "{}: {}", out.status, stderr(&out));
    let win_sha = summary["imports"][0]["sha256"]
        .as_str()
        .context("sha256")?
        .to_string();
    let (win_events, win_dead) = (int(&summary["events"]), int(&summary["dead_letters"]));
    assert_eq!(
        (win_events, win_dead),
        (data_lines(&windows)?, 0),
        "every line is an event: {summary}"
    );
    assert_eq!(rows_of(&node, "events", &win_sha).await?, win_events);
    assert_eq!(rows_of(&node, "dead_letter", &win_sha).await?, win_dead);

    // The same content under another name: skipped, nothing added.
    let renamed = dir.path().join("conn-copy.log");
    std::fs::copy(&conn, &renamed)?;
    let (out, summary) = import(
        &node,
        &data,
        &[
            "--tenant",
            "default",
            "-t",
            "zeek",
            &renamed.display().to_string(),
        ],
        &[],
    )?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(int(&summary["already_imported"]), 1, "{summary}");
    assert_eq!(int(&summary["events"]), 0, "{summary}");
    assert_eq!(int(&summary["files_committed"]), 0, "{summary}");
    assert!(int(&summary["records_skipped"]) >= conn_events, "{summary}");
    assert_eq!(rows_of(&node, "events", &conn_sha).await?, conn_events);

    // A crash right after the first batch's commit (batches of 30 lines):
    // the second run skips those lines, replays the Zeek header, and the
    // total is exact.
    let dns = corpus("otrf-zeek-tsv/dns.log");
    let dns_path = dns.display().to_string();
    let args = [
        "--tenant",
        "default",
        "-t",
        "zeek",
        "--set",
        "ingest.max_batch_events=30",
        dns_path.as_str(),
    ];
    let (out, _) = import(
        &node,
        &data,
        &args,
        &[("SPOOR_TEST_FAULT", "crash_after_commit")],
    )?;
    assert!(!out.status.success(), "the fault aborts the import");
    assert!(
        stderr(&out).contains("aborting at CrashAfterCommit"),
        "{}",
        stderr(&out)
    );
    let (out, summary) = import(&node, &data, &args, &[])?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(int(&summary["records_skipped"]), 30, "{summary}");
    let dns_sha = summary["imports"][0]["sha256"]
        .as_str()
        .context("sha256")?
        .to_string();
    let dns_events = data_lines(&dns)?;
    assert_eq!(rows_of(&node, "events", &dns_sha).await?, dns_events);
    assert_eq!(rows_of(&node, "dead_letter", &dns_sha).await?, 0);
    let distinct = node
        .scalar(&format!(
            "SELECT count(DISTINCT source_offset) AS n FROM events WHERE source_topic = 'file:{dns_sha}'"
        ))
        .await?;
    assert_eq!(distinct, dns_events, "no line twice");

    // An unregistered tenant is refused before anything is written.
    let (out, _) = import(
        &node,
        &data,
        &["--tenant", "nobody", "-t", "zeek", &dns_path],
        &[],
    )?;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not registered"), "{}", stderr(&out));
    Ok(())
}

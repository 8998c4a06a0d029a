//! Retro-hunts against a standalone node: events ingested first, then a
//! stored rule set and rules sent with the request run over a past range
//! (the API and `spoor rules hunt --wait`); exactly the alerts of the range
//! land in `alerts` with `origin = 'retro_hunt'`, a job run again under its
//! id commits nothing twice, and bad requests are refused naming the field.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use spoor_tests::{
    Spoor, SpoorOptions, call, encoded_shell_rule, failed_logon_rule, logon_event,
    repeated_failed_logons_rule, spoor_cli, tail, test_time, write_rules,
};

const LOGON_ID: &str = "5b0c2d61-0000-4000-8000-000000000001";
const BURST_ID: &str = "5b0c2d61-0000-4000-8000-000000000002";
const SHELL_ID: &str = "5b0c2d61-0000-4000-8000-000000000003";

/// Events 30 s apart from 08:00 on: failed logons of five accounts taking
/// turns and, every eleventh, an encoded shell.
const EVENTS: usize = 360;

fn events() -> String {
    (0..EVENTS)
        .map(|i| {
            let user = format!("user{}", (i * 7) % 5);
            logon_event(i, test_time(i * 30), user, i % 11 == 0).to_string() + "\n"
        })
        .collect()
}

/// The range hunted: events 60 (08:30) to 240 (10:00), exclusive.
const FROM: &str = "2026-11-30T08:30:00Z";
const TO: &str = "2026-11-30T10:00:00Z";

/// Shells inside the range: 66, 77, …, 231.
fn shells_in_range() -> i64 {
    (60..240).filter(|i| i % 11 == 0).count() as i64
}

/// Polls the job until it has ended; returns it.
async fn wait_done(node: &Spoor, job_id: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, job) = call(
            reqwest::Method::GET,
            &format!("{}/v1/retro-hunts/{job_id}", node.http),
            None,
            None,
        )
        .await?;
        if status != 200 {
            bail!("GET job {job_id}: {status} {job}");
        }
        if matches!(job["state"].as_str(), Some("done" | "failed" | "cancelled")) {
            return Ok(job);
        }
        if Instant::now() > deadline {
            bail!(
                "job {job_id} still {job} after 120 s; log: {}",
                tail(&node.log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The rules: failed logons and bursts of them in `logons.yml`, encoded
/// shells in `shell.yml`.
fn write_hunt_rules(dir: &std::path::Path) -> anyhow::Result<()> {
    let logons = [
        failed_logon_rule(LOGON_ID),
        repeated_failed_logons_rule(BURST_ID, LOGON_ID, 3, &[]),
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

/// `spoor rules hunt <rules> --tenant default --from FROM --to TO` against
/// `endpoint`, with `extra` arguments.
fn hunt_cli(rules: &str, endpoint: &str, extra: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let mut args = vec![
        "rules",
        "hunt",
        rules,
        "--tenant",
        "default",
        "--from",
        FROM,
        "--to",
        TO,
        "--endpoint",
        endpoint,
    ];
    args.extend(extra);
    spoor_cli(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retro_hunts_put_exactly_the_alerts_of_the_range_in_alerts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("hunt");
    write_hunt_rules(&rules)?;
    let node = Spoor::standalone(&dir.path().join("data"), &SpoorOptions::default())?;
    let base = node.http.clone();

    // The events first: history.
    reqwest::Client::new()
        .post(format!("{base}/v1/ingest/edr"))
        .body(events())
        .send()
        .await?
        .error_for_status()
        .context("HTTP ingest")?;
    node.wait_for(
        "SELECT count(*) FROM events",
        EVENTS as i64,
        Duration::from_secs(30),
    )
    .await?;
    // Then the rules (new rules watch new events: live finds nothing old).
    node.apply_rules(&rules, None)?;

    // Bad requests are refused, naming the field.
    let url = format!("{base}/v1/retro-hunts");
    let post = |body: Value| call(reqwest::Method::POST, &url, None, Some(body));
    let (status, answer) =
        post(json!({"tenant": "default", "rule_set": "hunt", "from": "yesterday", "to": TO}))
            .await?;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("from ")),
        "{answer}"
    );
    let (status, answer) =
        post(json!({"tenant": "default", "rule_set": "hunt", "from": TO, "to": FROM})).await?;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (400, &json!("invalid_time")),
        "{answer}"
    );
    let (status, answer) = post(
        json!({"tenant": "default", "rule_set": "hunt", "from": "2025-01-01T00:00:00Z", "to": TO}),
    )
    .await?;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (400, &json!("range_too_long")),
        "{answer}"
    );
    let (status, answer) =
        post(json!({"tenant": "default", "rule_set": "nope", "from": FROM, "to": TO})).await?;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("rule_set") && m.contains("nope")),
        "{answer}"
    );

    // The stored rule set over the range.
    let (status, job) =
        post(json!({"tenant": "default", "rule_set": "hunt", "from": FROM, "to": TO})).await?;
    assert_eq!(status, 202, "{job}");
    let job_id = job["job_id"].as_str().context("job_id")?.to_string();
    let job = wait_done(&node, &job_id).await?;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["rule_set_version"], 1, "{job}");
    let files = job["files_total"].as_u64().context("files_total")?;
    assert!(files >= 2, "the range spans two hours: {job}");
    assert_eq!(job["files_done"], files, "{job}");
    let found = job["alerts_found"].as_i64().context("alerts_found")?;
    assert_eq!(job["alerts_committed"], found, "{job}");

    let mine = format!("origin = 'retro_hunt' AND shard = 'retro:{job_id}'");
    assert_eq!(
        node.scalar(&format!("SELECT count(*) FROM alerts WHERE {mine}"))
            .await?,
        found
    );
    assert_eq!(
        node.scalar(&format!(
            "SELECT count(*) FROM alerts WHERE {mine} AND rule_title = 'Encoded shell'"
        ))
        .await?,
        shells_in_range()
    );
    assert!(
        node.scalar(&format!(
            "SELECT count(*) FROM alerts WHERE {mine} AND rule_kind = 'correlation'"
        ))
        .await?
            > 0,
        "correlations run within the job"
    );
    assert_eq!(
        node.scalar(&format!(
            "SELECT count(*) FROM alerts WHERE {mine} AND (first_event_time < TIMESTAMP '{FROM}' OR last_event_time >= TIMESTAMP '{TO}')"
        ))
        .await?,
        0,
        "nothing outside the range"
    );
    assert_eq!(
        node.scalar(&format!(
            "SELECT count(DISTINCT alert_id) FROM alerts WHERE {mine}"
        ))
        .await?,
        found
    );

    // Run again under its id: nothing committed twice.
    let (status, again) = post(
        json!({"tenant": "default", "rule_set": "hunt", "from": FROM, "to": TO, "job_id": job_id}),
    )
    .await?;
    assert_eq!(status, 202, "{again}");
    let again = wait_done(&node, &job_id).await?;
    assert_eq!(again["state"], "done", "{again}");
    assert_eq!(
        (
            &again["alerts_committed"],
            &again["alerts_already_committed"]
        ),
        (&json!(0), &json!(found)),
        "{again}"
    );
    assert_eq!(
        node.scalar(&format!("SELECT count(*) FROM alerts WHERE {mine}"))
            .await?,
        found
    );

    // Listed on this node, with the note that jobs live in its memory.
    let (status, listed) = call(
        reqwest::Method::GET,
        &format!("{base}/v1/retro-hunts?tenant=default"),
        None,
        None,
    )
    .await?;
    assert_eq!(status, 200, "{listed}");
    assert!(
        listed["jobs"]
            .as_array()
            .is_some_and(|j| j.iter().any(|j| j["job_id"] == json!(job_id))),
        "{listed}"
    );
    assert!(
        listed["note"]
            .as_str()
            .is_some_and(|n| n.contains("restart"))
    );

    // Rules from a folder through the CLI, waiting for the end.
    let rules_arg = rules.display().to_string();
    let (code, out, err) = hunt_cli(&rules_arg, &base, &["--wait"])?;
    assert_eq!(code, 0, "{out}{err}");
    let cli_job = out
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("no job id in {out}"))?
        .to_string();
    assert!(out.contains("rule set ad-hoc"), "{out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(last.starts_with("done: "), "{out}");
    assert!(last.contains(&format!("{found} alerts")), "{out}");
    assert_eq!(
        node.scalar(&format!(
            "SELECT count(*) FROM alerts WHERE shard = 'retro:{cli_job}' AND rule_set = 'ad-hoc'"
        ))
        .await?,
        found,
        "the same rules find the same alerts, under the job's own ids"
    );
    assert_eq!(
        node.scalar("SELECT count(DISTINCT alert_id) FROM alerts WHERE origin = 'retro_hunt'")
            .await?,
        2 * found
    );
    // A refused rule: nothing started.
    std::fs::write(
        rules.join("bad.yml"),
        "title: bad\nlogsource: {product: spoortest}\ndetection:\n  sel:\n    a|startwith: x\n  condition: sel\n",
    )?;
    let (code, out, err) = hunt_cli(&rules_arg, &base, &[])?;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("bad.yml") && err.contains("no retro-hunt started"),
        "{err}"
    );
    Ok(())
}

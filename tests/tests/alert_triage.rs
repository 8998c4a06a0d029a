//! Alert triage against the real binary and a real Kafka-protocol broker:
//! events raise alerts on the worker, an analyst acknowledges and closes
//! one through `PATCH /v1/alerts/{tenant}/{alert_id}`, and `alerts` shows
//! its status, assignee and times, so MTTR is plain SQL. Bad requests name
//! the field; another tenant's analyst can neither reach the tenant nor
//! find the alert under its own.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use spoor_tests::{
    Broker, Spoor, SpoorOptions, encoded_shell_rule, kafka_env, rfc3339, spoor_cli, tail,
};

const TOPIC: &str = "triage-events";
const WAIT: Duration = Duration::from_secs(120);

/// The rule: encoded shells.
fn rule() -> String {
    encoded_shell_rule("7d6c1b52-1f0e-4d8a-9a51-0000000000a1")
}

/// Runs `spoor args…`; the JSON it prints.
fn cli(args: &[&str]) -> anyhow::Result<Value> {
    let (code, out, err) = spoor_cli(args)?;
    if code != 0 {
        bail!("spoor {}: {err}", args.join(" "));
    }
    Ok(serde_json::from_str(&out).unwrap_or(Value::Null))
}

/// A new token: its secret and its id.
fn token(grpc: &str, role: &str, tenant: Option<&str>) -> anyhow::Result<(String, String)> {
    let mut args = vec!["token", "create", "--role", role, "--coordinator", grpc];
    if let Some(t) = tenant {
        args.extend(["--tenant", t]);
    }
    let out = cli(&args)?;
    Ok((
        out["token"].as_str().context("token printed")?.to_string(),
        out["token_id"]
            .as_str()
            .context("token id printed")?
            .to_string(),
    ))
}

/// `method path` with `token` and `body`: status and JSON answer.
async fn call(
    node: &Spoor,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    spoor_tests::call(method, &format!("{}{path}", node.http), Some(token), body).await
}

/// The rows of `sql`, or an error with the answer.
async fn rows(node: &Spoor, token: &str, sql: &str) -> anyhow::Result<Vec<Value>> {
    let (status, body) = call(
        node,
        reqwest::Method::POST,
        "/v1/query",
        token,
        Some(json!({ "sql": sql })),
    )
    .await?;
    if status != 200 {
        bail!("{sql}: {status} {body}");
    }
    body["rows"]
        .as_array()
        .cloned()
        .with_context(|| format!("{sql}: no rows in {body}"))
}

/// `n` events ten minutes ago, five seconds apart, the odd ones encoded
/// shells.
fn events(n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let start = now.as_secs() - 600;
    Ok((0..n)
        .map(|i| {
            let time = rfc3339(start + i as u64 * 5);
            let cmd = if i % 2 == 1 {
                format!("powershell -enc AAA{i}")
            } else {
                "notepad".to_string()
            };
            json!({"time": time, "test_action": "exec", "test_cmd": cmd, "test_host": "ws1"})
                .to_string()
                .into_bytes()
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysts_acknowledge_and_close_alerts_and_mttr_is_sql() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = Broker::start()?;
    broker.create_topic(TOPIC, 1).await?;
    let node = Spoor::role(
        "standalone",
        &dir.path().join("data"),
        &[
            "query.auth=token".to_string(),
            "node.heartbeat_interval_ms=300".into(),
            "coordinator.scheduler_interval_ms=300".into(),
            "worker.commit_interval_ms=300".into(),
            "worker.poll_interval_ms=100".into(),
            "ingest.compaction.enabled=false".into(),
        ],
        &SpoorOptions {
            env: kafka_env(&broker, TOPIC, "triage"),
            ..SpoorOptions::default()
        },
    )?;
    let grpc = node.grpc.clone().context("standalone serves gRPC")?;
    for tenant in ["default", "globex"] {
        cli(&["tenant", "add", tenant, "--coordinator", &grpc])?;
    }
    let (admin, _) = token(&grpc, "admin", None)?;
    let (analyst, analyst_id) = token(&grpc, "analyst", Some("default"))?;
    let (outsider, _) = token(&grpc, "analyst", Some("globex"))?;

    let (status, body) = call(
        &node,
        reqwest::Method::PUT,
        "/v1/rules/sets/default/triage",
        &admin,
        Some(json!({"bundle": {"rules": [{"path": "shell.yml", "text": rule()}]}})),
    )
    .await?;
    anyhow::ensure!(status == 200, "applying the rule: {status} {body}");
    // The shard must hold its lease before the events land: a new shard
    // starts at the catalog head.
    // The cluster status names every tenant: only the cluster's admin
    // reads it with tokens on.
    let status_url = format!("{}/v1/status", node.http);
    let http = reqwest::Client::new();
    let anonymous = http.get(&status_url).send().await?.status().as_u16();
    assert_eq!(anonymous, 401, "no token, no cluster status");
    let (code, refusal) = {
        let resp = http.get(&status_url).bearer_auth(&analyst).send().await?;
        (resp.status().as_u16(), resp.json::<Value>().await?)
    };
    assert_eq!(code, 403, "{refusal}");
    assert!(
        !refusal.to_string().contains("globex"),
        "the refusal names no tenant: {refusal}"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let s: Value = http
            .get(&status_url)
            .bearer_auth(&admin)
            .send()
            .await?
            .json()
            .await?;
        let held = s["cluster"]["shards"].as_array().is_some_and(|shards| {
            shards
                .iter()
                .any(|x| x["id"]["rule_group"] == "triage" && !x["holder"].is_null())
        });
        if held {
            break;
        }
        if Instant::now() > deadline {
            bail!("the triage shard was never leased: {s}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    broker.produce_in_order(TOPIC, &events(6)?).await?;

    let deadline = Instant::now() + WAIT;
    let alerts = loop {
        let got = rows(
            &node,
            &analyst,
            "SELECT alert_id, status, assignee, acknowledged_at, closed_at FROM alerts ORDER BY alert_id",
        )
        .await?;
        if got.len() == 3 {
            break got;
        }
        if Instant::now() > deadline {
            bail!(
                "3 alerts expected, got {got:?}; log: {}",
                tail(&node.log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for a in &alerts {
        assert_eq!(a["status"], "new", "{a}");
        assert!(a["assignee"].is_null() && a["closed_at"].is_null(), "{a}");
    }
    let id = alerts[0]["alert_id"]
        .as_str()
        .context("alert_id")?
        .to_string();
    let path = format!("/v1/alerts/default/{id}");

    // Bad requests name the field and change nothing.
    let (status, body) = call(
        &node,
        reqwest::Method::PATCH,
        &path,
        &analyst,
        Some(json!({"status": "resolved"})),
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "status", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("status") && m.contains("resolved")),
        "{body}"
    );
    let (status, body) = call(
        &node,
        reqwest::Method::PATCH,
        &path,
        &analyst,
        Some(json!({"status": "closed", "assignee": "x".repeat(500)})),
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "assignee", "{body}");

    // Another tenant's analyst: not its tenant (403), not its alert (404).
    let (status, body) = call(
        &node,
        reqwest::Method::PATCH,
        &path,
        &outsider,
        Some(json!({"status": "closed"})),
    )
    .await?;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        &node,
        reqwest::Method::PATCH,
        &format!("/v1/alerts/globex/{id}"),
        &outsider,
        Some(json!({"status": "closed"})),
    )
    .await?;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");

    // Acknowledge, then close.
    let (status, body) = call(
        &node,
        reqwest::Method::PATCH,
        &path,
        &analyst,
        Some(json!({"status": "acknowledged", "assignee": "alice", "note": "on it"})),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["update"]["previous_status"], "new", "{body}");
    assert_eq!(body["update"]["updated_by"], analyst_id.as_str(), "{body}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, body) = call(
        &node,
        reqwest::Method::PATCH,
        &path,
        &analyst,
        Some(json!({"status": "closed", "note": "false positive"})),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["update"]["assignee"], "alice", "kept: {body}");

    let got = rows(
        &node,
        &analyst,
        &format!(
            "SELECT status, assignee, acknowledged_at, closed_at, status_updated_at, \
                    closed_at > acknowledged_at AS ordered, \
                    date_part('epoch', closed_at) - date_part('epoch', first_event_time) AS mttr_s, \
                    date_part('epoch', detected_at) - date_part('epoch', first_event_time) AS mttd_s \
             FROM alerts WHERE alert_id = '{id}'"
        ),
    )
    .await?;
    let row = got.first().context("the alert")?;
    assert_eq!(row["status"], "closed", "{row}");
    assert_eq!(row["assignee"], "alice", "{row}");
    assert_eq!(row["ordered"], true, "{row}");
    assert_eq!(row["status_updated_at"], row["closed_at"], "{row}");
    let mttr = row["mttr_s"].as_f64().context("mttr_s")?;
    let mttd = row["mttd_s"].as_f64().context("mttd_s")?;
    assert!(
        (500.0..1200.0).contains(&mttr),
        "events were ten minutes old: {row}"
    );
    assert!(mttd > 0.0 && mttd <= mttr, "{row}");
    // The others are untouched; MTTR over the closed ones is one number.
    let summary = rows(
        &node,
        &analyst,
        "SELECT status, count(*) AS n, \
                avg(date_part('epoch', closed_at) - date_part('epoch', first_event_time)) AS mttr_s \
         FROM alerts GROUP BY status ORDER BY status",
    )
    .await?;
    assert_eq!(summary.len(), 2, "{summary:?}");
    assert_eq!(summary[0]["status"], "closed");
    assert_eq!(summary[0]["n"], 1);
    assert_eq!(summary[1]["status"], "new");
    assert_eq!(summary[1]["n"], 2);
    assert!(summary[1]["mttr_s"].is_null(), "{summary:?}");

    // The raw rows and the history stay queryable.
    let counts = rows(
        &node,
        &analyst,
        "SELECT (SELECT count(*) FROM alert_records) AS records, \
                (SELECT count(*) FROM alert_updates) AS updates",
    )
    .await?;
    assert_eq!(counts[0]["records"], 3, "{counts:?}");
    assert_eq!(counts[0]["updates"], 2, "{counts:?}");
    let (status, body) = call(&node, reqwest::Method::GET, &path, &analyst, None).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["alert"]["status"], "closed", "{body}");
    let history: Vec<&str> = body["history"]
        .as_array()
        .context("history")?
        .iter()
        .filter_map(|h| h["status"].as_str())
        .collect();
    assert_eq!(history, ["acknowledged", "closed"], "{body}");
    assert_eq!(body["history"][1]["note"], "false positive", "{body}");

    // globex sees none of it.
    let theirs = rows(
        &node,
        &outsider,
        "SELECT (SELECT count(*) FROM alerts) AS a, (SELECT count(*) FROM alert_updates) AS u",
    )
    .await?;
    assert_eq!(theirs[0]["a"], 0, "{theirs:?}");
    assert_eq!(theirs[0]["u"], 0, "{theirs:?}");
    Ok(())
}

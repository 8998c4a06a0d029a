//! `spoor gen` against the real binary: `spoor standalone` with the bundled
//! rule pack (`deploy/rules`) applied to two tenants, one generator run
//! over HTTP and one over Kafka (a real broker), both routed by the tenant
//! header; then the `events` table must hold exactly the manifests' counts
//! per tenant and source, every attack's records must be found by its
//! marker, and the `alerts` table must hold exactly the manifests'
//! expected alerts — each once, and nothing else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use spoor_tests::{Broker, Spoor, SpoorOptions, call, create_token, spoor_cli, tail};

const SOURCES: [&str; 4] = ["windows", "zeek", "syslog", "cef"];
const TENANTS: [&str; 2] = ["acme", "globex"];

/// The routing `docs/sources.md` ("Generating data") gives for a local
/// cluster: HTTP by header with the parser per request, Kafka one topic
/// per source type with the tenant in a header.
fn config() -> String {
    let mut c = String::from(
        "[[ingest.sources]]\ntopics = [\"http:spoor-gen-*\"]\nsource_type = \"json\"\n\
         tenant_from = \"header\"\ntenant_header = \"x-spoor-tenant\"\n",
    );
    for s in SOURCES {
        c.push_str(&format!(
            "\n[[ingest.sources]]\ntopics = [\"spoor-gen-{s}\"]\nsource_type = \"{s}\"\n\
             tenant_from = \"header\"\ntenant_header = \"x-spoor-tenant\"\n"
        ));
    }
    c
}

/// Rows of `sql` run with `token`.
async fn rows(node: &Spoor, token: &str, sql: &str) -> anyhow::Result<Vec<Value>> {
    let (status, body) = call(
        reqwest::Method::POST,
        &format!("{}/v1/query", node.http),
        Some(token),
        Some(json!({ "sql": sql })),
    )
    .await?;
    if status != 200 {
        bail!("{sql}: {status} {body}");
    }
    Ok(body["rows"].as_array().cloned().unwrap_or_default())
}

/// `(tenant, key) → count` from rows of `tenant`, `k`, `n`.
fn counts(rows: &[Value]) -> BTreeMap<(String, String), i64> {
    rows.iter()
        .map(|r| {
            (
                (
                    r["tenant"].as_str().unwrap_or_default().to_string(),
                    r["k"]
                        .as_str()
                        .map_or_else(|| r["k"].to_string(), str::to_string),
                ),
                r["n"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

/// Runs `spoor gen args…` and reads its manifest.
fn generate(args: &[&str], manifest: &Path) -> anyhow::Result<Value> {
    let mut all: Vec<&str> = vec!["gen"];
    all.extend(args);
    let manifest_arg = manifest.display().to_string();
    all.extend(["--manifest", &manifest_arg]);
    let (code, out, err) = spoor_cli(&all)?;
    if code != 0 {
        bail!("spoor {} failed ({code}): {err}{out}", all.join(" "));
    }
    let text = std::fs::read_to_string(manifest).context("reading the manifest")?;
    let m: Value = serde_json::from_str(&text)?;
    if m["complete"] != true {
        bail!("the run is not complete: {m}");
    }
    Ok(m)
}

/// Waits until ingest and query know `TENANTS`: a probe line that cannot
/// parse becomes a dead letter of the tenant named in its header once
/// ingest knows the tenant (of the unrouted tenant before).
async fn wait_for_tenants(node: &Spoor, admin: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for t in TENANTS {
            let status = reqwest::Client::new()
                .post(format!("{}/v1/ingest/spoor-gen-probe", node.http))
                .header("x-spoor-tenant", t)
                .body("not an event\n")
                .send()
                .await?
                .status();
            if !status.is_success() {
                bail!("the probe was refused: {status}");
            }
        }
        let probes = rows(
            node,
            admin,
            "SELECT DISTINCT tenant FROM dead_letter WHERE source_topic = 'http:spoor-gen-probe'",
        )
        .await
        .unwrap_or_default();
        if probes.len() == TENANTS.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "ingest did not learn of the tenants in 30 s; log: {}",
                tail(&node.log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_events_and_attacks_land_exactly_as_the_manifest_says() -> anyhow::Result<()> {
    let broker = Broker::start()?;
    for s in SOURCES {
        broker.create_topic(&format!("spoor-gen-{s}"), 2).await?;
    }
    let dir = tempfile::tempdir()?;
    let config_path = dir.path().join("spoor.toml");
    std::fs::write(&config_path, config())?;
    let topics = SOURCES
        .iter()
        .map(|s| format!("\"spoor-gen-{s}\""))
        .collect::<Vec<_>>()
        .join(",");
    let options = SpoorOptions {
        env: vec![
            ("SPOOR_CONFIG".into(), config_path.display().to_string()),
            (
                "SPOOR_INGEST__KAFKA__BROKERS".into(),
                broker.bootstrap.clone(),
            ),
            ("SPOOR_INGEST__KAFKA__TOPICS".into(), format!("[{topics}]")),
            (
                "SPOOR_INGEST__KAFKA__GROUP_ID".into(),
                "spoor-gen-test".into(),
            ),
            ("SPOOR_INGEST__FLUSH_INTERVAL_MS".into(), "500".into()),
        ],
        ..SpoorOptions::default()
    };
    let node = Spoor::role(
        "standalone",
        &dir.path().join("data"),
        &["query.auth=token".to_string()],
        &options,
    )?;
    let grpc = node.grpc.clone().context("standalone serves gRPC")?;
    for t in TENANTS {
        let (code, out, err) = spoor_cli(&["tenant", "add", t, "--coordinator", &grpc])?;
        if code != 0 {
            bail!("tenant add {t}: {err}{out}");
        }
    }
    let admin = create_token(&grpc, "admin", None)?;
    wait_for_tenants(&node, &admin).await?;

    let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/rules");
    let rules = rules.display().to_string();
    let mut apply = vec!["rules", "apply", &rules, "--name", "gen"];
    for t in TENANTS {
        apply.extend(["--tenant", t]);
    }
    apply.extend(["--endpoint", &node.http, "--token", &admin]);
    let (code, out, err) = spoor_cli(&apply)?;
    if code != 0 {
        bail!("rules apply: {err}{out}");
    }

    // Over HTTP: globex twice acme's share, an attack every 120 events
    // (about ten per tenant: every scenario for each).
    let http = generate(
        &[
            "--tenants",
            "acme,globex:2",
            "--rate",
            "0",
            "--count",
            "2400",
            "--attack-every",
            "120",
            "--seed",
            "7",
            "--http",
            &node.http,
            "--batch",
            "150",
        ],
        &dir.path().join("http.json"),
    )?;
    assert_eq!(
        http["delivery"]["http"]["events"], 2400,
        "{}",
        http["delivery"]
    );
    assert_eq!(http["delivery"]["http"]["dead_lettered"], 0);
    // Over Kafka, another seed (other markers and attacker addresses).
    let kafka = generate(
        &[
            "--tenants",
            "acme,globex",
            "--rate",
            "0",
            "--count",
            "1500",
            "--attack-every",
            "100",
            "--seed",
            "8",
            "--kafka",
            &broker.bootstrap,
            "--topic",
            "spoor-gen-{source}",
        ],
        &dir.path().join("kafka.json"),
    )?;
    assert_eq!(
        kafka["delivery"]["kafka"]["events"], 1500,
        "{}",
        kafka["delivery"]
    );
    let manifests = [&http, &kafka];

    // Events per tenant and source type.
    let mut want_events: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut want_total = 0;
    for m in manifests {
        for (tenant, totals) in m["tenants"].as_object().context("tenants")? {
            assert_eq!(totals["dead_letters"], 0);
            for (source, n) in totals["by_source_type"]
                .as_object()
                .context("by_source_type")?
            {
                *want_events
                    .entry((tenant.clone(), source.clone()))
                    .or_default() += n.as_i64().unwrap_or(0);
                want_total += n.as_i64().unwrap_or(0);
            }
        }
    }
    assert_eq!(want_total, 3900);
    let tenant_list = "('acme', 'globex')";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = rows(
            &node,
            &admin,
            &format!("SELECT count(*) AS n FROM events WHERE tenant IN {tenant_list}"),
        )
        .await?
        .first()
        .and_then(|r| r["n"].as_i64())
        .unwrap_or(0);
        if n == want_total {
            break;
        }
        if n > want_total || Instant::now() > deadline {
            bail!(
                "events holds {n}, the manifests say {want_total}; log: {}",
                tail(&node.log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The parser each event went through is its ingest topic's: Kafka's
    // topic names the source type, HTTP's source name does.
    let by_source = rows(
        &node,
        &admin,
        &format!(
            "SELECT tenant, regexp_replace(source_topic, '^(http:)?spoor-gen-', '') AS k, count(*) AS n \
             FROM events WHERE tenant IN {tenant_list} GROUP BY tenant, k"
        ),
    )
    .await?;
    assert_eq!(counts(&by_source), want_events);
    let dead = rows(
        &node,
        &admin,
        &format!(
            "SELECT count(*) AS n FROM dead_letter WHERE tenant IN {tenant_list} \
             AND source_topic <> 'http:spoor-gen-probe'"
        ),
    )
    .await?;
    assert_eq!(
        dead.first().and_then(|r| r["n"].as_i64()),
        Some(0),
        "no dead letters"
    );

    // Every record of each scenario's first attack, found by its marker.
    for m in manifests {
        let mut seen = std::collections::BTreeSet::new();
        for a in m["attacks"].as_array().context("attacks")? {
            let scenario = a["scenario"].as_str().unwrap_or_default();
            if !seen.insert(scenario.to_string()) {
                continue;
            }
            let marker = a["marker"].as_str().context("marker")?;
            let found = rows(
                &node,
                &admin,
                &format!(
                    "SELECT count(*) AS n FROM events WHERE tenant = '{}' AND unmapped LIKE '%{marker}%'",
                    a["tenant"].as_str().unwrap_or_default()
                ),
            )
            .await?;
            assert_eq!(
                found.first().and_then(|r| r["n"].as_i64()),
                a["events"].as_i64(),
                "{marker}"
            );
        }
        assert_eq!(seen.len(), 7, "every scenario ran: {seen:?}");
    }

    // Alerts: exactly the expected ones, each once.
    let mut want_alerts: Vec<(String, String, i64)> = Vec::new();
    for m in manifests {
        for a in m["attacks"].as_array().context("attacks")? {
            for alert in a["alerts"].as_array().context("alerts")? {
                want_alerts.push((
                    a["tenant"].as_str().unwrap_or_default().to_string(),
                    alert["rule_id"].as_str().unwrap_or_default().to_string(),
                    alert["time_micros"].as_i64().unwrap_or_default(),
                ));
            }
        }
    }
    want_alerts.sort();
    let alerts_sql = format!(
        "SELECT tenant, rule_id, CAST(time AS BIGINT) AS t FROM alerts WHERE tenant IN {tenant_list} ORDER BY tenant, rule_id, t"
    );
    let read_alerts = || async {
        let got: Vec<(String, String, i64)> = rows(&node, &admin, &alerts_sql)
            .await?
            .iter()
            .map(|r| {
                (
                    r["tenant"].as_str().unwrap_or_default().to_string(),
                    r["rule_id"].as_str().unwrap_or_default().to_string(),
                    r["t"].as_i64().unwrap_or_default(),
                )
            })
            .collect();
        anyhow::Ok(got)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = read_alerts().await?;
    while got.len() < want_alerts.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        got = read_alerts().await?;
    }
    // A little longer: an unexpected alert would show up now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    got = read_alerts().await?;
    got.sort();
    assert_eq!(got, want_alerts, "alerts; log: {}", tail(&node.log_path));
    let per_rule = rows(
        &node,
        &admin,
        &format!("SELECT tenant, rule_id AS k, count(*) AS n FROM alerts WHERE tenant IN {tenant_list} GROUP BY tenant, rule_id"),
    )
    .await?;
    let mut want_per_rule: BTreeMap<(String, String), i64> = BTreeMap::new();
    for m in manifests {
        for (tenant, totals) in m["tenants"].as_object().context("tenants")? {
            for (rule, n) in totals["expected_alerts"]
                .as_object()
                .context("expected_alerts")?
            {
                *want_per_rule
                    .entry((tenant.clone(), rule.clone()))
                    .or_default() += n.as_i64().unwrap_or(0);
            }
        }
    }
    assert_eq!(counts(&per_rule), want_per_rule);
    assert_eq!(
        want_per_rule.len(),
        2 * 8,
        "all eight alerting rules in both tenants"
    );
    Ok(())
}

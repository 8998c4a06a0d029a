//! Parsers chosen by configuration and tenants routed from the data, through
//! the real binary: `[[ingest.sources]]` picks the CEF parser for one HTTP
//! source and routes another by header; a registered tenant gets its own
//! files, an unknown one becomes a dead letter of the unrouted tenant and
//! never an event of another tenant. `spoor ingest parse` shows a corpus
//! file's events without writing anything.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use spoor_tests::{Spoor, SpoorOptions, spoor_binary};

const CONFIG: &str = r#"
[[ingest.sources]]
topics = ["http:fw"]
source_type = "cef"

[[ingest.sources]]
topics = ["http:mssp"]
source_type = "json"
tenant_from = "header"
tenant_header = "x-spoor-tenant"
"#;

/// Parquet files under the lake's `tenants/{tenant}/{table}/`.
fn files(lake: &Path, tenant: &str, table: &str) -> usize {
    fn walk(dir: &Path) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| {
                let p = e.path();
                if p.is_dir() {
                    walk(&p)
                } else {
                    usize::from(p.extension().is_some_and(|x| x == "parquet"))
                }
            })
            .sum()
    }
    walk(&lake.join("tenants").join(tenant).join(table))
}

async fn post(node: &Spoor, path: &str, tenant: Option<&str>, body: &str) -> anyhow::Result<Value> {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", node.http))
        .body(body.to_string());
    if let Some(t) = tenant {
        req = req.header("x-spoor-tenant", t);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    if !status.is_success() {
        bail!("{path} answered {status}: {body}");
    }
    Ok(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_parsers_and_tenant_routing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("spoor.toml");
    std::fs::write(&config, CONFIG)?;
    let data = dir.path().join("node");
    let opts = SpoorOptions {
        env: vec![("SPOOR_CONFIG".into(), config.display().to_string())],
        ..SpoorOptions::default()
    };
    let node = Spoor::standalone(&data, &opts)?;
    let lake = data.join("lake");

    // CEF through the configured parser, into the default tenant.
    let cef = "CEF:0|Palo Alto Networks|PAN-OS|10.1|TRAFFIC|end|3|src=10.0.0.5 dst=203.0.113.9 spt=51000 dpt=443 proto=TCP act=allow suser=corp\\\\alice\n\
               CEF:0|Palo Alto Networks|PAN-OS|10.1|THREAT|virus|8|src=10.0.0.6 dst=198.51.100.7 dpt=80 act=deny request=http://198.51.100.7/x.exe\n\
               not cef at all\n";
    let resp = post(&node, "/v1/ingest/fw", None, cef).await?;
    assert_eq!(
        (resp["accepted"].as_i64(), resp["dead_lettered"].as_i64()),
        (Some(2), Some(1)),
        "{resp}"
    );
    assert_eq!(
        node.scalar("SELECT count(*) FROM events WHERE metadata_product = 'Palo Alto Networks PAN-OS' AND src_ip = '10.0.0.5' AND dst_port = 443")
            .await?,
        1
    );
    assert_eq!(
        node.scalar("SELECT count(*) FROM events WHERE url = 'http://198.51.100.7/x.exe' AND severity_id = 4").await?,
        1
    );
    let dead = node
        .sql("SELECT error FROM dead_letter WHERE source_topic = 'http:fw'")
        .await?;
    assert!(
        dead.to_string().contains("line 3") && dead.to_string().contains("CEF"),
        "the dead letter names the line and the format: {dead}"
    );

    // Per-request parser choice.
    let resp = post(
        &node,
        "/v1/ingest/other?source_type=syslog",
        None,
        "<34>Oct 11 22:14:15 web01 sshd[4321]: Failed password for invalid user admin from 192.0.2.44 port 40022 ssh2\n",
    )
    .await?;
    assert_eq!(resp["accepted"], 1, "{resp}");
    assert_eq!(
        node.scalar("SELECT count(*) FROM events WHERE class_uid = 3002 AND src_ip = '192.0.2.44' AND status = 'failure'")
            .await?,
        1
    );

    // Tenants from a header: unknown until registered.
    let before = post(
        &node,
        "/v1/ingest/mssp",
        Some("acme"),
        "{\"src_ip\":\"10.9.9.9\"}\n",
    )
    .await?;
    assert_eq!(
        before["dead_lettered"], 1,
        "acme is not registered yet: {before}"
    );
    assert_eq!(files(&lake, "unrouted", "dead_letter"), 1);
    assert_eq!(files(&lake, "acme", "events"), 0);

    let grpc = node.grpc.clone().context("standalone serves gRPC")?;
    let out = Command::new(spoor_binary()?)
        .args([
            "tenant",
            "add",
            "acme",
            "--display-name",
            "Acme Corp",
            "--coordinator",
            &grpc,
        ])
        .output()?;
    assert!(
        out.status.success(),
        "tenant add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = Command::new(spoor_binary()?)
        .args(["tenant", "list", "--coordinator", &grpc])
        .output()?;
    assert!(String::from_utf8_lossy(&listed.stdout).contains("Acme Corp"));

    // Ingest learns of the tenant within its refresh interval (5 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = post(
            &node,
            "/v1/ingest/mssp",
            Some("acme"),
            "{\"src_ip\":\"10.9.9.9\"}\n",
        )
        .await?;
        if resp["accepted"] == 1 {
            break;
        }
        if Instant::now() > deadline {
            bail!("acme was not accepted 20 s after it was registered: {resp}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        files(&lake, "acme", "events"),
        1,
        "acme's event is in acme's files"
    );

    // Splunk HEC with an ingest token of acme: the token decides the tenant.
    let out = Command::new(spoor_binary()?)
        .args([
            "token",
            "create",
            "--role",
            "ingest",
            "--tenant",
            "acme",
            "--coordinator",
            &grpc,
        ])
        .output()?;
    assert!(
        out.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout)?;
    let token = created["token"]
        .as_str()
        .context("token printed")?
        .to_string();
    let hec = |auth: &str| {
        reqwest::Client::new()
            .post(format!("{}/services/collector/event", node.http))
            .header("authorization", auth.to_string())
            .body(r#"{"time": 1700000000, "host": "web01", "event": {"src_ip": "10.7.7.7", "msg": "hello"}}"#)
            .send()
    };
    let resp = hec(&format!("Splunk {token}")).await?;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await?;
    assert_eq!(
        (body["code"].as_i64(), body["text"].as_str()),
        (Some(0), Some("Success")),
        "{body}"
    );
    assert_eq!(files(&lake, "acme", "events"), 2, "the HEC event is acme's");
    let resp = hec("Splunk spoor_0000000000000000_00").await?;
    assert_eq!(resp.status(), 403, "an unknown token is refused");

    // Unknown and missing tenants: dead letters of `unrouted`, never events.
    let before_unrouted = files(&lake, "unrouted", "dead_letter");
    let resp = post(
        &node,
        "/v1/ingest/mssp",
        Some("initech"),
        "{\"src_ip\":\"10.8.8.8\"}\n",
    )
    .await?;
    assert_eq!(resp["dead_lettered"], 1, "{resp}");
    let resp = post(
        &node,
        "/v1/ingest/mssp",
        None,
        "{\"src_ip\":\"10.8.8.8\"}\n",
    )
    .await?;
    assert_eq!(resp["dead_lettered"], 1, "{resp}");
    assert_eq!(files(&lake, "unrouted", "dead_letter"), before_unrouted + 2);
    assert!(!lake.join("tenants/initech").exists());
    // The default tenant's tables hold none of the routed events.
    assert_eq!(
        node.scalar("SELECT count(*) FROM events WHERE src_ip IN ('10.9.9.9', '10.8.8.8')")
            .await?,
        0
    );
    Ok(())
}

#[test]
fn ingest_parse_prints_what_a_corpus_file_becomes() -> anyhow::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/events");
    let file = corpus.join("otrf-zeek-tsv/dns.log");
    let out = Command::new(spoor_binary()?)
        .args(["ingest", "parse", "--source-type", "zeek"])
        .arg(&file)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert!(events.len() > 50, "{} events", events.len());
    assert!(
        events
            .iter()
            .all(|e| e["class_uid"] == 4003 && e["metadata_product"] == "Zeek")
    );
    assert!(events.iter().any(|e| e["dns_query"].is_string()));

    let out = Command::new(spoor_binary()?)
        .args(["ingest", "parse", "--source-type", "cef", "--summary"])
        .arg(&file)
        .output()?;
    assert_eq!(
        out.status.code(),
        Some(1),
        "dead letters make the exit code 1"
    );
    let summary: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(summary["events"], 0, "{summary}");
    assert!(
        summary["first_errors"][0]
            .as_str()
            .unwrap_or_default()
            .contains("CEF"),
        "{summary}"
    );

    let out = Command::new(spoor_binary()?)
        .args(["ingest", "parse", "--source-type", "nope", "x"])
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown source type"));
    Ok(())
}

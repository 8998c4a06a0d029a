//! The hunter's console in a real browser: a `standalone` node with tokens
//! on, its lake seeded with the corpus events and 1,000,000 generated ones
//! (both through `spoor import`), the bundled rule pack applied and attacks
//! sent over HTTP ingest (`spoor gen`) so there are alerts to triage; then
//! `tests/console/console.test.mjs` (Playwright driving Debian's Chromium,
//! headless) signs in, hunts, pivots, triages, reads the rules and the
//! health page, switches tenants, and writes a screenshot of every page to
//! `docs/console/` and the first page's render time to
//! `target/console-first-page.json` (docs/performance.md).
//!
//! Needs `node` and `chromium` (`scripts/test-all.sh` installs Chromium
//! from Debian's packages and `playwright-core` with `npm ci`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use spoor_tests::{Spoor, create_token, create_token_for, spoor_binary, spoor_cli_json};

/// Events in the lake besides the corpus and the attacks: the issue's
/// "1 million events" of the first-page measurement.
const EVENTS: usize = 1_000_000;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn corpus() -> PathBuf {
    workspace().join("../shared/corpus/events")
}

/// `EVENTS` generic JSON events (ECS field names) spread over the last 24
/// hours, newest first, over 2,000 hosts, 5,000 users and 65,536 addresses.
fn write_events(path: &Path, now_secs: u64) -> anyhow::Result<()> {
    let file = std::fs::File::create(path).with_context(|| path.display().to_string())?;
    let mut out = std::io::BufWriter::new(file);
    for i in 0..EVENTS {
        // Newest first, the last one just under a day old.
        let micros = now_secs as i64 * 1_000_000 - (i as i64 * 86_399_000_000 / EVENTS as i64);
        let secs = micros.div_euclid(1_000_000);
        let stamp = format!(
            "{}.{:06}Z",
            spoor_tests::rfc3339(secs as u64).trim_end_matches('Z'),
            micros.rem_euclid(1_000_000)
        );
        writeln!(
            out,
            r#"{{"@timestamp":"{stamp}","host":{{"name":"ws{h}"}},"user":{{"name":"user{u}"}},"source":{{"ip":"10.{a}.{b}.{c}"}},"destination":{{"ip":"192.0.2.{d}","port":443}},"event":{{"code":"{code}"}},"message":"generated logon event {i}"}}"#,
            h = i % 2000,
            u = (i * 7) % 5000,
            a = i % 256,
            b = (i / 256) % 256,
            c = i % 7,
            d = i % 250,
            code = 4624 + i % 3,
        )?;
    }
    out.flush()?;
    Ok(())
}

/// `spoor import` of `files` into `tenant` with parser `source_type`: the
/// events it imported.
fn import(
    node: &Spoor,
    data: &Path,
    tenant: &str,
    source_type: &str,
    files: &[PathBuf],
) -> anyhow::Result<i64> {
    let mut args = vec!["--tenant", tenant, "-t", source_type];
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let (out, summary) = spoor_tests::import(node, data, &args, &[])?;
    ensure!(
        out.status.success(),
        "spoor import {source_type} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    summary["events"]
        .as_i64()
        .with_context(|| format!("import summary without events: {summary}"))
}

fn files_in(dir: &Path, ext: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    Ok(files)
}

/// The alerts of `tenant`, counted over HTTP with `token`.
async fn alert_count(node: &Spoor, token: &str, tenant: &str) -> anyhow::Result<i64> {
    let (status, body) = spoor_tests::call(
        reqwest::Method::POST,
        &format!("{}/v1/query", node.http),
        Some(token),
        Some(serde_json::json!({"sql": "SELECT count(*) AS n FROM alerts", "tenant": tenant})),
    )
    .await?;
    ensure!(status == 200, "counting alerts: {status} {body}");
    body["rows"][0]["n"].as_i64().context("no count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_hunts_triages_and_shows_health_in_a_real_browser() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    // HTTP ingest takes the tenant from the header `spoor gen` sets.
    let config = dir.path().join("spoor.toml");
    std::fs::write(
        &config,
        "[[ingest.sources]]\ntopics = [\"http:*\"]\nsource_type = \"json\"\n\
         tenant_from = \"header\"\ntenant_header = \"x-spoor-tenant\"\n",
    )?;
    let node = Spoor::role(
        "standalone",
        &data,
        &[
            "query.auth=token".to_string(),
            "node.heartbeat_interval_ms=300".into(),
            "coordinator.scheduler_interval_ms=300".into(),
            "worker.commit_interval_ms=300".into(),
            "worker.poll_interval_ms=100".into(),
        ],
        &spoor_tests::SpoorOptions {
            env: vec![("SPOOR_CONFIG".into(), config.display().to_string())],
            ..spoor_tests::SpoorOptions::default()
        },
    )?;
    let grpc = node.grpc.clone().context("standalone serves gRPC")?;
    for tenant in ["default", "globex"] {
        spoor_cli_json(&["tenant", "add", tenant, "--coordinator", &grpc])?;
    }
    let admin = create_token(&grpc, "admin", None)?;
    let globex_analyst = create_token(&grpc, "analyst", Some("globex"))?;
    let viewer = create_token(&grpc, "viewer", Some("default"))?;
    let mssp = create_token_for(&grpc, "mssp-operator", &["default", "globex"])?;

    // The lake: the corpus (old events, through their own parsers), then a
    // million generated events of the last day.
    let started = Instant::now();
    let mut corpus_events = 0;
    for (source_type, dir, ext) in [
        ("windows", "otrf-windows", "jsonl"),
        ("zeek", "otrf-zeek-tsv", "log"),
        ("cloudtrail", "otrf-aws-cloudtrail", "jsonl"),
    ] {
        corpus_events += import(
            &node,
            &data,
            "default",
            source_type,
            &files_in(&corpus().join(dir), ext)?,
        )?;
    }
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let generated = dir.path().join("events.jsonl");
    write_events(&generated, now_secs)?;
    let imported = import(
        &node,
        &data,
        "default",
        "json",
        std::slice::from_ref(&generated),
    )?;
    ensure!(
        imported == EVENTS as i64,
        "imported {imported} of {EVENTS} events"
    );
    std::fs::remove_file(&generated)?;
    println!(
        "lake: {corpus_events} corpus events and {imported} generated ones imported in {:.0?}",
        started.elapsed()
    );

    // Rules, then attacks (a new rule set starts at the newest file).
    for tenant in ["default", "globex"] {
        let (code, out, err) = spoor_tests::spoor_cli(&[
            "rules",
            "apply",
            &workspace().join("deploy/rules").display().to_string(),
            "--tenant",
            tenant,
            "--endpoint",
            &node.http,
            "--token",
            &admin,
        ])?;
        ensure!(code == 0, "rules apply {tenant}: {out}{err}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, status) = spoor_tests::call(
            reqwest::Method::GET,
            &format!("{}/v1/status", node.http),
            Some(&admin),
            None,
        )
        .await?;
        let shards = status["cluster"]["shards"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if shards.len() >= 2 && shards.iter().all(|s| !s["holder"].is_null()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the rule shards were never leased: {status}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let manifest = dir.path().join("gen.json");
    let out = Command::new(spoor_binary()?)
        .args([
            "gen",
            "--http",
            &node.http,
            "--count",
            "3000",
            "--rate",
            "0",
            "--attack-every",
            "300",
        ])
        .args([
            "--tenants",
            "default:2,globex",
            "--seed",
            "11",
            "--token",
            &admin,
        ])
        .args(["--manifest", &manifest.display().to_string()])
        .output()?;
    ensure!(
        out.status.success(),
        "spoor gen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest)?)?;
    // Every attack's alerts, per tenant, before the browser looks.
    for tenant in ["default", "globex"] {
        let expected: i64 = manifest["attacks"]
            .as_array()
            .context("manifest attacks")?
            .iter()
            .filter(|a| a["tenant"] == tenant)
            .map(|a| {
                a["alerts"]
                    .as_array()
                    .map_or(0, |alerts| alerts.len() as i64)
            })
            .sum();
        ensure!(
            expected > 0,
            "the generator made no attack for {tenant}: {manifest}"
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let n = alert_count(&node, &admin, tenant).await?;
            if n >= expected {
                break;
            }
            if Instant::now() > deadline {
                bail!("{tenant}: {n} alerts of the {expected} the generator's attacks raise");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    // The browser.
    let tests = workspace().join("tests/console");
    let report = PathBuf::from(
        std::env::var("CARGO_TARGET_DIR")
            .unwrap_or_else(|_| workspace().join("target").display().to_string()),
    )
    .join("console-first-page.json");
    let out = Command::new("node")
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg(tests.join("console.test.mjs"))
        .current_dir(&tests)
        .env("CONSOLE_URL", &node.http)
        .env("CONSOLE_ADMIN_TOKEN", &admin)
        .env("CONSOLE_MSSP_TOKEN", &mssp)
        .env("CONSOLE_GLOBEX_TOKEN", &globex_analyst)
        .env("CONSOLE_VIEWER_TOKEN", &viewer)
        .env("CONSOLE_SCREENSHOTS", workspace().join("docs/console"))
        .env("CONSOLE_REPORT", &report)
        .env(
            "CONSOLE_LAKE_EVENTS",
            (imported + corpus_events).to_string(),
        )
        .output()
        .context("running node (is Node.js installed?)")?;
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    ensure!(
        out.status.success(),
        "the browser tests failed (output above); node log: {}",
        spoor_tests::tail(&node.log_path)
    );
    Ok(())
}

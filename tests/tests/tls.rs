//! TLS on every listener (docs/security.md), against the real binary with
//! clients nobody here wrote: reqwest (rustls), `psql` (libpq, OpenSSL),
//! the ADBC Flight SQL driver (Go's TLS), and the CLI's gRPC.
//!
//! - Every listener of a standalone node speaks only TLS with its
//!   certificate; plaintext and clients that do not trust the CA are
//!   refused; a renewed certificate is served without a restart, and a
//!   broken one is not.
//! - Between roles, the coordinators' gRPC demands a client certificate
//!   from the cluster's CA (mutual TLS): nodes and the CLI with one get in,
//!   without one or with another CA's they do not.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use spoor_common::tls::dev::{DevCa, Usage};
use spoor_common::tls::rustls::pki_types::CertificateDer;
use spoor_common::tls::rustls::pki_types::pem::PemObject;
use spoor_tests::{Spoor, SpoorOptions, spoor_cli, tail};

/// Writes `text` to `path` through a rename, as a certificate manager
/// does, so a reload never reads half a file.
fn replace(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn der(pem: &str) -> anyhow::Result<Vec<u8>> {
    Ok(CertificateDer::from_pem_slice(pem.as_bytes())?.to_vec())
}

/// The certificate `node` serves on HTTP right now, checked against `ca`.
async fn served_certificate(node: &Spoor, ca: &Path) -> anyhow::Result<Vec<u8>> {
    // A new client each time: a pooled connection keeps its handshake.
    let ca = std::fs::read(ca)?;
    let client = reqwest::Client::builder()
        .tls_info(true)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .build()?;
    let resp = client.get(format!("{}/health", node.http)).send().await?;
    let info = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .context("no TLS information on an https response")?;
    Ok(info
        .peer_certificate()
        .context("no peer certificate")?
        .to_vec())
}

/// Sends `n` events to `node` over HTTP (TLS with its client) and checks
/// they were taken.
async fn send_events(node: &Spoor, n: usize) -> anyhow::Result<()> {
    let body: String = (0..n)
        .map(|i| format!("{{\"src_ip\":\"10.0.0.{i}\"}}\n"))
        .collect();
    let resp: Value = node
        .client
        .post(format!("{}/v1/ingest/fw", node.http))
        .body(body)
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(resp["accepted"] == n, "{resp}");
    Ok(())
}

/// `spoor cluster members --coordinator <grpc>` with `extra` flags.
fn members(grpc: &str, extra: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let mut args = vec!["cluster", "members", "--coordinator", grpc];
    args.extend_from_slice(extra);
    spoor_cli(&args)
}

fn psql(postgres: &str, options: &str, sql: &str) -> anyhow::Result<(bool, String, String)> {
    let (_, port) = postgres.rsplit_once(':').context("host:port")?;
    let out = Command::new("psql")
        .arg(format!(
            "host=localhost port={port} dbname=spoor user=hunter connect_timeout=10 {options}"
        ))
        .args(["-At", "-c", sql])
        .env_remove("PGSSLMODE")
        .output()
        .context("running psql (the postgresql-client package)")?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_speaks_tls_and_renewed_certificates_are_served_without_restart()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki)?;
    let ca = DevCa::new("tls test CA", 30).map_err(anyhow::Error::msg)?;
    let hosts = ["localhost".to_string(), "127.0.0.1".to_string()];
    let node_cert = ca
        .issue("standalone", &hosts, Usage::Node)
        .map_err(anyhow::Error::msg)?;
    let other_ca = DevCa::new("another CA", 30).map_err(anyhow::Error::msg)?;
    let (ca_pem, cert, key, other_ca_pem) = (
        pki.join("ca.pem"),
        pki.join("node.pem"),
        pki.join("node.key"),
        pki.join("other-ca.pem"),
    );
    std::fs::write(&ca_pem, ca.cert_pem())?;
    std::fs::write(&cert, &node_cert.cert_pem)?;
    std::fs::write(&key, &node_cert.key_pem)?;
    std::fs::write(&other_ca_pem, other_ca.cert_pem())?;

    let node = Spoor::role(
        "standalone",
        &dir.path().join("data"),
        &[
            format!("tls.cert_file=\"{}\"", cert.display()),
            format!("tls.key_file=\"{}\"", key.display()),
            format!("tls.ca_file=\"{}\"", ca_pem.display()),
            "tls.reload_interval_ms=200".into(),
        ],
        &SpoorOptions {
            ca_file: Some(ca_pem.clone()),
            ..SpoorOptions::default()
        },
    )?;
    assert!(node.http.starts_with("https://localhost:"), "{}", node.http);
    let port = |url: &str| url.rsplit(':').next().unwrap_or_default().to_string();

    // HTTP: ingest and query over TLS.
    send_events(&node, 3).await?;
    node.wait_for("SELECT count(*) FROM events", 3, Duration::from_secs(20))
        .await?;
    // Plaintext on the TLS port, and a client that trusts only the
    // system's roots, get nothing.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/health", port(&node.http)))
        .send()
        .await;
    assert!(plain.is_err(), "plaintext HTTP answered: {plain:?}");
    let untrusting = reqwest::Client::new()
        .get(format!("{}/health", node.http))
        .send()
        .await;
    let e = format!(
        "{:?}",
        untrusting.err().context("a client without the CA got in")?
    );
    assert!(e.contains("UnknownIssuer"), "{e}");

    // PostgreSQL: libpq checks the certificate against the CA and the host
    // name; a client that does not negotiate TLS is refused with a reason.
    let postgres = node
        .postgres
        .clone()
        .context("standalone serves PostgreSQL")?;
    let verify = format!("sslmode=verify-full sslrootcert={}", ca_pem.display());
    let (ok, out, err) = psql(&postgres, &verify, "SELECT count(*) FROM events")?;
    assert!(ok, "psql over TLS: {err}");
    assert_eq!(out, "3");
    let (ok, _, err) = psql(&postgres, "sslmode=disable", "SELECT 1")?;
    assert!(!ok && err.contains("requires TLS"), "plaintext psql: {err}");
    let (ok, _, err) = psql(
        &postgres,
        &format!("sslmode=verify-full sslrootcert={}", other_ca_pem.display()),
        "SELECT 1",
    )?;
    assert!(!ok && err.contains("certificate verify failed"), "{err}");

    // Flight SQL with the ADBC driver.
    let flight = node
        .flight
        .clone()
        .context("standalone serves Flight SQL")?;
    let python = std::env::var_os("PYCLIENT_PYTHON").context(
        "PYCLIENT_PYTHON is not set: run scripts/test-all.sh, which installs the ADBC Flight \
         SQL driver and names that Python",
    )?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/flight_tls_client.py");
    let out = Command::new(python)
        .arg(script)
        .arg(
            json!({
                "tls_uri": format!("grpc+tls://localhost:{}", port(&flight)),
                "plain_uri": format!("grpc://localhost:{}", port(&flight)),
                "ca_pem": ca.cert_pem(),
                "other_ca_pem": other_ca.cert_pem(),
                "sql": "SELECT count(*) FROM events",
            })
            .to_string(),
        )
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "flight client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim())?;
    assert_eq!(seen["count"], 3, "{seen}");
    assert!(seen["other_ca_error"].is_string(), "{seen}");
    assert!(seen["plaintext_error"].is_string(), "{seen}");

    // gRPC: the CLI reaches the coordinator with the CA, and not without.
    let grpc = node.grpc.clone().context("standalone serves gRPC")?;
    let ca_arg = ca_pem.display().to_string();
    let (code, out, err) = members(&grpc, &["--ca-file", &ca_arg])?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"voters\""), "{out}");
    let (code, _, err) = members(&grpc, &[])?;
    assert_ne!(code, 0);
    assert!(
        err.contains("UnknownIssuer") || err.contains("certificate"),
        "{err}"
    );
    let plain_grpc = format!("http://localhost:{}", port(&grpc));
    let (code, _, err) = members(&plain_grpc, &[])?;
    assert_ne!(code, 0, "plaintext gRPC answered: {err}");

    // Renewal: the same CA signs a new key; new connections get it within
    // the reload interval, with no restart.
    assert_eq!(
        served_certificate(&node, &ca_pem).await?,
        der(&node_cert.cert_pem)?
    );
    let renewed = ca
        .issue("standalone", &hosts, Usage::Node)
        .map_err(anyhow::Error::msg)?;
    replace(&key, &renewed.key_pem)?;
    replace(&cert, &renewed.cert_pem)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if served_certificate(&node, &ca_pem).await? == der(&renewed.cert_pem)? {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the renewed certificate is not served after 10 s; log: {}",
                tail(&node.log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, out, err) = psql(&postgres, &verify, "SELECT count(*) FROM events")?;
    assert!(ok && out == "3", "psql after the renewal: {err}");

    // A broken renewal (a certificate without its key) is refused and
    // counted; the node keeps serving the last good pair.
    let half = ca
        .issue("standalone", &hosts, Usage::Node)
        .map_err(anyhow::Error::msg)?;
    replace(&cert, &half.cert_pem)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = node
            .client
            .get(format!("{}/metrics", node.http))
            .send()
            .await?
            .text()
            .await?;
        if metrics.contains("spoor_tls_reloads_total{outcome=\"failed\"}") {
            break;
        }
        if Instant::now() > deadline {
            bail!("no failed reload counted after 10 s: {metrics}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        served_certificate(&node, &ca_pem).await?,
        der(&renewed.cert_pem)?
    );
    assert_eq!(node.scalar("SELECT count(*) FROM events").await?, 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_prove_themselves_to_the_coordinators_with_certificates() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    // The CLI's own development PKI: a CA, a node and a client certificate.
    let pki_arg = pki.display().to_string();
    let (code, out, err) = spoor_cli(&["tls", "dev-certs", "--out", &pki_arg])?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 5, "{out}");
    let (code, _, err) = spoor_cli(&["tls", "dev-certs", "--out", &pki_arg])?;
    assert_ne!(code, 0);
    assert!(err.contains("exists"), "keys are never overwritten: {err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(pki.join("node.key"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "node.key is readable by others: {mode:o}");
    }
    let file = |name: &str| pki.join(name).display().to_string();
    let tls = [
        format!("tls.cert_file=\"{}\"", file("node.pem")),
        format!("tls.key_file=\"{}\"", file("node.key")),
        format!("tls.ca_file=\"{}\"", file("ca.pem")),
    ];
    let opts = SpoorOptions {
        ca_file: Some(pki.join("ca.pem")),
        ..SpoorOptions::default()
    };
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&lake)?;
    let lake_url = format!("storage.url=\"file://{}\"", lake.display());

    let mut coordinator_sets = tls.to_vec();
    coordinator_sets.push(format!("tls.client_ca_file=\"{}\"", file("ca.pem")));
    let coordinator = Spoor::role(
        "coordinator",
        &dir.path().join("coordinator"),
        &coordinator_sets,
        &opts,
    )?;
    let grpc = coordinator
        .grpc
        .clone()
        .context("the coordinator serves gRPC")?;
    assert!(grpc.starts_with("https://localhost:"), "{grpc}");
    let catalog = format!("catalog.endpoint=\"{grpc}\"");

    // An ingest and a query node with the cluster's certificate: what one
    // commits through the coordinator, the other reads.
    let mut sets = tls.to_vec();
    sets.extend([lake_url.clone(), catalog.clone(), "node.id=11".into()]);
    let ingest = Spoor::role("ingest", &dir.path().join("ingest"), &sets, &opts)?;
    let mut sets = tls.to_vec();
    sets.extend([lake_url.clone(), catalog.clone(), "node.id=21".into()]);
    let query = Spoor::role("query", &dir.path().join("query"), &sets, &opts)?;
    send_events(&ingest, 2).await?;
    query
        .wait_for("SELECT count(*) FROM events", 2, Duration::from_secs(20))
        .await?;

    // A node that trusts the CA but has no certificate of its own is
    // turned away at the handshake: it cannot reach the catalog.
    let anonymous = Spoor::role(
        "query",
        &dir.path().join("anonymous"),
        &[
            lake_url,
            catalog,
            "node.id=31".into(),
            format!("tls.ca_file=\"{}\"", file("ca.pem")),
        ],
        &SpoorOptions::default(),
    )?;
    let body = anonymous.sql("SELECT count(*) FROM events").await?;
    assert!(
        body["error"].is_object(),
        "a node without a certificate read the catalog: {body}"
    );

    // The CLI: the CA alone is not enough; the client certificate is; one
    // from another CA is not.
    let with_certificate = |cert: &str, key: &str| {
        members(
            &grpc,
            &[
                "--ca-file",
                &file("ca.pem"),
                "--client-cert",
                &file(cert),
                "--client-key",
                &file(key),
            ],
        )
    };
    let (code, _, err) = members(&grpc, &["--ca-file", &file("ca.pem")])?;
    assert_ne!(code, 0, "no client certificate, yet: {err}");
    let (code, out, err) = with_certificate("client.pem", "client.key")?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"voters\""), "{out}");

    let stranger_ca = DevCa::new("another CA", 30).map_err(anyhow::Error::msg)?;
    let stranger = stranger_ca
        .issue("intruder", &[], Usage::Client)
        .map_err(anyhow::Error::msg)?;
    std::fs::write(pki.join("stranger.pem"), &stranger.cert_pem)?;
    std::fs::write(pki.join("stranger.key"), &stranger.key_pem)?;
    let (code, _, err) = with_certificate("stranger.pem", "stranger.key")?;
    assert_ne!(code, 0, "another CA's certificate got in: {err}");
    drop((ingest, query, coordinator));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_is_consumed_over_mutual_tls() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(&pki)?;
    let ca = DevCa::new("kafka CA", 30).map_err(anyhow::Error::msg)?;
    let broker_cert = ca
        .issue("broker", &["localhost".into()], Usage::Node)
        .map_err(anyhow::Error::msg)?;
    let client_cert = ca
        .issue("ingest", &[], Usage::Client)
        .map_err(anyhow::Error::msg)?;
    let path = |name: &str| pki.join(name);
    std::fs::write(path("ca.pem"), ca.cert_pem())?;
    std::fs::write(path("broker.pem"), &broker_cert.cert_pem)?;
    std::fs::write(path("broker.key"), &broker_cert.key_pem)?;
    std::fs::write(path("client.pem"), &client_cert.cert_pem)?;
    std::fs::write(path("client.key"), &client_cert.key_pem)?;
    // librdkafka's TLS properties, as an operator writes them.
    let properties = [
        ("security.protocol", "ssl".to_string()),
        ("ssl.ca.location", path("ca.pem").display().to_string()),
        (
            "ssl.certificate.location",
            path("client.pem").display().to_string(),
        ),
        ("ssl.key.location", path("client.key").display().to_string()),
    ];
    let broker = spoor_tests::Broker::start_behind_tls(
        &path("broker.pem"),
        &path("broker.key"),
        &path("ca.pem"),
        properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )?;
    assert!(
        broker.bootstrap.starts_with("localhost:"),
        "{}",
        broker.bootstrap
    );
    let topic = "tls-events";
    broker.create_topic(topic, 2).await?;
    broker
        .produce(topic, &spoor_tests::good_events(0, 40))
        .await?;

    let config = dir.path().join("spoor.toml");
    let mut toml = String::from("[ingest.kafka.properties]\n");
    for (k, v) in &properties {
        toml.push_str(&format!("{k:?} = {v:?}\n"));
    }
    std::fs::write(&config, toml)?;
    let mut env = spoor_tests::kafka_env(&broker, topic, "tls-group");
    env.push(("SPOOR_CONFIG".into(), config.display().to_string()));
    let node = Spoor::standalone(
        &dir.path().join("data"),
        &SpoorOptions {
            env,
            ..SpoorOptions::default()
        },
    )?;
    node.wait_for("SELECT count(*) FROM events", 40, Duration::from_secs(60))
        .await?;
    Ok(())
}

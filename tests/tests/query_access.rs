//! Tenant isolation and the query interfaces against the real binary:
//! tokens decide the tenants on HTTP and Flight SQL; a tenant's token
//! reaches no other tenant's data by table names, `information_schema`,
//! file paths, functions, indicator lists, the query history, Flight
//! tickets or prepared statements; an operator token sees every tenant with a `tenant` column.
//! The Flight SQL and PostgreSQL sides run real clients nobody here wrote:
//! the ADBC Flight SQL driver and pyarrow.flight
//! (tests/python/flight_sql_client.py), `psql` from the system packages, and
//! psycopg (tests/python/postgres_client.py), in the Python that
//! `scripts/test-all.sh` prepares and names in `PYCLIENT_PYTHON`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use spoor_tests::{Spoor, SpoorOptions, spoor_binary};

fn cli(args: &[&str]) -> anyhow::Result<Value> {
    let out = Command::new(spoor_binary()?).args(args).output()?;
    if !out.status.success() {
        bail!(
            "spoor {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

fn token(grpc: &str, role: &str, tenant: Option<&str>) -> anyhow::Result<String> {
    let mut args = vec!["token", "create", "--role", role, "--coordinator", grpc];
    if let Some(t) = tenant {
        args.extend(["--tenant", t]);
    }
    cli(&args)?["token"]
        .as_str()
        .map(str::to_string)
        .context("token printed")
}

/// POST /v1/query with `token`: the status and the JSON body.
async fn sql(node: &Spoor, token: Option<&str>, sql: &str) -> anyhow::Result<(u16, Value)> {
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1/query", node.http))
        .json(&json!({ "sql": sql }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    Ok((resp.status().as_u16(), resp.json().await?))
}

async fn rows(node: &Spoor, token: &str, query: &str) -> anyhow::Result<Value> {
    let (status, body) = sql(node, Some(token), query).await?;
    if status != 200 {
        bail!("{query}: {status} {body}");
    }
    Ok(body["rows"].clone())
}

async fn refused(node: &Spoor, token: &str, query: &str) -> anyhow::Result<String> {
    let (status, body) = sql(node, Some(token), query).await?;
    if status == 200 {
        bail!("{query} was answered for a tenant token: {body}");
    }
    Ok(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

fn python() -> anyhow::Result<PathBuf> {
    std::env::var_os("PYCLIENT_PYTHON")
        .map(PathBuf::from)
        .context(
            "PYCLIENT_PYTHON is not set: run scripts/test-all.sh, which installs pyarrow and the \
         ADBC Flight SQL driver and names that Python",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_tenants_apart_on_http_flight_sql_and_postgres() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Spoor::role(
        "standalone",
        &dir.path().join("data"),
        &[
            "query.auth=token".to_string(),
            "ingest.http_auth=token".to_string(),
        ],
        &SpoorOptions::default(),
    )?;
    let grpc = node.grpc.clone().context("standalone serves gRPC")?;
    for tenant in ["acme", "globex"] {
        cli(&["tenant", "add", tenant, "--coordinator", &grpc])?;
    }
    let acme_ingest = token(&grpc, "ingest", Some("acme"))?;
    let globex_ingest = token(&grpc, "ingest", Some("globex"))?;
    let acme = token(&grpc, "analyst", Some("acme"))?;
    let globex = token(&grpc, "analyst", Some("globex"))?;
    let operator = token(&grpc, "admin", None)?;

    for (t, body) in [
        (
            &acme_ingest,
            "{\"src_ip\":\"10.1.1.1\"}\n{\"src_ip\":\"10.1.1.2\"}\n{\"src_ip\":\"10.1.1.3\"}\n",
        ),
        (
            &globex_ingest,
            "{\"src_ip\":\"10.2.2.1\",\"secret\":\"globex-only\"}\n{\"src_ip\":\"10.2.2.2\"}\n",
        ),
    ] {
        let resp = reqwest::Client::new()
            .post(format!("{}/v1/ingest/fw", node.http))
            .bearer_auth(t)
            .body(body)
            .send()
            .await?;
        assert_eq!(resp.status(), 200, "{}", resp.text().await?);
    }
    // The operator sees both tenants, told apart by the tenant column.
    let deadline = Instant::now() + Duration::from_secs(30);
    let by_tenant = loop {
        let got = rows(
            &node,
            &operator,
            "SELECT tenant, count(*) AS n FROM events GROUP BY tenant ORDER BY tenant",
        )
        .await?;
        if got == json!([{"tenant": "acme", "n": 3}, {"tenant": "globex", "n": 2}]) {
            break got;
        }
        if Instant::now() > deadline {
            bail!("events not queryable after 30 s: {got}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(by_tenant[1]["n"], 2);

    // HTTP: the token decides the tenant.
    assert_eq!(
        rows(&node, &acme, "SELECT count(*) AS n FROM events").await?,
        json!([{"n": 3}])
    );
    assert_eq!(
        rows(&node, &globex, "SELECT count(*) AS n FROM events").await?,
        json!([{"n": 2}])
    );
    assert_eq!(
        sql(&node, None, "SELECT 1").await?.0,
        401,
        "no token, no query"
    );
    assert_eq!(sql(&node, Some(&acme_ingest), "SELECT 1").await?.0, 403);
    assert_eq!(
        sql(&node, Some("spoor_nope"), "SELECT 1").await?.0,
        401,
        "a token that authenticates nothing"
    );
    // A token with a lifetime says when it ends and works until then; a
    // lifetime that is not one is refused naming the flag.
    let short = cli(&[
        "token",
        "create",
        "--role",
        "analyst",
        "--tenant",
        "acme",
        "--expires-in",
        "1h",
        "--coordinator",
        &grpc,
    ])?;
    let expires = short["expires_at"].as_str().context("expires_at printed")?;
    assert!(expires.ends_with('Z') && expires.len() == 20, "{expires}");
    let short = short["token"].as_str().context("token printed")?;
    assert_eq!(
        rows(&node, short, "SELECT count(*) AS n FROM events").await?,
        json!([{"n": 3}])
    );
    let bad_lifetime = cli(&[
        "token",
        "create",
        "--role",
        "analyst",
        "--tenant",
        "acme",
        "--expires-in",
        "soon",
        "--coordinator",
        &grpc,
    ])
    .expect_err("not a lifetime");
    assert!(
        bad_lifetime
            .to_string()
            .contains("a number of days or hours, like 90d"),
        "{bad_lifetime:#}"
    );

    // Every route toward globex's data, with acme's token.
    for (query, want) in [
        ("SELECT count(*) FROM spoor.globex.events", "globex"),
        ("SELECT count(*) FROM globex.events", "globex"),
        (
            "SELECT * FROM 'tenants/globex/events/x.parquet'",
            "tenants/globex",
        ),
        (
            "SELECT * FROM read_parquet('tenants/globex/events')",
            "read_parquet",
        ),
        (
            "CREATE EXTERNAL TABLE g STORED AS PARQUET LOCATION 'file:///'",
            "",
        ),
        ("SET datafusion.catalog.default_schema = 'globex'", ""),
        ("COPY (SELECT 1) TO '/tmp/x.csv'", ""),
    ] {
        let message = refused(&node, &acme, query).await?;
        assert!(message.contains(want), "{query}: {message}");
    }
    assert_eq!(
        rows(
            &node,
            &acme,
            "SELECT count(*) AS n FROM events WHERE tenant = 'globex' OR unmapped LIKE '%globex-only%'"
        )
        .await?,
        json!([{"n": 0}])
    );
    assert_eq!(
        rows(
            &node,
            &acme,
            "SELECT DISTINCT table_schema FROM information_schema.tables \
             WHERE table_schema <> 'information_schema' ORDER BY 1"
        )
        .await?,
        json!([{"table_schema": "acme"}])
    );
    // The query history: acme sees its own queries only; globex's ids are
    // not acme's to cancel.
    let globex_query = sql(&node, Some(&globex), "SELECT src_ip FROM events")
        .await?
        .1;
    let globex_id = globex_query["query_id"]
        .as_str()
        .context("query id")?
        .to_string();
    let history: Value = reqwest::Client::new()
        .get(format!("{}/v1/queries?limit=1000", node.http))
        .bearer_auth(&acme)
        .send()
        .await?
        .json()
        .await?;
    let queries = history["queries"].as_array().context("queries")?;
    assert!(!queries.is_empty());
    assert!(
        queries.iter().all(|q| q["tenants"] == json!(["acme"])),
        "{history}"
    );
    let cancel = reqwest::Client::new()
        .delete(format!("{}/v1/queries/{globex_id}", node.http))
        .bearer_auth(&acme)
        .send()
        .await?;
    assert_eq!(cancel.status(), 404);
    let audit: Value = reqwest::Client::new()
        .get(format!("{}/v1/queries?limit=1000", node.http))
        .bearer_auth(&operator)
        .send()
        .await?
        .json()
        .await?;
    let logged = audit["queries"]
        .as_array()
        .context("queries")?
        .iter()
        .find(|q| q["query_id"] == globex_id.as_str())
        .context("the operator sees globex's query")?;
    assert_eq!(logged["rows"], 2);
    assert_eq!(logged["outcome"], "ok");
    assert!(
        logged["bytes_scanned"].as_u64().unwrap_or(0) > 0,
        "{logged}"
    );
    assert!(logged["token_id"].is_string());

    // Indicator lists are per tenant: neither ioc_match nor the intel table
    // reach another tenant's lists, and writes stay in the caller's tenants.
    let put_list = |token: &str, path: &str, body: &str| {
        reqwest::Client::new()
            .put(format!("{}{path}", node.http))
            .bearer_auth(token)
            .body(body.to_string())
            .send()
    };
    assert_eq!(
        put_list(&acme, "/v1/intel/watch", "10.2.2.1\n10.1.1.2\n")
            .await?
            .status(),
        200
    );
    assert_eq!(
        put_list(&globex, "/v1/intel/globex-secret", "secret.example\n")
            .await?
            .status(),
        200
    );
    assert_eq!(
        put_list(&acme, "/v1/intel/x?tenant=globex", "a\n")
            .await?
            .status(),
        403
    );
    assert_eq!(
        put_list(&operator, "/v1/intel/x", "a\n").await?.status(),
        400
    );
    assert_eq!(
        rows(
            &node,
            &acme,
            "SELECT src_ip FROM events WHERE ioc_match(src_ip, 'watch')"
        )
        .await?,
        json!([{"src_ip": "10.1.1.2"}])
    );
    let message = refused(
        &node,
        &acme,
        "SELECT count(*) FROM events WHERE ioc_match(src_ip, 'globex-secret')",
    )
    .await?;
    assert!(message.contains("no indicator list"), "{message}");
    assert_eq!(
        rows(
            &node,
            &acme,
            "SELECT tenant, list, count(*) AS n FROM intel GROUP BY 1, 2"
        )
        .await?,
        json!([{"tenant": "acme", "list": "watch", "n": 2}])
    );

    // Flight SQL with the ADBC driver and pyarrow.flight.
    let flight = node
        .flight
        .clone()
        .context("standalone serves Flight SQL")?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/flight_sql_client.py");
    let args = json!({
        "uri": format!("grpc://{flight}"),
        "acme": acme,
        "globex": globex,
        "ingest": acme_ingest,
    });
    let out = Command::new(python()?)
        .arg(&script)
        .arg(args.to_string())
        .output()
        .context("running the Flight SQL client")?;
    if !out.status.success() {
        bail!(
            "Flight SQL client failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            spoor_tests::tail(&node.log_path)
        );
    }
    let seen: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("client output {}", String::from_utf8_lossy(&out.stdout)))?;
    assert_eq!(seen["acme_count"], 3, "{seen}");
    assert_eq!(seen["acme_tenants"], 1);
    assert_eq!(seen["acme_sees_globex_rows"], 0);
    assert_eq!(
        seen["acme_rows"],
        json!([
            {"src_ip": "10.1.1.1", "tenant": "acme"},
            {"src_ip": "10.1.1.2", "tenant": "acme"},
            {"src_ip": "10.1.1.3", "tenant": "acme"}
        ])
    );
    assert_eq!(
        seen["globex_count"], 2,
        "basic credentials with the token as password"
    );
    assert_eq!(seen["catalogs"], json!(["spoor"]));
    assert_eq!(seen["schemas"], json!(["acme"]));
    let tables = seen["tables"].as_array().context("tables")?;
    for t in ["events", "dead_letter", "authentication", "dns_activity"] {
        assert!(tables.iter().any(|x| x == t), "{t} listed: {seen}");
    }
    assert!(
        seen["events_columns"]
            .as_array()
            .is_some_and(|c| c.iter().any(|x| x == "tenant") && c.iter().any(|x| x == "src_ip"))
    );
    assert_eq!(seen["prepared_schema"], json!(["n"]));
    assert_eq!(seen["prepared_count"], 0);
    for key in [
        "other_schema_error",
        "file_path_error",
        "ddl_error",
        "syntax_error",
        "ingest_token_error",
        "bad_token_error",
        "ticket_without_token_error",
    ] {
        assert!(seen[key].is_string(), "{key} should have failed: {seen}");
    }
    assert!(
        seen["syntax_error"]
            .as_str()
            .is_some_and(|e| e.contains("SELEC")),
        "{seen}"
    );
    // A ticket is not a capability: globex's ticket redeemed by acme runs as acme.
    assert_eq!(seen["globex_ticket_as_globex"], 2);
    assert_eq!(seen["globex_ticket_as_acme"], 3);

    // PostgreSQL protocol: psql (simple protocol) from the system packages ...
    let postgres = node
        .postgres
        .clone()
        .context("standalone serves PostgreSQL")?;
    let (host, port) = postgres.rsplit_once(':').context("host:port")?;
    let psql = |token: &str, sql: &str| {
        Command::new("psql")
            .args([
                "-h", host, "-p", port, "-U", "hunter", "-d", "spoor", "-At", "-c", sql,
            ])
            .env("PGPASSWORD", token)
            .env("PGSSLMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .context("running psql (the postgresql-client package)")
    };
    let out = psql(&acme, "SELECT count(*) FROM events")?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    let out = psql(&acme, "SELECT src_ip, tenant FROM events ORDER BY src_ip")?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "10.1.1.1|acme\n10.1.1.2|acme\n10.1.1.3|acme"
    );
    for (token, sql, want) in [
        (&acme, "SELECT count(*) FROM spoor.globex.events", "globex"),
        (
            &acme,
            "SET datafusion.catalog.default_schema = 'globex'",
            "SetVariable",
        ),
        (
            &acme,
            "SELECT * FROM 'tenants/globex/events/x.parquet'",
            "tenants/globex",
        ),
        (&acme_ingest, "SELECT 1", "may not read"),
        (&"spoor_nope".to_string(), "SELECT 1", "invalid token"),
    ] {
        let out = psql(token, sql)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{sql} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(stderr.contains(want), "{sql}: {stderr}");
    }
    // ... and psycopg (extended protocol, binary results, prepared statements).
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/postgres_client.py");
    let args = json!({"host": host, "port": port, "acme": acme, "globex": globex});
    let out = Command::new(python()?)
        .arg(&script)
        .arg(args.to_string())
        .output()
        .context("running the PostgreSQL client")?;
    if !out.status.success() {
        bail!(
            "PostgreSQL client failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            spoor_tests::tail(&node.log_path)
        );
    }
    let seen: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(seen["acme_count"], 3, "{seen}");
    assert_eq!(seen["columns"], json!(["n"]));
    assert_eq!(seen["first"][0], "10.1.1.1");
    assert_eq!(seen["first"][2], "acme");
    assert_eq!(seen["globex_count"], 2);
    assert_eq!(seen["after_errors"], 1);
    for key in ["globex_by_name_error", "parameter_error", "bad_token_error"] {
        assert!(seen[key].is_string(), "{key} should have failed: {seen}");
    }
    Ok(())
}

/// Each tenant's rules and alerts are its own on every interface: the
/// rules API lists a tenant's sets only to its tokens, alerts are rows of
/// the tenant's `alerts` table over HTTP and PostgreSQL, the alerts API
/// refuses another tenant's alert, and an mssp-operator token of both
/// tenants reads both (and nothing of a third).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_alerts_stay_with_their_tenant() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Spoor::role(
        "standalone",
        &dir.path().join("data"),
        &[
            "query.auth=token".to_string(),
            "ingest.http_auth=token".to_string(),
            "node.heartbeat_interval_ms=300".into(),
            "coordinator.scheduler_interval_ms=300".into(),
            "worker.commit_interval_ms=300".into(),
            "worker.poll_interval_ms=100".into(),
        ],
        &SpoorOptions::default(),
    )?;
    let grpc = node.grpc.clone().context("standalone serves gRPC")?;
    for tenant in ["acme", "globex", "initech"] {
        cli(&["tenant", "create", tenant, "--coordinator", &grpc])?;
    }
    let admin = token(&grpc, "admin", None)?;
    let operator = cli(&[
        "token",
        "create",
        "--role",
        "mssp-operator",
        "--tenant",
        "acme",
        "--tenant",
        "globex",
        "--coordinator",
        &grpc,
    ])?["token"]
        .as_str()
        .context("operator token")?
        .to_string();
    let url = |path: &str| format!("{}{path}", node.http);
    let mut analysts = Vec::new();
    for tenant in ["acme", "globex", "initech"] {
        let analyst = token(&grpc, "analyst", Some(tenant))?;
        let rule = spoor_tests::encoded_shell_rule(match tenant {
            "acme" => "7d6c1b52-1f0e-4d8a-9a51-00000000ac01",
            "globex" => "7d6c1b52-1f0e-4d8a-9a51-00000000ac02",
            _ => "7d6c1b52-1f0e-4d8a-9a51-00000000ac03",
        });
        let (status, body) = spoor_tests::call(
            reqwest::Method::PUT,
            &url(&format!("/v1/rules/sets/{tenant}/{tenant}-secret-rules")),
            Some(&analyst),
            Some(json!({"bundle": {"rules": [{"path": "shell.yml", "text": rule}]}})),
        )
        .await?;
        anyhow::ensure!(status == 200, "{tenant}'s rules: {status} {body}");
        analysts.push((tenant, analyst));
    }
    // A new shard starts at the catalog head: wait until all three are held.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, s) =
            spoor_tests::call(reqwest::Method::GET, &url("/v1/status"), Some(&admin), None).await?;
        let held = s["cluster"]["shards"].as_array().map_or(0, |shards| {
            shards.iter().filter(|x| !x["holder"].is_null()).count()
        });
        if held >= 3 {
            break;
        }
        if Instant::now() > deadline {
            bail!("shards not leased: {s}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (tenant, _) in &analysts[..2] {
        let ingest = token(&grpc, "ingest", Some(tenant))?;
        let event = json!({"time": spoor_tests::now_rfc3339()?, "test_action": "exec",
            "test_cmd": format!("powershell -enc {tenant}"), "test_host": format!("{tenant}-ws1")});
        let resp = reqwest::Client::new()
            .post(url("/v1/ingest/edr"))
            .bearer_auth(&ingest)
            .body(format!("{event}\n"))
            .send()
            .await?;
        assert_eq!(resp.status(), 200, "{}", resp.text().await?);
    }
    let (acme, globex, initech) = (&analysts[0].1, &analysts[1].1, &analysts[2].1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let acme_alert = loop {
        let got = rows(&node, acme, "SELECT alert_id, tenant FROM alerts").await?;
        let theirs = rows(&node, globex, "SELECT count(*) AS n FROM alerts").await?;
        if got.as_array().is_some_and(|a| a.len() == 1) && theirs == json!([{"n": 1}]) {
            break got[0].clone();
        }
        if Instant::now() > deadline {
            bail!(
                "one alert per tenant expected: acme {got}, globex {theirs}; {}",
                spoor_tests::tail(&node.log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(acme_alert["tenant"], "acme");
    let acme_alert_id = acme_alert["alert_id"].as_str().context("alert_id")?;
    assert_eq!(
        rows(&node, initech, "SELECT count(*) AS n FROM alerts").await?,
        json!([{"n": 0}]),
        "initech raised nothing and sees nothing"
    );
    assert_eq!(
        rows(
            &node,
            &operator,
            "SELECT tenant, count(*) AS n FROM alerts GROUP BY tenant ORDER BY tenant"
        )
        .await?,
        json!([{"tenant": "acme", "n": 1}, {"tenant": "globex", "n": 1}]),
        "the operator reads exactly its two tenants"
    );
    let message = refused(
        &node,
        &operator,
        "SELECT count(*) FROM spoor.initech.alerts",
    )
    .await?;
    assert!(message.contains("initech"), "{message}");

    // Rules: a tenant's token lists its sets only, and another tenant's
    // listing is refused without naming what is in it.
    let (status, listed) = spoor_tests::call(
        reqwest::Method::GET,
        &url("/v1/rules/sets"),
        Some(acme),
        None,
    )
    .await?;
    assert_eq!(status, 200, "{listed}");
    assert!(listed.to_string().contains("acme-secret-rules"), "{listed}");
    assert!(!listed.to_string().contains("globex"), "{listed}");
    let (status, refusal) = spoor_tests::call(
        reqwest::Method::GET,
        &url("/v1/rules/sets?tenant=globex"),
        Some(acme),
        None,
    )
    .await?;
    assert_eq!(status, 403, "{refusal}");
    assert!(!refusal.to_string().contains("secret-rules"), "{refusal}");
    let (status, both) = spoor_tests::call(
        reqwest::Method::GET,
        &url("/v1/rules/sets?tenant=globex"),
        Some(&operator),
        None,
    )
    .await?;
    assert_eq!(status, 200, "the operator reads globex's rules: {both}");
    assert!(both.to_string().contains("globex-secret-rules"), "{both}");
    let (status, refusal) = spoor_tests::call(
        reqwest::Method::PUT,
        &url("/v1/rules/sets/globex/operator-rules"),
        Some(&operator),
        Some(json!({"bundle": {"rules": []}})),
    )
    .await?;
    assert_eq!(
        status, 403,
        "an operator reads, it does not write: {refusal}"
    );
    // Indicator lists feed detections: readers do not write them.
    let viewer = token(&grpc, "viewer", Some("acme"))?;
    for (who, want) in [(&viewer, 403), (&operator, 403), (acme, 200)] {
        let resp = reqwest::Client::new()
            .put(url("/v1/intel/watch?tenant=acme"))
            .bearer_auth(who)
            .body("10.9.9.9\n")
            .send()
            .await?;
        assert_eq!(resp.status(), want, "{}", resp.text().await?);
    }

    // The alerts API: acme's alert is acme's.
    for (who, want) in [(acme, 200), (globex, 403), (&operator, 200), (initech, 403)] {
        let (status, body) = spoor_tests::call(
            reqwest::Method::GET,
            &url(&format!("/v1/alerts/acme/{acme_alert_id}")),
            Some(who),
            None,
        )
        .await?;
        assert_eq!(status, want, "{body}");
        if want == 403 {
            assert!(!body.to_string().contains("powershell"), "{body}");
        }
    }

    // PostgreSQL: the alerts table is the tenant's.
    let postgres = node.postgres.clone().context("PostgreSQL listener")?;
    let (host, port) = postgres.rsplit_once(':').context("host:port")?;
    let psql = |token: &str, sql: &str| -> anyhow::Result<(bool, String)> {
        let out = Command::new("psql")
            .args([
                "-h", host, "-p", port, "-U", "hunter", "-d", "spoor", "-At", "-c", sql,
            ])
            .env("PGPASSWORD", token)
            .env("PGSSLMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .context("running psql")?;
        Ok((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ))
    };
    assert_eq!(
        psql(
            globex,
            "SELECT tenant, count(*) FROM alerts GROUP BY tenant"
        )?,
        (true, "globex|1".to_string())
    );
    let (ok, out) = psql(globex, "SELECT count(*) FROM spoor.acme.alerts")?;
    assert!(!ok && out.contains("acme"), "{out}");

    // The audit trail: the cluster's admin reads every kind of record in
    // SQL; a tenant's token does not even see the table.
    // A token of the right shape whose secret is wrong: the id it claims
    // is on record.
    let forged = format!("spoor_0123456789abcdef_{}", "0".repeat(64));
    let (ok, out) = psql(&forged, "SELECT 1")?;
    assert!(!ok, "{out}");
    let resp = reqwest::Client::new()
        .post(url("/v1/ingest/edr"))
        .bearer_auth(&forged)
        .body("{}\n")
        .send()
        .await?;
    assert_eq!(resp.status(), 401);
    let want = [
        ("auth_failure", 2),
        ("query", 5),
        ("rule_set_changed", 3),
        ("tenant_changed", 3),
        ("token_created", 7),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = rows(
            &node,
            &admin,
            "SELECT kind, count(*) AS n FROM audit GROUP BY kind ORDER BY kind",
        )
        .await?;
        let counts: Vec<(String, i64)> = got
            .as_array()
            .context("rows")?
            .iter()
            .map(|r| {
                (
                    r["kind"].as_str().unwrap_or_default().to_string(),
                    r["n"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        let complete = want
            .iter()
            .all(|(kind, at_least)| counts.iter().any(|(k, n)| k == kind && n >= at_least));
        if complete {
            break;
        }
        if Instant::now() > deadline {
            bail!("audit trail incomplete: {got}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    rows_eventually(
        &node,
        &admin,
        "SELECT interface, outcome, actor FROM audit WHERE kind = 'auth_failure' \
         AND actor = '0123456789abcdef' ORDER BY interface",
        json!([
            {"interface": "http_ingest", "outcome": "unauthenticated", "actor": "0123456789abcdef"},
            {"interface": "postgres", "outcome": "unauthenticated", "actor": "0123456789abcdef"}
        ]),
    )
    .await?;
    // A valid token refused one action (403, PERMISSION_DENIED) is on
    // record too: the viewer writing an indicator list over HTTP, and
    // listing tenants over gRPC.
    let (code, _, err) =
        spoor_tests::spoor_cli(&["tenant", "list", "--coordinator", &grpc, "--token", &viewer])?;
    assert!(code != 0 && err.contains("permission denied"), "{err}");
    let viewer_id = viewer.split('_').nth(1).context("token id")?;
    rows_eventually(
        &node,
        &admin,
        &format!(
            "SELECT interface, outcome, role, tenants FROM audit WHERE kind = 'auth_failure' \
             AND actor = '{viewer_id}' ORDER BY interface"
        ),
        json!([
            {"interface": "grpc", "outcome": "forbidden", "role": "viewer", "tenants": "acme"},
            {"interface": "http", "outcome": "forbidden", "role": "viewer", "tenants": "acme"}
        ]),
    )
    .await?;
    let rule_change = rows(
        &node,
        &admin,
        "SELECT tenants, target, actor IS NOT NULL AS by_token FROM audit \
         WHERE kind = 'rule_set_changed' AND tenants = 'globex'",
    )
    .await?;
    assert_eq!(
        rule_change,
        json!([{"tenants": "globex", "target": "globex/globex-secret-rules", "by_token": true}])
    );
    let message = refused(&node, acme, "SELECT count(*) FROM audit").await?;
    assert!(message.contains("audit"), "{message}");
    Ok(())
}

/// Polls `sql` as `token` until its rows are `want` (audit records are
/// written every 2 s); fails after 20 s with what it last saw.
async fn rows_eventually(node: &Spoor, token: &str, sql: &str, want: Value) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = rows(node, token, sql).await?;
        if got == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{sql}: {got}, wanted {want}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

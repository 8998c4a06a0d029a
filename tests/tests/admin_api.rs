//! The tenant and token HTTP API (`/v1/tenants`, `/v1/tokens`) against the
//! real binary: what `spoor tenant` and `spoor token` do, over HTTP, with
//! the caller's token deciding, and each tenant's storage usage reported
//! there, by `spoor tenant show` and in the coordinators' metrics. Who may
//! call what is in access_matrix.rs; this is what the calls do.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::json;
use spoor_tests::{Spoor, SpoorOptions, call, spoor_cli_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_tokens_over_http_with_storage_usage() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("cluster.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef-admin-api")?;
    let node = Spoor::role(
        "standalone",
        &dir.path().join("data"),
        &[
            "query.auth=\"token\"".into(),
            "ingest.http_auth=\"token\"".into(),
            format!("cluster.secret_file=\"{}\"", secret.display()),
        ],
        &SpoorOptions::default(),
    )?;
    let grpc = node.grpc.clone().context("standalone serves gRPC")?;
    let admin_token = spoor_cli_json(&[
        "token",
        "create",
        "--role",
        "admin",
        "--coordinator",
        &grpc,
        "--cluster-secret-file",
        &secret.display().to_string(),
    ])?["token"]
        .as_str()
        .context("no admin token")?
        .to_string();
    let url = |path: &str| format!("{}{path}", node.http);
    let admin = Some(admin_token.as_str());

    // Without a token nothing is managed, whatever query.auth says.
    let (status, body) = call(Method::GET, &url("/v1/tenants"), None, None).await?;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthenticated");
    // Nor with the cluster secret: it opens the roles' gRPC, not HTTP.
    let cluster_secret = std::fs::read_to_string(&secret)?;
    let (status, body) = call(
        Method::GET,
        &url("/v1/tenants"),
        Some(cluster_secret.trim()),
        None,
    )
    .await?;
    assert_eq!(status, 401, "{body}");

    // Create, with settings; the same id again is a conflict; a field that
    // does not exist is refused by name.
    let (status, created) = call(
        Method::POST,
        &url("/v1/tenants"),
        admin,
        Some(json!({
            "id": "acme",
            "display_name": "Acme Corp",
            "retention_days": 30,
            "table_retention_days": {"alerts": 365},
            "region": "eu-west",
            "ingest_events_per_second": 5000,
        })),
    )
    .await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["display_name"], "Acme Corp");
    assert_eq!(created["table_retention_days"]["alerts"], 365);
    assert_eq!(created["quotas"]["ingest_events_per_second"], 5000);
    assert_eq!(created["usage"]["rows"], 0, "{created}");
    let (status, body) = call(
        Method::POST,
        &url("/v1/tenants"),
        admin,
        Some(json!({"id": "acme"})),
    )
    .await?;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("conflict")),
        "{body}"
    );
    let (status, body) = call(
        Method::POST,
        &url("/v1/tenants"),
        admin,
        Some(json!({"id": "globex", "retention": 3})),
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("retention"), "{body}");
    let (status, body) = call(Method::GET, &url("/v1/tenants/nobody"), admin, None).await?;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("not_found")),
        "{body}"
    );

    // An ingest token made over HTTP sends events; the usage shows them.
    let (status, made) = call(
        Method::POST,
        &url("/v1/tokens"),
        admin,
        Some(json!({"role": "ingest", "tenants": ["acme"], "description": "fw", "expires_in_seconds": 3600})),
    )
    .await?;
    assert_eq!(status, 201, "{made}");
    let ingest = made["token"]
        .as_str()
        .context("the token is shown once")?
        .to_string();
    let token_id = made["token_id"].as_str().context("token id")?.to_string();
    assert!(made["expires_at"].is_string(), "{made}");
    let events: String = (0..25)
        .map(|i| format!("{{\"src_ip\":\"10.0.0.{i}\"}}\n"))
        .collect();
    let resp = reqwest::Client::new()
        .post(url("/v1/ingest/fw"))
        .bearer_auth(&ingest)
        .body(events)
        .send()
        .await?;
    assert!(resp.status().is_success(), "{}", resp.text().await?);
    let (_, shown) = call(Method::GET, &url("/v1/tenants/acme"), admin, None).await?;
    assert_eq!(shown["usage"]["tables"]["events"]["rows"], 25, "{shown}");
    assert!(shown["usage"]["bytes"].as_u64().unwrap_or(0) > 0, "{shown}");
    assert!(
        shown["usage"]["tables"]["events"]["files"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    );
    // The CLI shows the same.
    let cli = spoor_cli_json(&[
        "tenant",
        "show",
        "acme",
        "--coordinator",
        &grpc,
        "--token",
        &admin_token,
    ])?;
    assert_eq!(cli["usage"], shown["usage"], "{cli}");

    // Listing never shows secrets or hashes.
    let (status, listed) = call(Method::GET, &url("/v1/tokens?tenant=acme"), admin, None).await?;
    assert_eq!(status, 200, "{listed}");
    let entry = listed
        .as_array()
        .and_then(|l| l.iter().find(|t| t["token_id"] == token_id.as_str()))
        .with_context(|| format!("the token is listed: {listed}"))?;
    assert_eq!(entry["role"], "ingest");
    let text = listed.to_string();
    assert!(
        !text.contains(&ingest) && !text.contains("sha256"),
        "{text}"
    );

    // Concurrent updates of different fields all take effect: each is
    // stored only over the record it read, and reapplied otherwise.
    let patch = |body: serde_json::Value| {
        let url = url("/v1/tenants/acme");
        async move { call(Method::PATCH, &url, admin, Some(body)).await }
    };
    let (a, b, c, d) = tokio::join!(
        patch(json!({"region": "us-east"})),
        patch(json!({"display_name": "Acme Inc"})),
        patch(json!({"ingest_bytes_per_second": 1000000})),
        patch(json!({"max_concurrent_queries": 3})),
    );
    for (status, body) in [a?, b?, c?, d?] {
        assert_eq!(status, 200, "{body}");
    }
    let (_, shown) = call(Method::GET, &url("/v1/tenants/acme"), admin, None).await?;
    assert_eq!(shown["region"], "us-east", "{shown}");
    assert_eq!(shown["display_name"], "Acme Inc", "{shown}");
    assert_eq!(
        shown["quotas"]["ingest_bytes_per_second"], 1000000,
        "{shown}"
    );
    assert_eq!(shown["quotas"]["max_concurrent_queries"], 3, "{shown}");
    // Triage history kept shorter than the alerts is refused.
    let (status, body) = call(
        Method::PATCH,
        &url("/v1/tenants/acme"),
        admin,
        Some(json!({"table_retention_days": {"alert_updates": 30}})),
    )
    .await?;
    assert_eq!(status, 400, "{body}");

    // Update: a legal hold, then disabling stops the tenant's tokens.
    let (status, updated) = call(
        Method::PATCH,
        &url("/v1/tenants/acme"),
        admin,
        Some(json!({"legal_hold": true, "table_retention_days": {"alerts": null}})),
    )
    .await?;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["legal_hold"], true);
    assert_eq!(updated["retention_days"], 30, "untouched fields stay");
    assert!(
        updated["table_retention_days"].get("alerts").is_none(),
        "{updated}"
    );
    let (status, _) = call(
        Method::PATCH,
        &url("/v1/tenants/acme"),
        admin,
        Some(json!({"disabled": true})),
    )
    .await?;
    assert_eq!(status, 200);
    refused_within(&url("/v1/ingest/fw"), &ingest, Duration::from_secs(8)).await?;
    let (_, shown) = call(Method::GET, &url("/v1/tenants/acme"), admin, None).await?;
    assert_eq!(shown["disabled"], true);
    assert_eq!(shown["legal_hold"], true);

    // Revocation over HTTP; an unknown id is not found.
    let (status, body) = call(
        Method::DELETE,
        &url("/v1/tokens/0000000000000000"),
        admin,
        None,
    )
    .await?;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("not_found")),
        "{body}"
    );
    let (_, enabled) = call(
        Method::PATCH,
        &url("/v1/tenants/acme"),
        admin,
        Some(json!({"disabled": false})),
    )
    .await?;
    assert_eq!(enabled["disabled"], false, "{enabled}");
    let (status, body) = call(
        Method::DELETE,
        &url(&format!("/v1/tokens/{token_id}")),
        admin,
        None,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    refused_within(&url("/v1/ingest/fw"), &ingest, Duration::from_secs(8)).await?;

    // Every coordinator exports the figures (every 15 s). The probes above
    // added rows until the refusal took effect: compare with the catalog.
    let (_, shown) = call(Method::GET, &url("/v1/tenants/acme"), admin, None).await?;
    let rows = shown["usage"]["tables"]["events"]["rows"]
        .as_u64()
        .context("rows")?;
    assert!(rows >= 25, "{shown}");
    let want = format!(" {rows}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = reqwest::get(url("/metrics")).await?.text().await?;
        let line = metrics.lines().find(|l| {
            l.starts_with("spoor_tenant_stored_rows")
                && l.contains("tenant=\"acme\"")
                && l.contains("table=\"events\"")
        });
        if line.is_some_and(|l| l.ends_with(&want)) {
            break;
        }
        if Instant::now() > deadline {
            bail!("spoor_tenant_stored_rows for acme's events is not {rows}: {line:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Waits until `token` is refused (401) on `url`.
async fn refused_within(url: &str, token: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let status = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .body("{\"src_ip\":\"10.9.9.9\"}\n")
            .send()
            .await?
            .status();
        if status == 401 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the token is still taken after {limit:?} (last {status})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

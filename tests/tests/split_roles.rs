//! The roles as separate processes: a coordinator serving the catalog over
//! gRPC, an ingest node and a query node reaching it through the gRPC client
//! and sharing one lake.

use std::time::Duration;

use spoor_tests::{Spoor, SpoorOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_ingest_and_query_as_separate_processes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&lake)?;
    let lake_url = format!("storage.url=\"file://{}\"", lake.display());
    let opts = SpoorOptions::default();

    let coordinator = Spoor::role("coordinator", &dir.path().join("coordinator"), &[], &opts)?;
    let endpoint = coordinator
        .grpc
        .clone()
        .expect("the coordinator serves gRPC");
    let catalog = format!("catalog.endpoint=\"{endpoint}\"");
    let ingest = Spoor::role(
        "ingest",
        &dir.path().join("ingest"),
        &[lake_url.clone(), catalog.clone(), "node.id=11".into()],
        &opts,
    )?;
    let query = Spoor::role(
        "query",
        &dir.path().join("query"),
        &[lake_url, catalog, "node.id=21".into()],
        &opts,
    )?;

    let resp: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/ingest/fw", ingest.http))
        .body("{\"src_ip\":\"10.0.0.1\",\"dst_ip\":\"10.0.0.2\",\"dst_port\":22}\n{\"src_ip\":\"10.0.0.3\"}\n{oops\n")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(resp["accepted"], 2, "{resp}");
    assert_eq!(resp["dead_lettered"], 1, "{resp}");

    // The query node sees what the ingest node committed through the coordinator.
    query
        .wait_for("SELECT count(*) FROM events", 2, Duration::from_secs(10))
        .await?;
    assert_eq!(query.scalar("SELECT count(*) FROM dead_letter").await?, 1);
    assert_eq!(
        query
            .scalar("SELECT count(*) FROM events WHERE class_uid = 4001")
            .await?,
        1
    );

    // Every role reports the same catalog.
    for node in [&coordinator, &ingest, &query] {
        let status: serde_json::Value = reqwest::get(format!("{}/v1/status", node.http))
            .await?
            .json()
            .await?;
        assert_eq!(
            spoor_tests::tenant_file_count(&status, "default"),
            Some(2),
            "{status}"
        );
        let metrics = reqwest::get(format!("{}/metrics", node.http))
            .await?
            .text()
            .await?;
        assert!(metrics.contains("spoor_build_info"), "{metrics}");
    }
    // The query node does not ingest, the ingest node does not query.
    let status = reqwest::Client::new()
        .post(format!("{}/v1/ingest", query.http))
        .body("{}")
        .send()
        .await?
        .status();
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    let status = reqwest::Client::new()
        .post(format!("{}/v1/query", ingest.http))
        .json(&serde_json::json!({"sql": "SELECT 1"}))
        .send()
        .await?
        .status();
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    Ok(())
}

//! Rotating the cluster secret without a restart (docs/security.md,
//! Rotation): a coordinator and a query node, each with its own secret
//! file (as on two machines), re-read every 200 ms. The new secret is
//! added beside the old on both, then presented first, then the old one is
//! dropped; the query node reaches the catalog at every step, a node that
//! presents a secret the coordinator does not (yet) hold does not, and the
//! dropped secret no longer opens anything.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use spoor_tests::{Spoor, SpoorOptions, spoor_cli};

/// Whether the query node reaches the catalog: its `/v1/status` reads it
/// over gRPC with the node's secret.
async fn reaches_catalog(node: &Spoor) -> anyhow::Result<bool> {
    let resp = reqwest::get(format!("{}/v1/status", node.http)).await?;
    Ok(resp.status().is_success())
}

/// Waits until [`reaches_catalog`] is `want`.
async fn until(node: &Spoor, want: bool, step: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if reaches_catalog(node).await? == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{step}: the query node {} the catalog after 10 s; log: {}",
                if want {
                    "still does not reach"
                } else {
                    "still reaches"
                },
                spoor_tests::tail(&node.log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write(path: &Path, secrets: &[&str]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, secrets.join("\n") + "\n")?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_secret_is_rotated_without_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let old = "old-secret-0123456789abcdef0123456789";
    let new = "new-secret-fedcba9876543210fedcba9876";
    let (coordinator_file, query_file) = (
        dir.path().join("coordinator.secret"),
        dir.path().join("query.secret"),
    );
    write(&coordinator_file, &[old])?;
    write(&query_file, &[old])?;
    let secret = |file: &Path| {
        vec![
            format!("cluster.secret_file=\"{}\"", file.display()),
            "cluster.reload_interval_ms=200".to_string(),
        ]
    };
    let coordinator = Spoor::role(
        "coordinator",
        &dir.path().join("coordinator"),
        &secret(&coordinator_file),
        &SpoorOptions::default(),
    )?;
    let grpc = coordinator
        .grpc
        .clone()
        .context("the coordinator serves gRPC")?;
    let mut sets = secret(&query_file);
    sets.extend([format!("catalog.endpoint=\"{grpc}\""), "node.id=21".into()]);
    let query = Spoor::role(
        "query",
        &dir.path().join("query"),
        &sets,
        &SpoorOptions::default(),
    )?;
    until(&query, true, "with the old secret on both").await?;

    // A node that presents a secret the coordinators do not hold yet is
    // refused: this is why the new secret goes beside the old first.
    write(&query_file, &[new, old])?;
    until(
        &query,
        false,
        "the query node presenting the new secret too early",
    )
    .await?;
    write(&query_file, &[old, new])?;
    until(&query, true, "back to presenting the old secret").await?;

    // 1. Every node accepts both (the old one still presented).
    write(&coordinator_file, &[old, new])?;
    // 2. Every node presents the new one.
    tokio::time::sleep(Duration::from_millis(600)).await;
    write(&coordinator_file, &[new, old])?;
    write(&query_file, &[new, old])?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    until(&query, true, "presenting the new secret").await?;
    // 3. The old one is dropped.
    write(&coordinator_file, &[new])?;
    write(&query_file, &[new])?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    until(&query, true, "with the new secret alone").await?;

    // The dropped secret opens nothing; the new one does.
    let file = |name: &str, secret: &str| -> anyhow::Result<String> {
        let path = dir.path().join(name);
        write(&path, &[secret])?;
        Ok(path.display().to_string())
    };
    let (old_file, new_file) = (file("old.only", old)?, file("new.only", new)?);
    let (code, _, err) = spoor_cli(&[
        "cluster",
        "members",
        "--coordinator",
        &grpc,
        "--cluster-secret-file",
        &old_file,
    ])?;
    assert!(
        code != 0 && err.contains("unauthenticated"),
        "the old secret: {err}"
    );
    let (code, out, err) = spoor_cli(&[
        "cluster",
        "members",
        "--coordinator",
        &grpc,
        "--cluster-secret-file",
        &new_file,
    ])?;
    assert_eq!(code, 0, "the new secret: {err}");
    assert!(out.contains("\"voters\""), "{out}");
    // Both nodes ran throughout: no restart was needed.
    assert!(reaches_catalog(&query).await?);
    drop(coordinator);
    Ok(())
}

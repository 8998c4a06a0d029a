//! `spoor cluster backup` and `spoor cluster restore` with the real binary:
//! a standalone node ingests from Kafka (tansu) into a lake, with a tenant,
//! a token and a rule set; its coordinators' state is backed up; everything
//! stops; a new coordinator (other node id, other port, other folder) on the
//! same lake takes the backup, and ingest and query nodes against it carry
//! on: the same rows, the tenant and rule set, ingest resuming exactly at
//! the restored Kafka checkpoints, and a coordinator that joins later
//! holding it all. Refusals: a changed file, a token that is not the
//! cluster's admin, a catalog that is not empty.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use spoor_tests::{
    Broker, Spoor, SpoorOptions, create_token, failed_logon_rule, free_port, good_events,
    kafka_env, spoor_cli, spoor_cli_json, write_rules,
};

const TOPIC: &str = "backup-restore";
const GROUP: &str = "spoor-backup-restore";

/// Points `group`'s committed Kafka offsets back at 0 on both partitions:
/// from then on only the catalog's checkpoints keep ingest from reading
/// the topic again.
fn rewind_kafka_group(broker: &Broker) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .create()
        .context("a consumer of the group")?;
    let mut offsets = TopicPartitionList::new();
    for partition in 0..2 {
        offsets
            .add_partition_offset(TOPIC, partition, Offset::Offset(0))
            .context("offset 0")?;
    }
    consumer
        .commit(&offsets, CommitMode::Sync)
        .context("committing offset 0 for the group")?;
    Ok(())
}

/// `spoor args…` expected to fail: its stderr.
fn refused(args: &[&str]) -> Result<String> {
    let (code, out, err) = spoor_cli(args)?;
    ensure!(code != 0, "spoor {} succeeded: {out}", args.join(" "));
    Ok(err)
}

/// Polls `node`'s `/v1/status` until tenant `default` holds `files` files
/// in its own applied catalog.
async fn wait_default_files(node: &Spoor, files: i64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = node.status().await?;
        if spoor_tests::tenant_file_count(&status, "default") == Some(files) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "tenant default does not hold {files} files: {status}; log: {}",
                spoor_tests::tail(&node.log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restored_into_a_new_coordinator_carries_the_cluster_on() -> Result<()> {
    let broker = Broker::start()?;
    broker.create_topic(TOPIC, 2).await?;
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&lake)?;
    let lake_url = format!("file://{}", lake.display());

    // The old place: one standalone node reading the topic into the lake.
    let mut env = kafka_env(&broker, TOPIC, GROUP);
    env.push(("SPOOR_STORAGE__URL".into(), lake_url.clone()));
    // Dynamic membership, so that the old node leaves the group when it
    // stops: a static member is only removed when its session times out,
    // which tansu 0.6 never does (ingest_failover.rs), and the new place's
    // ingest node would wait for it forever.
    env.push(("SPOOR_INGEST__KAFKA__INSTANCE_ID".into(), "none".into()));
    let mut old = Spoor::standalone(
        &dir.path().join("old"),
        &SpoorOptions {
            env,
            ..Default::default()
        },
    )?;
    let old_grpc = old.grpc.clone().context("standalone serves gRPC")?;
    broker.produce(TOPIC, &good_events(0, 300)).await?;
    old.wait_for("SELECT count(*) FROM events", 300, Duration::from_secs(60))
        .await?;
    spoor_cli_json(&[
        "tenant",
        "create",
        "acme",
        "--region",
        "eu-west",
        "--retention-days",
        "90",
        "--coordinator",
        &old_grpc,
    ])?;
    let analyst = create_token(&old_grpc, "analyst", Some("acme"))?;
    let rules = dir.path().join("windows");
    write_rules(
        &rules,
        &[(
            "failed.yml",
            &failed_logon_rule("6f3c3b7e-0000-4000-8000-000000000001"),
        )],
    )?;
    old.apply_rules(&rules, Some(2))?;

    // The backup: a private file and a summary.
    let backup = dir.path().join("catalog.backup");
    let backup_arg = backup.display().to_string();
    let summary = spoor_cli_json(&[
        "cluster",
        "backup",
        "--out",
        &backup_arg,
        "--coordinator",
        &old_grpc,
    ])?;
    let meta = std::fs::metadata(&backup)?;
    assert_eq!(summary["bytes"], meta.len(), "{summary}");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "owner only");
    }
    assert_eq!(summary["tenants"], 1, "{summary}");
    assert_eq!(summary["checkpoints"], 2, "one per partition: {summary}");
    assert_eq!(summary["rule_sets"], 1, "{summary}");
    assert_eq!(summary["shards"], 2, "{summary}");
    let backed_up_files = summary["files"].as_u64().context("files")?;
    assert!(backed_up_files >= 2, "{summary}");
    assert!(
        summary["last_applied_index"].as_u64() > Some(0),
        "{summary}"
    );
    let rows = old.scalar("SELECT count(*) FROM events").await?;
    assert_eq!(rows, 300);
    assert!(old.stop()?.success(), "the old node stops cleanly");

    // While nothing runs, more events arrive, and the Kafka group's own
    // offsets are lost: only the restored checkpoints say where to resume.
    broker.produce(TOPIC, &good_events(300, 200)).await?;
    rewind_kafka_group(&broker)?;

    // The new place: another node id, port and folder, the same lake.
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let opts = SpoorOptions::default();
    let storage = format!("storage.url=\"{lake_url}\"");
    let mut coordinator = Spoor::role(
        "coordinator",
        &dir.path().join("new-coordinator"),
        &[
            "node.id=5".into(),
            format!("node.grpc_addr=\"127.0.0.1:{port}\""),
            format!("coordinator.initial_members=[\"5@{url}\"]"),
            // Snapshots often, the log purged behind them: a coordinator
            // added later gets the restored state by snapshot.
            "coordinator.snapshot_after_entries=5".into(),
            "coordinator.log_kept_after_snapshot=0".into(),
            storage.clone(),
        ],
        &opts,
    )?;
    let new_grpc = coordinator
        .grpc
        .clone()
        .context("coordinator serves gRPC")?;

    // A changed file is refused, and nothing is restored.
    let tampered = dir.path().join("tampered.backup");
    let text = std::fs::read_to_string(&backup)?;
    let body = text.find("\"body\":").context("a body")?;
    let at = body + text[body..].find("\"row_count\":").context("a row count")? + 12;
    let mut changed = text.clone();
    changed.replace_range(at..at + 1, if &text[at..at + 1] == "9" { "8" } else { "9" });
    std::fs::write(&tampered, changed)?;
    let err = refused(&[
        "cluster",
        "restore",
        &tampered.display().to_string(),
        "--coordinator",
        &new_grpc,
    ])?;
    assert!(err.contains("checksum mismatch"), "{err}");

    // The restore.
    let restored = spoor_cli_json(&[
        "cluster",
        "restore",
        &backup_arg,
        "--coordinator",
        &new_grpc,
    ])?;
    assert_eq!(restored["already_applied"], false, "{restored}");
    assert_eq!(restored["files"], backed_up_files, "{restored}");
    assert_eq!(restored["tenants"], 1, "{restored}");
    assert_eq!(restored["checkpoints"], 2, "{restored}");
    assert_eq!(restored["rule_sets"], 1, "{restored}");
    assert!(
        restored["members_dropped"].as_u64() >= Some(1),
        "the standalone node's registration stays behind: {restored}"
    );
    // Again: a retry of the same backup changes nothing.
    let again = spoor_cli_json(&[
        "cluster",
        "restore",
        &backup_arg,
        "--coordinator",
        &new_grpc,
    ])?;
    assert_eq!(again["already_applied"], true, "{again}");

    // The restored token authenticates here, and is not the cluster's admin.
    for command in [
        vec!["cluster", "restore", &backup_arg],
        vec!["cluster", "backup", "--out", "/dev/null"],
    ] {
        let mut args = command.clone();
        args.extend(["--coordinator", &new_grpc, "--token", &analyst]);
        let err = refused(&args)?;
        assert!(
            err.contains("an analyst token may not") && err.contains("cluster's admin token"),
            "{err}"
        );
    }
    let tenant = spoor_cli_json(&["tenant", "show", "acme", "--coordinator", &new_grpc])?;
    assert_eq!(tenant["region"], "eu-west", "{tenant}");
    assert_eq!(tenant["retention_days"], 90, "{tenant}");

    // Query first: the rows the old place had, and the rule set.
    let catalog = format!("catalog.endpoint=\"{new_grpc}\"");
    let query = Spoor::role(
        "query",
        &dir.path().join("query"),
        &[storage.clone(), catalog.clone(), "node.id=21".into()],
        &opts,
    )?;
    assert_eq!(query.scalar("SELECT count(*) FROM events").await?, rows);
    let sets: Value = query
        .client
        .get(format!("{}/v1/rules/sets?tenant=default", query.http))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(sets["rule_sets"][0]["name"], "windows", "{sets}");
    assert_eq!(sets["rule_sets"][0]["version"], 1, "{sets}");

    // Ingest resumes at the restored checkpoints: the 200 new events,
    // nothing read twice.
    let ingest_env = kafka_env(&broker, TOPIC, GROUP);
    let ingest = Spoor::role(
        "ingest",
        &dir.path().join("ingest"),
        &[storage.clone(), catalog.clone(), "node.id=11".into()],
        &SpoorOptions {
            env: ingest_env,
            ..Default::default()
        },
    )?;
    query
        .wait_for("SELECT count(*) FROM events", 500, Duration::from_secs(60))
        .await
        .with_context(|| format!("ingest's log: {}", spoor_tests::tail(&ingest.log_path)))?;
    let twice = query
        .sql(
            "SELECT source_topic, source_partition, source_offset, count(*) FROM events \
             GROUP BY 1, 2, 3 HAVING count(*) > 1",
        )
        .await?;
    assert_eq!(
        twice["rows"].as_array().map(Vec::len),
        Some(0),
        "offsets ingested twice: {twice}"
    );
    assert_eq!(
        query
            .scalar("SELECT count(DISTINCT source_offset * 2 + source_partition) FROM events")
            .await?,
        500
    );
    // Settled: nothing more arrives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(query.scalar("SELECT count(*) FROM events").await?, 500);

    // A coordinator added now gets the restored state by snapshot.
    let joiner_port = free_port()?;
    let joiner = Spoor::role(
        "coordinator",
        &dir.path().join("joiner"),
        &[
            "node.id=6".into(),
            format!("node.grpc_addr=\"127.0.0.1:{joiner_port}\""),
            "coordinator.join=true".into(),
            storage.clone(),
        ],
        &opts,
    )?;
    let joiner_url = format!("http://127.0.0.1:{joiner_port}");
    let members = spoor_cli_json(&[
        "cluster",
        "add-node",
        "--coordinator",
        &new_grpc,
        "--id",
        "6",
        "--url",
        &joiner_url,
    ])?;
    assert_eq!(members["voters"], serde_json::json!([5, 6]), "{members}");
    let files = spoor_tests::tenant_file_count(&coordinator.status().await?, "default")
        .context("tenant default's files")?;
    wait_default_files(&joiner, files).await?;

    // Refused: a backup (of this group, now) into a catalog that is not empty.
    let second = dir.path().join("second.backup");
    spoor_cli_json(&[
        "cluster",
        "backup",
        "--out",
        &second.display().to_string(),
        "--coordinator",
        &joiner_url,
    ])?;
    let err = refused(&[
        "cluster",
        "restore",
        &second.display().to_string(),
        "--coordinator",
        &new_grpc,
    ])?;
    assert!(
        err.contains("catalog is not empty") && err.contains("files"),
        "{err}"
    );
    assert_eq!(query.scalar("SELECT count(*) FROM events").await?, 500);

    drop(ingest);
    drop(joiner);
    assert!(
        coordinator.stop()?.success(),
        "the new coordinator stops cleanly"
    );
    Ok(())
}

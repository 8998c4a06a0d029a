//! Backup and restore of a catalog of realistic size (100,000 files) over
//! gRPC: taken from one group, restored into a new group on other
//! addresses, then carried to a coordinator that joins later (by snapshot:
//! the log holding the restore is purged) and through a restart.

mod support;

use std::time::{Duration, Instant};

use spoor_common::auth::{AuthChannel, Credential};
use spoor_common::catalog::conformance::kafka_file;
use spoor_common::catalog::{Catalog, CommitBatch, SourceCheckpoint};
use spoor_common::config::CoordinatorConfig;
use spoor_common::control::{MemberInfo, Role, TenantRecord, TokenRole, generate_token};
use spoor_common::tenant::TenantId;
use spoor_coordinator::backup;
use spoor_coordinator::control_state::ControlOp;
use support::*;

/// Files in the source catalog.
const FILES: i64 = 100_000;
/// Files per commit (an ingest node's flush of many partitions).
const PER_COMMIT: i64 = 1_000;

fn channel(url: &str) -> AuthChannel {
    let channel =
        spoor_common::tls::lazy_channel(url, Duration::from_secs(600), None).expect("channel");
    AuthChannel::new(channel, Credential::none())
}

fn acme() -> TenantId {
    TenantId::new("acme").expect("tenant")
}

/// Waits until `m` has applied `files` files.
async fn wait_file_count(m: &Member, files: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let status = m.node.status().await.expect("status");
        if status.file_count == files {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {} holds {} files, wanted {files}",
            m.id,
            status.file_count
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_catalog_moves_to_a_new_group_a_late_follower_and_a_restart() {
    // The old group: 100,000 files with their Kafka checkpoints, a tenant,
    // a token, a rule set, a worker with a shard.
    let old = cluster(1).await;
    let source = &old[0].node;
    let started = Instant::now();
    for c in 0..FILES / PER_COMMIT {
        let partition = (c % 8) as i32;
        let files = (0..PER_COMMIT)
            .map(|i| {
                let first = (c / 8 * PER_COMMIT + i) * 10;
                kafka_file("acme", "t", partition, first, first + 9)
            })
            .collect::<Vec<_>>();
        let next = files
            .last()
            .and_then(|f| f.source.as_ref())
            .map(|s| s.last_offset + 1)
            .expect("a kafka file");
        source
            .commit_batch(CommitBatch {
                files,
                checkpoints: vec![SourceCheckpoint {
                    source_id: "src".into(),
                    topic: "t".into(),
                    partition,
                    next_offset: next,
                }],
            })
            .await
            .expect("commit");
    }
    eprintln!("{FILES} files committed in {:?}", started.elapsed());
    source
        .control(ControlOp::PutTenant(TenantRecord::new(acme())))
        .await
        .expect("tenant");
    let token = generate_token(vec![acme()], TokenRole::Analyst, "hunter".into()).expect("token");
    source
        .control(ControlOp::CreateToken(token.record.clone()))
        .await
        .expect("token");
    source
        .control(ControlOp::PutRuleSet {
            tenant: acme(),
            name: "windows".into(),
            content: "rules".into(),
            enabled: true,
            expected_version: 0,
        })
        .await
        .expect("rule set");
    source
        .control(ControlOp::Register(MemberInfo {
            node_id: 11,
            role: Role::Worker,
            http_addr: "10.0.0.11:7080".into(),
            grpc_addr: String::new(),
            version: "test".into(),
        }))
        .await
        .expect("worker");
    source
        .control(ControlOp::DefineShards {
            tenant: acme(),
            rule_group: "windows".into(),
            buckets: 4,
        })
        .await
        .expect("shards");

    // The backup, over gRPC, in chunks.
    let started = Instant::now();
    let bytes = backup::download(channel(&old[0].url()))
        .await
        .expect("backup");
    let header = backup::verify(&bytes).expect("a good backup");
    eprintln!("backup of {} bytes in {:?}", bytes.len(), started.elapsed());
    assert!(
        bytes.len() > 4 << 20,
        "larger than one gRPC message: {}",
        bytes.len()
    );
    assert_eq!(header.summary.files, FILES as u64);
    assert_eq!(header.summary.checkpoints, 8);
    assert_eq!((header.summary.tenants, header.summary.tokens), (1, 1));
    let checkpoints = source.checkpoints("src", "t").await.expect("checkpoints");
    for m in &old {
        stop(m).await;
    }

    // The new group: other node ids, other addresses, empty; its log is
    // purged at every snapshot.
    let config = CoordinatorConfig {
        log_kept_after_snapshot: 0,
        ..support::config()
    };
    let new = cluster_with(1, config).await;
    let target = &new[0];
    let started = Instant::now();
    let out = backup::upload(channel(&target.url()), &bytes, false)
        .await
        .expect("restore");
    eprintln!("restored in {:?}", started.elapsed());
    assert!(!out.already_applied);
    assert_eq!(out.files, FILES as u64);
    assert_eq!((out.checkpoints, out.tenants, out.tokens), (8, 1, 1));
    assert_eq!((out.rule_sets, out.shards, out.members_dropped), (1, 4, 1));
    assert_eq!(
        out.backup_last_applied_index,
        header.last_applied.map_or(0, |l| l.index)
    );
    assert_eq!(
        target
            .node
            .checkpoints("src", "t")
            .await
            .expect("checkpoints"),
        checkpoints
    );
    assert!(target.node.authenticate(&token.token).is_ok());
    // A retry is recognized; another restore is refused.
    let again = backup::upload(channel(&target.url()), &bytes, false)
        .await
        .expect("retry");
    assert!(again.already_applied);

    // A snapshot after the restore; the log holding it is purged, so a
    // coordinator that joins now gets the state by snapshot.
    let restored_at = target
        .node
        .raft_metrics()
        .last_applied
        .map_or(0, |l| l.index);
    trigger_snapshot(target, restored_at).await;
    let late = joiner(7).await;
    let started = Instant::now();
    target
        .node
        .add_node(late.id, late.url())
        .await
        .expect("add node");
    wait_file_count(&late, FILES as u64).await;
    eprintln!("the late follower caught up in {:?}", started.elapsed());
    assert!(late.node.authenticate(&token.token).is_ok());

    // A backup through the follower is the leader's, forwarded.
    let through_follower = backup::download(channel(&late.url()))
        .await
        .expect("backup through a follower");
    let header = backup::verify(&through_follower).expect("a good backup");
    assert_eq!(header.source_node_id, target.id);
    assert_eq!(header.summary.files, FILES as u64);
    assert_eq!(header.summary.members, 0, "the old group's worker is gone");

    // A restart rebuilds the state from the snapshot and the log after it.
    let commit = CommitBatch {
        files: vec![kafka_file("acme", "t", 0, 10_000_000, 10_000_009)],
        checkpoints: vec![],
    };
    let next = target.node.commit_batch(commit).await.expect("commit");
    assert_eq!(next.sequences, vec![FILES as u64 + 1]);
    let late = restart_after_stop(late).await;
    wait_file_count(&late, FILES as u64 + 1).await;

    // Refused before anything is proposed: a cut file.
    let mut other = bytes.clone();
    let text = String::from_utf8(other.clone()).expect("utf-8");
    let header_end = text.find("\"body\":").expect("body");
    other.truncate(header_end);
    let err = backup::upload(channel(&target.url()), &other, false)
        .await
        .expect_err("a cut file");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    for m in [&new[0], &late] {
        stop(m).await;
    }
}

async fn trigger_snapshot(m: &Member, at_least: u64) {
    m.node.trigger_snapshot().await.expect("trigger snapshot");
    let deadline = Instant::now() + Duration::from_secs(300);
    while m
        .node
        .raft_metrics()
        .snapshot
        .is_none_or(|s| s.index < at_least)
    {
        assert!(Instant::now() < deadline, "no snapshot was built");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let purged = Instant::now() + Duration::from_secs(60);
    while m
        .node
        .raft_metrics()
        .purged
        .is_none_or(|p| p.index < at_least)
    {
        assert!(Instant::now() < purged, "the log was not purged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn restart_after_stop(m: Member) -> Member {
    stop(&m).await;
    restart(m).await
}

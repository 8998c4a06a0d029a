//! The control plane of a three-coordinator group, through the gRPC client
//! every role uses: shard leases fenced by epoch, the catalog Watch across a
//! lost coordinator, cluster status, and leader transfer.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use spoor_common::TenantId;
use spoor_common::catalog::conformance::kafka_file;
use spoor_common::catalog::{Catalog, CatalogError, CommitBatch, FileSwap};
use spoor_common::catalog_client::GrpcCatalog;
use spoor_common::control::{
    ControlClient, Heartbeat, MemberInfo, Role, ShardCheckpoint, ShardCommit, ShardLease,
};
use spoor_common::schema::Table;
use support::*;

fn urls(members: &[Member]) -> String {
    members
        .iter()
        .map(Member::url)
        .collect::<Vec<_>>()
        .join(",")
}

fn worker(id: u64) -> Heartbeat {
    Heartbeat {
        member: MemberInfo {
            node_id: id,
            role: Role::Worker,
            http_addr: format!("127.0.0.1:{}", 9000 + id),
            grpc_addr: String::new(),
            version: "test".into(),
        },
        shard_loads: Vec::new(),
    }
}

/// Heartbeats as `hb` until the worker holds a lease; returns it.
async fn wait_for_lease(control: &ControlClient, hb: &Heartbeat) -> ShardLease {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = control.heartbeat(hb).await.expect("heartbeat");
        if let Some(lease) = reply.leases.into_iter().next() {
            return lease;
        }
        assert!(
            Instant::now() < deadline,
            "worker {} got no lease",
            hb.member.node_id
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn checkpoint(seq: u64) -> Option<ShardCheckpoint> {
    Some(ShardCheckpoint {
        catalog_sequence: seq,
        state_key: format!("state/{seq}"),
        watermark_micros: 0,
        delivered_sequence: Some(seq.saturating_sub(1)),
    })
}

fn alert_batch(first: i64) -> CommitBatch {
    let mut f = kafka_file("acme", "alerts-src", 0, first, first);
    f.table = Table::Alerts;
    f.object_key = spoor_common::layout::object_key(
        &f.tenant,
        Table::Alerts,
        1_700_000_000_000_000,
        &f.file_id,
    );
    CommitBatch {
        files: vec![f],
        checkpoints: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkpoint_from_a_worker_whose_lease_moved_is_rejected() {
    let members = cluster(3).await;
    let control =
        ControlClient::connect_lazy(&urls(&members), Duration::from_secs(5)).expect("client");
    let acme = TenantId::new("acme").expect("tenant");
    control
        .define_shards(&acme, "windows", 1)
        .await
        .expect("define shards");

    // Worker 11 alone: it gets the shard and commits under its lease.
    let a = worker(11);
    let lease = wait_for_lease(&control, &a).await;
    let commit = |worker: u64, epoch: u64, seq: u64| ShardCommit {
        shard: lease.shard.clone(),
        worker,
        epoch,
        checkpoint: checkpoint(seq),
    };
    control
        .commit_shard(&commit(11, lease.epoch, 5), Some(&alert_batch(1)))
        .await
        .expect("the holder commits");
    // A retry of the same commit is harmless.
    let again = control
        .commit_shard(&commit(11, lease.epoch, 5), Some(&alert_batch(1)))
        .await
        .expect("retry");
    assert!(again.already_committed);

    // Worker 12 joins; worker 11 stops heartbeating (a pause, a partition),
    // so after the member timeout its lease moves to worker 12.
    let b = worker(12);
    let moved = wait_for_lease(&control, &b).await;
    assert_eq!(moved.shard, lease.shard);
    assert!(moved.epoch > lease.epoch, "a move bumps the epoch");
    assert_eq!(
        moved.checkpoint.as_ref().map(|c| c.catalog_sequence),
        Some(5),
        "the new holder resumes from the old holder's checkpoint"
    );
    assert_eq!(
        moved.checkpoint,
        checkpoint(5),
        "with its alert sinks' delivered sequence, over gRPC"
    );

    // The old holder wakes up and tries to commit: refused, and its alert
    // file does not reach the catalog.
    let err = control
        .commit_shard(&commit(11, lease.epoch, 9), Some(&alert_batch(2)))
        .await
        .expect_err("stale epoch");
    assert!(matches!(err, CatalogError::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("stale lease"), "{err}");
    let alerts = members[0]
        .node
        .list_files(spoor_common::catalog::FileQuery::all(
            acme.clone(),
            Table::Alerts,
        ))
        .await
        .expect("list");
    assert_eq!(alerts.len(), 1, "only the holder's alert file is committed");

    // The new holder commits at its epoch.
    control
        .commit_shard(&commit(12, moved.epoch, 9), None)
        .await
        .expect("new holder");
    // Cluster status shows both workers, one dead, and the shard on 12.
    let status = control.cluster_status().await.expect("status");
    let by_id: BTreeMap<u64, _> = status
        .members
        .iter()
        .map(|m| (m.member.info.node_id, m))
        .collect();
    assert!(!by_id[&11].member.alive);
    assert!(by_id[&12].member.alive);
    assert_eq!(by_id[&12].shards, 1);
    assert_eq!(status.coordinators.len(), 3);
    assert!(
        status.coordinators.iter().all(|c| c.lag.is_some()),
        "the leader reports every coordinator's lag: {:?}",
        status.coordinators
    );
    for m in &members {
        stop(m).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_follows_commits_across_a_lost_coordinator() {
    let members = cluster(3).await;
    let acme = TenantId::new("acme").expect("tenant");
    // The watcher's first coordinator is the one that will be stopped.
    let victim = leader_of(&members.iter().collect::<Vec<_>>()).await;
    let mut order: Vec<&Member> = members.iter().collect();
    order.sort_by_key(|m| m.id != victim);
    let watch_urls = order.iter().map(|m| m.url()).collect::<Vec<_>>().join(",");
    let watcher = GrpcCatalog::connect_lazy(&watch_urls, Duration::from_secs(5)).expect("client");
    let writer =
        GrpcCatalog::connect_lazy(&urls(&members), Duration::from_secs(5)).expect("client");

    let mut stream = Box::pin(watcher.watch(BTreeMap::from([(acme.clone(), 0)])));
    for p in 0..5 {
        writer.commit_batch(batch(p, 0)).await.expect("commit");
    }
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let change = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("a change within 10 s")
            .expect("stream open")
            .expect("change");
        seen.push((change.first_sequence, change.last_sequence));
    }

    // Lose the coordinator the watch is connected to, and keep committing.
    stop(&members[(victim - 1) as usize]).await;
    for p in 5..10 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match writer.commit_batch(batch(p, 0)).await {
                Ok(_) => break,
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("commit: {e}"),
            }
        }
    }
    // A compaction swap arrives as one change holding both sides.
    let files = {
        let survivor = members.iter().find(|m| m.id != victim).expect("survivor");
        wait_files(&survivor.node, 10).await;
        acme_files(&survivor.node).await
    };
    let mut output = spoor_common::catalog::conformance::compacted_file("acme", "w", 20);
    output.object_key = spoor_common::layout::object_key(
        &acme,
        Table::Events,
        1_700_000_000_000_000,
        "compacted-w",
    );
    writer
        .replace_files(FileSwap {
            tenant: acme.clone(),
            table: Table::Events,
            inputs: vec![files[0].file.file_id.clone(), files[1].file.file_id.clone()],
            outputs: vec![output],
        })
        .await
        .expect("swap");
    let mut swap = None;
    while swap.is_none() {
        let change = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("changes resume after the reconnect")
            .expect("stream open")
            .expect("change");
        seen.push((change.first_sequence, change.last_sequence));
        if !change.removed.is_empty() {
            swap = Some(change);
        }
    }
    let swap = swap.expect("swap change");
    assert_eq!(swap.added.len(), 1);
    assert_eq!(swap.removed.len(), 2);
    // No gap, no duplicate: consecutive changes tile the sequences.
    let mut next = 1;
    for (first, last) in &seen {
        assert_eq!(*first, next, "changes {seen:?}");
        next = last + 1;
    }
    assert_eq!(next, 13, "10 files, then the swap's output and removal");
    for m in &members {
        stop(m).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_moves_to_the_chosen_node() {
    let members = cluster(3).await;
    let all: Vec<&Member> = members.iter().collect();
    let leader = leader_of(&all).await;
    let target = members
        .iter()
        .map(|m| m.id)
        .find(|id| *id != leader)
        .expect("a follower");
    // Ask a follower: the request is forwarded to the leader. Right after
    // the election the follower may not have heard of the leader yet, which
    // it answers as retryable; a client retries, and so does this test.
    let asked = members.iter().find(|m| m.id != leader).expect("follower");
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        match asked.node.transfer_leader(target).await {
            Ok(m) => break m,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("transfer: {e:?}"),
        }
    };
    assert_eq!(m.leader_id, Some(target));
    assert_eq!(leader_of(&all).await, target);
    // The group keeps committing under its new leader.
    members[0]
        .node
        .commit_batch(batch(0, 0))
        .await
        .expect("commit after transfer");
    let err = members[0]
        .node
        .transfer_leader(99)
        .await
        .expect_err("not a voter");
    assert!(err.to_string().contains("not a voter"), "{err}");
    for m in &members {
        stop(m).await;
    }
}

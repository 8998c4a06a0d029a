//! A three-coordinator group whose messages pass through an injected
//! network layer: a partitioned minority must not commit while the majority
//! goes on, and lost or delayed messages must not lose or duplicate commits.

mod support;

use std::time::{Duration, Instant};

use spoor_common::catalog::{Catalog, CatalogError, CommitBatch};
use spoor_coordinator::NetworkFaults;
use support::*;

/// Commits `b` through `node`, retrying (the same batch: commits are
/// idempotent) while the group is unavailable, for up to 30 s.
async fn commit_retrying(node: &spoor_coordinator::CoordinatorNode, b: CommitBatch) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match node.commit_batch(b.clone()).await {
            Ok(_) => return,
            Err(e) if e.is_retryable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("commit failed: {e}"),
        }
    }
}

/// Every node ends with the same files, each acknowledged one exactly once.
async fn assert_converged(members: &[&Member], acknowledged: &[CommitBatch]) {
    let want: Vec<String> = {
        let mut ids: Vec<String> = acknowledged
            .iter()
            .map(|b| b.files[0].file_id.clone())
            .collect();
        ids.sort();
        ids
    };
    for m in members {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut ids: Vec<String> = acme_files(&m.node)
                .await
                .into_iter()
                .map(|f| f.file.file_id)
                .collect();
            ids.sort();
            if ids == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} holds {} files, wanted the {} acknowledged ones exactly once",
                m.id,
                ids.len(),
                want.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let seqs: Vec<u64> = acme_files(&m.node)
            .await
            .iter()
            .map(|f| f.sequence)
            .collect();
        let mut dedup = seqs.clone();
        dedup.dedup();
        assert_eq!(seqs, dedup, "node {}: a sequence repeats", m.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_leader_cannot_commit_and_the_majority_goes_on() {
    let faults = NetworkFaults::default();
    let members = cluster_faulty(3, config(), faults.clone()).await;
    let all: Vec<&Member> = members.iter().collect();
    let old = leader_of(&all).await;
    let mut acknowledged = Vec::new();
    for p in 0..3 {
        let b = batch(p, 0);
        commit_retrying(&members[0].node, b.clone()).await;
        acknowledged.push(b);
    }

    // Cut the leader off from both followers, both ways.
    let others: Vec<u64> = members
        .iter()
        .map(|m| m.id)
        .filter(|id| *id != old)
        .collect();
    faults.partition(&[old], &others);
    let old_leader = &members[(old - 1) as usize];
    let started = Instant::now();
    let err = old_leader
        .node
        .commit_batch(batch(10, 0))
        .await
        .expect_err("a leader without its quorum must not commit");
    assert!(
        matches!(err, CatalogError::Unavailable { .. }),
        "a clear, retryable error: {err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered within the write timeout, took {:?}",
        started.elapsed()
    );

    // The majority elects a leader of its own and keeps committing.
    let majority: Vec<&Member> = members.iter().filter(|m| m.id != old).collect();
    let new = leader_of(&majority).await;
    assert_ne!(new, old);
    for p in 3..6 {
        let b = batch(p, 0);
        commit_retrying(&majority[0].node, b.clone()).await;
        acknowledged.push(b);
    }
    // The isolated node still has none of them.
    assert_eq!(acme_files(&old_leader.node).await.len(), 3);

    // Healed, the old leader learns the new term, drops its uncommitted entry
    // and catches up: every node holds exactly the acknowledged commits.
    faults.heal();
    assert_converged(&members.iter().collect::<Vec<_>>(), &acknowledged).await;
    for m in &members {
        stop(m).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_survive_lost_and_delayed_messages() {
    let faults = NetworkFaults::default();
    let members = cluster_faulty(3, config(), faults.clone()).await;
    // One message in five lost (half before delivery, half the reply), each
    // delayed up to 40 ms: retransmissions, reordering and duplicates.
    faults.set_loss_and_delay(0.2, Duration::from_millis(40));
    let mut acknowledged = Vec::new();
    for i in 0..30 {
        let b = batch(i, 0);
        commit_retrying(&members[i as usize % 3].node, b.clone()).await;
        acknowledged.push(b);
    }
    faults.set_loss_and_delay(0.0, Duration::ZERO);
    assert_converged(&members.iter().collect::<Vec<_>>(), &acknowledged).await;
    for m in &members {
        stop(m).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_during_a_stream_of_commits() {
    let members = cluster(3).await;
    let all: Vec<&Member> = members.iter().collect();
    let leader = leader_of(&all).await;
    let urls = members
        .iter()
        .map(Member::url)
        .collect::<Vec<_>>()
        .join(",");
    let client =
        spoor_common::catalog_client::GrpcCatalog::connect_lazy(&urls, Duration::from_secs(3))
            .expect("client");

    // A writer commits without pause, retrying each batch until acknowledged.
    let stop_writing = tokio_util::sync::CancellationToken::new();
    let writer = {
        let stop_writing = stop_writing.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut i = 0;
            while !stop_writing.is_cancelled() {
                let b = batch(i, 0);
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    match client.commit_batch(b.clone()).await {
                        Ok(_) => break,
                        Err(e) if e.is_retryable() && Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => panic!("commit {i}: {e}"),
                    }
                }
                acknowledged.push(b);
                i += 1;
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dead = members.iter().find(|m| m.id == leader).expect("leader");
    stop(dead).await;
    let killed = Instant::now();
    let live: Vec<&Member> = members.iter().filter(|m| m.id != leader).collect();
    let new = leader_of(&live).await;
    let elected_after = killed.elapsed();
    assert_ne!(new, leader);
    eprintln!("new leader {new} {elected_after:?} after the leader was killed mid-stream");
    assert!(
        elected_after < Duration::from_secs(10),
        "a new leader within a few seconds, took {elected_after:?}"
    );
    // Keep writing under the new leader for a while, then check.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop_writing.cancel();
    let acknowledged = writer.await.expect("writer");
    assert!(
        acknowledged.len() > 3,
        "the stream kept going: {}",
        acknowledged.len()
    );
    assert_converged(&live, &acknowledged).await;
    for m in &live {
        stop(m).await;
    }
}

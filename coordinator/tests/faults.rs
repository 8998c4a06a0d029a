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
async fn assert_converged(members: &[Member], acknowledged: &[CommitBatch]) {
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
    assert_converged(&members, &acknowledged).await;
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
    assert_converged(&members, &acknowledged).await;
    for m in &members {
        stop(m).await;
    }
}

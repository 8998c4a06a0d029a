//! A three-coordinator Raft group on loopback gRPC, in one process: writes
//! through any node, leader loss, and a minority that must not commit.

mod support;

use std::time::{Duration, Instant};

use spoor_common::catalog::{Catalog, CatalogError, CommitBatch};
use spoor_common::config::CoordinatorConfig;
use support::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_through_any_node_survive_the_loss_of_the_leader() {
    let members = cluster(3).await;
    let all: Vec<&Member> = members.iter().collect();
    let leader = leader_of(&all).await;

    // Every node accepts writes: followers forward them to the leader.
    let mut acknowledged = 0;
    for (i, m) in members.iter().enumerate() {
        m.node
            .commit_batch(batch(i as i32, 0))
            .await
            .expect("commit through any node");
        acknowledged += 1;
    }
    for m in &members {
        assert_eq!(
            wait_files(&m.node, acknowledged).await,
            vec![1, 2, 3],
            "node {}",
            m.id
        );
    }

    // Kill the leader: its server and its Raft stop.
    let dead = members
        .iter()
        .find(|m| m.id == leader)
        .expect("leader member");
    dead.stop.cancel();
    dead.node.shutdown().await;
    let live: Vec<&Member> = members.iter().filter(|m| m.id != leader).collect();
    let started = Instant::now();
    let new_leader = leader_of(&live).await;
    assert_ne!(new_leader, leader);
    eprintln!("new leader {new_leader} after {:?}", started.elapsed());

    // Writes continue through either survivor (retrying while the election settles).
    for (i, m) in live.iter().enumerate() {
        let b = batch(10 + i as i32, 0);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match m.node.commit_batch(b.clone()).await {
                Ok(_) => break,
                Err(e) if e.is_retryable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("commit after failover: {e}"),
            }
        }
        acknowledged += 1;
    }
    // Every acknowledged commit is on every survivor, exactly once.
    for m in &live {
        assert_eq!(
            wait_files(&m.node, acknowledged).await,
            vec![1, 2, 3, 4, 5],
            "node {}",
            m.id
        );
    }
    for m in &live {
        stop(m).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minority_cannot_commit_and_says_so() {
    let members = cluster(3).await;
    let all: Vec<&Member> = members.iter().collect();
    let leader = leader_of(&all).await;
    members[0]
        .node
        .commit_batch(batch(0, 0))
        .await
        .expect("commit with quorum");
    // Stop both followers: the leader is left without a quorum.
    for m in members.iter().filter(|m| m.id != leader) {
        stop(m).await;
    }
    let survivor = members.iter().find(|m| m.id == leader).expect("leader");
    let started = Instant::now();
    let err = survivor
        .node
        .commit_batch(batch(1, 0))
        .await
        .expect_err("no quorum");
    assert!(matches!(err, CatalogError::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
    // Which of the two it says depends on timing on a loaded machine: the
    // write times out waiting for a quorum, or the leader has already lost
    // its leadership (its lease ran out without followers).
    let message = err.to_string();
    assert!(
        message.contains("quorum") || message.contains("no leader is known"),
        "{err}"
    );
    // Bounded by coordinator.write_timeout_ms (3 s here), not a hang.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // Nothing was applied without a quorum.
    assert_eq!(acme_files(&survivor.node).await.len(), 1);
    stop(survivor).await;
}

/// A follower that was down catches up when it comes back: by log when the
/// leader still has the entries it missed, by snapshot when they were purged.
async fn restarted_follower_catches_up(config: CoordinatorConfig, expect_snapshot: bool) {
    let mut members = cluster_with(3, config).await;
    let all: Vec<&Member> = members.iter().collect();
    let leader = leader_of(&all).await;
    members[0]
        .node
        .commit_batch(batch(0, 0))
        .await
        .expect("commit");
    let pos = members
        .iter()
        .position(|m| m.id != leader)
        .expect("a follower");
    let follower = members.remove(pos);
    let follower_last = follower.node.raft_metrics().last_log_index.unwrap_or(0);
    stop(&follower).await;
    let follower_dir = follower.dir.path().to_path_buf();
    let snapshot_before = std::fs::metadata(follower_dir.join("snapshot.bin"))
        .ok()
        .map(|m| m.len());

    // 20 commits while it is away.
    for i in 1..=20 {
        members[0]
            .node
            .commit_batch(batch(0, i * 10))
            .await
            .expect("commit while a follower is down");
    }
    let leader_node = &members
        .iter()
        .find(|m| m.id == leader)
        .expect("leader")
        .node;
    // With the entries it missed purged, only a snapshot can bring it back.
    // The leader purges in the background after its snapshot: wait for it.
    let deadline = Instant::now() + Duration::from_secs(if expect_snapshot { 10 } else { 1 });
    let mut purged = leader_node.raft_metrics().purged.map(|l| l.index);
    while purged.is_none_or(|p| p <= follower_last) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        purged = leader_node.raft_metrics().purged.map(|l| l.index);
    }
    assert_eq!(
        purged.is_some_and(|p| p > follower_last),
        expect_snapshot,
        "leader purged up to {purged:?}, follower had {follower_last}"
    );
    let follower = restart(follower).await;
    let sequences = wait_files(&follower.node, 21).await;
    assert_eq!(sequences, (1..=21).collect::<Vec<u64>>());
    let snapshot_after = std::fs::metadata(follower_dir.join("snapshot.bin"))
        .ok()
        .map(|m| m.len());
    if expect_snapshot {
        assert!(
            snapshot_after.is_some() && snapshot_after != snapshot_before,
            "the follower installed a snapshot"
        );
    } else {
        assert_eq!(
            snapshot_after, snapshot_before,
            "the follower caught up from the log alone"
        );
    }
    // It takes part again: a commit through it lands everywhere.
    follower
        .node
        .commit_batch(batch(1, 0))
        .await
        .expect("commit through the restarted follower");
    // Wait on every node before stopping any: stopping one early can leave
    // the others without the commit index.
    for m in members.iter().chain(std::iter::once(&follower)) {
        wait_files(&m.node, 22).await;
    }
    for m in members.iter().chain(std::iter::once(&follower)) {
        stop(m).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_follower_catches_up_by_log() {
    restarted_follower_catches_up(config(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_follower_catches_up_by_snapshot() {
    let config = CoordinatorConfig {
        snapshot_after_entries: 5,
        log_kept_after_snapshot: 0,
        ..config()
    };
    restarted_follower_catches_up(config, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_goes_from_three_to_five_and_back_under_load() {
    let members = cluster(3).await;
    let writer = members[0].node.clone();
    let done = CancellationToken::new();
    // A steady stream of commits through node 1 while membership changes.
    let load = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut i = 0;
            while !done.is_cancelled() {
                let b = batch(100, i * 10);
                if writer.commit_batch(b.clone()).await.is_ok() {
                    acknowledged.push(b.files[0].file_id.clone());
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            acknowledged
        })
    };
    let new = [joiner(4).await, joiner(5).await];
    for m in &new {
        // Through a follower or the leader alike: any node forwards to the leader.
        let url = format!("http://{}", m.addr);
        let after = members[2].node.add_node(m.id, url).await.expect("add node");
        assert!(after.voters.contains(&m.id), "{after:?}");
    }
    let after = members[0].node.membership();
    assert_eq!(after.voters, vec![1, 2, 3, 4, 5]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for m in &new {
        let after = members[1]
            .node
            .remove_node(m.id)
            .await
            .expect("remove node");
        assert!(
            !after.voters.contains(&m.id) && !after.learners.contains(&m.id),
            "{after:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    done.cancel();
    let acknowledged = load.await.expect("load task");
    assert!(
        acknowledged.len() > 10,
        "the load kept committing: {}",
        acknowledged.len()
    );
    assert_eq!(members[0].node.membership().voters, vec![1, 2, 3]);

    // Every acknowledged commit is on every remaining member exactly once, and
    // the removed members had caught up while they were in.
    let last = acknowledged.len();
    for m in &members {
        let deadline = Instant::now() + Duration::from_secs(20);
        let files = loop {
            let files = acme_files(&m.node).await;
            let present = acknowledged
                .iter()
                .filter(|id| files.iter().any(|f| &f.file.file_id == *id))
                .count();
            if present == last || Instant::now() > deadline {
                break files;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        for id in &acknowledged {
            assert_eq!(
                files.iter().filter(|f| &f.file.file_id == id).count(),
                1,
                "node {}: file {id}",
                m.id
            );
        }
        let mut sequences: Vec<u64> = files.iter().map(|f| f.sequence).collect();
        sequences.dedup();
        assert_eq!(
            sequences.len(),
            files.len(),
            "node {}: sequences are unique",
            m.id
        );
    }
    for m in &new {
        let files = acme_files(&m.node).await;
        assert!(
            !files.is_empty(),
            "node {} received the catalog while it was a member",
            m.id
        );
    }
    for m in members.iter().chain(new.iter()) {
        stop(m).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkpoints_read_through_any_node_are_current() {
    let members = cluster(3).await;
    for round in 1..=20i64 {
        let writer = &members[(round as usize) % 3];
        let reader = &members[(round as usize + 1) % 3];
        let checkpoint = spoor_common::catalog::SourceCheckpoint {
            source_id: "src".into(),
            topic: "t".into(),
            partition: 0,
            next_offset: round * 10,
        };
        writer
            .node
            .commit_batch(CommitBatch {
                files: vec![],
                checkpoints: vec![checkpoint.clone()],
            })
            .await
            .expect("commit");
        // Read right after the acknowledgement, through another node.
        let read = reader.node.checkpoints("src", "t").await.expect("read");
        assert_eq!(
            read,
            vec![checkpoint],
            "round {round}: node {} served a stale checkpoint",
            reader.id
        );
    }
    for m in &members {
        stop(m).await;
    }
}

//! A three-coordinator Raft group on loopback gRPC, in one process: writes
//! through any node, leader loss, and a minority that must not commit.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use spoor_common::catalog::conformance::kafka_file;
use spoor_common::catalog::{Catalog, CatalogError, CommitBatch, FileQuery};
use spoor_common::config::CoordinatorConfig;
use spoor_common::schema::Table;
use spoor_common::tenant::TenantId;
use spoor_coordinator::{CatalogGrpc, CoordinatorNode};
use tokio_util::sync::CancellationToken;

struct Member {
    id: u64,
    node: CoordinatorNode,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        raft_dir: String::new(),
        heartbeat_interval_ms: 100,
        election_timeout_min_ms: 500,
        election_timeout_max_ms: 1000,
        snapshot_after_entries: 1000,
        write_timeout_ms: 3_000,
        initial_members: Vec::new(),
    }
}

async fn cluster(n: u64) -> Vec<Member> {
    let mut listeners = Vec::new();
    let mut members = BTreeMap::new();
    for id in 1..=n {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        members.insert(id, format!("http://{}", l.local_addr().expect("addr")));
        listeners.push((id, l));
    }
    let mut out = Vec::new();
    for (id, listener) in listeners {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = CoordinatorNode::open(id, members.clone(), dir.path(), &config())
            .await
            .expect("open");
        let stop = CancellationToken::new();
        let (catalog, raft, token) = (
            CatalogGrpc::new(std::sync::Arc::new(node.clone())).into_server(),
            node.raft_service().into_server(),
            stop.clone(),
        );
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(catalog)
                .add_service(raft)
                .serve_with_incoming_shutdown(
                    spoor_coordinator::incoming(listener),
                    token.cancelled_owned(),
                )
                .await
        });
        out.push(Member {
            id,
            node,
            stop,
            _dir: dir,
        });
    }
    for m in &out {
        m.node
            .wait_for_leader(Duration::from_secs(20))
            .await
            .expect("leader");
    }
    out
}

async fn leader_of(members: &[&Member]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for m in members {
            if let Ok(s) = m.node.status().await
                && s.leader_id == Some(m.id)
            {
                return m.id;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader among the live members"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn batch(partition: i32, first: i64) -> CommitBatch {
    CommitBatch {
        files: vec![kafka_file("acme", "t", partition, first, first + 9)],
        checkpoints: vec![],
    }
}

/// Waits until `node` has applied `want` files of tenant acme.
async fn wait_files(node: &CoordinatorNode, want: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let files = node
            .list_files(FileQuery::all(
                TenantId::new("acme").expect("t"),
                Table::Events,
            ))
            .await
            .expect("list");
        if files.len() == want {
            return files.iter().map(|f| f.sequence).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} files, wanted {want}",
            files.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

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
        m.stop.cancel();
        m.node.shutdown().await;
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
        m.stop.cancel();
        m.node.shutdown().await;
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
    assert!(err.to_string().contains("quorum"), "{err}");
    // Bounded by coordinator.write_timeout_ms (3 s here), not a hang.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // Nothing was applied without a quorum.
    let files = survivor
        .node
        .list_files(FileQuery::all(
            TenantId::new("acme").expect("t"),
            Table::Events,
        ))
        .await
        .expect("list");
    assert_eq!(files.len(), 1);
    survivor.stop.cancel();
    survivor.node.shutdown().await;
}

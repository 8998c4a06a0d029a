//! Coordinator groups on loopback gRPC in one process, shared by the
//! cluster and fault tests: start, stop, restart, and read back nodes.
#![allow(dead_code)] // each test file uses its own part of the helpers

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use spoor_common::catalog::conformance::kafka_file;
use spoor_common::catalog::{Catalog, CommitBatch, FileQuery};
use spoor_common::config::CoordinatorConfig;
use spoor_common::schema::Table;
use spoor_common::tenant::TenantId;
use spoor_coordinator::{CoordinatorNode, NetworkFaults};
use tokio_util::sync::CancellationToken;

pub(crate) struct Member {
    pub(crate) id: u64,
    pub(crate) node: CoordinatorNode,
    pub(crate) stop: CancellationToken,
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) members: BTreeMap<u64, String>,
    pub(crate) config: CoordinatorConfig,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) faults: NetworkFaults,
}

impl Member {
    /// The gRPC URL of the member.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

pub(crate) fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        raft_dir: String::new(),
        heartbeat_interval_ms: 100,
        election_timeout_min_ms: 500,
        election_timeout_max_ms: 1000,
        snapshot_after_entries: 1000,
        log_kept_after_snapshot: 1000,
        write_timeout_ms: 3_000,
        member_timeout_ms: 2_000,
        scheduler_interval_ms: 100,
        join: false,
        initial_members: Vec::new(),
        peer_credential: Default::default(),
        peer_tls: Default::default(),
    }
}

pub(crate) async fn cluster(n: u64) -> Vec<Member> {
    cluster_with(n, config()).await
}

pub(crate) async fn cluster_with(n: u64, config: CoordinatorConfig) -> Vec<Member> {
    cluster_faulty(n, config, NetworkFaults::default()).await
}

/// A group whose nodes all pass their messages through `faults`.
pub(crate) async fn cluster_faulty(
    n: u64,
    config: CoordinatorConfig,
    faults: NetworkFaults,
) -> Vec<Member> {
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
        out.push(
            serve(
                id,
                listener,
                members.clone(),
                config.clone(),
                dir,
                faults.clone(),
            )
            .await,
        );
    }
    for m in &out {
        m.node
            .wait_for_leader(Duration::from_secs(20))
            .await
            .expect("leader");
    }
    out
}

/// Opens a node on `dir` and serves it on `listener`.
pub(crate) async fn serve(
    id: u64,
    listener: tokio::net::TcpListener,
    members: BTreeMap<u64, String>,
    config: CoordinatorConfig,
    dir: tempfile::TempDir,
    faults: NetworkFaults,
) -> Member {
    let node =
        CoordinatorNode::open_with_faults(id, members.clone(), dir.path(), &config, faults.clone())
            .await
            .expect("open");
    serve_node(id, node, listener, members, config, dir, faults)
}

/// Serves an opened node on `listener`.
fn serve_node(
    id: u64,
    node: CoordinatorNode,
    listener: tokio::net::TcpListener,
    members: BTreeMap<u64, String>,
    config: CoordinatorConfig,
    dir: tempfile::TempDir,
    faults: NetworkFaults,
) -> Member {
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let (routes, token) = (
        spoor_coordinator::services(&node, None, Default::default()),
        stop.clone(),
    );
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                spoor_coordinator::incoming(listener, token.clone()).expect("listen"),
                token.cancelled_owned(),
            )
            .await
    });
    Member {
        id,
        node,
        stop,
        addr,
        members,
        config,
        dir,
        faults,
    }
}

/// Stops a member: its server and its Raft (its folder stays, for a restart).
pub(crate) async fn stop(m: &Member) {
    m.stop.cancel();
    m.node.shutdown().await;
}

/// Restarts a stopped member from its folder on its address.
pub(crate) async fn restart(m: Member) -> Member {
    let deadline = Instant::now() + Duration::from_secs(10);
    let listener = loop {
        match tokio::net::TcpListener::bind(m.addr).await {
            Ok(l) => break l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("rebinding {}: {e}", m.addr),
        }
    };
    let Member {
        id,
        node,
        members,
        config,
        dir,
        faults,
        ..
    } = m;
    drop(node);
    let deadline = Instant::now() + Duration::from_secs(10);
    // The stopped node's last tasks (its server finishing a connection,
    // openraft's workers winding down) may hold the Raft log's database open
    // for a moment after `shutdown` returns; on a loaded machine the reopen
    // met `DatabaseAlreadyOpen`. Only that is waited out.
    let node = loop {
        match CoordinatorNode::open_with_faults(
            id,
            members.clone(),
            dir.path(),
            &config,
            faults.clone(),
        )
        .await
        {
            Ok(node) => break node,
            Err(e)
                if format!("{e:?}").contains("DatabaseAlreadyOpen")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("reopening node {id}: {e:?}"),
        }
    };
    serve_node(id, node, listener, members, config, dir, faults)
}

pub(crate) async fn leader_of(members: &[&Member]) -> u64 {
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

pub(crate) fn batch(partition: i32, first: i64) -> CommitBatch {
    CommitBatch {
        files: vec![kafka_file("acme", "t", partition, first, first + 9)],
        checkpoints: vec![],
    }
}

/// The acme tenant's events files as `node` holds them.
pub(crate) async fn acme_files(node: &CoordinatorNode) -> Vec<spoor_common::catalog::CatalogFile> {
    node.list_files(FileQuery::all(
        TenantId::new("acme").expect("t"),
        Table::Events,
    ))
    .await
    .expect("list")
}

/// Waits until `node` has applied `want` files of tenant acme.
pub(crate) async fn wait_files(node: &CoordinatorNode, want: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let files = acme_files(node).await;
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

/// Starts an uninitialized coordinator (`coordinator.join`) to be added later.
pub(crate) async fn joiner(id: u64) -> Member {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let config = CoordinatorConfig {
        join: true,
        ..config()
    };
    serve(
        id,
        listener,
        BTreeMap::new(),
        config,
        tempfile::tempdir().expect("tempdir"),
        NetworkFaults::default(),
    )
    .await
}

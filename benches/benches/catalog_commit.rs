//! Catalog commit throughput and latency on a 3-coordinator Raft group on
//! loopback gRPC, side by side with a 1-coordinator group run by the same code.
//!
//! Each group runs in this process as the cluster tests build it
//! (`coordinator/tests/cluster.rs`): every node serves the catalog, Raft and
//! cluster services on its own loopback port, keeps its Raft log in redb
//! (fsynced per append) in a temporary folder, and the coordinators talk Raft
//! to each other over gRPC. Every commit is a batch of `FILES_PER_COMMIT`
//! files plus the checkpoint of their partition, the shape an ingest flush
//! commits. Paths measured:
//!
//! - `leader API`: clients call the leader's `Catalog` implementation in
//!   process (the Raft write path without the client's gRPC hop);
//! - `gRPC → leader`: each client has its own `GrpcCatalog` to the leader;
//! - `gRPC → follower`: each client has its own `GrpcCatalog` to a follower,
//!   which forwards the commit to the leader (3 nodes only; its 1-node
//!   reference is `gRPC → leader`).
//!
//! Run: `cargo bench -p spoor-benches --bench catalog_commit`. Each scenario
//! runs `ROUNDS` times, alternating the two groups, and the round with the
//! higher throughput counts (the machine is shared). The report gives
//! absolute figures for both groups and the 3-node figure as a ratio of the
//! 1-node one, which moves less with the machine's load.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use spoor_common::catalog::conformance::kafka_file;
use spoor_common::catalog::{Catalog, CommitBatch, SourceCheckpoint};
use spoor_common::catalog_client::GrpcCatalog;
use spoor_common::config::CoordinatorConfig;
use spoor_coordinator::CoordinatorNode;

mod support;
use support::report_line;

/// Alternating rounds per scenario; the better one is reported.
const ROUNDS: usize = 3;
/// Commits before the measured window: connections, leader client, caches.
const WARMUP: Duration = Duration::from_millis(300);
/// The measured window of one scenario.
const WINDOW: Duration = Duration::from_secs(2);
/// Files per commit: an ingest flush commits several files at once; 10 is a
/// modest batch. They share one partition here so each client's offsets and
/// checkpoint only move forward; the entry's size is what matters to Raft.
const FILES_PER_COMMIT: i64 = 10;
/// Offsets per file (the range only needs to be non-empty and distinct).
const OFFSETS_PER_FILE: i64 = 10;
/// Concurrent clients of each scenario.
const CLIENTS: [usize; 3] = [1, 16, 64];
/// A client's per-call deadline; a commit that exceeds it fails the run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
const TENANT: &str = "acme";
const TOPIC: &str = "bench";

/// The production-like timings of the cluster tests, with snapshots pushed out
/// of the run: a snapshot serializes the whole catalog, a cost that grows with
/// the catalog rather than with the commit rate, and the run checks that none
/// was taken so the figures are the commit path alone.
fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        raft_dir: String::new(),
        heartbeat_interval_ms: 100,
        election_timeout_min_ms: 500,
        election_timeout_max_ms: 1000,
        snapshot_after_entries: 10_000_000,
        log_kept_after_snapshot: 1000,
        write_timeout_ms: 10_000,
        member_timeout_ms: 10_000,
        scheduler_interval_ms: 1000,
        join: false,
        initial_members: Vec::new(),
        peer_credential: Default::default(),
        peer_tls: Default::default(),
    }
}

struct Member {
    node: CoordinatorNode,
    url: String,
    /// Dropping it stops the node's gRPC server.
    _stop: tokio::sync::oneshot::Sender<()>,
    /// The node's Raft log and snapshot folder, removed on drop.
    _dir: tempfile::TempDir,
}

struct Cluster {
    members: Vec<Member>,
    leader: usize,
    /// Term when the group settled: a change during the run means an election
    /// interrupted it, and the figures would include a failover.
    term: u64,
}

impl Cluster {
    /// Starts `n` coordinators on loopback ports and waits for a leader.
    async fn start(n: u64) -> Cluster {
        let mut listeners = Vec::new();
        let mut urls = BTreeMap::new();
        for id in 1..=n {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a loopback port");
            urls.insert(id, format!("http://{}", l.local_addr().expect("address")));
            listeners.push((id, l));
        }
        let config = config();
        let mut members = Vec::new();
        for (id, listener) in listeners {
            let dir = tempfile::tempdir().expect("temporary folder");
            let node = CoordinatorNode::open(id, urls.clone(), dir.path(), &config)
                .await
                .expect("open coordinator");
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            // Served exactly as `spoor coordinator` serves (roles.rs), accepted
            // sockets included, so the figures are those of the shipped path.
            let server = tonic::transport::Server::builder()
                .add_routes(spoor_coordinator::services(&node, None, Default::default()))
                .serve_with_incoming_shutdown(
                    spoor_coordinator::incoming(listener, Default::default()).expect("listen"),
                    async {
                        // Sent or dropped: either way the bench is done with the node.
                        let _ = stopped.await;
                    },
                );
            tokio::spawn(server);
            members.push(Member {
                node,
                url: urls[&id].clone(),
                _stop: stop,
                _dir: dir,
            });
        }
        let mut leader_id = 0;
        for m in &members {
            leader_id = m
                .node
                .wait_for_leader(Duration::from_secs(20))
                .await
                .expect("a leader");
        }
        let leader = members
            .iter()
            .position(|m| m.node.raft_metrics().id == leader_id)
            .expect("the leader is a member");
        let term = members[leader].node.raft_metrics().current_term;
        Cluster {
            members,
            leader,
            term,
        }
    }

    fn follower(&self) -> Option<&Member> {
        (0..self.members.len())
            .find(|i| *i != self.leader)
            .map(|i| &self.members[i])
    }

    /// Whether the leader and term are still those the group settled on.
    fn stable(&self) -> bool {
        let m = self.members[self.leader].node.raft_metrics();
        m.current_leader == Some(m.id) && m.current_term == self.term
    }

    async fn stop(self) {
        for m in &self.members {
            m.node.shutdown().await;
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Path {
    LeaderApi,
    GrpcLeader,
    GrpcFollower,
}

impl Path {
    fn label(self) -> &'static str {
        match self {
            Path::LeaderApi => "leader API",
            Path::GrpcLeader => "gRPC → leader",
            Path::GrpcFollower => "gRPC → follower",
        }
    }
}

/// One scenario's outcome.
#[derive(Clone)]
struct Run {
    /// Commits completed inside the window, per second.
    commits_per_s: f64,
    /// Latencies of the commits started inside the window, sorted.
    latencies: Vec<Duration>,
}

impl Run {
    fn percentile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[i]
    }
}

/// Partitions handed out to clients, so every file id and checkpoint in a
/// group is new (ids derive from the offset range, and a range behind its
/// partition's checkpoint is refused as a duplicate).
static NEXT_PARTITION: AtomicI32 = AtomicI32::new(0);

/// The `n`-th commit of a client writing partition `partition`: consecutive
/// offset ranges, and the checkpoint right after them.
fn commit(partition: i32, n: i64) -> CommitBatch {
    let per_commit = FILES_PER_COMMIT * OFFSETS_PER_FILE;
    let base = n * per_commit;
    let files = (0..FILES_PER_COMMIT)
        .map(|i| {
            let first = base + i * OFFSETS_PER_FILE;
            kafka_file(
                TENANT,
                TOPIC,
                partition,
                first,
                first + OFFSETS_PER_FILE - 1,
            )
        })
        .collect();
    CommitBatch {
        files,
        checkpoints: vec![SourceCheckpoint {
            source_id: "src".into(),
            topic: TOPIC.into(),
            partition,
            next_offset: base + per_commit,
        }],
    }
}

/// `clients` concurrent clients committing back to back on `path` for the
/// warm-up and the window.
async fn run(cluster: &Cluster, path: Path, clients: usize) -> Run {
    let target = match path {
        Path::LeaderApi | Path::GrpcLeader => &cluster.members[cluster.leader],
        Path::GrpcFollower => cluster.follower().expect("a follower"),
    };
    let start = Instant::now();
    let (from, until) = (start + WARMUP, start + WARMUP + WINDOW);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        // One client per task, as separate ingest workers would each have.
        let catalog: Arc<dyn Catalog> = match path {
            Path::LeaderApi => Arc::new(target.node.clone()),
            Path::GrpcLeader | Path::GrpcFollower => Arc::new(
                GrpcCatalog::connect_lazy(&target.url, CLIENT_TIMEOUT).expect("catalog client"),
            ),
        };
        let partition = NEXT_PARTITION.fetch_add(1, Ordering::Relaxed);
        tasks.push(tokio::spawn(async move {
            let (mut done_in_window, mut latencies) = (0usize, Vec::new());
            let mut n = 0;
            loop {
                let began = Instant::now();
                if began >= until {
                    break;
                }
                catalog
                    .commit_batch(commit(partition, n))
                    .await
                    .expect("commit (the bench's batches are valid and the group is up)");
                let ended = Instant::now();
                n += 1;
                // Latency of commits started in the window (so the slow
                // ones straddling its end still count), throughput of those
                // completed in it.
                if began >= from {
                    latencies.push(ended - began);
                }
                if ended >= from && ended < until {
                    done_in_window += 1;
                }
            }
            (done_in_window, latencies)
        }));
    }
    let (mut done, mut latencies) = (0, Vec::new());
    for t in tasks {
        let (d, l) = t.await.expect("client task");
        done += d;
        latencies.extend(l);
    }
    latencies.sort_unstable();
    Run {
        commits_per_s: done as f64 / WINDOW.as_secs_f64(),
        latencies,
    }
}

/// The disk's own latency for one durable append (write 4 KiB, fdatasync),
/// the floor under a commit: the Raft log fsyncs every append.
fn fsync_floor() -> Run {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut f = std::fs::File::create(dir.path().join("probe")).expect("probe file");
    let block = [0u8; 4096];
    let mut latencies = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        f.write_all(&block).expect("write probe");
        f.sync_data().expect("fdatasync probe");
        latencies.push(t.elapsed());
    }
    latencies.sort_unstable();
    Run {
        commits_per_s: 0.0,
        latencies,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn row(path: &str, clients: usize, nodes: &str, r: &Run, reference: Option<&Run>) {
    let ratio = |ours: f64, theirs: f64| {
        if theirs > 0.0 {
            format!("{:.2}", ours / theirs)
        } else {
            "-".into()
        }
    };
    let (tput, p50, p99) = match reference {
        Some(b) => (
            ratio(r.commits_per_s, b.commits_per_s),
            ratio(ms(r.percentile(0.5)), ms(b.percentile(0.5))),
            ratio(ms(r.percentile(0.99)), ms(b.percentile(0.99))),
        ),
        None => ("".into(), "".into(), "".into()),
    };
    println!(
        "| {path} | {clients} | {nodes} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {tput} | {p50} | {p99} |",
        r.commits_per_s,
        r.commits_per_s * FILES_PER_COMMIT as f64,
        ms(r.percentile(0.5)),
        ms(r.percentile(0.99)),
        ms(r.latencies.last().copied().unwrap_or_default()),
        r.latencies.len(),
    );
}

async fn bench() {
    let started = Instant::now();
    let floor = fsync_floor();
    let one = Cluster::start(1).await;
    let three = Cluster::start(3).await;
    let scenarios: Vec<(Path, usize)> = [Path::LeaderApi, Path::GrpcLeader, Path::GrpcFollower]
        .into_iter()
        .flat_map(|p| CLIENTS.map(|c| (p, c)))
        .collect();
    let better = |best: Option<Run>, r: Run| match best {
        Some(b) if b.commits_per_s >= r.commits_per_s => Some(b),
        _ => Some(r),
    };
    // Rounds outermost, so a burst of load from elsewhere on the machine hits
    // one round of every scenario rather than every round of one.
    let mut results: Vec<(Option<Run>, Option<Run>)> = vec![(None, None); scenarios.len()];
    for _ in 0..ROUNDS {
        for (i, &(path, clients)) in scenarios.iter().enumerate() {
            // A follower only exists in the 3-node group; its 1-node
            // reference is the `gRPC → leader` row.
            if path != Path::GrpcFollower {
                let r = run(&one, path, clients).await;
                results[i].0 = better(results[i].0.take(), r);
            }
            let r = run(&three, path, clients).await;
            results[i].1 = better(results[i].1.take(), r);
        }
    }
    let stable = one.stable() && three.stable();
    let snapshots = one
        .members
        .iter()
        .chain(&three.members)
        .filter(|m| m.node.raft_metrics().snapshot.is_some())
        .count();
    let entries = three.members[three.leader]
        .node
        .raft_metrics()
        .last_log_index
        .unwrap_or(0);

    println!(
        "catalog commits: {FILES_PER_COMMIT} files + 1 checkpoint per commit, best of {ROUNDS} alternating rounds, {} s window after {} ms warm-up",
        WINDOW.as_secs_f64(),
        WARMUP.as_millis(),
    );
    // The Raft entry carries the batch as JSON (log store and network alike).
    let entry_bytes = serde_json::to_vec(&commit(0, 0))
        .expect("a batch serializes")
        .len();
    println!("one commit's batch as JSON: {entry_bytes} bytes");
    println!(
        "disk floor, write 4 KiB + fdatasync in the same temporary folder: p50 {:.2} ms, p99 {:.2} ms",
        ms(floor.percentile(0.5)),
        ms(floor.percentile(0.99))
    );
    println!(
        "3-node group: {} Raft entries at the end; snapshots taken: {snapshots}; leader and term unchanged: {stable}",
        entries
    );
    println!();
    println!(
        "| path | clients | nodes | commits/s | files/s | p50 ms | p99 ms | max ms | timed | commits/s 3÷1 | p50 3÷1 | p99 3÷1 |"
    );
    println!(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (i, &(path, clients)) in scenarios.iter().enumerate() {
        let (single, triple) = &results[i];
        // The follower rows compare with the 1-node gRPC client of as many clients.
        let reference = match path {
            Path::GrpcFollower => scenarios
                .iter()
                .position(|s| *s == (Path::GrpcLeader, clients))
                .and_then(|j| results[j].0.clone()),
            _ => single.clone(),
        };
        if let Some(s) = single {
            row(path.label(), clients, "1", s, None);
        }
        if let Some(t) = triple {
            row(path.label(), clients, "3", t, reference.as_ref());
        }
    }
    println!();
    println!("total {:.1} s", started.elapsed().as_secs_f64());
    let figures = |r: &Run| {
        serde_json::json!({
            "commits_per_s": r.commits_per_s,
            "p50_ms": ms(r.percentile(0.5)),
            "p99_ms": ms(r.percentile(0.99)),
        })
    };
    let rows: Vec<serde_json::Value> = scenarios
        .iter()
        .enumerate()
        .map(|(i, &(path, clients))| {
            let (single, triple) = &results[i];
            let reference = match path {
                Path::GrpcFollower => scenarios
                    .iter()
                    .position(|s| *s == (Path::GrpcLeader, clients))
                    .and_then(|j| results[j].0.clone()),
                _ => single.clone(),
            };
            let ratio = |f: fn(&Run) -> f64| match (triple, &reference) {
                (Some(t), Some(r)) if f(r) > 0.0 => Some(f(t) / f(r)),
                _ => None,
            };
            serde_json::json!({
                "path": path.label(),
                "clients": clients,
                "one_node": single.as_ref().map(figures),
                "three_nodes": triple.as_ref().map(figures),
                "commits_per_s_3_over_1": ratio(|r| r.commits_per_s),
                "p50_3_over_1": ratio(|r| ms(r.percentile(0.5))),
                "p99_3_over_1": ratio(|r| ms(r.percentile(0.99))),
            })
        })
        .collect();
    report_line(
        "catalog_commit",
        serde_json::json!({
            "files_per_commit": FILES_PER_COMMIT,
            "rounds": ROUNDS,
            "window_s": WINDOW.as_secs_f64(),
            "disk_floor_p50_ms": ms(floor.percentile(0.5)),
            "disk_floor_p99_ms": ms(floor.percentile(0.99)),
            "snapshots": snapshots,
            "stable": stable,
            "rows": rows,
        }),
    );
    one.stop().await;
    three.stop().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}

//! The worker against the in-memory catalog and object store and a fake
//! coordinator that fences commits by lease epoch exactly as the real one
//! does: a failover mid-stream leaves the same alerts as a run without it,
//! and a deposed holder can commit nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use async_trait::async_trait;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use spoor_common::catalog::{Catalog, CatalogError, CommitBatch, CommitOutcome, MemoryCatalog};
use spoor_common::config::WorkerConfig;
use spoor_common::control::{RuleSet, Shard, ShardCheckpoint, ShardCommit, ShardId, ShardLease};
use spoor_common::layout;
use spoor_common::schema::Table;
use spoor_common::tenant::TenantId;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::test_support::{
    ENCODED_SHELL, FAILED_LOGON, REPEATED_FAILED_LOGONS, commit_events_file, logon_or_shell, rules,
    table_files, tenant,
};
use super::{ShardControl, Worker};
use crate::bundle::{BundleFile, RuleBundle};
use crate::testing::batch;

const BUCKETS: u32 = 2;

/// A correlation: fewer than two failed logons of one `user` within 5
/// minutes.
const QUIET_ACCOUNT: &str = r#"title: Quiet account
id: quiet
correlation:
    type: event_count
    rules: [base]
    group-by: [user]
    timespan: 5m
    condition: {lt: 2}
"#;

/// Every rule of these tests: [`FAILED_LOGON`], [`REPEATED_FAILED_LOGONS`],
/// [`QUIET_ACCOUNT`] and [`ENCODED_SHELL`].
fn all_rules() -> String {
    rules(&[
        FAILED_LOGON,
        REPEATED_FAILED_LOGONS,
        QUIET_ACCOUNT,
        ENCODED_SHELL,
    ])
}

fn shard(bucket: u32) -> ShardId {
    ShardId {
        tenant: "acme".into(),
        rule_group: "auth".into(),
        bucket,
    }
}

#[derive(Debug, Clone)]
struct FakeShard {
    holder: Option<u64>,
    epoch: u64,
    checkpoint: Option<ShardCheckpoint>,
}

/// A coordinator with the real one's fencing rules.
struct FakeControl {
    catalog: Arc<MemoryCatalog>,
    rule_set: RuleSet,
    /// A tokio mutex: a commit checks the lease and applies under one
    /// lock, as one Raft entry does.
    shards: tokio::sync::Mutex<BTreeMap<u32, FakeShard>>,
    /// While set, commits fail as when the coordinators are unreachable.
    down: std::sync::atomic::AtomicBool,
}

impl FakeControl {
    fn new(catalog: Arc<MemoryCatalog>) -> Self {
        Self::with_rules(catalog, &all_rules())
    }

    fn with_rules(catalog: Arc<MemoryCatalog>, rules: &str) -> Self {
        let bundle = RuleBundle {
            format: crate::bundle::BUNDLE_FORMAT,
            rules: vec![BundleFile {
                path: "auth.yml".into(),
                text: rules.into(),
            }],
            mappings: Vec::new(),
            placeholders: BTreeMap::new(),
        };
        let shards = (0..BUCKETS)
            .map(|b| {
                (
                    b,
                    FakeShard {
                        holder: None,
                        epoch: 0,
                        checkpoint: Some(ShardCheckpoint {
                            catalog_sequence: 0,
                            state_key: String::new(),
                            watermark_micros: 0,
                            delivered_sequence: None,
                        }),
                    },
                )
            })
            .collect();
        FakeControl {
            catalog,
            rule_set: RuleSet {
                tenant: tenant(),
                name: "auth".into(),
                version: 1,
                content: bundle.to_content(),
                updated_at_micros: 0,
                enabled: true,
            },
            shards: tokio::sync::Mutex::new(shards),
            down: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Moves every shard to `worker` (a new epoch each) and returns its leases.
    async fn assign_all(&self, worker: u64) -> Vec<ShardLease> {
        let mut shards = self.shards.lock().await;
        shards
            .iter_mut()
            .map(|(b, s)| {
                s.holder = Some(worker);
                s.epoch += 1;
                ShardLease {
                    shard: shard(*b),
                    epoch: s.epoch,
                    checkpoint: s.checkpoint.clone(),
                }
            })
            .collect()
    }

    async fn positions(&self) -> Vec<u64> {
        self.shards
            .lock()
            .await
            .values()
            .map(|s| s.checkpoint.as_ref().map_or(0, |c| c.catalog_sequence))
            .collect()
    }
}

#[async_trait]
impl ShardControl for FakeControl {
    async fn commit_shard(
        &self,
        commit: &ShardCommit,
        batch: Option<&CommitBatch>,
    ) -> Result<CommitOutcome, CatalogError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(CatalogError::Unavailable {
                reason: "coordinators unreachable".into(),
            });
        }
        let mut shards = self.shards.lock().await;
        let s = shards
            .get_mut(&commit.shard.bucket)
            .ok_or_else(|| CatalogError::Invalid {
                reason: "no shard".into(),
            })?;
        if s.holder != Some(commit.worker) || s.epoch != commit.epoch {
            return Err(CatalogError::Conflict {
                reason: format!("stale lease: epoch {} is now {}", commit.epoch, s.epoch),
            });
        }
        if let (Some(new), Some(old)) = (&commit.checkpoint, &s.checkpoint)
            && new.catalog_sequence < old.catalog_sequence
        {
            return Err(CatalogError::Conflict {
                reason: "checkpoint would move back".into(),
            });
        }
        let outcome = match batch {
            Some(b) => self.catalog.commit_batch(b.clone()).await?,
            None => CommitOutcome {
                sequences: Vec::new(),
                already_committed: true,
            },
        };
        // As the coordinator: a commit without a checkpoint (dead letters
        // of a sink) keeps the one it has.
        if commit.checkpoint.is_some() {
            s.checkpoint = commit.checkpoint.clone();
        }
        Ok(outcome)
    }

    async fn rule_sets(&self, _tenant: &TenantId) -> Result<Vec<RuleSet>, CatalogError> {
        Ok(vec![self.rule_set.clone()])
    }

    async fn shard_info(&self, shard: &ShardId) -> Result<super::ShardInfo, CatalogError> {
        let shards = self.shards.lock().await;
        Ok(super::ShardInfo {
            buckets: BUCKETS,
            shard: shards.get(&shard.bucket).map(|s| Shard {
                id: shard.clone(),
                holder: s.holder,
                epoch: s.epoch,
                checkpoint: s.checkpoint.clone(),
            }),
        })
    }
}

fn config() -> WorkerConfig {
    WorkerConfig {
        poll_interval_ms: 10,
        commit_interval_ms: 20,
        max_files_per_step: 3,
        rules_refresh_ms: 60_000,
        file_cache_bytes: 1 << 20,
        allowed_lateness_ms: 60_000,
        max_window_entries: 100_000,
        rule_time_budget_ms: 60_000,
    }
}

/// Events file `n`: 12 events 20 s apart, failed logons of four accounts and
/// an encoded shell now and then.
fn events_file(n: usize) -> RecordBatch {
    let rows: Vec<(i64, serde_json::Value)> = (0..12)
        .map(|k| {
            let i = n * 12 + k;
            let t = 1_800_000_000 + (i as i64) * 20;
            // "rare" logs on once in 800 s: alone in every 5-minute window.
            let user = if i % 40 == 5 {
                "rare".to_string()
            } else {
                format!("u{}", (i * 7) % 4)
            };
            (t, logon_or_shell(i, user))
        })
        .collect();
    batch(&rows)
}

async fn commit_events(store: &InMemory, catalog: &MemoryCatalog, n: usize) {
    let hour = layout::hour_start_micros(1_800_000_000_000_000);
    commit_events_file(
        store,
        catalog,
        format!("events{n:04}"),
        &events_file(n),
        (hour, hour),
    )
    .await;
}

/// Commits every events file and waits until every shard has read them.
async fn feed_all(store: &InMemory, catalog: &MemoryCatalog, control: &FakeControl) {
    for n in 0..FILES {
        commit_events(store, catalog, n).await;
    }
    wait_caught_up(control, catalog).await;
}

async fn wait_caught_up(control: &FakeControl, catalog: &MemoryCatalog) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let head = catalog
            .changes_since(&tenant(), 0, usize::MAX)
            .await
            .expect("changes")
            .last_sequence;
        if control.positions().await.iter().all(|p| *p >= head) {
            return;
        }
        assert!(Instant::now() < deadline, "shards did not catch up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every committed alert, as text rows without `detected_at`, sorted.
async fn alerts(store: &InMemory, catalog: &MemoryCatalog) -> Vec<String> {
    let mut rows = Vec::new();
    for (_, batches) in table_files(store, catalog, Table::Alerts).await {
        for b in batches {
            let schema = b.schema();
            for row in 0..b.num_rows() {
                let mut cells = Vec::new();
                for (i, field) in schema.fields().iter().enumerate() {
                    if field.name() == "detected_at" {
                        continue;
                    }
                    let col = b.column(i);
                    let text =
                        arrow::util::display::array_value_to_string(col, row).expect("display");
                    cells.push(format!("{}={text}", field.name()));
                }
                rows.push(cells.join(" "));
            }
        }
    }
    rows.sort();
    rows
}

async fn start(
    worker_id: u64,
    control: &Arc<FakeControl>,
    catalog: &Arc<MemoryCatalog>,
    store: &Arc<InMemory>,
) -> (
    watch::Sender<Vec<ShardLease>>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let worker = Worker::new(
        worker_id,
        &config(),
        catalog.clone(),
        control.clone(),
        store.clone() as Arc<dyn ObjectStore>,
    );
    let (tx, rx) = watch::channel(control.assign_all(worker_id).await);
    let stop = CancellationToken::new();
    let handle = tokio::spawn(worker.run(rx, stop.clone()));
    (tx, stop, handle)
}

const FILES: usize = 24;

/// The alerts of one worker over every file, without any failure.
async fn reference_run() -> Vec<String> {
    run_with_rules(&all_rules()).await
}

/// A standalone stops its coordinators with its worker: a shard retrying
/// a commit against coordinators that are gone must still stop, or the
/// process hangs on shutdown (found by the detection latency bench).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_retrying_a_commit_stops_on_shutdown() {
    let (catalog, store) = (Arc::new(MemoryCatalog::new()), Arc::new(InMemory::new()));
    let control = Arc::new(FakeControl::new(catalog.clone()));
    control
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (_tx, stop, handle) = start(1, &control, &catalog, &store).await;
    commit_events(&store, &catalog, 0).await;
    // Let the shards evaluate the file and start retrying their commits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("the worker stops within 5 s while its commits are retrying")
        .expect("worker");
    // Nothing was committed: the next holder starts from the checkpoint.
    assert!(control.positions().await.iter().all(|p| *p == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_mid_stream_leaves_the_same_alerts() {
    let reference = reference_run().await;
    let kinds: std::collections::BTreeSet<&str> = reference
        .iter()
        .filter_map(|r| r.split("rule_title=").nth(1))
        .filter_map(|r| r.split(" rule_level").next())
        .collect();
    assert_eq!(kinds.len(), 3, "every rule raises alerts: {kinds:?}");
    let shards: std::collections::BTreeSet<&str> = reference
        .iter()
        .filter_map(|r| r.split("shard=").nth(1))
        .collect();
    assert_eq!(shards.len(), BUCKETS as usize, "{shards:?}");

    // Worker 1 runs the first half, then stops dead; worker 2 takes over
    // (new epochs) and runs the rest.
    let (catalog, store) = (Arc::new(MemoryCatalog::new()), Arc::new(InMemory::new()));
    let control = Arc::new(FakeControl::new(catalog.clone()));
    let (_tx1, stop1, handle1) = start(1, &control, &catalog, &store).await;
    for n in 0..FILES / 2 {
        commit_events(&store, &catalog, n).await;
    }
    wait_caught_up(&control, &catalog).await;
    // More files arrive; worker 1 may be in the middle of them when the
    // leases move.
    for n in FILES / 2..FILES / 2 + 3 {
        commit_events(&store, &catalog, n).await;
    }
    let (_tx2, stop2, handle2) = start(2, &control, &catalog, &store).await;
    // Worker 1 is deposed but still running: whatever it commits is refused.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop1.cancel();
    handle1.await.expect("worker 1");
    for n in FILES / 2 + 3..FILES {
        commit_events(&store, &catalog, n).await;
    }
    wait_caught_up(&control, &catalog).await;
    stop2.cancel();
    handle2.await.expect("worker 2");
    assert_eq!(alerts(&store, &catalog).await, reference);
}

/// The alerts of one worker over every file with `rules`.
async fn run_with_rules(rules: &str) -> Vec<String> {
    let (catalog, store) = (Arc::new(MemoryCatalog::new()), Arc::new(InMemory::new()));
    let control = Arc::new(FakeControl::with_rules(catalog.clone(), rules));
    let (_tx, stop, handle) = start(1, &control, &catalog, &store).await;
    feed_all(&store, &catalog, &control).await;
    stop.cancel();
    handle.await.expect("worker");
    alerts(&store, &catalog).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_rule_is_disabled_with_an_alert_and_the_others_go_on() {
    use super::quarantine::{RuleFault, TEST_FAULTS};
    // Ids of this test's own, so the fault meets no other test's rules.
    let rules = all_rules()
        .replace("id: ", "id: q-")
        .replace("rules: [", "rules: [q-");
    let fault = RuleFault::Panics("q-shell".into());
    TEST_FAULTS.lock().expect("faults").push(fault.clone());
    let with_fault = run_with_rules(&rules).await;
    TEST_FAULTS.lock().expect("faults").retain(|f| *f != fault);
    let without_shell: String = rules
        .split("---\n")
        .filter(|doc| !doc.contains("id: q-shell"))
        .collect::<Vec<_>>()
        .join("---\n");
    let reference = run_with_rules(&without_shell).await;
    assert!(!reference.is_empty());
    let (disabled, others): (Vec<String>, Vec<String>) = with_fault
        .into_iter()
        .partition(|r| r.contains("rule_kind=rule_disabled"));
    // Every other rule's alerts, exactly as without the broken rule.
    assert_eq!(others, reference);
    // One alert about the rule per shard, naming it and why.
    assert_eq!(disabled.len(), BUCKETS as usize, "{disabled:?}");
    for row in &disabled {
        assert!(row.contains("rule_id=q-shell"), "{row}");
        assert!(row.contains("panicked"), "{row}");
        assert!(row.contains("rule_level=high"), "{row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_checkpoint_is_rebuilt_from_an_older_one() {
    let reference = reference_run().await;
    let (catalog, store) = (Arc::new(MemoryCatalog::new()), Arc::new(InMemory::new()));
    let control = Arc::new(FakeControl::new(catalog.clone()));
    let (_tx1, stop1, handle1) = start(1, &control, &catalog, &store).await;
    for n in 0..FILES / 2 {
        commit_events(&store, &catalog, n).await;
        // One commit per file, so older window states exist.
        wait_caught_up(&control, &catalog).await;
    }
    stop1.cancel();
    handle1.await.expect("worker 1");
    // Every shard's latest window state is damaged.
    let keys: Vec<String> = control
        .shards
        .lock()
        .await
        .values()
        .filter_map(|s| s.checkpoint.as_ref().map(|c| c.state_key.clone()))
        .collect();
    assert_eq!(keys.len(), BUCKETS as usize);
    for key in keys {
        assert!(!key.is_empty(), "correlation rules leave a window state");
        store
            .put(&ObjectPath::from(key.as_str()), PutPayload::from("garbage"))
            .await
            .expect("put");
    }
    let (_tx2, stop2, handle2) = start(2, &control, &catalog, &store).await;
    for n in FILES / 2..FILES {
        commit_events(&store, &catalog, n).await;
    }
    wait_caught_up(&control, &catalog).await;
    stop2.cancel();
    handle2.await.expect("worker 2");
    assert_eq!(alerts(&store, &catalog).await, reference);
}

#[tokio::test]
async fn a_deposed_holder_commits_nothing() {
    let (catalog, store) = (Arc::new(MemoryCatalog::new()), Arc::new(InMemory::new()));
    let control = Arc::new(FakeControl::new(catalog.clone()));
    let old = control.assign_all(1).await;
    control.assign_all(2).await;
    let commit = ShardCommit {
        shard: old[0].shard.clone(),
        worker: 1,
        epoch: old[0].epoch,
        checkpoint: None,
    };
    let err = control
        .commit_shard(&commit, None)
        .await
        .expect_err("stale");
    assert!(matches!(err, CatalogError::Conflict { .. }), "{err}");
    // And the worker stops the shard instead of retrying.
    let runner = super::shard::ShardRunner::new(
        Worker::new(
            1,
            &config(),
            catalog.clone(),
            control.clone(),
            store.clone(),
        )
        .shared,
        old[0].clone(),
    )
    .expect("runner");
    commit_events(&store, &catalog, 0).await;
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        runner.run(CancellationToken::new()),
    )
    .await
    .expect("the runner stops by itself");
    assert!(
        matches!(result, Err(super::WorkerError::LeaseLost { .. })),
        "{result:?}"
    );
}

// ---- Alert sinks ---------------------------------------------------------

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use spoor_common::config::{SinkConfig, SinkKind};

use super::Sinks;

/// A webhook receiver on loopback that can fail, stay down or hang.
#[derive(Default)]
struct Receiver {
    /// Requests still to answer 503 before the first 200.
    fail_first: AtomicUsize,
    /// Answer 503 to everything.
    down: AtomicBool,
    /// After this many accepted alerts, hang every request (0: never).
    stall_after: AtomicUsize,
    /// Requests received.
    requests: AtomicUsize,
    /// Alerts accepted (200), as their JSON bodies, in order.
    accepted: Mutex<Vec<serde_json::Value>>,
    /// Requests whose headers did not match their body.
    bad_headers: Mutex<Vec<String>>,
}

const SECRET: &str = "s3cret";

impl Receiver {
    async fn start() -> (Arc<Receiver>, String) {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};
        async fn receive(
            State(r): State<Arc<Receiver>>,
            headers: HeaderMap,
            body: bytes::Bytes,
        ) -> StatusCode {
            r.requests.fetch_add(1, Ordering::SeqCst);
            let stall = r.stall_after.load(Ordering::SeqCst);
            if stall > 0 && r.accepted.lock().expect("lock").len() >= stall {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            if r.down.load(Ordering::SeqCst) {
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            if r.fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
            let json: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(_) => return StatusCode::BAD_REQUEST,
            };
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            let id = json["alert_id"].as_str().unwrap_or_default();
            let signature = format!(
                "sha256={}",
                hex::encode(super::sinks::hmac_sha256(SECRET.as_bytes(), &body))
            );
            if header("idempotency-key") != id
                || header("x-spoor-signature") != signature
                || header("authorization") != "Bearer tok"
                || header("content-type") != "application/json"
            {
                r.bad_headers
                    .lock()
                    .expect("lock")
                    .push(format!("{headers:?}"));
            }
            r.accepted.lock().expect("lock").push(json);
            StatusCode::OK
        }
        let receiver = Arc::new(Receiver::default());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (receiver, url)
    }

    fn ids(&self) -> BTreeSet<String> {
        self.accepted
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|j| j["alert_id"].as_str().map(str::to_string))
            .collect()
    }
}

fn webhook(url: &str, max_attempts: u32, timeout_ms: u64) -> SinkConfig {
    let mut c = SinkConfig::new("hook", SinkKind::Webhook);
    c.url = url.to_string();
    c.bearer_token = "tok".into();
    c.hmac_secret = SECRET.into();
    c.max_attempts = max_attempts;
    c.initial_backoff_ms = 5;
    c.max_backoff_ms = 40;
    c.timeout_ms = timeout_ms;
    c
}

async fn start_with_sinks(
    worker_id: u64,
    sink: SinkConfig,
    control: &Arc<FakeControl>,
    catalog: &Arc<MemoryCatalog>,
    store: &Arc<InMemory>,
) -> (
    Sinks,
    watch::Sender<Vec<ShardLease>>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let sinks = Sinks::new(&[sink]).expect("sinks");
    let worker = Worker::with_sinks(
        worker_id,
        &config(),
        sinks.clone(),
        catalog.clone(),
        control.clone(),
        store.clone() as Arc<dyn ObjectStore>,
    );
    let (tx, rx) = watch::channel(control.assign_all(worker_id).await);
    let stop = CancellationToken::new();
    let handle = tokio::spawn(worker.run(rx, stop.clone()));
    (sinks, tx, stop, handle)
}

/// Every row of a table's files: (file sequence, column name → text).
async fn table_rows(
    store: &InMemory,
    catalog: &MemoryCatalog,
    table: Table,
) -> Vec<(u64, BTreeMap<String, String>)> {
    let mut rows = Vec::new();
    for (sequence, batches) in table_files(store, catalog, table).await {
        for b in batches {
            for row in 0..b.num_rows() {
                let cells = b
                    .schema()
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(_, field)| field.name() != "raw")
                    .map(|(i, field)| {
                        let text = arrow::util::display::array_value_to_string(b.column(i), row)
                            .expect("display");
                        (field.name().clone(), text)
                    })
                    .collect();
                rows.push((sequence, cells));
            }
        }
    }
    rows
}

async fn committed_ids(store: &InMemory, catalog: &MemoryCatalog) -> BTreeSet<String> {
    table_rows(store, catalog, Table::Alerts)
        .await
        .into_iter()
        .map(|(_, r)| r["alert_id"].clone())
        .collect()
}

/// Waits until `got()` holds every committed alert id; returns them.
async fn wait_delivered<F, Fut>(
    store: &InMemory,
    catalog: &MemoryCatalog,
    got: F,
) -> BTreeSet<String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = BTreeSet<String>>,
{
    let committed = committed_ids(store, catalog).await;
    assert!(
        committed.len() > 20,
        "the rules raise alerts: {}",
        committed.len()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = got().await;
        if got.is_superset(&committed) {
            return committed;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} committed alerts delivered; missing {:?}",
            got.intersection(&committed).count(),
            committed.len(),
            committed.difference(&got).take(5).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every shard's checkpoint records its alerts files as
/// delivered.
async fn wait_delivery_checkpointed(
    control: &FakeControl,
    store: &InMemory,
    catalog: &MemoryCatalog,
) {
    let mut last_file: BTreeMap<String, u64> = BTreeMap::new();
    for (seq, row) in table_rows(store, catalog, Table::Alerts).await {
        let e = last_file.entry(row["shard"].clone()).or_default();
        *e = (*e).max(seq);
    }
    assert_eq!(last_file.len(), BUCKETS as usize);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let delivered: Vec<Option<u64>> = control
            .shards
            .lock()
            .await
            .values()
            .map(|s| s.checkpoint.as_ref().and_then(|c| c.delivered_sequence))
            .collect();
        let done = (0..BUCKETS)
            .all(|b| delivered[b as usize].is_some_and(|d| d >= last_file[&shard(b).to_string()]));
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "delivered sequences {delivered:?}, last alerts files {last_file:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_failing_at_first_gets_every_alert_after_retries() {
    let (receiver, url) = Receiver::start().await;
    receiver.fail_first.store(3, Ordering::SeqCst);
    let (catalog, store) = (Arc::new(MemoryCatalog::new()), Arc::new(InMemory::new()));
    let control = Arc::new(FakeControl::new(catalog.clone()));
    let (sinks, _tx, stop, handle) =
        start_with_sinks(1, webhook(&url, 5, 5_000), &control, &catalog, &store).await;
    feed_all(&store, &catalog, &control).await;
    let committed = wait_delivered(&store, &catalog, || async { receiver.ids() }).await;
    wait_delivery_checkpointed(&control, &store, &catalog).await;
    stop.cancel();
    handle.await.expect("worker");

    let accepted = receiver.accepted.lock().expect("lock").len();
    assert_eq!(
        accepted,
        committed.len(),
        "one delivery per alert, no failover"
    );
    assert_eq!(
        receiver.requests.load(Ordering::SeqCst),
        accepted + 3,
        "three failed requests, each retried"
    );
    let stats = sinks.stats("hook").expect("stats");
    assert_eq!(stats.failures.load(Ordering::SeqCst), 3);
    assert_eq!(stats.delivered.load(Ordering::SeqCst) as usize, accepted);
    assert_eq!(stats.dead_letters.load(Ordering::SeqCst), 0);
    assert!(
        table_rows(&store, &catalog, Table::DeadLetter)
            .await
            .is_empty()
    );
    assert_eq!(
        receiver.bad_headers.lock().expect("lock").clone(),
        Vec::<String>::new()
    );
    // The payload carries the alert's columns and its tenant.
    let bodies = receiver.accepted.lock().expect("lock").clone();
    let alerts = table_rows(&store, &catalog, Table::Alerts).await;
    let (_, row) = &alerts[0];
    let body = bodies
        .iter()
        .find(|b| b["alert_id"] == row["alert_id"].as_str())
        .expect("delivered");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["rule_title"], row["rule_title"].as_str());
    assert_eq!(body["shard"], row["shard"].as_str());
    assert!(body["event_refs"].as_array().is_some_and(|r| !r.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_stays_down_leaves_dead_letters_and_blocks_nothing() {
    let (receiver, url) = Receiver::start().await;
    receiver.down.store(true, Ordering::SeqCst);
    let (catalog, store) = (Arc::new(MemoryCatalog::new()), Arc::new(InMemory::new()));
    let control = Arc::new(FakeControl::new(catalog.clone()));
    let (sinks, _tx, stop, handle) =
        start_with_sinks(1, webhook(&url, 3, 5_000), &control, &catalog, &store).await;
    for n in 0..FILES {
        commit_events(&store, &catalog, n).await;
    }
    // The shards go on evaluating while the webhook is down.
    wait_caught_up(&control, &catalog).await;
    let dead_ids = || async {
        table_rows(&store, &catalog, Table::DeadLetter)
            .await
            .into_iter()
            .filter_map(|(_, r)| {
                serde_json::from_str::<serde_json::Value>(&r["raw_text"])
                    .ok()
                    .and_then(|j| j["alert_id"].as_str().map(str::to_string))
            })
            .collect::<BTreeSet<String>>()
    };
    let committed = wait_delivered(&store, &catalog, dead_ids).await;
    wait_delivery_checkpointed(&control, &store, &catalog).await;
    stop.cancel();
    handle.await.expect("worker");

    assert!(receiver.ids().is_empty());
    let dead = table_rows(&store, &catalog, Table::DeadLetter).await;
    assert_eq!(dead.len(), committed.len(), "one dead letter per alert");
    for (_, r) in &dead {
        assert_eq!(r["source_topic"], "sink:hook");
        assert!(r["error"].contains("503"), "{}", r["error"]);
        let json: serde_json::Value = serde_json::from_str(&r["raw_text"]).expect("alert JSON");
        assert_eq!(json["tenant"], "acme");
    }
    let stats = sinks.stats("hook").expect("stats");
    assert_eq!(
        stats.dead_letters.load(Ordering::SeqCst) as usize,
        committed.len()
    );
    // Once down, an alert gets one attempt instead of three.
    let failures = stats.failures.load(Ordering::SeqCst) as usize;
    assert!(
        failures < 2 * committed.len(),
        "{failures} attempts for {} alerts",
        committed.len()
    );
    assert_eq!(receiver.requests.load(Ordering::SeqCst), failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_mid_delivery_delivers_every_committed_alert() {
    // Worker 1's receiver takes a few alerts and then hangs, as a receiver
    // does when the worker's host loses its network; worker 2 takes over.
    let (first, first_url) = Receiver::start().await;
    first.stall_after.store(10, Ordering::SeqCst);
    let (second, second_url) = Receiver::start().await;
    let (catalog, store) = (Arc::new(MemoryCatalog::new()), Arc::new(InMemory::new()));
    let control = Arc::new(FakeControl::new(catalog.clone()));
    let (_s1, _tx1, stop1, handle1) = start_with_sinks(
        1,
        webhook(&first_url, 5, 120_000),
        &control,
        &catalog,
        &store,
    )
    .await;
    for n in 0..FILES / 2 {
        commit_events(&store, &catalog, n).await;
    }
    wait_caught_up(&control, &catalog).await;
    // Committed by worker 1 (its checkpoints are past them).
    let early = committed_ids(&store, &catalog).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while first.requests.load(Ordering::SeqCst) <= 10 {
        assert!(Instant::now() < deadline, "worker 1 delivered nothing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in FILES / 2..FILES / 2 + 3 {
        commit_events(&store, &catalog, n).await;
    }
    // The leases move while worker 1 is stuck in a delivery.
    let (_s2, _tx2, stop2, handle2) = start_with_sinks(
        2,
        webhook(&second_url, 5, 5_000),
        &control,
        &catalog,
        &store,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop1.cancel();
    handle1.await.expect("worker 1");
    for n in FILES / 2 + 3..FILES {
        commit_events(&store, &catalog, n).await;
    }
    wait_caught_up(&control, &catalog).await;
    let committed = wait_delivered(&store, &catalog, || async {
        first.ids().union(&second.ids()).cloned().collect()
    })
    .await;
    wait_delivery_checkpointed(&control, &store, &catalog).await;
    stop2.cancel();
    handle2.await.expect("worker 2");
    assert!(committed.is_superset(&early));

    // Both shards' tasks may pass the receiver's check at once.
    let before = first.ids();
    assert!(
        (10..=11).contains(&before.len()),
        "worker 1 delivered ten, then hung: {}",
        before.len()
    );
    // What worker 1 had committed but not delivered, worker 2 read back
    // from the catalog and delivered.
    let after = second.ids();
    let owed: BTreeSet<&String> = early.difference(&before).collect();
    assert!(
        owed.len() > 10,
        "worker 1 left alerts undelivered: {}",
        owed.len()
    );
    assert!(
        owed.iter().all(|id| after.contains(*id)),
        "worker 2 delivers what worker 1 committed and did not deliver"
    );
    assert!(first.bad_headers.lock().expect("lock").is_empty());
    assert!(second.bad_headers.lock().expect("lock").is_empty());
}

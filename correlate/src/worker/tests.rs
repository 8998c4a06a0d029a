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
use spoor_common::catalog::{
    Catalog, CatalogError, CommitBatch, CommitOutcome, FileQuery, MemoryCatalog, NewFile,
};
use spoor_common::config::WorkerConfig;
use spoor_common::control::{RuleSet, Shard, ShardCheckpoint, ShardCommit, ShardId, ShardLease};
use spoor_common::lake_file::encode_parquet;
use spoor_common::layout;
use spoor_common::schema::{EVENT_COLUMNS, EVENT_SCHEMA_VERSION, Table};
use spoor_common::tenant::TenantId;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{ShardControl, Worker};
use crate::bundle::{BundleFile, RuleBundle};
use crate::testing::batch;

const BUCKETS: u32 = 2;

const RULES: &str = r#"title: Failed logon
id: base
logsource: {product: test}
detection:
    selection: {action: logon_failed}
    condition: selection
---
title: Repeated failed logons
id: burst
correlation:
    type: event_count
    rules: [base]
    group-by: [user]
    timespan: 10m
    condition: {gte: 3}
---
title: Quiet account
id: quiet
correlation:
    type: event_count
    rules: [base]
    group-by: [user]
    timespan: 5m
    condition: {lt: 2}
---
title: Encoded shell
id: shell
logsource: {product: test}
detection:
    selection: {cmd|contains: '-enc '}
    condition: selection
"#;

fn tenant() -> TenantId {
    TenantId::new("acme").expect("tenant")
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
}

impl FakeControl {
    fn new(catalog: Arc<MemoryCatalog>) -> Self {
        let bundle = RuleBundle {
            format: crate::bundle::BUNDLE_FORMAT,
            rules: vec![BundleFile {
                path: "auth.yml".into(),
                text: RULES.into(),
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
        s.checkpoint = commit.checkpoint.clone();
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
            let event = if i.is_multiple_of(9) {
                serde_json::json!({"action": "exec", "cmd": format!("cmd -enc {i}"), "user": user})
            } else {
                serde_json::json!({"action": "logon_failed", "user": user})
            };
            (t, event)
        })
        .collect();
    batch(&rows)
}

async fn commit_events(store: &InMemory, catalog: &MemoryCatalog, n: usize) {
    let batch = events_file(n);
    let bytes = encode_parquet(&batch, EVENT_COLUMNS, 1).expect("encode");
    let file_id = format!("events{n:04}");
    let hour = layout::hour_start_micros(1_800_000_000_000_000);
    let key = layout::object_key(&tenant(), Table::Events, hour, &file_id);
    let size = bytes.len() as u64;
    store
        .put(&ObjectPath::from(key.as_str()), PutPayload::from(bytes))
        .await
        .expect("put");
    catalog
        .commit_batch(CommitBatch {
            files: vec![NewFile {
                file_id,
                tenant: tenant(),
                table: Table::Events,
                object_key: key,
                min_time_micros: hour,
                max_time_micros: hour,
                row_count: batch.num_rows() as u64,
                byte_size: size,
                schema_version: EVENT_SCHEMA_VERSION,
                source: None,
            }],
            checkpoints: Vec::new(),
        })
        .await
        .expect("commit");
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
    let files = catalog
        .list_files(FileQuery::all(tenant(), Table::Alerts))
        .await
        .expect("list");
    let mut rows = Vec::new();
    for f in files {
        let bytes = store
            .get(&ObjectPath::from(f.file.object_key.as_str()))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        for b in super::files::decode(bytes).expect("decode") {
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
    let (catalog, store) = (Arc::new(MemoryCatalog::new()), Arc::new(InMemory::new()));
    let control = Arc::new(FakeControl::new(catalog.clone()));
    let (_tx, stop, handle) = start(1, &control, &catalog, &store).await;
    for n in 0..FILES {
        commit_events(&store, &catalog, n).await;
    }
    wait_caught_up(&control, &catalog).await;
    stop.cancel();
    handle.await.expect("worker");
    alerts(&store, &catalog).await
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

//! The correlation worker (DESIGN.md, Correlation): runs the shards the
//! coordinators lease to this node. A shard is (tenant, rule set, key
//! bucket); each runs on its own task ([`shard`]), following the tenant's
//! catalog in sequence order.
//!
//! Leases arrive with the heartbeat replies. A shard whose lease is gone or
//! has a new epoch is stopped at once; its last commits are refused by the
//! coordinator anyway (fencing by lease epoch). A shard that fails (the
//! catalog or object store unreachable, a file that cannot be read, a
//! panicking evaluation) is restarted from its last checkpoint with a
//! growing backoff, and the other shards of the worker go on.
//!
//! Committed alerts go to the alert sinks ([`sinks`]: Kafka, webhooks) at
//! least once, from a task per shard that a new holder resumes from the
//! checkpoint's `delivered_sequence`.

mod alerts;
mod evaluate;
mod files;
mod quarantine;
pub mod retro;
mod shard;
mod sinks;
mod state;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use object_store::ObjectStore;
use spoor_common::catalog::{Catalog, CatalogError, CommitBatch, CommitOutcome};
use spoor_common::config::WorkerConfig;
use spoor_common::control::{ControlClient, RuleSet, Shard, ShardCommit, ShardId, ShardLease};
use spoor_common::tenant::TenantId;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use alerts::{AlertRow, RuleKind, alert_batch, detection_alert_id, event_ref};
pub use files::FileCache;
pub use sinks::{SinkStats, Sinks, alert_json};

/// Why a shard stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The coordinator refused a commit: another worker holds the shard now.
    #[error("shard {shard}: lease lost: {reason}")]
    LeaseLost {
        /// The shard.
        shard: String,
        /// The coordinator's reason.
        reason: String,
    },
    /// Anything else, naming what failed.
    #[error("shard {shard}: {reason}")]
    Shard {
        /// The shard.
        shard: String,
        /// What failed, and where.
        reason: String,
    },
}

/// What a worker needs of the coordinators besides the catalog.
#[async_trait]
pub trait ShardControl: Send + Sync + 'static {
    /// Commits a checkpoint and alert files under a lease.
    async fn commit_shard(
        &self,
        commit: &ShardCommit,
        batch: Option<&CommitBatch>,
    ) -> Result<CommitOutcome, CatalogError>;
    /// A tenant's rule sets.
    async fn rule_sets(&self, tenant: &TenantId) -> Result<Vec<RuleSet>, CatalogError>;
    /// The shard as the coordinators hold it now, with the number of key
    /// buckets of its rule group.
    async fn shard_info(&self, shard: &ShardId) -> Result<ShardInfo, CatalogError>;
}

/// A shard as the coordinators hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// Key buckets of the shard's rule group.
    pub buckets: u32,
    /// The shard's holder, lease epoch and checkpoint (None: no such shard).
    pub shard: Option<Shard>,
}

#[async_trait]
impl ShardControl for ControlClient {
    async fn commit_shard(
        &self,
        commit: &ShardCommit,
        batch: Option<&CommitBatch>,
    ) -> Result<CommitOutcome, CatalogError> {
        ControlClient::commit_shard(self, commit, batch).await
    }

    async fn rule_sets(&self, tenant: &TenantId) -> Result<Vec<RuleSet>, CatalogError> {
        ControlClient::rule_sets(self, tenant).await
    }

    async fn shard_info(&self, shard: &ShardId) -> Result<ShardInfo, CatalogError> {
        let status = self.cluster_status().await?;
        let group: Vec<Shard> = status
            .shards
            .into_iter()
            .filter(|s| s.id.tenant == shard.tenant && s.id.rule_group == shard.rule_group)
            .collect();
        Ok(ShardInfo {
            buckets: u32::try_from(group.len()).unwrap_or(u32::MAX).max(1),
            shard: group.into_iter().find(|s| s.id == *shard),
        })
    }
}

/// The worker's settings, in the units the code uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often an idle shard polls the catalog.
    pub poll_interval: Duration,
    /// Longest time between commits of a shard with progress.
    pub commit_interval: Duration,
    /// Most changes read per catalog page.
    pub max_files_per_step: usize,
    /// How often the rule set's version is checked.
    pub rules_refresh: Duration,
    /// Allowed lateness of correlation matches, µs.
    pub allowed_lateness_micros: i64,
    /// Correlation matches kept per shard.
    pub max_window_entries: usize,
    /// The longest one rule may take on one events file.
    pub rule_time_budget: Duration,
}

impl From<&WorkerConfig> for Settings {
    fn from(c: &WorkerConfig) -> Self {
        Settings {
            poll_interval: Duration::from_millis(c.poll_interval_ms),
            commit_interval: Duration::from_millis(c.commit_interval_ms),
            max_files_per_step: c.max_files_per_step,
            rules_refresh: Duration::from_millis(c.rules_refresh_ms),
            allowed_lateness_micros: i64::try_from(c.allowed_lateness_ms.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            max_window_entries: c.max_window_entries,
            rule_time_budget: Duration::from_millis(c.rule_time_budget_ms),
        }
    }
}

/// Measured events per second per shard, for the scheduler's balancing.
#[derive(Debug, Default)]
struct Load {
    events: u64,
    since: Option<Instant>,
    rate: f64,
}

/// What every shard of a worker shares.
pub(crate) struct Shared {
    node_id: u64,
    config: Settings,
    catalog: Arc<dyn Catalog>,
    control: Arc<dyn ShardControl>,
    store: Arc<dyn ObjectStore>,
    cache: FileCache,
    loads: Mutex<HashMap<ShardId, Load>>,
    /// Where committed alerts are delivered.
    sinks: Sinks,
    /// Rules disabled per shard because they panicked or overran.
    disabled: quarantine::Disabled,
}

impl Shared {
    fn record_load(&self, shard: &ShardId, events: usize, _seconds: f64) {
        let Ok(mut loads) = self.loads.lock() else {
            return;
        };
        let load = loads.entry(shard.clone()).or_default();
        load.events += events as u64;
        let since = *load.since.get_or_insert_with(Instant::now);
        let elapsed = since.elapsed().as_secs_f64();
        if elapsed >= 10.0 {
            load.rate = load.events as f64 / elapsed;
            load.events = 0;
            load.since = Some(Instant::now());
        }
    }
}

/// A handle on a worker's measured loads, for its heartbeats.
#[derive(Clone)]
pub struct LoadReport(Arc<Shared>);

impl LoadReport {
    /// Events per second per running shard.
    pub fn shard_loads(&self) -> Vec<(ShardId, f64)> {
        self.0
            .loads
            .lock()
            .map(|l| l.iter().map(|(k, v)| (k.clone(), v.rate)).collect())
            .unwrap_or_default()
    }
}

/// The correlation worker.
pub struct Worker {
    shared: Arc<Shared>,
}

struct Running {
    epoch: u64,
    stop: CancellationToken,
    handle: JoinHandle<Result<(), WorkerError>>,
}

/// A shard that failed, waiting to restart.
struct Failed {
    epoch: u64,
    until: Instant,
    attempts: u32,
}

impl Worker {
    /// A worker that is cluster member `node_id`, without alert sinks.
    pub fn new(
        node_id: u64,
        config: &WorkerConfig,
        catalog: Arc<dyn Catalog>,
        control: Arc<dyn ShardControl>,
        store: Arc<dyn ObjectStore>,
    ) -> Self {
        Worker::with_sinks(node_id, config, Sinks::none(), catalog, control, store)
    }

    /// A worker that delivers its shards' alerts to `sinks` too.
    pub fn with_sinks(
        node_id: u64,
        config: &WorkerConfig,
        sinks: Sinks,
        catalog: Arc<dyn Catalog>,
        control: Arc<dyn ShardControl>,
        store: Arc<dyn ObjectStore>,
    ) -> Self {
        Worker {
            shared: Arc::new(Shared {
                node_id,
                config: Settings::from(config),
                catalog,
                control,
                store,
                cache: FileCache::new(config.file_cache_bytes),
                loads: Mutex::new(HashMap::new()),
                sinks,
                disabled: quarantine::Disabled::default(),
            }),
        }
    }

    /// Its loads, for heartbeats.
    pub fn load_report(&self) -> LoadReport {
        LoadReport(self.shared.clone())
    }

    /// Runs the leased shards until `stop`; `leases` is what the last
    /// heartbeat reply said this node holds.
    pub async fn run(self, mut leases: watch::Receiver<Vec<ShardLease>>, stop: CancellationToken) {
        let mut running: HashMap<ShardId, Running> = HashMap::new();
        let mut failed: HashMap<ShardId, Failed> = HashMap::new();
        // The lease epochs whose runner found the lease gone: not restarted
        // until a heartbeat shows a new lease.
        let mut lost: HashMap<ShardId, u64> = HashMap::new();
        loop {
            let held: HashMap<ShardId, ShardLease> = leases
                .borrow_and_update()
                .iter()
                .map(|l| (l.shard.clone(), l.clone()))
                .collect();
            // Reap finished runners.
            let finished: Vec<ShardId> = running
                .iter()
                .filter(|(_, r)| r.handle.is_finished())
                .map(|(id, _)| id.clone())
                .collect();
            for id in finished {
                let Some(r) = running.remove(&id) else {
                    continue;
                };
                match r.handle.await {
                    Ok(Ok(())) => {}
                    Ok(Err(WorkerError::LeaseLost { reason, .. })) => {
                        tracing::warn!(shard = %id, epoch = r.epoch, reason, "lease lost; shard stopped");
                        lost.insert(id, r.epoch);
                    }
                    Ok(Err(e)) => {
                        let attempts = failed.get(&id).map_or(0, |f| f.attempts) + 1;
                        let backoff = Duration::from_secs(1u64 << attempts.min(6))
                            .min(Duration::from_secs(60));
                        tracing::warn!(shard = %id, error = %e, retry_in = ?backoff, "shard failed; restarting from its checkpoint");
                        metrics::counter!("spoor_worker_shard_failures_total").increment(1);
                        failed.insert(
                            id,
                            Failed {
                                epoch: r.epoch,
                                until: Instant::now() + backoff,
                                attempts,
                            },
                        );
                    }
                    Err(e) => {
                        tracing::error!(shard = %id, error = %e, "shard task died");
                        failed.insert(
                            id,
                            Failed {
                                epoch: r.epoch,
                                until: Instant::now() + Duration::from_secs(5),
                                attempts: 1,
                            },
                        );
                    }
                }
            }
            // Stop shards no longer held, or held at a new epoch.
            running.retain(|id, r| {
                let keep = held.get(id).is_some_and(|l| l.epoch == r.epoch);
                if !keep {
                    tracing::info!(shard = %id, "lease moved; shard stopped");
                    r.stop.cancel();
                }
                keep
            });
            failed.retain(|id, f| held.get(id).is_some_and(|l| l.epoch == f.epoch));
            lost.retain(|id, epoch| held.get(id).is_some_and(|l| l.epoch == *epoch));
            if let Ok(mut loads) = self.shared.loads.lock() {
                loads.retain(|id, _| held.contains_key(id));
            }
            // Start the new ones.
            for (id, lease) in &held {
                if running.contains_key(id) || lost.contains_key(id) {
                    continue;
                }
                if failed.get(id).is_some_and(|f| Instant::now() < f.until) {
                    continue;
                }
                let runner = match shard::ShardRunner::new(self.shared.clone(), lease.clone()) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot run shard");
                        lost.insert(id.clone(), lease.epoch);
                        continue;
                    }
                };
                let token = stop.child_token();
                let handle = tokio::spawn(runner.run(token.clone()));
                running.insert(
                    id.clone(),
                    Running {
                        epoch: lease.epoch,
                        stop: token,
                        handle,
                    },
                );
            }
            metrics::gauge!("spoor_worker_shards").set(running.len() as f64);
            tokio::select! {
                () = stop.cancelled() => break,
                changed = leases.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        for r in running.values() {
            r.stop.cancel();
        }
        for (_, r) in running {
            let _ = r.handle.await;
        }
    }
}

//! One leased shard: follow the tenant's catalog, evaluate the rule set on
//! each newly committed events file, and commit alerts, position and window
//! state together under the lease.
//!
//! Exactly-once alerts rest on three things: files are evaluated in catalog
//! order and the evaluation is deterministic; the position, the window state
//! and the alerts found up to that position are committed in one Raft entry
//! that the coordinator accepts only from the current lease holder; and a
//! new holder resumes from the last such commit. A replay after a failover
//! thus finds the same alerts with the same ids, and only one copy of them
//! is ever committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use spoor_common::catalog::{CatalogError, CatalogFile, CommitBatch, CommitOutcome, NewFile};
use spoor_common::control::{RuleSet, ShardCheckpoint, ShardCommit, ShardId, ShardLease};
use spoor_common::schema::Table;
use spoor_common::tenant::TenantId;
use tokio_util::sync::CancellationToken;

use super::alerts::{self, AlertRow};
use super::evaluate::{FileContext, evaluate};
use super::sinks::ShardSinks;
use super::{Shared, WorkerError, quarantine, state};
use crate::bundle::RuleBundle;
use crate::engine::Engine;
use crate::window::{Correlator, WindowOptions};

/// The rules a shard runs.
struct Rules {
    set: RuleSet,
    /// The set as stored, to compile a rule alone when one breaks.
    bundle: Arc<RuleBundle>,
    engine: Arc<Engine>,
}

/// Alerts found since the last commit.
#[derive(Default)]
struct Pending {
    alerts: Vec<AlertRow>,
    /// First catalog sequence evaluated since the last commit.
    first: Option<u64>,
    /// Events files evaluated since the last commit.
    files: usize,
}

/// A running shard.
pub(super) struct ShardRunner {
    shared: Arc<Shared>,
    lease: ShardLease,
    tenant: TenantId,
    name: String,
    buckets: u32,
    /// The worker's stop, for waits inside a step (a commit retrying).
    stop: CancellationToken,
}

fn now_micros() -> i64 {
    spoor_common::time::now_micros()
}

impl ShardRunner {
    pub(super) fn new(shared: Arc<Shared>, lease: ShardLease) -> Result<Self, WorkerError> {
        let name = lease.shard.to_string();
        let tenant = TenantId::new(lease.shard.tenant.clone()).map_err(|e| WorkerError::Shard {
            shard: name.clone(),
            reason: format!("tenant id: {e}"),
        })?;
        Ok(ShardRunner {
            shared,
            lease,
            tenant,
            name,
            buckets: 1,
            stop: CancellationToken::new(),
        })
    }

    fn err(&self, reason: impl std::fmt::Display) -> WorkerError {
        WorkerError::Shard {
            shard: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    fn catalog_err(&self, what: &str, e: CatalogError) -> WorkerError {
        match e {
            CatalogError::Conflict { reason } => WorkerError::LeaseLost {
                shard: self.name.clone(),
                reason,
            },
            other => self.err(format!("{what}: {other}")),
        }
    }

    fn id(&self) -> &ShardId {
        &self.lease.shard
    }

    /// The shard's rule set, once it exists and is enabled.
    async fn wait_for_rules(
        &self,
        stop: &CancellationToken,
        current: Option<u64>,
    ) -> Result<Option<RuleSet>, WorkerError> {
        loop {
            let sets = self
                .shared
                .control
                .rule_sets(&self.tenant)
                .await
                .map_err(|e| self.err(format!("reading rule sets: {e}")))?;
            match sets.into_iter().find(|s| s.name == self.id().rule_group) {
                Some(set) if set.enabled => {
                    return Ok((Some(set.version) != current).then_some(set));
                }
                // Paused: nothing is evaluated and the position stays, so
                // enabling the set again resumes where it stopped and no
                // event is skipped.
                _ if current.is_some() => return Ok(None),
                _ => {}
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(None),
                () = tokio::time::sleep(self.shared.config.rules_refresh) => {}
            }
        }
    }

    async fn compile(&self, set: RuleSet) -> Result<Rules, WorkerError> {
        let content = set.content.clone();
        // Rules this worker disabled for the shard at this version stay out.
        let disabled = self.shared.disabled.keys(self.id(), set.version);
        let compiled = tokio::task::spawn_blocking(move || {
            let bundle = RuleBundle::from_content(&content)?;
            let (engine, issues) = bundle.compile_without(&disabled)?;
            Ok::<_, String>((Arc::new(bundle), engine, issues))
        })
        .await
        .map_err(|e| self.err(format!("compiling rule set {}: {e}", set.name)))?
        .map_err(|e| {
            self.err(format!(
                "rule set {} version {} does not compile: {e}",
                set.name, set.version
            ))
        })?;
        let (bundle, engine, issues) = compiled;
        for issue in issues.iter().filter(|i| !i.warning) {
            tracing::warn!(
                shard = %self.name,
                file = issue.file,
                line = issue.line,
                rule = issue.rule,
                reason = issue.message,
                "rule refused; the others run"
            );
        }
        tracing::info!(
            shard = %self.name,
            rule_set = set.name,
            version = set.version,
            detections = engine.detections.len(),
            correlations = engine.correlations.len(),
            "rule set loaded"
        );
        Ok(Rules {
            set,
            bundle,
            engine: Arc::new(engine),
        })
    }

    fn correlator(&self, engine: &Engine) -> Correlator {
        Correlator::new(
            engine,
            WindowOptions {
                allowed_lateness_micros: self.shared.config.allowed_lateness_micros,
                max_entries: self.shared.config.max_window_entries,
            },
        )
        .with_bucket(self.id().bucket, self.buckets)
    }

    /// Restores the window state of the lease's checkpoint. Returns the
    /// position to resume after and, when the checkpoint's state was damaged
    /// and an older one was used, the sequence up to which alerts were
    /// committed already (replayed silently).
    async fn restore(&self, correlator: &mut Correlator) -> (u64, u64) {
        let Some(cp) = self.lease.checkpoint.clone() else {
            // A shard defined before shards started at the catalog head.
            return (0, 0);
        };
        if cp.state_key.is_empty() {
            return (cp.catalog_sequence, cp.catalog_sequence);
        }
        let store = self.shared.store.as_ref();
        match state::load(store, &cp.state_key, cp.catalog_sequence).await {
            Ok(snapshot) => {
                let report = correlator.restore(snapshot);
                if !report.dropped.is_empty() {
                    tracing::info!(shard = %self.name, dropped = ?report.dropped, "window state of changed rules dropped");
                }
                return (cp.catalog_sequence, cp.catalog_sequence);
            }
            Err(e) => {
                metrics::counter!("spoor_worker_corrupt_checkpoints_total").increment(1);
                tracing::warn!(
                    shard = %self.name,
                    key = cp.state_key,
                    error = %e,
                    "window state of the checkpoint is damaged; rebuilding from an older one by replaying the catalog"
                );
            }
        }
        let older = state::list(store, self.id()).await.unwrap_or_default();
        for key in older {
            let Some(seq) = state::sequence_of(&key) else {
                continue;
            };
            if seq >= cp.catalog_sequence {
                continue;
            }
            match state::load(store, &key, seq).await {
                Ok(snapshot) => {
                    correlator.restore(snapshot);
                    tracing::warn!(shard = %self.name, key, from = seq, to = cp.catalog_sequence, "replaying from an older window state");
                    return (seq, cp.catalog_sequence);
                }
                Err(e) => {
                    tracing::warn!(shard = %self.name, key, error = %e, "older window state damaged too");
                }
            }
        }
        tracing::error!(
            shard = %self.name,
            "no intact window state left; correlation windows restart empty at the checkpoint"
        );
        (cp.catalog_sequence, cp.catalog_sequence)
    }

    /// Runs until the lease is lost or `stop`.
    pub(super) async fn run(mut self, stop: CancellationToken) -> Result<(), WorkerError> {
        self.stop = stop.clone();
        // The coordinators' view, not the lease as the last heartbeat told
        // it: after a restart of this shard on this worker, the heartbeat's
        // checkpoint may predate the last commit.
        let info = self
            .shared
            .control
            .shard_info(self.id())
            .await
            .map_err(|e| self.err(format!("reading the shard: {e}")))?;
        let current = info
            .shard
            .filter(|s| s.holder == Some(self.shared.node_id) && s.epoch == self.lease.epoch)
            .ok_or_else(|| WorkerError::LeaseLost {
                shard: self.name.clone(),
                reason: format!(
                    "the coordinators no longer lease it at epoch {}",
                    self.lease.epoch
                ),
            })?;
        self.lease.checkpoint = current.checkpoint;
        self.buckets = info.buckets;
        // Alert sinks (sinks.rs): the task first delivers what the previous
        // holder committed but had not delivered (also while the rule set is
        // paused), then each commit's alerts.
        let sinks = ShardSinks::start(
            self.shared.clone(),
            self.id().clone(),
            self.tenant.clone(),
            self.lease.epoch,
            self.lease
                .checkpoint
                .as_ref()
                .map_or(0, ShardCheckpoint::delivered_up_to),
            &stop,
        );
        let Some(set) = self.wait_for_rules(&stop, None).await? else {
            return Ok(());
        };
        let mut rules = self.compile(set).await?;
        let mut correlator = self.correlator(&rules.engine);
        let (mut position, silent_until) = self.restore(&mut correlator).await;
        // Up to `silent_until` the alerts were committed before (a replay
        // from an older window state): nothing to commit until past it, and
        // a checkpoint never moves back.
        let mut committed = position.max(silent_until);
        let mut watermark = self
            .lease
            .checkpoint
            .as_ref()
            .map_or(0, |c| c.watermark_micros);
        let mut pending = Pending::default();
        let mut last_commit = Instant::now();
        let mut last_rules_check = Instant::now();
        let mut commits = 0u64;
        // The checkpoint last accepted, for commits that only record the
        // sinks' progress.
        let mut last_checkpoint = self.lease.checkpoint.clone();
        tracing::info!(shard = %self.name, epoch = self.lease.epoch, position, "shard started");
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            if last_rules_check.elapsed() >= self.shared.config.rules_refresh {
                last_rules_check = Instant::now();
                if let Some(set) = self.wait_for_rules(&stop, Some(rules.set.version)).await? {
                    // A new version applies from the next file on; windows of
                    // rules that did not change carry over.
                    let next = self.compile(set).await?;
                    let snapshot = correlator.snapshot();
                    correlator = self.correlator(&next.engine);
                    let report = correlator.restore(snapshot);
                    tracing::info!(shard = %self.name, version = next.set.version, kept = report.restored.len(), dropped = report.dropped.len(), "rule set updated");
                    rules = next;
                }
            }
            let page = self
                .shared
                .catalog
                .changes_since(
                    &self.tenant,
                    position,
                    self.shared.config.max_files_per_step,
                )
                .await
                .map_err(|e| self.catalog_err("reading the catalog", e))?;
            let caught_up = page.changes.is_empty();
            for change in &page.changes {
                // A change that removes files is compaction or retention:
                // its outputs hold rows already evaluated.
                if change.removed.is_empty() {
                    for file in change
                        .added
                        .iter()
                        .filter(|f| f.file.table == Table::Events)
                    {
                        let found = self
                            .evaluate_file(file, &rules, &mut correlator, &mut watermark)
                            .await?;
                        if file.sequence > silent_until {
                            pending.alerts.extend(found);
                            // Rules disabled on this file: the alert about
                            // them goes with the file's own.
                            for rule in self.shared.disabled.found_at(
                                self.id(),
                                rules.set.version,
                                file.sequence,
                            ) {
                                pending.alerts.push(quarantine::disabled_alert(
                                    &rule,
                                    &self.file_context(file, &rules),
                                    file.file.max_time_micros,
                                ));
                            }
                        }
                        pending.files += 1;
                    }
                }
                pending.first.get_or_insert(change.first_sequence);
                position = change.last_sequence;
            }
            metrics::gauge!("spoor_worker_shard_lag", "shard" => self.name.clone())
                .set(page.last_sequence.saturating_sub(position) as f64);
            metrics::gauge!("spoor_worker_state_entries", "shard" => self.name.clone())
                .set((correlator.state_entries() + correlator.suppression_entries()) as f64);
            let due = position > committed
                && (!pending.alerts.is_empty()
                    || last_commit.elapsed() >= self.shared.config.commit_interval);
            if due {
                let (rows, upto, checkpoint) = self
                    .commit(
                        &rules,
                        &correlator,
                        std::mem::take(&mut pending),
                        position,
                        watermark,
                        sinks.as_ref().map(ShardSinks::delivered),
                    )
                    .await?;
                if let Some(sinks) = &sinks {
                    sinks.hand_over(rows, upto);
                }
                last_checkpoint = Some(checkpoint);
                committed = position;
                last_commit = Instant::now();
                commits += 1;
                if commits.is_multiple_of(10) {
                    state::prune(self.shared.store.as_ref(), self.id()).await;
                }
            } else if let (Some(sinks), Some(checkpoint)) = (&sinks, &last_checkpoint)
                && sinks.delivered() > checkpoint.delivered_up_to()
                && last_commit.elapsed() >= self.shared.config.commit_interval
            {
                // Nothing new evaluated, but alerts were delivered since the
                // last commit: record it, so a new holder redelivers less.
                let checkpoint = ShardCheckpoint {
                    delivered_sequence: Some(sinks.delivered()),
                    ..checkpoint.clone()
                };
                let commit = ShardCommit {
                    shard: self.id().clone(),
                    worker: self.shared.node_id,
                    epoch: self.lease.epoch,
                    checkpoint: Some(checkpoint.clone()),
                };
                self.send_commit(&commit, None).await?;
                last_checkpoint = Some(checkpoint);
                last_commit = Instant::now();
            }
            if caught_up {
                let wait = if position > committed {
                    self.shared
                        .config
                        .commit_interval
                        .saturating_sub(last_commit.elapsed())
                        .min(self.shared.config.poll_interval)
                } else {
                    self.shared.config.poll_interval
                };
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    () = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
                }
            }
        }
    }

    /// Evaluates one events file; returns its alerts.
    async fn evaluate_file(
        &self,
        file: &CatalogFile,
        rules: &Rules,
        correlator: &mut Correlator,
        watermark: &mut i64,
    ) -> Result<Vec<AlertRow>, WorkerError> {
        let key = &file.file.object_key;
        let bytes = self
            .shared
            .cache
            .get(self.shared.store.as_ref(), key)
            .await
            .map_err(|e| self.err(format!("reading events file {key}: {e}")))?;
        let started = Instant::now();
        // Decoding and evaluation are CPU work: off the async threads. The
        // correlator moves in and back out.
        let engine = rules.engine.clone();
        let context = self.file_context(file, rules);
        let mut owned = std::mem::replace(correlator, self.correlator(&rules.engine));
        let file_bytes = bytes.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                evaluate(&engine, &mut owned, file_bytes, &context)
            }));
            (owned, result)
        })
        .await
        .map_err(|e| self.err(format!("evaluating {key}: {e}")))?;
        let (owned, result) = joined;
        *correlator = owned;
        let (found, max_time, rows) = match result {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(self.err(format!("events file {key}: {e}"))),
            Err(payload) => {
                let message = quarantine::panic_message(payload.as_ref());
                let found =
                    if self
                        .shared
                        .disabled
                        .searched(self.id(), rules.set.version, file.sequence)
                    {
                        "no rule did it on its own when the rules were tried one by one".to_string()
                    } else {
                        self.search(file, rules, bytes).await?
                    };
                return Err(self.err(format!(
                    "evaluating events file {key} panicked ({message}); {found}; the shard \
                     restarts from its checkpoint"
                )));
            }
        };
        *watermark = (*watermark).max(max_time);
        if started.elapsed() > self.shared.config.rule_time_budget
            && self
                .shared
                .disabled
                .search_overrun(self.id(), rules.set.version, file.sequence)
        {
            // A rule that overran is disabled from the checkpoint on (as a
            // new holder would: deterministic replay): the shard restarts
            // without it and finds the other rules' alerts again. When no
            // rule alone overran, this file's alerts stand.
            let took = started.elapsed();
            let found = self.search(file, rules, bytes).await?;
            if self
                .shared
                .disabled
                .found_at(self.id(), rules.set.version, file.sequence)
                .is_empty()
            {
                tracing::warn!(
                    shard = %self.name,
                    file = key,
                    took_ms = took.as_millis() as u64,
                    "an events file took longer than worker.rule_time_budget_ms, but no rule alone \
                     does: the rule set is slow on big files; overruns are not searched again \
                     until its next version"
                );
                self.shared.disabled.mark_slow(self.id(), rules.set.version);
            } else {
                return Err(self.err(format!(
                    "evaluating events file {key} took {} ms; {found}; the shard restarts \
                     from its checkpoint",
                    took.as_millis()
                )));
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        metrics::histogram!("spoor_worker_evaluation_seconds", "shard" => self.name.clone())
            .record(elapsed);
        metrics::counter!("spoor_worker_events_total", "shard" => self.name.clone())
            .increment(rows as u64);
        metrics::counter!("spoor_worker_alerts_total", "shard" => self.name.clone())
            .increment(found.len() as u64);
        self.shared.record_load(self.id(), rows, elapsed);
        Ok(found)
    }

    fn file_context(&self, file: &CatalogFile, rules: &Rules) -> FileContext {
        FileContext {
            file_id: file.file.file_id.clone(),
            bucket: self.id().bucket,
            buckets: self.buckets,
            rule_set: rules.set.name.clone(),
            rule_set_version: rules.set.version,
            shard: self.name.clone(),
            origin: "live",
        }
    }

    /// After an evaluation that panicked or overran the time budget: tries
    /// each rule alone on the file and disables, for this shard and rule set
    /// version, those that panic or overrun on their own (their alert is
    /// raised with the file's alerts). Says what it found, for the error.
    async fn search(
        &self,
        file: &CatalogFile,
        rules: &Rules,
        bytes: bytes::Bytes,
    ) -> Result<String, WorkerError> {
        let bundle = rules.bundle.clone();
        let excluded = self.shared.disabled.keys(self.id(), rules.set.version);
        let cx = self.file_context(file, rules);
        let budget = self.shared.config.rule_time_budget;
        let options = WindowOptions {
            allowed_lateness_micros: self.shared.config.allowed_lateness_micros,
            max_entries: self.shared.config.max_window_entries,
        };
        let culprits = tokio::task::spawn_blocking(move || {
            quarantine::isolate(&bundle, &excluded, &bytes, &cx, budget, options)
        })
        .await
        .map_err(|e| self.err(format!("trying the rules one by one: {e}")))?
        .map_err(|e| self.err(format!("trying the rules one by one: {e}")))?;
        for c in &culprits {
            metrics::counter!("spoor_worker_rules_disabled_total", "shard" => self.name.clone())
                .increment(1);
            tracing::error!(
                shard = %self.name,
                rule = c.info.key(),
                title = c.info.title,
                version = c.info.version,
                reason = c.reason,
                file = file.file.object_key,
                "rule disabled for this shard; the others go on"
            );
        }
        let said = if culprits.is_empty() {
            "no rule does it on its own, so none was disabled".to_string()
        } else {
            format!(
                "disabled {}",
                culprits
                    .iter()
                    .map(|c| format!("{} ({})", c.info.key(), c.reason))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        self.shared
            .disabled
            .record(self.id(), rules.set.version, file.sequence, culprits);
        Ok(said)
    }

    /// Writes the alerts and the window state, then commits both with the
    /// position (and the sinks' `delivered` sequence) under the lease.
    /// Retries while the coordinators are unreachable; a refusal means the
    /// lease is gone. Returns the committed alerts, the catalog sequence up
    /// to which the shard's alerts files are now known (the position or its
    /// last alerts file), and the checkpoint.
    async fn commit(
        &self,
        rules: &Rules,
        correlator: &Correlator,
        pending: Pending,
        position: u64,
        watermark: i64,
        delivered: Option<u64>,
    ) -> Result<(Vec<AlertRow>, u64, ShardCheckpoint), WorkerError> {
        let first = pending.first.unwrap_or(position);
        let detected_at = now_micros();
        let mut files = Vec::new();
        let alert_count = pending.alerts.len();
        let mut committed_rows = Vec::with_capacity(alert_count);
        for (hour, mut rows) in alerts::by_hour(pending.alerts) {
            for r in &mut rows {
                r.detected_at_micros = detected_at;
            }
            files.push(self.write_alerts(hour, &rows, first, position).await?);
            committed_rows.extend(rows);
        }
        // Window state holds correlation windows and suppression anchors.
        let state_key = if rules.engine.correlations.is_empty() && !rules.engine.has_suppression() {
            String::new()
        } else {
            let key = state::key(self.id(), position, self.lease.epoch);
            let bytes = state::encode(&correlator.snapshot(), position).map_err(|e| self.err(e))?;
            self.shared
                .store
                .put(&ObjectPath::from(key.as_str()), PutPayload::from(bytes))
                .await
                .map_err(|e| self.err(format!("writing window state {key}: {e}")))?;
            key
        };
        let checkpoint = ShardCheckpoint {
            catalog_sequence: position,
            state_key,
            watermark_micros: watermark,
            delivered_sequence: delivered,
        };
        let commit = ShardCommit {
            shard: self.id().clone(),
            worker: self.shared.node_id,
            epoch: self.lease.epoch,
            checkpoint: Some(checkpoint.clone()),
        };
        let batch = (!files.is_empty()).then(|| CommitBatch {
            files,
            checkpoints: Vec::new(),
        });
        let outcome = self.send_commit(&commit, batch.as_ref()).await?;
        let upto = outcome
            .sequences
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .max(position);
        let now = now_micros();
        metrics::counter!("spoor_worker_commits_total").increment(1);
        if alert_count > 0 {
            metrics::histogram!("spoor_worker_commit_delay_seconds")
                .record((now - detected_at).max(0) as f64 / 1e6);
        }
        // Detection latency: from ingest decoding the event that raised the
        // alert to the alert committed (the flush interval, the events
        // file's commit, the shard's poll, evaluation and this commit).
        let latency = metrics::histogram!("spoor_worker_detection_latency_seconds");
        for row in committed_rows.iter().filter(|r| r.ingested_micros > 0) {
            latency.record((now - row.ingested_micros).max(0) as f64 / 1e6);
        }
        tracing::debug!(shard = %self.name, position, alerts = alert_count, "committed");
        Ok((committed_rows, upto, checkpoint))
    }

    /// Sends a commit under the lease, retrying while the coordinators are
    /// unreachable; a refusal means the lease is gone.
    async fn send_commit(
        &self,
        commit: &ShardCommit,
        batch: Option<&CommitBatch>,
    ) -> Result<CommitOutcome, WorkerError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.shared.control.commit_shard(commit, batch).await {
                Ok(outcome) => return Ok(outcome),
                Err(e) if e.is_retryable() => {
                    tracing::warn!(shard = %self.name, error = %e, "commit failed; retrying");
                    // On shutdown the coordinators (in this process, for a
                    // standalone) may be gone for good: stop without the
                    // commit; whoever runs the shard next resumes from the
                    // last accepted checkpoint, so nothing is lost or
                    // committed twice.
                    tokio::select! {
                        () = self.stop.cancelled() => {
                            return Err(self.err(format!(
                                "stopping with a commit unacknowledged ({e}); the shard resumes \
                                 from its last checkpoint"
                            )));
                        }
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(self.catalog_err("committing", e)),
            }
        }
    }

    async fn write_alerts(
        &self,
        hour: i64,
        rows: &[AlertRow],
        first: u64,
        last: u64,
    ) -> Result<NewFile, WorkerError> {
        let file_id = alerts::alerts_file_id(self.id(), self.lease.epoch, first, last, hour);
        alerts::write_alerts_file(
            self.shared.store.as_ref(),
            &self.tenant,
            hour,
            file_id,
            rows,
        )
        .await
        .map_err(|e| self.err(e))
    }
}

//! Retro-hunts: a rule set run over a past time range of one tenant's lake,
//! as a job on the node that accepted it (docs/rules.md, Retro-hunts).
//!
//! A job lists the tenant's `events` files whose time range overlaps
//! `[from, to)` from the catalog, in catalog order, and evaluates each with
//! the evaluator the live shards use ([`super::evaluate::evaluate`]) and one
//! fresh [`Correlator`] for the whole job (windows in event time, one key
//! bucket). Once every file is read, the open windows close
//! ([`Correlator::finish`]): the range is history, no more events come.
//! An alert is kept when all its events are inside `[from, to)`.
//!
//! Alerts are committed as `alerts` files through an ordinary catalog
//! commit (no source checkpoints), every `files_per_commit` files or
//! `alerts_per_commit` alerts, so a running job's results show in SQL as it
//! goes. They carry `origin = 'retro_hunt'` and `shard = 'retro:<job id>'`.
//!
//! Alert ids: a hash of the job id and the id the evaluator gives the alert
//! (the live path's id, itself derived from rule, version, group and
//! events). So they differ from the live alerts' ids (a retro-hunt is a run
//! of its own, not a replay of the live one) and from every other job's,
//! and are the same when the same job runs again: a job submitted again
//! under its id (after a failure, a cancellation or the loss of the node
//! that ran it) first reads the alert ids it committed before and commits
//! only the others, so no id is ever committed twice.
//!
//! A dry run (`HuntSpec::dry_run`: "test this rule") evaluates exactly
//! the same way and commits nothing: it counts the alerts it finds and
//! keeps the first [`DRY_RUN_SAMPLE`] of them in its progress, for the
//! analyst to read.
//!
//! Jobs live in memory on their node ([`RetroHunts`]); a restart of the
//! node forgets them (what they committed stays).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::{Array, StringArray};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use spoor_common::catalog::{Catalog, CatalogFile, CommitBatch, FileQuery, NewFile};
use spoor_common::schema::{Table, alert_col};
use spoor_common::tenant::TenantId;
use tokio_util::sync::CancellationToken;

use super::alerts::{self, AlertRow, RuleKind};
use super::evaluate::{FileContext, evaluate};
use crate::engine::Engine;
use crate::window::{Correlator, Output, WindowOptions};

/// The `origin` of a retro-hunt's alerts.
pub const ORIGIN: &str = "retro_hunt";

/// The `shard` column of a job's alerts.
pub fn shard_name(job_id: &str) -> String {
    format!("retro:{job_id}")
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Accepted, not started.
    Queued,
    /// Reading files.
    Running,
    /// Every file read, every alert committed.
    Done,
    /// Stopped by an error (see `error`); what was committed stays.
    Failed,
    /// Stopped on request between two files; what was found so far is
    /// committed.
    Cancelled,
}

impl JobState {
    /// The state's name, as the API shows it.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether the job has stopped.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A job's progress, as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Where the job is.
    pub state: JobState,
    /// Events files overlapping the range (known once the job runs).
    pub files_total: u64,
    /// Events files evaluated.
    pub files_done: u64,
    /// Events evaluated (every row of the files read, inside the range or not).
    pub events_evaluated: u64,
    /// Alerts found inside the range (committed by an earlier run of the
    /// same job included).
    pub alerts_found: u64,
    /// Alerts this run committed.
    pub alerts_committed: u64,
    /// Alerts an earlier run of the same job had committed already.
    pub alerts_already_committed: u64,
    /// When the job started, µs.
    pub started_at_micros: Option<i64>,
    /// When it stopped, µs.
    pub finished_at_micros: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    /// A dry run's first alerts (at most [`DRY_RUN_SAMPLE`]); empty for a
    /// job that commits.
    pub sample: Vec<AlertRow>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            state: JobState::Queued,
            files_total: 0,
            files_done: 0,
            events_evaluated: 0,
            alerts_found: 0,
            alerts_committed: 0,
            alerts_already_committed: 0,
            started_at_micros: None,
            finished_at_micros: None,
            error: None,
            sample: Vec::new(),
        }
    }
}

/// What a job runs.
#[derive(Clone)]
pub struct HuntSpec {
    /// The job's id (letters, digits, `-`, `_`; 1–64 bytes).
    pub job_id: String,
    /// The tenant whose lake is searched.
    pub tenant: TenantId,
    /// The rule set's name (its `rule_set` column).
    pub rule_set: String,
    /// The rule set's version (0 for rules sent with the job).
    pub rule_set_version: u64,
    /// The compiled rules.
    pub engine: Arc<Engine>,
    /// Start of the range, inclusive, µs.
    pub from_micros: i64,
    /// End of the range, exclusive, µs.
    pub to_micros: i64,
    /// Find and count the alerts, commit none (a rule's test).
    pub dry_run: bool,
}

/// Alerts a dry run keeps to show, at most.
pub const DRY_RUN_SAMPLE: usize = 50;

/// Whether a job id is acceptable: 1–64 bytes of ASCII letters, digits,
/// `-` and `_`.
pub fn valid_job_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A new job id, unique on this node and, with the node id in it, in the
/// cluster: `rh-` and 16 hex digits.
pub fn new_job_id(node_id: u64) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    h.update(node_id.to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    h.update(spoor_common::time::now_micros().to_be_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    format!("rh-{}", hex::encode(&h.finalize()[..8]))
}

/// An RFC 3339 time (`2026-11-30T08:00:00Z`, any offset) in µs.
pub fn parse_time(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_micros())
        .map_err(|e| e.to_string())
}

/// The id of a job's alert: the job id and the evaluator's id.
pub fn retro_alert_id(job_id: &str, evaluator_id: &str) -> String {
    let mut h = Sha256::new();
    for part in [ORIGIN, job_id, evaluator_id] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// How jobs run.
#[derive(Debug, Clone)]
pub struct HuntSettings {
    /// Commit found alerts after this many files.
    pub files_per_commit: usize,
    /// ... or as soon as this many alerts wait.
    pub alerts_per_commit: usize,
    /// Allowed lateness of correlation matches, µs (as live).
    pub allowed_lateness_micros: i64,
    /// Correlation matches kept per job.
    pub max_window_entries: usize,
}

impl Default for HuntSettings {
    fn default() -> Self {
        let window = WindowOptions::default();
        HuntSettings {
            files_per_commit: 16,
            alerts_per_commit: 10_000,
            allowed_lateness_micros: window.allowed_lateness_micros,
            max_window_entries: window.max_entries,
        }
    }
}

/// A job: what it runs and how far it is.
pub struct Job {
    /// Its id.
    pub job_id: String,
    /// Its tenant.
    pub tenant: TenantId,
    /// The rule set.
    pub rule_set: String,
    /// The rule set's version.
    pub rule_set_version: u64,
    /// Start of the range, inclusive, µs.
    pub from_micros: i64,
    /// End of the range, exclusive, µs.
    pub to_micros: i64,
    /// When it was accepted, µs.
    pub submitted_at_micros: i64,
    /// Whether it commits nothing ([`HuntSpec::dry_run`]).
    pub dry_run: bool,
    progress: Mutex<Progress>,
    cancel: CancellationToken,
}

impl Job {
    /// A queued job for `spec`.
    pub fn new(spec: &HuntSpec) -> Job {
        jobs_gauge(JobState::Queued, 1.0);
        Job {
            job_id: spec.job_id.clone(),
            tenant: spec.tenant.clone(),
            rule_set: spec.rule_set.clone(),
            rule_set_version: spec.rule_set_version,
            from_micros: spec.from_micros,
            to_micros: spec.to_micros,
            submitted_at_micros: spoor_common::time::now_micros(),
            dry_run: spec.dry_run,
            progress: Mutex::new(Progress::default()),
            cancel: CancellationToken::new(),
        }
    }

    /// Its progress now.
    pub fn progress(&self) -> Progress {
        self.progress
            .lock()
            .map(|p| p.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        let mut guard = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard);
    }

    /// Asks the job to stop after the file it is reading. Returns whether
    /// it was still queued or running.
    pub fn cancel(&self) -> bool {
        self.cancel.cancel();
        !self.progress().state.is_finished()
    }
}

/// How a run ended, before it is recorded.
enum Ending {
    Done,
    Cancelled,
}

/// Runs jobs against the catalog and the lake.
pub struct RetroHunter {
    catalog: Arc<dyn Catalog>,
    store: Arc<dyn ObjectStore>,
    settings: HuntSettings,
}

/// Alerts found and not yet committed.
#[derive(Default)]
struct Pending {
    alerts: Vec<AlertRow>,
    files: usize,
}

impl RetroHunter {
    /// A runner over `catalog` and `store`.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        store: Arc<dyn ObjectStore>,
        settings: HuntSettings,
    ) -> RetroHunter {
        RetroHunter {
            catalog,
            store,
            settings,
        }
    }

    /// Runs `spec` to its end, recording progress and the final state in
    /// `job`.
    pub async fn run(&self, spec: HuntSpec, job: &Job) {
        job.update(|p| {
            set_state(p, JobState::Running);
            p.started_at_micros = Some(spoor_common::time::now_micros());
        });
        tracing::info!(job = spec.job_id, tenant = %spec.tenant, rule_set = spec.rule_set, from = spec.from_micros, to = spec.to_micros, "retro-hunt started");
        let result = self.run_inner(&spec, job).await;
        let now = spoor_common::time::now_micros();
        job.update(|p| {
            p.finished_at_micros = Some(now);
            match &result {
                Ok(Ending::Done) => set_state(p, JobState::Done),
                Ok(Ending::Cancelled) => set_state(p, JobState::Cancelled),
                Err(e) => {
                    set_state(p, JobState::Failed);
                    p.error = Some(e.clone());
                }
            }
        });
        let p = job.progress();
        match &result {
            Err(e) => {
                tracing::warn!(job = spec.job_id, error = %e, files_done = p.files_done, "retro-hunt failed");
            }
            Ok(_) => {
                tracing::info!(
                    job = spec.job_id,
                    state = p.state.name(),
                    files = p.files_done,
                    events = p.events_evaluated,
                    alerts = p.alerts_found,
                    "retro-hunt finished"
                );
            }
        }
    }

    async fn run_inner(&self, spec: &HuntSpec, job: &Job) -> Result<Ending, String> {
        let job_id = &spec.job_id;
        let shard = shard_name(job_id);
        let committed_before = self.committed_ids(spec, &shard).await?;
        let files = self.files_in_range(spec, Table::Events).await?;
        job.update(|p| p.files_total = files.len() as u64);
        // Object keys of this run: a run of its own, so that a second run
        // of the job never overwrites an object the first one committed.
        let run = new_job_id(0);
        let mut chunk = 0u64;
        let mut correlator = self.correlator(&spec.engine);
        let mut pending = Pending::default();
        let mut seen = committed_before;
        for file in &files {
            if job.cancel.is_cancelled() {
                self.flush(spec, job, &run, &mut chunk, &mut pending)
                    .await?;
                return Ok(Ending::Cancelled);
            }
            let (found, rows) = self
                .evaluate_file(spec, file, &shard, &mut correlator)
                .await?;
            let kept = self.keep(spec, found, &mut seen, job);
            pending.alerts.extend(kept);
            pending.files += 1;
            job.update(|p| {
                p.files_done += 1;
                p.events_evaluated += rows as u64;
            });
            metrics::counter!("spoor_retro_hunt_events_total").increment(rows as u64);
            if pending.files >= self.settings.files_per_commit
                || pending.alerts.len() >= self.settings.alerts_per_commit
            {
                self.flush(spec, job, &run, &mut chunk, &mut pending)
                    .await?;
            }
        }
        // The range is history: every open window closes now.
        let closing = self.close_windows(spec, &shard, &mut correlator);
        let kept = self.keep(spec, closing, &mut seen, job);
        pending.alerts.extend(kept);
        self.flush(spec, job, &run, &mut chunk, &mut pending)
            .await?;
        Ok(Ending::Done)
    }

    fn correlator(&self, engine: &Engine) -> Correlator {
        Correlator::new(
            engine,
            WindowOptions {
                allowed_lateness_micros: self.settings.allowed_lateness_micros,
                max_entries: self.settings.max_window_entries,
            },
        )
    }

    /// The alerts inside the range, with the job's ids, that no earlier run
    /// of the job committed.
    fn keep(
        &self,
        spec: &HuntSpec,
        found: Vec<AlertRow>,
        seen: &mut HashSet<String>,
        job: &Job,
    ) -> Vec<AlertRow> {
        let mut kept = Vec::new();
        let mut inside = 0u64;
        let mut before = 0u64;
        for mut alert in found {
            if alert.first_event_micros < spec.from_micros
                || alert.last_event_micros >= spec.to_micros
            {
                continue;
            }
            inside += 1;
            alert.alert_id = retro_alert_id(&spec.job_id, &alert.alert_id);
            if seen.insert(alert.alert_id.clone()) {
                kept.push(alert);
            } else {
                before += 1;
            }
        }
        job.update(|p| {
            p.alerts_found += inside;
            p.alerts_already_committed += before;
        });
        metrics::counter!("spoor_retro_hunt_alerts_total").increment(inside);
        kept
    }

    /// Evaluates one events file: its alerts (ids as the evaluator gives
    /// them) and rows.
    async fn evaluate_file(
        &self,
        spec: &HuntSpec,
        file: &CatalogFile,
        shard: &str,
        correlator: &mut Correlator,
    ) -> Result<(Vec<AlertRow>, usize), String> {
        let key = file.file.object_key.clone();
        let bytes = self
            .store
            .get(&ObjectPath::from(key.as_str()))
            .await
            .map_err(|e| not_readable(&key, &e))?
            .bytes()
            .await
            .map_err(|e| not_readable(&key, &e))?;
        let context = FileContext {
            file_id: file.file.file_id.clone(),
            bucket: 0,
            buckets: 1,
            rule_set: spec.rule_set.clone(),
            rule_set_version: spec.rule_set_version,
            shard: shard.to_string(),
            origin: ORIGIN,
        };
        let engine = spec.engine.clone();
        // CPU work, off the async threads; the correlator moves in and back.
        let mut owned = std::mem::replace(correlator, self.correlator(&spec.engine));
        let (owned, result) = tokio::task::spawn_blocking(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                evaluate(&engine, &mut owned, bytes, &context)
            }));
            (owned, result)
        })
        .await
        .map_err(|e| format!("evaluating events file {key}: {e}"))?;
        *correlator = owned;
        match result {
            Ok(Ok((found, _, rows))) => Ok((found, rows)),
            Ok(Err(e)) => Err(format!("events file {key}: {e}")),
            Err(_) => Err(format!("evaluating events file {key} panicked")),
        }
    }

    /// The alerts of the windows still open at the end of the data.
    fn close_windows(
        &self,
        spec: &HuntSpec,
        shard: &str,
        correlator: &mut Correlator,
    ) -> Vec<AlertRow> {
        correlator
            .finish()
            .into_iter()
            .filter_map(|output| match output {
                Output::Alert(a) => {
                    let info = &spec.engine.correlations.get(a.correlation)?.info;
                    Some(AlertRow {
                        alert_id: a.id,
                        rule_id: info.key().to_string(),
                        rule_version: info.version.clone(),
                        rule_title: info.title.clone(),
                        rule_level: info.level.clone(),
                        rule_tags: info.tags.clone(),
                        rule_set: spec.rule_set.clone(),
                        rule_set_version: spec.rule_set_version,
                        rule_kind: RuleKind::Correlation,
                        group_key: a.group,
                        first_event_micros: a.first,
                        last_event_micros: a.last,
                        event_count: a.events.len() as u64,
                        value: Some(a.value),
                        event_refs: a.events,
                        origin: ORIGIN.into(),
                        shard: shard.to_string(),
                        detected_at_micros: 0,
                        ingested_micros: 0,
                    })
                }
                Output::Late { .. } | Output::Evicted { .. } => None,
            })
            .collect()
    }

    /// The tenant's files of `table` overlapping the job's range.
    async fn files_in_range(
        &self,
        spec: &HuntSpec,
        table: Table,
    ) -> Result<Vec<spoor_common::catalog::CatalogFile>, String> {
        self.catalog
            .list_files(FileQuery {
                tenant: spec.tenant.clone(),
                table,
                min_time_micros: Some(spec.from_micros),
                max_time_micros: Some(spec.to_micros.saturating_sub(1)),
            })
            .await
            .map_err(|e| {
                format!(
                    "listing the {} files of tenant {}: {e}",
                    table.name(),
                    spec.tenant
                )
            })
    }

    /// The alert ids earlier runs of the job committed: its rows among the
    /// tenant's alerts files of the range (an alert's time, its last event,
    /// is inside the range).
    async fn committed_ids(&self, spec: &HuntSpec, shard: &str) -> Result<HashSet<String>, String> {
        let files = self.files_in_range(spec, Table::Alerts).await?;
        let mut ids = HashSet::new();
        for file in files {
            let key = file.file.object_key;
            let bytes = self
                .store
                .get(&ObjectPath::from(key.as_str()))
                .await
                .map_err(|e| not_readable(&key, &e))?
                .bytes()
                .await
                .map_err(|e| not_readable(&key, &e))?;
            let batches = tokio::task::spawn_blocking(move || super::files::decode(bytes))
                .await
                .map_err(|e| format!("reading alerts file {key}: {e}"))?
                .map_err(|e| format!("alerts file {key}: {e}"))?;
            for batch in batches {
                let column = |name: &str| {
                    batch
                        .column_by_name(name)
                        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                };
                let (Some(id), Some(sh)) = (column(alert_col::ALERT_ID), column(alert_col::SHARD))
                else {
                    continue;
                };
                for row in 0..batch.num_rows() {
                    if sh.is_valid(row) && sh.value(row) == shard && id.is_valid(row) {
                        ids.insert(id.value(row).to_string());
                    }
                }
            }
        }
        Ok(ids)
    }

    /// Commits the pending alerts (if any) as one catalog commit.
    async fn flush(
        &self,
        spec: &HuntSpec,
        job: &Job,
        run: &str,
        chunk: &mut u64,
        pending: &mut Pending,
    ) -> Result<(), String> {
        let taken = std::mem::take(pending);
        if taken.alerts.is_empty() {
            return Ok(());
        }
        if spec.dry_run {
            job.update(|p| {
                let room = DRY_RUN_SAMPLE.saturating_sub(p.sample.len());
                p.sample.extend(taken.alerts.into_iter().take(room));
            });
            return Ok(());
        }
        let count = taken.alerts.len() as u64;
        let detected_at = spoor_common::time::now_micros();
        let mut files = Vec::new();
        for (hour, mut rows) in alerts::by_hour(taken.alerts) {
            for r in &mut rows {
                r.detected_at_micros = detected_at;
            }
            files.push(self.write_alerts(spec, run, *chunk, hour, &rows).await?);
        }
        let batch = CommitBatch {
            files,
            checkpoints: Vec::new(),
        };
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            match self.catalog.commit_batch(batch.clone()).await {
                Ok(_) => break,
                Err(e) if e.is_retryable() && attempts < 20 => {
                    attempts += 1;
                    tracing::warn!(job = spec.job_id, error = %e, "committing retro-hunt alerts failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(format!("committing {count} alerts: {e}")),
            }
        }
        *chunk += 1;
        job.update(|p| p.alerts_committed += count);
        Ok(())
    }

    async fn write_alerts(
        &self,
        spec: &HuntSpec,
        run: &str,
        chunk: u64,
        hour: i64,
        rows: &[AlertRow],
    ) -> Result<NewFile, String> {
        let file_id = alerts_file_id(&spec.tenant, &spec.job_id, run, chunk, hour);
        alerts::write_alerts_file(self.store.as_ref(), &spec.tenant, hour, file_id, rows).await
    }
}

fn not_readable(key: &str, e: &object_store::Error) -> String {
    match e {
        object_store::Error::NotFound { .. } => format!(
            "file {key} is gone (compacted or removed by retention while the job ran); \
             submit the job again with its job_id: it resumes without duplicating alerts"
        ),
        other => format!("reading {key}: {other}"),
    }
}

/// The id of an alerts file of a job's run.
fn alerts_file_id(tenant: &TenantId, job_id: &str, run: &str, chunk: u64, hour: i64) -> String {
    let mut h = Sha256::new();
    for part in [
        b"retro-alerts".as_slice(),
        tenant.as_str().as_bytes(),
        job_id.as_bytes(),
        run.as_bytes(),
        &chunk.to_be_bytes(),
        &hour.to_be_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(&h.finalize()[..16])
}

/// Why a job was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// As many jobs as allowed run on this node.
    #[error(
        "{running} retro-hunt(s) already run on this node, the most allowed (retro_hunt.max_concurrent_jobs); wait for one to finish or cancel one"
    )]
    Busy {
        /// Jobs queued or running.
        running: usize,
    },
    /// A job of that id is still running here.
    #[error("retro-hunt {job_id} is still {state} on this node; cancel it first")]
    Running {
        /// The id.
        job_id: String,
        /// Its state.
        state: &'static str,
    },
}

/// The jobs of one node: at most `max_running` at a time, the last
/// `kept` finished ones remembered.
pub struct RetroHunts {
    hunter: Arc<RetroHunter>,
    max_running: usize,
    kept: usize,
    jobs: Arc<Mutex<VecDeque<Arc<Job>>>>,
}

impl RetroHunts {
    /// Finished jobs remembered by default.
    pub const KEPT: usize = 100;

    /// Jobs run by `hunter`, `max_running` at a time.
    pub fn new(hunter: RetroHunter, max_running: usize) -> RetroHunts {
        RetroHunts {
            hunter: Arc::new(hunter),
            max_running: max_running.max(1),
            kept: Self::KEPT,
            jobs: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    /// Accepts `spec` and starts it on its own task. A finished job of the
    /// same id is replaced (the job runs again, committing only alerts its
    /// earlier runs did not).
    pub fn submit(&self, spec: HuntSpec) -> Result<Arc<Job>, SubmitError> {
        let job = Arc::new(Job::new(&spec));
        {
            let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(same) = jobs.iter().find(|j| j.job_id == spec.job_id) {
                let state = same.progress().state;
                if !state.is_finished() {
                    return Err(SubmitError::Running {
                        job_id: spec.job_id.clone(),
                        state: state.name(),
                    });
                }
            }
            let running = jobs
                .iter()
                .filter(|j| !j.progress().state.is_finished())
                .count();
            if running >= self.max_running {
                return Err(SubmitError::Busy { running });
            }
            jobs.retain(|j| {
                let same = j.job_id == spec.job_id;
                if same {
                    jobs_gauge(j.progress().state, -1.0);
                }
                !same
            });
            jobs.push_back(job.clone());
            // Forget the oldest finished jobs beyond the bound.
            while jobs
                .iter()
                .filter(|j| j.progress().state.is_finished())
                .count()
                > self.kept
            {
                let Some(i) = jobs.iter().position(|j| j.progress().state.is_finished()) else {
                    break;
                };
                if let Some(old) = jobs.remove(i) {
                    jobs_gauge(old.progress().state, -1.0);
                }
            }
        }
        let (hunter, running) = (self.hunter.clone(), job.clone());
        tokio::spawn(async move {
            hunter.run(spec, &running).await;
        });
        Ok(job)
    }

    /// The job of that id.
    pub fn get(&self, job_id: &str) -> Option<Arc<Job>> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.iter().find(|j| j.job_id == job_id).cloned()
    }

    /// The tenant's jobs, oldest first.
    pub fn list(&self, tenant: &TenantId) -> Vec<Arc<Job>> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.iter()
            .filter(|j| j.tenant == *tenant)
            .cloned()
            .collect()
    }
}

/// `spoor_retro_hunt_jobs{state}`: the jobs this node remembers, by state.
fn jobs_gauge(state: JobState, change: f64) {
    metrics::gauge!("spoor_retro_hunt_jobs", "state" => state.name()).increment(change);
}

/// Moves a job to `state`, counted in `spoor_retro_hunt_jobs`.
fn set_state(p: &mut Progress, state: JobState) {
    if p.state != state {
        jobs_gauge(p.state, -1.0);
        jobs_gauge(state, 1.0);
        p.state = state;
    }
}

#[cfg(test)]
mod tests;

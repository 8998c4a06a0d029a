//! What the lake keeps, and for how long: retention per tenant, and the
//! [`Janitor`] that deletes objects once no query can still be reading them.
//!
//! - **Retention.** For each registered tenant not under legal hold, every
//!   file of a table with a retention ([`TenantRecord::retention_days_of`]: `events`
//!   partitioned by event time, `dead_letter` by ingest time, `alerts` and
//!   `alert_updates` only when set per table) whose whole hour partition
//!   ended before now − retention is taken out of the catalog
//!   ([`Catalog::remove_files`]). Tenants without a record are never
//!   touched: an unknown retention is not a zero one.
//! - **Deferred deletion.** A file taken out of the catalog (a compaction
//!   input, an expired file) may still be read by a query that listed it
//!   just before. The janitor follows each tenant's catalog changes
//!   ([`Catalog::changes_since`]) and deletes a removed file's object
//!   `delete_grace_ms` after the change's `committed_at_micros`. The history
//!   is in the catalog, so a restart forgets nothing: the cursor lives in
//!   memory and starts, per tenant, at a change committed before the grace
//!   window.
//! - **Orphans.** A crash between a Parquet write and its catalog commit
//!   leaves an object the catalog never listed. The orphan scan deletes
//!   `.parquet` objects under `tenants/{tenant}/{table}/` that the catalog
//!   does not list, that are not waiting out their grace, and whose
//!   last-modified time is older than `orphan_grace_ms`. It also catches any
//!   removed object whose deletion was missed (a node down through its
//!   grace, a share that moved between nodes).
//!
//! Deleting a missing object counts as done, so every step may run twice.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use spoor_common::catalog::{Catalog, CatalogError, FileQuery, FileRemoval};
use spoor_common::control::TenantRecord;
use spoor_common::layout;
use spoor_common::schema::Table;
use spoor_common::tenant::TenantId;

use crate::compaction::{Assignment, HOUR_MICROS, MaintenanceError, partition_of};

/// Microseconds in a day.
const DAY_MICROS: i64 = 24 * HOUR_MICROS;

/// Files per retention removal: keeps one Raft entry reasonably small.
const REMOVAL_CHUNK: usize = 1000;

/// Changes read per `changes_since` call while following a tenant.
const CHANGES_PAGE: usize = 1000;

/// Why an object was deleted (the `reason` label of
/// `spoor_ingest_objects_deleted_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeleteReason {
    /// A compaction input, after the swap's grace.
    Compacted,
    /// A file retention (or another removal) took out, after the grace.
    Retention,
    /// An object the catalog never listed, older than the orphan grace.
    Orphan,
    /// A compaction output whose swap lost to another change.
    UncommittedOutput,
}

impl DeleteReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            DeleteReason::Compacted => "compacted",
            DeleteReason::Retention => "retention",
            DeleteReason::Orphan => "orphan",
            DeleteReason::UncommittedOutput => "uncommitted_output",
        }
    }
}

/// Deletes one object; a missing one counts as deleted (a retry, or another
/// node was first).
pub async fn delete_object(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    reason: DeleteReason,
) -> Result<(), MaintenanceError> {
    match store.delete(&ObjectPath::from(key)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {
            metrics::counter!("spoor_ingest_objects_deleted_total", "reason" => reason.label())
                .increment(1);
            tracing::debug!(key, reason = reason.label(), "deleted object");
            Ok(())
        }
        Err(source) => Err(MaintenanceError::Store {
            context: "deleting",
            key: key.to_string(),
            source,
        }),
    }
}

/// How many things a step did, and how many of its parts failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepOutcome {
    /// Files removed or objects deleted.
    pub removed: usize,
    /// Objects deleted (janitor steps).
    pub deleted: usize,
    /// Failures (logged); the next round tries again.
    pub errors: usize,
}

/// The start of the newest hour partition retention removes whole: every
/// partition starting before it has ended by `now − retention_days`.
pub fn retention_cutoff_micros(retention_days: u32, now_micros: i64) -> i64 {
    now_micros.saturating_sub(i64::from(retention_days).saturating_mul(DAY_MICROS))
}

/// Whether the hour partition starting at `hour_micros` has wholly expired.
fn expired(hour_micros: i64, cutoff_micros: i64) -> bool {
    hour_micros.saturating_add(HOUR_MICROS) <= cutoff_micros
}

/// Takes every expired file of every tenant in `tenants` with a retention
/// out of the catalog, for the partitions this node owns.
pub async fn apply_retention(
    catalog: &dyn Catalog,
    tenants: &[TenantRecord],
    assignment: &Assignment,
    now_micros: i64,
) -> StepOutcome {
    let mut outcome = StepOutcome::default();
    for record in tenants {
        if record.legal_hold {
            // Counted so an operator sees the hold acting.
            metrics::counter!("spoor_ingest_retention_held_rounds_total").increment(1);
            continue;
        }
        match retain_tenant(catalog, record, assignment, now_micros).await {
            Ok(n) => outcome.removed += n,
            Err(e) => {
                outcome.errors += 1;
                tracing::warn!(error = %e, tenant = %record.id, "retention failed; retrying next round");
            }
        }
    }
    outcome
}

async fn retain_tenant(
    catalog: &dyn Catalog,
    record: &TenantRecord,
    assignment: &Assignment,
    now_micros: i64,
) -> Result<usize, MaintenanceError> {
    let mut removed = 0;
    for table in Table::ALL {
        let days = record.retention_days_of(table);
        if days > 0 {
            removed += retain_table(catalog, record, table, days, assignment, now_micros).await?;
        }
    }
    Ok(removed)
}

async fn retain_table(
    catalog: &dyn Catalog,
    record: &TenantRecord,
    table: Table,
    days: u32,
    assignment: &Assignment,
    now_micros: i64,
) -> Result<usize, MaintenanceError> {
    let cutoff = retention_cutoff_micros(days, now_micros);
    let mut expired_ids = Vec::new();
    {
        let query = FileQuery {
            max_time_micros: Some(cutoff),
            ..FileQuery::all(record.id.clone(), table)
        };
        let files =
            catalog
                .list_files(query)
                .await
                .map_err(|source| MaintenanceError::Catalog {
                    context: format!("listing {}/{table} for retention", record.id),
                    source,
                })?;
        expired_ids.extend(
            files
                .into_iter()
                .filter(|f| expired(layout::hour_start_micros(f.file.min_time_micros), cutoff))
                .filter(|f| assignment.owns(partition_of(&f.file.object_key)))
                .map(|f| f.file.file_id),
        );
    }
    let mut removed = 0;
    for chunk in expired_ids.chunks(REMOVAL_CHUNK) {
        let out = catalog
            .remove_files(FileRemoval {
                tenant: record.id.clone(),
                file_ids: chunk.to_vec(),
                reason: format!("retention of {table}: {days}d"),
            })
            .await
            .map_err(|source| MaintenanceError::Catalog {
                context: format!("removing expired files of {}", record.id),
                source,
            })?;
        removed += out.removed.len();
        metrics::counter!("spoor_ingest_retention_removed_files_total")
            .increment(out.removed.len() as u64);
    }
    if removed > 0 {
        tracing::info!(
            tenant = %record.id,
            %table,
            files = removed,
            retention_days = days,
            "retention removed expired files"
        );
    }
    Ok(removed)
}

/// An object waiting out its grace before deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PendingDelete {
    tenant: TenantId,
    table: Table,
    due_micros: i64,
    reason: DeleteReason,
}

/// Deletes objects the catalog no longer lists, once no query can still be
/// reading them, and orphans nobody committed.
pub struct Janitor {
    catalog: Arc<dyn Catalog>,
    store: Arc<dyn ObjectStore>,
    grace_micros: i64,
    /// Per tenant: the last change sequence read.
    cursors: BTreeMap<TenantId, u64>,
    /// Object key → when and why to delete it.
    pending: BTreeMap<String, PendingDelete>,
}

impl std::fmt::Debug for Janitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Janitor")
            .field("grace_micros", &self.grace_micros)
            .field("cursors", &self.cursors)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Janitor {
    /// A janitor deleting removed objects `grace` after their removal.
    pub fn new(catalog: Arc<dyn Catalog>, store: Arc<dyn ObjectStore>, grace: Duration) -> Self {
        Janitor {
            catalog,
            store,
            grace_micros: i64::try_from(grace.as_micros()).unwrap_or(i64::MAX),
            cursors: BTreeMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// Tenants whose changes this janitor follows.
    pub fn known_tenants(&self) -> BTreeSet<TenantId> {
        self.cursors.keys().cloned().collect()
    }

    /// Object keys waiting out their grace.
    pub fn pending_keys(&self) -> Vec<String> {
        self.pending.keys().cloned().collect()
    }

    /// Reads `tenant`'s changes since the last call and schedules the
    /// deletion of every removed file's object.
    pub async fn poll(
        &mut self,
        tenant: &TenantId,
        now_micros: i64,
    ) -> Result<(), MaintenanceError> {
        let catalog_err = |source| MaintenanceError::Catalog {
            context: format!("following the changes of {tenant}"),
            source,
        };
        let mut cursor = match self.cursors.get(tenant) {
            Some(c) => *c,
            None => self
                .start_cursor(tenant, now_micros.saturating_sub(self.grace_micros))
                .await
                .map_err(catalog_err)?,
        };
        loop {
            let page = match self
                .catalog
                .changes_since(tenant, cursor, CHANGES_PAGE)
                .await
            {
                Ok(page) => page,
                Err(CatalogError::HistoryCompacted { reason }) => {
                    // Fell more than the kept history behind: start again
                    // from the grace window; what was skipped is past its
                    // grace and the orphan scan deletes it.
                    tracing::warn!(%reason, tenant = %tenant, "catalog history moved on; re-reading the grace window");
                    self.cursors.remove(tenant);
                    return Ok(());
                }
                Err(e) => return Err(catalog_err(e)),
            };
            if page.changes.is_empty() {
                break;
            }
            for change in page.changes {
                // A change that also added files is a compaction swap.
                let reason = if change.added.is_empty() {
                    DeleteReason::Retention
                } else {
                    DeleteReason::Compacted
                };
                for removed in change.removed {
                    self.pending.insert(
                        removed.object_key,
                        PendingDelete {
                            tenant: tenant.clone(),
                            table: removed.table,
                            due_micros: change
                                .committed_at_micros
                                .saturating_add(self.grace_micros),
                            reason,
                        },
                    );
                }
                cursor = change.last_sequence;
            }
        }
        self.cursors.insert(tenant.clone(), cursor);
        Ok(())
    }

    /// A sequence to follow `tenant` from after a start: one whose next
    /// change was committed before `horizon_micros`, so every removal whose
    /// grace is still running is read. Probes backwards from the newest
    /// change in growing steps, a handful of one-change reads.
    async fn start_cursor(
        &self,
        tenant: &TenantId,
        horizon_micros: i64,
    ) -> Result<u64, CatalogError> {
        // Far past the end: only the tenant's last sequence comes back.
        let last = self
            .catalog
            .changes_since(tenant, i64::MAX as u64, 1)
            .await?
            .last_sequence;
        let mut newer = last;
        let mut step = 16u64;
        loop {
            let probe = last.saturating_sub(step);
            match self.catalog.changes_since(tenant, probe, 1).await {
                Ok(page) => match page.changes.first() {
                    Some(c) if c.committed_at_micros > horizon_micros && probe > 0 => {
                        newer = probe;
                        step = step.saturating_mul(4);
                    }
                    _ => return Ok(probe),
                },
                Err(CatalogError::HistoryCompacted { .. }) => {
                    // The oldest kept change lies between `probe` (gone) and
                    // `newer` (kept): find it, and start there.
                    let (mut gone, mut kept) = (probe, newer);
                    while kept - gone > 1 {
                        let mid = gone + (kept - gone) / 2;
                        match self.catalog.changes_since(tenant, mid, 1).await {
                            Ok(_) => kept = mid,
                            Err(CatalogError::HistoryCompacted { .. }) => gone = mid,
                            Err(e) => return Err(e),
                        }
                    }
                    return Ok(kept);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Deletes every pending object whose grace has passed and whose
    /// partition this node owns (the owner deletes the others; a missed one
    /// is an orphan for the scan). Never deletes an object the catalog
    /// lists again.
    pub async fn delete_due(&mut self, now_micros: i64, assignment: &Assignment) -> StepOutcome {
        let mut outcome = StepOutcome::default();
        let due: Vec<(String, PendingDelete)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due_micros <= now_micros)
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect();
        let mut by_table: BTreeMap<(TenantId, Table), Vec<(String, DeleteReason)>> =
            BTreeMap::new();
        for (key, p) in due {
            if assignment.owns(partition_of(&key)) {
                by_table
                    .entry((p.tenant, p.table))
                    .or_default()
                    .push((key, p.reason));
            } else {
                self.pending.remove(&key);
            }
        }
        for ((tenant, table), keys) in by_table {
            let listed: HashSet<String> = match self
                .catalog
                .list_files(FileQuery::all(tenant.clone(), table))
                .await
            {
                Ok(files) => files.into_iter().map(|f| f.file.object_key).collect(),
                Err(e) => {
                    outcome.errors += 1;
                    tracing::warn!(error = %e, tenant = %tenant, "cannot confirm removed files are unlisted; deleting them next round");
                    continue;
                }
            };
            for (key, reason) in keys {
                if listed.contains(&key) {
                    // A listing from a lagging replica may still show a
                    // removed file: look again after another grace rather
                    // than delete, or give up, now.
                    if let Some(p) = self.pending.get_mut(&key) {
                        p.due_micros = now_micros.saturating_add(self.grace_micros);
                    }
                    continue;
                }
                match delete_object(&self.store, &key, reason).await {
                    Ok(()) => {
                        self.pending.remove(&key);
                        outcome.deleted += 1;
                    }
                    Err(e) => {
                        outcome.errors += 1;
                        tracing::warn!(error = %e, "deleting a removed file failed; retrying next round");
                    }
                }
            }
        }
        outcome
    }

    /// Deletes orphans of the tenants this node owns: `.parquet` objects
    /// under a tenant's table prefixes that the catalog does not list, that
    /// are not waiting out a grace, and that are older than `orphan_grace`.
    pub async fn sweep_orphans(
        &mut self,
        now_micros: i64,
        orphan_grace: Duration,
        assignment: &Assignment,
    ) -> StepOutcome {
        let mut outcome = StepOutcome::default();
        let root = ObjectPath::from("tenants");
        let listing = match self.store.list_with_delimiter(Some(&root)).await {
            Ok(l) => l,
            Err(e) => {
                outcome.errors += 1;
                tracing::warn!(error = %e, "listing the lake's tenants failed; orphan scan skipped");
                return outcome;
            }
        };
        let grace = i64::try_from(orphan_grace.as_micros()).unwrap_or(i64::MAX);
        for prefix in listing.common_prefixes {
            let Some(name) = prefix.filename() else {
                continue;
            };
            let Ok(tenant) = TenantId::new(name.to_string()) else {
                tracing::warn!(prefix = %prefix, "not a tenant folder; left alone");
                continue;
            };
            if !assignment.owns(&format!("tenants/{tenant}")) {
                continue;
            }
            match self.sweep_tenant(&tenant, now_micros, grace).await {
                Ok(n) => outcome.deleted += n,
                Err(e) => {
                    outcome.errors += 1;
                    tracing::warn!(error = %e, tenant = %tenant, "orphan scan failed");
                }
            }
        }
        outcome
    }

    async fn sweep_tenant(
        &mut self,
        tenant: &TenantId,
        now_micros: i64,
        grace_micros: i64,
    ) -> Result<usize, MaintenanceError> {
        // Order matters: list the catalog first, then read its changes. A
        // file removed after the listing is then pending (its grace runs),
        // not an orphan.
        let mut listed = HashSet::new();
        for table in Table::ALL {
            let files = self
                .catalog
                .list_files(FileQuery::all(tenant.clone(), table))
                .await
                .map_err(|source| MaintenanceError::Catalog {
                    context: format!("listing {tenant}/{table} for the orphan scan"),
                    source,
                })?;
            listed.extend(files.into_iter().map(|f| f.file.object_key));
        }
        self.poll(tenant, now_micros).await?;
        let mut deleted = 0;
        for table in Table::ALL {
            let prefix = layout::table_prefix(tenant, table);
            let mut objects = self.store.list(Some(&ObjectPath::from(prefix.as_str())));
            let mut orphans = Vec::new();
            while let Some(meta) = objects.next().await {
                let meta = meta.map_err(|source| MaintenanceError::Store {
                    context: "listing",
                    key: prefix.clone(),
                    source,
                })?;
                let key = meta.location.to_string();
                let age = now_micros.saturating_sub(meta.last_modified.timestamp_micros());
                if key.ends_with(".parquet")
                    && !listed.contains(&key)
                    && !self.pending.contains_key(&key)
                    && age > grace_micros
                {
                    orphans.push(key);
                }
            }
            for key in orphans {
                tracing::info!(key = %key, "deleting an orphan object the catalog never listed");
                delete_object(&self.store, &key, DeleteReason::Orphan).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use object_store::{ObjectStoreExt, PutPayload};
    use spoor_common::control::TenantRecord;

    use super::*;
    use crate::compaction::testkit::{HOUR_07, Lake, tenant};

    const GRACE: Duration = Duration::from_secs(600);

    fn now() -> i64 {
        spoor_common::time::now_micros()
    }

    fn record(name: &str, days: u32) -> TenantRecord {
        TenantRecord {
            retention_days: days,
            ..TenantRecord::new(tenant(name))
        }
    }

    #[test]
    fn each_table_has_its_retention_and_a_legal_hold_keeps_all() {
        let mut t = record("acme", 30);
        assert_eq!(t.retention_days_of(Table::Events), 30);
        assert_eq!(t.retention_days_of(Table::DeadLetter), 30);
        assert_eq!(t.retention_days_of(Table::Alerts), 0, "alerts kept");
        assert_eq!(t.retention_days_of(Table::AlertUpdates), 0);
        t.table_retention_days.insert("dead_letter".into(), 7);
        t.table_retention_days.insert("alerts".into(), 730);
        assert_eq!(t.retention_days_of(Table::DeadLetter), 7);
        assert_eq!(t.retention_days_of(Table::Alerts), 730);
        assert_eq!(
            t.retention_days_of(Table::AlertUpdates),
            730,
            "triage follows its alerts"
        );
        t.legal_hold = true;
        for table in Table::ALL {
            assert_eq!(t.retention_days_of(table), 0, "{table} held");
        }
    }

    #[tokio::test]
    async fn a_legal_hold_stops_retention_and_lifting_it_resumes() {
        let lake = Lake::new();
        let acme = tenant("acme");
        lake.ingest(&acme, HOUR_07, 0, 0, 5).await;
        let catalog = lake.catalog();
        let later = HOUR_07 + 3 * DAY_MICROS;
        let held = TenantRecord {
            legal_hold: true,
            ..record("acme", 1)
        };
        let out = apply_retention(catalog.as_ref(), &[held], &Assignment::All, later).await;
        assert_eq!(out, StepOutcome::default());
        assert_eq!(lake.listed(&acme, Table::Events).await.len(), 1);
        let out = apply_retention(
            catalog.as_ref(),
            &[record("acme", 1)],
            &Assignment::All,
            later,
        )
        .await;
        assert_eq!(out.removed, 2, "events and dead letters: {out:?}");
        assert!(lake.listed(&acme, Table::Events).await.is_empty());
    }

    fn micros(d: Duration) -> i64 {
        i64::try_from(d.as_micros()).expect("fits")
    }

    #[tokio::test]
    async fn retention_removes_whole_expired_partitions_of_known_tenants_only() {
        let lake = Lake::new();
        let hour_08 = HOUR_07 + HOUR_MICROS;
        let (acme, globex, initech) = (tenant("acme"), tenant("globex"), tenant("initech"));
        let old = lake.ingest(&acme, HOUR_07, 0, 0, 5).await;
        let newer = lake.ingest(&acme, hour_08, 1, 0, 5).await;
        lake.ingest(&globex, HOUR_07, 0, 0, 5).await;
        lake.ingest(&initech, HOUR_07, 0, 0, 5).await;
        // acme keeps one day; globex forever; initech has no record at all.
        let tenants = vec![record("acme", 1), record("globex", 0)];
        let catalog = lake.catalog();

        // One microsecond before hour 07 has wholly expired: nothing goes.
        let boundary = hour_08 + DAY_MICROS;
        let out = apply_retention(catalog.as_ref(), &tenants, &Assignment::All, boundary - 1).await;
        assert_eq!(out, StepOutcome::default());
        assert_eq!(lake.listed(&acme, Table::Events).await.len(), 2);

        // At the boundary hour 07 (events and dead letters) goes, hour 08 stays.
        let out = apply_retention(catalog.as_ref(), &tenants, &Assignment::All, boundary).await;
        assert_eq!(out.removed, 2, "{out:?}");
        assert_eq!(out.errors, 0);
        let events = lake.listed(&acme, Table::Events).await;
        assert_eq!(events.len(), 1);
        assert!(events[0].file.object_key.contains("hour=08"));
        let dead = lake.listed(&acme, Table::DeadLetter).await;
        assert_eq!(dead.len(), 1);
        assert!(dead[0].file.object_key.contains("hour=08"));
        assert_eq!(events[0].file, newer[0]);
        // Others untouched, however old their files.
        assert_eq!(lake.listed(&globex, Table::Events).await.len(), 1);
        assert_eq!(lake.listed(&initech, Table::Events).await.len(), 1);
        assert_eq!(lake.listed(&initech, Table::DeadLetter).await.len(), 1);
        // Again: nothing more to do.
        let again = apply_retention(catalog.as_ref(), &tenants, &Assignment::All, boundary).await;
        assert_eq!(again.removed, 0);

        // The objects go only after the grace, counted from the removal.
        let mut janitor = Janitor::new(catalog.clone(), lake.store.clone(), GRACE);
        let t0 = now();
        janitor.poll(&acme, t0).await.expect("poll");
        let mut pending = janitor.pending_keys();
        pending.sort();
        let mut removed: Vec<String> = old.iter().map(|f| f.object_key.clone()).collect();
        removed.sort();
        assert_eq!(pending, removed);
        assert_eq!(janitor.delete_due(t0, &Assignment::All).await.deleted, 0);
        for f in &old {
            assert!(lake.exists(&f.object_key).await);
        }
        let later = t0 + micros(GRACE) + 1_000_000;
        let done = janitor.delete_due(later, &Assignment::All).await;
        assert_eq!(done.deleted, 2, "{done:?}");
        for f in &old {
            assert!(!lake.exists(&f.object_key).await, "{} kept", f.object_key);
        }
        for f in &newer {
            assert!(lake.exists(&f.object_key).await);
        }
        assert!(janitor.pending_keys().is_empty());
    }

    #[tokio::test]
    async fn a_restarted_janitor_still_knows_the_pending_deletions() {
        let lake = Lake::new();
        let acme = tenant("acme");
        let old = lake.ingest(&acme, HOUR_07, 0, 0, 5).await;
        // Many later commits, so the start-up probe has to step back.
        for p in 1..4 {
            lake.ingest(&acme, HOUR_07 + HOUR_MICROS, p, 0, 1).await;
        }
        let catalog = lake.catalog();
        apply_retention(
            catalog.as_ref(),
            &[record("acme", 1)],
            &Assignment::All,
            HOUR_07 + HOUR_MICROS + DAY_MICROS,
        )
        .await;
        for p in 4..16 {
            lake.ingest(&acme, HOUR_07 + HOUR_MICROS, p, 0, 1).await;
        }
        // A janitor started after the removal (a restart) finds it in the
        // catalog's history and waits out the rest of its grace.
        let mut janitor = Janitor::new(catalog.clone(), lake.store.clone(), GRACE);
        let t0 = now();
        janitor.poll(&acme, t0).await.expect("poll");
        let mut pending = janitor.pending_keys();
        pending.sort();
        let mut expected: Vec<String> = old.iter().map(|f| f.object_key.clone()).collect();
        expected.sort();
        assert_eq!(pending, expected);
        assert_eq!(janitor.delete_due(t0, &Assignment::All).await.deleted, 0);
        assert!(lake.exists(&old[0].object_key).await);

        // Started long after the grace window, it reads only recent history
        // and leaves what it skipped to the orphan scan.
        let mut late = Janitor::new(catalog, lake.store.clone(), GRACE);
        late.poll(&acme, t0 + 10 * micros(GRACE))
            .await
            .expect("poll");
        assert!(late.pending_keys().is_empty(), "{:?}", late.pending_keys());
    }

    #[tokio::test]
    async fn an_object_the_catalog_lists_again_is_never_deleted() {
        let lake = Lake::new();
        let acme = tenant("acme");
        let files = lake.ingest(&acme, HOUR_07, 0, 0, 5).await;
        let catalog = lake.catalog();
        catalog
            .remove_files(FileRemoval {
                tenant: acme.clone(),
                file_ids: files.iter().map(|f| f.file_id.clone()).collect(),
                reason: "test".into(),
            })
            .await
            .expect("remove");
        let mut janitor = Janitor::new(catalog.clone(), lake.store.clone(), GRACE);
        let t0 = now();
        janitor.poll(&acme, t0).await.expect("poll");
        assert_eq!(janitor.pending_keys().len(), 2);
        // The events file comes back (what a lagging replica's listing
        // would also show): it must survive its removal's grace.
        catalog
            .commit_batch(spoor_common::catalog::CommitBatch {
                files: vec![files[0].clone()],
                checkpoints: Vec::new(),
            })
            .await
            .expect("re-commit");
        let later = t0 + micros(GRACE) + 1_000_000;
        let done = janitor.delete_due(later, &Assignment::All).await;
        assert_eq!(done.deleted, 1, "{done:?}");
        assert!(
            lake.exists(&files[0].object_key).await,
            "listed again, kept"
        );
        assert!(!lake.exists(&files[1].object_key).await);
        assert_eq!(janitor.pending_keys(), vec![files[0].object_key.clone()]);
    }

    #[tokio::test]
    async fn orphans_are_deleted_only_after_their_grace() {
        let lake = Lake::new();
        let acme = tenant("acme");
        let committed = lake.ingest(&acme, HOUR_07, 0, 0, 5).await;
        // A crash between the Parquet write and the catalog commit.
        let orphans = lake.write(&acme, HOUR_07, 1, 0, 5).await;
        // A file just removed by retention: old, unlisted, but its grace runs.
        let removed = lake.ingest(&acme, HOUR_07 - HOUR_MICROS, 2, 0, 5).await;
        let catalog = lake.catalog();
        catalog
            .remove_files(FileRemoval {
                tenant: acme.clone(),
                file_ids: removed.iter().map(|f| f.file_id.clone()).collect(),
                reason: "test".into(),
            })
            .await
            .expect("remove");
        // Not a parquet file: never touched.
        let other = "tenants/acme/events/notes.txt";
        lake.store
            .put(&ObjectPath::from(other), PutPayload::from_static(b"x"))
            .await
            .expect("put");

        let orphan_grace = Duration::from_secs(3600);
        // The removed file's grace outlasts the orphan grace here, so the
        // scan must tell "removed, waiting" from "never listed".
        let long_grace = Duration::from_secs(3 * 3600);
        let mut janitor = Janitor::new(catalog.clone(), lake.store.clone(), long_grace);
        let t0 = now();
        let out = janitor
            .sweep_orphans(t0, orphan_grace, &Assignment::All)
            .await;
        assert_eq!(
            out,
            StepOutcome::default(),
            "objects younger than the grace stay"
        );
        for f in &orphans {
            assert!(lake.exists(&f.object_key).await);
        }

        let t1 = t0 + micros(orphan_grace) + micros(Duration::from_secs(600));
        let out = janitor
            .sweep_orphans(t1, orphan_grace, &Assignment::All)
            .await;
        assert_eq!(out.deleted, orphans.len(), "{out:?}");
        assert_eq!(out.errors, 0);
        for f in &orphans {
            assert!(!lake.exists(&f.object_key).await, "{} kept", f.object_key);
        }
        for f in committed.iter().chain(&removed) {
            assert!(lake.exists(&f.object_key).await, "{} deleted", f.object_key);
        }
        assert!(lake.exists(other).await);

        // A node that owns no tenant folder deletes nothing.
        let orphan = lake.write(&acme, HOUR_07, 3, 0, 5).await;
        let nobody = Assignment::Share { rank: 0, of: 2 };
        let mine = nobody.owns("tenants/acme");
        let elsewhere = Assignment::Share {
            rank: usize::from(mine),
            of: 2,
        };
        let out = janitor.sweep_orphans(t1, orphan_grace, &elsewhere).await;
        assert_eq!(out.deleted, 0);
        assert!(lake.exists(&orphan[0].object_key).await);

        // Once the removal's own grace has passed, the janitor deletes it.
        let t2 = now() + micros(long_grace) + 1_000_000;
        let done = janitor.delete_due(t2, &Assignment::All).await;
        assert_eq!(done.deleted, removed.len(), "{done:?}");
        for f in &removed {
            assert!(!lake.exists(&f.object_key).await);
        }
        // Deleting again (another node, a retry) is fine.
        delete_object(&lake.store, &removed[0].object_key, DeleteReason::Retention)
            .await
            .expect("deleting a missing object is not an error");
    }
}

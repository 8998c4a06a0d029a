//! Retro-hunts against the in-memory catalog and object store: exactly the
//! alerts of the range, progress, cancellation, and a job run again
//! committing no id twice.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray};
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use spoor_common::catalog::{Catalog, FileQuery, MemoryCatalog};
use spoor_common::schema::Table;

use super::*;
use crate::testing::{batch, engine};
use crate::worker::test_support::{
    ENCODED_SHELL, FAILED_LOGON, REPEATED_FAILED_LOGONS, commit_events_file, logon_or_shell, rules,
    table_files, tenant,
};

/// Seconds of event 0; event `i` is `i` minutes later.
const T0: i64 = 1_800_000_000;
const PER_FILE: usize = 10;

fn time(i: usize) -> i64 {
    T0 + (i as i64) * 60
}

fn micros(i: usize) -> i64 {
    time(i) * 1_000_000
}

/// Events file `n`: events `n*10..n*10+10`, a minute apart: failed logons
/// of four accounts, and every ninth event an encoded shell.
fn events_file(n: usize) -> RecordBatch {
    let rows: Vec<(i64, serde_json::Value)> = (n * PER_FILE..(n + 1) * PER_FILE)
        .map(|i| {
            let user = format!("u{}", (i * 7) % 4);
            (time(i), logon_or_shell(i, user))
        })
        .collect();
    batch(&rows)
}

struct Lake {
    catalog: Arc<MemoryCatalog>,
    store: Arc<InMemory>,
}

impl Lake {
    async fn with_files(files: usize) -> Lake {
        let lake = Lake {
            catalog: Arc::new(MemoryCatalog::new()),
            store: Arc::new(InMemory::new()),
        };
        for n in 0..files {
            lake.commit_events(n).await;
        }
        lake
    }

    async fn commit_events(&self, n: usize) {
        commit_events_file(
            &self.store,
            &self.catalog,
            format!("events{n:04}"),
            &events_file(n),
            (micros(n * PER_FILE), micros((n + 1) * PER_FILE - 1)),
        )
        .await;
    }

    fn hunter(&self, files_per_commit: usize) -> RetroHunter {
        RetroHunter::new(
            self.catalog.clone(),
            self.store.clone() as Arc<dyn ObjectStore>,
            HuntSettings {
                files_per_commit,
                ..HuntSettings::default()
            },
        )
    }

    /// Every committed alert.
    async fn alerts(&self) -> Vec<Alert> {
        let mut out = Vec::new();
        for (_, batches) in table_files(&self.store, &self.catalog, Table::Alerts).await {
            for b in batches {
                let text = |name: &str| {
                    b.column_by_name(name)
                        .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
                        .expect(name)
                };
                let time = |name: &str| {
                    b.column_by_name(name)
                        .and_then(|c| {
                            c.as_any()
                                .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
                                .cloned()
                        })
                        .expect(name)
                };
                let (id, rule, origin, shard, refs) = (
                    text("alert_id"),
                    text("rule_id"),
                    text("origin"),
                    text("shard"),
                    text("event_refs"),
                );
                let (first, last) = (time("first_event_time"), time("last_event_time"));
                for row in 0..b.num_rows() {
                    out.push(Alert {
                        id: id.value(row).into(),
                        rule: rule.value(row).into(),
                        origin: origin.value(row).into(),
                        shard: shard.value(row).into(),
                        refs: refs.value(row).into(),
                        first: first.value(row),
                        last: last.value(row),
                    });
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
struct Alert {
    id: String,
    rule: String,
    origin: String,
    shard: String,
    refs: String,
    first: i64,
    last: i64,
}

fn spec(job_id: &str, from: usize, to: usize) -> HuntSpec {
    HuntSpec {
        job_id: job_id.into(),
        tenant: tenant(),
        rule_set: "auth".into(),
        rule_set_version: 3,
        engine: Arc::new(engine(&rules(&[
            FAILED_LOGON,
            REPEATED_FAILED_LOGONS,
            ENCODED_SHELL,
        ]))),
        from_micros: micros(from),
        to_micros: micros(to),
        dry_run: false,
    }
}

async fn run(hunter: &RetroHunter, spec: HuntSpec) -> Progress {
    let job = Job::new(&spec);
    hunter.run(spec, &job).await;
    job.progress()
}

#[tokio::test]
async fn a_hunt_finds_exactly_the_alerts_of_its_range() {
    let lake = Lake::with_files(30).await;
    // From event 109 (inside file 10, after the shell at 108) to event 189
    // (a shell inside file 18, left out: `to` is exclusive).
    let (from, to) = (109, 189);
    let progress = run(&lake.hunter(3), spec("job1", from, to)).await;
    assert_eq!(progress.state, JobState::Done, "{progress:?}");
    assert_eq!(progress.error, None);
    // Files 10 (events 100..110) to 18 (180..190).
    assert_eq!((progress.files_total, progress.files_done), (9, 9));
    assert_eq!(progress.events_evaluated, 90);
    let alerts = lake.alerts().await;
    assert!(!alerts.is_empty());
    assert_eq!(progress.alerts_found, alerts.len() as u64);
    assert_eq!(progress.alerts_committed, alerts.len() as u64);
    // Shells: exactly the events 117, 126, …, 180, each once (108 and 189
    // are in files the job reads, but outside the range).
    let shells: BTreeSet<String> = alerts
        .iter()
        .filter(|a| a.rule == "shell")
        .map(|a| a.refs.clone())
        .collect();
    let expected: BTreeSet<String> = (from..to)
        .filter(|i| i.is_multiple_of(9))
        .map(|i| {
            let file = i / PER_FILE;
            format!(r#"[{{"file":"events{file:04}","row":{}}}]"#, i % PER_FILE)
        })
        .collect();
    assert_eq!(shells.len(), 8);
    assert_eq!(shells, expected);
    assert_eq!(alerts.iter().filter(|a| a.rule == "shell").count(), 8);
    // Correlations too, all inside the range.
    let bursts = alerts.iter().filter(|a| a.rule == "burst").count();
    assert!(bursts > 0, "{alerts:?}");
    for a in &alerts {
        assert_eq!(a.origin, "retro_hunt");
        assert_eq!(a.shard, "retro:job1");
        assert!(a.first >= micros(from) && a.last < micros(to), "{a:?}");
    }
    let ids: BTreeSet<&str> = alerts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), alerts.len(), "ids are unique");
    // Committed in chunks of three files: several commits.
    let files = lake
        .catalog
        .list_files(FileQuery::all(tenant(), Table::Alerts))
        .await
        .expect("list");
    assert!(files.len() >= 3, "{} alerts files", files.len());

    // Another job over the same range finds the same alerts under its own ids.
    let again = run(&lake.hunter(100), spec("job2", from, to)).await;
    assert_eq!(again.alerts_found, progress.alerts_found);
    let all = lake.alerts().await;
    let ids: BTreeSet<&str> = all.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), 2 * alerts.len());
}

#[tokio::test]
async fn a_dry_run_finds_the_same_alerts_and_commits_none() {
    let lake = Lake::with_files(30).await;
    let (from, to) = (109, 189);
    let dry = run(
        &lake.hunter(3),
        HuntSpec {
            dry_run: true,
            ..spec("dry", from, to)
        },
    )
    .await;
    assert_eq!(dry.state, JobState::Done, "{dry:?}");
    assert_eq!(dry.events_evaluated, 90);
    assert_eq!(dry.alerts_committed, 0);
    assert!(lake.alerts().await.is_empty(), "a dry run commits nothing");
    assert_eq!(
        dry.sample.len() as u64,
        dry.alerts_found.min(DRY_RUN_SAMPLE as u64)
    );
    assert!(
        dry.sample
            .iter()
            .any(|a| a.rule_title.contains("shell") || a.rule_id == "shell"),
        "{:?}",
        dry.sample
    );
    for a in &dry.sample {
        assert!(
            a.first_event_micros >= micros(from) && a.last_event_micros < micros(to),
            "{a:?}"
        );
    }
    // The same range for real: the same alerts, committed.
    let real = run(&lake.hunter(3), spec("real", from, to)).await;
    assert_eq!(real.alerts_found, dry.alerts_found);
    assert_eq!(lake.alerts().await.len() as u64, real.alerts_found);
    assert!(real.sample.is_empty());
}

#[tokio::test]
async fn an_empty_range_is_done_with_nothing() {
    let lake = Lake::with_files(3).await;
    let progress = run(&lake.hunter(1), spec("empty", 500, 600)).await;
    assert_eq!(progress.state, JobState::Done);
    assert_eq!((progress.files_total, progress.alerts_found), (0, 0));
    assert!(lake.alerts().await.is_empty());
}

/// Runs `spec`, cancelling it once `after` files are done.
async fn run_cancelled(hunter: &RetroHunter, spec: HuntSpec, after: u64) -> Progress {
    let job = Arc::new(Job::new(&spec));
    let watcher = {
        let job = job.clone();
        tokio::spawn(async move {
            while job.progress().files_done < after {
                tokio::task::yield_now().await;
            }
            assert!(job.cancel(), "still running when cancelled");
        })
    };
    hunter.run(spec, &job).await;
    watcher.await.expect("watcher");
    job.progress()
}

// One thread: the watcher runs whenever the job waits for an evaluation.
#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_job_stops_between_files_and_keeps_what_it_committed() {
    let lake = Lake::with_files(40).await;
    let progress = run_cancelled(&lake.hunter(1), spec("stop", 0, 400), 3).await;
    assert_eq!(progress.state, JobState::Cancelled, "{progress:?}");
    assert_eq!(progress.files_total, 40);
    assert!(
        progress.files_done >= 3 && progress.files_done < 10,
        "{progress:?}"
    );
    assert!(progress.finished_at_micros.is_some());
    let alerts = lake.alerts().await;
    assert!(!alerts.is_empty());
    assert_eq!(alerts.len() as u64, progress.alerts_committed);
    assert_eq!(progress.alerts_committed, progress.alerts_found);
    // Nothing from files it did not read.
    let read_until = micros(progress.files_done as usize * PER_FILE);
    assert!(alerts.iter().all(|a| a.last < read_until), "{alerts:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_job_run_again_commits_no_id_twice() {
    // The reference: the job run once, to its end.
    let reference_lake = Lake::with_files(20).await;
    let reference = run(&reference_lake.hunter(2), spec("again", 5, 195)).await;
    assert_eq!(reference.state, JobState::Done);
    let mut expected: Vec<String> = reference_lake
        .alerts()
        .await
        .into_iter()
        .map(|a| a.id)
        .collect();
    expected.sort();

    // Cancelled part way, then submitted again under the same id.
    let lake = Lake::with_files(20).await;
    let first = run_cancelled(&lake.hunter(2), spec("again", 5, 195), 6).await;
    assert_eq!(first.state, JobState::Cancelled);
    assert!(first.alerts_committed > 0);
    let second = run(&lake.hunter(2), spec("again", 5, 195)).await;
    assert_eq!(second.state, JobState::Done, "{second:?}");
    assert_eq!(second.alerts_found, reference.alerts_found);
    assert_eq!(second.alerts_already_committed, first.alerts_committed);
    assert_eq!(
        second.alerts_committed + first.alerts_committed,
        reference.alerts_found
    );
    let mut ids: Vec<String> = lake.alerts().await.into_iter().map(|a| a.id).collect();
    ids.sort();
    assert_eq!(ids, expected, "the same ids, each once");

    // A third run finds everything committed already.
    let third = run(&lake.hunter(2), spec("again", 5, 195)).await;
    assert_eq!(third.state, JobState::Done);
    assert_eq!(third.alerts_committed, 0);
    assert_eq!(third.alerts_already_committed, reference.alerts_found);
    assert_eq!(lake.alerts().await.len(), expected.len());
}

#[tokio::test]
async fn a_missing_file_fails_the_job_naming_it() {
    let lake = Lake::with_files(3).await;
    let files = lake
        .catalog
        .list_files(FileQuery::all(tenant(), Table::Events))
        .await
        .expect("list");
    let key = files[1].file.object_key.clone();
    lake.store
        .delete(&ObjectPath::from(key.as_str()))
        .await
        .expect("delete");
    let progress = run(&lake.hunter(1), spec("gone", 0, 30)).await;
    assert_eq!(progress.state, JobState::Failed);
    assert_eq!(progress.files_done, 1);
    let error = progress.error.unwrap_or_default();
    assert!(error.contains(&key) && error.contains("job_id"), "{error}");
}

#[tokio::test(flavor = "current_thread")]
async fn the_node_runs_a_bounded_number_of_jobs() {
    let lake = Lake::with_files(5).await;
    let hunts = RetroHunts::new(lake.hunter(1), 1);
    let job = hunts.submit(spec("one", 0, 50)).expect("first");
    // Not started yet (one thread, no await since): the node is busy.
    let busy = hunts.submit(spec("two", 0, 50)).err();
    assert_eq!(busy, Some(SubmitError::Busy { running: 1 }));
    let running = hunts.submit(spec("one", 0, 50)).err();
    assert!(
        matches!(running, Some(SubmitError::Running { .. })),
        "{running:?}"
    );
    while !job.progress().state.is_finished() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(job.progress().state, JobState::Done);
    assert_eq!(hunts.list(&tenant()).len(), 1);
    assert!(
        hunts
            .list(&TenantId::new("other").expect("tenant"))
            .is_empty()
    );
    // Finished: the same id may run again, and replaces the old entry.
    let again = hunts.submit(spec("one", 0, 50)).expect("again");
    assert!(hunts.get("one").is_some_and(|j| Arc::ptr_eq(&j, &again)));
    assert_eq!(hunts.list(&tenant()).len(), 1);
}

#[test]
fn ids_are_per_job_and_stable() {
    let a = retro_alert_id("j1", "abc");
    assert_eq!(a, retro_alert_id("j1", "abc"));
    assert_ne!(a, retro_alert_id("j2", "abc"));
    assert_ne!(a, "abc");
    assert!(valid_job_id("rh-0123abcd") && valid_job_id("nightly_2026-12-01"));
    assert!(!valid_job_id("") && !valid_job_id("a/b") && !valid_job_id(&"x".repeat(65)));
    let (x, y) = (new_job_id(1), new_job_id(1));
    assert_ne!(x, y);
    assert!(valid_job_id(&x), "{x}");
}

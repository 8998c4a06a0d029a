//! Finding the rule that broke an evaluation.
//!
//! The engine evaluates a rule set as one vectorized plan (rules share
//! their tests), so when a file's evaluation panics or overruns the time
//! budget nothing says which rule did it. This module finds out by
//! evaluating the same file once per rule, each compiled on its own, under
//! the same panic guard and clock; the shard then disables what it finds
//! and evaluates the file again without it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use spoor_common::control::ShardId;

use super::alerts::{self, AlertRow, RuleKind};
use super::evaluate::{FileContext, evaluate};
use crate::bundle::{RuleBundle, document_key};
use crate::engine::{Engine, LoadedDocument, RuleInfo};
use crate::sigma::Document;
use crate::window::{Correlator, WindowOptions};

/// A rule to disable, and why.
#[derive(Debug, Clone)]
pub(crate) struct Culprit {
    /// The rule.
    pub(crate) info: RuleInfo,
    /// What it did, for the alert about it and the log.
    pub(crate) reason: String,
}

/// The text of a panic's payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// How one trial went.
enum Trial {
    Fine(Duration),
    Panicked(String),
}

fn trial(
    engine: &Engine,
    bytes: &bytes::Bytes,
    cx: &FileContext,
    options: WindowOptions,
) -> Result<Trial, String> {
    let mut correlator = Correlator::new(engine, options).with_bucket(cx.bucket, cx.buckets);
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        evaluate(engine, &mut correlator, bytes.clone(), cx)
    }));
    match outcome {
        Ok(Ok(_)) => Ok(Trial::Fine(started.elapsed())),
        // Not a rule's fault: the file itself (it failed the full run the
        // same way, and that error stands).
        Ok(Err(e)) => Err(e),
        Err(payload) => Ok(Trial::Panicked(panic_message(payload.as_ref()))),
    }
}

/// Finds the rules of `bundle` (not in `excluded`) that panic on `bytes`
/// or take longer than `budget` on their own. Detection rules are searched
/// by bisection: a group of rules that evaluates within the budget is
/// cleared at once, a failing group is split in two, so a set of thousands
/// of rules with one culprit costs a few dozen evaluations of the file, not
/// one per rule. A culprit is always confirmed alone (with the global
/// filters). Each correlation is then tried with the detection rules that
/// passed, counting only its own time beyond theirs. Blocking: call it off
/// the async threads.
pub(crate) fn isolate(
    bundle: &RuleBundle,
    excluded: &BTreeSet<String>,
    bytes: &bytes::Bytes,
    cx: &FileContext,
    budget: Duration,
    options: WindowOptions,
) -> Result<Vec<Culprit>, String> {
    let compile_options = bundle.options()?;
    let (loaded, _) = bundle.documents();
    let loaded: Vec<LoadedDocument> = loaded
        .into_iter()
        .filter(|d| !excluded.contains(document_key(&d.document)))
        .collect();
    let filters: Vec<&LoadedDocument> = loaded
        .iter()
        .filter(|d| matches!(d.document, Document::Filter(_)))
        .collect();
    let search = Search {
        filters: &filters,
        compile_options: &compile_options,
        bytes,
        cx,
        budget,
        options,
    };
    let detections: Vec<&LoadedDocument> = loaded
        .iter()
        .filter(|d| matches!(d.document, Document::Detection(_)))
        .collect();
    let mut culprits = Vec::new();
    let mut passed = Vec::new();
    // The whole set failed already: start with its halves.
    search.bisect(&detections, false, &mut culprits, &mut passed)?;
    let correlations: Vec<&LoadedDocument> = loaded
        .iter()
        .filter(|d| matches!(d.document, Document::Correlation(_)))
        .collect();
    if correlations.is_empty() {
        return Ok(culprits);
    }
    let baseline = match search.trial(&passed)? {
        (_, Trial::Fine(took)) => took,
        // The rules passed in groups but not together: nothing to pin on
        // one of them.
        (_, Trial::Panicked(_)) => return Ok(culprits),
    };
    for doc in correlations {
        let mut docs = passed.clone();
        docs.push(doc);
        let (engine, outcome) = search.trial(&docs)?;
        // A correlation reading another correlation is refused alone; it
        // is tested through the one it reads.
        let Some(rule) = engine.correlations.first() else {
            continue;
        };
        match outcome {
            Trial::Panicked(message) => culprits.push(Culprit {
                info: rule.info.clone(),
                reason: format!("panicked: {message}"),
            }),
            Trial::Fine(took) if took.saturating_sub(baseline) > budget => culprits.push(Culprit {
                info: rule.info.clone(),
                reason: over_budget(took.saturating_sub(baseline), budget),
            }),
            Trial::Fine(_) => {}
        }
    }
    Ok(culprits)
}

/// What every trial of one search shares.
struct Search<'a> {
    filters: &'a [&'a LoadedDocument],
    compile_options: &'a crate::engine::Options,
    bytes: &'a bytes::Bytes,
    cx: &'a FileContext,
    budget: Duration,
    options: WindowOptions,
}

impl Search<'_> {
    /// Evaluates the file with `docs` and the global filters.
    fn trial(&self, docs: &[&LoadedDocument]) -> Result<(Engine, Trial), String> {
        let docs: Vec<LoadedDocument> = self
            .filters
            .iter()
            .chain(docs)
            .map(|d| (*d).clone())
            .collect();
        let engine = Engine::compile(&docs, self.compile_options).0;
        let outcome = trial(&engine, self.bytes, self.cx, self.options)?;
        Ok((engine, outcome))
    }

    /// Sorts `docs` into culprits and passed rules. `try_whole`: whether
    /// to evaluate the group as a whole first (false when it is known to
    /// fail).
    fn bisect<'d>(
        &self,
        docs: &[&'d LoadedDocument],
        try_whole: bool,
        culprits: &mut Vec<Culprit>,
        passed: &mut Vec<&'d LoadedDocument>,
    ) -> Result<(), String> {
        if docs.is_empty() {
            return Ok(());
        }
        if try_whole || docs.len() == 1 {
            let (engine, outcome) = self.trial(docs)?;
            let failed = match outcome {
                Trial::Fine(took) if took <= self.budget => None,
                Trial::Fine(took) => Some(over_budget(took, self.budget)),
                Trial::Panicked(message) => Some(format!("panicked: {message}")),
            };
            let Some(reason) = failed else {
                passed.extend(docs);
                return Ok(());
            };
            if docs.len() == 1 {
                // A rule refused when compiled never ran: no culprit.
                if let Some(rule) = engine.detections.first() {
                    culprits.push(Culprit {
                        info: rule.info.clone(),
                        reason,
                    });
                }
                return Ok(());
            }
        }
        let (left, right) = docs.split_at(docs.len() / 2);
        self.bisect(left, true, culprits, passed)?;
        self.bisect(right, true, culprits, passed)
    }
}

fn over_budget(took: Duration, budget: Duration) -> String {
    format!(
        "took {} ms on one events file, over its time budget of {} ms",
        took.as_millis(),
        budget.as_millis()
    )
}

/// A rule a shard disabled.
#[derive(Debug, Clone)]
pub(crate) struct DisabledRule {
    pub(crate) info: RuleInfo,
    pub(crate) reason: String,
    /// The catalog sequence of the events file it broke on: the alert about
    /// it is raised with that file's alerts, so a replay raises it once.
    pub(crate) at_sequence: u64,
}

#[derive(Debug, Default)]
struct ShardDisabled {
    rule_set_version: u64,
    rules: Vec<DisabledRule>,
    /// Files searched already: not searched again.
    searched: BTreeSet<u64>,
    /// An overrun search found no culprit: the rule set is merely slow on
    /// big files, and overruns are not searched again (panics still are).
    slow_set: bool,
}

/// The rules this worker disabled, per shard, for the rule set version they
/// broke in (a new version runs every rule again). Kept in the worker's
/// memory: a shard restarted here compiles without them, while a new holder
/// finds a panicking rule again on the same file (evaluation is
/// deterministic) and one that overran only if it overruns there too.
#[derive(Debug, Default)]
pub(crate) struct Disabled {
    by_shard: std::sync::Mutex<std::collections::HashMap<ShardId, ShardDisabled>>,
}

impl Disabled {
    fn with<T>(&self, shard: &ShardId, version: u64, f: impl FnOnce(&mut ShardDisabled) -> T) -> T {
        let mut map = self
            .by_shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = map.entry(shard.clone()).or_default();
        if entry.rule_set_version != version {
            *entry = ShardDisabled {
                rule_set_version: version,
                ..ShardDisabled::default()
            };
        }
        f(entry)
    }

    /// Keys of the rules disabled for the shard under this rule set version.
    pub(crate) fn keys(&self, shard: &ShardId, version: u64) -> BTreeSet<String> {
        self.with(shard, version, |d| {
            d.rules.iter().map(|r| r.info.key().to_string()).collect()
        })
    }

    /// Records what a search on the file at `sequence` found.
    pub(crate) fn record(
        &self,
        shard: &ShardId,
        version: u64,
        sequence: u64,
        culprits: Vec<Culprit>,
    ) {
        self.with(shard, version, |d| {
            d.searched.insert(sequence);
            d.rules.extend(culprits.into_iter().map(|c| DisabledRule {
                info: c.info,
                reason: c.reason,
                at_sequence: sequence,
            }));
        });
    }

    /// Whether an overrun of the file at `sequence` is worth a search: not
    /// searched before, and no earlier overrun search came back empty.
    pub(crate) fn search_overrun(&self, shard: &ShardId, version: u64, sequence: u64) -> bool {
        self.with(shard, version, |d| {
            !d.slow_set && !d.searched.contains(&sequence)
        })
    }

    /// Notes that an overrun search found no culprit.
    pub(crate) fn mark_slow(&self, shard: &ShardId, version: u64) {
        self.with(shard, version, |d| d.slow_set = true);
    }

    /// Whether the file at `sequence` was searched already.
    pub(crate) fn searched(&self, shard: &ShardId, version: u64, sequence: u64) -> bool {
        self.with(shard, version, |d| d.searched.contains(&sequence))
    }

    /// The rules disabled on the file at `sequence`.
    pub(crate) fn found_at(
        &self,
        shard: &ShardId,
        version: u64,
        sequence: u64,
    ) -> Vec<DisabledRule> {
        self.with(shard, version, |d| {
            d.rules
                .iter()
                .filter(|r| r.at_sequence == sequence)
                .cloned()
                .collect()
        })
    }
}

/// The alert about a disabled rule: the rule's identity, `rule_kind`
/// `rule_disabled`, the reason in `group_key`, the file it broke on in
/// `event_refs`, level high. Its id derives from the shard, the rule and
/// its version, so a replay raises the same alert.
pub(crate) fn disabled_alert(rule: &DisabledRule, cx: &FileContext, time: i64) -> AlertRow {
    let event = alerts::event_ref(&cx.file_id, 0, None, None, None);
    AlertRow {
        alert_id: alerts::detection_alert_id(
            &format!("rule_disabled/{}", cx.shard),
            &rule.info.version,
            rule.info.key(),
        ),
        rule_id: rule.info.key().to_string(),
        rule_version: rule.info.version.clone(),
        rule_title: rule.info.title.clone(),
        rule_level: Some("high".into()),
        rule_tags: rule.info.tags.clone(),
        rule_set: cx.rule_set.clone(),
        rule_set_version: cx.rule_set_version,
        rule_kind: RuleKind::RuleDisabled,
        group_key: vec![
            ("shard".into(), cx.shard.clone()),
            ("reason".into(), rule.reason.clone()),
        ],
        first_event_micros: time,
        last_event_micros: time,
        event_count: 0,
        value: None,
        event_refs: vec![event],
        origin: cx.origin.into(),
        shard: cx.shard.clone(),
        detected_at_micros: 0,
        ingested_micros: 0,
    }
}

/// Test-only fault injection, read from `SPOOR_TEST_FAULT` once:
/// `rule_panics:KEY` makes evaluating a rule set holding the detection rule
/// keyed KEY panic, `rule_stalls:KEY:MS` makes it take MS milliseconds more.
/// Lets the end-to-end tests prove that a broken rule is disabled without
/// taking the worker down; no rule can do either on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RuleFault {
    Panics(String),
    Stalls(String, u64),
}

impl RuleFault {
    fn parse(value: &str) -> Option<RuleFault> {
        if let Some(key) = value.strip_prefix("rule_panics:") {
            return Some(RuleFault::Panics(key.to_string()));
        }
        let rest = value.strip_prefix("rule_stalls:")?;
        let (key, ms) = rest.rsplit_once(':')?;
        Some(RuleFault::Stalls(key.to_string(), ms.parse().ok()?))
    }

    /// Applies the fault if `engine` holds its rule.
    pub(crate) fn apply(engine: &Engine) {
        let holds = |key: &str| engine.detections.iter().any(|d| d.info.key() == key);
        for fault in active_faults() {
            match fault {
                RuleFault::Panics(key) if holds(&key) => {
                    panic!("SPOOR_TEST_FAULT: rule {key} panics")
                }
                RuleFault::Stalls(key, ms) if holds(&key) => {
                    std::thread::sleep(Duration::from_millis(ms));
                }
                _ => {}
            }
        }
    }
}

static ENV_FAULT: std::sync::OnceLock<Option<RuleFault>> = std::sync::OnceLock::new();

/// Faults of unit tests, process-wide (evaluation runs on the blocking
/// pool): each test names a rule key of its own, so tests running at the
/// same time do not meet each other's faults.
#[cfg(test)]
pub(crate) static TEST_FAULTS: std::sync::Mutex<Vec<RuleFault>> = std::sync::Mutex::new(Vec::new());

fn active_faults() -> Vec<RuleFault> {
    #[allow(unused_mut)] // unit tests add their own
    let mut faults: Vec<RuleFault> = ENV_FAULT
        .get_or_init(|| {
            std::env::var("SPOOR_TEST_FAULT")
                .ok()
                .and_then(|v| RuleFault::parse(&v))
        })
        .iter()
        .cloned()
        .collect();
    #[cfg(test)]
    faults.extend(
        TEST_FAULTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned(),
    );
    faults
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use spoor_common::lake_file::encode_parquet;
    use spoor_common::schema::EVENT_COLUMNS;

    use super::*;
    use crate::bundle::{BUNDLE_FORMAT, BundleFile};
    use crate::testing::batch;

    const RULES: &str = r#"title: Good
id: good
logsource: {product: test}
detection: {selection: {action: logon_failed}, condition: selection}
---
title: Broken
id: broken
logsource: {product: test}
detection: {selection: {action: logon}, condition: selection}
---
title: Burst
id: burst
correlation: {type: event_count, rules: [good], group-by: [user], timespan: 5m, condition: {gte: 2}}
"#;

    /// The rules with ids prefixed, so that each test's faults are its own.
    fn bundle(prefix: &str) -> RuleBundle {
        let text = RULES
            .replace("id: ", &format!("id: {prefix}-"))
            .replace("rules: [", &format!("rules: [{prefix}-"));
        RuleBundle {
            format: BUNDLE_FORMAT,
            rules: vec![BundleFile {
                path: "r.yml".into(),
                text,
            }],
            mappings: Vec::new(),
            placeholders: BTreeMap::new(),
        }
    }

    fn cx() -> FileContext {
        FileContext {
            file_id: "f".into(),
            bucket: 0,
            buckets: 1,
            rule_set: "s".into(),
            rule_set_version: 1,
            shard: "t/s/0".into(),
            origin: "live",
        }
    }

    fn bytes() -> bytes::Bytes {
        let rows = [
            (0, json!({"action": "logon_failed", "user": "a"})),
            (1, json!({"action": "logon", "user": "a"})),
        ];
        bytes::Bytes::from(encode_parquet(&batch(&rows), EVENT_COLUMNS, 1).expect("encode"))
    }

    /// The culprits `isolate` finds in `bundle` on [`bytes`] with `fault`
    /// in force.
    fn search_with(fault: RuleFault, bundle: &RuleBundle, budget: Duration) -> Vec<Culprit> {
        with_fault(fault, || {
            isolate(
                bundle,
                &BTreeSet::new(),
                &bytes(),
                &cx(),
                budget,
                WindowOptions::default(),
            )
        })
        .expect("isolate")
    }

    /// Runs `f` with `fault` in force (keys are unique to each test).
    pub(crate) fn with_fault<T>(fault: RuleFault, f: impl FnOnce() -> T) -> T {
        TEST_FAULTS.lock().expect("faults").push(fault.clone());
        let out = f();
        TEST_FAULTS.lock().expect("faults").retain(|f| *f != fault);
        out
    }

    #[test]
    fn faults_parse() {
        assert_eq!(
            RuleFault::parse("rule_panics:a:b"),
            Some(RuleFault::Panics("a:b".into()))
        );
        assert_eq!(
            RuleFault::parse("rule_stalls:k:250"),
            Some(RuleFault::Stalls("k".into(), 250))
        );
        assert_eq!(RuleFault::parse("rule_stalls:k"), None);
        assert_eq!(RuleFault::parse("crash_after_commit"), None);
    }

    #[test]
    fn the_panicking_rule_is_found_and_only_it() {
        let culprits = search_with(
            RuleFault::Panics("p-broken".into()),
            &bundle("p"),
            Duration::from_secs(60),
        );
        let keys: Vec<&str> = culprits.iter().map(|c| c.info.key()).collect();
        assert_eq!(keys, vec!["p-broken"]);
        assert!(culprits[0].reason.contains("panicked"), "{culprits:?}");
        // Without it the set evaluates.
        let excluded: BTreeSet<String> = ["p-broken".to_string()].into();
        let (engine, _) = bundle("p").compile_without(&excluded).expect("compile");
        assert_eq!(engine.detections.len(), 1);
        assert_eq!(engine.correlations.len(), 1);
        let mut correlator = Correlator::new(&engine, WindowOptions::default());
        with_fault(RuleFault::Panics("p-broken".into()), || {
            evaluate(&engine, &mut correlator, bytes(), &cx())
        })
        .expect("evaluates without the broken rule");
    }

    #[test]
    fn a_rule_over_its_budget_is_found() {
        let culprits = search_with(
            RuleFault::Stalls("s-good".into(), 300),
            &bundle("s"),
            Duration::from_millis(200),
        );
        let keys: Vec<&str> = culprits.iter().map(|c| c.info.key()).collect();
        // The correlation reads `good`, which is not in its trial (it did
        // not pass), so it is not blamed.
        assert_eq!(keys, vec!["s-good"], "{culprits:?}");
        assert!(culprits[0].reason.contains("time budget"), "{culprits:?}");
    }

    #[test]
    fn one_panicking_rule_among_many_is_found() {
        let mut text = String::new();
        for n in 0..40 {
            text.push_str(&format!(
                "title: Rule {n}\nid: m-{n}\nlogsource: {{product: test}}\n\
                 detection: {{selection: {{action: a{n}}}, condition: selection}}\n---\n"
            ));
        }
        let bundle = RuleBundle {
            format: BUNDLE_FORMAT,
            rules: vec![BundleFile {
                path: "many.yml".into(),
                text,
            }],
            mappings: Vec::new(),
            placeholders: BTreeMap::new(),
        };
        let culprits = search_with(
            RuleFault::Panics("m-27".into()),
            &bundle,
            Duration::from_secs(60),
        );
        let keys: Vec<&str> = culprits.iter().map(|c| c.info.key()).collect();
        assert_eq!(keys, vec!["m-27"]);
    }
}

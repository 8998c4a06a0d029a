//! Correlation rules over detection matches, in event time.
//!
//! Each correlation keeps, per group (the values of its `group-by` fields,
//! compared ignoring case), the matches of its input rules ordered by event
//! time. Windows are `timespan` long and slide: any span of that length
//! that satisfies the condition raises an alert, and the matches in it are
//! consumed, so they raise no second alert.
//!
//! - Conditions that can only become true as matches arrive (`gt`/`gte` on
//!   `event_count`, `value_count`, `temporal`, `temporal_ordered`,
//!   `value_sum`) fire as soon as a window satisfies them: detection in
//!   seconds, not at window end.
//! - The others (`lt`, `lte`, `eq`, `neq`, and every `value_avg` and
//!   `value_percentile`) are decided when a window closes: windows start at
//!   a group's oldest unconsumed match, and close when the watermark (the
//!   latest event time seen) has passed their end by the allowed lateness.
//! - A match no more than `allowed_lateness` behind the watermark still
//!   joins its windows; a later one is not applied to the live state and is
//!   reported as [`Output::Late`], for the caller to re-run the rule over
//!   the lake for that time range (DESIGN.md: late events are re-evaluated,
//!   never silently missed).
//! - State is bounded: past `max_entries` matches in memory, the oldest are
//!   evicted, counted in `spoor_correlation_evicted_total`, logged as a
//!   warning and reported as [`Output::Evicted`].
//! - A match whose event lacks a `group-by` field is left out (it belongs to
//!   no group), as in the SQL of pySigma's backends.
//!
//! Exactly-once alerts (DESIGN.md, Guarantees) rest on three properties:
//!
//! - **Determinism.** The output depends only on the rules, the options and
//!   the input, never on hash map iteration order: groups are kept in key
//!   order, so for identical input the same alerts come out in the same
//!   order.
//! - **Checkpoints.** [`Correlator::snapshot`] captures the window state
//!   (per correlation rule, identified by its key and
//!   [version](crate::engine::RuleInfo::version)); a correlator compiled
//!   afresh from the same rules and given it with [`Correlator::restore`]
//!   behaves exactly as the original would have from that point on. State
//!   of a rule whose version changed (its text, a global filter on a rule
//!   under it, or any rule it reads) is dropped, never reinterpreted.
//! - **Stable ids.** An alert's id is derived from the rule's key and
//!   version, the group, and the window's first match, so a replay from a
//!   checkpoint gives the alerts the same ids.
//!
//! A shard is (tenant, rule group, key bucket): with
//! [`Correlator::with_bucket`], a correlator keeps only the groups whose
//! key falls in its bucket ([`key_bucket`]), so the shards of one rule group
//! split its groups between them. Each shard keeps its own watermark.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::{BatchResult, CompiledCorrelation, Engine, InputSource};
use crate::sigma::{CmpOp, CorrelationKind};
use crate::suppress::{SavedAnchor, Suppressor};

/// Windowing options.
#[derive(Debug, Clone, Copy)]
pub struct WindowOptions {
    /// How far behind the watermark a match may arrive and still count,
    /// in microseconds.
    pub allowed_lateness_micros: i64,
    /// Matches kept in memory across all groups of all correlations.
    pub max_entries: usize,
}

impl Default for WindowOptions {
    fn default() -> Self {
        WindowOptions {
            allowed_lateness_micros: 5 * 60 * 1_000_000,
            max_entries: 1_000_000,
        }
    }
}

/// A correlation alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Index into [`Engine::correlations`].
    pub correlation: usize,
    /// Hex of the first 16 bytes of a SHA-256 over the rule's key and
    /// [version](crate::engine::RuleInfo::version), the group key (its
    /// values lowercased), and the window's first match: its event time
    /// (which is the window's start) and its event. The same alert for the
    /// same events under the same rule, live or replayed from a checkpoint;
    /// a new version of the rule (or of a rule under it) gives new ids.
    pub id: String,
    /// `group-by` field → value (as first seen).
    pub group: Vec<(String, String)>,
    /// The first match's event time (µs).
    pub first: i64,
    /// The last match's event time (µs).
    pub last: i64,
    /// The aggregate the condition was checked on (count, distinct values,
    /// rules seen, sum, average or percentile).
    pub value: f64,
    /// The matches' events, in time order.
    pub events: Vec<String>,
}

/// What the correlator reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A correlation matched.
    Alert(Alert),
    /// A match arrived after the allowed lateness; not applied.
    Late {
        /// Index into [`Engine::correlations`].
        correlation: usize,
        /// Its event time (µs).
        time: i64,
        /// Its event.
        event: String,
    },
    /// State was over its bound; the oldest matches were dropped.
    Evicted {
        /// How many.
        entries: usize,
    },
}

/// One match held in a group (checkpointed as is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    time: i64,
    /// Index into the correlation's inputs.
    input: usize,
    value: Option<String>,
    event: String,
}

#[derive(Debug, Default)]
struct Group {
    display: Vec<String>,
    entries: Vec<Entry>,
}

#[derive(Debug, Default)]
struct State {
    /// Ordered by key, so closing windows and checkpoints visit groups in
    /// the same order every run (a hash map's order differs per process).
    groups: BTreeMap<Vec<String>, Group>,
    watermark: Option<i64>,
}

/// Which key bucket a correlator holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Bucket {
    bucket: u32,
    buckets: u32,
}

impl Bucket {
    fn holds(self, key: &[String]) -> bool {
        bucket_of(key.iter().map(String::as_str), self.buckets) == self.bucket
    }
}

/// Correlation state for every correlation rule of an engine.
#[derive(Debug)]
pub struct Correlator {
    rules: Vec<CompiledCorrelation>,
    states: Vec<State>,
    options: WindowOptions,
    /// Matches held across all states (kept equal to their sum).
    entries: usize,
    bucket: Option<Bucket>,
    /// Alert suppression anchors of every rule with a `suppression`,
    /// detection rules included: checkpointed with the windows.
    suppressor: Suppressor,
}

/// A new match for a correlation.
struct Pending {
    key: Vec<String>,
    display: Vec<String>,
    entry: Entry,
}

/// The key bucket of a group key: the first 8 bytes of a SHA-256 over the
/// parts, each preceded by its length in bytes (a little-endian `u64`, so
/// `["ab", "c"]` and `["a", "bc"]` differ), read as a little-endian `u64`,
/// modulo `buckets`; 0 when `buckets` is 0 or 1.
///
/// The correlator passes a group's values lowercased, in `group-by` order.
/// The result is fixed: the same on every platform and in every version of
/// Spoor, as shards (and their checkpoints) are assigned by it.
pub fn key_bucket(parts: &[&str], buckets: u32) -> u32 {
    bucket_of(parts.iter().copied(), buckets)
}

fn bucket_of<'a>(parts: impl Iterator<Item = &'a str>, buckets: u32) -> u32 {
    if buckets <= 1 {
        return 0;
    }
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // The remainder is below `buckets`, a u32.
    (u64::from_le_bytes(first) % u64::from(buckets)) as u32
}

/// The layout of [`CorrelatorSnapshot`] this version writes and reads.
const SNAPSHOT_FORMAT: u32 = 1;

/// A correlator's window state, to checkpoint (with the catalog position it
/// was taken at) and resume from with [`Correlator::restore`]. Serializable
/// with serde (as JSON, for instance); its layout is private but versioned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrelatorSnapshot {
    /// [`SNAPSHOT_FORMAT`] when written.
    format: u32,
    /// The bucket the correlator held, if it was bucketed.
    bucket: Option<Bucket>,
    /// One per correlation rule, in the engine's order.
    rules: Vec<RuleState>,
    /// Suppression anchors (absent in checkpoints of before suppression).
    #[serde(default)]
    suppression: Vec<SavedAnchor>,
}

impl CorrelatorSnapshot {
    /// The key bucket the correlator held, as (bucket, buckets), if
    /// [`Correlator::with_bucket`] was used.
    pub fn bucket(&self) -> Option<(u32, u32)> {
        self.bucket.map(|b| (b.bucket, b.buckets))
    }

    /// The matches held, across every rule.
    pub fn entries(&self) -> usize {
        self.rules
            .iter()
            .flat_map(|r| &r.groups)
            .map(|g| g.entries.len())
            .sum()
    }
}

/// One correlation rule's state in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RuleState {
    /// [`RuleInfo::key`](crate::engine::RuleInfo::key).
    key: String,
    /// [`RuleInfo::version`](crate::engine::RuleInfo::version).
    version: String,
    watermark: Option<i64>,
    /// In key order.
    groups: Vec<GroupState>,
}

/// One group in a snapshot (a list rather than a map: JSON object keys
/// must be strings, and this key is a list of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct GroupState {
    key: Vec<String>,
    display: Vec<String>,
    entries: Vec<Entry>,
}

/// What [`Correlator::restore`] did, by rule key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Rules whose state was restored (same key and version in the
    /// snapshot and the correlator).
    pub restored: Vec<String>,
    /// Rules of the snapshot whose state was dropped: the rule changed
    /// (another version), is no longer loaded, or its saved state was
    /// unusable (logged).
    pub dropped: Vec<String>,
}

fn early(kind: CorrelationKind, condition: &[(CmpOp, f64)]) -> bool {
    matches!(
        kind,
        CorrelationKind::EventCount
            | CorrelationKind::ValueCount
            | CorrelationKind::Temporal
            | CorrelationKind::TemporalOrdered
            | CorrelationKind::ValueSum
    ) && condition
        .iter()
        .all(|(op, _)| matches!(op, CmpOp::Gt | CmpOp::Gte))
}
fn number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The aggregate of a window's entries.
fn aggregate(rule: &CompiledCorrelation, window: &[Entry]) -> f64 {
    let inputs = rule.inputs.len();
    match rule.rule.kind {
        CorrelationKind::EventCount => window.len() as f64,
        CorrelationKind::ValueCount => {
            let mut seen: Vec<String> = window
                .iter()
                .filter_map(|e| e.value.as_ref().map(|v| v.to_lowercase()))
                .collect();
            seen.sort();
            seen.dedup();
            seen.len() as f64
        }
        CorrelationKind::Temporal => {
            let mut seen = vec![false; inputs];
            for e in window {
                seen[e.input] = true;
            }
            seen.iter().filter(|s| **s).count() as f64
        }
        CorrelationKind::TemporalOrdered => {
            // The longest prefix of the rule list seen in order (greedy is
            // optimal for a subsequence).
            let mut next = 0;
            for e in window {
                if next < inputs && e.input == next {
                    next += 1;
                }
            }
            next as f64
        }
        CorrelationKind::ValueSum => window
            .iter()
            .filter_map(|e| e.value.as_deref().and_then(number))
            .sum(),
        CorrelationKind::ValueAvg => {
            let values: Vec<f64> = window
                .iter()
                .filter_map(|e| e.value.as_deref().and_then(number))
                .collect();
            if values.is_empty() {
                f64::NAN
            } else {
                values.iter().sum::<f64>() / values.len() as f64
            }
        }
        CorrelationKind::ValuePercentile => {
            let mut values: Vec<f64> = window
                .iter()
                .filter_map(|e| e.value.as_deref().and_then(number))
                .collect();
            if values.is_empty() {
                return f64::NAN;
            }
            values.sort_by(f64::total_cmp);
            // Linear interpolation between closest ranks.
            let rank = (values.len() - 1) as f64 * rule.rule.percentile / 100.0;
            let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
            values[lo] + (values[hi] - values[lo]) * (rank - lo as f64)
        }
    }
}

fn holds(rule: &CompiledCorrelation, value: f64) -> bool {
    if value.is_nan() {
        return false;
    }
    if rule.rule.condition.is_empty() {
        // temporal / temporal_ordered without a condition: every rule.
        return value >= rule.inputs.len() as f64;
    }
    rule.rule
        .condition
        .iter()
        .all(|(op, limit)| op.holds(value, *limit))
}

/// See [`Alert::id`]. Every variable-length part is preceded by its length
/// (and the group key by its number of values), so no two different inputs
/// hash the same bytes.
fn alert_id(rule: &CompiledCorrelation, key: &[String], first: &Entry) -> String {
    let mut h = Sha256::new();
    let mut text = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    text(rule.info.key());
    text(&rule.info.version);
    h.update((key.len() as u64).to_le_bytes());
    for k in key {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
    }
    h.update(first.time.to_le_bytes());
    h.update((first.event.len() as u64).to_le_bytes());
    h.update(first.event.as_bytes());
    hex::encode(&h.finalize()[..16])
}

impl Correlator {
    /// State for the engine's correlation rules.
    pub fn new(engine: &Engine, options: WindowOptions) -> Correlator {
        Correlator {
            rules: engine.correlations.clone(),
            states: engine
                .correlations
                .iter()
                .map(|_| State::default())
                .collect(),
            options,
            entries: 0,
            bucket: None,
            suppressor: Suppressor::default(),
        }
    }

    /// Whether an alert of `rule` with suppression key `key` at event time
    /// `time` is suppressed (see [`Suppressor::suppressed`]).
    pub fn suppressed(&mut self, rule: &str, key: Vec<String>, time: i64, window: i64) -> bool {
        self.suppressor.suppressed(rule, key, time, window)
    }

    /// Drops suppression anchors past their window and the allowed
    /// lateness, and the oldest beyond the entry limit.
    pub fn expire_suppression(&mut self) {
        self.suppressor.expire(
            self.options.allowed_lateness_micros,
            self.options.max_entries,
        );
    }

    /// Suppression anchors held (for the state size metric).
    pub fn suppression_entries(&self) -> usize {
        self.suppressor.len()
    }

    /// Makes this correlator one key bucket's shard: of `buckets`, it keeps
    /// only the groups whose key ([`key_bucket`] of the lowercased
    /// `group-by` values) falls in `bucket`. A match of another bucket,
    /// a detection hit or a chained correlation's input alert alike, is
    /// ignored: not stored, not counted, not reported late (it is the other
    /// shard's). State already held for other buckets is dropped.
    ///
    /// Chained correlations see only the input alerts produced in the same
    /// shard: a correlation reading another one gets all its input alerts
    /// only when its group key buckets like the input's (the same
    /// `group-by` values); with a different group key, an input alert
    /// raised in another shard is not seen.
    ///
    /// With `buckets` 0 or 1 every key is in bucket 0.
    pub fn with_bucket(mut self, bucket: u32, buckets: u32) -> Correlator {
        let b = Bucket { bucket, buckets };
        self.bucket = Some(b);
        for state in &mut self.states {
            state.groups.retain(|key, _| b.holds(key));
        }
        self.entries = self.count_entries();
        self
    }

    /// The matches held (for a metric of state size).
    pub fn state_entries(&self) -> usize {
        self.entries
    }

    fn count_entries(&self) -> usize {
        self.states
            .iter()
            .flat_map(|s| s.groups.values())
            .map(|g| g.entries.len())
            .sum()
    }

    /// The window state of every correlation rule, with the rule's key and
    /// version, to checkpoint. Take it between calls to [`push`]; the
    /// [`WindowOptions`] are not part of it (the restoring correlator
    /// should be given the same).
    ///
    /// [`push`]: Correlator::push
    pub fn snapshot(&self) -> CorrelatorSnapshot {
        CorrelatorSnapshot {
            format: SNAPSHOT_FORMAT,
            bucket: self.bucket,
            rules: self
                .rules
                .iter()
                .zip(&self.states)
                .map(|(rule, state)| RuleState {
                    key: rule.info.key().to_string(),
                    version: rule.info.version.clone(),
                    watermark: state.watermark,
                    groups: state
                        .groups
                        .iter()
                        .map(|(key, group)| GroupState {
                            key: key.clone(),
                            display: group.display.clone(),
                            entries: group.entries.clone(),
                        })
                        .collect(),
                })
                .collect(),
            suppression: self.suppressor.save(),
        }
    }

    /// Replaces this correlator's state with a snapshot's: each correlation
    /// rule present in both with the same key and version gets its saved
    /// groups and watermark; every other rule starts empty. State of rules
    /// that changed or are gone is dropped (a new version may read other
    /// rules, fields or windows, so old matches would be misread).
    ///
    /// This correlator's bucket (from [`with_bucket`]) stays: saved groups
    /// outside it are left out, so a checkpoint of another shard can never
    /// make this one raise that shard's alerts (a mismatch is logged).
    ///
    /// The snapshot is input (read back from storage): saved state that does
    /// not fit its rule (a group key of another width, a match of an input
    /// the rule does not have, matches out of time order, a group twice) or
    /// a snapshot of another format is dropped and logged, never trusted.
    ///
    /// [`with_bucket`]: Correlator::with_bucket
    pub fn restore(&mut self, mut snapshot: CorrelatorSnapshot) -> RestoreReport {
        for state in &mut self.states {
            *state = State::default();
        }
        self.entries = 0;
        let mut report = RestoreReport::default();
        // Anchors of rules that are gone expire with their windows.
        self.suppressor = Suppressor::restore(std::mem::take(&mut snapshot.suppression));
        if snapshot.format != SNAPSHOT_FORMAT {
            tracing::warn!(
                format = snapshot.format,
                expected = SNAPSHOT_FORMAT,
                "correlation checkpoint of an unknown format: every rule starts empty"
            );
            report.dropped = snapshot.rules.into_iter().map(|r| r.key).collect();
            return report;
        }
        if snapshot.bucket != self.bucket {
            tracing::warn!(
                saved = ?snapshot.bucket(),
                held = ?self.bucket.map(|b| (b.bucket, b.buckets)),
                "correlation checkpoint of another key bucket: only this bucket's groups are restored"
            );
        }
        // Rules by (key, version), in engine order. Two rules can share
        // both (the same document loaded from two files): the n-th saved
        // state goes to the n-th of them, as the snapshot lists rules in
        // engine order too.
        let mut free: BTreeMap<&str, BTreeMap<&str, VecDeque<usize>>> = BTreeMap::new();
        for (c, rule) in self.rules.iter().enumerate() {
            free.entry(rule.info.key())
                .or_default()
                .entry(&rule.info.version)
                .or_default()
                .push_back(c);
        }
        for saved in snapshot.rules {
            let slot = free
                .get_mut(saved.key.as_str())
                .and_then(|versions| versions.get_mut(saved.version.as_str()))
                .and_then(VecDeque::pop_front);
            let Some(c) = slot else {
                report.dropped.push(saved.key);
                continue;
            };
            match restore_state(&self.rules[c], &saved, self.bucket) {
                Ok((state, entries)) => {
                    self.states[c] = state;
                    self.entries += entries;
                    report.restored.push(saved.key);
                }
                Err(reason) => {
                    tracing::warn!(
                        rule = %saved.key,
                        %reason,
                        "checkpointed correlation state is unusable: the rule starts empty"
                    );
                    report.dropped.push(saved.key);
                }
            }
        }
        report
    }

    /// Feeds one batch's detection matches; `event` names a row's event
    /// (its provenance) in alerts.
    pub fn push(&mut self, result: &BatchResult, event: &dyn Fn(usize) -> String) -> Vec<Output> {
        let mut out = Vec::new();
        let bucket = self.bucket;
        let mut alerts_of: Vec<Vec<Alert>> = vec![Vec::new(); self.rules.len()];
        // The engine lists hits rule by rule: each rule's hits are one run,
        // found by binary search rather than by scanning every hit for
        // every correlation input.
        let hits_of = |rule: usize| {
            let start = result.hits.partition_point(|h| h.rule < rule);
            let end = result.hits.partition_point(|h| h.rule <= rule);
            &result.hits[start..end]
        };
        for c in 0..self.rules.len() {
            let mut pending = Vec::new();
            for (input_index, input) in self.rules[c].inputs.iter().enumerate() {
                match input.source {
                    InputSource::Detection(d) => {
                        for hit in hits_of(d) {
                            let mut key = Vec::with_capacity(input.group_fields.len());
                            let mut display = Vec::with_capacity(input.group_fields.len());
                            for f in &input.group_fields {
                                if let Some(v) = result.values.get(*f, hit.row) {
                                    key.push(v.to_lowercase());
                                    display.push(v.to_string());
                                }
                            }
                            if key.len() < input.group_fields.len()
                                || bucket.is_some_and(|b| !b.holds(&key))
                            {
                                continue;
                            }
                            pending.push(Pending {
                                key,
                                display,
                                entry: Entry {
                                    time: result.values.times[hit.row],
                                    input: input_index,
                                    value: input.value_field.and_then(|f| {
                                        result.values.get(f, hit.row).map(str::to_string)
                                    }),
                                    event: event(hit.row),
                                },
                            });
                        }
                    }
                    InputSource::Correlation(k) => {
                        for alert in &alerts_of[k] {
                            let values: Option<Vec<String>> = input
                                .group_positions
                                .iter()
                                .map(|p| p.and_then(|p| alert.group.get(p)).map(|(_, v)| v.clone()))
                                .collect();
                            let Some(display) = values else { continue };
                            let key: Vec<String> =
                                display.iter().map(|v| v.to_lowercase()).collect();
                            if bucket.is_some_and(|b| !b.holds(&key)) {
                                continue;
                            }
                            pending.push(Pending {
                                key,
                                display,
                                entry: Entry {
                                    time: alert.last,
                                    input: input_index,
                                    value: Some(alert.value.to_string()),
                                    event: format!("alert:{}", alert.id),
                                },
                            });
                        }
                    }
                }
            }
            pending.sort_by_key(|p| p.entry.time);
            let produced = self.apply(c, pending, &mut out);
            alerts_of[c] = produced;
        }
        out.extend(self.bound());
        out
    }

    fn apply(&mut self, c: usize, pending: Vec<Pending>, out: &mut Vec<Output>) -> Vec<Alert> {
        let rule = &self.rules[c];
        let span = rule.rule.timespan_secs.saturating_mul(1_000_000);
        let fires_early = early(rule.rule.kind, &rule.rule.condition);
        let state = &mut self.states[c];
        let before = state.watermark;
        let mut produced = Vec::new();
        for p in pending {
            if let Some(w) = before
                && p.entry.time < w.saturating_sub(self.options.allowed_lateness_micros)
            {
                metrics::counter!("spoor_correlation_late_total").increment(1);
                out.push(Output::Late {
                    correlation: c,
                    time: p.entry.time,
                    event: p.entry.event,
                });
                continue;
            }
            state.watermark = Some(
                state
                    .watermark
                    .map_or(p.entry.time, |w| w.max(p.entry.time)),
            );
            let group = state.groups.entry(p.key.clone()).or_default();
            if group.display.is_empty() {
                group.display = p.display;
            }
            let t = p.entry.time;
            let at = group.entries.partition_point(|e| e.time <= t);
            group.entries.insert(at, p.entry);
            self.entries += 1;
            if !fires_early {
                continue;
            }
            // Every window [s, s + span] holding the new match, s being a
            // match time in [t - span, t].
            let lo = group
                .entries
                .partition_point(|e| e.time < t.saturating_sub(span));
            let mut end = lo;
            for start in lo..group.entries.len() {
                let s = group.entries[start].time;
                if s > t {
                    break;
                }
                while end < group.entries.len() && group.entries[end].time <= s.saturating_add(span)
                {
                    end += 1;
                }
                let window = &group.entries[start..end];
                let value = aggregate(rule, window);
                if holds(rule, value) {
                    let alert = make_alert(rule, c, &p.key, &group.display, window, value);
                    group.entries.drain(start..end);
                    self.entries -= end - start;
                    produced.push(alert.clone());
                    out.push(Output::Alert(alert));
                    break;
                }
            }
        }
        if let Some(w) = state.watermark {
            produced.extend(close_windows(
                rule,
                c,
                state,
                w.saturating_sub(self.options.allowed_lateness_micros),
                fires_early,
                &mut self.entries,
                out,
            ));
        }
        produced
    }

    /// Ends the input: every open window closes now.
    pub fn finish(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        for c in 0..self.rules.len() {
            let rule = &self.rules[c];
            let fires_early = early(rule.rule.kind, &rule.rule.condition);
            close_windows(
                rule,
                c,
                &mut self.states[c],
                i64::MAX,
                fires_early,
                &mut self.entries,
                &mut out,
            );
        }
        out
    }

    fn bound(&mut self) -> Vec<Output> {
        if self.entries <= self.options.max_entries {
            return Vec::new();
        }
        // Drop the oldest tenth (by event time) across everything.
        let mut times: Vec<i64> = self
            .states
            .iter()
            .flat_map(|s| {
                s.groups
                    .values()
                    .flat_map(|g| g.entries.iter().map(|e| e.time))
            })
            .collect();
        if times.is_empty() {
            self.entries = 0;
            return Vec::new();
        }
        let cut = (self.entries - self.options.max_entries + self.options.max_entries / 10)
            .min(times.len() - 1);
        let (_, cutoff, _) = times.select_nth_unstable(cut);
        let cutoff = *cutoff;
        let mut dropped = 0;
        for state in &mut self.states {
            for group in state.groups.values_mut() {
                // Ties at the cutoff go too, so equal times cannot keep the
                // state over its bound.
                let n = group.entries.partition_point(|e| e.time <= cutoff);
                dropped += n;
                group.entries.drain(..n);
            }
            state.groups.retain(|_, g| !g.entries.is_empty());
        }
        self.entries -= dropped;
        metrics::counter!("spoor_correlation_evicted_total").increment(dropped as u64);
        tracing::warn!(
            dropped,
            limit = self.options.max_entries,
            "correlation state over its bound: the oldest matches were dropped; raise the bound or shorten timespans"
        );
        vec![Output::Evicted { entries: dropped }]
    }
}

/// A rule's state from its saved form, checked against the rule (the
/// snapshot is input), with the number of matches it holds; only groups in
/// `bucket` are kept.
fn restore_state(
    rule: &CompiledCorrelation,
    saved: &RuleState,
    bucket: Option<Bucket>,
) -> Result<(State, usize), String> {
    let inputs = rule.inputs.len();
    let width = rule.rule.group_by.len();
    let mut state = State {
        groups: BTreeMap::new(),
        watermark: saved.watermark,
    };
    let mut entries = 0;
    for g in &saved.groups {
        if g.key.len() != width {
            return Err(format!(
                "a group key has {} values; the rule groups by {width} fields",
                g.key.len()
            ));
        }
        if let Some(e) = g.entries.iter().find(|e| e.input >= inputs) {
            return Err(format!(
                "a match is of input {}; the rule reads {inputs} rules",
                e.input
            ));
        }
        // Windows are found by binary search over time-ordered matches.
        if g.entries.windows(2).any(|w| w[0].time > w[1].time) {
            return Err("a group's matches are out of time order".into());
        }
        if state.groups.contains_key(&g.key) {
            return Err("a group is listed twice".into());
        }
        // A group never stays empty between calls (see `close_windows`).
        if g.entries.is_empty() || bucket.is_some_and(|b| !b.holds(&g.key)) {
            continue;
        }
        entries += g.entries.len();
        state.groups.insert(
            g.key.clone(),
            Group {
                display: g.display.clone(),
                entries: g.entries.clone(),
            },
        );
    }
    Ok((state, entries))
}

fn make_alert(
    rule: &CompiledCorrelation,
    correlation: usize,
    key: &[String],
    display: &[String],
    window: &[Entry],
    value: f64,
) -> Alert {
    Alert {
        correlation,
        id: alert_id(rule, key, &window[0]),
        group: rule
            .rule
            .group_by
            .iter()
            .cloned()
            .zip(display.iter().cloned())
            .collect(),
        first: window[0].time,
        last: window[window.len() - 1].time,
        value,
        events: window.iter().map(|e| e.event.clone()).collect(),
    }
}

/// Closes the windows that end before `closed` (decides them for
/// close-evaluated conditions, drops what can no longer matter for the
/// others).
fn close_windows(
    rule: &CompiledCorrelation,
    c: usize,
    state: &mut State,
    closed: i64,
    fires_early: bool,
    entries: &mut usize,
    out: &mut Vec<Output>,
) -> Vec<Alert> {
    let span = rule.rule.timespan_secs.saturating_mul(1_000_000);
    let mut produced = Vec::new();
    for (key, group) in state.groups.iter_mut() {
        if fires_early {
            // No future window holding a non-late match reaches back here.
            let n = group
                .entries
                .partition_point(|e| e.time.saturating_add(span) < closed);
            group.entries.drain(..n);
            *entries -= n;
            continue;
        }
        while let Some(first) = group.entries.first() {
            let end_time = first.time.saturating_add(span);
            if end_time >= closed {
                break;
            }
            let end = group.entries.partition_point(|e| e.time <= end_time);
            let window = &group.entries[..end];
            let value = aggregate(rule, window);
            if holds(rule, value) {
                let alert = make_alert(rule, c, key, &group.display, window, value);
                produced.push(alert.clone());
                out.push(Output::Alert(alert));
            }
            group.entries.drain(..end);
            *entries -= end;
        }
    }
    state.groups.retain(|_, g| !g.entries.is_empty());
    produced
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{batch, engine};

    const RULES: &str = r#"
title: failed logon
name: failed
logsource: {product: windows, service: security}
detection:
    sel: {EventID: 4625}
    condition: sel
---
title: successful logon
name: success
logsource: {product: windows, service: security}
detection:
    sel: {EventID: 4624}
    condition: sel
"#;

    fn run(
        correlation: &str,
        batches: &[Vec<(i64, serde_json::Value)>],
        options: WindowOptions,
    ) -> Vec<Output> {
        let engine = engine(&format!("{RULES}---\n{correlation}"));
        let mut correlator = Correlator::new(&engine, options);
        let mut out = Vec::new();
        let mut offset = 0;
        for rows in batches {
            let b = batch(rows);
            let result = engine.evaluate(&b).expect("evaluate");
            let base = offset;
            out.extend(correlator.push(&result, &|row| (base + row).to_string()));
            offset += rows.len();
        }
        out.extend(correlator.finish());
        out
    }

    fn alerts(out: &[Output]) -> Vec<&Alert> {
        out.iter()
            .filter_map(|o| match o {
                Output::Alert(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    fn fail(t: i64, user: &str) -> (i64, serde_json::Value) {
        (
            t,
            json!({"EventID": 4625, "TargetUserName": user, "IpAddress": format!("10.0.0.{}", t % 7)}),
        )
    }

    fn ok(t: i64, user: &str) -> (i64, serde_json::Value) {
        (t, json!({"EventID": 4624, "TargetUserName": user}))
    }

    const COUNT: &str = "title: brute force\ncorrelation:\n  type: event_count\n  rules: [failed]\n  group-by: [TargetUserName]\n  timespan: 60s\n  condition: {gte: 3}\n";

    #[test]
    fn event_count_across_batch_boundaries_fires_once_per_window() {
        let out = run(
            COUNT,
            &[
                vec![fail(0, "bob"), fail(10, "alice")],
                vec![fail(20, "bob")],
                vec![fail(30, "bob"), fail(40, "bob")],
            ],
            WindowOptions::default(),
        );
        let a = alerts(&out);
        assert_eq!(a.len(), 1, "{out:?}");
        assert_eq!(
            a[0].group,
            [("TargetUserName".to_string(), "bob".to_string())]
        );
        assert_eq!((a[0].first, a[0].last, a[0].value), (0, 30_000_000, 3.0));
        assert_eq!(a[0].events, ["0", "2", "3"]);
    }

    #[test]
    fn windows_are_timespan_long_and_groups_ignore_case() {
        let out = run(
            COUNT,
            &[vec![
                fail(0, "bob"),
                fail(50, "BOB"),
                fail(60, "Bob"),
                fail(200, "bob"),
            ]],
            WindowOptions::default(),
        );
        assert_eq!(
            alerts(&out).len(),
            1,
            "0, 50 and 60 fit one 60 s window: {out:?}"
        );
        let out = run(
            COUNT,
            &[vec![fail(0, "bob"), fail(50, "bob"), fail(61, "bob")]],
            WindowOptions::default(),
        );
        assert!(alerts(&out).is_empty(), "0, 50 and 61 do not: {out:?}");
        let out = run(
            COUNT,
            &[vec![fail(0, "bob"), fail(70, "bob"), fail(100, "bob")]],
            WindowOptions::default(),
        );
        assert!(alerts(&out).is_empty(), "no 60 s span holds three: {out:?}");
    }

    #[test]
    fn out_of_order_matches_within_lateness_complete_windows() {
        // Arrives newest first, across batches.
        let out = run(
            COUNT,
            &[
                vec![fail(100, "bob")],
                vec![fail(80, "bob")],
                vec![fail(60, "bob")],
            ],
            WindowOptions::default(),
        );
        let a = alerts(&out);
        assert_eq!(a.len(), 1, "{out:?}");
        assert_eq!((a[0].first, a[0].last), (60_000_000, 100_000_000));
    }

    #[test]
    fn matches_later_than_the_allowed_lateness_are_reported_not_applied() {
        let options = WindowOptions {
            allowed_lateness_micros: 30 * 1_000_000,
            ..WindowOptions::default()
        };
        let out = run(
            COUNT,
            &[
                vec![fail(1000, "bob")],
                vec![fail(900, "bob"), fail(990, "bob")],
                vec![fail(995, "bob")],
            ],
            options,
        );
        assert!(
            out.iter().any(|o| matches!(
                o,
                Output::Late {
                    time: 900_000_000,
                    ..
                }
            )),
            "{out:?}"
        );
        let a = alerts(&out);
        assert_eq!(a.len(), 1, "990 is within lateness and counts: {out:?}");
        assert_eq!(a[0].events, ["2", "3", "0"]);
    }

    #[test]
    fn value_count_counts_distinct_values() {
        let rule = "title: spray\ncorrelation:\n  type: value_count\n  rules: [failed]\n  group-by: [IpAddress]\n  timespan: 5m\n  condition: {field: TargetUserName, gte: 3}\n";
        let row = |t: i64, user: &str| {
            (
                t,
                json!({"EventID": 4625, "TargetUserName": user, "IpAddress": "10.1.1.1"}),
            )
        };
        let out = run(
            rule,
            &[
                vec![row(0, "a"), row(1, "a"), row(2, "A")],
                vec![row(3, "b"), row(4, "c")],
            ],
            WindowOptions::default(),
        );
        let a = alerts(&out);
        assert_eq!(a.len(), 1, "{out:?}");
        assert_eq!(a[0].value, 3.0);
        assert_eq!(
            a[0].last, 4_000_000,
            "fires when the third distinct user arrives"
        );
    }

    #[test]
    fn temporal_needs_every_rule_in_any_order_and_ordered_needs_the_order() {
        let temporal = "title: t\ncorrelation:\n  type: temporal\n  rules: [failed, success]\n  group-by: [TargetUserName]\n  timespan: 60s\n";
        let out = run(
            temporal,
            &[vec![ok(10, "bob")], vec![fail(20, "bob")]],
            WindowOptions::default(),
        );
        assert_eq!(alerts(&out).len(), 1, "{out:?}");
        let ordered = temporal.replace("type: temporal", "type: temporal_ordered");
        let out = run(
            &ordered,
            &[vec![ok(10, "bob")], vec![fail(20, "bob")]],
            WindowOptions::default(),
        );
        assert!(alerts(&out).is_empty(), "success before failure: {out:?}");
        // Out of order arrival, but in order by event time.
        let out = run(
            &ordered,
            &[vec![ok(30, "bob")], vec![fail(20, "bob")]],
            WindowOptions::default(),
        );
        assert_eq!(alerts(&out).len(), 1, "{out:?}");
        let out = run(
            &ordered,
            &[vec![fail(0, "bob")], vec![ok(90, "bob")]],
            WindowOptions::default(),
        );
        assert!(alerts(&out).is_empty(), "too far apart: {out:?}");
    }

    #[test]
    fn sum_average_and_percentile() {
        let row = |t: i64, bytes: i64| {
            (
                t,
                json!({"EventID": 4625, "TargetUserName": "u", "Bytes": bytes}),
            )
        };
        let sum = "title: s\ncorrelation:\n  type: value_sum\n  rules: [failed]\n  group-by: [TargetUserName]\n  timespan: 1h\n  condition: {field: Bytes, gt: 1000}\n";
        let out = run(
            sum,
            &[vec![row(0, 400), row(10, 400)], vec![row(20, 300)]],
            WindowOptions::default(),
        );
        let a = alerts(&out);
        assert_eq!(
            (a.len(), a.first().map(|a| a.value)),
            (1, Some(1100.0)),
            "{out:?}"
        );
        let avg = sum
            .replace("value_sum", "value_avg")
            .replace("gt: 1000", "lt: 100");
        let out = run(
            &avg,
            &[
                vec![row(0, 50), row(10, 100), row(20, 120)],
                vec![row(5000, 500)],
            ],
            WindowOptions::default(),
        );
        let a = alerts(&out);
        assert_eq!(
            a.len(),
            1,
            "the first hour averages 90; decided when it closes: {out:?}"
        );
        assert_eq!(a[0].value, 90.0);
        let pct = sum
            .replace("value_sum", "value_percentile")
            .replace("gt: 1000", "percentile: 50, gte: 100");
        let out = run(
            &pct,
            &[vec![row(0, 10), row(1, 100), row(2, 1000)]],
            WindowOptions::default(),
        );
        assert_eq!(
            alerts(&out).first().map(|a| a.value),
            Some(100.0),
            "{out:?}"
        );
    }

    #[test]
    fn chained_correlations_read_alerts() {
        let chained = format!(
            "{COUNT}name: brute\n---\ntitle: brute then success\ncorrelation:\n  type: temporal_ordered\n  rules: [brute, success]\n  group-by: [TargetUserName]\n  timespan: 10m\n"
        );
        let out = run(
            &chained,
            &[vec![
                fail(0, "bob"),
                fail(1, "bob"),
                fail(2, "bob"),
                ok(100, "bob"),
                ok(100, "eve"),
            ]],
            WindowOptions::default(),
        );
        let a = alerts(&out);
        assert_eq!(a.len(), 2, "{out:?}");
        assert_eq!(a[1].events.len(), 2);
        assert!(a[1].events[0].starts_with("alert:"));
    }

    #[test]
    fn state_is_bounded_and_eviction_is_reported() {
        let rule = "title: many\ncorrelation:\n  type: event_count\n  rules: [failed]\n  group-by: [TargetUserName]\n  timespan: 1d\n  condition: {gte: 1000000}\n";
        let rows: Vec<_> = (0..500).map(|i| fail(i, &format!("u{i}"))).collect();
        let options = WindowOptions {
            max_entries: 100,
            ..WindowOptions::default()
        };
        let out = run(rule, &[rows], options);
        let evicted: usize = out
            .iter()
            .map(|o| match o {
                Output::Evicted { entries } => *entries,
                _ => 0,
            })
            .sum();
        assert!(evicted >= 400, "{evicted}");
        // Equal times (a burst in one second) still shrink the state.
        let burst: Vec<_> = (0..500).map(|i| fail(7, &format!("u{i}"))).collect();
        let out = run(rule, &[burst], options);
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Evicted { entries } if *entries >= 400)),
            "{:?}",
            out.iter()
                .filter(|o| !matches!(o, Output::Alert(_)))
                .collect::<Vec<_>>()
        );
    }

    // --- Checkpoints, versions, buckets, determinism. ---

    /// Correlations of every evaluation style: early-firing (`gte`),
    /// close-evaluated (`lt`, `value_avg`), temporal, and a chained one.
    const MIXED: &str = concat!(
        "title: brute\nname: brute\ncorrelation:\n  type: event_count\n  rules: [failed]\n  group-by: [TargetUserName]\n  timespan: 60s\n  condition: {gte: 3}\n---\n",
        "title: quiet\ncorrelation:\n  type: event_count\n  rules: [failed]\n  group-by: [TargetUserName]\n  timespan: 30s\n  condition: {lt: 2}\n---\n",
        "title: small transfers\ncorrelation:\n  type: value_avg\n  rules: [failed, success]\n  group-by: [TargetUserName]\n  timespan: 2m\n  condition: {field: Bytes, lt: 80}\n---\n",
        "title: fail and success\ncorrelation:\n  type: temporal\n  rules: [failed, success]\n  group-by: [TargetUserName]\n  timespan: 20s\n---\n",
        "title: brute then success\ncorrelation:\n  type: temporal_ordered\n  rules: [brute, success]\n  group-by: [TargetUserName]\n  timespan: 10m\n",
    );

    const USERS: [&str; 8] = [
        "bob", "Bob", "alice", "eve", "mallory", "trent", "peggy", "victor",
    ];

    /// A reproducible stream in batches of 1 to 12 rows: mostly in time
    /// order with a little jitter; with `late`, one row in ten goes 40 to
    /// 400 s back (some within a 120 s lateness, some past it).
    fn stream(seed: u64, rows: usize, late: bool) -> Vec<Vec<(i64, serde_json::Value)>> {
        let mut x = seed;
        let mut next = move |n: u64| {
            // A 64-bit LCG (Knuth's MMIX constants), high bits used.
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        let mut batches = Vec::new();
        let mut current = Vec::new();
        let mut size = 1 + next(12) as usize;
        let mut t = 1_000;
        for _ in 0..rows {
            t += next(6) as i64;
            let mut time = t + next(3) as i64;
            if late && next(10) == 0 {
                time -= 40 + next(360) as i64;
            }
            let user = USERS[next(USERS.len() as u64) as usize];
            let id = if next(10) < 7 { 4625 } else { 4624 };
            current.push((
                time,
                json!({"EventID": id, "TargetUserName": user, "Bytes": next(200)}),
            ));
            if current.len() == size {
                batches.push(std::mem::take(&mut current));
                size = 1 + next(12) as usize;
            }
        }
        if !current.is_empty() {
            batches.push(current);
        }
        batches
    }

    /// Every batch's outputs, then `finish`'s, uninterrupted; and the
    /// matches held after each batch.
    fn uninterrupted(
        yaml: &str,
        batches: &[Vec<(i64, serde_json::Value)>],
        options: WindowOptions,
        bucket: Option<(u32, u32)>,
    ) -> (Vec<Vec<Output>>, Vec<usize>) {
        let engine = engine(yaml);
        let mut correlator = Correlator::new(&engine, options);
        if let Some((b, n)) = bucket {
            correlator = correlator.with_bucket(b, n);
        }
        let mut out = Vec::new();
        let mut held = Vec::new();
        let mut offset = 0;
        for rows in batches {
            let result = engine.evaluate(&batch(rows)).expect("evaluate");
            let base = offset;
            out.push(correlator.push(&result, &|row| (base + row).to_string()));
            held.push(correlator.state_entries());
            offset += rows.len();
        }
        out.push(correlator.finish());
        (out, held)
    }

    /// The same, but every batch by a new correlator of a freshly compiled
    /// engine, restored from the previous one's snapshot through JSON.
    fn checkpointed(
        yaml: &str,
        batches: &[Vec<(i64, serde_json::Value)>],
        options: WindowOptions,
    ) -> (Vec<Vec<Output>>, Vec<usize>) {
        let mut out = Vec::new();
        let mut held = Vec::new();
        let mut saved: Option<String> = None;
        let mut offset = 0;
        let resume = |saved: &Option<String>| {
            let engine = engine(yaml);
            let mut correlator = Correlator::new(&engine, options);
            if let Some(json) = saved {
                let snapshot: CorrelatorSnapshot =
                    serde_json::from_str(json).expect("a snapshot reads back");
                let entries = snapshot.entries();
                let report = correlator.restore(snapshot);
                assert!(report.dropped.is_empty(), "{report:?}");
                assert_eq!(report.restored.len(), engine.correlations.len());
                assert_eq!(correlator.state_entries(), entries);
            }
            (engine, correlator)
        };
        for rows in batches {
            let (engine, mut correlator) = resume(&saved);
            let result = engine.evaluate(&batch(rows)).expect("evaluate");
            let base = offset;
            out.push(correlator.push(&result, &|row| (base + row).to_string()));
            held.push(correlator.state_entries());
            saved = Some(serde_json::to_string(&correlator.snapshot()).expect("serializes"));
            offset += rows.len();
        }
        let (_, mut correlator) = resume(&saved);
        out.push(correlator.finish());
        (out, held)
    }

    fn all_alerts(out: &[Vec<Output>]) -> Vec<Alert> {
        out.iter()
            .flat_map(|batch| alerts(batch))
            .cloned()
            .collect()
    }

    #[test]
    fn a_replay_from_a_checkpoint_at_every_batch_gives_the_same_outputs() {
        let yaml = format!("{RULES}---\n{MIXED}");
        let batches = stream(7, 400, true);
        for max_entries in [1_000_000, 25] {
            let options = WindowOptions {
                allowed_lateness_micros: 120 * 1_000_000,
                max_entries,
            };
            let (straight, straight_held) = uninterrupted(&yaml, &batches, options, None);
            let (resumed, resumed_held) = checkpointed(&yaml, &batches, options);
            assert_eq!(straight_held, resumed_held);
            assert_eq!(straight.len(), resumed.len());
            for (i, (a, b)) in straight.iter().zip(&resumed).enumerate() {
                assert_eq!(a, b, "batch {i} (max_entries {max_entries})");
            }
            // The stream exercises what it claims to.
            let flat: Vec<&Output> = straight.iter().flatten().collect();
            let a = all_alerts(&straight);
            for c in 0..5 {
                assert!(
                    a.iter().any(|a| a.correlation == c),
                    "correlation {c} raised no alert"
                );
            }
            assert!(flat.iter().any(|o| matches!(o, Output::Late { .. })));
            if max_entries == 25 {
                assert!(flat.iter().any(|o| matches!(o, Output::Evicted { .. })));
            }
        }
    }

    /// The state held after `rows`, as JSON, for `yaml`.
    fn state_after(yaml: &str, rows: &[(i64, serde_json::Value)]) -> String {
        let engine = engine(yaml);
        let mut correlator = Correlator::new(&engine, WindowOptions::default());
        let result = engine.evaluate(&batch(rows)).expect("evaluate");
        correlator.push(&result, &|row| row.to_string());
        serde_json::to_string(&correlator.snapshot()).expect("serializes")
    }

    fn restored(yaml: &str, saved: &str) -> (Engine, Correlator, RestoreReport) {
        let engine = engine(yaml);
        let mut correlator = Correlator::new(&engine, WindowOptions::default());
        let report = correlator.restore(serde_json::from_str(saved).expect("reads back"));
        (engine, correlator, report)
    }

    const BRUTE5: &str = "title: brute\ncorrelation:\n  type: event_count\n  rules: [failed]\n  group-by: [TargetUserName]\n  timespan: 60s\n  condition: {gte: 5}\n";
    const PAIR: &str = "title: pair\ncorrelation:\n  type: temporal\n  rules: [failed, success]\n  group-by: [TargetUserName]\n  timespan: 60s\n";
    const LOGONS: &str = "title: logons\ncorrelation:\n  type: event_count\n  rules: [success]\n  group-by: [TargetUserName]\n  timespan: 60s\n  condition: {gte: 5}\n";

    #[test]
    fn only_the_state_of_unchanged_rules_is_restored() {
        let yaml = format!("{RULES}---\n{BRUTE5}---\n{PAIR}---\n{LOGONS}");
        let saved = state_after(&yaml, &[fail(0, "bob"), fail(10, "bob"), ok(5, "alice")]);
        let names = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };

        // Nothing changed (but comments, blank lines and document order):
        // everything is restored.
        let reordered = format!("# reordered\n\n{RULES}---\n{LOGONS}---\n{PAIR}\n\n---\n{BRUTE5}");
        let (_, c, report) = restored(&reordered, &saved);
        assert_eq!(names(&report.restored), ["brute", "logons", "pair"]);
        assert!(report.dropped.is_empty());
        assert_eq!(c.state_entries(), 2 + 3 + 1);

        // One correlation's text changed: its state goes, the others' stay.
        let changed = yaml.replace(
            "type: temporal\n  rules: [failed, success]\n  group-by: [TargetUserName]\n  timespan: 60s",
            "type: temporal\n  rules: [failed, success]\n  group-by: [TargetUserName]\n  timespan: 90s",
        );
        assert_ne!(changed, yaml);
        let (engine, mut c, report) = restored(&changed, &saved);
        assert_eq!(names(&report.restored), ["brute", "logons"]);
        assert_eq!(report.dropped, ["pair"]);
        assert_eq!(c.state_entries(), 2 + 1, "brute's two, logons' one");
        // The restored state is live: three more failures complete five.
        let result = engine
            .evaluate(&batch(&[fail(20, "bob"), fail(30, "bob"), fail(40, "bob")]))
            .expect("evaluate");
        let out = c.push(&result, &|row| format!("new{row}"));
        let a = alerts(&out);
        assert_eq!(a.len(), 1, "{out:?}");
        assert_eq!(a[0].events, ["0", "1", "new0", "new1", "new2"]);

        // A base rule changed: every correlation reading it is dropped.
        let changed = yaml.replace("sel: {EventID: 4625}", "sel: {EventID: [4625, 4771]}");
        assert_ne!(changed, yaml);
        let (_, c, report) = restored(&changed, &saved);
        assert_eq!(report.restored, ["logons"]);
        assert_eq!(names(&report.dropped), ["brute", "pair"]);
        assert_eq!(c.state_entries(), 1);

        // So is one whose base rule gained a global filter.
        let filtered = format!(
            "{yaml}---\ntitle: not the service account\nlogsource: {{product: windows, service: security}}\nfilter:\n  rules: [failed]\n  svc: {{TargetUserName: svc}}\n  condition: svc\n"
        );
        let (_, _, report) = restored(&filtered, &saved);
        assert_eq!(report.restored, ["logons"]);
        assert_eq!(names(&report.dropped), ["brute", "pair"]);

        // And a rule no longer loaded.
        let fewer = format!("{RULES}---\n{BRUTE5}");
        let (_, c, report) = restored(&fewer, &saved);
        assert_eq!(report.restored, ["brute"]);
        assert_eq!(names(&report.dropped), ["logons", "pair"]);
        assert_eq!(c.state_entries(), 2);
    }

    #[test]
    fn versions_follow_content_filters_and_inputs() {
        let yaml = format!("{RULES}---\n{BRUTE5}---\n{PAIR}---\n{LOGONS}");
        let base = engine(&yaml);
        let version = |e: &Engine, key: &str| {
            e.detections
                .iter()
                .map(|d| &d.info)
                .chain(e.correlations.iter().map(|c| &c.info))
                .find(|i| i.key() == key)
                .map(|i| i.version.clone())
                .expect("the rule")
        };
        for key in [
            "failed logon",
            "successful logon",
            "brute",
            "pair",
            "logons",
        ] {
            let v = version(&base, key);
            assert_eq!(v.len(), 16, "{v}");
            assert!(v.chars().all(|c| c.is_ascii_hexdigit()), "{v}");
        }
        // A detection without filters has its document's own version.
        let parsed = crate::sigma::parse_documents(RULES);
        let document = parsed[0].as_ref().expect("a rule");
        assert_eq!(
            version(&base, "failed logon"),
            crate::engine::rule_version(document)
        );
        // A tag is part of the document.
        let tagged = engine(&yaml.replace(
            "name: failed\n",
            "name: failed\ntags: [attack.credential_access]\n",
        ));
        assert_ne!(
            version(&base, "failed logon"),
            version(&tagged, "failed logon")
        );
        assert_ne!(version(&base, "brute"), version(&tagged, "brute"));
        assert_eq!(version(&base, "logons"), version(&tagged, "logons"));
        // Through a chain of correlations too.
        let chained = format!(
            "{RULES}---\n{BRUTE5}name: brute\n---\ntitle: chain\ncorrelation:\n  type: temporal_ordered\n  rules: [brute, success]\n  group-by: [TargetUserName]\n  timespan: 10m\n"
        );
        let a = engine(&chained);
        let b = engine(&chained.replace("sel: {EventID: 4625}", "sel: {EventID: 4626}"));
        assert_ne!(version(&a, "chain"), version(&b, "chain"));
    }

    #[test]
    fn two_buckets_split_the_alerts_of_one() {
        let yaml = format!("{RULES}---\n{MIXED}");
        // No match is later than the lateness behind any watermark, so each
        // shard's own watermark decides windows as the single one does.
        let batches = stream(11, 400, false);
        let options = WindowOptions {
            allowed_lateness_micros: 60 * 1_000_000,
            ..WindowOptions::default()
        };
        let (all, _) = uninterrupted(&yaml, &batches, options, None);
        assert!(
            !all.iter()
                .flatten()
                .any(|o| matches!(o, Output::Late { .. }))
        );
        let ids = |out: &[Vec<Output>]| {
            let mut ids: Vec<(usize, String, Vec<String>)> = all_alerts(out)
                .into_iter()
                .map(|a| (a.correlation, a.id, a.events))
                .collect();
            ids.sort();
            ids
        };
        let whole = ids(&all);
        let (zero, _) = uninterrupted(&yaml, &batches, options, Some((0, 2)));
        let (one, _) = uninterrupted(&yaml, &batches, options, Some((1, 2)));
        let (zero, one) = (ids(&zero), ids(&one));
        assert!(!zero.is_empty() && !one.is_empty(), "{zero:?} {one:?}");
        assert!(zero.iter().all(|a| !one.contains(a)), "disjoint");
        let mut union = [zero, one].concat();
        union.sort();
        assert_eq!(union, whole);
        // Every correlation, the chained one included, raised alerts.
        for c in 0..5 {
            assert!(whole.iter().any(|a| a.0 == c), "correlation {c}");
        }
    }

    #[test]
    fn a_bucket_keeps_only_its_keys_also_from_a_snapshot() {
        let yaml = format!("{RULES}---\n{BRUTE5}");
        let rows: Vec<_> = USERS.iter().map(|u| fail(0, u)).collect();
        let saved = state_after(&yaml, &rows);
        let engine = engine(&yaml);
        let mut held = 0;
        for b in 0..3 {
            let mut c = Correlator::new(&engine, WindowOptions::default()).with_bucket(b, 3);
            let report = c.restore(serde_json::from_str(&saved).expect("reads back"));
            assert_eq!(report.restored, ["brute"]);
            let snapshot = c.snapshot();
            assert_eq!(snapshot.bucket(), Some((b, 3)));
            for rule in &snapshot.rules {
                for g in &rule.groups {
                    let parts: Vec<&str> = g.key.iter().map(String::as_str).collect();
                    assert_eq!(key_bucket(&parts, 3), b);
                }
            }
            held += c.state_entries();
        }
        // Bob and bob are one group; every match is in exactly one bucket.
        assert_eq!(held, USERS.len());
    }

    #[test]
    fn key_buckets_are_fixed() {
        assert_eq!(key_bucket(&["bob"], 0), 0);
        assert_eq!(key_bucket(&["bob"], 1), 0);
        // Pinned values: shards and their checkpoints depend on them, so
        // they must never change.
        let pinned: Vec<u32> = [&["bob"][..], &["alice"], &["10.0.0.1", "bob"], &[], &[""]]
            .iter()
            .map(|parts| key_bucket(parts, 1_000_003))
            .collect();
        assert_eq!(pinned, PINNED_BUCKETS);
        // Parts are length-prefixed.
        assert_ne!(
            key_bucket(&["ab", "c"], u32::MAX),
            key_bucket(&["a", "bc"], u32::MAX)
        );
        assert_ne!(key_bucket(&[], u32::MAX), key_bucket(&[""], u32::MAX));
    }

    /// Computed independently (Python's hashlib, the definition in
    /// [`key_bucket`]'s documentation).
    const PINNED_BUCKETS: [u32; 5] = [249113, 185884, 437107, 183011, 981272];

    #[test]
    fn alert_ids_change_with_the_rule_version() {
        let rows = vec![vec![fail(0, "bob"), fail(1, "bob"), fail(2, "bob")]];
        let ids = |yaml: &str| {
            let (out, _) = uninterrupted(yaml, &rows, WindowOptions::default(), None);
            all_alerts(&out)
                .into_iter()
                .map(|a| (a.id, a.events))
                .collect::<Vec<_>>()
        };
        let yaml = format!("{RULES}---\n{COUNT}");
        let first = ids(&yaml);
        assert_eq!(first.len(), 1);
        assert_eq!(first, ids(&yaml), "the same rules give the same ids");
        // The same events, another version of the correlation.
        let leveled =
            ids(&yaml.replace("title: brute force\n", "title: brute force\nlevel: high\n"));
        assert_eq!(leveled.len(), 1);
        assert_eq!(leveled[0].1, first[0].1);
        assert_ne!(leveled[0].0, first[0].0);
        // Another version of the rule it reads.
        let tagged = ids(&yaml.replace("name: failed\n", "name: failed\ntags: [x]\n"));
        assert_eq!(tagged.len(), 1);
        assert_ne!(tagged[0].0, first[0].0);
    }

    #[test]
    fn windows_closing_together_come_out_in_group_key_order() {
        let yaml = format!("{RULES}---\n{MIXED}");
        let users: Vec<String> = (0..200).map(|i| format!("user{i:03}")).collect();
        let rows: Vec<_> = users.iter().map(|u| fail(0, u)).collect();
        let run = || {
            let (out, _) = uninterrupted(
                &yaml,
                &[rows.clone(), vec![fail(10_000, "late")]],
                WindowOptions::default(),
                None,
            );
            out
        };
        let out = run();
        // `quiet` (lt 2) decides all 200 windows as the second batch moves
        // the watermark past them.
        let quiet: Vec<&str> = alerts(&out[1])
            .into_iter()
            .filter(|a| a.correlation == 1)
            .map(|a| a.group[0].1.as_str())
            .collect();
        assert_eq!(quiet, users);
        assert_eq!(out, run());
    }

    #[test]
    fn unusable_snapshots_are_dropped_not_trusted() {
        let yaml = format!("{RULES}---\n{BRUTE5}---\n{LOGONS}");
        let saved = state_after(&yaml, &[fail(0, "bob"), ok(1, "bob")]);
        let mut value: serde_json::Value = serde_json::from_str(&saved).expect("json");
        // A match of an input the rule does not have.
        value["rules"][0]["groups"][0]["entries"][0]["input"] = json!(7);
        let (_, c, report) = restored(&yaml, &value.to_string());
        assert_eq!(report.dropped, ["brute"]);
        assert_eq!(report.restored, ["logons"]);
        assert_eq!(c.state_entries(), 1);
        // A format this version does not know.
        let mut value: serde_json::Value = serde_json::from_str(&saved).expect("json");
        value["format"] = json!(99);
        let (_, c, report) = restored(&yaml, &value.to_string());
        assert_eq!(report.dropped, ["brute", "logons"]);
        assert_eq!(c.state_entries(), 0);
    }
}

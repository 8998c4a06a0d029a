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

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::engine::{BatchResult, CompiledCorrelation, Engine, InputSource};
use crate::sigma::{CmpOp, CorrelationKind};

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
    /// Derived from (rule, group, window start, first event): the same
    /// alert for the same events, live or replayed.
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

#[derive(Debug, Clone)]
struct Entry {
    time: i64,
    input: usize,
    value: Option<String>,
    event: String,
}

#[derive(Debug, Default)]
struct Group {
    display: Vec<String>,
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct State {
    groups: HashMap<Vec<String>, Group>,
    watermark: Option<i64>,
}

/// Correlation state for every correlation rule of an engine.
#[derive(Debug)]
pub struct Correlator {
    rules: Vec<CompiledCorrelation>,
    states: Vec<State>,
    options: WindowOptions,
    entries: usize,
}

/// A new match for a correlation.
struct Pending {
    key: Vec<String>,
    display: Vec<String>,
    entry: Entry,
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

fn alert_id(rule: &CompiledCorrelation, key: &[String], first: &Entry) -> String {
    let mut h = Sha256::new();
    h.update(rule.info.key().as_bytes());
    for k in key {
        h.update([0]);
        h.update(k.as_bytes());
    }
    h.update([1]);
    h.update(first.time.to_le_bytes());
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
                .map(|_| State {
                    groups: HashMap::new(),
                    watermark: None,
                })
                .collect(),
            options,
            entries: 0,
        }
    }

    /// Feeds one batch's detection matches; `event` names a row's event
    /// (its provenance) in alerts.
    pub fn push(&mut self, result: &BatchResult, event: &dyn Fn(usize) -> String) -> Vec<Output> {
        let mut out = Vec::new();
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
                            if key.len() < input.group_fields.len() {
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
                            pending.push(Pending {
                                key: display.iter().map(|v| v.to_lowercase()).collect(),
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
}

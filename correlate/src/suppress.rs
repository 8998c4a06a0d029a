//! Alert suppression: after an alert of a rule with a `suppression`, the
//! rule's further alerts with the same key (the values of
//! `suppression.group_by`) within `suppression.window` of it are not
//! raised.
//!
//! Time is event time (the alert's last event), never the clock, so a shard
//! replaying the same events after a failover suppresses exactly the same
//! alerts; the anchors are part of the correlator's checkpoint.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The last raised alert per (rule, key), with its window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suppressor {
    anchors: BTreeMap<(String, Vec<String>), Anchor>,
    /// The latest alert time seen, for expiring anchors.
    latest: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Anchor {
    time: i64,
    window: i64,
}

/// One anchor in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedAnchor {
    rule: String,
    key: Vec<String>,
    time: i64,
    window: i64,
}

impl Suppressor {
    /// Whether an alert of `rule` keyed `key` at event time `time` is
    /// suppressed by an earlier one within `window_micros` (either side: a
    /// late event of the same burst is suppressed too). An alert that is
    /// not suppressed becomes the key's new anchor.
    pub fn suppressed(
        &mut self,
        rule: &str,
        key: Vec<String>,
        time: i64,
        window_micros: i64,
    ) -> bool {
        self.latest = self.latest.max(time);
        let slot = (rule.to_string(), key);
        // The rule's window as it is now: a tuned suppression applies to
        // anchors from before the change too.
        if let Some(anchor) = self.anchors.get_mut(&slot)
            && time.abs_diff(anchor.time) < window_micros.unsigned_abs()
        {
            anchor.window = window_micros;
            return true;
        }
        self.anchors.insert(
            slot,
            Anchor {
                time,
                window: window_micros,
            },
        );
        false
    }

    /// Drops anchors whose window ended more than `lateness_micros` before
    /// the latest alert, and the oldest ones beyond `max_anchors`.
    pub fn expire(&mut self, lateness_micros: i64, max_anchors: usize) {
        let horizon = self.latest.saturating_sub(lateness_micros);
        self.anchors
            .retain(|_, a| a.time.saturating_add(a.window) >= horizon);
        if self.anchors.len() > max_anchors {
            let mut times: Vec<i64> = self.anchors.values().map(|a| a.time).collect();
            times.sort_unstable();
            let cut = times[self.anchors.len() - max_anchors];
            self.anchors.retain(|_, a| a.time >= cut);
        }
    }

    /// The anchors held.
    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    /// Whether no anchor is held.
    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// The anchors, for a checkpoint.
    pub fn save(&self) -> Vec<SavedAnchor> {
        self.anchors
            .iter()
            .map(|((rule, key), a)| SavedAnchor {
                rule: rule.clone(),
                key: key.clone(),
                time: a.time,
                window: a.window,
            })
            .collect()
    }

    /// Anchors of a checkpoint. Those of a rule that is gone or lost its
    /// suppression are never asked for again and expire with their window.
    pub fn restore(saved: Vec<SavedAnchor>) -> Suppressor {
        let mut s = Suppressor::default();
        for a in saved {
            s.latest = s.latest.max(a.time);
            s.anchors.insert(
                (a.rule, a.key),
                Anchor {
                    time: a.time,
                    window: a.window,
                },
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    fn key(k: &str) -> Vec<String> {
        vec![k.to_string()]
    }

    #[test]
    fn one_alert_per_key_and_window() {
        let mut s = Suppressor::default();
        assert!(!s.suppressed("r", key("a"), 0, 10 * MIN));
        assert!(s.suppressed("r", key("a"), 5 * MIN, 10 * MIN));
        // Another key and another rule are their own.
        assert!(!s.suppressed("r", key("b"), 5 * MIN, 10 * MIN));
        assert!(!s.suppressed("q", key("a"), 5 * MIN, 10 * MIN));
        // The window is measured from the raised alert, not extended by
        // suppressed ones.
        assert!(s.suppressed("r", key("a"), 9 * MIN, 10 * MIN));
        assert!(!s.suppressed("r", key("a"), 10 * MIN, 10 * MIN));
        assert!(s.suppressed("r", key("a"), 19 * MIN, 10 * MIN));
        // A late event of the burst before the anchor.
        assert!(s.suppressed("r", key("a"), 8 * MIN, 10 * MIN));
    }

    #[test]
    fn a_tuned_window_applies_to_earlier_anchors() {
        let mut s = Suppressor::default();
        assert!(!s.suppressed("r", key("a"), 0, 60 * MIN));
        // The window shortened to 10 minutes (a new rule set version keeps
        // the anchor): 20 minutes later is past it.
        assert!(!s.suppressed("r", key("a"), 20 * MIN, 10 * MIN));
        assert!(s.suppressed("r", key("a"), 25 * MIN, 10 * MIN));
    }

    #[test]
    fn anchors_survive_a_checkpoint_and_expire() {
        let mut s = Suppressor::default();
        assert!(!s.suppressed("r", key("a"), 0, 10 * MIN));
        assert!(!s.suppressed("gone", key("a"), 0, 10 * MIN));
        let mut back = Suppressor::restore(s.save());
        assert_eq!(back.len(), 2);
        assert!(back.suppressed("r", key("a"), MIN, 10 * MIN));
        assert!(!back.suppressed("r", key("b"), 60 * MIN, 10 * MIN));
        back.expire(5 * MIN, 100);
        assert_eq!(back.len(), 1, "the old anchor expired, the new one stays");
        assert!(!back.suppressed("r", key("a"), 61 * MIN, 10 * MIN));
        back.expire(0, 1);
        assert_eq!(back.len(), 1, "bounded to the newest");
    }
}

//! The leader's shard scheduler and member liveness.
//!
//! Liveness is decided by the leader alone, on its monotonic clock
//! (`Instant`): a wall-clock jump on any node neither kills members nor keeps
//! dead ones alive. A node that becomes leader gives every member a full
//! timeout of grace, since it has not been hearing their heartbeats. Its
//! decisions (a member expired, shards moved) are Raft entries, so every
//! replica agrees on them and every move bumps the shard's lease epoch.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use spoor_common::control::{Shard, ShardId};

/// What the leader has heard from members since it became leader.
#[derive(Debug, Default)]
pub struct Liveness {
    /// The term this record belongs to.
    term: u64,
    /// When this node became leader for `term`.
    since: Option<Instant>,
    /// Last heartbeat per member.
    heard: HashMap<u64, Instant>,
    /// Reported load per worker and shard (events per second).
    loads: HashMap<u64, HashMap<ShardId, f64>>,
}

impl Liveness {
    /// Starts afresh when this node leads a new term.
    pub fn on_term(&mut self, term: u64, now: Instant) {
        if self.term != term || self.since.is_none() {
            *self = Liveness {
                term,
                since: Some(now),
                ..Liveness::default()
            };
        }
    }

    /// Records a heartbeat.
    pub fn heard(&mut self, node_id: u64, loads: Vec<(ShardId, f64)>, now: Instant) {
        self.heard.insert(node_id, now);
        if loads.is_empty() {
            self.loads.remove(&node_id);
        } else {
            self.loads.insert(node_id, loads.into_iter().collect());
        }
    }

    /// Time since the member was last heard, or since this leadership began.
    pub fn silent_for(&self, node_id: u64, now: Instant) -> Duration {
        let last = self.heard.get(&node_id).copied().or(self.since);
        last.map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// Milliseconds since the member's last heartbeat, if heard this term.
    pub fn last_heartbeat_ms(&self, node_id: u64, now: Instant) -> Option<u64> {
        self.heard
            .get(&node_id)
            .map(|t| now.saturating_duration_since(*t).as_millis() as u64)
    }

    /// The load a worker reported for a shard (0 when unknown).
    pub fn load(&self, worker: u64, shard: &ShardId) -> f64 {
        self.loads
            .get(&worker)
            .and_then(|m| m.get(shard))
            .copied()
            .unwrap_or(0.0)
    }
}

/// A load swap is worth it only if it narrows the spread by this share.
const MIN_SWAP_GAIN: f64 = 0.2;

/// The lease moves that bring `shards` to a balanced assignment over
/// `workers` (live workers): shards without a live holder go to the least
/// loaded worker; then one shard moves from the fullest to the emptiest
/// worker while their counts differ by more than one; then, with counts
/// balanced, one pair of shards is swapped between the most and least loaded
/// workers when that narrows the load spread noticeably. Deterministic:
/// ties break by node id and shard id.
pub fn plan(
    shards: &[Shard],
    workers: &[u64],
    load: impl Fn(u64, &ShardId) -> f64,
) -> Vec<(ShardId, Option<u64>)> {
    let mut moves: BTreeMap<ShardId, Option<u64>> = BTreeMap::new();
    if workers.is_empty() {
        for s in shards.iter().filter(|s| s.holder.is_some()) {
            moves.insert(s.id.clone(), None);
        }
        return moves.into_iter().collect();
    }
    // worker → its shards (after the moves planned so far).
    let mut held: BTreeMap<u64, Vec<ShardId>> = workers.iter().map(|w| (*w, Vec::new())).collect();
    let mut orphans = Vec::new();
    for s in shards {
        match s.holder.filter(|h| held.contains_key(h)) {
            Some(h) => held.entry(h).or_default().push(s.id.clone()),
            None => orphans.push(s.id.clone()),
        }
    }
    let worker_load = |w: u64, held: &BTreeMap<u64, Vec<ShardId>>| -> f64 {
        held.get(&w)
            .map_or(0.0, |ids| ids.iter().map(|s| load(w, s)).sum())
    };
    for id in orphans {
        let target = *held
            .keys()
            .min_by(|a, b| {
                let ka = (held[*a].len(), worker_load(**a, &held));
                let kb = (held[*b].len(), worker_load(**b, &held));
                ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1)).then(a.cmp(b))
            })
            .expect("workers is not empty");
        held.entry(target).or_default().push(id.clone());
        moves.insert(id, Some(target));
    }
    // Count balance.
    loop {
        let (max_w, max_n) = held
            .iter()
            .map(|(w, s)| (*w, s.len()))
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .expect("workers is not empty");
        let (min_w, min_n) = held
            .iter()
            .map(|(w, s)| (*w, s.len()))
            .min_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)))
            .expect("workers is not empty");
        if max_n <= min_n + 1 {
            break;
        }
        // Move the lightest shard of the fullest worker.
        let ids = held.get_mut(&max_w).expect("present");
        let (i, _) = ids
            .iter()
            .enumerate()
            .min_by(|a, b| {
                load(max_w, a.1)
                    .total_cmp(&load(max_w, b.1))
                    .then(a.1.cmp(b.1))
            })
            .expect("max worker holds shards");
        let id = ids.remove(i);
        held.entry(min_w).or_default().push(id.clone());
        moves.insert(id, Some(min_w));
    }
    // Load balance: one swap per round keeps moves (and epoch bumps) few.
    if held.len() > 1 {
        let loads: Vec<(u64, f64)> = held.keys().map(|w| (*w, worker_load(*w, &held))).collect();
        let hot = loads
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .copied();
        let cold = loads
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
            .copied();
        if let (Some((hw, hl)), Some((cw, cl))) = (hot, cold)
            && hw != cw
        {
            let spread = hl - cl;
            let mut best: Option<(f64, ShardId, ShardId)> = None;
            for a in &held[&hw] {
                for b in &held[&cw] {
                    let delta = load(hw, a) - load(cw, b);
                    if delta <= 0.0 || delta >= spread {
                        continue;
                    }
                    let new_spread = (spread - 2.0 * delta).abs();
                    if new_spread < spread * (1.0 - MIN_SWAP_GAIN)
                        && best.as_ref().is_none_or(|(s, _, _)| new_spread < *s)
                    {
                        best = Some((new_spread, a.clone(), b.clone()));
                    }
                }
            }
            if let Some((_, a, b)) = best {
                moves.insert(a, Some(cw));
                moves.insert(b, Some(hw));
            }
        }
    }
    // Drop moves that end where the shard already is.
    let current: HashMap<&ShardId, Option<u64>> =
        shards.iter().map(|s| (&s.id, s.holder)).collect();
    moves
        .into_iter()
        .filter(|(id, to)| current.get(id).copied().flatten() != *to)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(bucket: u32, holder: Option<u64>) -> Shard {
        Shard {
            id: ShardId {
                tenant: "acme".into(),
                rule_group: "g".into(),
                bucket,
            },
            holder,
            epoch: 0,
            checkpoint: None,
        }
    }

    fn apply(shards: &mut [Shard], moves: &[(ShardId, Option<u64>)]) {
        for (id, to) in moves {
            let s = shards.iter_mut().find(|s| &s.id == id).expect("shard");
            s.holder = *to;
        }
    }

    fn counts(shards: &[Shard]) -> BTreeMap<u64, usize> {
        let mut out = BTreeMap::new();
        for s in shards {
            if let Some(h) = s.holder {
                *out.entry(h).or_default() += 1;
            }
        }
        out
    }

    #[test]
    fn new_shards_spread_and_a_joining_worker_takes_its_share() {
        let mut shards: Vec<Shard> = (0..8).map(|b| shard(b, None)).collect();
        let moves = plan(&shards, &[1, 2], |_, _| 0.0);
        apply(&mut shards, &moves);
        assert_eq!(counts(&shards), BTreeMap::from([(1, 4), (2, 4)]));
        assert!(plan(&shards, &[1, 2], |_, _| 0.0).is_empty(), "stable");
        let moves = plan(&shards, &[1, 2, 3], |_, _| 0.0);
        assert_eq!(moves.len(), 2, "only what the new worker needs moves");
        apply(&mut shards, &moves);
        let c = counts(&shards);
        assert!(c.values().all(|n| (2..=3).contains(n)), "{c:?}");
    }

    #[test]
    fn a_dead_workers_shards_move_to_the_living() {
        let mut shards: Vec<Shard> = (0..6).map(|b| shard(b, Some(1 + b as u64 % 3))).collect();
        let moves = plan(&shards, &[1, 2], |_, _| 0.0);
        assert_eq!(moves.len(), 2);
        apply(&mut shards, &moves);
        assert_eq!(counts(&shards), BTreeMap::from([(1, 3), (2, 3)]));
        let moves = plan(&shards, &[], |_, _| 0.0);
        apply(&mut shards, &moves);
        assert!(shards.iter().all(|s| s.holder.is_none()));
    }

    #[test]
    fn measured_load_is_balanced_by_swapping() {
        // Equal counts, but worker 1 holds both hot shards.
        let mut shards = vec![
            shard(0, Some(1)),
            shard(1, Some(1)),
            shard(2, Some(2)),
            shard(3, Some(2)),
        ];
        let load = |_: u64, s: &ShardId| if s.bucket < 2 { 100.0 } else { 1.0 };
        let moves = plan(&shards, &[1, 2], load);
        assert_eq!(moves.len(), 2, "{moves:?}");
        apply(&mut shards, &moves);
        let per_worker = |w: u64| -> f64 {
            shards
                .iter()
                .filter(|s| s.holder == Some(w))
                .map(|s| load(w, &s.id))
                .sum()
        };
        assert_eq!(per_worker(1), 101.0);
        assert_eq!(per_worker(2), 101.0);
        assert!(plan(&shards, &[1, 2], load).is_empty(), "no thrash");
    }

    #[test]
    fn liveness_gives_a_new_leader_a_full_timeout_of_grace() {
        let start = Instant::now();
        let mut l = Liveness::default();
        l.on_term(3, start);
        let later = start + Duration::from_secs(5);
        assert_eq!(l.silent_for(9, later), Duration::from_secs(5));
        l.heard(9, vec![], later);
        assert_eq!(l.silent_for(9, later), Duration::ZERO);
        l.on_term(3, later + Duration::from_secs(1));
        assert_eq!(
            l.last_heartbeat_ms(9, later),
            Some(0),
            "same term keeps what it heard"
        );
        l.on_term(4, later);
        assert_eq!(l.last_heartbeat_ms(9, later), None);
    }
}

//! The event stream: benign records in a weighted mix, with attacks
//! injected on a schedule. Deterministic for a seed and options: the same
//! records in the same order, and with a virtual clock (`--start`) the
//! same times. No input or output here.

use std::collections::VecDeque;

use super::SourceKind;
use super::benign::{self, Benign, MIX};
use super::rng::Rng;
use super::scenarios::{self, Context, Planned, Scenario};
use super::world::World;

/// One generated record.
#[derive(Debug, Clone)]
pub(crate) struct GenEvent {
    /// Index into the run's tenants.
    pub(crate) tenant: usize,
    pub(crate) kind: SourceKind,
    /// Event time, microseconds since the epoch.
    pub(crate) time: i64,
    /// The record as the source writes it (one line).
    pub(crate) raw: String,
    /// The attack it belongs to (index into [`Generator::attacks`]).
    pub(crate) attack: Option<usize>,
    /// Whether it is its attack's last record.
    pub(crate) last_of_attack: bool,
    /// Rules expected to raise an alert with this record's time.
    pub(crate) alerts: Vec<&'static str>,
}

/// An attack the stream holds (or is in the middle of).
#[derive(Debug, Clone)]
pub(crate) struct Attack {
    pub(crate) tenant: usize,
    pub(crate) scenario: Scenario,
    pub(crate) marker: String,
}

/// Where event times come from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    /// The wall clock at generation, strictly increasing by at least 1 µs.
    Wall,
    /// `start + seq × step`, microseconds: reproducible sets.
    Virtual { start: i64, step_micros: f64 },
}

/// When attacks start.
#[derive(Debug, Clone)]
pub(crate) enum Schedule {
    Never,
    /// An attack every `n` records (counting the attacks' own).
    Every(u64),
    /// Attacks at these positions (sorted).
    At(VecDeque<u64>),
}

impl Schedule {
    /// `k` attacks spread evenly over `count` records, each fitting before
    /// the next and before the end; an error when they cannot.
    pub(crate) fn spread(k: u64, count: u64, longest: u64) -> Result<Schedule, String> {
        if k == 0 {
            return Ok(Schedule::Never);
        }
        let gap = count / (k + 1);
        if gap < longest {
            return Err(format!(
                "--attacks {k} do not fit in --count {count}: attacks are up to {longest} events long and \
                 need at least {} events in all; raise --count or lower --attacks",
                (k + 1) * longest
            ));
        }
        Ok(Schedule::At((1..=k).map(|j| j * count / (k + 1)).collect()))
    }
}

/// What a generator is asked for.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) seed: u64,
    pub(crate) tenants: Vec<(String, u64)>,
    pub(crate) sources: Vec<SourceKind>,
    pub(crate) scenarios: Vec<Scenario>,
    pub(crate) schedule: Schedule,
    pub(crate) count: Option<u64>,
    pub(crate) clock: Clock,
}

/// The stream.
pub(crate) struct Generator {
    seed: u64,
    rng: Rng,
    worlds: Vec<World>,
    tenant_weights: Vec<u64>,
    mix: Vec<(Benign, u64)>,
    mix_weights: Vec<u64>,
    scenarios: Vec<Scenario>,
    schedule: Schedule,
    next_attack_at: Option<u64>,
    count: Option<u64>,
    clock: Clock,
    last_time: i64,
    seq: u64,
    record_ids: Vec<u64>,
    pending: VecDeque<Planned>,
    current: Option<usize>,
    /// Attacks started so far, in order.
    pub(crate) attacks: Vec<Attack>,
}

impl Generator {
    pub(crate) fn new(plan: Plan) -> Result<Generator, String> {
        if plan.tenants.is_empty() {
            return Err("no tenants".into());
        }
        if plan.tenants.iter().all(|(_, w)| *w == 0) {
            return Err("every tenant has weight 0".into());
        }
        let mix: Vec<(Benign, u64)> = MIX
            .iter()
            .copied()
            .filter(|(b, _)| plan.sources.contains(&b.source()))
            .collect();
        if mix.is_empty() {
            return Err("no sources".into());
        }
        for s in &plan.scenarios {
            if !plan.sources.contains(&s.source()) {
                return Err(format!(
                    "scenario {} needs source {}, which --sources leaves out",
                    s.name(),
                    s.source().name()
                ));
            }
        }
        let next_attack_at = match &plan.schedule {
            _ if plan.scenarios.is_empty() => None,
            Schedule::Never => None,
            Schedule::Every(n) => Some(*n),
            Schedule::At(positions) => positions.front().copied(),
        };
        Ok(Generator {
            seed: plan.seed,
            rng: Rng::derived(plan.seed, "stream"),
            worlds: plan
                .tenants
                .iter()
                .map(|(t, _)| World::new(plan.seed, t))
                .collect(),
            tenant_weights: plan.tenants.iter().map(|(_, w)| *w).collect(),
            mix_weights: mix.iter().map(|(_, w)| *w).collect(),
            mix,
            scenarios: plan.scenarios,
            schedule: plan.schedule,
            next_attack_at,
            count: plan.count,
            clock: plan.clock,
            last_time: i64::MIN,
            seq: 0,
            record_ids: vec![0; plan.tenants.len()],
            pending: VecDeque::new(),
            current: None,
            attacks: Vec::new(),
        })
    }

    /// Records produced so far.
    pub(crate) fn produced(&self) -> u64 {
        self.seq
    }

    /// Whether an attack is half emitted (a run stopping early finishes it
    /// first, so that every attack in the manifest is whole).
    pub(crate) fn in_attack(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether `--count` is reached.
    pub(crate) fn done(&self) -> bool {
        self.count.is_some_and(|c| self.seq >= c) && self.pending.is_empty()
    }

    fn time(&mut self, wall_now: i64) -> i64 {
        let t = match self.clock {
            Clock::Wall => wall_now.max(self.last_time.saturating_add(1)),
            Clock::Virtual { start, step_micros } => {
                start + (self.seq as f64 * step_micros).round() as i64
            }
        };
        self.last_time = t;
        t
    }

    /// Starts the next attack when it is due and fits.
    fn maybe_start_attack(&mut self) {
        let Some(at) = self.next_attack_at else {
            return;
        };
        if self.seq < at {
            return;
        }
        let j = self.attacks.len();
        let tenants = self.worlds.len();
        let tenant = j % tenants;
        let scenario = self.scenarios[(j / tenants) % self.scenarios.len()];
        if let Some(count) = self.count
            && self.seq + scenario.len() as u64 > count
        {
            // No room before the end: no more attacks.
            self.next_attack_at = None;
            return;
        }
        let per_tenant = self.attacks.iter().filter(|a| a.tenant == tenant).count() + 1;
        let marker = format!(
            "gen-{}-{}-{per_tenant:04}-{}",
            self.seed,
            self.worlds[tenant].tenant,
            scenario.name()
        );
        let mut cx = Context {
            rng: &mut self.rng,
            world: &self.worlds[tenant],
            record_id: &mut self.record_ids[tenant],
            marker: &marker,
            instance: (self.seed.wrapping_mul(0x9E37_79B9) >> 8) + j as u64 + 1,
        };
        self.pending = scenarios::plan(scenario, &mut cx).into();
        self.attacks.push(Attack {
            tenant,
            scenario,
            marker,
        });
        self.current = Some(j);
        self.next_attack_at = match &mut self.schedule {
            Schedule::Never => None,
            Schedule::Every(n) => Some(at + *n),
            Schedule::At(positions) => {
                positions.pop_front();
                positions.front().copied()
            }
        };
    }

    /// The next record, timed `wall_now` on the wall clock; `None` once
    /// `--count` records were produced.
    pub(crate) fn next_event(&mut self, wall_now: i64) -> Option<GenEvent> {
        if self.done() {
            return None;
        }
        if self.pending.is_empty() {
            self.current = None;
            self.maybe_start_attack();
        }
        let time = self.time(wall_now);
        self.seq += 1;
        if let Some(planned) = self.pending.pop_front() {
            let attack = self.current;
            let tenant = attack.map_or(0, |a| self.attacks[a].tenant);
            return Some(GenEvent {
                tenant,
                kind: planned.kind,
                time,
                raw: (planned.render)(time),
                attack,
                last_of_attack: self.pending.is_empty(),
                alerts: planned.alerts,
            });
        }
        let tenant = self.rng.weighted(&self.tenant_weights);
        let kind = self.mix[self.rng.weighted(&self.mix_weights)].0;
        let raw = benign::render(
            kind,
            &mut self.rng,
            &self.worlds[tenant],
            &mut self.record_ids[tenant],
            time,
        );
        Some(GenEvent {
            tenant,
            kind: kind.source(),
            time,
            raw,
            attack: None,
            last_of_attack: false,
            alerts: Vec::new(),
        })
    }
}

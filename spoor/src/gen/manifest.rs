//! What a run produced, for the tests and benchmarks that check a cluster
//! against it: events per tenant and source type, every attack with its
//! marker and the alerts (rule, event time) it must raise, and when each
//! attack's last record was handed to the output and acknowledged.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::generator::{Attack, GenEvent};
use super::records::iso_micros;
use super::scenarios::{RULES, Scenario};

/// The manifest's format, written as `format`; a change that removes or
/// renames a field gets a new number.
pub(crate) const FORMAT: &str = "spoor-gen-manifest/1";

/// One alert an attack must raise.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExpectedAlert {
    pub(crate) rule_id: &'static str,
    pub(crate) rule_title: &'static str,
    /// The alert's `time`: the event time of its last matching event.
    pub(crate) time: String,
    pub(crate) time_micros: i64,
}

/// One attack of the run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AttackRecord {
    pub(crate) tenant: String,
    pub(crate) scenario: &'static str,
    /// Found in `unmapped` of each of its events: `unmapped LIKE '%<marker>%'`.
    pub(crate) marker: String,
    pub(crate) events: u64,
    pub(crate) first_event_time: String,
    pub(crate) last_event_time: String,
    /// When the output took the last record: the HTTP request carrying it
    /// was sent, the Kafka producer was handed it, the line was written.
    pub(crate) last_event_sent_at: Option<String>,
    pub(crate) last_event_sent_at_micros: Option<i64>,
    /// When the output confirmed it: the node answered the HTTP request
    /// (its files are committed by then), the broker acknowledged it.
    pub(crate) last_event_acked_at: Option<String>,
    pub(crate) last_event_acked_at_micros: Option<i64>,
    pub(crate) alerts: Vec<ExpectedAlert>,
}

/// A tenant's totals.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct TenantTotals {
    /// Rows its `events` table gains.
    pub(crate) events: u64,
    /// Rows its `dead_letter` table gains (the generator writes only
    /// records ingest reads).
    pub(crate) dead_letters: u64,
    pub(crate) by_source_type: BTreeMap<&'static str, u64>,
    pub(crate) attacks: u64,
    pub(crate) attacks_by_scenario: BTreeMap<&'static str, u64>,
    /// Alerts per rule id its `alerts` table gains.
    pub(crate) expected_alerts: BTreeMap<&'static str, u64>,
}

/// What one run of a scenario is.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScenarioInfo {
    pub(crate) source_type: &'static str,
    pub(crate) events: usize,
    pub(crate) alerts: BTreeMap<&'static str, usize>,
}

/// Delivery counts of one output.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Delivery {
    /// Events confirmed (written, answered, acknowledged).
    pub(crate) events: u64,
    /// HTTP requests or Kafka messages.
    pub(crate) requests: u64,
    /// Events the node turned into dead letters (HTTP only: an
    /// unregistered tenant or a source not routed by header).
    pub(crate) dead_lettered: u64,
    /// Requests retried (429, 503, connection refused).
    pub(crate) retries: u64,
}

/// The record of a run, filled in as it goes.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Manifest {
    pub(crate) format: &'static str,
    pub(crate) seed: u64,
    pub(crate) options: Value,
    pub(crate) started_at: String,
    pub(crate) finished_at: Option<String>,
    /// False when the run stopped on an error (see `error`); what is here
    /// was produced, but a batch in flight may or may not have landed.
    pub(crate) complete: bool,
    pub(crate) error: Option<String>,
    /// Stopped early by Ctrl-C or SIGTERM (the attack in progress was
    /// finished first).
    pub(crate) interrupted: bool,
    pub(crate) events: u64,
    pub(crate) first_event_time: Option<String>,
    pub(crate) last_event_time: Option<String>,
    pub(crate) tenants: BTreeMap<String, TenantTotals>,
    pub(crate) attacks: Vec<AttackRecord>,
    /// The alerting rules of the pack, id → title.
    pub(crate) rules: BTreeMap<&'static str, &'static str>,
    /// Every scenario: its source type, records, and alerts per run
    /// (rule id → count).
    pub(crate) scenarios: BTreeMap<&'static str, ScenarioInfo>,
    pub(crate) delivery: BTreeMap<&'static str, Delivery>,
}

impl Manifest {
    pub(crate) fn new(seed: u64, tenants: &[String], options: Value, started_at: i64) -> Self {
        Manifest {
            format: FORMAT,
            seed,
            options,
            started_at: iso_micros(started_at),
            finished_at: None,
            complete: false,
            error: None,
            interrupted: false,
            events: 0,
            first_event_time: None,
            last_event_time: None,
            tenants: tenants
                .iter()
                .map(|t| (t.clone(), TenantTotals::default()))
                .collect(),
            attacks: Vec::new(),
            rules: RULES.iter().copied().collect(),
            scenarios: Scenario::ALL
                .iter()
                .map(|s| {
                    (
                        s.name(),
                        ScenarioInfo {
                            source_type: s.source().name(),
                            events: s.len(),
                            alerts: s.expected().into_iter().collect(),
                        },
                    )
                })
                .collect(),
            delivery: BTreeMap::new(),
        }
    }

    fn title(rule: &str) -> &'static str {
        RULES
            .iter()
            .find(|(id, _)| *id == rule)
            .map_or("", |(_, t)| *t)
    }

    /// Counts one generated event; `attacks` are the generator's.
    pub(crate) fn record(&mut self, tenant: &str, event: &GenEvent, attacks: &[Attack]) {
        self.events += 1;
        let time = iso_micros(event.time);
        if self.first_event_time.is_none() {
            self.first_event_time = Some(time.clone());
        }
        self.last_event_time = Some(time.clone());
        let totals = self.tenants.entry(tenant.to_string()).or_default();
        totals.events += 1;
        *totals.by_source_type.entry(event.kind.name()).or_default() += 1;
        let Some(index) = event.attack else {
            return;
        };
        while self.attacks.len() <= index {
            let a = &attacks[self.attacks.len()];
            totals.attacks += 1;
            *totals
                .attacks_by_scenario
                .entry(a.scenario.name())
                .or_default() += 1;
            self.attacks.push(AttackRecord {
                tenant: tenant.to_string(),
                scenario: a.scenario.name(),
                marker: a.marker.clone(),
                events: 0,
                first_event_time: time.clone(),
                last_event_time: time.clone(),
                last_event_sent_at: None,
                last_event_sent_at_micros: None,
                last_event_acked_at: None,
                last_event_acked_at_micros: None,
                alerts: Vec::new(),
            });
        }
        let record = &mut self.attacks[index];
        record.events += 1;
        record.last_event_time = time.clone();
        for rule in &event.alerts {
            *totals.expected_alerts.entry(rule).or_default() += 1;
            record.alerts.push(ExpectedAlert {
                rule_id: rule,
                rule_title: Self::title(rule),
                time: time.clone(),
                time_micros: event.time,
            });
        }
    }

    /// The output took attack `index`'s last record at `micros`.
    pub(crate) fn sent(&mut self, index: usize, micros: i64) {
        if let Some(a) = self.attacks.get_mut(index)
            && a.last_event_sent_at.is_none()
        {
            a.last_event_sent_at = Some(iso_micros(micros));
            a.last_event_sent_at_micros = Some(micros);
        }
    }

    /// The output confirmed attack `index`'s last record at `micros`.
    pub(crate) fn acked(&mut self, index: usize, micros: i64) {
        if let Some(a) = self.attacks.get_mut(index)
            && a.last_event_acked_at.is_none()
        {
            a.last_event_acked_at = Some(iso_micros(micros));
            a.last_event_acked_at_micros = Some(micros);
        }
    }

    pub(crate) fn delivery(&mut self, output: &'static str) -> &mut Delivery {
        self.delivery.entry(output).or_default()
    }
}

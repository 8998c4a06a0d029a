//! `spoor gen` offline: the stream is deterministic, counts and attack
//! schedules are exact, every record goes through ingest's real parsers
//! into the columns the rules read, and the rule pack in `deploy/rules`,
//! compiled and run as a worker runs it, raises exactly the alerts the
//! manifest expects: each attack's, at its time, and nothing on the
//! benign mix.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use spoor_common::config::SourceType;
use spoor_correlate::bundle::{FileNames, RuleBundle};
use spoor_correlate::engine::Engine;
use spoor_correlate::window::{Correlator, Output as CorrelationOutput, WindowOptions};
use spoor_ingest::parse::{Decoded, Decoder, EventRow, Provenance};

use super::generator::{Clock, GenEvent, Generator, Plan, Schedule};
use super::manifest::Manifest;
use super::scenarios::{self, Scenario};
use super::{Bucket, SourceKind, output};

/// 2026-11-30T08:00:00Z.
const START: i64 = 1_796_025_600_000_000;

fn plan(seed: u64, count: u64, schedule: Schedule) -> Plan {
    Plan {
        seed,
        tenants: vec![("acme".into(), 3), ("globex".into(), 1)],
        sources: SourceKind::ALL.to_vec(),
        scenarios: Scenario::ALL.to_vec(),
        schedule,
        count: Some(count),
        clock: Clock::Virtual {
            start: START,
            step_micros: 10_000.0,
        },
    }
}

fn run(plan: Plan) -> (Vec<GenEvent>, Manifest) {
    let tenants: Vec<String> = plan.tenants.iter().map(|(t, _)| t.clone()).collect();
    let mut generator = Generator::new(plan).expect("a valid plan");
    let mut manifest = Manifest::new(1, &tenants, serde_json::Value::Null, START);
    let mut events = Vec::new();
    while let Some(e) = generator.next_event(0) {
        manifest.record(&tenants[e.tenant], &e, &generator.attacks);
        events.push(e);
    }
    (events, manifest)
}

fn source_type(kind: SourceKind) -> SourceType {
    kind.name()
        .parse()
        .expect("every kind is an ingest source type")
}

/// Each event through ingest's parser for its source type, one input
/// each as HTTP ingest reads lines; dead letters fail the test.
fn parse(events: &[GenEvent]) -> Vec<EventRow> {
    let mut decoders: BTreeMap<SourceKind, Decoder> = BTreeMap::new();
    let mut rows = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let decoder = decoders
            .entry(e.kind)
            .or_insert_with(|| Decoder::for_type(source_type(e.kind)));
        let prov = Provenance {
            topic: format!("http:spoor-gen-{}", e.kind.name()),
            partition: None,
            offset: Some(i as i64),
            // An hour after the events: ingest keeps times up to a day ahead
            // of its own, and these are in the past.
            ingest_time_micros: e.time + 3_600_000_000,
        };
        let mut out = Vec::new();
        decoder.decode(e.raw.as_bytes(), &prov, &mut out);
        decoder.flush(&prov, &mut out);
        assert_eq!(out.len(), 1, "one event per record: {}", e.raw);
        match out.pop() {
            Some(Decoded::Event(row)) => rows.push(row),
            other => panic!("{} record became {other:?}: {}", e.kind.name(), e.raw),
        }
    }
    rows
}

fn pack() -> Engine {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/rules");
    let bundle = RuleBundle::read(&[dir], &[], BTreeMap::new(), FileNames::AsGiven)
        .expect("deploy/rules reads");
    let compiled = bundle.check().expect("deploy/rules compiles");
    let findings: Vec<String> = compiled.findings.iter().map(ToString::to_string).collect();
    assert!(
        findings.is_empty(),
        "no refusals or warnings: {findings:#?}"
    );
    compiled.engine
}

/// Alerts the pack raises on `rows` (one tenant's, in time order):
/// (rule id, alert time) with a count.
fn alerts(engine: &Engine, rows: &[EventRow]) -> BTreeMap<(String, i64), usize> {
    let mut found = BTreeMap::new();
    let mut correlator = Correlator::new(engine, WindowOptions::default());
    let mut outputs = Vec::new();
    for (c, chunk) in rows.chunks(1_000).enumerate() {
        let refs: Vec<&EventRow> = chunk.iter().collect();
        let batch = spoor_ingest::lake_writer::event_batch(&refs).expect("a batch");
        let result = engine.evaluate(&batch).expect("evaluates");
        for hit in &result.hits {
            let rule = &engine.detections[hit.rule];
            if rule.alerts {
                *found
                    .entry((rule.info.key().to_string(), result.values.times[hit.row]))
                    .or_default() += 1;
            }
        }
        outputs.extend(correlator.push(&result, &|row| (c * 1_000 + row).to_string()));
    }
    outputs.extend(correlator.finish());
    for output in outputs {
        match output {
            CorrelationOutput::Alert(a) => {
                *found
                    .entry((
                        engine.correlations[a.correlation].info.key().to_string(),
                        a.last,
                    ))
                    .or_default() += 1;
            }
            other => panic!("nothing late or evicted offline: {other:?}"),
        }
    }
    found
}

#[test]
fn a_seed_gives_the_same_events_and_another_seed_others() {
    let a = run(plan(7, 3_000, Schedule::Every(300))).0;
    let b = run(plan(7, 3_000, Schedule::Every(300))).0;
    let c = run(plan(8, 3_000, Schedule::Every(300))).0;
    let lines = |v: &[GenEvent]| {
        v.iter()
            .map(|e| (e.tenant, e.time, e.raw.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(&a), lines(&b));
    let same = a.iter().zip(&c).filter(|(x, y)| x.raw == y.raw).count();
    assert!(
        same < 30,
        "another seed, other events ({same} of 3000 equal)"
    );
}

#[test]
fn counts_times_and_attack_positions_are_exact() {
    let (events, manifest) = run(plan(3, 2_000, Schedule::Every(250)));
    assert_eq!(events.len(), 2_000);
    assert_eq!(manifest.events, 2_000);
    let per_tenant: u64 = manifest.tenants.values().map(|t| t.events).sum();
    assert_eq!(per_tenant, 2_000);
    for (tenant, totals) in &manifest.tenants {
        let by_source: u64 = totals.by_source_type.values().sum();
        assert_eq!(by_source, totals.events, "{tenant}");
        let counted = events
            .iter()
            .filter(|e| {
                manifest
                    .tenants
                    .keys()
                    .nth(e.tenant)
                    .is_some_and(|t| t == tenant)
            })
            .count() as u64;
        assert_eq!(counted, totals.events, "{tenant}");
    }
    // Virtual clock: 10 ms an event from the start.
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.time, START + 10_000 * i as i64);
    }
    // Attacks start at 250, 500, …; tenants alternate, scenarios go round.
    let starts: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(i, e)| e.attack.is_some() && (*i == 0 || events[i - 1].attack != e.attack))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(starts, vec![250, 500, 750, 1000, 1250, 1500, 1750]);
    let kinds: Vec<(&str, &str)> = manifest
        .attacks
        .iter()
        .map(|a| (a.tenant.as_str(), a.scenario))
        .collect();
    assert_eq!(
        kinds[..4],
        [
            ("acme", "whoami_discovery"),
            ("globex", "whoami_discovery"),
            ("acme", "encoded_powershell"),
            ("globex", "encoded_powershell"),
        ]
    );
    for a in &manifest.attacks {
        let of: Vec<&GenEvent> = events
            .iter()
            .filter(|e| {
                e.attack
                    .is_some_and(|i| manifest.attacks[i].marker == a.marker)
            })
            .collect();
        assert_eq!(of.len() as u64, a.events, "{}", a.marker);
        assert!(
            of.iter().all(|e| e.raw.contains(&a.marker)),
            "every record carries {}",
            a.marker
        );
        assert!(of.last().is_some_and(|e| e.last_of_attack), "{}", a.marker);
    }
    // No benign record carries a marker.
    assert!(
        events
            .iter()
            .filter(|e| e.attack.is_none())
            .all(|e| !e.raw.contains("spoor_scenario"))
    );
}

#[test]
fn attacks_spread_over_the_count_and_refused_when_they_do_not_fit() {
    let schedule = Schedule::spread(6, 1_400, 16).expect("fits");
    let (_, manifest) = run(plan(5, 1_400, schedule));
    assert_eq!(manifest.attacks.len(), 6);
    let err = Schedule::spread(10, 100, 16).expect_err("cannot fit");
    assert!(err.contains("--attacks 10"), "{err}");
    // An attack that would run past --count is not started (the first,
    // whoami_discovery, is 3 records: 250..253 does not fit in 252).
    let (events, manifest) = run(plan(5, 252, Schedule::Every(250)));
    assert_eq!(events.len(), 252);
    assert!(manifest.attacks.is_empty(), "{:?}", manifest.attacks);
}

#[test]
fn the_wall_clock_never_repeats_a_time() {
    let mut p = plan(1, 500, Schedule::Every(100));
    p.clock = Clock::Wall;
    let mut generator = Generator::new(p).expect("plan");
    let mut last = i64::MIN;
    while let Some(e) = generator.next_event(START) {
        assert!(e.time > last, "strictly increasing");
        last = e.time;
    }
}

#[test]
fn the_token_bucket_keeps_the_rate() {
    let mut bucket = Bucket::new(1_000.0);
    let t0 = Instant::now();
    let mut now = t0;
    let mut taken = 0u64;
    // Ten simulated seconds: take a token whenever one is free, else move
    // the clock on by the wait the bucket asks for.
    while now < t0 + Duration::from_secs(10) {
        let wait = bucket.wait(now);
        if wait.is_zero() {
            bucket.take();
            taken += 1;
        } else {
            now += wait;
        }
    }
    assert!(
        (9_990..=10_060).contains(&taken),
        "1000/s for 10 s, plus at most one burst: {taken}"
    );
}

#[test]
fn every_record_parses_into_the_columns_the_rules_read() {
    let (events, _) = run(plan(11, 6_000, Schedule::Every(100)));
    let rows = parse(&events);
    for (e, row) in events.iter().zip(&rows) {
        let json = row.to_json();
        let expected_time = if e.kind == SourceKind::Cef {
            e.time / 1000 * 1000
        } else {
            e.time
        };
        assert_eq!(row.time(), expected_time, "time of {}", e.raw);
        assert!(
            json["unmapped"].get("_spoor_notes").is_none()
                && !json.to_string().contains("_spoor_notes"),
            "no parser notes: {json}"
        );
        // Cron messages are the one kind the syslog parser gives no class.
        if row.get_str("process_name") != Some("CRON") {
            assert!(
                row.get_int("class_uid").is_some_and(|c| c > 0),
                "an OCSF class: {json}"
            );
        }
        if e.attack.is_some() {
            assert!(
                json["unmapped"].to_string().contains("spoor_scenario"),
                "the marker is in unmapped: {json}"
            );
        }
        if e.alerts.contains(&scenarios::RULE_BRUTE_FORCE)
            || e.alerts.contains(&scenarios::RULE_BRUTE_FORCE_SUCCESS)
        {
            assert!(
                row.get_str("src_ip")
                    .is_some_and(|ip| ip.starts_with("45.")),
                "{json}"
            );
            assert_eq!(row.get_str("logon_type"), Some("3"), "{json}");
        }
        if e.alerts.contains(&scenarios::RULE_SHADOW) {
            assert_eq!(
                row.get_str("process_cmd_line"),
                Some("/usr/bin/cat /etc/shadow"),
                "{json}"
            );
        }
        if e.alerts.contains(&scenarios::RULE_BAD_DNS) {
            assert!(
                row.get_str("dns_query")
                    .is_some_and(|q| q.contains(".example.")),
                "{json}"
            );
        }
        if e.alerts.contains(&scenarios::RULE_ENCODED_POWERSHELL) {
            assert!(
                row.get_str("process_cmd_line")
                    .is_some_and(|c| c.contains(" -Enc ")),
                "{json}"
            );
            assert!(
                row.get_str("process_parent_name")
                    .is_some_and(|p| p == "WINWORD.EXE"),
                "{json}"
            );
        }
    }
    let kinds: std::collections::BTreeSet<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(kinds.len(), 4, "every source type in the mix: {kinds:?}");
}

#[test]
fn the_rule_pack_raises_exactly_the_expected_alerts() {
    let engine = pack();
    // Attacks every 150 events over 14,000: every scenario for each
    // tenant several times, amid the benign mix.
    let (events, manifest) = run(plan(42, 14_000, Schedule::Every(150)));
    assert!(
        manifest.attacks.len() >= 4 * Scenario::ALL.len(),
        "{}",
        manifest.attacks.len()
    );
    let rows = parse(&events);
    for (t, tenant) in manifest.tenants.keys().enumerate() {
        let mine: Vec<EventRow> = events
            .iter()
            .zip(&rows)
            .filter(|(e, _)| e.tenant == t)
            .map(|(_, r)| r.clone())
            .collect();
        let found = alerts(&engine, &mine);
        let mut expected: BTreeMap<(String, i64), usize> = BTreeMap::new();
        for a in manifest.attacks.iter().filter(|a| &a.tenant == tenant) {
            for alert in &a.alerts {
                *expected
                    .entry((alert.rule_id.to_string(), alert.time_micros))
                    .or_default() += 1;
            }
        }
        assert_eq!(found, expected, "tenant {tenant}");
        let per_rule = |m: &BTreeMap<(String, i64), usize>| {
            let mut r: BTreeMap<String, u64> = BTreeMap::new();
            for ((id, _), n) in m {
                *r.entry(id.clone()).or_default() += *n as u64;
            }
            r
        };
        let totals: BTreeMap<String, u64> = manifest.tenants[tenant]
            .expected_alerts
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        assert_eq!(per_rule(&found), totals, "tenant {tenant}");
    }
    // Each scenario gives the alerts it says, per run.
    for a in &manifest.attacks {
        let scenario = Scenario::ALL
            .iter()
            .find(|s| s.name() == a.scenario)
            .expect("a known scenario");
        let mut got: BTreeMap<&str, usize> = BTreeMap::new();
        for alert in &a.alerts {
            *got.entry(alert.rule_id).or_default() += 1;
        }
        assert_eq!(
            got,
            scenario.expected().into_iter().collect(),
            "{}",
            a.marker
        );
    }
}

#[test]
fn the_benign_mix_alone_raises_nothing() {
    let engine = pack();
    let (events, manifest) = run(plan(99, 20_000, Schedule::Never));
    assert!(manifest.attacks.is_empty());
    let rows = parse(&events);
    for t in 0..2 {
        let mine: Vec<EventRow> = events
            .iter()
            .zip(&rows)
            .filter(|(e, _)| e.tenant == t)
            .map(|(_, r)| r.clone())
            .collect();
        assert!(mine.len() > 3_000, "a real sample: {}", mine.len());
        let found = alerts(&engine, &mine);
        assert!(found.is_empty(), "false positives: {found:?}");
    }
}

#[test]
fn the_manifest_names_the_pack_s_alerting_rules() {
    let engine = pack();
    let mut alerting: Vec<String> = engine
        .detections
        .iter()
        .filter(|d| d.alerts)
        .map(|d| d.info.key().to_string())
        .chain(engine.correlations.iter().map(|c| c.info.key().to_string()))
        .collect();
    alerting.sort();
    let mut ours: Vec<String> = scenarios::RULES
        .iter()
        .map(|(id, _)| id.to_string())
        .collect();
    ours.sort();
    assert_eq!(alerting, ours);
    for (id, title) in scenarios::RULES {
        let info = engine
            .detections
            .iter()
            .map(|d| &d.info)
            .chain(engine.correlations.iter().map(|c| &c.info))
            .find(|i| i.id.as_deref() == Some(*id))
            .expect("the rule is in the pack");
        assert_eq!(info.title, *title);
    }
}

#[test]
fn file_lines_carry_tenant_source_type_time_marker_and_raw() {
    let (events, manifest) = run(plan(2, 400, Schedule::Every(100)));
    let tenants = vec!["acme".to_string(), "globex".to_string()];
    let attack = events
        .iter()
        .find(|e| e.attack.is_some())
        .expect("an attack");
    let line = output::envelope(attack, &tenants, &manifest);
    assert_eq!(line["tenant"], "acme");
    assert_eq!(line["source_type"], attack.kind.name());
    assert_eq!(line["raw"], attack.raw.as_str());
    assert_eq!(line["marker"], manifest.attacks[0].marker.as_str());
    assert!(
        line["time"]
            .as_str()
            .is_some_and(|t| t.starts_with("2026-11-30T08:00:") && t.ends_with('Z'))
    );
    let benign = events.iter().find(|e| e.attack.is_none()).expect("benign");
    assert!(
        output::envelope(benign, &tenants, &manifest)
            .get("marker")
            .is_none()
    );
}

//! Every event of the public corpus (`../shared/corpus/events`, OTRF
//! Security-Datasets) normalizes, keeps its raw bytes, finds its own time, and
//! fills the columns its source type should fill.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use spoor_ingest::parse::{Cell, JsonNormalizer, Provenance};

fn corpus() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/events");
    assert!(
        dir.is_dir(),
        "the shared corpus is missing at {}: tests read it from ../shared/corpus",
        dir.display()
    );
    dir
}

struct Filled {
    events: usize,
    /// Events whose own time was found (the rest fall back to ingest time).
    timed: usize,
    counts: BTreeMap<&'static str, usize>,
}

/// Normalizes every event of a corpus folder, counting the columns filled.
fn normalize_folder(folder: &str, columns: &[&'static str]) -> Filled {
    let normalizer = JsonNormalizer::new();
    let mut filled = Filled {
        events: 0,
        timed: 0,
        counts: columns.iter().map(|c| (*c, 0)).collect(),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus().join(folder))
        .expect("corpus folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .jsonl files in {folder}");
    let ingest_time = spoor_common::time::now_micros();
    for file in files {
        let text = std::fs::read(&file).expect("read corpus file");
        for (i, line) in text
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
        {
            let prov = Provenance {
                topic: folder.into(),
                partition: Some(0),
                offset: Some(i as i64),
                ingest_time_micros: ingest_time,
            };
            let row = normalizer
                .normalize(line, &prov)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", file.display(), i + 1));
            assert_eq!(
                row.get("raw"),
                Some(&Cell::Str(String::from_utf8_lossy(line).into_owned()))
            );
            if row.time() != ingest_time {
                filled.timed += 1;
            }
            for c in columns {
                if !matches!(row.get(c), Some(Cell::Null) | None) {
                    *filled.counts.get_mut(c).expect("column") += 1;
                }
            }
            filled.events += 1;
        }
    }
    filled
}

#[test]
fn windows_events_map_hosts_codes_and_processes() {
    let cols = [
        "device_hostname",
        "event_code",
        "process_name",
        "process_cmd_line",
        "class_uid",
    ];
    let f = normalize_folder("otrf-windows", &cols);
    assert_eq!((f.events, f.timed), (24_591, 24_591));
    assert_eq!(
        f.counts["device_hostname"], f.events,
        "every Windows event names its host"
    );
    assert_eq!(
        f.counts["event_code"], f.events,
        "every Windows event has an EventID"
    );
    assert!(f.counts["process_cmd_line"] > 300, "{:?}", f.counts);
    assert!(f.counts["class_uid"] > 1000, "{:?}", f.counts);
}

#[test]
fn zeek_json_maps_endpoints() {
    let f = normalize_folder("otrf-zeek", &["src_ip", "dst_port"]);
    assert_eq!((f.events, f.timed), (261, 261));
    assert!(f.counts["src_ip"] >= 200, "{:?}", f.counts);
    let f = normalize_folder(
        "otrf-zeek-rocknsm",
        &["src_ip", "dst_ip", "metadata_log_name"],
    );
    assert_eq!(f.events, 7_804);
    // Zeek's 2,880 loaded_scripts records carry no time.
    assert_eq!(f.timed, f.events - 2_880);
    assert_eq!(
        f.counts["metadata_log_name"], f.events,
        "@stream names the Zeek log"
    );
    assert_eq!(f.counts["src_ip"], 3_933, "every record with id_orig_h");
}

#[test]
fn cloudtrail_maps_api_calls() {
    let f = normalize_folder(
        "otrf-aws-cloudtrail",
        &["api_operation", "api_service", "cloud_region"],
    );
    assert_eq!((f.events, f.timed), (103, 103));
    for c in ["api_operation", "api_service", "cloud_region"] {
        assert_eq!(f.counts[c], f.events, "{c}: {:?}", f.counts);
    }
}

#[test]
fn sentinel_and_auditd_rows_normalize() {
    let f = normalize_folder("otrf-sentinel", &[]);
    assert_eq!((f.events, f.timed), (726, 726));
    // auditd keeps its time inside `msg` (`audit(1604994496.155:92733)`); the
    // auditd parser will read it, the generic JSON mapping falls back to ingest time.
    let f = normalize_folder("otrf-linux-auditd", &[]);
    assert_eq!((f.events, f.timed), (18, 0));
}

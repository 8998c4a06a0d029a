//! Every file of the public corpus (`../shared/corpus/events`) through the
//! parser of its source type, line by line as Kafka messages or HTTP lines
//! would arrive: the counts of events, dead letters and events given an OCSF
//! class are exactly those reported in `docs/sources.md` (regenerate both
//! with `spoor ingest parse --summary`).

use std::path::{Path, PathBuf};

use spoor_ingest::parse::{Decoded, Decoder, Provenance, SourceType};

fn corpus() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/events");
    assert!(
        dir.is_dir(),
        "the shared corpus is missing at {}: tests read it from ../shared/corpus",
        dir.display()
    );
    dir
}

/// (file, source type, events, dead letters, events with a class).
const EXPECTED: &[(&str, SourceType, usize, usize, usize)] = &[
    (
        "otrf-aws-cloudtrail/ec2_proxy_s3_exfiltration.jsonl",
        SourceType::Cloudtrail,
        103,
        0,
        103,
    ),
    (
        "otrf-linux-auditd/sh_arp_cache.jsonl",
        SourceType::Auditd,
        2,
        0,
        2,
    ),
    (
        "otrf-linux-auditd/sh_binary_padding_dd.jsonl",
        SourceType::Auditd,
        1,
        0,
        1,
    ),
    (
        "otrf-linux-auditd-raw/sh_arp_cache.log",
        SourceType::Auditd,
        2,
        0,
        2,
    ),
    (
        "otrf-sentinel/goldensaml_aad_audit.jsonl",
        SourceType::Entra,
        4,
        0,
        4,
    ),
    (
        "otrf-sentinel/goldensaml_m365_defender.jsonl",
        SourceType::Json,
        9,
        0,
        0,
    ),
    (
        "otrf-sentinel/goldensaml_office_activity.jsonl",
        SourceType::Json,
        1,
        0,
        0,
    ),
    (
        "otrf-sentinel/goldensaml_securityevent_adfs.jsonl",
        SourceType::Windows,
        38,
        0,
        29,
    ),
    (
        "otrf-sentinel/log4shell_securityevent_windows.jsonl",
        SourceType::Windows,
        39,
        0,
        18,
    ),
    (
        "otrf-sentinel/log4shell_syslog_auoms_auditd_linux.jsonl",
        SourceType::Syslog,
        50,
        0,
        0,
    ),
    (
        "otrf-sentinel/log4shell_syslog_sysmon_linux.jsonl",
        SourceType::Syslog,
        93,
        0,
        0,
    ),
    (
        "otrf-sentinel/log4shell_sysmon_windows.jsonl",
        SourceType::Windows,
        487,
        0,
        477,
    ),
    (
        "otrf-sentinel/log4shell_vmconnection_linux.jsonl",
        SourceType::Json,
        5,
        0,
        5,
    ),
    (
        "otrf-windows/aptsimulator_cobaltstrike.jsonl",
        SourceType::Windows,
        2611,
        0,
        2382,
    ),
    (
        "otrf-windows/cmd_bitsadmin_download_psh_script.jsonl",
        SourceType::Windows,
        424,
        0,
        359,
    ),
    (
        "otrf-windows/cmd_mshta_vbscript_execute_psh.jsonl",
        SourceType::Windows,
        1127,
        0,
        896,
    ),
    (
        "otrf-windows/cmd_psexec_lsa_secrets_dump.jsonl",
        SourceType::Windows,
        286,
        0,
        246,
    ),
    (
        "otrf-windows/covenant_persistwmi.jsonl",
        SourceType::Windows,
        1001,
        0,
        917,
    ),
    (
        "otrf-windows/empire_persistence_registry_modification_run_keys_elevated_user.jsonl",
        SourceType::Windows,
        657,
        0,
        510,
    ),
    (
        "otrf-windows/metasploit_logonpasswords_lsass_memory_dump.jsonl",
        SourceType::Windows,
        9046,
        0,
        3189,
    ),
    (
        "otrf-windows/psh_cmstp_execution_bypassuac.jsonl",
        SourceType::Windows,
        1166,
        0,
        796,
    ),
    (
        "otrf-windows/psh_lsass_memory_dump_comsvcs.jsonl",
        SourceType::Windows,
        184,
        0,
        158,
    ),
    (
        "otrf-windows/psh_mavinject_dll_notepad.jsonl",
        SourceType::Windows,
        509,
        0,
        481,
    ),
    (
        "otrf-windows/purplesharp_ad_playbook_I.jsonl",
        SourceType::Windows,
        6539,
        0,
        3740,
    ),
    (
        "otrf-windows/schtask_create.jsonl",
        SourceType::Windows,
        1041,
        0,
        954,
    ),
    ("otrf-zeek/analyzer.jsonl", SourceType::Zeek, 6, 0, 6),
    ("otrf-zeek/conn.jsonl", SourceType::Zeek, 112, 0, 112),
    ("otrf-zeek/dns.jsonl", SourceType::Zeek, 96, 0, 96),
    ("otrf-zeek/files.jsonl", SourceType::Zeek, 3, 0, 3),
    ("otrf-zeek/http.jsonl", SourceType::Zeek, 3, 0, 3),
    ("otrf-zeek/kerberos.jsonl", SourceType::Zeek, 10, 0, 10),
    ("otrf-zeek/packet_filter.jsonl", SourceType::Zeek, 1, 0, 0),
    ("otrf-zeek/pe.jsonl", SourceType::Zeek, 1, 0, 0),
    ("otrf-zeek/smb_mapping.jsonl", SourceType::Zeek, 1, 0, 1),
    ("otrf-zeek/ssl.jsonl", SourceType::Zeek, 5, 0, 5),
    ("otrf-zeek/weird.jsonl", SourceType::Zeek, 22, 0, 22),
    ("otrf-zeek/x509.jsonl", SourceType::Zeek, 1, 0, 1),
    (
        "otrf-zeek-rocknsm/apt29_day1_zeek.jsonl",
        SourceType::Zeek,
        2140,
        0,
        2139,
    ),
    (
        "otrf-zeek-rocknsm/apt29_day2_zeek.jsonl",
        SourceType::Zeek,
        5664,
        0,
        2687,
    ),
    ("otrf-zeek-tsv/analyzer.log", SourceType::Zeek, 6, 0, 6),
    ("otrf-zeek-tsv/conn.log", SourceType::Zeek, 112, 0, 112),
    ("otrf-zeek-tsv/dns.log", SourceType::Zeek, 96, 0, 96),
    ("otrf-zeek-tsv/files.log", SourceType::Zeek, 3, 0, 3),
    ("otrf-zeek-tsv/http.log", SourceType::Zeek, 3, 0, 3),
    ("otrf-zeek-tsv/kerberos.log", SourceType::Zeek, 10, 0, 10),
    ("otrf-zeek-tsv/packet_filter.log", SourceType::Zeek, 1, 0, 0),
    ("otrf-zeek-tsv/pe.log", SourceType::Zeek, 1, 0, 0),
    ("otrf-zeek-tsv/smb_mapping.log", SourceType::Zeek, 1, 0, 1),
    ("otrf-zeek-tsv/ssl.log", SourceType::Zeek, 5, 0, 5),
    ("otrf-zeek-tsv/weird.log", SourceType::Zeek, 22, 0, 22),
    ("otrf-zeek-tsv/x509.log", SourceType::Zeek, 1, 0, 1),
];

#[derive(Debug, PartialEq, Eq)]
struct Counts {
    events: usize,
    dead: usize,
    classed: usize,
}

fn run(file: &Path, source_type: SourceType) -> Counts {
    let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut decoder = Decoder::for_type(source_type);
    let ingest_time = spoor_common::time::now_micros();
    let prov = |line: usize| Provenance {
        topic: "corpus".into(),
        partition: Some(0),
        offset: Some(line as i64),
        ingest_time_micros: ingest_time,
    };
    let mut out = Vec::new();
    let mut last = 0;
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        last = i + 1;
        decoder.decode(line, &prov(last), &mut out);
    }
    decoder.flush(&prov(last), &mut out);
    let mut counts = Counts {
        events: 0,
        dead: 0,
        classed: 0,
    };
    for d in out {
        match d {
            Decoded::Event(row) => {
                counts.events += 1;
                if row.get_int("class_uid").is_some_and(|c| c != 0) {
                    counts.classed += 1;
                }
            }
            Decoded::Dead(_) => counts.dead += 1,
        }
    }
    counts
}

#[test]
fn every_corpus_file_parses_with_its_documented_counts() {
    let root = corpus();
    let mut failures = Vec::new();
    for (file, source_type, events, dead, classed) in EXPECTED {
        let got = run(&root.join(file), *source_type);
        let want = Counts {
            events: *events,
            dead: *dead,
            classed: *classed,
        };
        if got != want {
            failures.push(format!(
                "{file} ({source_type}): got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_corpus_file_is_listed() {
    let root = corpus();
    let mut missing = Vec::new();
    for dir in std::fs::read_dir(&root).expect("corpus").flatten() {
        if !dir.path().is_dir() {
            continue;
        }
        for file in std::fs::read_dir(dir.path()).expect("folder").flatten() {
            let p = file.path();
            if p.extension().is_some_and(|e| e == "jsonl" || e == "log") {
                let rel = p
                    .strip_prefix(&root)
                    .expect("under the corpus")
                    .display()
                    .to_string();
                if !EXPECTED.iter().any(|(f, ..)| *f == rel) {
                    missing.push(rel);
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "corpus files without documented counts: {missing:?}"
    );
}

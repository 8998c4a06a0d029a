//! Sigma detection throughput, side by side with pySigma's SQL run by SQLite
//! on the same events.
//!
//! Rules: every SigmaHQ Windows rule (`../shared/corpus/sigma/rules/windows`,
//! 2,407 files). Events: the `*.jsonl` files of
//! `../shared/corpus/events/otrf-windows` (24,591 Windows events), the same
//! files, in the same order, for both sides.
//!
//! Contenders, each on one thread:
//!
//! - `spoor`: the rules read with `spoor_correlate::sigma` and compiled by
//!   `Engine::compile` with the built-in mappings; the events parsed by
//!   ingest's Windows parser exactly as `spoor rules test` does
//!   (`spoor_ingest::event_file::decode_file`) into Arrow batches
//!   of the events schema, 8,192 rows each. Loading, compiling and parsing are
//!   not timed. Timed: `Engine::evaluate` over all batches, one untimed pass
//!   first, then `DETECTION_BENCH_RUNS` passes (default 10), half before the
//!   SQLite run and half after it; best and median.
//! - `sqlite`: `tests/python/sigma_sqlite.py bench` (pySigma 2.0.1, its SQLite
//!   backend 2.1.1 and the Windows/Sysmon logsource pipelines, venv from
//!   `scripts/pysigma-venv.sh`): the rules converted to SQL and the events
//!   flattened into one in-memory SQLite table (neither timed), then every
//!   query run over the whole table `DETECTION_BENCH_SQLITE_REPEAT` times
//!   (default 1: a pass takes about half a minute; 0 runs Spoor alone, for
//!   profiling). Its `run_rule` is wrapped to count the matches of its
//!   untimed first pass; the timed loop is the script's own.
//!
//! Both sides evaluate every event against every rule each pass, so
//! events/s of one thread is events/s per core. Matches (rule, event pairs of
//! rules whose matches are alerts) are printed for both as a sanity check:
//! the engines read the events differently (ingest's parser against the
//! script's flattening) and refuse different rules, so they need not agree.
//! The issue's target: Spoor ≥ 100× SQLite.
//!
//! Run: `cargo bench -p spoor-benches --bench detection`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow::record_batch::RecordBatch;
use spoor_common::config::SourceType;
use spoor_correlate::engine::{Engine, LoadedDocument, Options};
use spoor_correlate::mapping::Mappings;
use spoor_correlate::sigma;
use spoor_ingest::parse::{Decoded, EventRow};

mod support;
use support::{corpus, event_files, report_line};

/// Rows per Arrow batch, as `spoor rules test` evaluates them.
const BATCH_ROWS: usize = 8192;

fn env_usize(name: &'static str, default: usize) -> Result<usize> {
    Ok(std::env::var(name)
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context(name)?
        .unwrap_or(default))
}

/// The rules, compiled; also the number of refusals (documents that did not
/// parse and rules the engine refused).
fn engine(rules: &Path) -> Result<(Engine, usize)> {
    let files = sigma::rule_files(&[rules.to_path_buf()]).map_err(anyhow::Error::msg)?;
    let mut docs = Vec::new();
    let mut refused = 0;
    for file in &files {
        let source = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
        for document in sigma::parse_documents(&source) {
            match document {
                Ok(document) => docs.push(LoadedDocument {
                    file: file.display().to_string(),
                    document,
                }),
                Err(_) => refused += 1,
            }
        }
    }
    let options = Options {
        mappings: Mappings::builtin()?,
        placeholders: Default::default(),
        limits: Default::default(),
    };
    let (engine, issues) = Engine::compile(&docs, &options);
    refused += issues.iter().filter(|i| !i.warning).count();
    Ok((engine, refused))
}

/// The events of the files, as `spoor rules test` reads them (ingest's
/// Windows parser), in batches of `BATCH_ROWS`; also the dead letters.
fn batches(files: &[PathBuf]) -> Result<(Vec<RecordBatch>, usize, usize)> {
    let mut rows: Vec<EventRow> = Vec::new();
    let mut dead = 0;
    for path in files {
        let decoded = spoor_ingest::event_file::decode_file(path, Some(SourceType::Windows))
            .map_err(anyhow::Error::msg)?;
        for d in decoded {
            match d {
                Decoded::Event(row) => rows.push(row),
                Decoded::Dead(_) => dead += 1,
            }
        }
    }
    let mut batches = Vec::new();
    for chunk in rows.chunks(BATCH_ROWS) {
        let refs: Vec<&EventRow> = chunk.iter().collect();
        batches.push(spoor_ingest::lake_writer::event_batch(&refs)?);
    }
    Ok((batches, rows.len(), dead))
}

/// One pass of the engine over all batches: (all hits, hits of alerting rules).
fn pass(engine: &Engine, batches: &[RecordBatch]) -> Result<(usize, usize)> {
    let (mut hits, mut alerts) = (0, 0);
    for batch in batches {
        let result = engine.evaluate(batch).map_err(anyhow::Error::msg)?;
        hits += result.hits.len();
        alerts += result
            .hits
            .iter()
            .filter(|h| engine.detections[h.rule].alerts)
            .count();
    }
    Ok((hits, alerts))
}

/// What `sigma_sqlite.py bench` printed, and the matches of its first pass.
struct Sqlite {
    events: usize,
    rules: usize,
    refused: usize,
    repeat: usize,
    seconds: f64,
    events_per_second: f64,
    matches: usize,
    convert_seconds: f64,
    load_seconds: f64,
}

/// The pySigma venv's python (`scripts/pysigma-venv.sh`, installed if missing).
fn pysigma_python(root: &Path) -> Result<PathBuf> {
    let out = Command::new(root.join("scripts/pysigma-venv.sh"))
        .output()
        .context("scripts/pysigma-venv.sh")?;
    if !out.status.success() {
        bail!(
            "scripts/pysigma-venv.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8(out.stdout)?;
    let line = stdout
        .lines()
        .last()
        .context("no python from pysigma-venv.sh")?;
    Ok(PathBuf::from(line.trim()))
}

fn sqlite(root: &Path, rules: &Path, files: &[PathBuf], repeat: usize) -> Result<Sqlite> {
    // The script's own `bench`, with `run_rule` wrapped to count, on the
    // first (untimed) run of each output detection, the events it matched.
    let script = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
import sigma_sqlite as s
seen, matches = set(), [0]
run_rule = s.run_rule
def counting(table, conv):
    result = run_rule(table, conv)
    if id(conv) not in seen:
        seen.add(id(conv))
        if conv.kind == "detection" and conv.output:
            matches[0] += len(result)
    return result
s.run_rule = counting
rc = s.main(sys.argv[2:])
print(json.dumps({"bench_matches": matches[0]}))
sys.exit(rc)
"#;
    let mut command = Command::new(pysigma_python(root)?);
    command
        .args(["-c", script])
        .arg(root.join("tests/python"))
        .args(["bench", "--rules"])
        .arg(rules)
        .arg("--events")
        .args(files)
        .args(["--repeat", &repeat.to_string()]);
    let out = command.output().context("sigma_sqlite.py")?;
    if !out.status.success() {
        bail!(
            "sigma_sqlite.py bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // stdout: refusals, the bench line, then the matches line.
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let find = |key: &str| {
        lines
            .iter()
            .find(|v| v.get(key).is_some())
            .with_context(|| format!("no {key} from sigma_sqlite.py"))
    };
    let bench = find("events_per_second")?;
    let matches = find("bench_matches")?["bench_matches"]
        .as_u64()
        .context("bench_matches")? as usize;
    let num = |k: &str| {
        bench[k]
            .as_f64()
            .with_context(|| format!("bench line: {k}"))
    };
    Ok(Sqlite {
        events: num("events")? as usize,
        rules: num("rules")? as usize,
        refused: num("refused")? as usize,
        repeat: num("repeat")? as usize,
        seconds: num("seconds")?,
        events_per_second: num("events_per_second")?,
        matches,
        convert_seconds: num("convert_seconds")?,
        load_seconds: num("load_seconds")?,
    })
}

fn main() -> Result<()> {
    let runs = env_usize("DETECTION_BENCH_RUNS", 10)?.max(1);
    let repeat = env_usize("DETECTION_BENCH_SQLITE_REPEAT", 1)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rules = corpus().join("sigma/rules/windows");
    let files = event_files()?;

    let started = Instant::now();
    let (engine, refused) = engine(&rules)?;
    let compile = started.elapsed();
    let started = Instant::now();
    let (batches, events, dead) = batches(&files)?;
    let parse = started.elapsed();
    let (hits, alerts) = pass(&engine, &batches)?;
    // Half the timed passes before the SQLite run and half after, so that a
    // change in the machine's load during the run weighs on both sides.
    let timed = |n: usize, times: &mut Vec<Duration>| -> Result<()> {
        for _ in 0..n {
            let started = Instant::now();
            std::hint::black_box(pass(&engine, &batches)?);
            times.push(started.elapsed());
        }
        Ok(())
    };
    let mut times = Vec::with_capacity(runs);
    timed(runs.div_ceil(2), &mut times)?;
    // DETECTION_BENCH_SQLITE_REPEAT=0: Spoor alone (for profiling).
    let sq = if repeat == 0 {
        None
    } else {
        Some(sqlite(&root, &rules, &files, repeat)?)
    };
    timed(runs - times.len(), &mut times)?;
    times.sort();
    let (best, median): (Duration, Duration) = (times[0], times[times.len() / 2]);
    // One more pass, batch by batch, for the per-batch cost.
    let mut per_batch = Vec::with_capacity(batches.len());
    for batch in &batches {
        let started = Instant::now();
        std::hint::black_box(engine.evaluate(batch).map_err(anyhow::Error::msg)?);
        per_batch.push(format!(
            "{} rows {:.1} ms",
            batch.num_rows(),
            started.elapsed().as_secs_f64() * 1e3
        ));
    }

    println!(
        "detection: SigmaHQ windows rules over otrf-windows ({} files), one thread each",
        files.len()
    );
    println!(
        "spoor: {} detections compiled ({refused} refused) in {:.1?}; {events} events \
         ({dead} dead letters) parsed into {} batches in {:.1?}; {runs} timed passes",
        engine.detections.len(),
        compile,
        batches.len(),
        parse
    );
    println!("spoor per batch: {}", per_batch.join(", "));
    if let Some(sq) = &sq {
        println!(
            "sqlite: {} rules run ({} refused), converted in {:.1} s; {} events loaded in \
             {:.1} s; {} timed pass(es)",
            sq.rules, sq.refused, sq.convert_seconds, sq.events, sq.load_seconds, sq.repeat
        );
    }
    println!(
        "{:<14} {:>7} {:>6} {:>10} {:>14} {:>8}",
        "", "events", "rules", "seconds", "events/s/core", "matches"
    );
    let eps = |d: Duration| events as f64 / d.as_secs_f64();
    for (name, d) in [("spoor best", best), ("spoor median", median)] {
        println!(
            "{name:<14} {events:>7} {:>6} {:>10.4} {:>14.0} {alerts:>8}",
            engine.detections.len(),
            d.as_secs_f64(),
            eps(d)
        );
    }
    println!("spoor hits, also of rules that do not alert: {hits}");
    let Some(sq) = sq else {
        report_line(
            "detection",
            serde_json::json!({
                "events": events,
                "detections": engine.detections.len(),
                "runs": runs,
                "spoor_median_s": median.as_secs_f64(),
                "spoor_median_events_per_s": eps(median),
                "spoor_best_events_per_s": eps(best),
                "sqlite": null,
            }),
        );
        return Ok(());
    };
    println!(
        "{:<14} {:>7} {:>6} {:>10.4} {:>14.0} {:>8}",
        "sqlite",
        sq.events,
        sq.rules,
        sq.seconds / sq.repeat as f64,
        sq.events_per_second,
        sq.matches
    );
    let ratio = eps(median) / sq.events_per_second;
    println!(
        "ratio spoor/sqlite events/s per core: {ratio:.1}× (spoor median), {:.1}× (spoor best)",
        eps(best) / sq.events_per_second
    );
    if sq.events != events {
        println!(
            "note: sqlite loaded {} events, spoor {events} (and {dead} dead letters)",
            sq.events
        );
    }
    println!(
        "target: spoor ≥ 100× sqlite (median): {}",
        if ratio >= 100.0 { "met" } else { "missed" }
    );
    report_line(
        "detection",
        serde_json::json!({
            "events": events,
            "detections": engine.detections.len(),
            "runs": runs,
            "spoor_median_s": median.as_secs_f64(),
            "spoor_median_events_per_s": eps(median),
            "spoor_best_events_per_s": eps(best),
            "spoor_matches": alerts,
            "sqlite": {
                "rules": sq.rules,
                "refused": sq.refused,
                "events": sq.events,
                "seconds_per_pass": sq.seconds / sq.repeat as f64,
                "events_per_s": sq.events_per_second,
                "matches": sq.matches,
            },
            "spoor_median_over_sqlite": ratio,
            "spoor_best_over_sqlite": eps(best) / sq.events_per_second,
        }),
    );
    Ok(())
}

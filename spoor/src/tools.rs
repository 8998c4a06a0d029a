//! Offline tools that need no running node: `spoor ingest parse`.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use spoor_common::config::{Config, SourceType};
use spoor_ingest::parse::{Decoded, Decoder, Provenance};

/// `spoor ingest parse`.
#[derive(Debug, Args)]
pub(crate) struct ParseArgs {
    /// The parser: json, windows, syslog, auditd, cef, leef, zeek, cloudtrail, entra.
    #[arg(long, short = 't', required_unless_present = "topic")]
    source_type: Option<SourceType>,
    /// Use the `[[ingest.sources]]` entry of this topic (with its field
    /// mapping) from the configuration instead of `--source-type`.
    #[arg(long, conflicts_with = "source_type")]
    topic: Option<String>,
    /// TOML config file for `--topic`.
    #[arg(long, short = 'c', env = "SPOOR_CONFIG")]
    config: Option<PathBuf>,
    /// Print per-file counts (events, dead letters, OCSF classes) instead of
    /// the events.
    #[arg(long)]
    summary: bool,
    /// Files to read, one input per line; `-` reads standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Counts of one file, for `--summary`.
#[derive(Debug, Default)]
struct Counts {
    lines: u64,
    events: u64,
    dead: u64,
    classes: BTreeMap<i64, u64>,
    first_errors: Vec<String>,
}

/// Runs `spoor ingest parse`.
pub(crate) fn parse(args: ParseArgs) -> ExitCode {
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spoor ingest parse: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn decoder(args: &ParseArgs) -> anyhow::Result<Decoder> {
    if let Some(source_type) = args.source_type {
        return Ok(Decoder::for_type(source_type));
    }
    let topic = args.topic.as_deref().unwrap_or_default();
    let env = std::env::vars().filter(|(k, _)| !crate::NOT_CONFIG_KEYS.contains(&k.as_str()));
    let config = Config::load(args.config.as_deref(), env, &[])?;
    match config.ingest.source_for(topic) {
        Some(entry) => Ok(Decoder::new(entry)?),
        None => {
            eprintln!("no [[ingest.sources]] entry matches topic {topic:?}; it is read as json");
            Ok(Decoder::for_type(SourceType::Json))
        }
    }
}

fn run(args: &ParseArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut any_dead = false;
    for file in &args.files {
        let mut decoder = decoder(args)?;
        let bytes = if file.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            buf
        } else {
            std::fs::read(file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?
        };
        let topic = format!("file:{}", file.display());
        let now = spoor_common::time::now_micros();
        let mut counts = Counts::default();
        let mut decoded = Vec::new();
        let mut last = 0;
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            counts.lines += 1;
            last = i as i64 + 1;
            let prov = Provenance {
                topic: topic.clone(),
                partition: None,
                offset: Some(last),
                ingest_time_micros: now,
            };
            decoder.decode(line, &prov, &mut decoded);
            emit(&mut out, &mut decoded, &mut counts, args.summary)?;
        }
        let end = Provenance {
            topic: topic.clone(),
            partition: None,
            offset: Some(last),
            ingest_time_micros: now,
        };
        decoder.flush(&end, &mut decoded);
        emit(&mut out, &mut decoded, &mut counts, args.summary)?;
        any_dead |= counts.dead > 0;
        if args.summary {
            let rate = if counts.events + counts.dead == 0 {
                0.0
            } else {
                100.0 * counts.dead as f64 / (counts.events + counts.dead) as f64
            };
            let summary = serde_json::json!({
                "file": file.display().to_string(),
                "source_type": decoder.source_type().name(),
                "lines": counts.lines,
                "events": counts.events,
                "dead_letters": counts.dead,
                "dead_letter_percent": (rate * 100.0).round() / 100.0,
                "classes": counts.classes.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
                "first_errors": counts.first_errors,
            });
            writeln!(out, "{summary}")?;
        }
    }
    out.flush()?;
    // Dead letters are a finding, not a failure of the tool: exit 1 so
    // scripts notice, 0 when every line became an event.
    Ok(if any_dead {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn emit(
    out: &mut impl Write,
    decoded: &mut Vec<Decoded>,
    counts: &mut Counts,
    summary: bool,
) -> anyhow::Result<()> {
    for d in decoded.drain(..) {
        match d {
            Decoded::Event(row) => {
                counts.events += 1;
                *counts
                    .classes
                    .entry(row.get_int("class_uid").unwrap_or(0))
                    .or_default() += 1;
                if !summary {
                    writeln!(out, "{}", row.to_json())?;
                }
            }
            Decoded::Dead(letter) => {
                counts.dead += 1;
                if counts.first_errors.len() < 5 {
                    counts.first_errors.push(letter.error.clone());
                }
                if !summary {
                    let value = serde_json::json!({"dead_letter": {
                        "error": letter.error,
                        "raw": String::from_utf8_lossy(&letter.raw),
                    }});
                    writeln!(out, "{value}")?;
                }
            }
        }
    }
    Ok(())
}

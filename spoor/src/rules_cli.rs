//! `spoor rules …`: detection as code. Rules are read, compiled and run
//! here exactly as a worker runs them; events go through ingest's own
//! parsers first, so a rule that fires here fires on the cluster.
//! `apply` and `list` manage the rule sets stored on the cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value as Json, json};
use spoor_common::config::SourceType;
use spoor_correlate::bundle::{Compiled, FileNames, RuleBundle, read_placeholders};
use spoor_correlate::sigma;
use spoor_correlate::window::{Correlator, Output, WindowOptions};
use spoor_ingest::event_file;
use spoor_ingest::parse::{Decoded, EventRow};

mod apply;
mod http;
mod hunt;

/// `spoor rules ...`: detection rules, offline, and the rule sets stored on
/// the cluster.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum RulesCommand {
    /// Parse, validate and compile Sigma rule files and folders (`.yml`,
    /// `.yaml`, searched recursively): every refused rule is printed as
    /// `file:line:column: reason`, every warning (a log source without a
    /// mapping, a filter that applies to nothing) as
    /// `file:line: warning: …`; the exit code is 1 when any rule is refused.
    Check {
        /// Rule files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        compile: CompileArgs,
    },
    /// MITRE ATT&CK techniques and tactics the rules cover, from their tags:
    /// one line per technique with its number of rules (`--json`: the rule
    /// titles too). Refused rules are counted, not covered.
    Coverage {
        /// Rule files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Run rules on event files, offline: every event goes through ingest's
    /// parser, then every rule; each match, correlation alert and SQL rule
    /// result is printed as one JSON line. Refusals and dead letters go to
    /// standard error; the exit code is 1 when a rule was refused or an
    /// event could not be parsed.
    Test {
        /// A rule file or folder.
        rules: PathBuf,
        /// Event files: JSON (one object, JSON Lines, concatenated objects or
        /// an array), Windows `.evtx`, or any line format ingest parses.
        #[arg(required = true)]
        events: Vec<PathBuf>,
        /// The events' format (a source type: windows, json, syslog,
        /// auditd, cef, leef, zeek, cloudtrail, entra); guessed per file
        /// when absent.
        #[arg(long)]
        format: Option<String>,
        #[command(flatten)]
        compile: CompileArgs,
    },
    /// Upload rule files and folders to the cluster as a versioned rule set
    /// of each tenant (`--tenant`, repeatable). The rules are checked here
    /// first, exactly as `check` does: when any is refused, the refusals
    /// are printed, nothing is uploaded and the exit code is 1. A tenant
    /// whose rule set already holds the same rules and enablement is left
    /// at its version (`unchanged`); a change made by someone else since
    /// this command read the version is refused, never overwritten.
    Apply(apply::ApplyArgs),
    /// A tenant's rule sets on the cluster: name, version, enabled, files,
    /// when stored.
    List(apply::ListArgs),
    /// Run rule files or folders (checked here first), or a stored rule
    /// set (`--rule-set`), over a past time range of a tenant's lake as a
    /// retro-hunt job on the node at `--endpoint`; its alerts go to
    /// `alerts` with `origin = 'retro_hunt'`. Prints the job id, and with
    /// `--wait` its progress until it ends.
    Hunt(hunt::HuntArgs),
    /// Print rules in their compiled form: which events they apply to,
    /// which column or `unmapped` key each field is read from, and every
    /// test after modifiers, wildcards and escapes were applied.
    Explain {
        /// A rule file or folder.
        rules: PathBuf,
        /// Only the rule with this id, name or title.
        #[arg(long)]
        rule: Option<String>,
        #[command(flatten)]
        compile: CompileArgs,
    },
}

/// How rules are compiled.
#[derive(Debug, clap::Args)]
pub(crate) struct CompileArgs {
    /// A TOML file of `%placeholder%` values for `|expand`
    /// (`Admins = ["root", "admin"]`).
    #[arg(long)]
    placeholders: Option<PathBuf>,
    /// Extra field mapping files (the format of `correlate/mappings/`),
    /// read after the built-in ones.
    #[arg(long = "mapping")]
    mappings: Vec<PathBuf>,
}

impl CompileArgs {
    /// The rule files under `paths` with this command's mapping files and
    /// placeholder values, as one bundle.
    pub(crate) fn bundle(&self, paths: &[PathBuf], names: FileNames) -> Result<RuleBundle, String> {
        let placeholders = match &self.placeholders {
            None => BTreeMap::new(),
            Some(path) => read_placeholders(path)?,
        };
        RuleBundle::read(paths, &self.mappings, placeholders, names)
    }
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an
/// error worth a panic.
fn print_all(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("writing the output: {e}");
    }
}

pub(crate) fn rules(command: RulesCommand) -> ExitCode {
    let result = match command {
        RulesCommand::Check { paths, compile } => check(&paths, &compile),
        RulesCommand::Coverage { paths, json } => coverage(&paths, json),
        RulesCommand::Test {
            rules,
            events,
            format,
            compile,
        } => test(&rules, &events, format.as_deref(), &compile),
        RulesCommand::Explain {
            rules,
            rule,
            compile,
        } => explain(&rules, rule.as_deref(), &compile),
        RulesCommand::Apply(args) => apply::apply(&args),
        RulesCommand::List(args) => apply::list(&args),
        RulesCommand::Hunt(args) => hunt::hunt(&args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("spoor rules: {e}");
        ExitCode::from(2)
    })
}

/// Reads and compiles rules as every offline command does: files named
/// as found here, so output points at local files.
fn compile(paths: &[PathBuf], args: &CompileArgs) -> Result<Compiled, String> {
    args.bundle(paths, FileNames::AsGiven)?.check()
}

/// Prints `compiled`'s refusals and warnings (`rules check`'s format) and
/// its counts, to standard error.
pub(crate) fn report(compiled: &Compiled) {
    for finding in &compiled.findings {
        eprintln!("{finding}");
    }
    eprintln!("{}", summary(compiled));
}

fn summary(compiled: &Compiled) -> String {
    let engine = &compiled.engine;
    let (tests, fields) = engine.sizes();
    format!(
        "{} rule(s) read, {} refused, {} warning(s), in {} file(s); \
         {} detection, {} correlation and {} SQL rule(s) compiled to {tests} shared tests on {fields} fields",
        compiled.rules(),
        compiled.refusals(),
        compiled.warnings(),
        compiled.files,
        engine.detections.len(),
        engine.correlations.len(),
        engine.sql_rules.len(),
    )
}

fn check(paths: &[PathBuf], args: &CompileArgs) -> Result<ExitCode, String> {
    let compiled = compile(paths, args)?;
    let out: String = compiled.findings.iter().map(|f| format!("{f}\n")).collect();
    print_all(&out);
    eprintln!("{}", summary(&compiled));
    Ok(if compiled.refusals() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn coverage(paths: &[PathBuf], json: bool) -> Result<ExitCode, String> {
    let bundle = RuleBundle::read(paths, &[], BTreeMap::new(), FileNames::AsGiven)?;
    let (loaded, refused) = bundle.documents();
    let rules: Vec<&sigma::Rule> = loaded
        .iter()
        .filter_map(|d| d.document.as_detection())
        .collect();
    let c = sigma::coverage::coverage(rules);
    let refused = refused.len();
    let mut out = String::new();
    if json {
        out = json!({
            "rules": c.rules,
            "refused": refused,
            "untagged": c.untagged,
            "techniques": c.techniques,
            "tactics": c.tactics,
        })
        .to_string()
            + "\n";
    } else {
        out.push_str("technique  rules\n");
        for (technique, titles) in &c.techniques {
            out.push_str(&format!("{technique:<10} {}\n", titles.len()));
        }
        out.push_str("\ntactic  rules\n");
        for (tactic, n) in &c.tactics {
            out.push_str(&format!("{tactic} {n}\n"));
        }
    }
    print_all(&out);
    eprintln!(
        "{} technique(s) and {} tactic(s) covered by {} rule(s); {} without ATT&CK tags; {refused} refused (see `spoor rules check`)",
        c.techniques.len(),
        c.tactics.len(),
        c.rules,
        c.untagged
    );
    Ok(ExitCode::SUCCESS)
}

fn explain(path: &Path, rule: Option<&str>, args: &CompileArgs) -> Result<ExitCode, String> {
    let compiled = compile(&[path.to_path_buf()], args)?;
    for finding in &compiled.findings {
        eprintln!("{finding}");
    }
    let refusals = compiled.refusals();
    let engine = compiled.engine;
    let mut keys: Vec<String> = match rule {
        Some(r) => vec![r.to_string()],
        None => engine
            .detections
            .iter()
            .map(|d| d.info.key().to_string())
            .chain(engine.correlations.iter().map(|c| c.info.key().to_string()))
            .collect(),
    };
    keys.dedup();
    let mut out = String::new();
    for key in &keys {
        for text in engine.explain(key) {
            out.push_str(&text);
            out.push('\n');
        }
    }
    if out.is_empty() {
        return Err(match rule {
            Some(r) => format!("no compiled rule has the id, name or title {r:?}"),
            None => "no rule compiled".into(),
        });
    }
    print_all(&out);
    Ok(if refusals == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One event's origin: the file and its position in it (0-based, in file
/// order).
#[derive(Debug, Clone)]
pub(crate) struct EventOrigin {
    file: String,
    index: usize,
}

/// Events of the files, parsed by ingest, with their origins; dead letters
/// are printed to standard error.
pub(crate) fn read_events(
    paths: &[PathBuf],
    format: Option<&str>,
) -> Result<(Vec<EventRow>, Vec<EventOrigin>, usize), String> {
    let forced = match format {
        Some(f) => Some(
            f.parse::<SourceType>()
                .map_err(|e| format!("--format {f}: {e}"))?,
        ),
        None => None,
    };
    let mut rows = Vec::new();
    let mut origins = Vec::new();
    let mut dead = 0;
    for path in paths {
        let file = path.display().to_string();
        let decoded = event_file::decode_file(path, forced)?;
        for (index, decoded) in decoded.into_iter().enumerate() {
            match decoded {
                Decoded::Event(row) => {
                    rows.push(row);
                    origins.push(EventOrigin {
                        file: file.clone(),
                        index,
                    });
                }
                Decoded::Dead(d) => {
                    dead += 1;
                    eprintln!(
                        "{}",
                        json!({"type": "dead_letter", "file": file, "event": index, "error": d.error})
                    );
                }
            }
        }
    }
    Ok((rows, origins, dead))
}

fn format_time(micros: i64) -> String {
    spoor_ingest::parse::draft::format_micros(micros)
}

/// Rows per batch handed to the engine.
const BATCH_ROWS: usize = 8_192;

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the SQL runtime: {e}"))
}

fn origin_json(origins: &[EventOrigin], label: &str) -> Json {
    match label.parse::<usize>().ok().and_then(|i| origins.get(i)) {
        Some(o) => json!({"file": o.file, "event": o.index}),
        None => json!({"alert": label.trim_start_matches("alert:")}),
    }
}

fn test(
    rules: &Path,
    events: &[PathBuf],
    format: Option<&str>,
    args: &CompileArgs,
) -> Result<ExitCode, String> {
    let compiled = compile(&[rules.to_path_buf()], args)?;
    for finding in &compiled.findings {
        eprintln!("{finding}");
    }
    let refusals = compiled.refusals();
    let engine = compiled.engine;
    let rt = runtime()?;
    let sql_rules = &engine.sql_rules;
    let (mut rows, mut origins, dead) = read_events(events, format)?;
    // Offline, all events are at hand: evaluate them in event time order,
    // as a retro-hunt does, so no correlation input is ever late.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].time());
    rows = order.iter().map(|&i| rows[i].clone()).collect();
    origins = order.iter().map(|&i| origins[i].clone()).collect();
    let mut correlator = Correlator::new(&engine, WindowOptions::default());
    let mut out = String::new();
    let mut counts = [0usize; 3];
    let mut batches = Vec::new();
    let mut correlation_outputs = Vec::new();
    for (chunk_index, chunk) in rows.chunks(BATCH_ROWS).enumerate() {
        let refs: Vec<&EventRow> = chunk.iter().collect();
        let batch = spoor_ingest::lake_writer::event_batch(&refs).map_err(|e| e.to_string())?;
        let result = engine.evaluate(&batch)?;
        let base = chunk_index * BATCH_ROWS;
        for hit in &result.hits {
            let rule = &engine.detections[hit.rule];
            if !rule.alerts {
                continue;
            }
            let origin = &origins[base + hit.row];
            counts[0] += 1;
            let line: Json = json!({
                "type": "match",
                "rule_id": rule.info.id,
                "rule_title": rule.info.title,
                "level": rule.info.level,
                "file": origin.file,
                "event": origin.index,
                "time": format_time(result.values.times[hit.row]),
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
        correlation_outputs.extend(correlator.push(&result, &|row| (base + row).to_string()));
        if !sql_rules.is_empty() {
            batches.push(batch);
        }
    }
    correlation_outputs.extend(correlator.finish());
    for output in correlation_outputs {
        let line = match output {
            Output::Alert(alert) => {
                counts[1] += 1;
                let rule = &engine.correlations[alert.correlation];
                json!({
                    "type": "correlation",
                    "rule_id": rule.info.id,
                    "rule_title": rule.info.title,
                    "level": rule.info.level,
                    "correlation_type": rule.rule.kind.name(),
                    "alert_id": alert.id,
                    "group": alert.group.iter().map(|(k, v)| (k.clone(), Json::from(v.as_str()))).collect::<serde_json::Map<String, Json>>(),
                    "first": format_time(alert.first),
                    "last": format_time(alert.last),
                    "value": alert.value,
                    "events": alert.events.iter().map(|e| origin_json(&origins, e)).collect::<Vec<_>>(),
                })
            }
            Output::Late {
                correlation,
                time,
                event,
            } => json!({
                "type": "late",
                "rule_id": engine.correlations[correlation].info.id,
                "time": format_time(time),
                "event": origin_json(&origins, &event),
            }),
            Output::Evicted { entries } => json!({"type": "state_evicted", "entries": entries}),
        };
        out.push_str(&line.to_string());
        out.push('\n');
    }
    for (info, rule) in sql_rules {
        let alerts = rt
            .block_on(spoor_correlate::sql::run_over(rule, &batches))
            .map_err(|e| format!("{}:{}: {}: {e}", info.file, info.line, info.title))?;
        for alert in alerts {
            counts[2] += 1;
            let line = json!({
                "type": "sql",
                "rule_id": info.id,
                "rule_title": info.title,
                "level": info.level,
                "alert_id": alert.id,
                "range_start": format_time(alert.range_start),
                "range_end": format_time(alert.range_end),
                "row": alert.row,
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
    print_all(&out);
    eprintln!(
        "{} detection, {} correlation and {} SQL rule(s), {refusals} refused; {} event(s), {dead} dead letter(s); \
         {} match(es), {} correlation alert(s), {} SQL alert(s)",
        engine.detections.len(),
        engine.correlations.len(),
        engine.sql_rules.len(),
        rows.len(),
        counts[0],
        counts[1],
        counts[2],
    );
    Ok(if refusals == 0 && dead == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

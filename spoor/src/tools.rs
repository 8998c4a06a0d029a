//! Tools: `spoor ingest parse` (offline: shows what a file would become) and
//! `spoor import` (loads files into a running cluster's lake, see
//! `spoor_ingest::import`).

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use spoor_common::catalog::Catalog;
use spoor_common::catalog_client::GrpcCatalog;
use spoor_common::config::{Config, SourceType};
use spoor_common::control::ControlClient;
use spoor_common::tenant::TenantId;
use spoor_ingest::flush::{Fault, Flusher};
use spoor_ingest::import::{BatchLimits, ImportReport, Importer};
use spoor_ingest::lake_writer::LakeWriter;
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

/// `spoor import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Tenant receiving the events: a registered tenant (`spoor tenant add`)
    /// or the configured `ingest.tenant`.
    #[arg(long)]
    tenant: String,
    /// The parser: json, windows, syslog, auditd, cef, leef, zeek, cloudtrail,
    /// entra. `.evtx` files (recognized by their content) need `windows`.
    #[arg(long, short = 't')]
    source_type: SourceType,
    /// TOML config file (layered over the embedded defaults, as for roles):
    /// `catalog.endpoint`, `storage.url`/`data_dir`, `ingest.zstd_level`,
    /// `ingest.max_batch_events`/`max_batch_bytes` (the batch size).
    #[arg(long, short = 'c', env = "SPOOR_CONFIG")]
    config: Option<PathBuf>,
    /// Override any key: `--set ingest.max_batch_events=10000` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Shorthand for `--set data_dir=PATH` (the lake is `PATH/lake` unless
    /// `storage.url` says otherwise).
    #[arg(long)]
    data_dir: Option<String>,
    /// Shorthand for `--set catalog.endpoint=URL`: the coordinators' gRPC
    /// endpoints (a standalone node's `grpc=` address).
    #[arg(long)]
    catalog: Option<String>,
    /// Files to load: JSON lines, Zeek JSON or TSV, syslog, auditd, CEF,
    /// LEEF, … one input per line, or Windows `.evtx` event logs.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

impl ImportArgs {
    fn load(&self) -> Result<Config, spoor_common::config::ConfigError> {
        let mut sets = Vec::new();
        if let Some(v) = &self.data_dir {
            sets.push(format!("data_dir={v}"));
        }
        if let Some(v) = &self.catalog {
            sets.push(format!("catalog.endpoint={v}"));
        }
        sets.extend(self.sets.iter().cloned());
        let env = std::env::vars().filter(|(k, _)| !crate::NOT_CONFIG_KEYS.contains(&k.as_str()));
        Config::load(self.config.as_deref(), env, &sets)
    }
}

/// Runs `spoor import`: exit 0 when every file loaded without dead letters,
/// 1 when some lines became dead letters (as `spoor ingest parse`), 2 when a
/// file could not be imported or nothing could start.
pub(crate) fn import(args: ImportArgs) -> ExitCode {
    let config = match args.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spoor import: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = spoor_common::telemetry::init_logging(&config.log) {
        eprintln!("spoor import: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("spoor import: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_import(&args, &config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spoor import: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Refuses a tenant the coordinators do not know, unless it is the
/// configured default (which needs no registration, as for ingest).
async fn check_tenant(config: &Config, tenant: &TenantId, timeout: Duration) -> anyhow::Result<()> {
    if *tenant == config.ingest_tenant() {
        return Ok(());
    }
    let endpoint = &config.catalog.endpoint;
    let tls = spoor_common::tls::Tls::from_config(&config.tls)?;
    let control = ControlClient::connect_lazy_with_tls(endpoint, timeout, tls.as_ref())
        .with_context(|| format!("catalog.endpoint {endpoint:?}"))?
        .with_credential(config.cluster.credential().context("cluster")?);
    let status = control.cluster_status().await.with_context(|| {
        format!("checking that tenant {tenant} is registered (catalog.endpoint {endpoint})")
    })?;
    if status.tenants.iter().any(|t| t.id == *tenant) {
        return Ok(());
    }
    anyhow::bail!(
        "--tenant {tenant} is not registered with the coordinators: register it with \
         `spoor tenant add {tenant}` first (only ingest.tenant {:?} needs no registration)",
        config.ingest.tenant
    )
}

async fn run_import(args: &ImportArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let tenant = TenantId::new(args.tenant.clone()).context("--tenant")?;
    let timeout = Duration::from_millis(config.catalog.timeout_ms);
    check_tenant(config, &tenant, timeout).await?;
    let catalog: Arc<dyn Catalog> = Arc::new(
        GrpcCatalog::connect_lazy_with_tls(
            &config.catalog.endpoint,
            timeout,
            spoor_common::tls::Tls::from_config(&config.tls)?.as_ref(),
        )
        .context("configuring the catalog client (catalog.endpoint)")?
        .with_credential(config.cluster.credential().context("cluster")?),
    );
    let store = spoor_common::storage::open_lake(config)
        .context("opening the lake (storage.url / data_dir)")?;
    let flusher = Flusher::new(
        LakeWriter::new(store, config.ingest.zstd_level),
        catalog.clone(),
        Fault::from_env(),
    );
    let importer = Importer::new(
        flusher,
        catalog,
        tenant,
        args.source_type,
        BatchLimits {
            lines: config.ingest.max_batch_events,
            bytes: config.ingest.max_batch_bytes,
        },
    );
    let mut reports: Vec<ImportReport> = Vec::new();
    let mut failed = Vec::new();
    for file in &args.files {
        let mut progress = |r: &ImportReport| {
            eprintln!(
                "spoor import: {}: {} records read ({} already imported), {} events, {} dead letters, {} files committed",
                r.file, r.records, r.skipped, r.events, r.dead_letters, r.files
            );
        };
        match importer.import_path(file, &mut progress).await {
            Ok(report) => {
                if report.already_imported {
                    eprintln!(
                        "spoor import: {}: already imported (content sha256 {}), nothing added",
                        report.file, report.sha256
                    );
                }
                reports.push(report);
            }
            Err(e) => {
                eprintln!("spoor import: {e}");
                failed.push(serde_json::json!({
                    "file": file.display().to_string(),
                    "error": e.to_string(),
                }));
            }
        }
    }
    let sum = |f: fn(&ImportReport) -> u64| reports.iter().map(f).sum::<u64>();
    let summary = serde_json::json!({
        "tenant": args.tenant,
        "source_type": args.source_type.name(),
        "events": sum(|r| r.events),
        "dead_letters": sum(|r| r.dead_letters),
        "files_committed": sum(|r| r.files),
        "records_skipped": sum(|r| r.skipped),
        "already_imported": reports.iter().filter(|r| r.already_imported).count(),
        "imports": reports,
        "failed": failed,
    });
    println!("{summary}");
    Ok(if !failed.is_empty() {
        ExitCode::from(2)
    } else if reports.iter().any(|r| r.dead_letters > 0) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

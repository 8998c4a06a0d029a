//! `spoor sql` and `spoor status`: HTTP clients of a running node.

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use spoor_proto::v1 as pb;

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7080";

/// Options of `spoor sql`.
#[derive(Debug, Args)]
pub(crate) struct SqlArgs {
    /// The statement, for example "SELECT count(*) FROM events"; without
    /// one, an interactive prompt (statements end with `;`, `\q` quits,
    /// `\help` lists the commands, history in ~/.spoor_sql_history).
    sql: Option<String>,
    /// HTTP endpoint of a query or standalone node.
    #[arg(long, env = "SPOOR_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// An analyst or admin token (needed when the node has `query.auth = "token"`).
    #[arg(long, env = "SPOOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    tls: crate::tls_cli::TlsArgs,
}

/// Options of `spoor status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// HTTP endpoint of any node.
    #[arg(long, env = "SPOOR_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// The cluster's admin token (an admin token naming no tenant), needed
    /// when the node has `query.auth = "token"`.
    #[arg(long, env = "SPOOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    tls: crate::tls_cli::TlsArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Aligned columns.
    Table,
    /// The rows as one JSON array.
    Json,
    /// One JSON object per row.
    Ndjson,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

/// Runs `future` on a new single-threaded runtime.
pub(crate) fn block_on<T>(
    future: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    runtime()?.block_on(future)
}

async fn send(req: reqwest::RequestBuilder, endpoint: &str) -> Result<Value, String> {
    let resp = req
        .send()
        .await
        .map_err(|e| format!("cannot reach {endpoint}: {e}"))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("{endpoint} answered {status} with a body that is not JSON: {e}"))?;
    if !status.is_success() {
        let code = body["error"]["code"].as_str().unwrap_or("error");
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        return Err(format!("{code}: {message}"));
    }
    Ok(body)
}

/// Runs one statement and prints its rows in `format`.
async fn run_sql(
    client: &reqwest::Client,
    args: &SqlArgs,
    sql: &str,
    format: Format,
) -> Result<(), String> {
    let url = format!("{}/v1/query", args.endpoint.trim_end_matches('/'));
    let mut req = client.post(url).json(&serde_json::json!({ "sql": sql }));
    if let Some(token) = &args.token {
        req = req.bearer_auth(token);
    }
    let body = send(req, &args.endpoint).await?;
    let rows = body["rows"].as_array().cloned().unwrap_or_default();
    match format {
        Format::Json => println!("{}", Value::Array(rows)),
        Format::Ndjson => rows.iter().for_each(|r| println!("{r}")),
        Format::Table => {
            let columns: Vec<String> = body["columns"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| c["name"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            print!("{}", render_table(&columns, &rows));
            let truncated = if body["truncated"].as_bool() == Some(true) {
                " (truncated)"
            } else {
                ""
            };
            eprintln!(
                "{} row(s){truncated} in {:.1} ms",
                rows.len(),
                body["elapsed_ms"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

pub(crate) fn sql(args: SqlArgs) -> ExitCode {
    let result = runtime().and_then(|rt| {
        let client = args.tls.http_client()?;
        match &args.sql {
            Some(sql) => rt.block_on(run_sql(&client, &args, sql, args.format)),
            None => repl(&rt, &client, &args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spoor sql: {e}");
            ExitCode::FAILURE
        }
    }
}

const REPL_HELP: &str = "\
statements end with ; and may span lines
\\q                quit (also Ctrl-D)
\\format FORMAT    table, json or ndjson
\\tables           the tables and views
\\d TABLE          a table's columns
\\help             this text";

/// The interactive prompt: statements end with `;`, errors are printed and
/// the prompt goes on, history is kept between sessions.
fn repl(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    args: &SqlArgs,
) -> Result<(), String> {
    use rustyline::error::ReadlineError;
    let mut editor =
        rustyline::DefaultEditor::new().map_err(|e| format!("starting the prompt: {e}"))?;
    let history = std::env::var_os("HOME")
        .map(|home| std::path::PathBuf::from(home).join(".spoor_sql_history"));
    if let Some(path) = &history {
        // A first session has no history yet.
        let _ = editor.load_history(path);
    }
    eprintln!(
        "spoor sql: connected to {}; statements end with ;  \\help for help, \\q to quit",
        args.endpoint
    );
    let mut format = args.format;
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "spoor> "
        } else {
            "  ...> "
        };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(format!("reading input: {e}")),
        };
        let trimmed = line.trim();
        if buffer.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            let mut words = trimmed.split_whitespace();
            let command = words.next().unwrap_or_default();
            let argument = words.next();
            let statement = match (command, argument) {
                ("\\q" | "\\quit", _) => break,
                ("\\help" | "\\?", _) => {
                    eprintln!("{REPL_HELP}");
                    None
                }
                ("\\format", Some(f)) => {
                    match Format::from_str(f, true) {
                        Ok(f) => format = f,
                        Err(_) => eprintln!("unknown format {f:?}: table, json or ndjson"),
                    }
                    None
                }
                ("\\tables", _) => Some(
                    "SELECT table_name, table_type FROM information_schema.tables \
                     WHERE table_schema <> 'information_schema' ORDER BY table_type, table_name"
                        .to_string(),
                ),
                ("\\d", Some(table))
                    if table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    Some(format!(
                        "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
                         WHERE table_name = '{table}' ORDER BY ordinal_position"
                    ))
                }
                _ => {
                    eprintln!("unknown command {trimmed:?}; \\help lists the commands");
                    None
                }
            };
            if let Some(sql) = statement
                && let Err(e) = rt.block_on(run_sql(client, args, &sql, Format::Table))
            {
                eprintln!("{e}");
            }
            continue;
        }
        if trimmed.is_empty() && buffer.is_empty() {
            continue;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let statement = std::mem::take(&mut buffer);
        let _ = editor.add_history_entry(statement.trim());
        let sql = statement.trim().trim_end_matches(';');
        if let Err(e) = rt.block_on(run_sql(client, args, sql, format)) {
            eprintln!("{e}");
        }
    }
    if let Some(path) = &history
        && let Err(e) = editor.save_history(path)
    {
        eprintln!("could not save the history to {}: {e}", path.display());
    }
    Ok(())
}

pub(crate) fn status(args: StatusArgs) -> ExitCode {
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let url = format!("{}/v1/status", args.endpoint.trim_end_matches('/'));
            let mut req = args.tls.http_client()?.get(url);
            if let Some(token) = &args.token {
                req = req.bearer_auth(token);
            }
            send(req, &args.endpoint).await
        })
    });
    match result {
        Ok(body) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string())
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("spoor status: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `spoor cluster ...`: membership of the coordinator group, over gRPC.
#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Voters, learners and leader.
    Members(ClusterArgs),
    /// Add a started coordinator (`coordinator.join = true`) to the group.
    AddNode {
        #[command(flatten)]
        target: ClusterArgs,
        /// The new node's `node.id`.
        #[arg(long)]
        id: u64,
        /// The gRPC URL the other coordinators reach it at, e.g. http://10.0.0.4:7070.
        #[arg(long)]
        url: String,
    },
    /// Remove a coordinator from the group.
    RemoveNode {
        #[command(flatten)]
        target: ClusterArgs,
        /// The node's `node.id`.
        #[arg(long)]
        id: u64,
    },
    /// Hand leadership to a caught-up voter (before maintenance on the leader).
    TransferLeader {
        #[command(flatten)]
        target: ClusterArgs,
        /// The new leader's `node.id`.
        #[arg(long)]
        id: u64,
    },
    /// Write the coordinators' whole state (catalog, source checkpoints,
    /// tenants, token hashes, rule sets, shards) to a file readable by its
    /// owner only (docs/backup-restore.md).
    Backup {
        #[command(flatten)]
        target: ClusterArgs,
        /// The backup file to write (replaced atomically if it exists).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Restore a backup into a freshly initialized coordinator group whose
    /// catalog is empty, keeping the group's own members.
    Restore {
        #[command(flatten)]
        target: ClusterArgs,
        /// The backup file (`spoor cluster backup --out`).
        file: std::path::PathBuf,
    },
}

/// How long a backup or restore call may take (a large catalog is read,
/// sent and committed as one Raft entry).
const BACKUP_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// The message of a refused or failed call to `endpoint`.
fn call_error(endpoint: &str, s: &tonic::Status) -> String {
    if s.code() == tonic::Code::Unavailable {
        format!("cannot reach {endpoint}: {}", s.message())
    } else {
        s.message().to_string()
    }
}

/// Writes `bytes` to `path` so that it is whole or absent: a temporary
/// file beside it, readable and writable by its owner only (the backup
/// holds token hashes and tenant settings), fsynced, then renamed over
/// `path`, and the folder fsynced so the rename survives a crash.
fn write_private_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .ok_or_else(|| format!("--out {}: names no file", path.display()))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if let Err(e) = written {
        // Nothing half-written stays behind.
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("writing {}: {e}", path.display()));
    }
    Ok(())
}

/// `spoor cluster backup` and `restore`: the JSON summary to print.
async fn backup_or_restore(command: ClusterCommand) -> Result<Value, String> {
    match command {
        ClusterCommand::Backup { target, out } => {
            let endpoint = target.coordinator.clone();
            let channel = target.channel_with_timeout(BACKUP_CALL_TIMEOUT)?;
            let bytes = spoor_coordinator::backup::download(channel)
                .await
                .map_err(|s| call_error(&endpoint, &s))?;
            // Checked before it is written: a file on disk is a good one.
            let header = spoor_coordinator::backup::verify(&bytes)
                .map_err(|e| format!("the backup received from {endpoint}: {e}"))?;
            write_private_file(&out, &bytes)?;
            Ok(serde_json::json!({
                "file": out.display().to_string(),
                "bytes": bytes.len(),
                "sha256": header.body_sha256,
                "format_version": header.format_version,
                "created_at": header.created_at,
                "source_node_id": header.source_node_id,
                "last_applied_index": header.last_applied.map_or(0, |l| l.index),
                "last_applied_term": header.last_applied.map_or(0, |l| l.leader_id.term),
                "files": header.summary.files,
                "tenants": header.summary.tenants,
                "checkpoints": header.summary.checkpoints,
                "tokens": header.summary.tokens,
                "rule_sets": header.summary.rule_sets,
                "shards": header.summary.shards,
            }))
        }
        ClusterCommand::Restore { target, file } => {
            let endpoint = target.coordinator.clone();
            let bytes =
                std::fs::read(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
            // The coordinators check format, version and checksum: they
            // alone decide what enters the log.
            let channel = target.channel_with_timeout(BACKUP_CALL_TIMEOUT)?;
            let out = spoor_coordinator::backup::upload(channel, &bytes, false)
                .await
                .map_err(|s| call_error(&endpoint, &s))?;
            let mut summary =
                serde_json::to_value(&out).map_err(|e| format!("printing the outcome: {e}"))?;
            summary["file"] = Value::String(file.display().to_string());
            summary["bytes"] = Value::from(bytes.len());
            Ok(summary)
        }
        _ => Err("not a backup or restore command".into()),
    }
}

use crate::admin_cli::ClusterArgs;

pub(crate) fn cluster(command: ClusterCommand) -> ExitCode {
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let target = match &command {
                ClusterCommand::Members(a) => a,
                ClusterCommand::AddNode { target, .. }
                | ClusterCommand::RemoveNode { target, .. }
                | ClusterCommand::TransferLeader { target, .. } => target,
                ClusterCommand::Backup { .. } | ClusterCommand::Restore { .. } => {
                    return backup_or_restore(command).await;
                }
            };
            let endpoint = target.coordinator.clone();
            let mut client = pb::cluster_service_client::ClusterServiceClient::new(target.channel()?);
            let reply = match command {
                ClusterCommand::Members(_) => client.membership(pb::MembershipRequest {}).await,
                ClusterCommand::AddNode { id, url, .. } => client.add_node(pb::AddNodeRequest { node_id: id, url }).await,
                ClusterCommand::RemoveNode { id, .. } => client.remove_node(pb::RemoveNodeRequest { node_id: id }).await,
                ClusterCommand::TransferLeader { id, .. } => {
                    client
                        .transfer_leader(pb::TransferLeaderRequest { node_id: id })
                        .await
                }
                ClusterCommand::Backup { .. } | ClusterCommand::Restore { .. } => {
                    return backup_or_restore(command).await;
                }
            }
            .map_err(|s| {
                let unreachable = s.code() == tonic::Code::Unavailable;
                let e = spoor_common::catalog_client::status_to_error(s);
                if unreachable {
                    format!("cannot reach {endpoint}: {e}")
                } else {
                    e.to_string()
                }
            })?
            .into_inner();
            Ok(serde_json::json!({"voters": reply.voters, "learners": reply.learners, "leader_id": reply.leader_id}))
        })
    });
    match result {
        Ok(body) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("spoor cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Rows as aligned text columns with a header line.
fn render_table(columns: &[String], rows: &[Value]) -> String {
    let grid: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(&r[c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            grid.iter()
                .map(|r| r[i].chars().count())
                .chain([c.chars().count()])
                .max()
                .unwrap_or(0)
                .min(80)
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| {
                let c: String = c.chars().take(*w).collect();
                format!("{c:<w$}")
            })
            .collect();
        format!("{}\n", parts.join(" | ").trim_end())
    };
    let mut out = line(columns);
    out.push_str(&format!(
        "{}\n",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    ));
    for r in &grid {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_show_nulls() {
        let rows = vec![
            serde_json::json!({"a": 1, "b": null}),
            serde_json::json!({"a": 100, "b": "x"}),
        ];
        let out = render_table(&["a".into(), "b".into()], &rows);
        assert_eq!(out, "a   | b\n----+-----\n1   | NULL\n100 | x\n");
    }
}

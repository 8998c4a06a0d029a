//! `spoor sql` and `spoor status`: HTTP clients of a running node.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use spoor_common::control::{ControlClient, TenantRecord, TokenRole, generate_token};
use spoor_common::tenant::TenantId;
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
        let client = reqwest::Client::new();
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
            let mut req = reqwest::Client::new().get(url);
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
}

/// Which coordinator to ask.
#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    /// gRPC endpoint of any coordinator of the group.
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    coordinator: String,
}

pub(crate) fn cluster(command: ClusterCommand) -> ExitCode {
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let endpoint = match &command {
                ClusterCommand::Members(a) => &a.coordinator,
                ClusterCommand::AddNode { target, .. }
                | ClusterCommand::RemoveNode { target, .. }
                | ClusterCommand::TransferLeader { target, .. } => &target.coordinator,
            };
            let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
                .map_err(|e| format!("--coordinator {endpoint:?}: {e}"))?
                .connect()
                .await
                .map_err(|e| format!("cannot reach {endpoint}: {e}"))?;
            let mut client = pb::cluster_service_client::ClusterServiceClient::new(channel);
            let reply = match command {
                ClusterCommand::Members(_) => client.membership(pb::MembershipRequest {}).await,
                ClusterCommand::AddNode { id, url, .. } => client.add_node(pb::AddNodeRequest { node_id: id, url }).await,
                ClusterCommand::RemoveNode { id, .. } => client.remove_node(pb::RemoveNodeRequest { node_id: id }).await,
                ClusterCommand::TransferLeader { id, .. } => {
                    client
                        .transfer_leader(pb::TransferLeaderRequest { node_id: id })
                        .await
                }
            }
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
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
    fn token_lifetimes_are_days_or_hours() {
        assert_eq!(
            parse_lifetime("12h"),
            Ok(std::time::Duration::from_secs(12 * 3600))
        );
        assert_eq!(
            parse_lifetime("90d"),
            Ok(std::time::Duration::from_secs(90 * 86_400))
        );
        for bad in ["0h", "0d", "5m", "soon", "d", "-1d", "36501d"] {
            let e = parse_lifetime(bad).expect_err(bad);
            assert!(e.contains(bad), "{e}");
        }
    }

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

/// `spoor tenant ...`: the tenants registered with the coordinators.
#[derive(Debug, Subcommand)]
pub(crate) enum TenantCommand {
    /// Register a tenant, or update its name and retention.
    Add {
        #[command(flatten)]
        target: ClusterArgs,
        /// Tenant id: lowercase letters, digits, '-' and '_'.
        id: String,
        /// A name for people (default: the id).
        #[arg(long)]
        display_name: Option<String>,
        /// Days of events kept; 0 keeps them forever.
        #[arg(long, default_value_t = 0)]
        retention_days: u32,
    },
    /// The registered tenants.
    List(ClusterArgs),
}

pub(crate) fn tenant(command: TenantCommand) -> ExitCode {
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let endpoint = match &command {
                TenantCommand::Add { target, .. } | TenantCommand::List(target) => {
                    target.coordinator.clone()
                }
            };
            let control = ControlClient::connect_lazy(&endpoint, Duration::from_secs(10))
                .map_err(|e| format!("--coordinator {endpoint:?}: {e}"))?;
            match command {
                TenantCommand::Add {
                    id,
                    display_name,
                    retention_days,
                    ..
                } => {
                    let id = TenantId::new(id).map_err(|e| e.to_string())?;
                    let record = TenantRecord {
                        display_name: display_name.unwrap_or_else(|| id.to_string()),
                        id,
                        retention_days,
                    };
                    control
                        .put_tenant(&record)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(serde_json::to_value(&record).map_err(|e| e.to_string())?)
                }
                TenantCommand::List(_) => {
                    let status = control.cluster_status().await.map_err(|e| e.to_string())?;
                    Ok(serde_json::to_value(&status.tenants).map_err(|e| e.to_string())?)
                }
            }
        })
    });
    match result {
        Ok(body) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("spoor tenant: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `spoor token ...`: API tokens (only their hash is stored).
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token and print it once (it cannot be shown again).
    Create {
        #[command(flatten)]
        target: ClusterArgs,
        /// What it may do: ingest (send events), analyst, admin.
        #[arg(long)]
        role: String,
        /// Tenants it acts for (repeatable); none only for admin tokens.
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Who holds it and what for.
        #[arg(long, default_value = "")]
        description: String,
        /// How long it authenticates: a number and a unit, `h` or `d`
        /// (`90d`, `12h`); without it, until revoked.
        #[arg(long = "expires-in", value_parser = parse_lifetime)]
        expires_in: Option<std::time::Duration>,
    },
    /// Revoke a token by its id (the hex part after `spoor_`).
    Revoke {
        #[command(flatten)]
        target: ClusterArgs,
        /// The token id.
        id: String,
    },
}

pub(crate) fn token(command: TokenCommand) -> ExitCode {
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let endpoint = match &command {
                TokenCommand::Create { target, .. } | TokenCommand::Revoke { target, .. } => {
                    target.coordinator.clone()
                }
            };
            let control = ControlClient::connect_lazy(&endpoint, Duration::from_secs(10))
                .map_err(|e| format!("--coordinator {endpoint:?}: {e}"))?;
            match command {
                TokenCommand::Create {
                    role,
                    tenants,
                    description,
                    expires_in,
                    ..
                } => {
                    let role = TokenRole::parse(&role).ok_or_else(|| {
                        format!("--role {role:?}: expected ingest, analyst or admin")
                    })?;
                    let tenants = tenants
                        .into_iter()
                        .map(TenantId::new)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| format!("--tenant: {e}"))?;
                    let mut new =
                        generate_token(tenants, role, description).map_err(|e| e.to_string())?;
                    new.record.expires_at_micros = expires_in.map(|d| {
                        spoor_common::time::now_micros()
                            .saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
                    });
                    control
                        .create_token(&new.record)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(serde_json::json!({
                        "token": new.token,
                        "token_id": new.record.token_id,
                        "role": role.name(),
                        "tenants": new.record.tenants,
                        "expires_at": new.record.expires_at_micros.map(spoor_common::time::rfc3339),
                        "note": "store the token now: only its hash is kept",
                    }))
                }
                TokenCommand::Revoke { id, .. } => {
                    control.revoke_token(&id).await.map_err(|e| e.to_string())?;
                    Ok(serde_json::json!({"revoked": id}))
                }
            }
        })
    });
    match result {
        Ok(body) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("spoor token: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--expires-in`: `90d`, `12h` (days or hours, at least one hour).
fn parse_lifetime(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, hours_per) = if let Some(n) = text.strip_suffix('d') {
        (n, 24)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 1)
    } else {
        return Err(format!(
            "{text:?}: a number of days or hours, like 90d or 12h"
        ));
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: a number of days or hours, like 90d or 12h"))?;
    if n == 0 || n > 36_500 * 24 / hours_per {
        return Err(format!("{text:?}: between 1h and 100 years"));
    }
    Ok(std::time::Duration::from_secs(n * hours_per * 3600))
}

//! `spoor`: one binary, every role.
//!
//! `spoor standalone` runs coordinator, ingest and query in one process on
//! embedded defaults; `spoor coordinator|ingest|query` run one role each;
//! `spoor sql` and `spoor status` are clients of a running node; `spoor import`
//! loads files into a running cluster's lake.

mod admin;
mod admin_api;
mod admin_cli;
mod alerts_api;
mod api;
mod client;
mod r#gen;
mod health;
mod retro_api;
mod roles;
mod rules_api;
mod rules_cli;
mod tls_cli;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use spoor_common::config::Config;

/// Spoor: ingest and correlation cluster for security telemetry.
#[derive(Debug, Parser)]
#[command(name = "spoor", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Coordinator, ingest, correlation worker and query in one process
    /// (single-node Raft, local-disk lake by default).
    Standalone(RoleArgs),
    /// The coordinator role: Raft catalog served over gRPC.
    Coordinator(RoleArgs),
    /// The ingest role: Kafka and HTTP sources writing Parquet to the lake.
    /// `spoor ingest parse` shows what a file would become.
    Ingest(IngestArgs),
    /// The correlation worker role.
    Worker(RoleArgs),
    /// The query role: SQL over the lake via HTTP, Flight SQL and the
    /// PostgreSQL protocol.
    Query(RoleArgs),
    /// Run one SQL statement against a running node and print the result.
    Sql(client::SqlArgs),
    /// Show a running node's status: its role, the catalog and Raft, and the
    /// cluster's members and shards.
    Status(client::StatusArgs),
    /// The coordinator group: `members`, `add-node`, `remove-node`,
    /// `transfer-leader`, `backup` and `restore`.
    #[command(subcommand)]
    Cluster(client::ClusterCommand),
    /// Tenants: `create`, `update`, `disable`, `enable`, `show`, `list`.
    #[command(subcommand)]
    Tenant(admin_cli::TenantCommand),
    /// API tokens: `create` (printed once), `list`, `revoke`.
    #[command(subcommand)]
    Token(admin_cli::TokenCommand),
    /// Load files (JSON lines, Zeek, syslog, auditd, … or Windows .evtx) into
    /// the lake exactly once, through a running cluster's catalog.
    Import(tools::ImportArgs),
    /// Detection rules: `check`, `test`, `explain` and `coverage` offline;
    /// `apply` and `list` rule sets on the cluster.
    #[command(subcommand)]
    Rules(rules_cli::RulesCommand),
    /// TLS helpers: `dev-certs` writes a private CA and certificates for
    /// trying TLS on one machine.
    #[command(subcommand)]
    Tls(tls_cli::TlsCommand),
    /// Generate realistic security events (Windows, Zeek, syslog, CEF) for
    /// tenants at a rate, with attack scenarios the rules in deploy/rules
    /// detect, to a file, a node's HTTP ingest or Kafka; `--manifest`
    /// writes what was produced and which alerts it must raise.
    Gen(r#gen::GenArgs),
}

/// Options shared by every role.
#[derive(Debug, Args)]
struct RoleArgs {
    /// TOML config file (layered over the embedded defaults).
    #[arg(long, short = 'c', env = "SPOOR_CONFIG")]
    config: Option<PathBuf>,
    /// Override any key: `--set ingest.flush_interval_ms=500` (repeatable; beats env and file).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Shorthand for `--set data_dir=PATH`.
    #[arg(long)]
    data_dir: Option<String>,
    /// Shorthand for `--set node.http_addr=ADDR`.
    #[arg(long)]
    http_addr: Option<String>,
    /// Shorthand for `--set node.grpc_addr=ADDR`.
    #[arg(long)]
    grpc_addr: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

/// `spoor ingest`: the role, or one of its tools.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct IngestArgs {
    #[command(subcommand)]
    tool: Option<IngestTool>,
    #[command(flatten)]
    role: RoleArgs,
}

#[derive(Debug, Subcommand)]
enum IngestTool {
    /// Print what a file would become: one normalized event (or dead letter)
    /// per line as JSON, without writing anything.
    Parse(tools::ParseArgs),
}

impl RoleArgs {
    fn load(&self) -> Result<Config, spoor_common::config::ConfigError> {
        let mut sets = Vec::new();
        if let Some(v) = &self.data_dir {
            sets.push(format!("data_dir={v}"));
        }
        if let Some(v) = &self.http_addr {
            sets.push(format!("node.http_addr={v}"));
        }
        if let Some(v) = &self.grpc_addr {
            sets.push(format!("node.grpc_addr={v}"));
        }
        sets.extend(self.sets.iter().cloned());
        let env = std::env::vars().filter(|(k, _)| !NOT_CONFIG_KEYS.contains(&k.as_str()));
        Config::load(self.config.as_deref(), env, &sets)
    }
}

/// `SPOOR_*` variables that are not configuration keys: the config file's
/// path, the client commands' endpoint, token and TLS files, and the
/// test-only fault hook. Every
/// other `SPOOR_*` variable must name a key, so a typo stops start-up.
pub(crate) const NOT_CONFIG_KEYS: &[&str] = &[
    "SPOOR_CONFIG",
    "SPOOR_ENDPOINT",
    "SPOOR_TOKEN",
    "SPOOR_TEST_FAULT",
    "SPOOR_CA_FILE",
    "SPOOR_CLIENT_CERT",
    "SPOOR_CLIENT_KEY",
];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (role, args) = match cli.command {
        Command::Sql(args) => return client::sql(args),
        Command::Status(args) => return client::status(args),
        Command::Cluster(command) => return client::cluster(command),
        Command::Tenant(command) => return admin_cli::tenant(command),
        Command::Token(command) => return admin_cli::token(command),
        Command::Import(args) => return tools::import(args),
        Command::Rules(command) => return rules_cli::rules(command),
        Command::Tls(command) => return tls_cli::tls(command),
        Command::Gen(args) => return r#gen::run(args),
        Command::Standalone(a) => (roles::Role::Standalone, a),
        Command::Coordinator(a) => (roles::Role::Coordinator, a),
        Command::Ingest(IngestArgs {
            tool: Some(IngestTool::Parse(args)),
            ..
        }) => return tools::parse(args),
        Command::Ingest(IngestArgs { tool: None, role }) => (roles::Role::Ingest, role),
        Command::Worker(a) => (roles::Role::Worker, a),
        Command::Query(a) => (roles::Role::Query, a),
    };
    let config = match args.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spoor {}: {e}", role.name());
            return ExitCode::from(2);
        }
    };
    if args.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = spoor_common::telemetry::init_logging(&config.log) {
        eprintln!("spoor {}: {e}", role.name());
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("spoor {}: cannot start the async runtime: {e}", role.name());
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(roles::run(role, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "stopped");
            eprintln!("spoor {}: {e:#}", role.name());
            ExitCode::FAILURE
        }
    }
}

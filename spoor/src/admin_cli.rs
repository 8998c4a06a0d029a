//! `spoor tenant …` and `spoor token …`: tenants and API tokens, managed
//! over the coordinators' gRPC with the caller's credential (an admin or
//! tenant-admin token, or the cluster secret for the very first token).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;
use spoor_common::auth::Credential;
use spoor_common::control::ControlClient;

use crate::admin::{self, TenantChanges};

/// How long one call to a coordinator may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Which coordinator to ask, and as whom.
#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    /// gRPC endpoint of any coordinator of the group.
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    pub(crate) coordinator: String,
    /// The caller's token: the cluster's admin token for tenants and
    /// membership, a tenant-admin token for its tenant's tokens.
    #[arg(long, env = "SPOOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the cluster secret (`cluster.secret_file` of the
    /// nodes): how the first admin token is created. Ignored with --token.
    #[arg(long)]
    cluster_secret_file: Option<std::path::PathBuf>,
    /// TLS to `https://` coordinators.
    #[command(flatten)]
    tls: crate::tls_cli::TlsArgs,
}

impl ClusterArgs {
    /// The credential to present: the token, else the cluster secret, else none.
    pub(crate) fn credential(&self) -> Result<Credential, String> {
        if let Some(token) = &self.token {
            return Credential::bearer(token.trim())
                .ok_or_else(|| "--token: not a token (printable ASCII expected)".to_string());
        }
        let Some(path) = &self.cluster_secret_file else {
            return Ok(Credential::none());
        };
        let config = spoor_common::config::ClusterConfig {
            secret_file: path.display().to_string(),
            ..Default::default()
        };
        config
            .credential()
            .map_err(|e| format!("--cluster-secret-file: {e}"))
    }

    /// A control client of `--coordinator` with the credential.
    fn control(&self) -> Result<ControlClient, String> {
        Ok(ControlClient::connect_lazy_with_tls(
            &self.coordinator,
            CALL_TIMEOUT,
            self.tls.grpc()?.as_ref(),
        )
        .map_err(|e| format!("--coordinator {:?}: {e}", self.coordinator))?
        .with_credential(self.credential()?))
    }

    /// A channel to `--coordinator` presenting the credential.
    pub(crate) fn channel(&self) -> Result<spoor_common::auth::AuthChannel, String> {
        self.channel_with_timeout(CALL_TIMEOUT)
    }

    /// [`Self::channel`] whose calls may take `timeout` (backup, restore).
    pub(crate) fn channel_with_timeout(
        &self,
        timeout: Duration,
    ) -> Result<spoor_common::auth::AuthChannel, String> {
        let channel =
            spoor_common::tls::lazy_channel(&self.coordinator, timeout, self.tls.grpc()?.as_ref())
                .map_err(|e| format!("--coordinator: {e}"))?;
        Ok(spoor_common::auth::AuthChannel::new(
            channel,
            self.credential()?,
        ))
    }
}

/// What `create` and `update` may set on a tenant.
#[derive(Debug, Default, Args)]
pub(crate) struct TenantSettings {
    /// A name for people (default at creation: the id).
    #[arg(long)]
    display_name: Option<String>,
    /// Days of events and dead letters kept (unless set per table; alerts
    /// are kept unless set per table);
    /// 0 keeps them forever.
    #[arg(long)]
    retention_days: Option<u32>,
    /// Days one table is kept, `TABLE=DAYS` (`alerts=730`,
    /// `dead_letter=30`); repeatable; `TABLE=` removes the table's own
    /// setting.
    #[arg(long = "table-retention", value_name = "TABLE=DAYS")]
    table_retention: Vec<String>,
    /// While true, retention deletes nothing of the tenant.
    #[arg(long)]
    legal_hold: Option<bool>,
    /// Where its data must stay, a label ("eu-west").
    #[arg(long)]
    region: Option<String>,
    /// Events per second it may send to one ingest node (0: no limit).
    #[arg(long)]
    ingest_events_per_second: Option<u64>,
    /// Raw bytes per second it may send to one ingest node (0: no limit).
    #[arg(long)]
    ingest_bytes_per_second: Option<u64>,
    /// Queries it may run at once on one query node (0: the node's
    /// query.max_concurrent_per_tenant).
    #[arg(long)]
    max_concurrent_queries: Option<u32>,
    /// Bytes of Parquet one of its queries may read (0: no limit).
    #[arg(long)]
    max_query_scanned_bytes: Option<u64>,
}

impl TenantSettings {
    /// The changes these flags make.
    fn changes(self) -> Result<TenantChanges, String> {
        let mut table_retention_days = BTreeMap::new();
        for entry in self.table_retention {
            let (table, days) = entry
                .split_once('=')
                .ok_or_else(|| format!("--table-retention {entry:?}: expected TABLE=DAYS"))?;
            let days = match days.trim() {
                "" => None,
                d => Some(d.parse().map_err(|_| {
                    format!("--table-retention {entry:?}: {days:?} is not a number of days")
                })?),
            };
            table_retention_days.insert(table.trim().to_string(), days);
        }
        Ok(TenantChanges {
            display_name: self.display_name,
            retention_days: self.retention_days,
            table_retention_days,
            legal_hold: self.legal_hold,
            region: self.region,
            disabled: None,
            ingest_events_per_second: self.ingest_events_per_second,
            ingest_bytes_per_second: self.ingest_bytes_per_second,
            max_concurrent_queries: self.max_concurrent_queries,
            max_query_scanned_bytes: self.max_query_scanned_bytes,
        })
    }
}

/// `spoor tenant …`: the tenants registered with the coordinators.
#[derive(Debug, Subcommand)]
pub(crate) enum TenantCommand {
    /// Register a tenant (refused when the id is taken: use `update`).
    #[command(alias = "add")]
    Create {
        #[command(flatten)]
        target: ClusterArgs,
        /// Tenant id: lowercase letters, digits, '-' and '_'.
        id: String,
        #[command(flatten)]
        settings: TenantSettings,
    },
    /// Change a tenant's settings (only those given).
    Update {
        #[command(flatten)]
        target: ClusterArgs,
        /// The tenant.
        id: String,
        #[command(flatten)]
        settings: TenantSettings,
    },
    /// Stop a tenant: its tokens authenticate nothing and its events are
    /// refused (or dead-lettered); its data stays and admins can read it.
    Disable {
        #[command(flatten)]
        target: ClusterArgs,
        /// The tenant.
        id: String,
    },
    /// Undo `disable`.
    Enable {
        #[command(flatten)]
        target: ClusterArgs,
        /// The tenant.
        id: String,
    },
    /// One tenant's settings.
    Show {
        #[command(flatten)]
        target: ClusterArgs,
        /// The tenant.
        id: String,
    },
    /// The registered tenants.
    List(ClusterArgs),
}

async fn run_tenant(command: TenantCommand) -> Result<Value, String> {
    let disabled = |b: bool| TenantChanges {
        disabled: Some(b),
        ..TenantChanges::default()
    };
    let result = match command {
        TenantCommand::Create {
            target,
            id,
            settings,
        } => admin::create_tenant(&target.control()?, &id, settings.changes()?).await,
        TenantCommand::Update {
            target,
            id,
            settings,
        } => admin::update_tenant(&target.control()?, &id, settings.changes()?).await,
        TenantCommand::Disable { target, id } => {
            admin::update_tenant(&target.control()?, &id, disabled(true)).await
        }
        TenantCommand::Enable { target, id } => {
            admin::update_tenant(&target.control()?, &id, disabled(false)).await
        }
        TenantCommand::Show { target, id } => admin::show_tenant(&target.control()?, &id).await,
        TenantCommand::List(target) => admin::list_tenants(&target.control()?).await,
    };
    result.map_err(|e| match e {
        admin::AdminError::NotFound(m) => format!("{m} (see `spoor tenant list`)"),
        admin::AdminError::Conflict(m) => m.replace("with an update", "with `spoor tenant update`"),
        e => e.to_string(),
    })
}

/// Runs `spoor tenant …`: prints the tenant(s) as JSON.
pub(crate) fn tenant(command: TenantCommand) -> ExitCode {
    finish("spoor tenant", crate::client::block_on(run_tenant(command)))
}

/// `spoor token …`: API tokens (only their hash is stored).
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token and print it once (it cannot be shown again).
    Create {
        #[command(flatten)]
        target: ClusterArgs,
        /// What it may do: admin, mssp-operator, tenant-admin, analyst,
        /// viewer or ingest (docs/security.md).
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
        expires_in: Option<Duration>,
    },
    /// The tokens the caller may see (never their secrets).
    List {
        #[command(flatten)]
        target: ClusterArgs,
        /// Only the tokens of this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a token by its id (the hex part after `spoor_`); every node
    /// refuses it within seconds.
    Revoke {
        #[command(flatten)]
        target: ClusterArgs,
        /// The token id.
        id: String,
    },
}

async fn run_token(command: TokenCommand) -> Result<Value, String> {
    let result = match command {
        TokenCommand::Create {
            target,
            role,
            tenants,
            description,
            expires_in,
        } => {
            let new = admin::NewToken {
                role,
                tenants,
                description,
                expires_in_seconds: expires_in.map(|d| d.as_secs()),
            };
            admin::create_token(&target.control()?, new).await
        }
        TokenCommand::List { target, tenant } => {
            admin::list_tokens(&target.control()?, tenant.as_deref()).await
        }
        TokenCommand::Revoke { target, id } => admin::revoke_token(&target.control()?, &id).await,
    };
    result.map_err(|e| match e {
        // The flag's name, as the user typed it.
        admin::AdminError::Invalid(m) if m.starts_with("role ") => format!("--{m}"),
        admin::AdminError::Invalid(m) if m.starts_with("tenants: ") => {
            format!("--tenant: {}", &m["tenants: ".len()..])
        }
        e => e.to_string(),
    })
}

/// Runs `spoor token …`: prints the outcome as JSON.
pub(crate) fn token(command: TokenCommand) -> ExitCode {
    finish("spoor token", crate::client::block_on(run_token(command)))
}

/// Prints `result` (JSON on stdout, or the error after `what` on stderr).
fn finish(what: &str, result: Result<Value, String>) -> ExitCode {
    match result {
        Ok(body) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{what}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--expires-in`: `90d`, `12h` (days or hours, at least one hour).
fn parse_lifetime(text: &str) -> Result<Duration, String> {
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
    Ok(Duration::from_secs(n * hours_per * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoor_common::control::TenantRecord;
    use spoor_common::schema::Table;
    use spoor_common::tenant::TenantId;

    #[test]
    fn token_lifetimes_are_days_or_hours() {
        assert_eq!(parse_lifetime("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(
            parse_lifetime("90d"),
            Ok(Duration::from_secs(90 * 24 * 3600))
        );
        for bad in ["0h", "0d", "5m", "soon", "d", "-1d", "36501d"] {
            let e = parse_lifetime(bad).expect_err(bad);
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn tenant_settings_change_only_what_is_given() {
        let mut t = TenantRecord::new(TenantId::new("acme").expect("id"));
        t.region = "eu-west".into();
        TenantSettings {
            retention_days: Some(30),
            table_retention: vec!["alerts=730".into(), "dead_letter=7".into()],
            legal_hold: Some(true),
            ingest_events_per_second: Some(5000),
            max_concurrent_queries: Some(4),
            ..TenantSettings::default()
        }
        .changes()
        .expect("changes")
        .apply(&mut t);
        assert_eq!(t.region, "eu-west");
        assert_eq!(t.retention_days, 30);
        assert_eq!(t.table_retention_days.get("alerts"), Some(&730));
        assert!(t.legal_hold);
        assert_eq!(
            t.retention_days_of(Table::Events),
            0,
            "held: nothing expires"
        );
        assert_eq!(t.quotas.ingest_events_per_second, 5000);
        assert_eq!(t.quotas.max_concurrent_queries, 4);
        let unset = TenantSettings {
            table_retention: vec!["alerts=".into()],
            ..TenantSettings::default()
        };
        unset.changes().expect("changes").apply(&mut t);
        t.legal_hold = false;
        assert_eq!(t.retention_days_of(Table::Events), 30);
        // Without its own setting, alerts are kept (not `retention_days`).
        assert_eq!(t.retention_days_of(Table::Alerts), 0);
        assert!(!t.table_retention_days.contains_key("alerts"));
        let bad = TenantSettings {
            table_retention: vec!["alerts".into()],
            ..TenantSettings::default()
        };
        assert!(bad.changes().expect_err("no =").contains("TABLE=DAYS"));
    }
}

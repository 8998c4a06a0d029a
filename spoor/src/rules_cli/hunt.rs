//! `spoor rules hunt`: a retro-hunt through any node's HTTP API
//! (`/v1/retro-hunts`, see `retro_api.rs`): rule files (checked here
//! first, as `apply` checks them) or a stored rule set, run over a past
//! time range of a tenant's lake.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value as Json, json};
use spoor_common::tenant::TenantId;

use super::CompileArgs;
use super::apply::checked_bundle;
use super::http::runtime;

/// How often `--wait` asks for progress.
const POLL: Duration = Duration::from_secs(1);

/// Options of `spoor rules hunt`.
#[derive(Debug, clap::Args)]
pub(crate) struct HuntArgs {
    /// Rule files or folders to run (checked here first); or give
    /// `--rule-set`.
    #[arg(required_unless_present = "rule_set", conflicts_with = "rule_set")]
    paths: Vec<PathBuf>,
    /// A rule set stored on the cluster, run at its current version.
    #[arg(long)]
    rule_set: Option<String>,
    /// The tenant whose lake is searched.
    #[arg(long)]
    tenant: String,
    /// Start of the range (RFC 3339, inclusive): 2026-11-30T08:00:00Z.
    #[arg(long)]
    from: String,
    /// End of the range (RFC 3339, exclusive).
    #[arg(long)]
    to: String,
    /// Run an earlier job again under its id: only the alerts its earlier
    /// runs did not commit are committed.
    #[arg(long)]
    job_id: Option<String>,
    /// Print progress until the job ends; the exit code is 1 unless it
    /// ends done.
    #[arg(long)]
    wait: bool,
    #[command(flatten)]
    compile: CompileArgs,
    /// The node the job runs on, and who asks.
    #[command(flatten)]
    remote: super::apply::Remote,
}

/// One line of progress.
fn progress(job: &Json) -> String {
    let n = |k: &str| job[k].as_u64().unwrap_or_default();
    let mut line = format!(
        "{}: {}/{} files, {} events, {} alerts",
        job["state"].as_str().unwrap_or("?"),
        n("files_done"),
        n("files_total"),
        n("events_evaluated"),
        n("alerts_found"),
    );
    if n("alerts_already_committed") > 0 {
        line.push_str(&format!(
            " ({} committed by an earlier run)",
            n("alerts_already_committed")
        ));
    }
    if let Some(e) = job["error"].as_str() {
        line.push_str(&format!(": {e}"));
    }
    line
}

pub(super) fn hunt(args: &HuntArgs) -> Result<ExitCode, String> {
    let tenant =
        TenantId::new(args.tenant.clone()).map_err(|e| format!("--tenant {}: {e}", args.tenant))?;
    let api = args.remote.api()?;
    let mut body = json!({
        "tenant": tenant,
        "from": args.from,
        "to": args.to,
    });
    if let Some(id) = &args.job_id {
        body["job_id"] = json!(id);
    }
    match &args.rule_set {
        Some(name) => body["rule_set"] = json!(name),
        None => {
            let Some(bundle) = checked_bundle(&args.compile, &args.paths, "no retro-hunt started")?
            else {
                return Ok(ExitCode::FAILURE);
            };
            body["bundle"] =
                serde_json::to_value(&bundle).map_err(|e| format!("encoding the rules: {e}"))?;
        }
    }
    runtime()?.block_on(async {
        let job = api
            .call(Method::POST, api.url(&["v1", "retro-hunts"]), Some(&body))
            .await
            .map_err(|e| format!("starting the retro-hunt: {e}"))?;
        let id = job["job_id"]
            .as_str()
            .ok_or_else(|| format!("the node answered without a job_id: {job}"))?
            .to_string();
        println!(
            "retro-hunt {id} on node {}: tenant {tenant}, rule set {} (version {}), from {} to {}",
            job["node"],
            job["rule_set"].as_str().unwrap_or("?"),
            job["rule_set_version"],
            job["from"].as_str().unwrap_or("?"),
            job["to"].as_str().unwrap_or("?"),
        );
        if !args.wait {
            return Ok(ExitCode::SUCCESS);
        }
        let url = api.url(&["v1", "retro-hunts", &id]);
        let mut last = String::new();
        loop {
            let job = api
                .call(Method::GET, url.clone(), None)
                .await
                .map_err(|e| format!("reading the progress of {id}: {e}"))?;
            let line = progress(&job);
            if line != last {
                println!("{line}");
                last = line;
            }
            match job["state"].as_str() {
                Some("done") => return Ok(ExitCode::SUCCESS),
                Some("failed" | "cancelled") => return Ok(ExitCode::FAILURE),
                _ => tokio::time::sleep(POLL).await,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_say_state_counts_and_error() {
        let job = json!({"state": "running", "files_done": 3, "files_total": 10,
            "events_evaluated": 1200, "alerts_found": 4, "alerts_already_committed": 0});
        assert_eq!(progress(&job), "running: 3/10 files, 1200 events, 4 alerts");
        let job = json!({"state": "failed", "files_done": 1, "files_total": 2,
            "events_evaluated": 5, "alerts_found": 2, "alerts_already_committed": 2,
            "error": "file x is gone"});
        assert_eq!(
            progress(&job),
            "failed: 1/2 files, 5 events, 2 alerts (2 committed by an earlier run): file x is gone"
        );
    }
}

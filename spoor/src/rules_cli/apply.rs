//! `spoor rules apply` and `spoor rules list`: rule sets on the cluster,
//! through any node's HTTP API (`/v1/rules/sets`, see `rules_api.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use reqwest::{Method, StatusCode};
use serde_json::{Value as Json, json};
use spoor_common::control::MAX_RULE_SET_BYTES;
use spoor_common::tenant::TenantId;
use spoor_correlate::bundle::{FileNames, RuleBundle};

use super::CompileArgs;
use super::http::{Api, CallError, DEFAULT_ENDPOINT, runtime};

/// Where the cluster is and who is asking.
#[derive(Debug, clap::Args)]
pub(crate) struct Remote {
    /// HTTP endpoint of any node.
    #[arg(long, env = "SPOOR_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    endpoint: String,
    /// An admin token, or an analyst token of the tenant (needed when the
    /// node has `query.auth = "token"`).
    #[arg(long, env = "SPOOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    tls: crate::tls_cli::TlsArgs,
}

/// Options of `spoor rules apply`.
#[derive(Debug, clap::Args)]
pub(crate) struct ApplyArgs {
    /// Rule files or folders (`.yml`, `.yaml`, searched recursively); they
    /// are stored relative to the folder given.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// A tenant to apply the rule set to (repeatable).
    #[arg(long = "tenant", required = true)]
    tenants: Vec<String>,
    /// The rule set's name (its rule group); by default the name of the
    /// last path's folder.
    #[arg(long)]
    name: Option<String>,
    /// Key buckets the rule set's correlation is spread over (shards);
    /// 1 when new. Buckets can be added later, never removed.
    #[arg(long)]
    buckets: Option<u32>,
    /// Store the rule set disabled: kept and versioned, not run. Applying
    /// without it enables it again.
    #[arg(long)]
    disable: bool,
    #[command(flatten)]
    compile: CompileArgs,
    #[command(flatten)]
    remote: Remote,
}

/// Options of `spoor rules list`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// The tenant (optional when the token reaches only one).
    #[arg(long)]
    tenant: Option<String>,
    /// The answer as JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    remote: Remote,
}

impl Remote {
    /// A client of the node at `--endpoint`.
    pub(super) fn api(&self) -> Result<Api, String> {
        Api::new(&self.endpoint, self.token.clone(), self.tls.http_client()?)
    }
}

/// The rule set's name: `--name`, else the name of the last path's folder
/// (the path itself when it is a folder, else the folder holding it).
fn set_name(args: &ApplyArgs) -> Result<String, String> {
    if let Some(name) = &args.name {
        return check_name(name).map(|()| name.clone());
    }
    let last = args
        .paths
        .last()
        .ok_or_else(|| "no rule paths given".to_string())?;
    let folder = if last.is_dir() {
        last.clone()
    } else {
        last.parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default()
    };
    let folder = if folder.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        folder
    };
    let name = match folder.file_name() {
        Some(n) => n.to_string_lossy().into_owned(),
        None => std::fs::canonicalize(&folder)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .ok_or_else(|| {
                format!(
                    "{} has no folder name to name the rule set by; give --name",
                    folder.display()
                )
            })?,
    };
    check_name(&name)
        .map_err(|e| format!("{e} (named after {}; give --name)", folder.display()))?;
    Ok(name)
}

/// A rule set name as the coordinator accepts it.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 200 || name.contains('/') {
        return Err(format!(
            "rule set name {name:?} must be 1..=200 bytes without '/'"
        ));
    }
    Ok(())
}

/// The rules of `paths`, checked here first, exactly as the node will
/// check them, naming the files as they are stored; their findings
/// reported. `None` when a rule is refused, after printing
/// "`nothing_done`: fix or remove the refused rules".
pub(super) fn checked_bundle(
    compile: &CompileArgs,
    paths: &[PathBuf],
    nothing_done: &str,
) -> Result<Option<RuleBundle>, String> {
    let bundle = compile.bundle(paths, FileNames::Relative)?;
    let compiled = bundle.check()?;
    if compiled.refusals() > 0 || compiled.warnings() > 0 {
        super::report(&compiled);
    }
    if compiled.refusals() > 0 {
        eprintln!("{nothing_done}: fix or remove the refused rules");
        return Ok(None);
    }
    Ok(Some(bundle))
}

pub(super) fn apply(args: &ApplyArgs) -> Result<ExitCode, String> {
    let tenants: Vec<TenantId> = args
        .tenants
        .iter()
        .map(|t| TenantId::new(t.clone()).map_err(|e| format!("--tenant {t}: {e}")))
        .collect::<Result<_, _>>()?;
    let name = set_name(args)?;
    if args.buckets == Some(0) {
        return Err("--buckets must be at least 1".into());
    }
    let api = args.remote.api()?;
    let Some(bundle) = checked_bundle(&args.compile, &args.paths, "nothing uploaded")? else {
        return Ok(ExitCode::FAILURE);
    };
    let content_bytes = bundle.to_content().len();
    if content_bytes > MAX_RULE_SET_BYTES {
        return Err(format!(
            "the rule set is {content_bytes} bytes, more than the {MAX_RULE_SET_BYTES} a rule set may hold; split it into several (--name)"
        ));
    }
    let enabled = !args.disable;
    let bundle = serde_json::to_value(&bundle).map_err(|e| format!("encoding the rules: {e}"))?;
    let rt = runtime()?;
    let mut failed = false;
    for tenant in &tenants {
        match rt.block_on(apply_to(
            &api,
            tenant,
            &name,
            &bundle,
            enabled,
            args.buckets,
        )) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                failed = true;
                eprintln!("tenant {tenant}: {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads the stored version of `tenant`'s rule set and stores `bundle` as
/// the next one; returns the line to print.
async fn apply_to(
    api: &Api,
    tenant: &TenantId,
    name: &str,
    bundle: &Json,
    enabled: bool,
    buckets: Option<u32>,
) -> Result<String, String> {
    let url = api.url(&["v1", "rules", "sets", tenant.as_str(), name]);
    let expected_version = match api.call(Method::GET, url.clone(), None).await {
        Ok(stored) => stored["version"]
            .as_u64()
            .ok_or_else(|| format!("the stored rule set {name} has no version: {stored}"))?,
        Err(CallError::Refused(r)) if r.status == StatusCode::NOT_FOUND => 0,
        Err(e) => return Err(format!("reading rule set {name}: {e}")),
    };
    let mut body = json!({
        "bundle": bundle,
        "expected_version": expected_version,
        "enabled": enabled,
    });
    if let Some(b) = buckets {
        body["buckets"] = json!(b);
    }
    let answer = match api.call(Method::PUT, url, Some(&body)).await {
        Ok(a) => a,
        Err(CallError::Refused(r)) if r.status == StatusCode::CONFLICT => {
            return Err(format!(
                "rule set {name} was changed by someone else after this command read version {expected_version}; nothing stored, run it again to apply over the new version ({})",
                r.message
            ));
        }
        Err(e) => return Err(format!("storing rule set {name}: {e}")),
    };
    let set = &answer["rule_set"];
    let version = set["version"].as_u64().unwrap_or_default();
    let state = if set["enabled"].as_bool() == Some(false) {
        "disabled"
    } else {
        "enabled"
    };
    let rules = answer["rules"].as_u64().unwrap_or_default();
    let unchanged = if answer["changed"].as_bool() == Some(false) {
        " unchanged"
    } else {
        ""
    };
    Ok(format!(
        "tenant {tenant}: rule set {name} version {version} ({rules} rules, {state}){unchanged}"
    ))
}

pub(super) fn list(args: &ListArgs) -> Result<ExitCode, String> {
    let api = args.remote.api()?;
    let mut url = api.url(&["v1", "rules", "sets"]);
    if let Some(t) = &args.tenant {
        let tenant = TenantId::new(t.clone()).map_err(|e| format!("--tenant {t}: {e}"))?;
        url.query_pairs_mut().append_pair("tenant", tenant.as_str());
    }
    let answer = runtime()?
        .block_on(api.call(Method::GET, url, None))
        .map_err(|e| e.to_string())?;
    if args.json {
        println!("{answer}");
        return Ok(ExitCode::SUCCESS);
    }
    let sets = answer["rule_sets"].as_array().cloned().unwrap_or_default();
    let rows: Vec<[String; 5]> = sets
        .iter()
        .map(|s| {
            [
                s["name"].as_str().unwrap_or_default().to_string(),
                s["version"].to_string(),
                if s["enabled"].as_bool() == Some(false) {
                    "no".into()
                } else {
                    "yes".into()
                },
                s["files"].as_u64().map_or("?".into(), |n| n.to_string()),
                s["updated_at"].as_str().unwrap_or_default().to_string(),
            ]
        })
        .collect();
    let header = ["name", "version", "enabled", "files", "updated_at"];
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or_default()
        })
        .collect();
    let line = |cells: [&str; 5]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(header) + "\n";
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
        out.push('\n');
    }
    super::print_all(&out);
    eprintln!(
        "{} rule set(s) of tenant {}",
        rows.len(),
        answer["tenant"].as_str().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(paths: &[&str], name: Option<&str>) -> ApplyArgs {
        ApplyArgs {
            paths: paths.iter().map(PathBuf::from).collect(),
            tenants: vec!["acme".into()],
            name: name.map(str::to_string),
            buckets: None,
            disable: false,
            compile: CompileArgs {
                placeholders: None,
                mappings: Vec::new(),
            },
            remote: Remote {
                endpoint: DEFAULT_ENDPOINT.into(),
                token: None,
                tls: Default::default(),
            },
        }
    }

    #[test]
    fn the_rule_set_is_named_after_the_last_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let windows = dir.path().join("windows");
        std::fs::create_dir_all(&windows).expect("folder");
        let file = windows.join("x.yml");
        std::fs::write(&file, "title: x").expect("file");
        let (w, f) = (windows.display().to_string(), file.display().to_string());
        assert_eq!(set_name(&args(&[&w], None)).expect("dir"), "windows");
        assert_eq!(set_name(&args(&[&f], None)).expect("file"), "windows");
        assert_eq!(set_name(&args(&[&w], Some("mine"))).expect("named"), "mine");
        let err = set_name(&args(&[&w], Some("a/b"))).expect_err("slash");
        assert!(err.contains("without '/'"), "{err}");
    }
}

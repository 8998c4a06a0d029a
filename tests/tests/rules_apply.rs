//! `spoor rules apply` and `spoor rules list` against a standalone node:
//! rule sets are checked before anything is uploaded, versioned on the
//! coordinators, left alone when nothing changed, never overwritten by a
//! stale writer, enabled and disabled per tenant, and only by callers that
//! may manage the tenant's rules.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde_json::{Value, json};
use spoor_tests::{Spoor, SpoorOptions, spoor_binary};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")
}

/// Two Windows process creation rules of the SigmaHQ corpus, copied into
/// `dir/windows`, which the rule set is then named after.
fn two_rules(dir: &Path) -> anyhow::Result<PathBuf> {
    let from = corpus().join("sigma/rules/windows/process_creation");
    let to = dir.join("windows");
    std::fs::create_dir_all(&to)?;
    for name in [
        "proc_creation_win_whoami_all_execution.yml",
        "proc_creation_win_whoami_groups_discovery.yml",
    ] {
        std::fs::copy(from.join(name), to.join(name))
            .with_context(|| format!("copying {name} from the corpus"))?;
    }
    Ok(to)
}

/// Runs `spoor args…` with `env`: exit code, stdout, stderr.
fn spoor(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<(i32, String, String)> {
    let mut cmd = Command::new(spoor_binary()?);
    cmd.args(args).env_remove("SPOOR_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `GET path` on the node: status and JSON body.
async fn get(node: &Spoor, path: &str) -> anyhow::Result<(u16, Value)> {
    let resp = reqwest::get(format!("{}{path}", node.http)).await?;
    Ok((resp.status().as_u16(), resp.json().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_versions_rule_sets_and_refuses_bad_rules_and_stale_writers() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rules = two_rules(dir.path())?;
    let rules_arg = rules.display().to_string();
    let node = Spoor::standalone(&dir.path().join("data"), &SpoorOptions::default())?;
    let endpoint = node.http.clone();
    let env = [("SPOOR_ENDPOINT", endpoint.as_str())];
    let apply = |extra: &[&str]| {
        let mut args = vec!["rules", "apply", rules_arg.as_str(), "--tenant", "default"];
        args.extend_from_slice(extra);
        spoor(&args, &env)
    };

    // A new rule set: version 1, named after its folder, with its shards.
    let (code, out, err) = apply(&["--buckets", "2"])?;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.trim(),
        "tenant default: rule set windows version 1 (2 rules, enabled)"
    );
    let (_, status) = get(&node, "/v1/status").await?;
    let shards: Vec<&Value> = status["cluster"]["shards"]
        .as_array()
        .context("shards in /v1/status")?
        .iter()
        .filter(|s| s["id"]["tenant"] == "default" && s["id"]["rule_group"] == "windows")
        .collect();
    assert_eq!(shards.len(), 2, "{status}");

    // Listed, with its files stored relative to the folder.
    let (code, out, err) = spoor(&["rules", "list", "--tenant", "default"], &env)?;
    assert_eq!(code, 0, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("windows "))
        .with_context(|| format!("no windows row in {out}"))?;
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..4], ["windows", "1", "yes", "2"], "{out}");
    let (status, set) = get(&node, "/v1/rules/sets/default/windows").await?;
    assert_eq!(status, 200, "{set}");
    let paths: Vec<&str> = set["bundle"]["rules"]
        .as_array()
        .context("the bundle's rules")?
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "proc_creation_win_whoami_all_execution.yml",
            "proc_creation_win_whoami_groups_discovery.yml"
        ]
    );
    let (_, listed) = get(&node, "/v1/rules/sets?tenant=default").await?;
    assert!(
        listed["rule_sets"][0].get("bundle").is_none(),
        "no content unless asked: {listed}"
    );

    // The same rules again: no new version.
    let (code, out, err) = apply(&[])?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "tenant default: rule set windows version 1 (2 rules, enabled) unchanged"
    );

    // One rule changed: version 2.
    let changed = rules.join("proc_creation_win_whoami_groups_discovery.yml");
    let text = std::fs::read_to_string(&changed)?.replace("level: medium", "level: high");
    std::fs::write(&changed, text)?;
    let (code, out, err) = apply(&[])?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "tenant default: rule set windows version 2 (2 rules, enabled)"
    );

    // Disabling alone is a new version; the rules stay stored.
    let (code, out, err) = apply(&["--disable"])?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "tenant default: rule set windows version 3 (2 rules, disabled)"
    );
    let (code, out, _) = apply(&["--disable"])?;
    assert_eq!(code, 0);
    assert!(
        out.trim()
            .ends_with("version 3 (2 rules, disabled) unchanged"),
        "{out}"
    );

    // A refused rule: printed with file and line, exit 1, nothing stored.
    std::fs::write(
        rules.join("bad.yml"),
        "title: bad\nlogsource: {product: windows, category: process_creation}\ndetection:\n  sel:\n    Image|startwith: x\n  condition: sel\n",
    )?;
    let (code, out, err) = apply(&[])?;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("bad.yml:5:5: unknown value modifier `startwith`")
            && err.contains("nothing uploaded"),
        "{err}"
    );
    let (_, set) = get(&node, "/v1/rules/sets/default/windows").await?;
    assert_eq!(
        (&set["version"], &set["enabled"]),
        (&json!(3), &json!(false))
    );
    std::fs::remove_file(rules.join("bad.yml"))?;

    // A writer that read an older version is refused, naming the versions.
    let resp = reqwest::Client::new()
        .put(format!("{endpoint}/v1/rules/sets/default/windows"))
        .json(&json!({"bundle": set["bundle"], "expected_version": 1, "enabled": true}))
        .send()
        .await?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at version 3, not 1")),
        "{body}"
    );
    let (_, set) = get(&node, "/v1/rules/sets/default/windows").await?;
    assert_eq!(set["version"], 3);

    // Without tokens, only the default tenant is reachable.
    let (code, _, err) = spoor(&["rules", "apply", &rules_arg, "--tenant", "acme"], &env)?;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("tenant acme:") && err.contains("query.auth"),
        "{err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_analysts_manage_their_tenant_and_operators_every_tenant() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let rules = two_rules(dir.path())?;
    let rules_arg = rules.display().to_string();
    let node = Spoor::role(
        "standalone",
        &dir.path().join("data"),
        &["query.auth=token".to_string()],
        &SpoorOptions::default(),
    )?;
    let grpc = node.grpc.clone().context("standalone serves gRPC")?;
    for tenant in ["acme", "globex"] {
        let (code, _, err) = spoor(
            &["tenant", "add", tenant, "--coordinator", grpc.as_str()],
            &[],
        )?;
        assert_eq!(code, 0, "{err}");
    }
    let token = |role: &str, tenant: Option<&str>| -> anyhow::Result<String> {
        let mut args = vec![
            "token",
            "create",
            "--role",
            role,
            "--coordinator",
            grpc.as_str(),
        ];
        args.extend(tenant.iter().flat_map(|t| ["--tenant", *t]));
        let (code, out, err) = spoor(&args, &[])?;
        anyhow::ensure!(code == 0, "token create: {err}");
        serde_json::from_str::<Value>(&out)?["token"]
            .as_str()
            .map(str::to_string)
            .context("token printed")
    };
    let acme = token("analyst", Some("acme"))?;
    let operator = token("admin", None)?;
    let endpoint = node.http.clone();
    let apply = |token: Option<&str>, tenants: &[&str]| {
        let mut args = vec![
            "rules",
            "apply",
            rules_arg.as_str(),
            "--endpoint",
            endpoint.as_str(),
        ];
        args.extend(tenants.iter().flat_map(|t| ["--tenant", *t]));
        let env: Vec<(&str, &str)> = token.map(|t| ("SPOOR_TOKEN", t)).into_iter().collect();
        spoor(&args, &env)
    };

    let (code, _, err) = apply(None, &["acme"])?;
    assert_eq!(code, 2);
    assert!(err.contains("a token is required"), "{err}");
    let (code, out, err) = apply(Some(&acme), &["acme"])?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "tenant acme: rule set windows version 1 (2 rules, enabled)"
    );
    let (code, _, err) = apply(Some(&acme), &["globex"])?;
    assert_eq!(code, 2);
    assert!(
        err.contains("tenant globex:") && err.contains("forbidden"),
        "{err}"
    );

    // An operator applies to several tenants at once, one line each.
    let (code, out, err) = apply(Some(&operator), &["acme", "globex"])?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "tenant acme: rule set windows version 1 (2 rules, enabled) unchanged",
            "tenant globex: rule set windows version 1 (2 rules, enabled)",
        ]
    );
    let (code, out, err) = spoor(
        &["rules", "list", "--json", "--endpoint", endpoint.as_str()],
        &[("SPOOR_TOKEN", acme.as_str())],
    )?;
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out)?;
    assert_eq!(listed["tenant"], "acme", "the token's only tenant");
    assert_eq!(listed["rule_sets"][0]["files"], 2, "{listed}");
    Ok(())
}

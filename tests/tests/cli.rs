//! The `spoor` binary without a broker: configuration errors, `--print-config`,
//! HTTP ingest, the `sql` and `status` clients, and a restart.

use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use spoor_tests::{Spoor, SpoorOptions, spoor_binary};

fn spoor(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<(i32, String, String)> {
    let mut cmd = Command::new(spoor_binary()?);
    cmd.args(args);
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

#[test]
fn bad_config_stops_start_up_naming_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().display().to_string();
    let (code, _, err) = spoor(
        &[
            "standalone",
            "--data-dir",
            &data,
            "--set",
            "ingest.flush_interval_ms=soon",
        ],
        &[],
    )?;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("flush_interval_ms") && err.contains("--set"),
        "{err}"
    );

    let (code, _, err) = spoor(
        &["standalone", "--data-dir", &data],
        &[("SPOOR_INGEST__FLUSH_EVERY", "1")],
    )?;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("flush_every") && err.contains("SPOOR_INGEST__FLUSH_EVERY"),
        "{err}"
    );

    let file = dir.path().join("spoor.toml");
    std::fs::write(&file, "[query]\nmax_rows = 5\n")?;
    let (code, _, err) = spoor(&["query", "--config", &file.display().to_string()], &[])?;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("max_rows") && err.contains("spoor.toml"),
        "{err}"
    );

    let (code, _, err) = spoor(
        &[
            "coordinator",
            "--set",
            "coordinator.election_timeout_min_ms=10",
        ],
        &[],
    )?;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("coordinator.election_timeout_min_ms"), "{err}");
    assert!(!dir.path().join("raft").exists(), "nothing was started");
    Ok(())
}

#[test]
fn print_config_shows_the_effective_layers() -> anyhow::Result<()> {
    let (code, out, err) = spoor(
        &[
            "ingest",
            "--print-config",
            "--set",
            "ingest.flush_interval_ms=750",
        ],
        &[
            ("SPOOR_QUERY__MAX_RESULT_ROWS", "42"),
            // Not keys, but known client variables: accepted.
            ("SPOOR_ENDPOINT", "http://127.0.0.1:1"),
            ("SPOOR_TOKEN", "spoor_not_a_key"),
        ],
    )?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("flush_interval_ms = 750"), "{out}");
    assert!(out.contains("max_result_rows = 42"), "{out}");
    assert!(out.contains("http_addr = \"127.0.0.1:7080\""), "{out}");
    Ok(())
}

#[test]
fn rules_check_reads_sigma_rules_and_names_the_refused() -> anyhow::Result<()> {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/sigma/rules-compliance");
    let (code, out, err) = spoor(&["rules", "check", &corpus.display().to_string()], &[])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("3 rule(s) read, 0 refused"), "{err}");

    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "title: ok\ndetection:\n  sel: {a: 1}\n  condition: sel\n---\ntitle: bad\ndetection:\n  sel:\n    Image|startwith: x\n  condition: sel\n",
    )?;
    let (code, out, err) = spoor(&["rules", "check", &dir.path().display().to_string()], &[])?;
    assert_eq!(code, 1, "{out}{err}");
    let refusals: Vec<&str> = out.lines().filter(|l| !l.contains(": warning: ")).collect();
    assert_eq!(
        refusals.join("\n"),
        format!(
            "{}:9:5: unknown value modifier `startwith` in `Image|startwith`",
            bad.display()
        )
    );
    assert!(
        err.contains("1 rule(s) read, 1 refused, 1 warning(s), in 1 file(s)"),
        "{err}"
    );

    // ATT&CK coverage from the tags of the rules that read.
    std::fs::write(
        dir.path().join("tagged.yml"),
        "title: enc\ntags: [attack.execution, attack.t1059.001]\ndetection:\n  sel: {a: 1}\n  condition: sel\n",
    )?;
    let (code, out, err) = spoor(
        &[
            "rules",
            "coverage",
            "--json",
            &dir.path().display().to_string(),
        ],
        &[],
    )?;
    assert_eq!(code, 0, "{err}");
    let coverage: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(coverage["rules"], 2);
    assert_eq!(coverage["refused"], 1);
    assert_eq!(coverage["untagged"], 1);
    assert_eq!(
        coverage["techniques"]["T1059.001"],
        serde_json::json!(["enc"])
    );
    assert_eq!(coverage["tactics"]["execution"], 1);
    Ok(())
}

/// `spoor rules test` and `explain` on one file holding a detection rule, a
/// global filter, a correlation and a SQL rule, over Windows events.
#[test]
fn rules_test_and_explain_run_every_rule_kind_offline() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        r#"title: Failed logon
id: r-1
name: failed
level: low
logsource: {product: windows, service: security}
detection:
    sel: {EventID: 4625}
    condition: sel
---
title: Not the scanner
filter:
    rules: [failed]
    sel: {TargetUserName: scanner}
    condition: sel
logsource: {product: windows, service: security}
---
title: Brute force
id: c-1
level: high
correlation:
    type: event_count
    rules: [failed]
    group-by: [TargetUserName]
    timespan: 5m
    condition: {gte: 3}
    generate: true
---
title: Logons per user
id: s-1
sql:
    query: SELECT user_name, count(*) AS n FROM events GROUP BY user_name HAVING count(*) >= 3
    every: 10m
"#,
    )?;
    let events = dir.path().join("events.jsonl");
    let mut lines = String::new();
    for (i, user) in ["bob", "bob", "scanner", "bob", "alice"].iter().enumerate() {
        lines.push_str(&format!(
            r#"{{"TimeCreated": "2024-05-01T10:0{i}:00Z", "Channel": "Security", "EventID": 4625, "TargetUserName": "{user}", "Computer": "dc1"}}"#
        ));
        lines.push('\n');
    }
    std::fs::write(&events, lines)?;
    let (code, out, err) = spoor(
        &[
            "rules",
            "test",
            &rules.display().to_string(),
            &events.display().to_string(),
        ],
        &[],
    )?;
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let of = |t: &str| lines.iter().filter(|l| l["type"] == t).collect::<Vec<_>>();
    let matches = of("match");
    assert_eq!(
        matches
            .iter()
            .map(|m| m["event"].as_u64().unwrap_or(99))
            .collect::<Vec<_>>(),
        [0, 1, 3, 4],
        "the filter drops the scanner: {out}"
    );
    let correlations = of("correlation");
    assert_eq!(correlations.len(), 1, "{out}");
    assert_eq!(correlations[0]["group"]["TargetUserName"], "bob");
    assert_eq!(correlations[0]["events"].as_array().map(Vec::len), Some(3));
    let sql = of("sql");
    assert_eq!(sql.len(), 1, "{out}");
    assert_eq!(sql[0]["row"]["user_name"], "bob");
    assert!(
        err.contains("3 detection") || err.contains("1 detection"),
        "{err}"
    );

    let (code, out, err) = spoor(
        &[
            "rules",
            "explain",
            &rules.display().to_string(),
            "--rule",
            "r-1",
        ],
        &[],
    )?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("global filters: Not the scanner"), "{out}");
    assert!(
        out.contains("metadata_product"),
        "the log source's events: {out}"
    );
    assert!(
        out.contains("t0: EventID(unmapped, else event_code) lowercase equals \"4625\""),
        "{out}"
    );

    // Bad SQL is refused with the reason, the other rules still run.
    std::fs::write(
        dir.path().join("bad_sql.yml"),
        "title: bad
sql:
  query: SELECT nope FROM events
  every: 1m
",
    )?;
    let (code, out, _) = spoor(&["rules", "check", &dir.path().display().to_string()], &[])?;
    assert_eq!(code, 1);
    assert!(
        out.contains("bad_sql.yml:1: bad: query:") && out.contains("nope"),
        "{out}"
    );
    Ok(())
}

#[test]
fn worker_role_refuses_a_bad_worker_setting_naming_the_key() -> anyhow::Result<()> {
    let (code, _, err) = spoor(&["worker", "--set", "worker.max_files_per_step=0"], &[])?;
    assert_ne!(code, 0);
    assert!(err.contains("worker.max_files_per_step"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_ingest_sql_and_status_survive_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut node = Spoor::standalone(&data, &SpoorOptions::default())?;
    let body = "{\"time\":\"2024-03-05T07:30:00Z\",\"src_ip\":\"10.9.9.9\",\"CommandLine\":\"whoami\"}\n\
                {\"EventID\":4625,\"TargetUserName\":\"bob\",\"IpAddress\":\"192.0.2.7\"}\n\
                not json\n\
                [1,2]\n\
                {\"query\":\"evil.example\",\"ts\":1700000000}\n";
    let resp: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/ingest/edr", node.http))
        .body(body)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        resp,
        serde_json::json!({"accepted": 3, "dead_lettered": 2, "files": 4})
    );

    // Visible at once: the response came after the catalog commit.
    let endpoint = format!("--endpoint={}", node.http);
    let (code, out, err) = spoor(
        &[
            "sql",
            &endpoint,
            "SELECT class_uid, count(*) AS n FROM events GROUP BY class_uid ORDER BY class_uid",
        ],
        &[],
    )?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "class_uid | n\n----------+--\n1007      | 1\n3002      | 1\n4003      | 1\n",
        "{out}"
    );
    let (code, out, err) = spoor(
        &[
            "sql",
            &endpoint,
            "--format",
            "ndjson",
            "SELECT source_offset, error FROM dead_letter ORDER BY source_offset",
        ],
        &[],
    )?;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(lines[0]["source_offset"], 3);
    assert!(
        lines[0]["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("line 3: invalid JSON"),
        "{out}"
    );
    assert_eq!(
        lines[1]["error"],
        "line 4: event is a JSON array, expected an object"
    );

    let (code, _, err) = spoor(&["sql", &endpoint, "SELECT nope FROM events"], &[])?;
    assert_eq!(code, 1);
    assert!(err.contains("invalid_sql") && err.contains("nope"), "{err}");
    let (code, _, err) = spoor(&["sql", &endpoint, "DELETE FROM events"], &[])?;
    assert_eq!(code, 1);
    assert!(err.contains("invalid_sql"), "{err}");

    // The interactive prompt, fed from a pipe: multi-line statements, an
    // error that does not end the session, commands, history kept.
    let home = tempfile::tempdir()?;
    let mut child = Command::new(spoor_binary()?)
        .args(["sql", &endpoint])
        .env("HOME", home.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("stdin")?;
        stdin.write_all(
            b"SELECT count(*)\n  AS n FROM events;\nSELEC 1;\n\\tables\n\\format ndjson\nSELECT 7 AS seven;\n\\q\n",
        )?;
    }
    let out = child.wait_with_output()?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("n\n-\n3\n"), "{stdout}");
    assert!(
        stderr.contains("invalid_sql") && stderr.contains("SELEC"),
        "{stderr}"
    );
    assert!(
        stdout.contains("authentication") && stdout.contains("VIEW"),
        "{stdout}"
    );
    assert!(stdout.contains("{\"seven\":7}"), "{stdout}");
    let history = std::fs::read_to_string(home.path().join(".spoor_sql_history"))?;
    assert!(history.contains("SELECT 7 AS seven"), "{history}");

    let (code, out, err) = spoor(&["status", &endpoint], &[])?;
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(
        spoor_tests::tenant_file_count(&status, "default"),
        Some(4),
        "{status}"
    );
    assert_eq!(status["catalog"]["leader_id"], 1);

    let metrics = reqwest::get(format!("{}/metrics", node.http))
        .await?
        .text()
        .await?;
    assert!(metrics.contains("spoor_ingest_events_total 3"), "{metrics}");

    assert!(node.stop()?.success());
    let node = Spoor::standalone(&data, &SpoorOptions::default())?;
    assert_eq!(node.scalar("SELECT count(*) FROM events").await?, 3);
    assert_eq!(node.scalar("SELECT count(*) FROM dead_letter").await?, 2);
    // The sequence continues after the restart.
    reqwest::Client::new()
        .post(format!("{}/v1/ingest", node.http))
        .body("{\"a\":1}\n")
        .send()
        .await?
        .error_for_status()?;
    node.wait_for("SELECT count(*) FROM events", 4, Duration::from_secs(10))
        .await?;
    Ok(())
}

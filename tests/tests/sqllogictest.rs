//! SQL tests: every `tests/sqllogictest/*.slt` file runs against a real
//! `spoor standalone` over `POST /v1/query`, after a fixed set of events has
//! been ingested through `POST /v1/ingest` (see [`SEED`]). The files cover
//! the tables and the refusals of read-only SQL; `docs/sql.md` describes
//! both.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use spoor_tests::{Spoor, SpoorOptions};
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};

/// What the `.slt` files query: six events and two malformed lines of the
/// `fw` HTTP source, all in the `default` tenant.
const SEED: &str = "\
{\"time\":\"2024-03-05T07:00:00Z\",\"src_ip\":\"10.0.0.1\",\"dst_ip\":\"192.0.2.10\",\"dst_port\":443,\"username\":\"alice\"}
{\"time\":\"2024-03-05T07:10:00Z\",\"src_ip\":\"10.0.0.1\",\"dst_ip\":\"192.0.2.11\",\"dst_port\":22,\"username\":\"alice\"}
{\"time\":\"2024-03-05T07:20:00Z\",\"src_ip\":\"10.0.0.2\",\"dst_ip\":\"192.0.2.10\",\"dst_port\":443,\"username\":\"bob\"}
{\"time\":\"2024-03-05T08:05:00Z\",\"src_ip\":\"10.0.0.3\",\"dst_ip\":\"198.51.100.7\",\"dst_port\":3389,\"username\":\"carol\"}
{\"time\":\"2024-03-05T08:30:00Z\",\"process_name\":\"powershell.exe\",\"CommandLine\":\"powershell -enc SQBFAFgA\",\"username\":\"bob\"}
{\"time\":\"2024-03-05T09:00:00Z\",\"query\":\"evil.example\",\"src_ip\":\"10.0.0.2\"}
{\"truncated\":
[1,2]
";

/// A connection: SQL over HTTP to one node.
struct HttpDb {
    client: reqwest::Client,
    url: String,
}

/// A refused or failed statement: the server's error code and message.
#[derive(Debug)]
struct SqlError(String);

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SqlError {}

/// The sqllogictest type letter of an Arrow type name as the API prints it.
fn column_type(arrow_type: &str) -> DefaultColumnType {
    if arrow_type.starts_with("Int") || arrow_type.starts_with("UInt") {
        DefaultColumnType::Integer
    } else if arrow_type.starts_with("Float") || arrow_type.starts_with("Decimal") {
        DefaultColumnType::FloatingPoint
    } else if arrow_type.contains("Utf8") {
        DefaultColumnType::Text
    } else {
        DefaultColumnType::Any
    }
}

/// A JSON cell as sqllogictest text: NULL, `(empty)` for an empty string.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::String(s) if s.is_empty() => "(empty)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[async_trait::async_trait]
impl AsyncDB for HttpDb {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let response = self
            .client
            .post(&self.url)
            .json(&serde_json::json!({ "sql": sql }))
            .send()
            .await
            .map_err(|e| SqlError(format!("request failed: {e}")))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| SqlError(format!("response is not JSON: {e}")))?;
        if !status.is_success() {
            return Err(SqlError(format!(
                "{status} {}: {}",
                body["error"]["code"].as_str().unwrap_or("?"),
                body["error"]["message"].as_str().unwrap_or("?")
            )));
        }
        let columns: Vec<(String, String)> = body["columns"]
            .as_array()
            .ok_or_else(|| SqlError(format!("no columns in {body}")))?
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["type"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let rows = body["rows"]
            .as_array()
            .ok_or_else(|| SqlError(format!("no rows in {body}")))?
            .iter()
            .map(|row| {
                columns
                    .iter()
                    .map(|(name, _)| cell(&row[name.as_str()]))
                    .collect()
            })
            .collect();
        Ok(DBOutput::Rows {
            types: columns.iter().map(|(_, t)| column_type(t)).collect(),
            rows,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "spoor"
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files_pass() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let node = Spoor::standalone(&dir.path().join("data"), &SpoorOptions::default())?;
    let resp: Value = reqwest::Client::new()
        .post(format!("{}/v1/ingest/fw", node.http))
        .body(SEED)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(resp["accepted"], 6, "{resp}");
    assert_eq!(resp["dead_lettered"], 2, "{resp}");

    let files_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sqllogictest");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&files_dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "slt"));
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "no .slt files in {}",
        files_dir.display()
    );
    let url = format!("{}/v1/query", node.http);
    let mut failures = Vec::new();
    for file in &files {
        let url = url.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let url = url.clone();
            async move {
                Ok::<_, SqlError>(HttpDb {
                    client: reqwest::Client::new(),
                    url,
                })
            }
        });
        if let Err(e) = runner.run_file_async(file).await {
            failures.push(format!("{}: {e}", file.display()));
        }
        eprintln!("ran {}", file.display());
    }
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

//! What the console's Health page reads from the members themselves: the
//! Kafka consumer lag each ingest node reports in its `/metrics`
//! (`spoor_ingest_kafka_lag{topic, partition}`), gathered by the node
//! asked, so the browser talks to one node only.

use std::time::Duration;

use serde_json::{Value, json};
use spoor_common::tls::Tls;

/// How long one member's `/metrics` may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// An HTTP client for the members' `/metrics`, and whether they serve TLS
/// (every listener of a cluster does, or none).
#[derive(Clone)]
pub(crate) struct MetricsClient {
    http: reqwest::Client,
    tls: bool,
}

/// The client, trusting the node's own CA when it serves TLS.
pub(crate) fn metrics_client(tls: Option<&Tls>) -> anyhow::Result<MetricsClient> {
    use anyhow::Context;
    let mut builder = reqwest::Client::builder().timeout(SCRAPE_TIMEOUT);
    if let Some(tls) = tls {
        builder = builder.use_preconfigured_tls((*tls.client()).clone());
    }
    Ok(MetricsClient {
        http: builder
            .build()
            .context("building the HTTP client of the health page (tls)")?,
        tls: tls.is_some(),
    })
}

/// The URL of a member's `/metrics` from the address it registered: an
/// unspecified host (`0.0.0.0`, `[::]`) is this machine's loopback, which
/// holds in standalone and the local cluster; in a real cluster members
/// listen on their own addresses.
fn metrics_url(http_addr: &str, tls: bool) -> String {
    let Some((host, port)) = http_addr.rsplit_once(':') else {
        return format!(
            "{}://{http_addr}/metrics",
            if tls { "https" } else { "http" }
        );
    };
    let host = match (host, tls) {
        // Over TLS the certificate names the host as `spoor` calls it.
        ("0.0.0.0" | "127.0.0.1", true) => "localhost",
        ("0.0.0.0", false) => "127.0.0.1",
        ("[::]", _) => "[::1]",
        (host, _) => host,
    };
    format!(
        "{}://{host}:{port}/metrics",
        if tls { "https" } else { "http" }
    )
}

/// One lag sample of a Prometheus text exposition line:
/// `spoor_ingest_kafka_lag{partition="0",topic="t"} 12`.
pub(crate) fn parse_lag_line(line: &str) -> Option<(String, i32, i64)> {
    let rest = line.strip_prefix("spoor_ingest_kafka_lag{")?;
    let (labels, value) = rest.split_once('}')?;
    let mut topic = None;
    let mut partition = None;
    for label in labels.split(',') {
        let (k, v) = label.split_once('=')?;
        let v = v.trim_matches('"');
        match k.trim() {
            "topic" => topic = Some(v.replace("\\\"", "\"").replace("\\\\", "\\")),
            "partition" => partition = v.parse().ok(),
            _ => {}
        }
    }
    let value: f64 = value.trim().parse().ok()?;
    Some((topic?, partition?, value as i64))
}

/// Every member's lag per topic and partition; a member that cannot be
/// read is listed with its error, not left out.
pub(crate) async fn kafka_lag(client: &MetricsClient, members: &[(u64, String)]) -> Value {
    let scrapes = members.iter().map(|(node, addr)| async move {
        let url = metrics_url(addr, client.tls);
        let text = match client.http.get(&url).send().await {
            Ok(r) if r.status().is_success() => r.text().await.map_err(|e| e.to_string()),
            Ok(r) => Err(format!("{url}: HTTP {}", r.status())),
            Err(e) => Err(format!("{url}: {e}")),
        };
        match text {
            Ok(text) => {
                let partitions: Vec<Value> = text
                    .lines()
                    .filter_map(parse_lag_line)
                    .map(|(topic, partition, lag)| {
                        json!({"topic": topic, "partition": partition, "lag": lag})
                    })
                    .collect();
                json!({"node_id": node, "partitions": partitions})
            }
            Err(e) => json!({"node_id": node, "error": e}),
        }
    });
    json!({ "members": futures::future::join_all(scrapes).await })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_lines_parse_and_others_do_not() {
        assert_eq!(
            parse_lag_line(r#"spoor_ingest_kafka_lag{partition="3",topic="win"} 42"#),
            Some(("win".to_string(), 3, 42))
        );
        assert_eq!(
            parse_lag_line(r#"spoor_ingest_kafka_lag{topic="a,b",partition="0"} 0"#),
            None,
            "a comma inside a label value is not taken apart wrongly"
        );
        assert_eq!(parse_lag_line("# TYPE spoor_ingest_kafka_lag gauge"), None);
        assert_eq!(parse_lag_line(r#"spoor_ingest_events_total 5"#), None);
        assert_eq!(
            parse_lag_line(r#"spoor_ingest_kafka_lag{partition="x",topic="t"} 1"#),
            None
        );
    }

    proptest::proptest! {
        /// Any text a member answers with parses or is skipped, never
        /// panics; a well-formed sample reads back as written.
        #[test]
        fn any_exposition_line_is_read_or_skipped(line in "\\PC{0,200}") {
            let _ = parse_lag_line(&line);
        }

        #[test]
        fn samples_read_back(topic in "[a-zA-Z0-9._-]{1,40}", partition in 0i32..10_000, lag in 0i64..1_000_000_000) {
            let line = format!("spoor_ingest_kafka_lag{{partition=\"{partition}\",topic=\"{topic}\"}} {lag}");
            proptest::prop_assert_eq!(parse_lag_line(&line), Some((topic, partition, lag)));
        }
    }

    #[test]
    fn unspecified_hosts_become_loopback() {
        assert_eq!(
            metrics_url("0.0.0.0:7080", false),
            "http://127.0.0.1:7080/metrics"
        );
        assert_eq!(
            metrics_url("10.0.0.5:7080", true),
            "https://10.0.0.5:7080/metrics"
        );
        assert_eq!(
            metrics_url("127.0.0.1:7080", true),
            "https://localhost:7080/metrics"
        );
        assert_eq!(
            metrics_url("0.0.0.0:7080", true),
            "https://localhost:7080/metrics"
        );
        assert_eq!(
            metrics_url("127.0.0.10:7080", true),
            "https://127.0.0.10:7080/metrics",
            "only the loopback address itself is renamed"
        );
    }
}

//! HTTP ingest: `POST /v1/ingest/{source}` with one event per line.
//!
//! The parser is the one configured for `http:{source}` in
//! `[[ingest.sources]]` (generic JSON when none matches), or the
//! `?source_type=` of the request.
//!
//! The response is sent after the request's files are committed to the
//! catalog, so a 200 means durable. Lines that fail to parse go to
//! `dead_letter` with their line number; the rest of the request is kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use crate::error::IngestError;
use crate::flush::Flusher;
use crate::parse::{Decoder, Provenance, SourceType, Sources};
use crate::routing::{Envelope, TenantRouter};

#[derive(Clone)]
struct HttpIngest {
    flusher: Flusher,
    sources: Sources,
    router: TenantRouter,
    node_id: u64,
    counter: Arc<AtomicU64>,
}

/// The HTTP ingest routes.
pub fn router(
    flusher: Flusher,
    sources: Sources,
    tenants: TenantRouter,
    node_id: u64,
    max_body_bytes: usize,
) -> Router {
    let state = HttpIngest {
        flusher,
        sources,
        router: tenants,
        node_id,
        counter: Arc::new(AtomicU64::new(0)),
    };
    Router::new()
        .route(
            "/v1/ingest",
            post(
                |state: State<HttpIngest>,
                 params: Query<IngestParams>,
                 headers: HeaderMap,
                 body: Bytes| {
                    ingest(state, "http".to_string(), params, headers, body)
                },
            ),
        )
        .route(
            "/v1/ingest/{source}",
            post(
                |state: State<HttpIngest>,
                 Path(source): Path<String>,
                 params: Query<IngestParams>,
                 headers: HeaderMap,
                 body: Bytes| { ingest(state, source, params, headers, body) },
            ),
        )
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Query parameters of an ingest request.
#[derive(Debug, serde::Deserialize)]
struct IngestParams {
    /// Overrides the configured parser for this request.
    source_type: Option<String>,
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn ingest(
    State(state): State<HttpIngest>,
    source: String,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if source.is_empty()
        || source.len() > 128
        || !source
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_source",
            format!(
                "source name {source:?} must be 1-128 characters of letters, digits, '-', '_' and '.'"
            ),
        );
    }
    let topic = format!("http:{source}");
    let mut decoder = match params.source_type.as_deref().map(str::parse::<SourceType>) {
        None => state.sources.decoder_for(&topic),
        Some(Ok(source_type)) => Decoder::for_type(source_type),
        Some(Err(reason)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_source_type",
                format!("query parameter source_type: {reason}"),
            );
        }
    };
    let now = spoor_common::time::now_micros();
    let mut decoded = Vec::new();
    let mut last_line = 0;
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        last_line = i as i64 + 1;
        let prov = Provenance {
            topic: topic.clone(),
            partition: None,
            offset: Some(last_line),
            ingest_time_micros: now,
        };
        decoder.decode(line, &prov, &mut decoded);
    }
    let end = Provenance {
        topic: topic.clone(),
        partition: None,
        offset: Some(last_line),
        ingest_time_micros: now,
    };
    decoder.flush(&end, &mut decoded);
    let headers: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    let mut rows = std::collections::BTreeMap::new();
    state.router.route(
        Envelope {
            topic: &topic,
            headers: &headers,
        },
        decoded,
        &mut rows,
    );
    let request_id = format!(
        "{}-{}-{}-{}",
        state.node_id,
        std::process::id(),
        now,
        state.counter.fetch_add(1, Ordering::Relaxed)
    );
    match state.flusher.flush_request(&request_id, &rows).await {
        Ok(flushed) => (
            StatusCode::OK,
            axum::Json(json!({
                "accepted": flushed.events,
                "dead_lettered": flushed.dead_letters,
                "files": flushed.files,
            })),
        )
            .into_response(),
        Err(IngestError::Catalog(e)) if e.is_retryable() => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "catalog_unavailable",
            format!("{e}; retry the request"),
        ),
        Err(e) => {
            tracing::error!(error = %e, source, "http ingest failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ingest_failed",
                e.to_string(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake_writer::LakeWriter;
    use axum::body::Body;
    use axum::http::Request;
    use spoor_common::catalog::{Catalog, FileQuery, MemoryCatalog};
    use spoor_common::schema::Table;
    use spoor_common::tenant::TenantId;
    use tower::ServiceExt;

    fn app(catalog: Arc<MemoryCatalog>) -> Router {
        let store = Arc::new(object_store::memory::InMemory::new());
        let flusher = Flusher::new(LakeWriter::new(store, 3), catalog, None);
        let tenants = TenantRouter::single(TenantId::new("default").expect("t"));
        router(flusher, Sources::default(), tenants, 1, 1024)
    }

    async fn post(app: Router, uri: &str, body: &'static str) -> (StatusCode, serde_json::Value) {
        let resp = app
            .oneshot(Request::post(uri).body(Body::from(body)).expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn commits_events_and_dead_letters_before_answering() {
        let catalog = Arc::new(MemoryCatalog::new());
        let (status, body) = post(
            app(catalog.clone()),
            "/v1/ingest/fw",
            "{\"a\":1}\n\n{bad\r\n{\"b\":2}\n",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"accepted": 2, "dead_lettered": 1, "files": 2}));
        let t = TenantId::new("default").expect("t");
        let events = catalog
            .list_files(FileQuery::all(t.clone(), Table::Events))
            .await
            .expect("list");
        assert_eq!(events.iter().map(|f| f.file.row_count).sum::<u64>(), 2);
        let dead = catalog
            .list_files(FileQuery::all(t, Table::DeadLetter))
            .await
            .expect("list");
        assert_eq!(dead.len(), 1);
    }

    #[tokio::test]
    async fn refuses_bad_sources_and_large_bodies() {
        let catalog = Arc::new(MemoryCatalog::new());
        let (status, body) = post(app(catalog.clone()), "/v1/ingest/a%20b", "{}").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_source");
        let big: &'static str = Box::leak("x".repeat(2048).into_boxed_str());
        let (status, _) = post(app(catalog), "/v1/ingest", big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}

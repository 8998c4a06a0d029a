//! The query HTTP API: `POST /v1/query` with `{"sql": "..."}`, answered with
//! JSON rows.

use std::sync::Arc;

use arrow::json::writer::{JsonArray, WriterBuilder};
use axum::Router;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use spoor_common::tenant::TenantId;

use crate::engine::{QueryEngine, QueryError, QueryOutput};

#[derive(Clone)]
struct QueryApi {
    engine: QueryEngine,
    tenant: Arc<TenantId>,
}

/// A query request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// One read-only SQL statement.
    pub sql: String,
}

/// The query routes, serving `tenant` (until tokens name the tenant).
pub fn router(engine: QueryEngine, tenant: TenantId) -> Router {
    Router::new()
        .route("/v1/query", post(query))
        .with_state(QueryApi {
            engine,
            tenant: Arc::new(tenant),
        })
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn query(
    State(api): State<QueryApi>,
    body: Result<axum::Json<QueryRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(axum::Json(r)) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("{e}; expected {{\"sql\": \"SELECT ...\"}}"),
            );
        }
    };
    match api.engine.execute(&api.tenant, &request.sql).await {
        Ok(out) => match to_json(&out) {
            Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "encode_failed", e),
        },
        Err(e) => {
            let status = match &e {
                QueryError::InvalidSql(_)
                | QueryError::TooLarge { .. }
                | QueryError::MemoryLimit(_) => StatusCode::BAD_REQUEST,
                QueryError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                QueryError::Catalog(c) if c.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::error!(error = %e, "query failed");
            }
            error(status, e.code(), e.to_string())
        }
    }
}

/// The response body: columns with types, rows as objects, and counts.
pub fn to_json(out: &QueryOutput) -> Result<Value, String> {
    let mut buf = Vec::new();
    {
        let mut writer = WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, JsonArray>(&mut buf);
        for batch in &out.batches {
            writer
                .write(batch)
                .map_err(|e| format!("encoding rows: {e}"))?;
        }
        writer.finish().map_err(|e| format!("encoding rows: {e}"))?;
    }
    let rows: Value = if buf.is_empty() {
        json!([])
    } else {
        serde_json::from_slice(&buf).map_err(|e| e.to_string())?
    };
    let columns: Vec<Value> = out
        .schema
        .fields()
        .iter()
        .map(|f| json!({"name": f.name(), "type": f.data_type().to_string()}))
        .collect();
    Ok(json!({
        "columns": columns,
        "rows": rows,
        "row_count": out.row_count,
        "truncated": out.truncated,
        "elapsed_ms": out.elapsed.as_secs_f64() * 1000.0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use spoor_common::catalog::MemoryCatalog;
    use spoor_common::config::QueryConfig;
    use tower::ServiceExt;

    fn app() -> Router {
        let engine = QueryEngine::new(
            Arc::new(MemoryCatalog::new()),
            Arc::new(object_store::memory::InMemory::new()),
            QueryConfig {
                max_result_rows: 100,
                timeout_ms: 10_000,
                max_sql_bytes: 10_000,
                max_memory_bytes: 64 << 20,
            },
        );
        router(engine, TenantId::new("default").expect("t"))
    }

    async fn post(body: &str) -> (StatusCode, Value) {
        let req = Request::post("/v1/query")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()));
        let resp = app()
            .oneshot(req.expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    #[tokio::test]
    async fn answers_rows_as_json() {
        let (status, body) =
            post(r#"{"sql":"SELECT 1 AS one, NULL AS nothing, count(*) AS n FROM events"}"#).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["rows"], json!([{"one": 1, "nothing": null, "n": 0}]));
        assert_eq!(body["columns"][0], json!({"name": "one", "type": "Int64"}));
        assert_eq!(body["row_count"], 1);
    }

    #[tokio::test]
    async fn bad_requests_say_what_is_wrong() {
        let (status, body) = post(r#"{"sql":"SELECT FROM WHERE"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_sql");
        let (status, body) = post(r#"{"query":"SELECT 1"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"]["message"]
                .as_str()
                .expect("message")
                .contains("query"),
            "{body}"
        );
    }
}

//! The query HTTP API:
//!
//! - `POST /v1/query` with `{"sql": "...", "format": "json"|"ndjson"|"csv"|"arrow"}`:
//!   JSON rows (buffered, capped), or NDJSON / CSV / Arrow IPC streamed batch
//!   by batch. Every answer carries the query's id in `x-query-id`.
//! - `GET /v1/queries?limit=N`: running and recent queries the caller may
//!   see (its tenants'; an admin sees all): the query audit.
//! - `DELETE /v1/queries/{id}`: cancels a running query the caller may see.
//! - `PUT /v1/intel/{name}` (text, one indicator per line, or a JSON array),
//!   `GET /v1/intel`, `DELETE /v1/intel/{name}`: the tenant's threat-intel
//!   lists for `ioc_match` and the `intel` table; `?tenant=` picks the
//!   tenant when the token reaches several.
//!
//! - `GET /v1/whoami`: the caller's tenants, role and whether the node
//!   wants tokens (the console's sign-in).
//! - `GET /v1/saved-queries?tenant=T`, `PUT /v1/saved-queries?tenant=T`
//!   with `{"name", "sql"}`, `DELETE /v1/saved-queries?tenant=T&name=N`:
//!   the tenant's saved queries ([`crate::saved`]).
//!
//! A query request may name one of the caller's tenants (`"tenant"`): the
//! query then sees that tenant only (an MSSP operator switching between its
//! customers); a tenant the caller may not see is `403`.
//!
//! With `query.auth = "token"` every route needs `Authorization: Bearer
//! <analyst or admin token>`.

use std::sync::Arc;

use arrow::json::writer::{JsonArray, WriterBuilder};
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use spoor_common::auth::{AuthError, CHANGE_DETECTIONS, Permission, SAVE_QUERIES, bearer};

use crate::access::{Access, AccessError};
use crate::audit::{Cancel, Scope};
use crate::engine::{QueryEngine, QueryError, QueryOutput, QueryStream};
use crate::intel::IntelError;
use crate::saved::SavedQueryError;
use spoor_common::tenant::TenantId;

/// Largest indicator list upload, bytes.
const INTEL_MAX_BODY_BYTES: usize = 64 << 20;

#[derive(Clone)]
struct QueryApi {
    engine: QueryEngine,
    access: Arc<Access>,
}

/// A query request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// One read-only SQL statement.
    pub sql: String,
    /// How the rows come back.
    #[serde(default)]
    pub format: ResultFormat,
    /// Narrows the query to this one of the caller's tenants.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// How a response carries the rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultFormat {
    /// One JSON document: columns, rows, counts (buffered; for small
    /// results and the console).
    #[default]
    Json,
    /// One JSON object per row and line, streamed.
    Ndjson,
    /// An Arrow IPC stream, streamed (pyarrow, polars, DuckDB read it).
    Arrow,
    /// CSV with a header line (RFC 4180 quoting), streamed, for
    /// spreadsheets and BI tools.
    Csv,
}

/// A CSV header cell, quoted when it needs to be.
fn csv_field(name: &str) -> String {
    if name.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", name.replace('"', "\"\""))
    } else {
        name.to_string()
    }
}

/// The query routes.
pub fn router(engine: QueryEngine, access: Access) -> Router {
    Router::new()
        .route("/v1/query", post(query))
        .route("/v1/queries", get(list_queries))
        .route("/v1/queries/{id}", delete(cancel_query))
        .route("/v1/intel", get(list_intel))
        .route("/v1/whoami", get(whoami))
        .route(
            "/v1/saved-queries",
            get(list_saved).put(put_saved).delete(delete_saved).layer(
                axum::extract::DefaultBodyLimit::max(2 * crate::saved::MAX_SQL_BYTES + 4096),
            ),
        )
        .route(
            "/v1/intel/{name}",
            put(put_intel)
                .delete(delete_intel)
                .layer(axum::extract::DefaultBodyLimit::max(INTEL_MAX_BODY_BYTES)),
        )
        .with_state(QueryApi {
            engine,
            access: Arc::new(access),
        })
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// The HTTP answer to a caller without a scope.
pub fn access_error(e: &AccessError) -> Response {
    let (status, code) = match e {
        // No token, or one that authenticates nothing (unknown, revoked,
        // expired, malformed): 401. A valid token without the right: 403.
        AccessError::Auth(AuthError::Missing | AuthError::Invalid(_)) => {
            (StatusCode::UNAUTHORIZED, "unauthenticated")
        }
        AccessError::Auth(AuthError::Unavailable(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, "auth_unavailable")
        }
        AccessError::Auth(_) | AccessError::NoTenants => (StatusCode::FORBIDDEN, "forbidden"),
    };
    error(status, code, e.to_string())
}

/// The caller's scope, from its token: every route takes one, and a request
/// without a valid token is answered before its body is read.
struct Caller(Scope);

impl FromRequestParts<QueryApi> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, api: &QueryApi) -> Result<Self, Response> {
        api.access
            .scope(bearer(&parts.headers))
            .await
            .map(Caller)
            .map_err(|e| access_error(&e))
    }
}

fn with_query_id(mut response: Response, id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-query-id", value);
    }
    response
}

async fn query(
    State(api): State<QueryApi>,
    Caller(scope): Caller,
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
    let scope = match request.tenant.as_deref() {
        None => scope,
        Some(name) => match target_tenant(&api.access, &scope, Some(name)) {
            Ok(tenant) => scope.narrowed_to(&tenant),
            Err(r) => return *r,
        },
    };
    if request.format != ResultFormat::Json {
        return match api
            .engine
            .execute_stream(&scope, "http", &request.sql)
            .await
        {
            Ok(rows) => {
                let id = rows.query_id.clone();
                with_query_id(streamed(request.format, rows), &id)
            }
            Err(e) => query_error(e),
        };
    }
    match api.engine.execute(&scope, "http", &request.sql).await {
        Ok(out) => match to_json(&out) {
            Ok(v) => with_query_id(
                (StatusCode::OK, axum::Json(v)).into_response(),
                &out.query_id,
            ),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "encode_failed", e),
        },
        Err(e) => query_error(e),
    }
}

#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<usize>,
}

async fn list_queries(
    State(api): State<QueryApi>,
    Caller(scope): Caller,
    Query(params): Query<ListParams>,
) -> Response {
    let limit = params.limit.unwrap_or(100).min(10_000);
    let queries = api.engine.log().visible(&scope, limit);
    axum::Json(json!({ "queries": queries })).into_response()
}

async fn cancel_query(
    State(api): State<QueryApi>,
    Caller(scope): Caller,
    Path(id): Path<String>,
) -> Response {
    match api.engine.log().cancel(&scope, &id) {
        Cancel::Cancelled => {
            axum::Json(json!({ "query_id": id, "cancelled": true })).into_response()
        }
        Cancel::NotFound => error(
            StatusCode::NOT_FOUND,
            "no_such_query",
            format!("no running query {id} of yours"),
        ),
        Cancel::NotYours => {
            let reason = format!(
                "query {id} is another user's: a token cancels its own queries; a tenant-admin \
                 or admin token cancels any of its tenants'"
            );
            api.access.record_forbidden(&scope, "http", &reason);
            error(StatusCode::FORBIDDEN, "forbidden", reason)
        }
    }
}

#[derive(Debug, Deserialize)]
struct TenantParam {
    tenant: Option<String>,
}

/// The tenant a write is for: `?tenant=` (one of the caller's), or the
/// caller's only tenant.
fn target_tenant(
    access: &Access,
    scope: &Scope,
    param: Option<&str>,
) -> Result<TenantId, Box<Response>> {
    match (param, scope.tenants()) {
        (Some(name), tenants) => tenants
            .iter()
            .find(|t| t.as_str() == name)
            .cloned()
            .ok_or_else(|| {
                let reason = format!("tenant {name:?} is not one of this token's tenants");
                access.record_forbidden(scope, "http", &reason);
                Box::new(error(StatusCode::FORBIDDEN, "forbidden", reason))
            }),
        (None, [only]) => Ok(only.clone()),
        (None, _) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "tenant_required",
            "this token reaches several tenants: name one with ?tenant=".into(),
        ))),
    }
}

fn intel_error(e: &IntelError) -> Response {
    match e {
        IntelError::Invalid(_) => error(StatusCode::BAD_REQUEST, "invalid_list", e.to_string()),
        IntelError::NotFound(_) => error(StatusCode::NOT_FOUND, "no_such_list", e.to_string()),
        IntelError::Store(_) | IntelError::Damaged { .. } => {
            tracing::error!(error = %e, "indicator lists");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "intel_store",
                e.to_string(),
            )
        }
    }
}

/// `403 forbidden` (and an audit record) unless the caller's role has
/// `permission`: indicator lists feed detections (CHANGE_DETECTIONS);
/// saved queries are shared by the tenant (SAVE_QUERIES). Without tokens
/// every caller may.
fn may(access: &Access, scope: &Scope, permission: &Permission) -> Option<Response> {
    let role = scope.role()?;
    (!permission.allows(role)).then(|| {
        let reason = permission.refuse(role).to_string();
        access.record_forbidden(scope, "http", &reason);
        error(StatusCode::FORBIDDEN, "forbidden", reason)
    })
}

async fn put_intel(
    State(api): State<QueryApi>,
    Caller(scope): Caller,
    Path(name): Path<String>,
    Query(param): Query<TenantParam>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = may(&api.access, &scope, &CHANGE_DETECTIONS) {
        return r;
    }
    let tenant = match target_tenant(&api.access, &scope, param.tenant.as_deref()) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match api.engine.put_intel(&tenant, &name, &body).await {
        Ok(list) => axum::Json(json!({
            "list": list.name,
            "tenant": tenant,
            "indicators": list.indicators.len(),
            "updated_at": list.updated_at,
        }))
        .into_response(),
        Err(e) => intel_error(&e),
    }
}

async fn delete_intel(
    State(api): State<QueryApi>,
    Caller(scope): Caller,
    Path(name): Path<String>,
    Query(param): Query<TenantParam>,
) -> Response {
    if let Some(r) = may(&api.access, &scope, &CHANGE_DETECTIONS) {
        return r;
    }
    let tenant = match target_tenant(&api.access, &scope, param.tenant.as_deref()) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match api.engine.delete_intel(&tenant, &name).await {
        Ok(()) => {
            axum::Json(json!({"list": name, "tenant": tenant, "deleted": true})).into_response()
        }
        Err(e) => intel_error(&e),
    }
}

async fn list_intel(State(api): State<QueryApi>, Caller(scope): Caller) -> Response {
    match api.engine.intel_lists(&scope).await {
        Ok(lists) => {
            let lists: Vec<Value> = lists
                .iter()
                .map(|l| {
                    json!({
                        "tenant": l.tenant,
                        "list": l.list.name,
                        "indicators": l.list.indicators.len(),
                        "updated_at": l.list.updated_at,
                    })
                })
                .collect();
            axum::Json(json!({ "lists": lists })).into_response()
        }
        Err(e) => intel_error(&e),
    }
}

async fn whoami(State(api): State<QueryApi>, Caller(scope): Caller) -> Response {
    axum::Json(json!({
        "tenants": scope.tenants(),
        "token_id": scope.token_id(),
        "role": scope.role().map(|r| r.name()),
        "cluster_admin": scope.is_admin(),
        "auth": if api.access.requires_token() { "token" } else { "none" },
    }))
    .into_response()
}

fn saved_error(e: &SavedQueryError) -> Response {
    match e {
        SavedQueryError::Invalid(_) => {
            error(StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
        }
        SavedQueryError::NotFound(_) => {
            error(StatusCode::NOT_FOUND, "no_such_saved_query", e.to_string())
        }
        SavedQueryError::Store(_) | SavedQueryError::Damaged { .. } => {
            tracing::error!(error = %e, "saved queries");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "saved_store",
                e.to_string(),
            )
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaveRequest {
    name: String,
    sql: String,
}

#[derive(Debug, Deserialize)]
struct SavedParams {
    tenant: Option<String>,
    name: Option<String>,
}

async fn list_saved(
    State(api): State<QueryApi>,
    Caller(scope): Caller,
    Query(params): Query<SavedParams>,
) -> Response {
    let tenant = match target_tenant(&api.access, &scope, params.tenant.as_deref()) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match crate::saved::list(api.engine.store().as_ref(), &tenant).await {
        Ok(saved) => axum::Json(json!({"tenant": tenant, "saved": saved})).into_response(),
        Err(e) => saved_error(&e),
    }
}

async fn put_saved(
    State(api): State<QueryApi>,
    Caller(scope): Caller,
    Query(params): Query<SavedParams>,
    body: Result<axum::Json<SaveRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(axum::Json(r)) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("{e}; expected {{\"name\": \"...\", \"sql\": \"SELECT ...\"}}"),
            );
        }
    };
    let tenant = match target_tenant(&api.access, &scope, params.tenant.as_deref()) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    if let Some(refusal) = may(&api.access, &scope, &SAVE_QUERIES) {
        return refusal;
    }
    let by = scope.token_id().unwrap_or("anonymous");
    match crate::saved::put(
        api.engine.store().as_ref(),
        &tenant,
        &request.name,
        &request.sql,
        by,
    )
    .await
    {
        Ok(saved) => axum::Json(json!({"tenant": tenant, "saved": saved})).into_response(),
        Err(e) => saved_error(&e),
    }
}

async fn delete_saved(
    State(api): State<QueryApi>,
    Caller(scope): Caller,
    Query(params): Query<SavedParams>,
) -> Response {
    if let Some(refusal) = may(&api.access, &scope, &SAVE_QUERIES) {
        return refusal;
    }
    let Some(name) = params.name else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "name the saved query to delete with ?name=".into(),
        );
    };
    let tenant = match target_tenant(&api.access, &scope, params.tenant.as_deref()) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match crate::saved::delete(api.engine.store().as_ref(), &tenant, &name).await {
        Ok(()) => {
            axum::Json(json!({"tenant": tenant, "name": name, "deleted": true})).into_response()
        }
        Err(e) => saved_error(&e),
    }
}

/// A streamed response: the body is encoded batch by batch as DataFusion
/// produces them. An error after the first bytes ends the body early (the
/// client sees a broken chunked response, never a silently short one).
fn streamed(format: ResultFormat, rows: QueryStream) -> Response {
    use futures::StreamExt;
    let QueryStream {
        schema, batches, ..
    } = rows;
    // The columns in order, for clients of NDJSON (whose rows are objects
    // that name only their non-null values, and an empty result none).
    let columns = serde_json::to_string(
        &schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
    )
    .unwrap_or_default();
    let (content_type, body) = match format {
        ResultFormat::Arrow => {
            let writer = match arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &schema) {
                Ok(w) => w,
                Err(e) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "encode_failed",
                        format!("starting the Arrow stream: {e}"),
                    );
                }
            };
            let body = futures::stream::unfold(
                (Some(writer), batches),
                |(writer, mut batches)| async move {
                    let mut writer = writer?;
                    match batches.next().await {
                        Some(Ok(batch)) => {
                            let written = writer.write(&batch);
                            let chunk = encoded(written, &mut writer);
                            Some((chunk, (Some(writer), batches)))
                        }
                        Some(Err(e)) => Some((Err(e), (None, batches))),
                        None => {
                            let finished = writer.finish();
                            Some((encoded(finished, &mut writer), (None, batches)))
                        }
                    }
                },
            )
            .boxed();
            ("application/vnd.apache.arrow.stream", body)
        }
        ResultFormat::Csv => {
            // The header goes with the first chunk, or alone for no rows.
            let header = schema
                .fields()
                .iter()
                .map(|f| csv_field(f.name()))
                .collect::<Vec<_>>()
                .join(",")
                + "\n";
            let rows = batches.map(|batch| {
                let batch = batch?;
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(false)
                    .build(Vec::new());
                writer
                    .write(&batch)
                    .map_err(|e| QueryError::Execution(format!("encoding rows: {e}")))?;
                Ok(writer.into_inner())
            });
            let body = futures::stream::once(async move { Ok(header.into_bytes()) })
                .chain(rows)
                .boxed();
            ("text/csv; charset=utf-8", body)
        }
        ResultFormat::Ndjson | ResultFormat::Json => {
            let body = batches
                .map(|batch| {
                    let batch = batch?;
                    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
                    writer
                        .write(&batch)
                        .and_then(|()| writer.finish())
                        .map_err(|e| QueryError::Execution(format!("encoding rows: {e}")))?;
                    Ok(writer.into_inner())
                })
                .boxed();
            ("application/x-ndjson", body)
        }
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(axum::http::header::CONTENT_TYPE, content_type)
        .header("x-columns", columns)
        .body(axum::body::Body::from_stream(body))
        .unwrap_or_else(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encode_failed",
                e.to_string(),
            )
        })
}

/// The bytes an Arrow stream writer produced since the last call, or the
/// error of the write that should have produced them.
fn encoded(
    written: Result<(), arrow::error::ArrowError>,
    writer: &mut arrow::ipc::writer::StreamWriter<Vec<u8>>,
) -> Result<Vec<u8>, QueryError> {
    written
        .map(|()| std::mem::take(writer.get_mut()))
        .map_err(|e| QueryError::Execution(format!("encoding rows: {e}")))
}

fn query_error(e: QueryError) -> Response {
    let status = match &e {
        QueryError::InvalidSql(_)
        | QueryError::TooLarge { .. }
        | QueryError::MemoryLimit(_)
        | QueryError::ScanLimit { .. } => StatusCode::BAD_REQUEST,
        QueryError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        QueryError::TooManyQueries { .. } => StatusCode::TOO_MANY_REQUESTS,
        QueryError::Cancelled => StatusCode::CONFLICT,
        QueryError::Catalog(c) if c.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "query failed");
    }
    error(status, e.code(), e.to_string())
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
        "query_id": out.query_id,
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

    pub(super) fn app() -> Router {
        let engine = QueryEngine::new(
            Arc::new(MemoryCatalog::new()),
            Arc::new(object_store::memory::InMemory::new()),
            QueryConfig {
                max_result_rows: 100,
                max_sql_bytes: 10_000,
                ..crate::engine::tests::config()
            },
        );
        router(
            engine,
            Access::new(
                spoor_common::config::HttpAuth::None,
                TenantId::new("default").expect("t"),
                Arc::new(spoor_common::auth::StaticTokens::default()),
                Arc::new(crate::access::FixedTenants::default()),
            ),
        )
    }

    async fn post(body: &str) -> (StatusCode, Value) {
        let (status, _, bytes) = post_raw(body).await;
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

    async fn post_raw(body: &str) -> (StatusCode, String, axum::body::Bytes) {
        let req = Request::post("/v1/query")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()));
        let resp = app()
            .oneshot(req.expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .expect("body");
        (status, content_type, bytes)
    }

    #[tokio::test]
    async fn streams_ndjson_and_arrow_capped_at_the_row_limit() {
        // 250 rows asked, 100 (query.max_result_rows here) streamed.
        let sql = "SELECT value AS v, CAST(value AS VARCHAR) AS s FROM generate_series(1, 250)";
        let (status, content_type, body) =
            post_raw(&format!(r#"{{"sql":"{sql}","format":"ndjson"}}"#)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/x-ndjson");
        let lines: Vec<Value> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines.len(), 100);
        assert_eq!(lines[0], json!({"v": 1, "s": "1"}));

        let (status, content_type, body) =
            post_raw(&format!(r#"{{"sql":"{sql}","format":"arrow"}}"#)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/vnd.apache.arrow.stream");
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body.to_vec()), None)
                .expect("an Arrow stream");
        assert_eq!(reader.schema().field(1).name(), "s");
        let rows: usize = reader.map(|b| b.expect("batch").num_rows()).sum();
        assert_eq!(rows, 100);

        let (status, content_type, body) =
            post_raw(r#"{"sql":"SELECT value AS v, 'a,b' AS \"odd,name\" FROM generate_series(1, 2)","format":"csv"}"#).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "text/csv; charset=utf-8");
        assert_eq!(
            String::from_utf8_lossy(&body),
            "v,\"odd,name\"\n1,\"a,b\"\n2,\"a,b\"\n"
        );

        // Errors before the first row are answered like any other.
        let (status, _, body) =
            post_raw(r#"{"sql":"SELECT nope FROM events","format":"ndjson"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let body: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"]["code"], "invalid_sql");
        let (status, _, body) = post_raw(r#"{"sql":"SELECT 1","format":"xml"}"#).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            String::from_utf8_lossy(&body).contains("ndjson"),
            "lists the formats"
        );
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

#[cfg(test)]
mod intel_tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn call(app: &Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    #[tokio::test]
    async fn indicator_lists_feed_ioc_match_and_the_intel_table() {
        // One app (one engine and store) for every call.
        let app = super::tests::app();
        let (status, body) = call(
            &app,
            "PUT",
            "/v1/intel/bad-ips",
            "# from the feed\n203.0.113.7\n198.51.100.0/24\nEvil.Example\n",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["indicators"], 3);
        let (status, body) = call(&app, "PUT", "/v1/intel/Bad%20Name", "x").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, body) = call(&app, "PUT", "/v1/intel/broken", "10.0.0.0/99\n").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("indicator 1")
        );

        let sql = |q: &str| format!(r#"{{"sql": "{q}"}}"#);
        let (status, body) = call(
            &app,
            "POST",
            "/v1/query",
            &sql("SELECT v, ioc_match(v, 'bad-ips') AS hit FROM (VALUES ('203.0.113.7'), ('198.51.100.9'), ('EVIL.EXAMPLE'), ('10.0.0.1'), (NULL)) AS t(v) ORDER BY v"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["rows"],
            json!([
                {"v": "10.0.0.1", "hit": false},
                {"v": "198.51.100.9", "hit": true},
                {"v": "203.0.113.7", "hit": true},
                {"v": "EVIL.EXAMPLE", "hit": true},
                {"v": null, "hit": null}
            ])
        );
        let (_, body) = call(
            &app,
            "POST",
            "/v1/query",
            &sql("SELECT list, count(*) AS n FROM intel GROUP BY list"),
        )
        .await;
        assert_eq!(body["rows"], json!([{"list": "bad-ips", "n": 3}]));
        let (status, body) = call(
            &app,
            "POST",
            "/v1/query",
            &sql("SELECT ioc_match('x', 'nope')"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(r#"no indicator list "nope" (lists: bad-ips)"#),
            "{body}"
        );
        let (_, body) = call(&app, "GET", "/v1/intel", "").await;
        assert_eq!(body["lists"][0]["list"], "bad-ips");
        assert_eq!(body["lists"][0]["tenant"], "default");
        let (status, _) = call(&app, "DELETE", "/v1/intel/bad-ips", "").await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = call(&app, "DELETE", "/v1/intel/bad-ips", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

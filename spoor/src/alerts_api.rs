//! The alert triage HTTP API, served by every node: analysts set an
//! alert's status and assignee, and read an alert with its history. The
//! changes are appended to the tenant's `alert_updates` table
//! (`spoor_query::triage`); SQL's `alerts` shows each alert's current
//! triage, so MTTD and MTTR are plain SQL.
//!
//! - `GET /v1/alerts/{tenant}/{alert_id}`: the alert as the `alerts` view
//!   shows it, and its history (`alert_updates` rows, oldest first).
//! - `PATCH /v1/alerts/{tenant}/{alert_id}` with any of
//!   `{"status": "new"|"acknowledged"|"closed", "assignee": "alice" | null,
//!   "note": "…"}`: records the change (a missing field keeps its value;
//!   `"assignee": null` unassigns) and answers it, with the status and
//!   assignee before it. `updated_by` is the caller's token id.
//!
//! Who may: exactly as for rules ([`crate::rules_api::access`]): with
//! `query.auth = "token"`, admin tokens and analyst tokens of the tenant;
//! with `query.auth = "none"`, anyone, for the default tenant only. An
//! alert id the tenant does not have is `404`, whoever else has it.
//!
//! Errors are `{"error": {"code", "message"}}` like every other route; a
//! refused field also says which in `error.field`.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Deserializer};
use serde_json::json;
use spoor_common::catalog::Catalog;
use spoor_common::config::Config;
use spoor_common::control::ControlClient;
use spoor_common::storage::open_lake;
use spoor_common::tenant::TenantId;
use spoor_query::QueryEngine;
use spoor_query::access::Access;
use spoor_query::triage::{TriageChange, TriageError, check_alert_id};

use crate::api::{Caller, TenantApi, error, error_with, json_body};

/// Largest request body: a note at its largest, with room for escaping.
const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
struct AlertsApi {
    engine: QueryEngine,
    access: Arc<Access>,
}

/// The alert routes, over the lake and catalog of any node.
pub(crate) fn router(
    config: &Config,
    catalog: &Arc<dyn Catalog>,
    control: &ControlClient,
    audit: &spoor_common::audit::AuditLog,
) -> anyhow::Result<Router> {
    use anyhow::Context;
    let store = open_lake(config).context("opening the lake (storage.url / data_dir)")?;
    let engine = QueryEngine::new(catalog.clone(), store, config.query.clone());
    Ok(routes(
        engine,
        crate::rules_api::access(config, control, audit),
    ))
}

fn routes(engine: QueryEngine, access: Access) -> Router {
    Router::new()
        .route(
            "/v1/alerts/{tenant}/{alert_id}",
            get(get_one)
                .patch(update)
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .with_state(AlertsApi {
            engine,
            access: Arc::new(access),
        })
}

impl TenantApi for AlertsApi {
    fn access(&self) -> &Access {
        &self.access
    }

    const DOING: &'static str = "alerts are triaged";
}

fn triage_error(e: &TriageError) -> Response {
    let message = e.to_string();
    match e {
        TriageError::Invalid { field, .. } => error_with(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            message,
            json!({ "field": field }),
        ),
        TriageError::NotFound { .. } => error(StatusCode::NOT_FOUND, "not_found", message),
        TriageError::Query { source, .. } if source.code() == "catalog_unavailable" => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "catalog_unavailable",
            message,
        ),
        TriageError::Catalog { source, .. } if source.is_retryable() => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "coordinator_unavailable",
            message,
        ),
        TriageError::Store { .. } => {
            tracing::warn!(error = %e, "alert update");
            error(StatusCode::SERVICE_UNAVAILABLE, "lake_unavailable", message)
        }
        TriageError::Query { .. } | TriageError::Catalog { .. } => {
            tracing::error!(error = %e, "alert update");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
        }
    }
}

/// `tenant` and `alert_id` from the path, as `caller` may reach them.
fn target(caller: &Caller, tenant: &str, alert_id: &str) -> Result<TenantId, Box<Response>> {
    let tenant = caller.tenant(tenant)?;
    check_alert_id(alert_id).map_err(|e| Box::new(triage_error(&e)))?;
    Ok(tenant)
}

async fn get_one(
    State(api): State<AlertsApi>,
    caller: Caller,
    Path((tenant, alert_id)): Path<(String, String)>,
) -> Response {
    let tenant = match target(&caller, &tenant, &alert_id) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match api.engine.alert_with_history(&tenant, &alert_id).await {
        Ok(Some(found)) => axum::Json(json!({
            "tenant": tenant,
            "alert": found.alert,
            "history": found.history,
        }))
        .into_response(),
        Ok(None) => triage_error(&TriageError::NotFound {
            tenant: tenant.to_string(),
            alert_id,
        }),
        Err(source) => triage_error(&TriageError::Query { alert_id, source }),
    }
}

/// Present (even as `null`) → `Some`, so a missing field and `null` differ.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The body of a `PATCH`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRequest {
    status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    assignee: Option<Option<String>>,
    note: Option<String>,
}

async fn update(
    State(api): State<AlertsApi>,
    caller: Caller,
    Path((tenant, alert_id)): Path<(String, String)>,
    body: Result<axum::Json<UpdateRequest>, JsonRejection>,
) -> Response {
    if let Err(r) = caller.may_change() {
        return *r;
    }
    let tenant = match target(&caller, &tenant, &alert_id) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let request = match json_body(
        body,
        r#"{"status": "new"|"acknowledged"|"closed", "assignee": "name"|null, "note": "text"}"#,
    ) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let change = TriageChange {
        status: request.status,
        assignee: request.assignee,
        note: request.note,
        updated_by: caller.scope.token_id().map(str::to_string),
    };
    // `update_alert` checks the change (and the alert id) before any I/O.
    let now = spoor_common::time::now_micros();
    match api
        .engine
        .update_alert(&tenant, &alert_id, &change, now)
        .await
    {
        Ok(done) => {
            tracing::info!(
                tenant = %tenant,
                alert_id = %alert_id,
                status = %done.status,
                previous_status = %done.previous_status,
                updated_by = ?done.updated_by,
                "alert updated"
            );
            axum::Json(json!({ "update": done })).into_response()
        }
        Err(e) => triage_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::{self, access, assert_bad_request, record};
    use axum::http::Method;
    use spoor_common::auth::StaticTokens;
    use spoor_common::catalog::MemoryCatalog;
    use spoor_common::config::HttpAuth;
    use spoor_common::control::TokenRole;

    /// A router over an empty lake: no tenant has any alert.
    fn app(mode: HttpAuth) -> Router {
        let tokens = StaticTokens::new([
            (
                "acme-analyst".to_string(),
                record("Analyst-acme", TokenRole::Analyst, &["acme"]),
            ),
            (
                "acme-ingest".to_string(),
                record("Ingest-acme", TokenRole::Ingest, &["acme"]),
            ),
            (
                "operator".to_string(),
                record("Admin-", TokenRole::Admin, &[]),
            ),
        ]);
        let engine = QueryEngine::new(
            Arc::new(MemoryCatalog::new()),
            Arc::new(object_store::memory::InMemory::new()),
            Config::load(None, std::iter::empty(), &[])
                .expect("default config")
                .query,
        );
        routes(engine, access(mode, tokens))
    }

    async fn send(
        app: &Router,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        testing::send(app, method, uri, token, body.map(str::to_string)).await
    }

    #[tokio::test]
    async fn only_admins_and_the_tenants_analysts_may_triage() {
        let app = app(HttpAuth::Token);
        let body = || Some(r#"{"status": "acknowledged"}"#);
        let uri = "/v1/alerts/acme/abc123";
        let (status, answer) = send(&app, Method::PATCH, uri, None, body()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        let (status, _) = send(&app, Method::PATCH, uri, Some("acme-ingest"), body()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, answer) = send(
            &app,
            Method::PATCH,
            "/v1/alerts/globex/abc123",
            Some("acme-analyst"),
            body(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["error"]["code"], "forbidden");
        // Allowed callers get as far as the lookup: no such alert.
        for (token, uri) in [
            ("acme-analyst", "/v1/alerts/acme/abc123"),
            ("operator", "/v1/alerts/globex/abc123"),
        ] {
            let (status, answer) = send(&app, Method::PATCH, uri, Some(token), body()).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{token}: {answer}");
            assert_eq!(answer["error"]["code"], "not_found");
            let (status, _) = send(&app, Method::GET, uri, Some(token), None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{token}");
        }
    }

    #[tokio::test]
    async fn bad_requests_name_the_field() {
        let app = app(HttpAuth::None);
        let uri = "/v1/alerts/default/abc123";
        let cases = [
            (r#"{"status": "done"}"#, "status"),
            (r#"{}"#, "status"),
            (r#"{"status": 3}"#, "status"),
            (r#"{"assignee": ""}"#, "assignee"),
            (r#"{"status": "closed", "owner": "bob"}"#, "owner"),
            (r#"{"note": "a\u0007b"}"#, "note"),
            ("not json", "expected"),
        ];
        for (body, says) in cases {
            let (status, answer) = send(&app, Method::PATCH, uri, None, Some(body)).await;
            assert_bad_request(status, &answer, "invalid_request", says, &body);
        }
        let long = format!(r#"{{"note": "{}"}}"#, "x".repeat(5000));
        let (status, answer) = send(&app, Method::PATCH, uri, None, Some(&long)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["field"], "note");
        let (status, answer) = send(
            &app,
            Method::PATCH,
            "/v1/alerts/default/a'b",
            None,
            Some(r#"{"status": "closed"}"#),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["field"], "alert_id");
        // With query.auth = "none" only the default tenant.
        let (status, _) = send(
            &app,
            Method::PATCH,
            "/v1/alerts/acme/abc123",
            None,
            Some(r#"{"status": "closed"}"#),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}

//! The tenant and token HTTP API, served by every node, for the console
//! and scripts; `spoor tenant` and `spoor token` do the same over gRPC
//! (both through `admin.rs`).
//!
//! - `GET /v1/tenants`: every tenant with its settings and `usage` (files,
//!   rows and bytes it stores, in all and per table).
//! - `POST /v1/tenants` with `{"id", …settings}`: registers a tenant (409
//!   `conflict` when the id is taken).
//! - `GET /v1/tenants/{id}`, `PATCH /v1/tenants/{id}` with the settings to
//!   change (`disabled: true` disables it).
//! - `GET /v1/tokens[?tenant=T]`: the tokens the caller may see, never
//!   their secrets or hashes.
//! - `POST /v1/tokens` with `{"role", "tenants", "description",
//!   "expires_in_seconds"}`: the new token, shown this once.
//! - `DELETE /v1/tokens/{id}`: revokes it.
//!
//! Every request needs `Authorization: Bearer <token>`, whatever
//! `query.auth` says: the token goes to the coordinators as the caller's
//! credential, and they decide what it may (docs/security.md: the
//! cluster's admin for tenants, a tenant-admin for its tenant's tokens).
//! This node's own cluster secret is never used for a caller, and a
//! caller presenting the cluster secret is refused: over HTTP only API
//! tokens manage the cluster.
//!
//! Errors are `{"error": {"code", "message"}}`: 401 `unauthenticated`,
//! 403 `forbidden`, 404 `not_found`, 409 `conflict`, 400
//! `invalid_request`, 503 `coordinator_unavailable`.

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::Value;
use spoor_common::audit::{AuditLog, AuditRecord};
use spoor_common::auth::{Credential, bearer};
use spoor_common::catalog::CatalogError;
use spoor_common::catalog_client::{PERMISSION_DENIED, UNAUTHENTICATED};
use spoor_common::control::ControlClient;

use crate::admin::{self, AdminError, NewToken, TENANT_FIELDS, TOKEN_FIELDS, TenantChanges};
use crate::api::{bad, error, json_body, query_params};

#[derive(Clone)]
struct AdminApi {
    control: ControlClient,
    audit: AuditLog,
}

impl AdminApi {
    /// The coordinators, reached with the caller's token; 401 without one.
    fn as_caller(&self, headers: &HeaderMap) -> Result<ControlClient, Box<Response>> {
        let refuse = |why: &str| {
            self.audit
                .record(AuditRecord::refusal("http", "unauthenticated", why));
            Box::new(error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                why.to_string(),
            ))
        };
        let token = bearer(headers).ok_or_else(|| {
            refuse(
                "tenants and tokens are managed with `Authorization: Bearer <token>` (the \
                 cluster's admin token, or a tenant-admin token for its tenant's tokens)",
            )
        })?;
        // Only API tokens: the cluster secret is for the roles' gRPC, and
        // must not open the cluster from an HTTP port (where no client
        // certificate is asked for).
        if spoor_common::control::token_id_of(token).is_none() {
            return Err(refuse(
                "the credential is not an API token (spoor_<id>_<secret>); tenants and tokens \
                 are managed over HTTP with an admin or tenant-admin token",
            ));
        }
        let credential =
            Credential::bearer(token).ok_or_else(|| refuse("the token is not printable ASCII"))?;
        Ok(self.control.clone().with_credential(credential))
    }
}

/// The tenant and token routes.
pub(crate) fn router(control: ControlClient, audit: AuditLog) -> Router {
    Router::new()
        .route("/v1/tenants", get(list_tenants).post(create_tenant))
        .route("/v1/tenants/{id}", get(show_tenant).patch(update_tenant))
        .route("/v1/tokens", get(list_tokens).post(create_token))
        .route("/v1/tokens/{id}", axum::routing::delete(revoke_token))
        .with_state(AdminApi { control, audit })
}

fn answer(status: StatusCode, result: Result<Value, AdminError>) -> Response {
    match result {
        Ok(v) => (status, axum::Json(v)).into_response(),
        Err(AdminError::Invalid(m)) => bad("invalid_request", m),
        Err(AdminError::NotFound(m)) => error(StatusCode::NOT_FOUND, "not_found", m),
        Err(AdminError::Conflict(m)) => error(StatusCode::CONFLICT, "conflict", m),
        Err(AdminError::Control(e)) => control_error(e),
    }
}

fn control_error(e: CatalogError) -> Response {
    match e {
        CatalogError::Denied { reason } => match reason.strip_prefix(UNAUTHENTICATED) {
            Some(why) => error(StatusCode::UNAUTHORIZED, "unauthenticated", why.to_string()),
            None => error(
                StatusCode::FORBIDDEN,
                "forbidden",
                reason
                    .strip_prefix(PERMISSION_DENIED)
                    .unwrap_or(&reason)
                    .to_string(),
            ),
        },
        CatalogError::Invalid { reason } => bad("invalid_request", reason),
        CatalogError::Conflict { reason } => error(StatusCode::CONFLICT, "conflict", reason),
        CatalogError::Unavailable { reason } => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "coordinator_unavailable",
            reason,
        ),
        e @ (CatalogError::HistoryCompacted { .. } | CatalogError::Internal { .. }) => {
            tracing::error!(error = %e, "tenant and token API");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        }
    }
}

async fn list_tenants(State(api): State<AdminApi>, headers: HeaderMap) -> Response {
    match api.as_caller(&headers) {
        Ok(control) => answer(StatusCode::OK, admin::list_tenants(&control).await),
        Err(r) => *r,
    }
}

async fn show_tenant(
    State(api): State<AdminApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match api.as_caller(&headers) {
        Ok(control) => answer(StatusCode::OK, admin::show_tenant(&control, &id).await),
        Err(r) => *r,
    }
}

async fn create_tenant(
    State(api): State<AdminApi>,
    headers: HeaderMap,
    body: Result<axum::Json<serde_json::Map<String, Value>>, JsonRejection>,
) -> Response {
    let control = match api.as_caller(&headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let expected = format!("\"id\" and {TENANT_FIELDS}");
    let mut fields = match json_body(body, &expected) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Some(Value::String(id)) = fields.remove("id") else {
        return bad(
            "invalid_request",
            format!("the tenant's \"id\" (a string) is missing; expected {expected}"),
        );
    };
    let changes: TenantChanges = match serde_json::from_value(Value::Object(fields)) {
        Ok(c) => c,
        Err(e) => return bad("invalid_request", format!("{e}; expected {expected}")),
    };
    answer(
        StatusCode::CREATED,
        admin::create_tenant(&control, &id, changes).await,
    )
}

async fn update_tenant(
    State(api): State<AdminApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<axum::Json<TenantChanges>, JsonRejection>,
) -> Response {
    let control = match api.as_caller(&headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let changes = match json_body(body, TENANT_FIELDS) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    answer(
        StatusCode::OK,
        admin::update_tenant(&control, &id, changes).await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFilter {
    tenant: Option<String>,
}

async fn list_tokens(
    State(api): State<AdminApi>,
    headers: HeaderMap,
    filter: Result<Query<TokenFilter>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let control = match api.as_caller(&headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let filter = match query_params(filter, "tenant=T (optional)") {
        Ok(f) => f,
        Err(r) => return *r,
    };
    answer(
        StatusCode::OK,
        admin::list_tokens(&control, filter.tenant.as_deref()).await,
    )
}

async fn create_token(
    State(api): State<AdminApi>,
    headers: HeaderMap,
    body: Result<axum::Json<NewToken>, JsonRejection>,
) -> Response {
    let control = match api.as_caller(&headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let new = match json_body(body, TOKEN_FIELDS) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    answer(
        StatusCode::CREATED,
        admin::create_token(&control, new).await,
    )
}

async fn revoke_token(
    State(api): State<AdminApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match api.as_caller(&headers) {
        Ok(control) => answer(StatusCode::OK, admin::revoke_token(&control, &id).await),
        Err(r) => *r,
    }
}

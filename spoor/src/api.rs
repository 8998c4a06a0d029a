//! What the HTTP APIs of this binary (`rules_api`, `retro_api`,
//! `alerts_api`) share: errors as `{"error": {"code", "message"}}`, the
//! caller's scope from its token ([`Caller`]), the tenants it may reach,
//! and request bodies and parameters refused saying what was expected.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use spoor_common::audit::AuditLog;
use spoor_common::auth::{CHANGE_DETECTIONS, bearer};
use spoor_common::tenant::TenantId;
use spoor_query::access::Access;
use spoor_query::audit::Scope;

/// The answer to a caller without a scope: `401 unauthenticated`,
/// `503 auth_unavailable` or `403 forbidden` (as for queries).
pub(crate) use spoor_query::http::access_error;

/// `{"error": {"code", "message"}}` with `status`.
pub(crate) fn error(status: StatusCode, code: &str, message: String) -> Response {
    error_with(status, code, message, Value::Null)
}

/// `400 Bad Request` with `code` and `message`.
pub(crate) fn bad(code: &str, message: String) -> Response {
    error(StatusCode::BAD_REQUEST, code, message)
}

/// An error with more fields beside `code` and `message` (`refusals`,
/// `field`, …): the fields of `extra`, an object (anything else adds none).
pub(crate) fn error_with(
    status: StatusCode,
    code: &str,
    message: String,
    extra: Value,
) -> Response {
    let mut error = json!({"code": code, "message": message});
    if let (Some(fields), Value::Object(extra)) = (error.as_object_mut(), extra) {
        fields.extend(extra);
    }
    (status, axum::Json(json!({ "error": error }))).into_response()
}

/// A JSON body, or `400 invalid_request` saying what is wrong with it and
/// `expected` (the fields of the body).
pub(crate) fn json_body<T>(
    body: Result<axum::Json<T>, JsonRejection>,
    expected: &str,
) -> Result<T, Box<Response>> {
    body.map(|axum::Json(b)| b).map_err(|e| {
        Box::new(bad(
            "invalid_request",
            format!("{}; expected {expected}", e.body_text()),
        ))
    })
}

/// Query parameters, or `400 invalid_request` saying what is wrong with
/// them and `expected` (`?tenant=T`).
pub(crate) fn query_params<T>(
    params: Result<Query<T>, QueryRejection>,
    expected: &str,
) -> Result<T, Box<Response>> {
    params
        .map(|Query(p)| p)
        .map_err(|e| Box::new(bad("invalid_request", format!("{e}; expected {expected}"))))
}

/// The state of an API whose routes take a [`Caller`]: who may do what,
/// and how refusals name it.
pub(crate) trait TenantApi: Send + Sync {
    /// The access rules (`crate::rules_api::access`).
    fn access(&self) -> &Access;

    /// What the API does, as a refusal of a tenant out of a token's reach
    /// ends: "`DOING` with an admin token or an analyst token of the
    /// tenant" ("rules are managed").
    const DOING: &'static str;

    /// Appended to the refusal of another tenant than the default one with
    /// `query.auth = "none"`.
    const WITHOUT_TOKENS: &'static str = "";
}

/// The caller's scope, from its token; answered (`401`, `403`, `503`)
/// before the body is read.
pub(crate) struct Caller {
    pub(crate) scope: Scope,
    /// False with `query.auth = "none"`.
    token: bool,
    /// [`TenantApi::DOING`] of the API called.
    doing: &'static str,
    /// [`TenantApi::WITHOUT_TOKENS`] of the API called.
    without_tokens: &'static str,
    /// Where refusals of a valid token are recorded.
    audit: AuditLog,
}

impl<S: TenantApi> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, api: &S) -> Result<Self, Response> {
        let access = api.access();
        access
            .scope(bearer(&parts.headers))
            .await
            .map(|scope| Caller {
                scope,
                token: access.requires_token(),
                doing: S::DOING,
                without_tokens: S::WITHOUT_TOKENS,
                audit: access.audit().clone(),
            })
            .map_err(|e| access_error(&e))
    }
}

impl Caller {
    /// Whether the caller is the cluster's admin: an admin token naming no
    /// tenant, or anyone with `query.auth = "none"` (where nodes are
    /// trusted on their network).
    pub(crate) fn is_cluster_admin(&self) -> bool {
        !self.token || self.scope.is_admin()
    }

    /// `Ok` when the caller may change detections (rules, triage,
    /// retro-hunts): every caller without tokens, analyst, tenant-admin and
    /// admin tokens; else `403 forbidden` saying which tokens may.
    pub(crate) fn may_change(&self) -> Result<(), Box<Response>> {
        match self.scope.role() {
            Some(role) if !CHANGE_DETECTIONS.allows(role) => {
                Err(self.forbidden(CHANGE_DETECTIONS.refuse(role).to_string()))
            }
            _ => Ok(()),
        }
    }

    /// `403 forbidden` with `reason`, recorded in the audit trail.
    pub(crate) fn forbidden(&self, reason: String) -> Box<Response> {
        self.audit
            .record(spoor_query::access::forbidden(&self.scope, "http", &reason));
        Box::new(error(StatusCode::FORBIDDEN, "forbidden", reason))
    }

    /// Whether the caller reaches `tenant`.
    pub(crate) fn may(&self, tenant: &TenantId) -> bool {
        self.scope.tenants().contains(tenant)
    }

    /// `name` as a tenant this caller reaches: else `400 invalid_tenant`
    /// or `403 forbidden`.
    pub(crate) fn tenant(&self, name: &str) -> Result<TenantId, Box<Response>> {
        let tenant = TenantId::new(name.to_string())
            .map_err(|e| Box::new(bad("invalid_tenant", format!("tenant {name:?}: {e}"))))?;
        if self.may(&tenant) {
            return Ok(tenant);
        }
        let message = if self.token {
            format!(
                "tenant {tenant} is not one of this token's tenants (or is not registered); \
                 {} with a token of the tenant (docs/security.md, Roles)",
                self.doing
            )
        } else {
            format!(
                "with query.auth = \"none\" only the default tenant ({}) is reachable{}",
                self.scope
                    .tenants()
                    .iter()
                    .map(TenantId::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                self.without_tokens
            )
        };
        Err(self.forbidden(message))
    }

    /// The tenant named (`param`), or the caller's only tenant: else
    /// `400 tenant_required`, saying to name one with `name_it`
    /// (`?tenant=`).
    pub(crate) fn tenant_or_only(
        &self,
        param: Option<&str>,
        name_it: &str,
    ) -> Result<TenantId, Box<Response>> {
        match (param, self.scope.tenants()) {
            (Some(name), _) => self.tenant(name),
            (None, [only]) => Ok(only.clone()),
            (None, _) => Err(Box::new(bad(
                "tenant_required",
                format!("this token reaches several tenants: name one with {name_it}"),
            ))),
        }
    }
}

/// Helpers for the tests of the APIs: tokens, access, unreachable
/// coordinators, and a request through a router.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use serde_json::{Value, json};
    use spoor_common::auth::StaticTokens;
    use spoor_common::config::HttpAuth;
    use spoor_common::control::{ControlClient, TokenRecord, TokenRole};
    use spoor_common::tenant::TenantId;
    use spoor_query::access::{Access, FixedTenants};
    use tower::ServiceExt;

    pub(crate) fn tenant(name: &str) -> TenantId {
        TenantId::new(name).expect("tenant")
    }

    /// A token `token_id` of `role` for `tenants`.
    pub(crate) fn record(token_id: &str, role: TokenRole, tenants: &[&str]) -> TokenRecord {
        TokenRecord {
            token_id: token_id.into(),
            tenants: tenants.iter().map(|t| tenant(t)).collect(),
            role,
            secret_sha256: String::new(),
            description: String::new(),
            revoked: false,
            expires_at_micros: None,
        }
    }

    /// Access as `mode` says with `tokens`: tenants `acme` and `globex`
    /// registered, `default` the default tenant.
    pub(crate) fn access(mode: HttpAuth, tokens: StaticTokens) -> Access {
        Access::new(
            mode,
            tenant("default"),
            Arc::new(tokens),
            Arc::new(FixedTenants(vec![tenant("acme"), tenant("globex")])),
        )
    }

    /// A client of coordinators that cannot be reached: everything decided
    /// before they are asked can be tested.
    pub(crate) fn unreachable_control() -> ControlClient {
        ControlClient::connect_lazy("http://127.0.0.1:1", std::time::Duration::from_millis(500))
            .expect("client")
    }

    /// Asserts that `status` and `answer` are a `400` error `code` whose
    /// message says `says`; `request` names the request in the failure.
    pub(crate) fn assert_bad_request(
        status: StatusCode,
        answer: &Value,
        code: &str,
        says: &str,
        request: &dyn std::fmt::Display,
    ) {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{request}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{request}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{request}: {answer}"
        );
    }

    /// `method uri` with `token` (as a bearer token) and a JSON `body`
    /// through `app`: the status and the answer (`{"raw": bytes}` when it
    /// is not JSON).
    pub(crate) async fn send(
        app: &Router,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b)),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let resp = app.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({"raw": bytes.to_vec()})),
        )
    }
}

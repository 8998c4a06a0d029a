//! The rule set HTTP API, served by every node (the console and
//! `spoor rules apply|list` use it); the rule sets themselves live in the
//! coordinators' Raft state.
//!
//! - `GET /v1/rules/sets?tenant=T[&content=true]`: the tenant's rule sets
//!   (name, version, enabled, updated_at, files), their bundles only with
//!   `content=true`. `tenant` may be left out when the caller reaches one
//!   tenant.
//! - `GET /v1/rules/sets/{tenant}/{name}`: one rule set with its bundle.
//! - `GET /v1/rules/sets/{tenant}/{name}/compiled`: every rule of the set
//!   as the engine compiled it (`spoor rules explain`): id, title, level,
//!   kind, the compiled form in words, and the refusals and warnings.
//! - `PUT /v1/rules/sets/{tenant}/{name}` with `{"bundle": <RuleBundle>,
//!   "expected_version": N, "enabled": true, "buckets": 1}`: compiles the
//!   bundle as `spoor rules check` does (any refused rule: 400
//!   `rules_refused`, every refusal as `file:line: reason` in
//!   `error.refusals`), stores it as version N + 1 (N: the version the
//!   caller read, 0 for a new set; someone else's change in between: 409
//!   `conflict`), then defines the rule group's shards (`buckets` key
//!   buckets; buckets are added, never removed). The same bundle and
//!   enablement as version N is no new version (`"changed": false`).
//!
//! Who may: with `query.auth = "token"`, admin tokens and analyst tokens
//! of the tenant ([`Access`], as for queries: an admin token naming no
//! tenant reaches every registered tenant); with `query.auth = "none"`,
//! anyone, for the default tenant (`ingest.tenant`) only.
//!
//! Errors are `{"error": {"code", "message"}}` like every other route.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use spoor_common::audit::{AuditLog, AuditRecord};
use spoor_common::auth::CoordinatorTokens;
use spoor_common::catalog::CatalogError;
use spoor_common::config::Config;
use spoor_common::control::{ControlClient, MAX_RULE_SET_BYTES, RuleSet};
use spoor_common::tenant::TenantId;
use spoor_coordinator::control_state::MAX_BUCKETS;
use spoor_correlate::bundle::RuleBundle;
use spoor_query::access::Access;

use crate::api::{Caller, TenantApi, error, error_with, json_body, query_params};

/// Largest request body: a rule set at its largest, with room for JSON
/// escaping and the request's other fields.
const MAX_BODY_BYTES: usize = 2 * MAX_RULE_SET_BYTES + 64 * 1024;

#[derive(Clone)]
struct RulesApi {
    control: ControlClient,
    access: Arc<Access>,
}

impl TenantApi for RulesApi {
    fn access(&self) -> &Access {
        &self.access
    }
    const DOING: &'static str = "rules are managed";
    const WITHOUT_TOKENS: &'static str =
        "; set query.auth = \"token\" to manage the rules of other tenants";
}

/// The rule set routes.
pub(crate) fn router(control: ControlClient, access: Access) -> Router {
    Router::new()
        .route("/v1/rules/sets", get(list))
        .route(
            "/v1/rules/sets/{tenant}/{name}",
            get(get_one)
                .put(put)
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .route("/v1/rules/sets/{tenant}/{name}/compiled", get(compiled))
        .with_state(RulesApi {
            control,
            access: Arc::new(access),
        })
}

/// Who may do what, as `query.auth` says, for nodes of any role: the rules,
/// alerts and retro-hunt APIs and the query role share it. Refusals go to
/// `audit`.
pub(crate) fn access(config: &Config, control: &ControlClient, audit: &AuditLog) -> Access {
    Access::new(
        config.query.auth,
        config.ingest_tenant(),
        Arc::new(CoordinatorTokens::new(control.clone())),
        Arc::new(control.clone()),
    )
    .with_audit(audit.clone())
}

fn control_error(what: &str, e: &CatalogError) -> Response {
    let (status, code) = match e {
        CatalogError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid_rule_set"),
        CatalogError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
        CatalogError::Unavailable { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "coordinator_unavailable")
        }
        CatalogError::HistoryCompacted { .. }
        | CatalogError::Internal { .. }
        // This node's own credential (cluster.secret_file) was refused.
        | CatalogError::Denied { .. } => {
            tracing::error!(error = %e, what, "rule sets");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    };
    error(status, code, format!("{what}: {e}"))
}

/// A rule set as the API shows it: everything but the content, which
/// comes as its bundle when `with_bundle`.
fn summary(set: &RuleSet, with_bundle: bool) -> Value {
    let mut out = json!({
        "tenant": set.tenant,
        "name": set.name,
        "version": set.version,
        "enabled": set.enabled,
        "updated_at": spoor_common::time::to_datetime(set.updated_at_micros).to_rfc3339(),
        "updated_at_micros": set.updated_at_micros,
    });
    match RuleBundle::from_content(&set.content) {
        Ok(bundle) => {
            out["files"] = json!(bundle.rules.len());
            out["mapping_files"] = json!(bundle.mappings.len());
            if with_bundle {
                out["bundle"] = serde_json::to_value(&bundle).unwrap_or(Value::Null);
            }
        }
        // Stored by something other than this API: shown, not hidden.
        Err(e) => {
            out["files"] = Value::Null;
            out["content_error"] = json!(e);
            if with_bundle {
                out["content"] = json!(set.content);
            }
        }
    }
    out
}

async fn stored(
    control: &ControlClient,
    tenant: &TenantId,
    name: &str,
) -> Result<Option<RuleSet>, Response> {
    control
        .rule_sets(tenant)
        .await
        .map(|sets| sets.into_iter().find(|s| s.name == name))
        .map_err(|e| control_error(&format!("reading the rule sets of tenant {tenant}"), &e))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    tenant: Option<String>,
    #[serde(default)]
    content: bool,
}

async fn list(
    State(api): State<RulesApi>,
    caller: Caller,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = match query_params(params, "?tenant=T&content=true|false") {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let tenant = match caller.tenant_or_only(params.tenant.as_deref(), "?tenant=") {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match api.control.rule_sets(&tenant).await {
        Ok(sets) => axum::Json(json!({
            "tenant": tenant,
            "rule_sets": sets.iter().map(|s| summary(s, params.content)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => control_error(&format!("reading the rule sets of tenant {tenant}"), &e),
    }
}

async fn get_one(
    State(api): State<RulesApi>,
    caller: Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> Response {
    let tenant = match caller.tenant(&tenant) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match stored_or_not_found(&api.control, &tenant, &name).await {
        Ok(set) => axum::Json(summary(&set, true)).into_response(),
        Err(r) => r,
    }
}

/// The rule set, or `404 not_found` naming it.
async fn stored_or_not_found(
    control: &ControlClient,
    tenant: &TenantId,
    name: &str,
) -> Result<RuleSet, Response> {
    match stored(control, tenant, name).await? {
        Some(set) => Ok(set),
        None => Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("tenant {tenant} has no rule set named {name:?}"),
        )),
    }
}

async fn compiled(
    State(api): State<RulesApi>,
    caller: Caller,
    Path((tenant, name)): Path<(String, String)>,
) -> Response {
    let tenant = match caller.tenant(&tenant) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let set = match stored_or_not_found(&api.control, &tenant, &name).await {
        Ok(set) => set,
        Err(r) => return r,
    };
    let bundle = match RuleBundle::from_content(&set.content) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "content_error",
                format!("rule set {name:?} of tenant {tenant} does not read as a bundle: {e}"),
            );
        }
    };
    // Compiling plans SQL rules on a thread of its own: keep it off the
    // runtime's workers.
    let checked = tokio::task::spawn_blocking(move || bundle.check()).await;
    let compiled = match checked {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return error(StatusCode::UNPROCESSABLE_ENTITY, "content_error", e),
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "compile_failed",
                format!("compiling rule set {name:?}: {e}"),
            );
        }
    };
    let engine = &compiled.engine;
    let mut rules = Vec::new();
    let mut rule = |info: &spoor_correlate::engine::RuleInfo, kind: &str| {
        rules.push(json!({
            "key": info.key(),
            "id": info.id,
            "title": info.title,
            "level": info.level,
            "tags": info.tags,
            "kind": kind,
            "file": info.file,
            "line": info.line,
            "compiled": engine.explain(info.key()).join("\n"),
        }));
    };
    for d in &engine.detections {
        rule(&d.info, "detection");
    }
    for c in &engine.correlations {
        rule(&c.info, "correlation");
    }
    for (info, _) in &engine.sql_rules {
        rule(info, "sql");
    }
    let findings: Vec<Value> = compiled
        .findings
        .iter()
        .map(|f| {
            json!({
                "file": f.issue.file,
                "line": f.issue.line,
                "rule": f.issue.rule,
                "message": f.issue.message,
                "warning": f.issue.warning,
            })
        })
        .collect();
    axum::Json(json!({
        "tenant": tenant,
        "name": set.name,
        "version": set.version,
        "enabled": set.enabled,
        "rules": rules,
        "findings": findings,
    }))
    .into_response()
}

/// The body of a `PUT`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutRequest {
    /// The rules.
    bundle: RuleBundle,
    /// The version the caller read (0: a new rule set).
    #[serde(default)]
    expected_version: u64,
    /// Whether workers run it.
    #[serde(default = "spoor_common::control::rule_set_enabled_by_default")]
    enabled: bool,
    /// Key buckets of the rule group.
    #[serde(default = "one_bucket")]
    buckets: u32,
}

fn one_bucket() -> u32 {
    1
}

async fn put(
    State(api): State<RulesApi>,
    caller: Caller,
    Path((tenant, name)): Path<(String, String)>,
    body: Result<axum::Json<PutRequest>, JsonRejection>,
) -> Response {
    if let Err(r) = caller.may_change() {
        return *r;
    }
    let tenant = match caller.tenant(&tenant) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let request = match json_body(
        body,
        "{\"bundle\": {\"rules\": [{\"path\", \"text\"}, …], \"mappings\", \"placeholders\"}, \"expected_version\", \"enabled\", \"buckets\"}",
    ) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if name.is_empty() || name.len() > 200 || name.contains('/') {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_rule_set",
            format!("rule set name {name:?} must be 1..=200 bytes without '/'"),
        );
    }
    if request.buckets == 0 || request.buckets > MAX_BUCKETS {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_rule_set",
            format!("buckets must be 1..={MAX_BUCKETS}, not {}", request.buckets),
        );
    }
    if let Err(e) = request.bundle.validate() {
        return error(StatusCode::BAD_REQUEST, "invalid_bundle", e);
    }
    let content = request.bundle.to_content();
    if content.len() > MAX_RULE_SET_BYTES {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "rule set {name} is {} bytes, more than the {MAX_RULE_SET_BYTES} allowed; split it into several rule sets",
                content.len()
            ),
        );
    }
    // Compiling is CPU work (and plans SQL rules on a thread of its own).
    let bundle = request.bundle;
    let checked = tokio::task::spawn_blocking(move || {
        bundle.check().map(|c| {
            let refusals: Vec<String> = c
                .findings
                .iter()
                .filter(|f| f.is_refusal())
                .map(ToString::to_string)
                .collect();
            let warnings: Vec<String> = c
                .findings
                .iter()
                .filter(|f| !f.is_refusal())
                .map(ToString::to_string)
                .collect();
            (bundle, c.rules(), refusals, warnings)
        })
    })
    .await;
    let (bundle, rules, refusals, warnings) = match checked {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, "invalid_bundle", e),
        Err(e) => {
            tracing::error!(error = %e, tenant = %tenant, rule_set = %name, "compiling a rule set");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("compiling rule set {name} failed: {e}"),
            );
        }
    };
    if !refusals.is_empty() {
        return error_with(
            StatusCode::BAD_REQUEST,
            "rules_refused",
            format!(
                "{} rule(s) of rule set {name} refused; nothing stored: {}",
                refusals.len(),
                refusals.join("; ")
            ),
            json!({"refusals": refusals, "warnings": warnings}),
        );
    }
    let current = match stored(&api.control, &tenant, &name).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let unchanged = current.as_ref().filter(|c| {
        c.version == request.expected_version
            && c.enabled == request.enabled
            && RuleBundle::from_content(&c.content).is_ok_and(|b| b == bundle)
    });
    let (set, changed) = match unchanged {
        Some(c) => (c.clone(), false),
        None => match api
            .control
            .put_rule_set(
                &tenant,
                &name,
                &content,
                request.enabled,
                request.expected_version,
            )
            .await
        {
            Ok(set) => (set, true),
            Err(e) => {
                return control_error(&format!("storing rule set {name} of tenant {tenant}"), &e);
            }
        },
    };
    // Shards after the rule set: a failure here leaves the version stored,
    // and the same request again (a retry) only defines the shards.
    if let Err(e) = api
        .control
        .define_shards(&tenant, &name, request.buckets)
        .await
    {
        return control_error(
            &format!(
                "rule set {name} of tenant {tenant} is stored as version {}, but its shards are not defined (send the same request again)",
                set.version
            ),
            &e,
        );
    }
    if changed {
        tracing::info!(tenant = %tenant, rule_set = %name, version = set.version, enabled = set.enabled, rules, "rule set stored");
        api.access.audit().record(AuditRecord {
            actor: caller.scope.token_id().map(str::to_string),
            role: caller.scope.role().map(|r| r.name().to_string()),
            tenants: vec![tenant.to_string()],
            target: Some(format!("{tenant}/{name}")),
            detail: Some(format!(
                "version {}, {rules} rules, {}",
                set.version,
                if set.enabled { "enabled" } else { "disabled" }
            )),
            ..AuditRecord::new("rule_set_changed", "http")
        });
    }
    axum::Json(json!({
        "changed": changed,
        "rule_set": summary(&set, false),
        "rules": rules,
        "warnings": warnings,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::{
        self, access, assert_bad_request, record, tenant, unreachable_control,
    };
    use axum::http::Method;
    use spoor_common::auth::StaticTokens;
    use spoor_common::config::HttpAuth;
    use spoor_common::control::TokenRole;

    /// A router whose coordinators are unreachable: everything decided
    /// before the coordinators are asked can be tested.
    fn app(mode: HttpAuth) -> Router {
        let tokens = StaticTokens::new([
            (
                "acme-analyst".to_string(),
                record("t", TokenRole::Analyst, &["acme"]),
            ),
            (
                "acme-ingest".to_string(),
                record("t", TokenRole::Ingest, &["acme"]),
            ),
            ("operator".to_string(), record("t", TokenRole::Admin, &[])),
        ]);
        router(unreachable_control(), access(mode, tokens))
    }

    async fn send(
        app: &Router,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        testing::send(app, method, uri, token, body.map(|b| b.to_string())).await
    }

    fn bundle(text: &str) -> Value {
        json!({"rules": [{"path": "windows/x.yml", "text": text}]})
    }

    const GOOD: &str = "title: ok\nlogsource: {product: windows, category: process_creation}\ndetection:\n  sel: {Image|endswith: '\\\\x.exe'}\n  condition: sel\n";

    const REFUSED: &str =
        "title: bad\ndetection:\n  sel:\n    Image|startwith: x\n  condition: sel\n";

    #[tokio::test]
    async fn only_admins_and_the_tenants_analysts_may_manage_its_rules() {
        let app = app(HttpAuth::Token);
        let body = || Some(json!({"bundle": bundle(GOOD)}));
        let uri = "/v1/rules/sets/acme/windows";
        let (status, answer) = send(&app, Method::PUT, uri, None, body()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
        assert_eq!(answer["error"]["code"], "unauthenticated");
        let (status, answer) = send(&app, Method::PUT, uri, Some("acme-ingest"), body()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        let (status, answer) = send(
            &app,
            Method::PUT,
            "/v1/rules/sets/globex/windows",
            Some("acme-analyst"),
            body(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("globex")),
            "{answer}"
        );
        let (status, _) = send(
            &app,
            Method::GET,
            "/v1/rules/sets?tenant=globex",
            Some("acme-analyst"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Allowed callers get as far as the (unreachable) coordinators.
        for (token, uri) in [
            ("acme-analyst", "/v1/rules/sets/acme/windows"),
            ("operator", "/v1/rules/sets/globex/windows"),
        ] {
            let (status, answer) = send(&app, Method::PUT, uri, Some(token), body()).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{token}: {answer}");
            assert_eq!(answer["error"]["code"], "coordinator_unavailable");
        }
        let (status, _) = send(
            &app,
            Method::GET,
            "/v1/rules/sets",
            Some("acme-analyst"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "its only tenant");
        let (status, answer) =
            send(&app, Method::GET, "/v1/rules/sets", Some("operator"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["code"], "tenant_required");
    }

    #[tokio::test]
    async fn without_tokens_only_the_default_tenant_is_reachable() {
        let app = app(HttpAuth::None);
        let body = Some(json!({"bundle": bundle(GOOD)}));
        let (status, answer) = send(
            &app,
            Method::PUT,
            "/v1/rules/sets/acme/windows",
            None,
            body.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("query.auth")),
            "{answer}"
        );
        let (status, _) = send(
            &app,
            Method::PUT,
            "/v1/rules/sets/default/windows",
            None,
            body,
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn refused_rules_are_listed_with_file_and_line_and_nothing_is_stored() {
        let app = app(HttpAuth::None);
        let body = json!({"rules": [
            {"path": "windows/ok.yml", "text": GOOD},
            {"path": "windows/bad.yml", "text": REFUSED},
        ]});
        let (status, answer) = send(
            &app,
            Method::PUT,
            "/v1/rules/sets/default/windows",
            None,
            Some(json!({"bundle": body, "expected_version": 0})),
        )
        .await;
        // Refused before the coordinators are asked (they are unreachable).
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["code"], "rules_refused");
        assert_eq!(
            answer["error"]["refusals"],
            json!(["windows/bad.yml:4:5: unknown value modifier `startwith` in `Image|startwith`"])
        );
    }

    #[tokio::test]
    async fn bad_requests_say_what_is_wrong() {
        let app = app(HttpAuth::None);
        let uri = "/v1/rules/sets/default/windows";
        let cases = [
            (
                json!({"bundle": bundle(GOOD), "buckets": 0}),
                "invalid_rule_set",
                "buckets",
            ),
            (
                json!({"bundle": bundle(GOOD), "bucket": 2}),
                "invalid_request",
                "unknown field `bucket`",
            ),
            (
                json!({"bundle": {"rules": []}}),
                "invalid_bundle",
                "no rule files",
            ),
            (
                json!({"expected_version": 1}),
                "invalid_request",
                "missing field `bundle`",
            ),
            (
                json!({"bundle": {"rules": [{"path": "m.yml", "text": GOOD}], "mappings": [{"path": "m.toml", "text": "family = 1"}]}}),
                "invalid_bundle",
                "m.toml",
            ),
        ];
        for (body, code, says) in cases {
            let (status, answer) = send(&app, Method::PUT, uri, None, Some(body.clone())).await;
            assert_bad_request(status, &answer, code, says, &body);
        }
        let (status, answer) = send(
            &app,
            Method::PUT,
            "/v1/rules/sets/default/a%2Fb",
            None,
            Some(json!({"bundle": bundle(GOOD)})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_rule_set");
        let (status, answer) = send(
            &app,
            Method::PUT,
            "/v1/rules/sets/Not%20A%20Tenant/windows",
            None,
            Some(json!({"bundle": bundle(GOOD)})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_tenant");
    }

    #[test]
    fn summaries_count_files_and_show_the_bundle_only_when_asked() {
        let set = RuleSet {
            tenant: tenant("acme"),
            name: "windows".into(),
            version: 3,
            content: RuleBundle::from_content(&bundle(GOOD).to_string())
                .expect("bundle")
                .to_content(),
            updated_at_micros: 1_700_000_000_000_000,
            enabled: false,
        };
        let s = summary(&set, false);
        assert_eq!(
            (&s["version"], &s["enabled"], &s["files"]),
            (&json!(3), &json!(false), &json!(1))
        );
        assert_eq!(s["updated_at"], "2023-11-14T22:13:20+00:00");
        assert!(s.get("bundle").is_none(), "{s}");
        assert_eq!(
            summary(&set, true)["bundle"]["rules"][0]["path"],
            "windows/x.yml"
        );
        let raw = RuleSet {
            content: "not a bundle".into(),
            ..set
        };
        let s = summary(&raw, true);
        assert!(
            s["files"].is_null() && s["content_error"].is_string(),
            "{s}"
        );
        assert_eq!(s["content"], "not a bundle");
    }
}

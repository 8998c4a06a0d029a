//! The retro-hunt HTTP API, served by every node: a rule set run over a
//! past time range of a tenant's lake as a job on the node that accepted
//! it (`spoor_correlate::worker::retro`; docs/rules.md, Retro-hunts).
//!
//! - `POST /v1/retro-hunts` with `{"tenant", "rule_set": name | "bundle":
//!   <RuleBundle>, "from": RFC 3339, "to": RFC 3339, "job_id"?}`: checks,
//!   starts the job, answers `202` with the job. A stored rule set runs at
//!   its current version; a bundle is compiled as `PUT /v1/rules/sets`
//!   compiles one (any refused rule: `400 rules_refused`). `job_id` is for
//!   running a job again (after a failure, a cancellation, or the loss of
//!   the node that ran it): the new run commits only the alerts the earlier
//!   ones did not. `"dry_run": true` finds and counts the alerts and
//!   commits none; the job then shows its first 50 in `sample` (the
//!   console's "test this rule").
//! - `GET /v1/retro-hunts?tenant=T`: this node's jobs of the tenant.
//! - `GET /v1/retro-hunts/{job_id}`: one job's progress.
//! - `DELETE /v1/retro-hunts/{job_id}`: cancels it (it stops after the
//!   file it is reading; what it committed stays).
//!
//! Who may: as for the rules API ([`crate::rules_api::access`]). Jobs are
//! kept in memory on their node: another node does not know them, and a
//! restart forgets them (their alerts stay in `alerts`).

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use spoor_common::catalog::Catalog;
use spoor_common::config::Config;
use spoor_common::control::{ControlClient, MAX_RULE_SET_BYTES};
use spoor_common::tenant::TenantId;
use spoor_correlate::bundle::RuleBundle;
use spoor_correlate::engine::Engine;
use spoor_correlate::worker::retro::{
    HuntSettings, HuntSpec, Job, RetroHunter, RetroHunts, SubmitError, new_job_id, valid_job_id,
};
use spoor_query::access::Access;

use crate::api::{Caller, TenantApi, bad, error, error_with, json_body, query_params};

/// Largest request body: a bundle at its largest, with room for escaping.
const MAX_BODY_BYTES: usize = 2 * MAX_RULE_SET_BYTES + 64 * 1024;

/// The `rule_set` column of the alerts of rules sent with the job.
const AD_HOC: &str = "ad-hoc";

/// Said with every listing: where jobs live.
const KEPT_NOTE: &str = "jobs are kept in memory on the node that accepted them: \
     this lists this node's jobs, and a restart of the node forgets them (their alerts stay in `alerts`)";

#[derive(Clone)]
struct RetroApi {
    control: ControlClient,
    access: Arc<Access>,
    hunts: Arc<RetroHunts>,
    node_id: u64,
    max_range_micros: i64,
}

impl TenantApi for RetroApi {
    fn access(&self) -> &Access {
        &self.access
    }
    const DOING: &'static str = "retro-hunts are run";
}

/// The retro-hunt routes of a node.
pub(crate) fn router(
    config: &Config,
    catalog: &Arc<dyn Catalog>,
    control: &ControlClient,
    audit: &spoor_common::audit::AuditLog,
) -> anyhow::Result<Router> {
    use anyhow::Context;
    let store = spoor_common::storage::open_lake(config)
        .context("opening the lake for retro-hunts (storage.url / data_dir)")?;
    let r = &config.retro_hunt;
    let settings = HuntSettings {
        files_per_commit: r.files_per_commit,
        alerts_per_commit: r.alerts_per_commit,
        allowed_lateness_micros: i64::try_from(
            config.worker.allowed_lateness_ms.saturating_mul(1000),
        )
        .unwrap_or(i64::MAX),
        max_window_entries: config.worker.max_window_entries,
    };
    let hunts = RetroHunts::new(
        RetroHunter::new(catalog.clone(), store, settings),
        r.max_concurrent_jobs,
    );
    let access = crate::rules_api::access(config, control, audit);
    Ok(routes(
        control.clone(),
        access,
        hunts,
        config.node.id,
        r.max_range_days,
    ))
}

fn routes(
    control: ControlClient,
    access: Access,
    hunts: RetroHunts,
    node_id: u64,
    max_range_days: u64,
) -> Router {
    let max_range_micros = i64::try_from(max_range_days)
        .unwrap_or(i64::MAX)
        .saturating_mul(86_400_000_000);
    Router::new()
        .route(
            "/v1/retro-hunts",
            get(list)
                .post(submit)
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .route("/v1/retro-hunts/{job_id}", get(get_one).delete(cancel))
        .with_state(RetroApi {
            control,
            access: Arc::new(access),
            hunts: Arc::new(hunts),
            node_id,
            max_range_micros,
        })
}

fn time_text(micros: Option<i64>) -> Value {
    micros.map_or(Value::Null, |m| {
        json!(spoor_common::time::to_datetime(m).to_rfc3339())
    })
}

/// A job as the API shows it.
fn job_json(job: &Job, node_id: u64) -> Value {
    let p = job.progress();
    json!({
        "job_id": job.job_id,
        "tenant": job.tenant,
        "rule_set": job.rule_set,
        "rule_set_version": job.rule_set_version,
        "from": time_text(Some(job.from_micros)),
        "to": time_text(Some(job.to_micros)),
        "node": node_id,
        "state": p.state.name(),
        "files_total": p.files_total,
        "files_done": p.files_done,
        "events_evaluated": p.events_evaluated,
        "alerts_found": p.alerts_found,
        "alerts_committed": p.alerts_committed,
        "alerts_already_committed": p.alerts_already_committed,
        "submitted_at": time_text(Some(job.submitted_at_micros)),
        "started_at": time_text(p.started_at_micros),
        "finished_at": time_text(p.finished_at_micros),
        "error": p.error,
        "dry_run": job.dry_run,
        "sample": p.sample.iter().map(|a| json!({
            "rule_id": a.rule_id,
            "rule_title": a.rule_title,
            "rule_level": a.rule_level,
            "first_event_time": time_text(Some(a.first_event_micros)),
            "last_event_time": time_text(Some(a.last_event_micros)),
            "group_key": a
                .group_key
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                .collect::<serde_json::Map<String, Value>>(),
            "event_count": a.event_count,
        })).collect::<Vec<_>>(),
    })
}

/// The body of a `POST`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitRequest {
    tenant: Option<String>,
    rule_set: Option<String>,
    bundle: Option<RuleBundle>,
    from: Option<String>,
    to: Option<String>,
    job_id: Option<String>,
    /// Find and count the alerts without committing them ("test this rule").
    #[serde(default)]
    dry_run: bool,
}

/// `field` as RFC 3339, in µs.
fn parse_time(field: &str, value: Option<&str>) -> Result<i64, Box<Response>> {
    let Some(text) = value else {
        return Err(Box::new(bad(
            "invalid_time",
            format!("{field} is required: an RFC 3339 time such as 2026-11-30T08:00:00Z"),
        )));
    };
    spoor_correlate::worker::retro::parse_time(text).map_err(|e| {
        Box::new(bad(
            "invalid_time",
            format!("{field} {text:?} is not an RFC 3339 time such as 2026-11-30T08:00:00Z: {e}"),
        ))
    })
}

/// The rules to run: the stored rule set at its current version, or the
/// bundle sent, compiled.
async fn rules(
    api: &RetroApi,
    tenant: &TenantId,
    request: SubmitRequest,
) -> Result<(String, u64, Engine), Response> {
    match (request.rule_set, request.bundle) {
        (Some(_), Some(_)) => Err(bad(
            "invalid_request",
            "give either rule_set (a stored rule set) or bundle (rules to run), not both".into(),
        )),
        (None, None) => Err(bad(
            "invalid_request",
            "rule_set (the name of a stored rule set) or bundle (rules to run) is required".into(),
        )),
        (Some(name), None) => {
            let sets = api.control.rule_sets(tenant).await.map_err(|e| {
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "coordinator_unavailable",
                    format!("reading the rule sets of tenant {tenant}: {e}"),
                )
            })?;
            let set = sets.into_iter().find(|s| s.name == name).ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("rule_set: tenant {tenant} has no rule set named {name:?}"),
                )
            })?;
            let (content, version) = (set.content, set.version);
            let compiled = tokio::task::spawn_blocking(move || {
                RuleBundle::from_content(&content).and_then(|b| b.compile())
            })
            .await
            .map_err(|e| {
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("compiling rule set {name}: {e}"),
                )
            })?;
            let (engine, _) = compiled.map_err(|e| {
                error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_rule_set",
                    format!("rule set {name} version {version} does not compile: {e}"),
                )
            })?;
            Ok((name, version, engine))
        }
        (None, Some(bundle)) => {
            bundle.validate().map_err(|e| bad("invalid_bundle", e))?;
            let checked = tokio::task::spawn_blocking(move || bundle.check())
                .await
                .map_err(|e| {
                    error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        format!("compiling the bundle: {e}"),
                    )
                })?
                .map_err(|e| bad("invalid_bundle", e))?;
            let refusals: Vec<String> = checked
                .findings
                .iter()
                .filter(|f| f.is_refusal())
                .map(ToString::to_string)
                .collect();
            if !refusals.is_empty() {
                return Err(error_with(
                    StatusCode::BAD_REQUEST,
                    "rules_refused",
                    format!(
                        "{} rule(s) of the bundle refused; no job started: {}",
                        refusals.len(),
                        refusals.join("; ")
                    ),
                    json!({ "refusals": refusals }),
                ));
            }
            Ok((AD_HOC.to_string(), 0, checked.engine))
        }
    }
}

async fn submit(
    State(api): State<RetroApi>,
    caller: Caller,
    body: Result<axum::Json<SubmitRequest>, JsonRejection>,
) -> Response {
    if let Err(r) = caller.may_change() {
        return *r;
    }
    let request = match json_body(
        body,
        "{\"tenant\", \"rule_set\" or \"bundle\", \"from\", \"to\", \"job_id\", \"dry_run\"}",
    ) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let tenant = match caller.tenant_or_only(request.tenant.as_deref(), "tenant") {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let from = match parse_time("from", request.from.as_deref()) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let to = match parse_time("to", request.to.as_deref()) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    if from >= to {
        return bad(
            "invalid_time",
            format!(
                "from ({}) must be before to ({})",
                time_text(Some(from)),
                time_text(Some(to))
            ),
        );
    }
    if to - from > api.max_range_micros {
        return bad(
            "range_too_long",
            format!(
                "to: the range from {} to {} is longer than the {} day(s) one retro-hunt may search (retro_hunt.max_range_days); split it",
                time_text(Some(from)),
                time_text(Some(to)),
                api.max_range_micros / 86_400_000_000
            ),
        );
    }
    let (job_id, again) = match &request.job_id {
        Some(id) if valid_job_id(id) => (id.clone(), true),
        Some(id) => {
            return bad(
                "invalid_job_id",
                format!("job_id {id:?} must be 1..=64 ASCII letters, digits, '-' or '_'"),
            );
        }
        None => (new_job_id(api.node_id), false),
    };
    if let Some(job) = api.hunts.get(&job_id)
        && job.tenant != tenant
    {
        return error(
            StatusCode::CONFLICT,
            "conflict",
            format!("job_id {job_id} is a job of another tenant"),
        );
    }
    let dry_run = request.dry_run;
    let (rule_set, rule_set_version, engine) = match rules(&api, &tenant, request).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if engine.detections.is_empty() && engine.correlations.is_empty() {
        return bad(
            "no_rules",
            format!(
                "rule set {rule_set} has no detection or correlation rule; retro-hunts do not run scheduled SQL rules"
            ),
        );
    }
    let spec = HuntSpec {
        job_id,
        tenant,
        rule_set,
        rule_set_version,
        engine: Arc::new(engine),
        from_micros: from,
        to_micros: to,
        dry_run,
    };
    match api.hunts.submit(spec) {
        Ok(job) => {
            tracing::info!(job = job.job_id, tenant = %job.tenant, rule_set = job.rule_set, again, "retro-hunt accepted");
            (
                StatusCode::ACCEPTED,
                axum::Json(job_json(&job, api.node_id)),
            )
                .into_response()
        }
        Err(e) => refused(&e),
    }
}

/// The answer to a job the node did not accept.
fn refused(e: &SubmitError) -> Response {
    match e {
        SubmitError::Busy { .. } => error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_jobs",
            e.to_string(),
        ),
        SubmitError::Running { .. } => error(StatusCode::CONFLICT, "conflict", e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    tenant: Option<String>,
}

async fn list(
    State(api): State<RetroApi>,
    caller: Caller,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = match query_params(params, "?tenant=T") {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let tenant = match caller.tenant_or_only(params.tenant.as_deref(), "tenant") {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let jobs: Vec<Value> = api
        .hunts
        .list(&tenant)
        .iter()
        .map(|j| job_json(j, api.node_id))
        .collect();
    axum::Json(json!({
        "tenant": tenant,
        "node": api.node_id,
        "jobs": jobs,
        "note": KEPT_NOTE,
    }))
    .into_response()
}

/// The job, when the caller may see it.
fn find(api: &RetroApi, caller: &Caller, job_id: &str) -> Result<Arc<Job>, Box<Response>> {
    api.hunts
        .get(job_id)
        .filter(|j| caller.may(&j.tenant))
        .ok_or_else(|| {
            Box::new(error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no retro-hunt {job_id:?} on node {} ({KEPT_NOTE})",
                    api.node_id
                ),
            ))
        })
}

async fn get_one(
    State(api): State<RetroApi>,
    caller: Caller,
    Path(job_id): Path<String>,
) -> Response {
    match find(&api, &caller, &job_id) {
        Ok(job) => axum::Json(job_json(&job, api.node_id)).into_response(),
        Err(r) => *r,
    }
}

async fn cancel(
    State(api): State<RetroApi>,
    caller: Caller,
    Path(job_id): Path<String>,
) -> Response {
    if let Err(r) = caller.may_change() {
        return *r;
    }
    match find(&api, &caller, &job_id) {
        Ok(job) => {
            let stopping = job.cancel();
            if stopping {
                tracing::info!(job = job.job_id, tenant = %job.tenant, "retro-hunt cancellation requested");
            }
            let mut body = job_json(&job, api.node_id);
            body["cancel_requested"] = json!(stopping);
            axum::Json(body).into_response()
        }
        Err(r) => *r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::{self, access, assert_bad_request, record, unreachable_control};
    use axum::http::Method;
    use object_store::memory::InMemory;
    use spoor_common::auth::StaticTokens;
    use spoor_common::catalog::MemoryCatalog;
    use spoor_common::config::HttpAuth;
    use spoor_common::control::TokenRole;

    /// A router over an empty in-memory lake whose coordinators are
    /// unreachable: jobs of rules sent with the request run to their end.
    fn app(max_jobs: usize) -> Router {
        let tokens = StaticTokens::new([(
            "acme-analyst".to_string(),
            record("t", TokenRole::Analyst, &["acme"]),
        )]);
        let hunter = RetroHunter::new(
            Arc::new(MemoryCatalog::new()),
            Arc::new(InMemory::new()),
            HuntSettings::default(),
        );
        routes(
            unreachable_control(),
            access(HttpAuth::Token, tokens),
            RetroHunts::new(hunter, max_jobs),
            7,
            90,
        )
    }

    async fn send(
        app: &Router,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        testing::send(
            app,
            method,
            uri,
            Some("acme-analyst"),
            body.map(|b| b.to_string()),
        )
        .await
    }

    #[test]
    fn a_busy_node_answers_429_and_a_running_job_409() {
        let busy = refused(&SubmitError::Busy { running: 2 });
        assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
        let running = refused(&SubmitError::Running {
            job_id: "j".into(),
            state: "running",
        });
        assert_eq!(running.status(), StatusCode::CONFLICT);
    }

    const GOOD: &str =
        "title: ok\nlogsource: {product: test}\ndetection:\n  sel: {action: x}\n  condition: sel\n";

    fn bundle(text: &str) -> Value {
        json!({"rules": [{"path": "x.yml", "text": text}]})
    }

    fn hunt(from: &str, to: &str) -> Value {
        json!({"tenant": "acme", "bundle": bundle(GOOD), "from": from, "to": to})
    }

    #[tokio::test]
    async fn bad_requests_name_the_field() {
        let app = app(2);
        let cases = [
            (
                hunt("yesterday", "2026-11-30T09:00:00Z"),
                "invalid_time",
                "from \"yesterday\"",
            ),
            (
                hunt("2026-11-30T08:00:00Z", "09:00"),
                "invalid_time",
                "to \"09:00\"",
            ),
            (
                json!({"tenant": "acme", "bundle": bundle(GOOD), "to": "2026-11-30T09:00:00Z"}),
                "invalid_time",
                "from is required",
            ),
            (
                hunt("2026-11-30T09:00:00Z", "2026-11-30T08:00:00Z"),
                "invalid_time",
                "must be before to",
            ),
            (
                hunt("2026-01-01T00:00:00Z", "2026-11-30T00:00:00Z"),
                "range_too_long",
                "90 day(s)",
            ),
            (
                json!({"tenant": "acme", "from": "2026-11-30T08:00:00Z", "to": "2026-11-30T09:00:00Z"}),
                "invalid_request",
                "rule_set",
            ),
            (
                json!({"tenant": "acme", "rule_set": "w", "bundle": bundle(GOOD), "from": "2026-11-30T08:00:00Z", "to": "2026-11-30T09:00:00Z"}),
                "invalid_request",
                "not both",
            ),
            (
                json!({"tenant": "acme", "bundle": bundle(GOOD), "form": "x"}),
                "invalid_request",
                "unknown field `form`",
            ),
            (
                json!({"tenant": "acme", "bundle": bundle(GOOD), "from": "2026-11-30T08:00:00Z", "to": "2026-11-30T09:00:00Z", "job_id": "a/b"}),
                "invalid_job_id",
                "job_id",
            ),
            (
                json!({"tenant": "acme", "bundle": bundle("title: bad\ndetection:\n  sel:\n    a|startwith: x\n  condition: sel\n"), "from": "2026-11-30T08:00:00Z", "to": "2026-11-30T09:00:00Z"}),
                "rules_refused",
                "startwith",
            ),
        ];
        for (body, code, says) in cases {
            let (status, answer) =
                send(&app, Method::POST, "/v1/retro-hunts", Some(body.clone())).await;
            assert_bad_request(status, &answer, code, says, &body);
        }
        let (status, _) = send(
            &app,
            Method::POST,
            "/v1/retro-hunts",
            Some(json!({"tenant": "globex", "bundle": bundle(GOOD), "from": "2026-11-30T08:00:00Z", "to": "2026-11-30T09:00:00Z"})),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // An unknown rule set needs the (unreachable) coordinators.
        let (status, _) = send(
            &app,
            Method::POST,
            "/v1/retro-hunts",
            Some(json!({"tenant": "acme", "rule_set": "w", "from": "2026-11-30T08:00:00Z", "to": "2026-11-30T09:00:00Z"})),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (status, answer) = send(&app, Method::GET, "/v1/retro-hunts/nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_job_runs_to_its_end_and_is_listed() {
        let app = app(1);
        let body = hunt("2026-11-30T08:00:00Z", "2026-11-30T09:00:00Z");
        let (status, job) = send(&app, Method::POST, "/v1/retro-hunts", Some(body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        let id = job["job_id"].as_str().expect("job id").to_string();
        assert_eq!(
            (&job["tenant"], &job["rule_set"], &job["node"]),
            (&json!("acme"), &json!("ad-hoc"), &json!(7))
        );
        let mut state = String::new();
        for _ in 0..200 {
            let (status, job) =
                send(&app, Method::GET, &format!("/v1/retro-hunts/{id}"), None).await;
            assert_eq!(status, StatusCode::OK, "{job}");
            state = job["state"].as_str().unwrap_or_default().to_string();
            if state == "done" {
                assert_eq!(job["files_total"], 0);
                assert!(job["finished_at"].is_string(), "{job}");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(state, "done");
        let (status, listed) = send(&app, Method::GET, "/v1/retro-hunts", None).await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        assert_eq!(listed["jobs"][0]["job_id"], json!(id));
        assert!(
            listed["note"]
                .as_str()
                .is_some_and(|n| n.contains("restart"))
        );
        let (status, cancelled) =
            send(&app, Method::DELETE, &format!("/v1/retro-hunts/{id}"), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cancelled["cancel_requested"], false, "already done");
        assert_eq!(cancelled["state"], "done");
    }
}

//! HTTP ingest:
//!
//! - `POST /v1/ingest/{source}`: one event per line. The parser is the one
//!   configured for `http:{source}` in `[[ingest.sources]]` (generic JSON
//!   when none matches), or the request's `?source_type=`. With
//!   `ingest.http_auth = "token"` it needs an ingest token.
//! - Splunk HTTP Event Collector (HEC) compatible endpoints, so existing
//!   forwarders (Vector, Fluent Bit, Cribl, Splunk forwarders) can send
//!   without Kafka: `POST /services/collector[/event][/1.0]` (concatenated
//!   JSON envelopes `{"event": …, "time", "host", "source", "sourcetype",
//!   "fields"}`), `POST /services/collector/raw[/1.0]` (lines), and
//!   `GET /services/collector/health`. Always authenticated by an ingest
//!   token (`Authorization: Splunk <token>`); answers in HEC's shape
//!   (`{"text": "Success", "code": 0}`). The parser is the one configured
//!   for `hec:{sourcetype}`.
//!
//! The response is sent after the request's files are committed to the
//! catalog, so a 200 means durable. Inputs that fail to parse go to
//! `dead_letter` with their line (or HEC event) number; the rest of the
//! request is kept.
//!
//! Every request is charged to its tenants' ingest quotas ([`crate::quota`])
//! before it is committed: before parsing when the tenant is known up front
//! (a token of one tenant, or a source with a fixed tenant), else after
//! routing, each tenant for its own rows. Over quota, `ingest.quota_exceeded
//! = "reject"` answers 429 with `Retry-After` at once and `"delay"` holds the
//! request up to `ingest.quota_max_delay_ms` first; a refused request
//! writes nothing and costs no tenant anything, so the sender retries it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use spoor_common::config::{HttpAuth, QuotaExceededAction};
use spoor_common::control::{TokenRecord, TokenRole};
use spoor_common::tenant::TenantId;

use crate::error::IngestError;
use crate::flush::{Flushed, Flusher};
use crate::parse::{Decoded, Decoder, Provenance, SourceType, Sources};
use crate::quota::{Charge, IngestQuotas, QuotaExceeded};
use crate::routing::{Envelope, TenantRouter, TenantRows};
use spoor_common::audit::{AuditLog, AuditRecord};
use spoor_common::auth::{AuthError, SEND_EVENTS, TokenVerifier, authenticate, bearer};

/// What the HTTP ingest routes need.
#[derive(Clone)]
pub struct HttpIngest {
    /// Writes and commits.
    pub flusher: Flusher,
    /// Parsers per source.
    pub sources: Sources,
    /// Tenants per event.
    pub tenants: TenantRouter,
    /// Checks ingest tokens.
    pub tokens: Arc<dyn TokenVerifier>,
    /// Whether `/v1/ingest` needs a token.
    pub auth: HttpAuth,
    /// This node's id (request ids).
    pub node_id: u64,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// Per-tenant ingest rate limits (shared with the Kafka source).
    pub quotas: IngestQuotas,
    /// What a request over quota gets.
    pub quota_exceeded: QuotaExceededAction,
    /// Longest wait with [`QuotaExceededAction::Delay`].
    pub quota_max_delay: Duration,
    /// Requests that may wait at once with [`QuotaExceededAction::Delay`]:
    /// each holds its body, so the wait is bounded in memory too.
    pub delay_slots: Arc<tokio::sync::Semaphore>,
    /// Where refused tokens are recorded.
    pub audit: AuditLog,
    counter: Arc<AtomicU64>,
}

impl HttpIngest {
    /// The routes' state.
    pub fn new(
        flusher: Flusher,
        sources: Sources,
        tenants: TenantRouter,
        tokens: Arc<dyn TokenVerifier>,
        auth: HttpAuth,
        node_id: u64,
        max_body_bytes: usize,
    ) -> Self {
        HttpIngest {
            flusher,
            sources,
            tenants,
            tokens,
            auth,
            node_id,
            max_body_bytes,
            quotas: IngestQuotas::unlimited(),
            quota_exceeded: QuotaExceededAction::Reject,
            quota_max_delay: Duration::ZERO,
            delay_slots: Arc::new(tokio::sync::Semaphore::new(1)),
            audit: AuditLog::default(),
            counter: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The same routes, charging each request to `quotas` and treating a
    /// request over quota as `action` says (`ingest.quota_exceeded`,
    /// `ingest.quota_max_delay_ms`), holding at most `max_delayed`
    /// requests at once (`ingest.quota_max_delayed_requests`).
    pub fn with_quotas(
        mut self,
        quotas: IngestQuotas,
        action: QuotaExceededAction,
        max_delay: Duration,
        max_delayed: usize,
    ) -> Self {
        self.quotas = quotas;
        self.quota_exceeded = action;
        self.quota_max_delay = max_delay;
        self.delay_slots = Arc::new(tokio::sync::Semaphore::new(max_delayed.max(1)));
        self
    }

    /// The same routes, recording every refused token in `audit`.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = audit;
        self
    }

    /// Records a refused token (not a coordinator outage, nobody's doing).
    fn refused(&self, interface: &'static str, headers: &HeaderMap, e: &AuthError) {
        let Some(code) = e.audit_outcome() else {
            return;
        };
        self.audit.record(AuditRecord {
            actor: bearer(headers)
                .and_then(spoor_common::control::token_id_of)
                .map(str::to_string),
            ..AuditRecord::refusal(interface, code, e.to_string())
        });
    }

    /// Charges `charges` to their tenants' quotas, waiting first when so
    /// configured; a refusal is counted per tenant.
    async fn charge(&self, charges: &[Charge]) -> Result<(), QuotaExceeded> {
        let result = match self.quota_exceeded {
            QuotaExceededAction::Reject => self.quotas.try_acquire_all(charges),
            QuotaExceededAction::Delay => match self.quotas.try_acquire_all(charges) {
                Ok(()) => Ok(()),
                // Over quota: wait, if a slot is free; else refuse now.
                Err(over) => match self.delay_slots.clone().try_acquire_owned() {
                    Err(_) => {
                        metrics::counter!("spoor_ingest_quota_delay_full_total").increment(1);
                        Err(over)
                    }
                    Ok(_slot) => self
                        .quotas
                        .acquire_all(charges, Some(self.quota_max_delay))
                        .await
                        .map(|waited| {
                            metrics::histogram!("spoor_ingest_quota_delayed_seconds")
                                .record(waited.as_secs_f64());
                        }),
                },
            },
        };
        if let Err(e) = &result {
            metrics::counter!("spoor_ingest_quota_rejected_total", "tenant" => e.tenant.to_string())
                .increment(1);
            tracing::debug!(tenant = %e.tenant, limit = e.limit, "ingest request over quota refused");
        }
        result
    }

    /// Charges a request before parsing when its tenant is known
    /// (`up_front`), with its `(inputs, bytes)`; nothing otherwise.
    async fn charge_up_front(
        &self,
        up_front: Option<&TenantId>,
        count: impl FnOnce() -> (u64, u64),
    ) -> Result<(), QuotaExceeded> {
        match up_front {
            Some(tenant) => {
                let (inputs, bytes) = count();
                self.charge(&[Charge::new(tenant.clone(), inputs, bytes)])
                    .await
            }
            None => Ok(()),
        }
    }

    /// Charges routed rows to their tenants when the request was not
    /// charged before parsing.
    async fn charge_routed(
        &self,
        up_front: Option<&TenantId>,
        rows: &BTreeMap<TenantId, TenantRows>,
    ) -> Result<(), QuotaExceeded> {
        match up_front {
            Some(_) => Ok(()),
            None => self.charge(&charges_of(rows)).await,
        }
    }

    /// The tenant of everything a request to `topic` sends, when it is
    /// known before parsing: the tenant of a token of one tenant, or a
    /// fixed (or the default) tenant the token may send for. Mirrors
    /// [`TenantRouter::route_for_token`] and [`TenantRouter::route`].
    fn tenant_up_front(&self, topic: &str, token: Option<&TokenRecord>) -> Option<TenantId> {
        if let Some(tenant) = token.and_then(token_tenant) {
            return Some(tenant.clone());
        }
        let tenant = self.tenants.fixed_tenant(topic)?;
        let allowed = token.is_none_or(|t| {
            t.is_cluster_admin()
                || tenant == self.tenants.unrouted_tenant()
                || t.tenants.contains(tenant)
        });
        allowed.then(|| tenant.clone())
    }

    fn request_id(&self, now: i64) -> String {
        format!(
            "{}-{}-{}-{}",
            self.node_id,
            std::process::id(),
            now,
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// The tenant of everything `token` sends when it decides it: a token of
/// exactly one tenant, not an admin's.
fn token_tenant(token: &TokenRecord) -> Option<&TenantId> {
    match token.tenants.as_slice() {
        [only] if token.role != TokenRole::Admin => Some(only),
        _ => None,
    }
}

/// One charge per tenant of routed rows: its own rows and raw bytes.
fn charges_of(rows: &BTreeMap<TenantId, TenantRows>) -> Vec<Charge> {
    rows.iter()
        .map(|(tenant, r)| {
            let count = r.count();
            Charge::new(tenant.clone(), count.rows, count.bytes)
        })
        .collect()
}

/// The non-blank lines of a body, as [`decode_lines`] reads them: how many,
/// and their bytes.
fn count_lines(body: &[u8]) -> (u64, u64) {
    let mut lines = 0;
    let mut bytes = 0;
    for line in body.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.iter().all(u8::is_ascii_whitespace) {
            lines += 1;
            bytes += line.len() as u64;
        }
    }
    (lines, bytes)
}

/// `Retry-After` for a refusal.
fn with_retry_after(mut response: Response, e: &QuotaExceeded) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(e.retry_after_secs()));
    response
}

/// A request over quota (`/v1/ingest`).
fn quota_error(e: &QuotaExceeded) -> Response {
    with_retry_after(
        error(
            StatusCode::TOO_MANY_REQUESTS,
            "quota_exceeded",
            e.to_string(),
        ),
        e,
    )
}

/// A request over quota (HEC): HEC has no code of its own for it; 9
/// ("Server is busy") is what forwarders retry.
fn hec_quota_error(e: &QuotaExceeded) -> Response {
    with_retry_after(
        hec(
            StatusCode::TOO_MANY_REQUESTS,
            9,
            "Server is busy",
            json!({"detail": e.to_string()}),
        ),
        e,
    )
}

/// The HTTP ingest routes.
pub fn router(state: HttpIngest) -> Router {
    let limit = state.max_body_bytes;
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
        .route("/services/collector", post(hec_event))
        .route("/services/collector/event", post(hec_event))
        .route("/services/collector/event/1.0", post(hec_event))
        .route("/services/collector/raw", post(hec_raw))
        .route("/services/collector/raw/1.0", post(hec_raw))
        .route("/services/collector/health", get(hec_health))
        .route("/services/collector/health/1.0", get(hec_health))
        .layer(DefaultBodyLimit::max(limit))
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

fn auth_error(e: &AuthError) -> Response {
    let status = match e {
        // Unknown, revoked, expired: the token authenticates nothing (401);
        // a valid token of the wrong role is forbidden (403).
        AuthError::Missing | AuthError::Invalid(_) => StatusCode::UNAUTHORIZED,
        AuthError::WrongRole { .. } => StatusCode::FORBIDDEN,
        AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, "unauthorized", e.to_string())
}

/// Headers as routing sees them.
fn header_pairs(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// Routes decoded rows to tenants, by the token when there is one.
fn route(
    state: &HttpIngest,
    topic: &str,
    headers: &HeaderMap,
    decoded: Vec<Decoded>,
    token: Option<&TokenRecord>,
) -> BTreeMap<TenantId, TenantRows> {
    let headers = header_pairs(headers);
    let envelope = Envelope {
        topic,
        headers: &headers,
    };
    let mut rows = BTreeMap::new();
    match token {
        Some(token) => state
            .tenants
            .route_for_token(envelope, decoded, token, &mut rows),
        None => state.tenants.route(envelope, decoded, &mut rows),
    }
    rows
}

/// Decodes each non-blank line of `body` as one input numbered by its line.
fn decode_lines(decoder: &mut Decoder, topic: &str, body: &[u8], now: i64) -> Vec<Decoded> {
    let mut decoded = Vec::new();
    let mut last_line = 0;
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        last_line = i as i64 + 1;
        metrics::counter!("spoor_ingest_messages_total", "source" => "http").increment(1);
        let prov = Provenance {
            topic: topic.to_string(),
            partition: None,
            offset: Some(last_line),
            ingest_time_micros: now,
        };
        decoder.decode(line, &prov, &mut decoded);
    }
    let end = Provenance {
        topic: topic.to_string(),
        partition: None,
        offset: Some(last_line),
        ingest_time_micros: now,
    };
    decoder.flush(&end, &mut decoded);
    decoded
}

/// Writes and commits a request's rows.
async fn commit(
    state: &HttpIngest,
    rows: &BTreeMap<TenantId, TenantRows>,
    now: i64,
) -> Result<Flushed, IngestError> {
    state
        .flusher
        .flush_request(&state.request_id(now), rows)
        .await
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
    let token = match state.auth {
        HttpAuth::None => None,
        HttpAuth::Token => match authenticate(state.tokens.as_ref(), &headers, SEND_EVENTS).await {
            Ok(record) => Some(record),
            Err(e) => {
                state.refused("http_ingest", &headers, &e);
                return auth_error(&e);
            }
        },
    };
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
    metrics::counter!("spoor_ingest_bytes_total", "source" => "http").increment(body.len() as u64);
    // Charged before parsing when the tenant is known, else after routing.
    let up_front = state.tenant_up_front(&topic, token.as_ref());
    if let Err(e) = state
        .charge_up_front(up_front.as_ref(), || count_lines(&body))
        .await
    {
        return quota_error(&e);
    }
    let now = spoor_common::time::now_micros();
    let decoded = decode_lines(&mut decoder, &topic, &body, now);
    let rows = route(&state, &topic, &headers, decoded, token.as_ref());
    if let Err(e) = state.charge_routed(up_front.as_ref(), &rows).await {
        return quota_error(&e);
    }
    match commit(&state, &rows, now).await {
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
        // Nothing was committed: the sender keeps the events and retries
        // (a retry gets new file ids, and files of this attempt that did
        // reach the store are orphans the maintenance scan deletes).
        Err(e @ IngestError::WriteFile { .. }) => {
            tracing::warn!(error = %e, source, "http ingest could not write to the lake");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                format!("{e}; retry the request"),
            )
        }
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

/// A HEC answer: `{"text", "code"}` plus extra fields.
fn hec(status: StatusCode, code: u32, text: &str, extra: Value) -> Response {
    let mut body = json!({"text": text, "code": code});
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    (status, axum::Json(body)).into_response()
}

fn hec_auth_error(e: &AuthError) -> Response {
    match e {
        AuthError::Missing => hec(StatusCode::UNAUTHORIZED, 2, "Token is required", json!({})),
        AuthError::Invalid(_) | AuthError::WrongRole { .. } => hec(
            StatusCode::FORBIDDEN,
            4,
            "Invalid token",
            json!({"detail": e.to_string()}),
        ),
        AuthError::Unavailable(_) => hec(
            StatusCode::SERVICE_UNAVAILABLE,
            9,
            "Server is busy",
            json!({"detail": e.to_string()}),
        ),
    }
}

fn hec_commit_answer(result: Result<Flushed, IngestError>) -> Response {
    match result {
        Ok(flushed) => hec(
            StatusCode::OK,
            0,
            "Success",
            json!({"accepted": flushed.events, "dead_lettered": flushed.dead_letters}),
        ),
        Err(IngestError::Catalog(e)) if e.is_retryable() => hec(
            StatusCode::SERVICE_UNAVAILABLE,
            9,
            "Server is busy",
            json!({"detail": format!("{e}; retry the request")}),
        ),
        Err(e @ IngestError::WriteFile { .. }) => {
            tracing::warn!(error = %e, "hec ingest could not write to the lake");
            hec(
                StatusCode::SERVICE_UNAVAILABLE,
                9,
                "Server is busy",
                json!({"detail": format!("{e}; retry the request")}),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "hec ingest failed");
            hec(
                StatusCode::INTERNAL_SERVER_ERROR,
                8,
                "Internal server error",
                json!({"detail": e.to_string()}),
            )
        }
    }
}

/// One HEC event envelope, turned into a parser input.
struct HecEvent {
    sourcetype: String,
    input: Vec<u8>,
}

/// Splits a HEC body (JSON envelopes, concatenated or newline-separated)
/// into parser inputs, or says which envelope is wrong (HEC refuses the
/// whole request then, so the sender keeps and fixes it: nothing is lost).
fn hec_envelopes(body: &[u8]) -> Result<Vec<HecEvent>, Box<Response>> {
    let invalid = |n: usize, code: u32, text: &str, detail: String| {
        hec(
            StatusCode::BAD_REQUEST,
            code,
            text,
            json!({"invalid-event-number": n, "detail": detail}),
        )
    };
    let mut events = Vec::new();
    let stream = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    for (n, item) in stream.enumerate() {
        let value =
            item.map_err(|e| Box::new(invalid(n, 6, "Invalid data format", e.to_string())))?;
        let Value::Object(mut envelope) = value else {
            return Err(Box::new(invalid(
                n,
                6,
                "Invalid data format",
                "an envelope must be a JSON object".into(),
            )));
        };
        let sourcetype = match envelope.get("sourcetype") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => "hec".to_string(),
        };
        let input = match envelope.remove("event") {
            None | Some(Value::Null) => {
                return Err(Box::new(invalid(
                    n,
                    12,
                    "Event field is required",
                    "no \"event\" field".into(),
                )));
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(Box::new(invalid(
                    n,
                    13,
                    "Event field cannot be blank",
                    "\"event\" is blank".into(),
                )));
            }
            Some(Value::String(s)) => s.into_bytes(),
            Some(Value::Object(mut event)) => {
                // The envelope's metadata fills what the event lacks, so the
                // parser sees the sender's host and time.
                for key in ["time", "host", "source", "sourcetype", "index"] {
                    if let Some(v) = envelope.remove(key) {
                        event.entry(key).or_insert(v);
                    }
                }
                if let Some(Value::Object(fields)) = envelope.remove("fields") {
                    for (k, v) in fields {
                        event.entry(k).or_insert(v);
                    }
                }
                Value::Object(event).to_string().into_bytes()
            }
            Some(other) => other.to_string().into_bytes(),
        };
        events.push(HecEvent { sourcetype, input });
    }
    if events.is_empty() {
        return Err(Box::new(hec(
            StatusCode::BAD_REQUEST,
            5,
            "No data",
            json!({}),
        )));
    }
    Ok(events)
}

async fn hec_event(State(state): State<HttpIngest>, headers: HeaderMap, body: Bytes) -> Response {
    let token = match authenticate(state.tokens.as_ref(), &headers, SEND_EVENTS).await {
        Ok(t) => t,
        Err(e) => {
            state.refused("hec", &headers, &e);
            return hec_auth_error(&e);
        }
    };
    let events = match hec_envelopes(&body) {
        Ok(events) => events,
        Err(response) => return *response,
    };
    metrics::counter!("spoor_ingest_bytes_total", "source" => "hec").increment(body.len() as u64);
    // A token of one tenant decides every event's tenant: charged before
    // parsing; otherwise each sourcetype routes on its own, charged after.
    let up_front = token_tenant(&token).cloned();
    let count = || {
        let bytes = events.iter().map(|e| e.input.len() as u64).sum();
        (events.len() as u64, bytes)
    };
    if let Err(e) = state.charge_up_front(up_front.as_ref(), count).await {
        return hec_quota_error(&e);
    }
    let now = spoor_common::time::now_micros();
    // One decoder per sourcetype, so stateful parsers see their own stream.
    let mut decoders: BTreeMap<String, Decoder> = BTreeMap::new();
    let mut decoded: BTreeMap<String, Vec<Decoded>> = BTreeMap::new();
    for (n, event) in events.iter().enumerate() {
        metrics::counter!("spoor_ingest_messages_total", "source" => "hec").increment(1);
        let topic = format!("hec:{}", event.sourcetype);
        let decoder = decoders
            .entry(topic.clone())
            .or_insert_with(|| state.sources.decoder_for(&topic));
        let prov = Provenance {
            topic: topic.clone(),
            partition: None,
            offset: Some(n as i64 + 1),
            ingest_time_micros: now,
        };
        decoder.decode(&event.input, &prov, decoded.entry(topic).or_default());
    }
    let mut rows: BTreeMap<TenantId, TenantRows> = BTreeMap::new();
    for (topic, mut decoder) in decoders {
        let out = decoded.entry(topic.clone()).or_default();
        let end = Provenance {
            topic: topic.clone(),
            partition: None,
            offset: Some(events.len() as i64),
            ingest_time_micros: now,
        };
        decoder.flush(&end, out);
        for (tenant, r) in route(&state, &topic, &headers, std::mem::take(out), Some(&token)) {
            let into = rows.entry(tenant).or_default();
            into.events.extend(r.events);
            into.dead.extend(r.dead);
        }
    }
    if let Err(e) = state.charge_routed(up_front.as_ref(), &rows).await {
        return hec_quota_error(&e);
    }
    hec_commit_answer(commit(&state, &rows, now).await)
}

/// Query parameters of the raw endpoint.
#[derive(Debug, serde::Deserialize)]
struct RawParams {
    sourcetype: Option<String>,
}

async fn hec_raw(
    State(state): State<HttpIngest>,
    Query(params): Query<RawParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = match authenticate(state.tokens.as_ref(), &headers, SEND_EVENTS).await {
        Ok(t) => t,
        Err(e) => {
            state.refused("hec", &headers, &e);
            return hec_auth_error(&e);
        }
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return hec(StatusCode::BAD_REQUEST, 5, "No data", json!({}));
    }
    metrics::counter!("spoor_ingest_bytes_total", "source" => "hec").increment(body.len() as u64);
    let sourcetype = params
        .sourcetype
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "hec".to_string());
    let topic = format!("hec:{sourcetype}");
    let up_front = state.tenant_up_front(&topic, Some(&token));
    if let Err(e) = state
        .charge_up_front(up_front.as_ref(), || count_lines(&body))
        .await
    {
        return hec_quota_error(&e);
    }
    let mut decoder = state.sources.decoder_for(&topic);
    let now = spoor_common::time::now_micros();
    let decoded = decode_lines(&mut decoder, &topic, &body, now);
    let rows = route(&state, &topic, &headers, decoded, Some(&token));
    if let Err(e) = state.charge_routed(up_front.as_ref(), &rows).await {
        return hec_quota_error(&e);
    }
    hec_commit_answer(commit(&state, &rows, now).await)
}

async fn hec_health() -> Response {
    hec(StatusCode::OK, 17, "HEC is healthy", json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake_writer::LakeWriter;
    use axum::body::Body;
    use axum::http::Request;
    use spoor_common::auth::StaticTokens;
    use spoor_common::catalog::{Catalog, FileQuery, MemoryCatalog};
    use spoor_common::config::{SourceConfig, TenantFrom};
    use spoor_common::control::TokenRole;
    use spoor_common::schema::Table;
    use tower::ServiceExt;

    fn tenant(s: &str) -> TenantId {
        TenantId::new(s).expect("tenant")
    }

    fn token(tenants: &[&str], role: TokenRole) -> TokenRecord {
        TokenRecord {
            token_id: format!("id-{}", tenants.join("-")),
            tenants: tenants.iter().map(|t| tenant(t)).collect(),
            role,
            secret_sha256: String::new(),
            description: String::new(),
            revoked: false,
            expires_at_micros: None,
        }
    }

    fn app(catalog: Arc<MemoryCatalog>, auth: HttpAuth) -> Router {
        let known = crate::routing::KnownTenants::of([tenant("acme"), tenant("globex")]);
        router(ingest_state(catalog, auth, known))
    }

    /// Acme limited to `events_per_second`, globex unlimited, tokens
    /// required; the quotas are shared by every app of one `quotas`.
    fn quota_app(
        catalog: Arc<MemoryCatalog>,
        known: &crate::routing::KnownTenants,
        quotas: &IngestQuotas,
        action: QuotaExceededAction,
        max_delay: Duration,
    ) -> Router {
        router(
            ingest_state(catalog, HttpAuth::Token, known.clone()).with_quotas(
                quotas.clone(),
                action,
                max_delay,
                1,
            ),
        )
    }

    fn limited(events_per_second: u64) -> (crate::routing::KnownTenants, IngestQuotas) {
        let mut acme = spoor_common::control::TenantRecord::new(tenant("acme"));
        acme.quotas.ingest_events_per_second = events_per_second;
        let globex = spoor_common::control::TenantRecord::new(tenant("globex"));
        let known = crate::routing::KnownTenants::of_records([&acme, &globex]);
        (known.clone(), IngestQuotas::new(known))
    }

    fn ingest_state(
        catalog: Arc<MemoryCatalog>,
        auth: HttpAuth,
        known: crate::routing::KnownTenants,
    ) -> HttpIngest {
        let store = Arc::new(object_store::memory::InMemory::new());
        let flusher = Flusher::new(LakeWriter::new(store, 3), catalog, None);
        // `hec:fw` is CEF; `http:mssp` and `hec:mssp` take the tenant from a field.
        let mut cef = SourceConfig::of_type(SourceType::Cef);
        cef.topics = vec!["hec:fw".into()];
        let mut by_field = SourceConfig::of_type(SourceType::Json);
        by_field.topics = vec!["http:mssp".into(), "hec:mssp".into()];
        by_field.tenant_from = TenantFrom::Field;
        by_field.tenant_field = "org".into();
        let sources = vec![cef, by_field];
        let tenants = TenantRouter::new(tenant("default"), tenant("unrouted"), &sources, known)
            .expect("router");
        let tokens = StaticTokens::new([
            (
                "acme-token".to_string(),
                token(&["acme"], TokenRole::Ingest),
            ),
            (
                "mssp-token".to_string(),
                token(&["acme", "globex"], TokenRole::Ingest),
            ),
            (
                "analyst-token".to_string(),
                token(&["acme"], TokenRole::Analyst),
            ),
        ]);
        HttpIngest::new(
            flusher,
            Sources::new(sources).expect("sources"),
            tenants,
            Arc::new(tokens),
            auth,
            1,
            1 << 20,
        )
    }

    async fn send(
        app: Router,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let (status, _, body) = send_with_headers(app, method, uri, auth, body).await;
        (status, body)
    }

    async fn send_with_headers(
        app: Router,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: &str,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = app
            .oneshot(req.body(Body::from(body.to_string())).expect("request"))
            .await
            .expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn rows(catalog: &MemoryCatalog, t: &str, table: Table) -> u64 {
        catalog
            .list_files(FileQuery::all(tenant(t), table))
            .await
            .expect("list")
            .iter()
            .map(|f| f.file.row_count)
            .sum()
    }

    #[tokio::test]
    async fn commits_events_and_dead_letters_before_answering() {
        let catalog = Arc::new(MemoryCatalog::new());
        let (status, body) = send(
            app(catalog.clone(), HttpAuth::None),
            "POST",
            "/v1/ingest/fw",
            None,
            "{\"a\":1}\n\n{bad\r\n{\"b\":2}\n",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"accepted": 2, "dead_lettered": 1, "files": 2}));
        assert_eq!(rows(&catalog, "default", Table::Events).await, 2);
        assert_eq!(rows(&catalog, "default", Table::DeadLetter).await, 1);
    }

    #[tokio::test]
    async fn refuses_bad_sources_and_large_bodies() {
        let catalog = Arc::new(MemoryCatalog::new());
        let (status, body) = send(
            app(catalog.clone(), HttpAuth::None),
            "POST",
            "/v1/ingest/a%20b",
            None,
            "{}",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_source");
        let big = "x".repeat(2 << 20);
        let (status, _) = send(
            app(catalog, HttpAuth::None),
            "POST",
            "/v1/ingest",
            None,
            &big,
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn token_auth_decides_the_tenant_of_ndjson() {
        let catalog = Arc::new(MemoryCatalog::new());
        let a = || app(catalog.clone(), HttpAuth::Token);
        let (status, _) = send(a(), "POST", "/v1/ingest/fw", None, "{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = send(a(), "POST", "/v1/ingest/fw", Some("Bearer nope"), "{}").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = send(
            a(),
            "POST",
            "/v1/ingest/fw",
            Some("Bearer analyst-token"),
            "{}",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, _) = send(
            a(),
            "POST",
            "/v1/ingest/fw",
            Some("Bearer acme-token"),
            "{}",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(rows(&catalog, "acme", Table::Events).await, 1);
        assert_eq!(rows(&catalog, "default", Table::Events).await, 0);
        // A token of two tenants: the field decides within them; another
        // tenant is refused into the unrouted tenant's dead letters.
        let body = "{\"org\":\"globex\"}\n{\"org\":\"initech\"}\n";
        let (status, _) = send(
            a(),
            "POST",
            "/v1/ingest/mssp",
            Some("Bearer mssp-token"),
            body,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(rows(&catalog, "globex", Table::Events).await, 1);
        assert_eq!(rows(&catalog, "unrouted", Table::DeadLetter).await, 1);
    }

    #[tokio::test]
    async fn hec_events_are_parsed_by_sourcetype_and_routed_by_token() {
        let catalog = Arc::new(MemoryCatalog::new());
        let a = || app(catalog.clone(), HttpAuth::None);
        // Concatenated envelopes, a string event through the CEF parser and an
        // object event taking the envelope's host.
        let body = concat!(
            r#"{"time": 1700000000, "host": "fw01", "sourcetype": "fw", "event": "CEF:0|Vendor|FW|1|100|allowed|3|src=10.0.0.1 dst=10.0.0.2 dpt=443"}"#,
            r#"{"time": 1700000001.5, "host": "web01", "event": {"msg": "hello", "src_ip": "10.0.0.9"}, "fields": {"dc": "eu-1"}}"#,
            "\n"
        );
        let (status, answer) = send(
            a(),
            "POST",
            "/services/collector/event",
            Some("Splunk acme-token"),
            body,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["code"], 0);
        assert_eq!(answer["text"], "Success");
        assert_eq!(rows(&catalog, "acme", Table::Events).await, 2);
        assert_eq!(
            rows(&catalog, "default", Table::Events).await,
            0,
            "the token decides"
        );

        // Raw lines with a sourcetype.
        let (status, answer) = send(
            a(),
            "POST",
            "/services/collector/raw?sourcetype=fw",
            Some("Splunk acme-token"),
            "CEF:0|V|P|1|1|x|1|src=1.2.3.4\nnot cef\n",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["dead_lettered"], 1);
        assert_eq!(rows(&catalog, "acme", Table::DeadLetter).await, 1);
    }

    #[tokio::test]
    async fn hec_errors_follow_splunk_codes() {
        let catalog = Arc::new(MemoryCatalog::new());
        let a = || app(catalog.clone(), HttpAuth::None);
        let (status, body) = send(a(), "POST", "/services/collector", None, "{\"event\":1}").await;
        assert_eq!(
            (status, body["code"].clone()),
            (StatusCode::UNAUTHORIZED, json!(2))
        );
        let (status, body) = send(
            a(),
            "POST",
            "/services/collector",
            Some("Splunk bad"),
            "{\"event\":1}",
        )
        .await;
        assert_eq!(
            (status, body["code"].clone()),
            (StatusCode::FORBIDDEN, json!(4))
        );
        let auth = Some("Splunk acme-token");
        let (status, body) = send(a(), "POST", "/services/collector", auth, "").await;
        assert_eq!(
            (status, body["code"].clone()),
            (StatusCode::BAD_REQUEST, json!(5))
        );
        let (status, body) = send(
            a(),
            "POST",
            "/services/collector",
            auth,
            "{\"event\":\"ok\"}{\"host\":\"x\"}",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            (body["code"].clone(), body["invalid-event-number"].clone()),
            (json!(12), json!(1))
        );
        let (_, body) = send(
            a(),
            "POST",
            "/services/collector",
            auth,
            "{\"event\":\"  \"}",
        )
        .await;
        assert_eq!(body["code"], 13);
        let (_, body) = send(a(), "POST", "/services/collector", auth, "{\"event\":").await;
        assert_eq!(body["code"], 6);
        assert_eq!(
            rows(&catalog, "acme", Table::Events).await,
            0,
            "a refused request writes nothing"
        );
        let (status, body) = send(a(), "GET", "/services/collector/health", None, "").await;
        assert_eq!((status, body["code"].clone()), (StatusCode::OK, json!(17)));
    }

    #[tokio::test]
    async fn a_tenant_over_quota_gets_429_and_charges_nobody_else() {
        let catalog = Arc::new(MemoryCatalog::new());
        let (known, quotas) = limited(3);
        let a = || {
            quota_app(
                catalog.clone(),
                &known,
                &quotas,
                QuotaExceededAction::Reject,
                Duration::ZERO,
            )
        };
        let acme = Some("Bearer acme-token");
        let (status, _) = send(a(), "POST", "/v1/ingest/fw", acme, "{}\n{}\n\n{}\n").await;
        assert_eq!(status, StatusCode::OK, "3 events at 3/s: the burst");
        let (status, headers, body) =
            send_with_headers(a(), "POST", "/v1/ingest/fw", acme, "{}\n").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(
            body,
            json!({"error": {
                "code": "quota_exceeded",
                "message": "tenant acme is over its ingest quota of 3 events/s on this node; retry after 1 s"
            }})
        );
        assert_eq!(
            rows(&catalog, "acme", Table::Events).await,
            3,
            "refused: not written"
        );

        // Tenants from the data are charged after routing, each for its own
        // rows: globex is not limited by acme's quota...
        let mssp = Some("Bearer mssp-token");
        let globex_rows = "{\"org\":\"globex\"}\n".repeat(50);
        let (status, _) = send(a(), "POST", "/v1/ingest/mssp", mssp, &globex_rows).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(rows(&catalog, "globex", Table::Events).await, 50);
        // ...and a request with rows of both is refused whole while acme is
        // over quota, so the sender can retry it without duplicates.
        let mixed = "{\"org\":\"globex\"}\n{\"org\":\"acme\"}\n";
        let (status, headers, body) =
            send_with_headers(a(), "POST", "/v1/ingest/mssp", mssp, mixed).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(headers.contains_key(header::RETRY_AFTER));
        assert_eq!(rows(&catalog, "globex", Table::Events).await, 50);

        // HEC: its own error shape, with 429 and Retry-After.
        let (status, headers, body) = send_with_headers(
            a(),
            "POST",
            "/services/collector/event",
            Some("Splunk acme-token"),
            "{\"event\":\"x\"}",
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(body["code"], 9);
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("over its ingest quota of 3 events/s")),
            "{body}"
        );
        let (status, _, _) = send_with_headers(
            a(),
            "POST",
            "/services/collector/raw",
            Some("Splunk acme-token"),
            "line\n",
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

        // Once the budget has come back, acme sends again.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (status, _) = send(a(), "POST", "/v1/ingest/fw", acme, "{}\n{}\n").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(rows(&catalog, "acme", Table::Events).await, 5);
    }

    #[tokio::test]
    async fn delay_holds_a_request_until_its_budget_allows_it() {
        let catalog = Arc::new(MemoryCatalog::new());
        let (known, quotas) = limited(10);
        let acme = Some("Bearer acme-token");
        let delayed = |max_ms| {
            quota_app(
                catalog.clone(),
                &known,
                &quotas,
                QuotaExceededAction::Delay,
                Duration::from_millis(max_ms),
            )
        };
        let (status, _) = send(
            delayed(2000),
            "POST",
            "/v1/ingest/fw",
            acme,
            &"{}\n".repeat(10),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let started = std::time::Instant::now();
        let (status, _) = send(
            delayed(2000),
            "POST",
            "/v1/ingest/fw",
            acme,
            &"{}\n".repeat(5),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "held, then admitted");
        assert!(
            started.elapsed() >= Duration::from_millis(450),
            "5 events at 10/s wait about 500 ms, waited {:?}",
            started.elapsed()
        );
        // A wait longer than quota_max_delay_ms is refused as with reject.
        let (status, headers, body) = send_with_headers(
            delayed(100),
            "POST",
            "/v1/ingest/fw",
            acme,
            &"{}\n".repeat(10),
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["error"]["code"], "quota_exceeded");
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(rows(&catalog, "acme", Table::Events).await, 15);

        // One request may wait at once (quota_max_delayed_requests = 1):
        // while it waits, the next over-quota request is refused at once
        // instead of holding its body too.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let app = delayed(3000);
        let (status, _) = send(
            app.clone(),
            "POST",
            "/v1/ingest/fw",
            acme,
            &"{}\n".repeat(10),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let waiting = tokio::spawn(send(
            app.clone(),
            "POST",
            "/v1/ingest/fw",
            acme,
            "{}\n{}\n{}\n{}\n{}\n",
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        // Three events: more than the ~1 the bucket refilled meanwhile.
        let (status, _, body) =
            send_with_headers(app, "POST", "/v1/ingest/fw", acme, "{}\n{}\n{}\n").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(
            started.elapsed() < Duration::from_millis(300),
            "refused at once"
        );
        assert_eq!(
            waiting.await.expect("join").0,
            StatusCode::OK,
            "the first still waits its turn"
        );
    }

    #[test]
    fn lines_are_counted_as_they_are_parsed() {
        assert_eq!(count_lines(b"a\n\n  \r\nbc\r\nd"), (3, 4));
        assert_eq!(count_lines(b""), (0, 0));
    }
}

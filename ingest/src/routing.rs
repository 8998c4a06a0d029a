//! Which tenant an event belongs to (DESIGN.md, guarantees: tenant isolation).
//!
//! Each `[[ingest.sources]]` entry names where its events' tenant comes
//! from: fixed, a capture of the topic name, a Kafka/HTTP header, or a field
//! of the event. A tenant taken from the data must be registered with the
//! coordinators ([`KnownTenants`], refreshed in the background); an event
//! whose tenant is missing, malformed or unknown becomes a dead letter of
//! `ingest.unrouted_tenant`, never an event of some other tenant. So does
//! an event of a tenant that is registered but disabled (the dead letter
//! says so).
//!
//! [`KnownTenants`] also keeps each tenant's ingest quotas, which the
//! per-tenant rate limits ([`crate::quota`]) read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use regex::Regex;
use spoor_common::config::{SourceConfig, TenantFrom};
use spoor_common::control::{ControlClient, TenantQuotas, TenantRecord};
use spoor_common::schema::event_col as col;
use spoor_common::tenant::TenantId;
use tokio_util::sync::CancellationToken;

use crate::lake_writer::DeadLetterRow;
use crate::parse::{Decoded, EventRow};

/// What ingest needs of a registered tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantState {
    /// Its events are refused (dead letters of the unrouted tenant when the
    /// tenant comes from the data).
    pub disabled: bool,
    /// Its limits (ingest reads the events and bytes per second).
    pub quotas: TenantQuotas,
}

impl From<&TenantRecord> for TenantState {
    fn from(t: &TenantRecord) -> Self {
        TenantState {
            disabled: t.disabled,
            quotas: t.quotas,
        }
    }
}

/// What [`KnownTenants`] says of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Not registered (or no refresh has succeeded yet).
    Unknown,
    /// Registered and disabled.
    Disabled,
    /// Registered and enabled.
    Active,
}

/// The tenants registered with the coordinators, as last seen, with their
/// disabled flags and quotas.
#[derive(Debug, Clone, Default)]
pub struct KnownTenants {
    inner: Arc<RwLock<Option<BTreeMap<TenantId, TenantState>>>>,
}

impl KnownTenants {
    /// No tenants seen yet (every data-derived tenant is unknown until the
    /// first refresh).
    pub fn new() -> Self {
        Self::default()
    }

    /// A fixed set of enabled tenants without quotas (tests, and
    /// deployments without coordinators' tenants).
    pub fn of(tenants: impl IntoIterator<Item = TenantId>) -> Self {
        let known = KnownTenants::new();
        known.replace(tenants.into_iter().collect());
        known
    }

    /// A fixed set of tenant records (tests).
    pub fn of_records<'a>(records: impl IntoIterator<Item = &'a TenantRecord>) -> Self {
        let known = KnownTenants::new();
        known.replace_records(records);
        known
    }

    /// Whether `tenant` is registered (enabled or not).
    pub fn contains(&self, tenant: &TenantId) -> bool {
        self.get(tenant).is_some()
    }

    /// Whether `tenant` is registered, and enabled.
    pub fn registration(&self, tenant: &TenantId) -> Registration {
        match self.get(tenant) {
            None => Registration::Unknown,
            Some(s) if s.disabled => Registration::Disabled,
            Some(_) => Registration::Active,
        }
    }

    /// The state of `tenant`, when it is registered.
    pub fn get(&self, tenant: &TenantId) -> Option<TenantState> {
        self.inner
            .read()
            .ok()
            .and_then(|map| map.as_ref().and_then(|m| m.get(tenant).copied()))
    }

    /// The quotas of `tenant`; `None` when it is not registered (no limit).
    pub fn quotas(&self, tenant: &TenantId) -> Option<TenantQuotas> {
        self.get(tenant).map(|s| s.quotas)
    }

    /// Whether a refresh has succeeded yet.
    pub fn loaded(&self) -> bool {
        self.inner.read().map(|s| s.is_some()).unwrap_or(false)
    }

    /// Replaces the set with enabled tenants without quotas.
    pub fn replace(&self, tenants: BTreeSet<TenantId>) {
        self.set(
            tenants
                .into_iter()
                .map(|t| (t, TenantState::default()))
                .collect(),
        );
    }

    /// Replaces the set with `records` (as the coordinators list them).
    pub fn replace_records<'a>(&self, records: impl IntoIterator<Item = &'a TenantRecord>) {
        self.set(
            records
                .into_iter()
                .map(|t| (t.id.clone(), TenantState::from(t)))
                .collect(),
        );
    }

    fn set(&self, tenants: BTreeMap<TenantId, TenantState>) {
        if let Ok(mut guard) = self.inner.write() {
            *guard = Some(tenants);
        }
    }

    /// Refreshes the set from the coordinators every `every` until `stop`;
    /// a failed refresh keeps the last set (logged).
    pub async fn follow(self, control: ControlClient, every: Duration, stop: CancellationToken) {
        loop {
            match control.cluster_status().await {
                Ok(status) => self.replace_records(&status.tenants),
                Err(e) => tracing::warn!(error = %e, "refreshing the registered tenants failed"),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// How one source's events find their tenant.
#[derive(Debug, Clone)]
enum Rule {
    Fixed(TenantId),
    Topic(Regex),
    Header(String),
    Field,
}

/// Why an event has no tenant.
type Unrouted = String;

/// Routes events to tenants for the configured sources.
#[derive(Debug, Clone)]
pub struct TenantRouter {
    default_tenant: TenantId,
    unrouted: TenantId,
    known: KnownTenants,
    /// Per source entry, in `ingest.sources` order.
    rules: Arc<Vec<(SourceConfig, Rule)>>,
    /// What [`TenantRouter::route`] routed to each tenant since the last
    /// [`TenantRouter::take_tally`], when metered.
    tally: Option<Arc<Mutex<Tally>>>,
}

/// Inputs and raw bytes routed per tenant.
pub type Tally = BTreeMap<TenantId, RowCount>;

/// How much of one tenant's input some rows are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCount {
    /// Events plus dead letters.
    pub rows: u64,
    /// Raw bytes (the `raw` column of events, the bytes of dead letters).
    pub bytes: u64,
}

impl RowCount {
    /// Adds `other`.
    pub fn add(&mut self, other: RowCount) {
        self.rows += other.rows;
        self.bytes += other.bytes;
    }
}

/// A source stream's rows grouped by tenant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantRows {
    /// Normalized events.
    pub events: Vec<EventRow>,
    /// Dead letters.
    pub dead: Vec<DeadLetterRow>,
}

impl TenantRows {
    /// Events plus dead letters.
    pub fn len(&self) -> usize {
        self.events.len() + self.dead.len()
    }

    /// Whether there is nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many rows and raw bytes these are.
    pub fn count(&self) -> RowCount {
        RowCount {
            rows: self.len() as u64,
            bytes: self.events.iter().map(raw_len).sum::<u64>()
                + self.dead.iter().map(|d| d.raw.len() as u64).sum::<u64>(),
        }
    }
}

/// The raw bytes of an event.
fn raw_len(row: &EventRow) -> u64 {
    row.get_str(col::RAW).map_or(0, |r| r.len() as u64)
}

/// The routing inputs of one message besides the event itself.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// Kafka topic, or `http:<source>`.
    pub topic: &'a str,
    /// Kafka or HTTP headers (name, value).
    pub headers: &'a [(String, Vec<u8>)],
}

impl TenantRouter {
    /// A router for `sources` (already checked by the configuration).
    pub fn new(
        default_tenant: TenantId,
        unrouted: TenantId,
        sources: &[SourceConfig],
        known: KnownTenants,
    ) -> Result<Self, String> {
        let mut rules = Vec::new();
        for (i, source) in sources.iter().enumerate() {
            let rule = match source.tenant_from {
                TenantFrom::Fixed if source.tenant.is_empty() => {
                    Rule::Fixed(default_tenant.clone())
                }
                TenantFrom::Fixed => Rule::Fixed(
                    TenantId::new(source.tenant.clone())
                        .map_err(|e| format!("ingest.sources[{i}].tenant: {e}"))?,
                ),
                TenantFrom::Topic => Rule::Topic(
                    source
                        .tenant_regex()
                        .map_err(|e| format!("ingest.sources[{i}].tenant_pattern: {e}"))?,
                ),
                TenantFrom::Header => Rule::Header(source.tenant_header.clone()),
                TenantFrom::Field => Rule::Field,
            };
            rules.push((source.clone(), rule));
        }
        Ok(TenantRouter {
            default_tenant,
            unrouted,
            known,
            rules: Arc::new(rules),
            tally: None,
        })
    }

    /// Every event to one tenant (tests, single-tenant tools).
    pub fn single(tenant: TenantId) -> Self {
        TenantRouter {
            unrouted: tenant.clone(),
            default_tenant: tenant,
            known: KnownTenants::new(),
            rules: Arc::new(Vec::new()),
            tally: None,
        }
    }

    /// The same routing, counting what [`TenantRouter::route`] routes to
    /// each tenant (for the Kafka source's quotas; see
    /// [`TenantRouter::take_tally`]). The tally is shared by the clones of
    /// the returned router, and only by them.
    pub fn metered(&self) -> Self {
        TenantRouter {
            tally: Some(Arc::default()),
            ..self.clone()
        }
    }

    /// What was routed to each tenant since the last call (empty unless
    /// [`TenantRouter::metered`]).
    pub fn take_tally(&self) -> Tally {
        self.tally
            .as_ref()
            .map(|t| std::mem::take(&mut *t.lock().unwrap_or_else(|e| e.into_inner())))
            .unwrap_or_default()
    }

    fn note(&self, tenant: &TenantId, count: RowCount) {
        if let Some(tally) = &self.tally {
            tally
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(tenant.clone())
                .or_default()
                .add(count);
        }
    }

    /// The tenants whose registration and quotas routing reads.
    pub fn known(&self) -> &KnownTenants {
        &self.known
    }

    /// The tenant receiving unroutable events' dead letters.
    pub fn unrouted_tenant(&self) -> &TenantId {
        &self.unrouted
    }

    /// The tenant of every input of `topic` when the configuration alone
    /// decides it (a fixed tenant, or the default tenant when no source
    /// entry matches); `None` when it comes from the data.
    pub fn fixed_tenant(&self, topic: &str) -> Option<&TenantId> {
        match self.rule_for(topic) {
            None => Some(&self.default_tenant),
            Some(Rule::Fixed(t)) => Some(t),
            Some(_) => None,
        }
    }

    fn rule_for(&self, topic: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|(s, _)| s.matches(topic))
            .map(|(_, r)| r)
    }

    /// The tenant of an event or dead letter, or why there is none.
    fn tenant_of(&self, envelope: Envelope<'_>, field: Option<&str>) -> Result<TenantId, Unrouted> {
        // A tenant the configuration names needs no registration, but a
        // disabled one takes nothing.
        let configured = |t: &TenantId| match self.known.registration(t) {
            Registration::Disabled => Err(format!(
                "tenant {t} (named by the configuration) is disabled; its events are refused"
            )),
            Registration::Active | Registration::Unknown => Ok(t.clone()),
        };
        let Some(rule) = self.rule_for(envelope.topic) else {
            return configured(&self.default_tenant);
        };
        let (candidate, from) = match rule {
            Rule::Fixed(t) => return configured(t),
            Rule::Topic(re) => {
                let captured = re.captures(envelope.topic).and_then(|c| {
                    c.name("tenant")
                        .or_else(|| c.get(1))
                        .map(|m| m.as_str().to_string())
                });
                match captured {
                    Some(t) => (t, format!("topic {:?}", envelope.topic)),
                    None => {
                        return Err(format!(
                            "topic {:?} does not match tenant_pattern {:?}",
                            envelope.topic,
                            re.as_str()
                        ));
                    }
                }
            }
            Rule::Header(name) => {
                let value = envelope
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v);
                match value {
                    Some(v) => match std::str::from_utf8(v) {
                        Ok(s) => (s.trim().to_string(), format!("header {name}")),
                        Err(_) => return Err(format!("header {name} is not UTF-8")),
                    },
                    None => return Err(format!("the message has no {name} header")),
                }
            }
            Rule::Field => match field {
                Some(v) => (v.trim().to_string(), "the tenant field".to_string()),
                None => return Err("the event has no readable tenant field".to_string()),
            },
        };
        let tenant = TenantId::new(candidate).map_err(|e| format!("{from}: {e}"))?;
        match self.known.registration(&tenant) {
            Registration::Active => Ok(tenant),
            Registration::Disabled => Err(format!(
                "tenant {tenant} (from {from}) is disabled; its events are refused"
            )),
            Registration::Unknown => Err(format!(
                "tenant {tenant} (from {from}) is not registered with the coordinators"
            )),
        }
    }

    /// Adds decoded rows to `into`, each under its tenant; rows without a
    /// tenant become dead letters of the unrouted tenant naming why.
    pub fn route(
        &self,
        envelope: Envelope<'_>,
        decoded: impl IntoIterator<Item = Decoded>,
        into: &mut BTreeMap<TenantId, TenantRows>,
    ) {
        for d in decoded {
            match d {
                Decoded::Event(row) => {
                    let count = RowCount {
                        rows: 1,
                        bytes: raw_len(&row),
                    };
                    match self.tenant_of(envelope, row.tenant_hint.as_deref()) {
                        Ok(tenant) => {
                            self.note(&tenant, count);
                            into.entry(tenant).or_default().events.push(row);
                        }
                        Err(reason) => {
                            metrics::counter!("spoor_ingest_unrouted_total").increment(1);
                            self.note(&self.unrouted, count);
                            into.entry(self.unrouted.clone())
                                .or_default()
                                .dead
                                .push(unrouted_letter(&row, &reason));
                        }
                    }
                }
                Decoded::Dead(mut letter) => {
                    let count = RowCount {
                        rows: 1,
                        bytes: letter.raw.len() as u64,
                    };
                    // A dead letter has no fields to read a tenant from.
                    match self.tenant_of(envelope, None) {
                        Ok(tenant) => {
                            self.note(&tenant, count);
                            into.entry(tenant).or_default().dead.push(letter);
                        }
                        Err(reason) => {
                            metrics::counter!("spoor_ingest_unrouted_total").increment(1);
                            self.note(&self.unrouted, count);
                            letter.error = format!("{}; no tenant: {reason}", letter.error);
                            into.entry(self.unrouted.clone())
                                .or_default()
                                .dead
                                .push(letter);
                        }
                    }
                }
            }
        }
    }
}

impl TenantRouter {
    /// [`TenantRouter::route`] for a request authenticated by `token`: a
    /// token of exactly one tenant (not admin) decides the tenant of
    /// everything it sends; otherwise the configured routing applies and a
    /// row for a tenant the token does not cover becomes a dead letter of the
    /// unrouted tenant.
    pub fn route_for_token(
        &self,
        envelope: Envelope<'_>,
        decoded: impl IntoIterator<Item = Decoded>,
        token: &spoor_common::control::TokenRecord,
        into: &mut BTreeMap<TenantId, TenantRows>,
    ) {
        use spoor_common::control::TokenRole;
        if let [only] = token.tenants.as_slice()
            && token.role != TokenRole::Admin
        {
            let rows = into.entry(only.clone()).or_default();
            for d in decoded {
                match d {
                    Decoded::Event(row) => rows.events.push(row),
                    Decoded::Dead(letter) => rows.dead.push(letter),
                }
            }
            return;
        }
        let mut routed = BTreeMap::new();
        self.route(envelope, decoded, &mut routed);
        let all = token.is_cluster_admin();
        for (tenant, rows) in routed {
            if all || tenant == self.unrouted || token.tenants.contains(&tenant) {
                let into = into.entry(tenant).or_default();
                into.events.extend(rows.events);
                into.dead.extend(rows.dead);
                continue;
            }
            let reason = format!(
                "token {} may not send events for tenant {tenant}",
                token.token_id
            );
            let unrouted = into.entry(self.unrouted.clone()).or_default();
            for row in &rows.events {
                metrics::counter!("spoor_ingest_unrouted_total").increment(1);
                unrouted.dead.push(unrouted_letter(row, &reason));
            }
            for mut letter in rows.dead {
                metrics::counter!("spoor_ingest_unrouted_total").increment(1);
                letter.error = format!("{}; no tenant: {reason}", letter.error);
                unrouted.dead.push(letter);
            }
        }
    }
}

/// A normalized event that has no tenant, as a dead letter (its original
/// bytes from `raw`, its place from the provenance columns).
fn unrouted_letter(row: &EventRow, reason: &str) -> DeadLetterRow {
    let raw = row
        .get_str(col::RAW)
        .unwrap_or_default()
        .as_bytes()
        .to_vec();
    let offset = row.get_int(col::SOURCE_OFFSET);
    let partition = row
        .get_int(col::SOURCE_PARTITION)
        .and_then(|p| i32::try_from(p).ok());
    let place = match (partition, offset) {
        (Some(_), Some(o)) => format!("offset {o}: "),
        (None, Some(l)) => format!("line {l}: "),
        _ => String::new(),
    };
    DeadLetterRow {
        ingest_time_micros: row
            .get_int(col::INGEST_TIME)
            .unwrap_or_else(spoor_common::time::now_micros),
        topic: row
            .get_str(col::SOURCE_TOPIC)
            .unwrap_or_default()
            .to_string(),
        partition,
        offset,
        error: format!("{place}no tenant: {reason}"),
        raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Decoder, Provenance, SourceType};

    fn tenant(s: &str) -> TenantId {
        TenantId::new(s).expect("tenant")
    }

    fn source(topics: &str, from: TenantFrom, set: impl Fn(&mut SourceConfig)) -> SourceConfig {
        let mut s = SourceConfig::of_type(SourceType::Json);
        s.topics = vec![topics.into()];
        s.tenant_from = from;
        set(&mut s);
        s
    }

    fn router(sources: &[SourceConfig]) -> TenantRouter {
        TenantRouter::new(
            tenant("default"),
            tenant("unrouted"),
            sources,
            KnownTenants::of([tenant("acme"), tenant("globex")]),
        )
        .expect("router")
    }

    fn decode(sources: &[SourceConfig], topic: &str, input: &str) -> Vec<Decoded> {
        let entry = sources.iter().find(|s| s.matches(topic));
        let mut decoder = match entry {
            Some(e) => Decoder::new(e).expect("decoder"),
            None => Decoder::for_type(SourceType::Json),
        };
        let mut out = Vec::new();
        let prov = Provenance {
            topic: topic.into(),
            partition: Some(0),
            offset: Some(4),
            ingest_time_micros: 1_800_000_000_000_000,
        };
        decoder.decode(input.as_bytes(), &prov, &mut out);
        out
    }

    fn route(
        sources: &[SourceConfig],
        topic: &str,
        headers: &[(String, Vec<u8>)],
        input: &str,
    ) -> BTreeMap<TenantId, TenantRows> {
        let mut into = BTreeMap::new();
        router(sources).route(
            Envelope { topic, headers },
            decode(sources, topic, input),
            &mut into,
        );
        into
    }

    #[test]
    fn tenant_from_a_topic_capture() {
        let s = [source("logs-*", TenantFrom::Topic, |s| {
            s.tenant_pattern = "^logs-(?P<tenant>[a-z0-9_-]+)$".into();
        })];
        let rows = route(&s, "logs-acme", &[], r#"{"a":1}"#);
        assert_eq!(rows[&tenant("acme")].events.len(), 1);
        let rows = route(&s, "logs-initech", &[], r#"{"a":1}"#);
        let letter = &rows[&tenant("unrouted")].dead[0];
        assert!(
            letter
                .error
                .contains("tenant initech (from topic \"logs-initech\") is not registered"),
            "{}",
            letter.error
        );
        assert_eq!(letter.raw, br#"{"a":1}"#, "the original bytes are kept");
        assert_eq!(letter.offset, Some(4));
        let rows = route(&s, "logs-acme", &[], "{broken");
        assert_eq!(
            rows[&tenant("acme")].dead.len(),
            1,
            "parse failures stay with their tenant"
        );
    }

    #[test]
    fn tenant_from_a_header() {
        let s = [source("*", TenantFrom::Header, |s| {
            s.tenant_header = "x-tenant".into()
        })];
        let h = |v: &str| vec![("X-Tenant".to_string(), v.as_bytes().to_vec())];
        assert_eq!(
            route(&s, "t", &h("globex"), "{}")[&tenant("globex")]
                .events
                .len(),
            1
        );
        let rows = route(&s, "t", &[], "{}");
        assert!(
            rows[&tenant("unrouted")].dead[0]
                .error
                .contains("no x-tenant header")
        );
        let rows = route(&s, "t", &h("Not A Tenant"), "{}");
        assert!(
            rows[&tenant("unrouted")].dead[0]
                .error
                .contains("invalid tenant id")
        );
        let rows = route(&s, "t", &h("globex"), "{oops");
        assert_eq!(rows[&tenant("globex")].dead.len(), 1);
    }

    #[test]
    fn tenant_from_a_field() {
        let s = [source("*", TenantFrom::Field, |s| {
            s.tenant_field = "org.tenant".into()
        })];
        let rows = route(&s, "t", &[], r#"{"org":{"tenant":"acme"},"x":1}"#);
        assert_eq!(rows[&tenant("acme")].events.len(), 1);
        let rows = route(&s, "t", &[], r#"{"x":1}"#);
        assert!(
            rows[&tenant("unrouted")].dead[0]
                .error
                .contains("no readable tenant field")
        );
        let rows = route(&s, "t", &[], "{oops");
        let letter = &rows[&tenant("unrouted")].dead[0];
        assert!(
            letter.error.contains("invalid JSON") && letter.error.contains("no tenant"),
            "{}",
            letter.error
        );
    }

    #[test]
    fn fixed_and_default_tenants_need_no_registration() {
        let s = [source("fw", TenantFrom::Fixed, |s| {
            s.tenant = "initech".into()
        })];
        assert_eq!(
            route(&s, "fw", &[], "{}")[&tenant("initech")].events.len(),
            1
        );
        assert_eq!(
            route(&s, "other", &[], "{}")[&tenant("default")]
                .events
                .len(),
            1
        );
    }

    #[test]
    fn a_disabled_tenant_named_by_the_configuration_takes_nothing() {
        let mut initech = TenantRecord::new(tenant("initech"));
        initech.disabled = true;
        let s = [source("fw", TenantFrom::Fixed, |s| {
            s.tenant = "initech".into()
        })];
        let router = TenantRouter::new(
            tenant("default"),
            tenant("unrouted"),
            &s,
            KnownTenants::of_records([&initech]),
        )
        .expect("router");
        let mut into = BTreeMap::new();
        router.route(
            Envelope {
                topic: "fw",
                headers: &[],
            },
            decode(&s, "fw", "{}"),
            &mut into,
        );
        assert!(!into.contains_key(&tenant("initech")));
        let letter = &into[&tenant("unrouted")].dead[0];
        assert!(
            letter
                .error
                .contains("initech (named by the configuration) is disabled"),
            "{}",
            letter.error
        );
    }

    #[test]
    fn a_disabled_tenant_is_refused_like_an_unknown_one() {
        let mut acme = TenantRecord::new(tenant("acme"));
        acme.disabled = true;
        let globex = TenantRecord::new(tenant("globex"));
        let s = [source("*", TenantFrom::Field, |s| {
            s.tenant_field = "org".into()
        })];
        let router = TenantRouter::new(
            tenant("default"),
            tenant("unrouted"),
            &s,
            KnownTenants::of_records([&acme, &globex]),
        )
        .expect("router");
        let mut into = BTreeMap::new();
        router.route(
            Envelope {
                topic: "t",
                headers: &[],
            },
            decode(&s, "t", r#"{"org":"acme","x":1}"#)
                .into_iter()
                .chain(decode(&s, "t", r#"{"org":"globex"}"#)),
            &mut into,
        );
        assert!(!into.contains_key(&tenant("acme")), "nothing for acme");
        assert_eq!(into[&tenant("globex")].events.len(), 1);
        let letter = &into[&tenant("unrouted")].dead[0];
        assert!(
            letter
                .error
                .contains("tenant acme (from the tenant field) is disabled"),
            "{}",
            letter.error
        );
        assert_eq!(letter.raw, br#"{"org":"acme","x":1}"#, "kept, not dropped");
        assert_eq!(
            router.known().registration(&tenant("acme")),
            Registration::Disabled
        );
        assert_eq!(
            router.known().registration(&tenant("initech")),
            Registration::Unknown
        );
    }

    #[test]
    fn a_metered_router_counts_rows_and_bytes_per_tenant() {
        let s = [source("*", TenantFrom::Field, |s| {
            s.tenant_field = "org".into()
        })];
        let plain = router(&s);
        let metered = plain.metered();
        let envelope = Envelope {
            topic: "t",
            headers: &[],
        };
        let mut into = BTreeMap::new();
        metered.clone().route(
            envelope,
            decode(&s, "t", r#"{"org":"acme"}"#)
                .into_iter()
                .chain(decode(&s, "t", r#"{"org":"acme","y":2}"#))
                .chain(decode(&s, "t", "{bad")),
            &mut into,
        );
        plain.route(envelope, decode(&s, "t", r#"{"org":"globex"}"#), &mut into);
        let tally = metered.take_tally();
        assert_eq!(
            tally[&tenant("acme")],
            RowCount {
                rows: 2,
                bytes: (r#"{"org":"acme"}"#.len() + r#"{"org":"acme","y":2}"#.len()) as u64
            }
        );
        assert_eq!(tally[&tenant("unrouted")], RowCount { rows: 1, bytes: 4 });
        assert!(
            !tally.contains_key(&tenant("globex")),
            "only the metered router's clones count"
        );
        assert_eq!(into[&tenant("acme")].count(), tally[&tenant("acme")]);
        assert!(metered.take_tally().is_empty(), "taken");
        assert!(plain.take_tally().is_empty());
    }

    #[test]
    fn fixed_tenants_are_known_before_parsing() {
        let s = [
            source("fw", TenantFrom::Fixed, |s| s.tenant = "initech".into()),
            source("mssp", TenantFrom::Field, |s| s.tenant_field = "org".into()),
        ];
        let r = router(&s);
        assert_eq!(r.fixed_tenant("fw"), Some(&tenant("initech")));
        assert_eq!(r.fixed_tenant("other"), Some(&tenant("default")));
        assert_eq!(r.fixed_tenant("mssp"), None);
    }
}

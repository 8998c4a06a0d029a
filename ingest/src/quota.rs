//! Per-tenant ingest quotas on one ingest node: a tenant's events per second
//! and raw bytes per second (`TenantRecord.quotas`, 0 = no limit), so one
//! tenant sending past its quota cannot use another tenant's share of the
//! node.
//!
//! Each limited tenant has two token buckets, events and bytes. A bucket
//! holds at most one second of its rate (the burst) and refills at the rate.
//! A charge of `n` is admitted when the bucket holds `min(n, one second)`,
//! and then takes all of `n`: a request larger than one second of budget is
//! admitted once the bucket is full and leaves it in debt, which the tenant
//! pays off before its next request. So any request is admitted eventually
//! (nothing waits for a budget it can never have), and over time a tenant
//! gets its rate, not more.
//!
//! A charge of several tenants ([`IngestQuotas::try_acquire_all`]) takes
//! every tenant's budget or none, so a refused request costs nobody anything.
//! Tenants without a record or without limits are never limited. The limits
//! are read from [`KnownTenants`] on every charge, so a changed quota takes
//! effect with the next refresh of the tenant records.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spoor_common::control::TenantQuotas;
use spoor_common::tenant::TenantId;

use crate::routing::{KnownTenants, RowCount, Tally};

/// Input of one tenant to charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// Whose budget.
    pub tenant: TenantId,
    /// Events (inputs: lines, HEC events, Kafka rows).
    pub events: u64,
    /// Raw bytes.
    pub bytes: u64,
}

impl Charge {
    /// `events` and `bytes` of `tenant`.
    pub fn new(tenant: TenantId, events: u64, bytes: u64) -> Self {
        Charge {
            tenant,
            events,
            bytes,
        }
    }

    /// One charge per tenant of `tally`.
    pub fn from_tally(tally: Tally) -> Vec<Charge> {
        tally
            .into_iter()
            .map(|(tenant, RowCount { rows, bytes })| Charge::new(tenant, rows, bytes))
            .collect()
    }
}

/// A charge refused: the tenant is over one of its quotas.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "tenant {tenant} is over its ingest quota of {limit} on this node; retry after {} s",
    self.retry_after_secs()
)]
pub struct QuotaExceeded {
    /// The tenant over quota.
    pub tenant: TenantId,
    /// The quota it is over, such as `2000 events/s`.
    pub limit: String,
    /// How long until the charge would be admitted, were nobody else of
    /// the tenant to send meanwhile.
    pub retry_after: Duration,
}

impl QuotaExceeded {
    /// [`QuotaExceeded::retry_after`] in whole seconds, at least 1 (HTTP's
    /// `Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// Which quota a bucket enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Events,
    Bytes,
}

impl Unit {
    fn describe(self, rate: u64) -> String {
        match self {
            Unit::Events => format!("{rate} events/s"),
            Unit::Bytes => format!("{rate} bytes/s"),
        }
    }
}

/// Tokens below which a bucket counts as holding the tokens asked: float
/// rounding must not make a waiter wait again for a billionth of a token.
const EPSILON: f64 = 1e-6;

/// A token bucket of `rate` per second holding at most one second of it;
/// `level` goes below zero after a charge larger than what it held (debt).
#[derive(Debug, Clone)]
struct Bucket {
    rate: u64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: u64, now: Instant) -> Self {
        Bucket {
            rate,
            level: rate as f64,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.at {
            let elapsed = now.duration_since(self.at).as_secs_f64();
            self.level = (self.level + elapsed * self.rate as f64).min(self.rate as f64);
            self.at = now;
        }
    }

    /// How long until `n` is admitted; zero when it is now.
    fn wait(&self, n: u64) -> Duration {
        if n == 0 {
            return Duration::ZERO;
        }
        let need = n.min(self.rate) as f64;
        let missing = need - self.level;
        if missing <= EPSILON {
            return Duration::ZERO;
        }
        // Rounded up to the microsecond, so the wait is long enough.
        Duration::from_micros((missing / self.rate as f64 * 1e6).ceil() as u64)
    }

    fn take(&mut self, n: u64) {
        self.level -= n as f64;
    }

    /// Follows a changed rate: 0 removes the bucket, a new limit starts
    /// full, a changed one keeps its level within the new burst.
    fn update(slot: &mut Option<Bucket>, rate: u64, now: Instant) {
        match (slot.as_mut(), rate) {
            (_, 0) => *slot = None,
            (None, rate) => *slot = Some(Bucket::full(rate, now)),
            (Some(b), rate) if b.rate != rate => {
                b.refill(now);
                b.rate = rate;
                b.level = b.level.min(rate as f64);
            }
            (Some(b), _) => b.refill(now),
        }
    }
}

/// The two buckets of one tenant.
#[derive(Debug, Clone, Default)]
struct TenantBuckets {
    events: Option<Bucket>,
    bytes: Option<Bucket>,
}

impl TenantBuckets {
    fn update(&mut self, quotas: &TenantQuotas, now: Instant) {
        Bucket::update(&mut self.events, quotas.ingest_events_per_second, now);
        Bucket::update(&mut self.bytes, quotas.ingest_bytes_per_second, now);
    }

    fn is_unlimited(&self) -> bool {
        self.events.is_none() && self.bytes.is_none()
    }

    /// The longest wait of the two buckets for `events` and `bytes`, with
    /// the quota that makes it.
    fn wait(&self, events: u64, bytes: u64) -> Option<(Duration, String)> {
        [
            (self.events.as_ref(), events, Unit::Events),
            (self.bytes.as_ref(), bytes, Unit::Bytes),
        ]
        .into_iter()
        .filter_map(|(b, n, unit)| b.map(|b| (b.wait(n), unit.describe(b.rate))))
        .filter(|(wait, _)| !wait.is_zero())
        .max_by_key(|(wait, _)| *wait)
    }

    fn take(&mut self, events: u64, bytes: u64) {
        if let Some(b) = &mut self.events {
            b.take(events);
        }
        if let Some(b) = &mut self.bytes {
            b.take(bytes);
        }
    }
}

/// The per-tenant ingest rate limits of this node, shared by its HTTP and
/// Kafka sources (clones share the budgets).
#[derive(Debug, Clone, Default)]
pub struct IngestQuotas {
    known: KnownTenants,
    buckets: Arc<Mutex<HashMap<TenantId, TenantBuckets>>>,
}

impl IngestQuotas {
    /// Limits from the quotas of the tenants `known` lists (kept current by
    /// [`KnownTenants::follow`]).
    pub fn new(known: KnownTenants) -> Self {
        IngestQuotas {
            known,
            buckets: Arc::default(),
        }
    }

    /// No limits (tools and tests).
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// Takes `events` and `bytes` from `tenant`'s budget, or says why not.
    pub fn try_acquire(
        &self,
        tenant: &TenantId,
        events: u64,
        bytes: u64,
    ) -> Result<(), QuotaExceeded> {
        self.try_acquire_all(&[Charge::new(tenant.clone(), events, bytes)])
    }

    /// Takes every charge from its tenant's budget, or none of them: the
    /// refusal names the tenant that waits longest.
    pub fn try_acquire_all(&self, charges: &[Charge]) -> Result<(), QuotaExceeded> {
        self.try_acquire_all_at(charges, Instant::now())
    }

    fn try_acquire_all_at(&self, charges: &[Charge], now: Instant) -> Result<(), QuotaExceeded> {
        // One entry per tenant, so a request listing a tenant twice is
        // checked against its sum.
        let mut sums: BTreeMap<&TenantId, (u64, u64)> = BTreeMap::new();
        for c in charges.iter().filter(|c| c.events > 0 || c.bytes > 0) {
            let sum = sums.entry(&c.tenant).or_default();
            sum.0 = sum.0.saturating_add(c.events);
            sum.1 = sum.1.saturating_add(c.bytes);
        }
        if sums.is_empty() {
            return Ok(());
        }
        // The limits are read before the buckets are locked: the two locks
        // are never held together.
        let limits: Vec<(&TenantId, Option<TenantQuotas>, u64, u64)> = sums
            .into_iter()
            .map(|(t, (events, bytes))| (t, self.known.quotas(t), events, bytes))
            .collect();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let mut refusal: Option<QuotaExceeded> = None;
        for (tenant, quotas, events, bytes) in &limits {
            let Some(quotas) = quotas else {
                buckets.remove(*tenant);
                continue;
            };
            let entry = buckets.entry((*tenant).clone()).or_default();
            entry.update(quotas, now);
            if entry.is_unlimited() {
                buckets.remove(*tenant);
                continue;
            }
            if let Some((wait, limit)) = entry.wait(*events, *bytes)
                && refusal.as_ref().is_none_or(|r| wait > r.retry_after)
            {
                refusal = Some(QuotaExceeded {
                    tenant: (*tenant).clone(),
                    limit,
                    retry_after: wait,
                });
            }
        }
        if let Some(refusal) = refusal {
            return Err(refusal);
        }
        for (tenant, _, events, bytes) in &limits {
            if let Some(entry) = buckets.get_mut(*tenant) {
                entry.take(*events, *bytes);
            }
        }
        Ok(())
    }

    /// [`IngestQuotas::acquire_all`] of one tenant.
    pub async fn acquire(
        &self,
        tenant: &TenantId,
        events: u64,
        bytes: u64,
        max_wait: Option<Duration>,
    ) -> Result<Duration, QuotaExceeded> {
        self.acquire_all(&[Charge::new(tenant.clone(), events, bytes)], max_wait)
            .await
    }

    /// Takes every charge from its tenant's budget, sleeping until the
    /// budgets allow it; returns how long it waited. With `max_wait`, it
    /// gives up (taking nothing) as soon as the wait would be longer, with
    /// the refusal of the moment; without, it waits as long as it takes,
    /// which is finite (see the module's documentation).
    pub async fn acquire_all(
        &self,
        charges: &[Charge],
        max_wait: Option<Duration>,
    ) -> Result<Duration, QuotaExceeded> {
        let started = tokio::time::Instant::now();
        let deadline = max_wait.map(|w| started + w);
        loop {
            let refusal = match self.try_acquire_all(charges) {
                Ok(()) => return Ok(started.elapsed()),
                Err(e) => e,
            };
            if let Some(deadline) = deadline
                && tokio::time::Instant::now() + refusal.retry_after > deadline
            {
                return Err(refusal);
            }
            // Others of the same tenant may take the budget meanwhile: then
            // the next try says how much longer.
            tokio::time::sleep(refusal.retry_after).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoor_common::control::TenantRecord;

    fn tenant(s: &str) -> TenantId {
        TenantId::new(s).expect("tenant")
    }

    fn record(id: &str, events: u64, bytes: u64) -> TenantRecord {
        let mut r = TenantRecord::new(tenant(id));
        r.quotas.ingest_events_per_second = events;
        r.quotas.ingest_bytes_per_second = bytes;
        r
    }

    fn quotas(records: &[TenantRecord]) -> (KnownTenants, IngestQuotas) {
        let known = KnownTenants::of_records(records);
        (known.clone(), IngestQuotas::new(known))
    }

    fn charge(t: &str, events: u64, bytes: u64) -> Vec<Charge> {
        vec![Charge::new(tenant(t), events, bytes)]
    }

    #[test]
    fn a_tenant_gets_one_second_of_burst_then_its_rate() {
        let (_, q) = quotas(&[record("acme", 100, 0)]);
        let t0 = Instant::now();
        assert!(
            q.try_acquire_all_at(&charge("acme", 60, 1 << 30), t0)
                .is_ok()
        );
        assert!(q.try_acquire_all_at(&charge("acme", 40, 0), t0).is_ok());
        let e = q
            .try_acquire_all_at(&charge("acme", 10, 0), t0)
            .expect_err("burst spent");
        assert_eq!(e.tenant, tenant("acme"));
        assert_eq!(e.limit, "100 events/s");
        assert_eq!(e.retry_after, Duration::from_millis(100));
        assert_eq!(
            e.to_string(),
            "tenant acme is over its ingest quota of 100 events/s on this node; retry after 1 s"
        );
        // 50 ms later, 5 events have come back: 5 are admitted, not 10.
        let t1 = t0 + Duration::from_millis(50);
        let e = q
            .try_acquire_all_at(&charge("acme", 10, 0), t1)
            .expect_err("half way");
        assert_eq!(e.retry_after, Duration::from_millis(50));
        assert!(q.try_acquire_all_at(&charge("acme", 5, 0), t1).is_ok());
        // A long pause refills to one second of rate, no more.
        let t2 = t1 + Duration::from_secs(60);
        assert!(q.try_acquire_all_at(&charge("acme", 100, 0), t2).is_ok());
        assert!(q.try_acquire_all_at(&charge("acme", 1, 0), t2).is_err());
    }

    #[test]
    fn over_a_long_run_the_rate_is_kept() {
        let (_, q) = quotas(&[record("acme", 1000, 0)]);
        let t0 = Instant::now();
        let mut admitted = 0u64;
        // 10 s of someone asking for 70 events every millisecond.
        for ms in 0..10_000 {
            let now = t0 + Duration::from_millis(ms);
            if q.try_acquire_all_at(&charge("acme", 70, 0), now).is_ok() {
                admitted += 70;
            }
        }
        // 1000/s for 10 s plus the first second's burst, within one charge.
        assert!(
            (10_000..=11_070).contains(&admitted),
            "admitted {admitted} events in 10 s at 1000/s"
        );
    }

    #[test]
    fn a_charge_larger_than_the_burst_goes_into_debt() {
        let (_, q) = quotas(&[record("acme", 100, 0)]);
        let t0 = Instant::now();
        // 250 events at 100/s: admitted on a full bucket, which is then 150
        // events in debt.
        assert!(q.try_acquire_all_at(&charge("acme", 250, 0), t0).is_ok());
        let e = q
            .try_acquire_all_at(&charge("acme", 250, 0), t0)
            .expect_err("in debt");
        // The debt (150) and a full bucket (100) again: 2.5 s.
        assert_eq!(e.retry_after, Duration::from_millis(2500));
        let t1 = t0 + Duration::from_millis(2500);
        assert!(q.try_acquire_all_at(&charge("acme", 250, 0), t1).is_ok());
    }

    #[test]
    fn both_quotas_apply_and_the_longer_wait_is_named() {
        let (_, q) = quotas(&[record("acme", 1000, 10_000)]);
        let t0 = Instant::now();
        assert!(
            q.try_acquire_all_at(&charge("acme", 10, 10_000), t0)
                .is_ok()
        );
        let e = q
            .try_acquire_all_at(&charge("acme", 1, 5_000), t0)
            .expect_err("bytes spent");
        assert_eq!(e.limit, "10000 bytes/s");
        assert_eq!(e.retry_after, Duration::from_millis(500));
        // The refused charge took no events either.
        assert!(q.try_acquire_all_at(&charge("acme", 990, 0), t0).is_ok());
    }

    #[test]
    fn tenants_do_not_share_budgets_and_unlimited_ones_are_free() {
        let (_, q) = quotas(&[record("flood", 10, 0), record("calm", 0, 0)]);
        let t0 = Instant::now();
        assert!(q.try_acquire_all_at(&charge("flood", 10, 0), t0).is_ok());
        assert!(q.try_acquire_all_at(&charge("flood", 1, 0), t0).is_err());
        for _ in 0..100 {
            assert!(
                q.try_acquire_all_at(&charge("calm", 1000, 1 << 20), t0)
                    .is_ok()
            );
            assert!(
                q.try_acquire_all_at(&charge("unregistered", 1000, 0), t0)
                    .is_ok()
            );
        }
        assert!(q.try_acquire_all_at(&charge("flood", 1, 0), t0).is_err());
    }

    #[test]
    fn a_charge_of_several_tenants_takes_all_or_nothing() {
        let (_, q) = quotas(&[record("acme", 10, 0), record("globex", 10, 0)]);
        let t0 = Instant::now();
        assert!(q.try_acquire_all_at(&charge("globex", 8, 0), t0).is_ok());
        let both = [
            Charge::new(tenant("acme"), 5, 0),
            Charge::new(tenant("globex"), 5, 0),
        ];
        let e = q.try_acquire_all_at(&both, t0).expect_err("globex short");
        assert_eq!(e.tenant, tenant("globex"));
        // acme was not charged for the refused request.
        assert!(q.try_acquire_all_at(&charge("acme", 10, 0), t0).is_ok());
        // The same tenant twice is checked against the sum.
        let twice = [
            Charge::new(tenant("globex"), 1, 0),
            Charge::new(tenant("globex"), 2, 0),
        ];
        assert!(q.try_acquire_all_at(&twice, t0).is_err());
        assert!(q.try_acquire_all_at(&twice[..1], t0).is_ok());
    }

    #[test]
    fn changed_quotas_take_effect_on_the_next_charge() {
        let (known, q) = quotas(&[record("acme", 10, 0)]);
        let t0 = Instant::now();
        assert!(q.try_acquire_all_at(&charge("acme", 10, 0), t0).is_ok());
        assert!(q.try_acquire_all_at(&charge("acme", 1, 0), t0).is_err());
        // Lifted: no limit at all.
        known.replace_records(&[record("acme", 0, 0)]);
        assert!(q.try_acquire_all_at(&charge("acme", 1000, 0), t0).is_ok());
        // A new limit starts with a full second.
        known.replace_records(&[record("acme", 50, 0)]);
        assert!(q.try_acquire_all_at(&charge("acme", 50, 0), t0).is_ok());
        assert!(q.try_acquire_all_at(&charge("acme", 1, 0), t0).is_err());
        // Raised: noticed at the next charge (the time before it refilled
        // at the old rate), then the refill is faster.
        known.replace_records(&[record("acme", 1000, 0)]);
        let t1 = t0 + Duration::from_millis(100);
        assert!(q.try_acquire_all_at(&charge("acme", 5, 0), t1).is_ok());
        assert!(q.try_acquire_all_at(&charge("acme", 1, 0), t1).is_err());
        let t1 = t1 + Duration::from_millis(100);
        assert!(q.try_acquire_all_at(&charge("acme", 100, 0), t1).is_ok());
        // Lowered: the burst shrinks to the new second.
        known.replace_records(&[record("acme", 5, 0)]);
        let t2 = t1 + Duration::from_secs(10);
        assert!(q.try_acquire_all_at(&charge("acme", 6, 0), t2).is_ok());
        let e = q
            .try_acquire_all_at(&charge("acme", 5, 0), t2)
            .expect_err("5/s now");
        assert_eq!(e.limit, "5 events/s");
        // Unregistered: no limit.
        known.replace_records(&[]);
        assert!(q.try_acquire_all_at(&charge("acme", 1000, 0), t2).is_ok());
    }

    #[test]
    fn empty_charges_always_pass() {
        let (_, q) = quotas(&[record("acme", 1, 1)]);
        let t0 = Instant::now();
        assert!(q.try_acquire_all_at(&charge("acme", 1, 1), t0).is_ok());
        assert!(q.try_acquire_all_at(&charge("acme", 0, 0), t0).is_ok());
        assert!(q.try_acquire_all_at(&[], t0).is_ok());
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        let e = |ms| QuotaExceeded {
            tenant: tenant("acme"),
            limit: String::new(),
            retry_after: Duration::from_millis(ms),
        };
        assert_eq!(e(0).retry_after_secs(), 1);
        assert_eq!(e(1).retry_after_secs(), 1);
        assert_eq!(e(1000).retry_after_secs(), 1);
        assert_eq!(e(1001).retry_after_secs(), 2);
    }

    #[tokio::test]
    async fn acquire_waits_until_allowed_or_gives_up_at_once() {
        let (_, q) = quotas(&[record("acme", 20, 0)]);
        let acme = tenant("acme");
        let waited = q.acquire(&acme, 20, 0, None).await.expect("burst");
        assert!(waited < Duration::from_millis(50), "{waited:?}");
        // 5 events at 20/s: about 250 ms.
        let waited = q
            .acquire(&acme, 5, 0, Some(Duration::from_secs(5)))
            .await
            .expect("waits");
        assert!(
            waited >= Duration::from_millis(240) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        // A wait longer than allowed fails without sleeping and takes nothing.
        let started = std::time::Instant::now();
        let e = q
            .acquire(&acme, 20, 0, Some(Duration::from_millis(100)))
            .await
            .expect_err("too long");
        assert!(started.elapsed() < Duration::from_millis(50));
        assert!(e.retry_after > Duration::from_millis(900), "{e:?}");
        // Larger than the burst, with no limit on the wait: admitted once
        // the bucket is full again (one second), never stuck.
        let waited = q.acquire(&acme, 60, 0, None).await.expect("admitted");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
    }

    #[test]
    fn the_quota_settings_are_checked_at_start_up() {
        use spoor_common::config::{Config, QuotaExceededAction};
        let load = |sets: &[&str]| {
            Config::load(
                None,
                Vec::new(),
                &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        let c = load(&[]).expect("defaults");
        assert_eq!(c.ingest.quota_exceeded, QuotaExceededAction::Reject);
        assert_eq!(c.ingest.quota_max_delay_ms, 30_000);
        let c = load(&[
            "ingest.quota_exceeded=delay",
            "ingest.quota_max_delay_ms=500",
        ])
        .expect("delay");
        assert_eq!(c.ingest.quota_exceeded, QuotaExceededAction::Delay);
        for (sets, key) in [
            (&["ingest.quota_exceeded=drop"][..], "quota_exceeded"),
            (
                &["ingest.quota_max_delay_ms=soon"][..],
                "quota_max_delay_ms",
            ),
            (
                &["ingest.quota_max_delay_ms=3600000"][..],
                "ingest.quota_max_delay_ms",
            ),
            (
                &["ingest.quota_exceeded=delay", "ingest.quota_max_delay_ms=0"][..],
                "ingest.quota_max_delay_ms",
            ),
        ] {
            let err = load(sets).expect_err("refused").to_string();
            assert!(err.contains(key), "{sets:?}: {err}");
        }
    }
}

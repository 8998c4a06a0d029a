//! Time helpers: the lake counts time in microseconds since the Unix epoch.

use chrono::{DateTime, Utc};

/// Now, in microseconds since the epoch.
pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// A microsecond timestamp as a UTC date-time (clamped to chrono's range).
pub fn to_datetime(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A microsecond timestamp as RFC 3339 in UTC, to the second
/// (`2026-12-02T16:30:00Z`), for messages and CLI output.
pub fn rfc3339(micros: i64) -> String {
    to_datetime(micros).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

//! Object keys and file ids of the lake (DESIGN.md, storage layout):
//! `{root}/tenants/{tenant}/{table}/date=YYYY-MM-DD/hour=HH/{file-id}.parquet`.

use sha2::{Digest, Sha256};

use crate::catalog::SourceRange;
use crate::schema::Table;
use crate::tenant::TenantId;
use crate::time::to_datetime;

/// The prefix under which all files of a tenant's table live.
pub fn table_prefix(tenant: &TenantId, table: Table) -> String {
    format!("tenants/{tenant}/{table}/")
}

/// The start of the UTC hour holding `micros`, in microseconds.
pub fn hour_start_micros(micros: i64) -> i64 {
    micros.div_euclid(3_600_000_000) * 3_600_000_000
}

/// The object key of a file whose rows fall in the hour of `hour_micros`.
pub fn object_key(tenant: &TenantId, table: Table, hour_micros: i64, file_id: &str) -> String {
    let t = to_datetime(hour_micros);
    format!(
        "{}{}/{file_id}.parquet",
        table_prefix(tenant, table),
        t.format("date=%Y-%m-%d/hour=%H")
    )
}

/// The id of the file holding one tenant's rows of one table and hour from
/// a Kafka range (one range may carry several tenants' events). Derived only
/// from the tenant, source range, table and hour, so a retried or replayed
/// batch with the same range writes the same key and commits the same
/// catalog entry.
pub fn file_id_for_range(
    source: &SourceRange,
    tenant: &TenantId,
    table: Table,
    hour_micros: i64,
) -> String {
    digest(&[
        tenant.as_str().as_bytes(),
        source.source_id.as_bytes(),
        source.topic.as_bytes(),
        &source.partition.to_be_bytes(),
        &source.first_offset.to_be_bytes(),
        &source.last_offset.to_be_bytes(),
        table.name().as_bytes(),
        &hour_start_micros(hour_micros).to_be_bytes(),
    ])
}

/// The id of a file from a source without offsets (HTTP ingest): derived from
/// the request's unique id, table and hour.
pub fn file_id_for_request(
    request_id: &str,
    tenant: &TenantId,
    table: Table,
    hour_micros: i64,
) -> String {
    digest(&[
        b"request",
        tenant.as_str().as_bytes(),
        request_id.as_bytes(),
        table.name().as_bytes(),
        &hour_start_micros(hour_micros).to_be_bytes(),
    ])
}

/// The id of an `alert_updates` file (and of the update it holds): derived
/// from everything the update says, its time included, so one update is one
/// object and one catalog entry however often its commit is retried. (A
/// client that sends the same PATCH again makes a second update, stamped
/// later: the history shows both.)
pub fn file_id_for_alert_update(
    tenant: &TenantId,
    alert_id: &str,
    time_micros: i64,
    fields: &[Option<&str>],
) -> String {
    let mut parts: Vec<&[u8]> = vec![
        b"alert_update",
        tenant.as_str().as_bytes(),
        alert_id.as_bytes(),
    ];
    let time = time_micros.to_be_bytes();
    parts.push(&time);
    // A missing field and an empty one differ.
    for f in fields {
        match f {
            Some(v) => {
                parts.push(b"1");
                parts.push(v.as_bytes());
            }
            None => parts.push(b"0"),
        }
    }
    digest(&parts)
}

fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        // Length-prefix every part so ("ab","c") and ("a","bc") differ.
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> TenantId {
        TenantId::new("acme").expect("tenant")
    }

    fn range(first: i64, last: i64) -> SourceRange {
        SourceRange {
            source_id: "s".into(),
            topic: "t".into(),
            partition: 3,
            first_offset: first,
            last_offset: last,
        }
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        let tenant = TenantId::new("acme").expect("tenant");
        // 2024-03-05T07:30:00Z
        let micros = 1_709_623_800_000_000;
        let key = object_key(&tenant, Table::Events, micros, "abc");
        assert_eq!(
            key,
            "tenants/acme/events/date=2024-03-05/hour=07/abc.parquet"
        );
    }

    #[test]
    fn file_ids_are_deterministic_and_distinct() {
        let h = 1_709_623_800_000_000;
        assert_eq!(
            file_id_for_range(&range(0, 9), &acme(), Table::Events, h),
            file_id_for_range(&range(0, 9), &acme(), Table::Events, h + 5)
        );
        assert_ne!(
            file_id_for_range(&range(0, 9), &acme(), Table::Events, h),
            file_id_for_range(&range(0, 10), &acme(), Table::Events, h)
        );
        assert_ne!(
            file_id_for_range(&range(0, 9), &acme(), Table::Events, h),
            file_id_for_range(&range(0, 9), &acme(), Table::DeadLetter, h)
        );
        assert_ne!(
            file_id_for_range(&range(0, 9), &acme(), Table::Events, h),
            file_id_for_range(&range(0, 9), &acme(), Table::Events, h + 3_600_000_000)
        );
        let other = TenantId::new("other").expect("tenant");
        assert_ne!(
            file_id_for_range(&range(0, 9), &acme(), Table::Events, h),
            file_id_for_range(&range(0, 9), &other, Table::Events, h),
            "tenants of one range get their own files"
        );
        assert_eq!(
            file_id_for_range(&range(0, 9), &acme(), Table::Events, h).len(),
            32
        );
    }

    #[test]
    fn alert_update_ids_depend_on_every_field() {
        let id = |t: i64, f: &[Option<&str>]| file_id_for_alert_update(&acme(), "a1", t, f);
        let base = id(1, &[Some("closed"), None]);
        assert_eq!(base, id(1, &[Some("closed"), None]));
        assert_ne!(base, id(2, &[Some("closed"), None]));
        assert_ne!(base, id(1, &[Some("closed"), Some("")]));
        assert_ne!(base, id(1, &[Some("new"), None]));
        assert_ne!(
            base,
            file_id_for_alert_update(&acme(), "a2", 1, &[Some("closed"), None])
        );
    }

    #[test]
    fn hours_floor_before_the_epoch() {
        assert_eq!(hour_start_micros(-1), -3_600_000_000);
        assert_eq!(hour_start_micros(3_600_000_000), 3_600_000_000);
    }
}

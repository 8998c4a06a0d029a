//! Correlation state checkpoints in object storage.
//!
//! One object per commit, under the tenant's folder but outside every table
//! (no query or orphan scan reads it):
//! `tenants/{tenant}/_state/correlation/{rule set}/{bucket}/{sequence:020}-{epoch:010}.state`.
//! The object is a header line with the SHA-256 of the body and the
//! catalog sequence it belongs to, then the window state as JSON, so a torn
//! or altered object is detected, not trusted. The newest few are kept: when
//! the one a checkpoint names is damaged, the shard restores an older one and
//! replays the catalog from there.

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use spoor_common::control::ShardId;

use crate::window::CorrelatorSnapshot;

const MAGIC: &str = "spoor-correlation-state v1";

/// State objects kept per shard (the newest); older ones are deleted.
pub(crate) const STATES_KEPT: usize = 3;

/// The folder of a shard's state objects.
pub(crate) fn prefix(shard: &ShardId) -> String {
    format!(
        "tenants/{}/_state/correlation/{}/{}/",
        shard.tenant, shard.rule_group, shard.bucket
    )
}

/// The key of the state written at `sequence` under lease `epoch`.
pub(crate) fn key(shard: &ShardId, sequence: u64, epoch: u64) -> String {
    format!("{}{sequence:020}-{epoch:010}.state", prefix(shard))
}

/// The catalog sequence in a state object's key.
pub(crate) fn sequence_of(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    name.strip_suffix(".state")?.split('-').next()?.parse().ok()
}

/// Encodes a snapshot taken at `sequence`.
pub(crate) fn encode(snapshot: &CorrelatorSnapshot, sequence: u64) -> Result<Vec<u8>, String> {
    let body = serde_json::to_vec(snapshot).map_err(|e| format!("encoding window state: {e}"))?;
    let mut out = format!(
        "{MAGIC} sha256={} sequence={sequence}\n",
        hex::encode(Sha256::digest(&body))
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes and verifies a state object; the error says what is wrong.
pub(crate) fn decode(bytes: &[u8], expected_sequence: u64) -> Result<CorrelatorSnapshot, String> {
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("no header line")?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| "header is not UTF-8")?;
    let rest = header
        .strip_prefix(MAGIC)
        .ok_or_else(|| format!("header {header:?} is not {MAGIC:?}"))?;
    let mut sha = None;
    let mut sequence = None;
    for part in rest.split_whitespace() {
        if let Some(v) = part.strip_prefix("sha256=") {
            sha = Some(v);
        } else if let Some(v) = part.strip_prefix("sequence=") {
            sequence = v.parse::<u64>().ok();
        }
    }
    let body = &bytes[newline + 1..];
    let actual = hex::encode(Sha256::digest(body));
    if sha != Some(actual.as_str()) {
        return Err(format!(
            "checksum mismatch: header says {}, body hashes to {actual}",
            sha.unwrap_or("nothing")
        ));
    }
    if sequence != Some(expected_sequence) {
        return Err(format!(
            "written at catalog sequence {sequence:?}, expected {expected_sequence}"
        ));
    }
    serde_json::from_slice(body).map_err(|e| format!("window state is not valid: {e}"))
}

/// Reads and verifies the state object `key` written at `sequence`.
pub(crate) async fn load(
    store: &dyn ObjectStore,
    key: &str,
    sequence: u64,
) -> Result<CorrelatorSnapshot, String> {
    let bytes = store
        .get(&ObjectPath::from(key))
        .await
        .map_err(|e| format!("cannot read: {e}"))?
        .bytes()
        .await
        .map_err(|e| format!("cannot read: {e}"))?;
    decode(&bytes, sequence)
}

/// The shard's state objects, newest first.
pub(crate) async fn list(store: &dyn ObjectStore, shard: &ShardId) -> Result<Vec<String>, String> {
    use futures::TryStreamExt;
    let prefix = ObjectPath::from(prefix(shard).as_str());
    let metas: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| format!("listing {prefix}: {e}"))?;
    let mut keys: Vec<String> = metas
        .into_iter()
        .map(|m| m.location.to_string())
        .filter(|k| sequence_of(k).is_some())
        .collect();
    // Zero-padded sequence and epoch: the text order is the numeric order.
    keys.sort_unstable_by(|a, b| b.cmp(a));
    Ok(keys)
}

/// Deletes all but the newest [`STATES_KEPT`] state objects; failures are
/// logged (a leftover object costs only space).
pub(crate) async fn prune(store: &dyn ObjectStore, shard: &ShardId) {
    let keys = match list(store, shard).await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(%shard, error = %e, "cannot list old window states; kept");
            return;
        }
    };
    for key in keys.iter().skip(STATES_KEPT) {
        if let Err(e) = store.delete(&ObjectPath::from(key.as_str())).await {
            tracing::warn!(%shard, key, error = %e, "cannot delete an old window state; kept");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard() -> ShardId {
        ShardId {
            tenant: "acme".into(),
            rule_group: "windows".into(),
            bucket: 2,
        }
    }

    #[test]
    fn keys_sort_by_sequence_and_name_it() {
        let a = key(&shard(), 9, 3);
        let b = key(&shard(), 10, 1);
        assert!(a < b);
        assert_eq!(sequence_of(&b), Some(10));
        assert!(a.starts_with("tenants/acme/_state/correlation/windows/2/"));
    }

    #[test]
    fn damage_is_detected() {
        let engine = crate::testing::engine(
            "title: t\nid: r1\nlogsource: {product: windows}\ndetection: {s: {EventID: 1}, condition: s}\n---\ntitle: c\ncorrelation: {type: event_count, rules: [r1], group-by: [User], timespan: 1m, condition: {gte: 2}}\n",
        );
        let snapshot = crate::window::Correlator::new(&engine, Default::default()).snapshot();
        let bytes = encode(&snapshot, 7).expect("encode");
        decode(&bytes, 7).expect("round trip");
        let err = decode(&bytes, 8).expect_err("other sequence");
        assert!(err.contains("expected 8"), "{err}");
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let err = decode(&flipped, 7).expect_err("flipped");
        assert!(err.contains("checksum mismatch"), "{err}");
        let err = decode(&bytes[..bytes.len() - 3], 7).expect_err("torn");
        assert!(err.contains("checksum"), "{err}");
        assert!(decode(b"garbage", 7).is_err());
    }
}

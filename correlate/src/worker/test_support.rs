//! Fixtures the worker's tests share (the live worker's in `tests`, the
//! retro-hunts' in `retro/tests`): rules, events of tenant `acme`
//! committed to an in-memory lake, and the files a run left there.

use arrow::array::RecordBatch;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use spoor_common::catalog::{Catalog, CommitBatch, FileQuery, MemoryCatalog, NewFile};
use spoor_common::lake_file::encode_parquet;
use spoor_common::layout;
use spoor_common::schema::{EVENT_COLUMNS, EVENT_SCHEMA_VERSION, Table};
use spoor_common::tenant::TenantId;

/// A detection: every failed logon (`action: logon_failed`).
pub(super) const FAILED_LOGON: &str = r#"title: Failed logon
id: base
logsource: {product: test}
detection:
    selection: {action: logon_failed}
    condition: selection
"#;

/// A correlation: three failed logons of one `user` within 10 minutes.
pub(super) const REPEATED_FAILED_LOGONS: &str = r#"title: Repeated failed logons
id: burst
correlation:
    type: event_count
    rules: [base]
    group-by: [user]
    timespan: 10m
    condition: {gte: 3}
"#;

/// A detection: a `cmd` with `-enc `.
pub(super) const ENCODED_SHELL: &str = r#"title: Encoded shell
id: shell
logsource: {product: test}
detection:
    selection: {cmd|contains: '-enc '}
    condition: selection
"#;

/// One rules file of `docs` (the consts above), in that order.
pub(super) fn rules(docs: &[&str]) -> String {
    docs.join("---\n")
}

/// The tenant of every fixture.
pub(super) fn tenant() -> TenantId {
    TenantId::new("acme").expect("tenant")
}

/// The `unmapped` fields of event `i`, of `user`: every ninth event an
/// encoded shell ([`ENCODED_SHELL`]), the others failed logons.
pub(super) fn logon_or_shell(i: usize, user: String) -> serde_json::Value {
    if i.is_multiple_of(9) {
        serde_json::json!({"action": "exec", "cmd": format!("cmd -enc {i}"), "user": user})
    } else {
        serde_json::json!({"action": "logon_failed", "user": user})
    }
}

/// Commits `batch` as the events file `file_id` of [`tenant`], its times
/// `min_micros..=max_micros` (its object in the hour of `min_micros`).
pub(super) async fn commit_events_file(
    store: &InMemory,
    catalog: &MemoryCatalog,
    file_id: String,
    batch: &RecordBatch,
    (min_micros, max_micros): (i64, i64),
) {
    let bytes = encode_parquet(batch, EVENT_COLUMNS, 1).expect("encode");
    let key = layout::object_key(
        &tenant(),
        Table::Events,
        layout::hour_start_micros(min_micros),
        &file_id,
    );
    let size = bytes.len() as u64;
    store
        .put(&ObjectPath::from(key.as_str()), PutPayload::from(bytes))
        .await
        .expect("put");
    catalog
        .commit_batch(CommitBatch {
            files: vec![NewFile {
                file_id,
                tenant: tenant(),
                table: Table::Events,
                object_key: key,
                min_time_micros: min_micros,
                max_time_micros: max_micros,
                row_count: batch.num_rows() as u64,
                byte_size: size,
                schema_version: EVENT_SCHEMA_VERSION,
                source: None,
            }],
            checkpoints: Vec::new(),
        })
        .await
        .expect("commit");
}

/// Every file of [`tenant`]'s `table`, in commit order: its catalog
/// sequence and its batches.
pub(super) async fn table_files(
    store: &InMemory,
    catalog: &MemoryCatalog,
    table: Table,
) -> Vec<(u64, Vec<RecordBatch>)> {
    let files = catalog
        .list_files(FileQuery::all(tenant(), table))
        .await
        .expect("list");
    let mut out = Vec::new();
    for f in files {
        let bytes = store
            .get(&ObjectPath::from(f.file.object_key.as_str()))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        out.push((f.sequence, super::files::decode(bytes).expect("decode")));
    }
    out
}

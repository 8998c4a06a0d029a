use super::*;
use crate::audit::Cancel;
use arrow::array::{Array, Int64Array};
use spoor_common::catalog::{CommitBatch, MemoryCatalog, NewFile};
use spoor_common::control::TokenRole;
use spoor_common::layout;
use spoor_common::schema::EVENT_SCHEMA_VERSION;

/// Limits small enough for tests to reach: 3 rows, 4 queries per tenant.
pub(crate) fn config() -> QueryConfig {
    QueryConfig {
        max_result_rows: 3,
        timeout_ms: 30_000,
        max_sql_bytes: 1000,
        max_memory_bytes: 64 << 20,
        auth: spoor_common::config::HttpAuth::None,
        max_concurrent_per_tenant: 4,
        history_size: 100,
        flight_addr: String::new(),
        postgres_addr: String::new(),
    }
}

/// Writes a small events file with `n` rows straight through parquet and commits it.
async fn seed(
    catalog: &MemoryCatalog,
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    n: usize,
    tag: &str,
) {
    use arrow::array::{ArrayRef, new_null_array};
    use object_store::ObjectStoreExt;
    let schema = event_schema();
    let base = 1_700_000_000_000_000i64;
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "time" | "ingest_time" => Arc::new(
                    arrow::array::TimestampMicrosecondArray::from(
                        (0..n as i64).map(|i| base + i).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                "raw" | "unmapped" | "source_topic" => {
                    Arc::new(arrow::array::StringArray::from(vec![tag.to_string(); n]))
                }
                "src_ip" => Arc::new(arrow::array::StringArray::from(
                    (0..n).map(|i| format!("10.0.0.{i}")).collect::<Vec<_>>(),
                )),
                _ => new_null_array(f.data_type(), n),
            }
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).expect("writer");
    w.write(&batch).expect("write");
    w.close().expect("close");
    let file_id = format!("{tag}0000");
    let key = layout::object_key(tenant, Table::Events, base, &file_id);
    store
        .put(
            &object_store::path::Path::from(key.as_str()),
            buf.clone().into(),
        )
        .await
        .expect("put");
    catalog
        .commit_batch(CommitBatch {
            files: vec![NewFile {
                file_id,
                tenant: tenant.clone(),
                table: Table::Events,
                object_key: key,
                min_time_micros: base,
                max_time_micros: base + n as i64,
                row_count: n as u64,
                byte_size: buf.len() as u64,
                schema_version: EVENT_SCHEMA_VERSION,
                source: None,
            }],
            checkpoints: vec![],
        })
        .await
        .expect("commit");
}

async fn engine() -> (QueryEngine, TenantId, TenantId) {
    let catalog = Arc::new(MemoryCatalog::new());
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let acme = TenantId::new("acme").expect("t");
    let globex = TenantId::new("globex").expect("t");
    seed(&catalog, &store, &acme, 5, "a").await;
    seed(&catalog, &store, &acme, 2, "b").await;
    seed(&catalog, &store, &globex, 4, "c").await;
    (QueryEngine::new(catalog, store, config()), acme, globex)
}

fn count(out: &QueryOutput) -> i64 {
    let col = out.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("int64");
    col.value(0)
}

#[tokio::test]
async fn counts_only_the_tenants_files() {
    let (engine, acme, globex) = engine().await;
    assert_eq!(
        count(
            &engine
                .execute(
                    &Scope::single(acme.clone()),
                    "test",
                    "SELECT count(*) FROM events"
                )
                .await
                .expect("acme")
        ),
        7
    );
    assert_eq!(
        count(
            &engine
                .execute(
                    &Scope::single(globex.clone()),
                    "test",
                    "SELECT count(*) FROM events"
                )
                .await
                .expect("globex")
        ),
        4
    );
    let other = TenantId::new("initech").expect("t");
    assert_eq!(
        count(
            &engine
                .execute(
                    &Scope::single(other.clone()),
                    "test",
                    "SELECT count(*) FROM events"
                )
                .await
                .expect("empty")
        ),
        0
    );
    assert_eq!(
        count(
            &engine
                .execute(
                    &Scope::single(other.clone()),
                    "test",
                    "SELECT count(*) FROM dead_letter"
                )
                .await
                .expect("empty")
        ),
        0
    );
}

#[tokio::test]
async fn filters_and_caps_rows() {
    let (engine, acme, _) = engine().await;
    let out = engine
        .execute(
            &Scope::single(acme.clone()),
            "test",
            "SELECT src_ip FROM events WHERE src_ip LIKE '10.0.0.%' ORDER BY time",
        )
        .await
        .expect("q");
    assert_eq!(out.row_count, 3);
    assert!(out.truncated);
    let out = engine
        .execute(
            &Scope::single(acme.clone()),
            "test",
            "SELECT src_ip FROM events WHERE src_ip = '10.0.0.4'",
        )
        .await
        .expect("q");
    assert_eq!(out.row_count, 1);
    assert!(!out.truncated);
}

#[tokio::test]
async fn refuses_writes_ddl_paths_and_bad_sql_with_reasons() {
    let (engine, acme, _) = engine().await;
    for (sql, needle) in [
        ("SELEC 1", "SELEC"),
        ("SELECT nope FROM events", "nope"),
        ("SELECT * FROM secrets", "secrets"),
        (
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'",
            "DDL",
        ),
        ("INSERT INTO events (raw) VALUES ('x')", "DML"),
        ("SET datafusion.execution.batch_size = 1", "Statement"),
        ("SELECT * FROM '/etc/passwd'", "/etc/passwd"),
        ("COPY events TO '/tmp/x.parquet'", "DML"),
        ("SELECT * FROM globex.events", "globex"),
    ] {
        let err = engine
            .execute(&Scope::single(acme.clone()), "test", sql)
            .await
            .expect_err(sql);
        assert!(matches!(err, QueryError::InvalidSql(_)), "{sql}: {err:?}");
        assert!(err.to_string().contains(needle), "{sql}: {err}");
    }
    let long = format!("SELECT 1 -- {}", "x".repeat(2000));
    assert_eq!(
        engine
            .execute(&Scope::single(acme.clone()), "test", &long)
            .await
            .expect_err("long")
            .code(),
        "sql_too_large"
    );
}

#[tokio::test]
async fn information_schema_lists_only_the_tenant() {
    let (engine, acme, _) = engine().await;
    let out = engine
        .execute(&Scope::single(acme.clone()), "test", "SELECT count(DISTINCT table_schema) FROM information_schema.tables WHERE table_schema <> 'information_schema'")
        .await
        .expect("q");
    assert_eq!(count(&out), 1);
}

#[tokio::test]
async fn a_query_past_its_memory_limit_fails_alone_with_a_reason() {
    let catalog = Arc::new(MemoryCatalog::new());
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let tenant = TenantId::new("acme").expect("tenant");
    let engine = QueryEngine::new(
        catalog,
        store,
        QueryConfig {
            max_memory_bytes: 1 << 20,
            ..config()
        },
    );
    // Half a million distinct strings do not fit in 1 MiB of hash table.
    let sql = "SELECT count(DISTINCT v) FROM \
        (SELECT concat('value-', CAST(value AS VARCHAR)) AS v FROM generate_series(1, 500000))";
    let err = engine
        .execute(&Scope::single(tenant.clone()), "test", sql)
        .await
        .expect_err("over the limit");
    assert_eq!(err.code(), "memory_limit", "{err}");
    assert!(err.to_string().contains("query.max_memory_bytes"), "{err}");
    // The engine serves the next query as usual.
    let out = engine
        .execute(&Scope::single(tenant.clone()), "test", "SELECT 1")
        .await
        .expect("next query");
    assert_eq!(out.row_count, 1);
}

fn both(acme: &TenantId, globex: &TenantId) -> Scope {
    Scope::for_token([acme.clone(), globex.clone()], "op".into(), true).expect("scope")
}

#[tokio::test]
async fn an_operator_sees_several_tenants_with_a_tenant_column() {
    let (engine, acme, globex) = engine().await;
    let scope = both(&acme, &globex);
    let out = engine
        .execute(
            &scope,
            "test",
            "SELECT tenant, count(*) AS n FROM events GROUP BY tenant ORDER BY tenant",
        )
        .await
        .expect("q");
    let json = crate::http::to_json(&out).expect("json");
    assert_eq!(
        json["rows"],
        serde_json::json!([{"tenant": "acme", "n": 7}, {"tenant": "globex", "n": 4}])
    );
    // A tenant filter decides before any file is opened: on an engine that
    // has read nothing yet, asking for a tenant with no files reads no byte
    // (the Parquet footers of the others would be read otherwise).
    let (cold, acme2, globex2) = super::tests::engine().await;
    let cold_scope = both(&acme2, &globex2);
    let out = cold
        .execute(
            &cold_scope,
            "test",
            "SELECT count(raw) FROM events WHERE tenant = 'nobody' AND raw LIKE '%'",
        )
        .await
        .expect("q");
    assert_eq!(count(&out), 0);
    assert_eq!(cold.log().visible(&cold_scope, 1)[0].bytes_scanned, 0);
    let out = cold
        .execute(
            &cold_scope,
            "test",
            "SELECT count(raw) FROM events WHERE tenant IN ('globex') AND raw LIKE '%'",
        )
        .await
        .expect("q");
    assert_eq!(count(&out), 4);
    assert!(cold.log().visible(&cold_scope, 1)[0].bytes_scanned > 0);
    // A tenant outside the scope is not there even by name.
    let out = engine
        .execute(
            &scope,
            "test",
            "SELECT count(*) FROM events WHERE tenant = 'initech'",
        )
        .await
        .expect("q");
    assert_eq!(count(&out), 0);
    // A single-tenant scope has the column too, always its own tenant.
    let out = engine
        .execute(
            &Scope::single(acme.clone()),
            "test",
            "SELECT count(*) FROM events WHERE tenant <> 'acme'",
        )
        .await
        .expect("q");
    assert_eq!(count(&out), 0);
}

#[tokio::test]
async fn every_query_is_audited_with_rows_and_bytes() {
    let (engine, acme, globex) = engine().await;
    let acme_scope = Scope::single(acme.clone());
    engine
        .execute(&acme_scope, "test", "SELECT raw FROM events")
        .await
        .expect("q");
    engine
        .execute(&acme_scope, "test", "SELECT nope FROM events")
        .await
        .expect_err("bad");
    let seen = engine.log().visible(&acme_scope, 10);
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].outcome, "invalid_sql");
    assert!(seen[0].error.as_deref().unwrap_or("").contains("nope"));
    assert_eq!(seen[1].outcome, "ok");
    assert_eq!(seen[1].rows, 3, "capped at max_result_rows");
    assert!(seen[1].bytes_scanned > 0);
    assert_eq!(seen[1].tenants, ["acme"]);
    // Another tenant sees none of it.
    assert!(engine.log().visible(&Scope::single(globex), 10).is_empty());
}

#[tokio::test]
async fn queries_past_the_tenant_limit_are_refused_and_cancel_works() {
    let (engine, acme, globex) = engine().await;
    let scope = Scope::single(acme.clone());
    // Four streams held open take the tenant's four slots (config()).
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            engine
                .execute_stream(&scope, "test", "SELECT raw FROM events")
                .await
                .expect("slot"),
        );
    }
    let err = engine
        .execute(&scope, "test", "SELECT 1")
        .await
        .expect_err("full");
    assert_eq!(err.code(), "too_many_queries", "{err}");
    // Other tenants are not affected.
    engine
        .execute(&Scope::single(globex.clone()), "test", "SELECT 1")
        .await
        .expect("globex");
    // Cancelling one ends its stream with an error and frees its slot.
    let mut first = held.remove(0);
    // Seen by other users of the tenant, but not theirs to stop: a viewer
    // or an analyst with another token; a tenant-admin may.
    for role in [TokenRole::Viewer, TokenRole::Analyst] {
        let other = Scope::for_token([acme.clone()], "0123456789abcdef".into(), false)
            .expect("scope")
            .with_role(role);
        assert_eq!(
            engine.log().cancel(&other, &first.query_id),
            Cancel::NotYours
        );
    }
    let stranger = Scope::single(globex.clone());
    assert_eq!(
        engine.log().cancel(&stranger, &first.query_id),
        Cancel::NotFound
    );
    let manager = Scope::for_token([acme.clone()], "fedcba9876543210".into(), false)
        .expect("scope")
        .with_role(TokenRole::TenantAdmin);
    assert_eq!(
        engine.log().cancel(&manager, &first.query_id),
        Cancel::Cancelled
    );
    let next = first.batches.next().await.expect("an item");
    assert_eq!(next.expect_err("cancelled").code(), "query_cancelled");
    drop(first);
    engine
        .execute(&scope, "test", "SELECT 1")
        .await
        .expect("a slot is free");
    drop(held);
    let outcomes: Vec<String> = engine
        .log()
        .visible(&scope, 10)
        .into_iter()
        .map(|r| r.outcome)
        .collect();
    // One cancelled by id, three whose client went away (streams dropped).
    assert_eq!(
        outcomes.iter().filter(|o| *o == "query_cancelled").count(),
        4,
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&"too_many_queries".to_string()),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn time_bounds_skip_files_before_opening_them() {
    let (engine, acme, _) = engine().await;
    let scope = Scope::single(acme);
    // seed() writes rows from 2023-11-14T22:13:20Z on; nothing is that late.
    let out = engine
        .execute(
            &scope,
            "test",
            "SELECT count(raw) FROM events WHERE time >= TIMESTAMP '2030-01-01T00:00:00Z'",
        )
        .await
        .expect("q");
    assert_eq!(count(&out), 0);
    assert_eq!(
        engine.log().visible(&scope, 1)[0].bytes_scanned,
        0,
        "no file opened"
    );
    let out = engine
        .execute(
            &scope,
            "test",
            "SELECT count(raw) FROM events WHERE time BETWEEN TIMESTAMP '2023-11-14T00:00:00Z' AND TIMESTAMP '2023-11-15T00:00:00Z'",
        )
        .await
        .expect("q");
    assert_eq!(count(&out), 7);
    assert!(engine.log().visible(&scope, 1)[0].bytes_scanned > 0);
}

/// `tenant`'s scope (as a token's) with `quotas`.
fn scope_with(tenant: &TenantId, quotas: spoor_common::control::TenantQuotas) -> Scope {
    Scope::for_token([tenant.clone()], "t".into(), false)
        .expect("scope")
        .with_quotas([(tenant.clone(), quotas)].into())
}

#[tokio::test]
async fn a_tenants_quotas_bound_its_concurrency_and_what_one_query_reads() {
    let (engine, acme, globex) = engine().await;
    let one_at_a_time = scope_with(
        &acme,
        spoor_common::control::TenantQuotas {
            max_concurrent_queries: 1,
            ..Default::default()
        },
    );
    let held = engine
        .execute_stream(&one_at_a_time, "test", "SELECT raw FROM events")
        .await
        .expect("first");
    let err = engine
        .execute(&one_at_a_time, "test", "SELECT 1")
        .await
        .expect_err("its quota is one");
    assert!(
        matches!(err, QueryError::TooManyQueries { limit: 1, .. }),
        "{err}"
    );
    // Without the quota the node's limit (4) applies again.
    engine
        .execute(&Scope::single(acme.clone()), "test", "SELECT 1")
        .await
        .expect("node limit");
    drop(held);

    let small = scope_with(
        &globex,
        spoor_common::control::TenantQuotas {
            max_query_scanned_bytes: 1,
            ..Default::default()
        },
    );
    let err = engine
        .execute(&small, "test", "SELECT raw FROM events")
        .await
        .expect_err("past one byte");
    assert_eq!(err.code(), "scan_limit", "{err}");
    assert!(err.to_string().contains("tenant globex"), "{err}");
    let roomy = scope_with(
        &globex,
        spoor_common::control::TenantQuotas {
            max_query_scanned_bytes: 1 << 30,
            ..Default::default()
        },
    );
    engine
        .execute(&roomy, "test", "SELECT raw FROM events")
        .await
        .expect("within the limit");
}

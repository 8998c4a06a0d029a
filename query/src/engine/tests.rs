use super::*;
use arrow::array::{Array, Int64Array};
use spoor_common::catalog::{CommitBatch, MemoryCatalog, NewFile};
use spoor_common::layout;
use spoor_common::schema::EVENT_SCHEMA_VERSION;

fn config() -> QueryConfig {
    QueryConfig {
        max_result_rows: 3,
        timeout_ms: 30_000,
        max_sql_bytes: 1000,
        max_memory_bytes: 64 << 20,
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
                .execute(&acme, "SELECT count(*) FROM events")
                .await
                .expect("acme")
        ),
        7
    );
    assert_eq!(
        count(
            &engine
                .execute(&globex, "SELECT count(*) FROM events")
                .await
                .expect("globex")
        ),
        4
    );
    let other = TenantId::new("initech").expect("t");
    assert_eq!(
        count(
            &engine
                .execute(&other, "SELECT count(*) FROM events")
                .await
                .expect("empty")
        ),
        0
    );
    assert_eq!(
        count(
            &engine
                .execute(&other, "SELECT count(*) FROM dead_letter")
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
            &acme,
            "SELECT src_ip FROM events WHERE src_ip LIKE '10.0.0.%' ORDER BY time",
        )
        .await
        .expect("q");
    assert_eq!(out.row_count, 3);
    assert!(out.truncated);
    let out = engine
        .execute(&acme, "SELECT src_ip FROM events WHERE src_ip = '10.0.0.4'")
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
        let err = engine.execute(&acme, sql).await.expect_err(sql);
        assert!(matches!(err, QueryError::InvalidSql(_)), "{sql}: {err:?}");
        assert!(err.to_string().contains(needle), "{sql}: {err}");
    }
    let long = format!("SELECT 1 -- {}", "x".repeat(2000));
    assert_eq!(
        engine.execute(&acme, &long).await.expect_err("long").code(),
        "sql_too_large"
    );
}

#[tokio::test]
async fn information_schema_lists_only_the_tenant() {
    let (engine, acme, _) = engine().await;
    let out = engine
        .execute(&acme, "SELECT count(DISTINCT table_schema) FROM information_schema.tables WHERE table_schema <> 'information_schema'")
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
        .execute(&tenant, sql)
        .await
        .expect_err("over the limit");
    assert_eq!(err.code(), "memory_limit", "{err}");
    assert!(err.to_string().contains("query.max_memory_bytes"), "{err}");
    // The engine serves the next query as usual.
    let out = engine
        .execute(&tenant, "SELECT 1")
        .await
        .expect("next query");
    assert_eq!(out.row_count, 1);
}

use super::*;
use crate::engine::tests::config;
use arrow::array::{Float64Array, Int64Array};
use object_store::ObjectStore;
use spoor_common::catalog::{Catalog, MemoryCatalog};
use spoor_common::schema::{ALERT_SCHEMA_VERSION, alert_col};

/// 2023-11-14T22:13:20Z
const BASE: i64 = 1_700_000_000_000_000;
const SECOND: i64 = 1_000_000;

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).expect("tenant")
}

/// Commits an `alerts` file of `tenant` with one alert per id: first event
/// at BASE, detected a minute later.
async fn seed_alerts(
    catalog: &MemoryCatalog,
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    ids: &[&str],
) {
    let n = ids.len();
    let schema = alert_schema();
    let ts = |v: i64| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(vec![v; n]).with_timezone("UTC"))
    };
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                alert_col::TIME | alert_col::FIRST_EVENT_TIME | alert_col::LAST_EVENT_TIME => {
                    ts(BASE)
                }
                alert_col::DETECTED_AT => ts(BASE + 60 * SECOND),
                alert_col::ALERT_ID => Arc::new(StringArray::from(ids.to_vec())),
                alert_col::RULE_SET_VERSION | alert_col::EVENT_COUNT => {
                    Arc::new(Int64Array::from(vec![1; n]))
                }
                alert_col::VALUE => Arc::new(Float64Array::from(vec![None; n])),
                _ => Arc::new(StringArray::from(vec![format!("{}-x", f.name()); n])),
            }
        })
        .collect();
    let batch = RecordBatch::try_new(schema, columns).expect("batch");
    let bytes = encode_parquet(&batch, ALERT_COLUMNS, 3).expect("parquet");
    let file_id = format!("alerts-{}", ids.join("-"));
    let key = layout::object_key(tenant, Table::Alerts, BASE, &file_id);
    store
        .put(&ObjectPath::from(key.as_str()), bytes.clone().into())
        .await
        .expect("put");
    catalog
        .commit_batch(CommitBatch {
            files: vec![NewFile {
                file_id,
                tenant: tenant.clone(),
                table: Table::Alerts,
                object_key: key,
                min_time_micros: BASE,
                max_time_micros: BASE,
                row_count: n as u64,
                byte_size: bytes.len() as u64,
                schema_version: ALERT_SCHEMA_VERSION,
                source: None,
            }],
            checkpoints: vec![],
        })
        .await
        .expect("commit");
}

async fn engine() -> QueryEngine {
    let catalog = Arc::new(MemoryCatalog::new());
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    seed_alerts(&catalog, &store, &tenant("acme"), &["a1", "a2"]).await;
    seed_alerts(&catalog, &store, &tenant("globex"), &["a1", "g1"]).await;
    let mut config = config();
    config.max_result_rows = 1000;
    config.max_sql_bytes = 100_000;
    QueryEngine::new(catalog, store, config)
}

fn status(s: &str) -> TriageChange {
    TriageChange {
        status: Some(s.into()),
        ..TriageChange::default()
    }
}

/// The rows of `sql` in acme's session, as JSON.
async fn rows(engine: &QueryEngine, t: &str, sql: &str) -> Vec<Value> {
    let out = engine
        .execute(&Scope::single(tenant(t)), "test", sql)
        .await
        .expect(sql);
    rows_json(&out.batches).expect("json")
}

const TRIAGE: &str = "SELECT alert_id, status, assignee, status_updated_at, acknowledged_at, closed_at, tenant FROM alerts ORDER BY alert_id";

#[tokio::test]
async fn untouched_alerts_are_new() {
    let engine = engine().await;
    let got = rows(&engine, "acme", TRIAGE).await;
    assert_eq!(got.len(), 2, "{got:?}");
    for row in &got {
        assert_eq!(row["status"], "new");
        for c in [
            "assignee",
            "status_updated_at",
            "acknowledged_at",
            "closed_at",
        ] {
            assert!(row[c].is_null(), "{c}: {row}");
        }
        assert_eq!(row["tenant"], "acme");
    }
    assert_eq!(
        rows(&engine, "acme", "SELECT count(*) AS n FROM alert_records").await[0]["n"],
        2
    );
    assert!(
        rows(&engine, "acme", "SELECT * FROM alert_updates")
            .await
            .is_empty()
    );
    // The view's inner names do not leak into queries that reuse them.
    let joined = rows(
        &engine,
        "acme",
        "SELECT count(*) AS n FROM alerts t JOIN alerts r ON t.alert_id = r.alert_id \
         LEFT JOIN alert_updates h ON h.alert_id = t.alert_id",
    )
    .await;
    assert_eq!(joined[0]["n"], 2);
}

#[tokio::test]
async fn the_view_follows_acknowledge_close_reopen_and_reassign() {
    let engine = engine().await;
    let acme = tenant("acme");
    let at = |s: i64| BASE + 3600 * SECOND + s * SECOND;
    let ack = TriageChange {
        status: Some("acknowledged".into()),
        assignee: Some(Some("alice".into())),
        note: Some("looking".into()),
        updated_by: Some("tok-1".into()),
    };
    let done = engine
        .update_alert(&acme, "a1", &ack, at(0))
        .await
        .expect("ack");
    assert_eq!(
        (done.previous_status.as_str(), done.status.as_str()),
        ("new", "acknowledged")
    );
    engine
        .update_alert(&acme, "a1", &status("closed"), at(10))
        .await
        .expect("close");
    let row = &rows(&engine, "acme", TRIAGE).await[0];
    assert_eq!(row["status"], "closed", "{row}");
    assert_eq!(row["assignee"], "alice", "assignee kept: {row}");
    assert_eq!(row["acknowledged_at"], "2023-11-14T23:13:20Z", "{row}");
    assert_eq!(row["closed_at"], "2023-11-14T23:13:30Z", "{row}");
    assert_eq!(row["status_updated_at"], "2023-11-14T23:13:30Z", "{row}");

    // Reopened: no longer closed; acknowledged_at stays the first time.
    engine
        .update_alert(&acme, "a1", &status("acknowledged"), at(20))
        .await
        .expect("reopen");
    let row = &rows(&engine, "acme", TRIAGE).await[0];
    assert_eq!(row["status"], "acknowledged");
    assert!(row["closed_at"].is_null(), "{row}");
    assert_eq!(row["acknowledged_at"], "2023-11-14T23:13:20Z", "{row}");

    // Closed again, then reassigned while closed: closed_at is the close.
    engine
        .update_alert(&acme, "a1", &status("closed"), at(30))
        .await
        .expect("close again");
    let unassign = TriageChange {
        assignee: Some(None),
        ..TriageChange::default()
    };
    engine
        .update_alert(&acme, "a1", &unassign, at(40))
        .await
        .expect("unassign");
    let got = rows(&engine, "acme", TRIAGE).await;
    let row = &got[0];
    assert_eq!(row["status"], "closed");
    assert!(row["assignee"].is_null(), "{row}");
    assert_eq!(row["closed_at"], "2023-11-14T23:13:50Z", "{row}");
    assert_eq!(row["status_updated_at"], "2023-11-14T23:13:50Z", "{row}");
    assert_eq!(got[1]["status"], "new", "a2 untouched: {got:?}");

    // The history, and MTTR as plain SQL.
    assert_eq!(
        rows(&engine, "acme", "SELECT count(*) AS n FROM alert_updates").await[0]["n"],
        5
    );
    let mttr = rows(
        &engine,
        "acme",
        "SELECT avg(date_part('epoch', closed_at) - date_part('epoch', first_event_time)) AS mttr_s, \
                avg(date_part('epoch', detected_at) - date_part('epoch', first_event_time)) AS mttd_s \
         FROM alerts WHERE status = 'closed'",
    )
    .await;
    assert_eq!(mttr[0]["mttr_s"], 3630.0, "{mttr:?}");
    assert_eq!(mttr[0]["mttd_s"], 60.0, "{mttr:?}");

    // The plan the sessions build and its SQL definition agree.
    let by_sql = rows(
        &engine,
        "acme",
        &format!("SELECT * FROM ({}) ORDER BY alert_id", alerts_view_sql()),
    )
    .await;
    assert_eq!(
        by_sql,
        rows(&engine, "acme", "SELECT * FROM alerts ORDER BY alert_id").await
    );

    let found = engine
        .alert_with_history(&acme, "a1")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.history.len(), 5);
    assert_eq!(found.history[0]["note"], "looking");
    assert_eq!(found.history[0]["updated_by"], "tok-1");
    assert_eq!(found.alert["status"], "closed");
}

#[tokio::test]
async fn tenants_never_see_each_others_triage() {
    let engine = engine().await;
    engine
        .update_alert(&tenant("acme"), "a1", &status("closed"), BASE)
        .await
        .expect("close");
    // globex has an alert with the same id: still new.
    let got = rows(&engine, "globex", TRIAGE).await;
    assert_eq!(got[0]["alert_id"], "a1");
    assert_eq!(got[0]["status"], "new", "{got:?}");
    // acme cannot change globex's alert.
    let err = engine
        .update_alert(&tenant("acme"), "g1", &status("closed"), BASE)
        .await
        .expect_err("not acme's");
    assert!(matches!(err, TriageError::NotFound { .. }), "{err}");
    // An operator session over both sees each tenant's own.
    let scope =
        Scope::for_token([tenant("acme"), tenant("globex")], "op".into(), true).expect("scope");
    let out = engine
        .execute(
            &scope,
            "test",
            "SELECT tenant, alert_id, status FROM alerts ORDER BY tenant, alert_id",
        )
        .await
        .expect("query");
    let got: Vec<String> = rows_json(&out.batches)
        .expect("json")
        .iter()
        .map(|r| format!("{}/{}/{}", r["tenant"], r["alert_id"], r["status"]).replace('"', ""))
        .collect();
    assert_eq!(
        got,
        [
            "acme/a1/closed",
            "acme/a2/new",
            "globex/a1/new",
            "globex/g1/new"
        ]
    );
}

#[tokio::test]
async fn a_node_with_a_slow_clock_still_appends_after_the_newest_update() {
    let engine = engine().await;
    let acme = tenant("acme");
    engine
        .update_alert(&acme, "a1", &status("closed"), BASE + 100)
        .await
        .expect("close");
    let reopened = engine
        .update_alert(&acme, "a1", &status("acknowledged"), BASE)
        .await
        .expect("reopen");
    assert_eq!(reopened.previous_status, "closed");
    let row = &rows(&engine, "acme", TRIAGE).await[0];
    assert_eq!(row["status"], "acknowledged", "{row}");
}

#[test]
fn bad_changes_name_the_field() {
    let cases = [
        (status("done"), "status"),
        (TriageChange::default(), "status"),
        (
            TriageChange {
                assignee: Some(Some("x".repeat(MAX_ASSIGNEE_CHARS + 1))),
                ..TriageChange::default()
            },
            "assignee",
        ),
        (
            TriageChange {
                assignee: Some(Some("  ".into())),
                ..TriageChange::default()
            },
            "assignee",
        ),
        (
            TriageChange {
                note: Some("x".repeat(MAX_NOTE_BYTES + 1)),
                ..TriageChange::default()
            },
            "note",
        ),
        (
            TriageChange {
                note: Some("a\u{1b}[31m".into()),
                ..TriageChange::default()
            },
            "note",
        ),
    ];
    for (change, field) in cases {
        match change.validate() {
            Err(TriageError::Invalid { field: f, .. }) => assert_eq!(f, field, "{change:?}"),
            other => panic!("{change:?}: {other:?}"),
        }
    }
    assert!(status("acknowledged").validate().is_ok());
    assert!(check_alert_id("0123abcdef").is_ok());
    for bad in ["", "a'b", "a b", &"x".repeat(MAX_ALERT_ID_BYTES + 1)] {
        assert!(check_alert_id(bad).is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn listed_schema_of_the_view_is_the_sessions() {
    let engine = engine().await;
    let (ctx, _) = engine
        .session(&Scope::single(tenant("acme")))
        .await
        .expect("session");
    let df = ctx.table(ALERTS).await.expect("view");
    let session: Vec<(String, DataType, bool)> = df
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
        .collect();
    let listed: Vec<(String, DataType, bool)> = alerts_view_schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
        .collect();
    assert_eq!(session, listed);
    let names: Vec<&str> = listed.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names.last(), Some(&"tenant"));
    assert_eq!(names[names.len() - 6..names.len() - 1], TRIAGE_COLUMNS);
}

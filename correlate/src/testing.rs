//! Test helpers: event batches from JSON field maps, engines from YAML.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, new_null_array};
use spoor_common::schema::{event_col, event_schema};

use crate::engine::{Engine, LoadedDocument, Options};
use crate::mapping::Mappings;
use crate::sigma::parse_documents;

/// A batch of the events schema: each row's time (seconds) and `unmapped`
/// fields; every other column null (or empty where required).
pub(crate) fn batch(rows: &[(i64, serde_json::Value)]) -> RecordBatch {
    let schema = event_schema();
    let n = rows.len();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                event_col::TIME | event_col::INGEST_TIME => Arc::new(
                    TimestampMicrosecondArray::from(
                        rows.iter().map(|(t, _)| t * 1_000_000).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                event_col::UNMAPPED => Arc::new(StringArray::from(
                    rows.iter().map(|(_, v)| v.to_string()).collect::<Vec<_>>(),
                )),
                event_col::RAW | event_col::SOURCE_TOPIC => {
                    Arc::new(StringArray::from(vec![""; n]))
                }
                _ => new_null_array(f.data_type(), n),
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).expect("a batch of the events schema")
}

/// An engine from YAML documents (no mapping files: fields come from
/// `unmapped`), refusing nothing.
pub(crate) fn engine(yaml: &str) -> Engine {
    let docs: Vec<LoadedDocument> = parse_documents(yaml)
        .into_iter()
        .map(|d| LoadedDocument {
            file: "test.yml".into(),
            document: d.expect("a valid document"),
        })
        .collect();
    let options = Options {
        mappings: Mappings::from_files(Vec::new()).expect("no mappings"),
        placeholders: Default::default(),
        limits: Default::default(),
    };
    let (engine, issues) = Engine::compile(&docs, &options);
    assert!(issues.iter().all(|i| i.warning), "{issues:?}");
    engine
}

//! Any bytes a Kafka message or an HTTP line can carry: normalization either
//! succeeds, keeping the raw bytes and a JSON object in `unmapped`, or returns
//! an error; it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spoor_ingest::normalize::{Cell, JsonNormalizer, Provenance};

fuzz_target!(|data: &[u8]| {
    let prov = Provenance { topic: "fuzz".into(), partition: Some(0), offset: Some(0), ingest_time_micros: 1 };
    if let Ok(row) = JsonNormalizer::new().normalize(data, &prov) {
        assert_eq!(row.get("raw"), Some(&Cell::Str(String::from_utf8_lossy(data).into_owned())));
        match row.get("unmapped") {
            Some(Cell::Str(u)) => assert!(u.starts_with('{')),
            other => panic!("unmapped is {other:?}"),
        }
    }
});

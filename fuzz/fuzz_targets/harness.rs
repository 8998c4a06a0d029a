//! The property every parser's fuzz target checks: any bytes, fed as one
//! input and then line by line (a Kafka message, HTTP or file lines), either
//! become events or dead letters, never a panic; every dead letter says why;
//! every event has a JSON object in `unmapped`.

use spoor_ingest::parse::{Cell, Decoded, Decoder, Provenance, SourceType};

pub fn check(source_type: SourceType, data: &[u8]) {
    let prov = |offset| Provenance {
        topic: "fuzz".into(),
        partition: Some(0),
        offset: Some(offset),
        ingest_time_micros: 1_800_000_000_000_000,
    };
    let mut decoder = Decoder::for_type(source_type);
    let mut out = Vec::new();
    decoder.decode(data, &prov(0), &mut out);
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        decoder.decode(line, &prov(i as i64 + 1), &mut out);
    }
    decoder.flush(&prov(-1), &mut out);
    for d in out {
        match d {
            Decoded::Event(row) => match row.get("unmapped") {
                Some(Cell::Str(u)) => assert!(u.starts_with('{'), "unmapped is {u}"),
                other => panic!("unmapped is {other:?}"),
            },
            Decoded::Dead(letter) => assert!(!letter.error.is_empty(), "a dead letter says why"),
        }
    }
}

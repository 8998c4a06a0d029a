//! Fuzzes the Sigma rule reader: any text becomes rules or errors that say
//! where and why, never a panic; a rule's conditions only name its searches.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spoor_correlate::sigma::{Document, condition, parse_documents};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for document in parse_documents(text) {
        match document {
            Ok(Document::Detection(rule)) => {
                assert!(!rule.conditions.is_empty(), "a rule has a condition")
            }
            Ok(Document::Filter(filter)) => {
                assert!(!filter.conditions.is_empty(), "a filter has a condition")
            }
            Ok(Document::Correlation(c)) => assert!(c.timespan_secs > 0 && !c.rules.is_empty()),
            Ok(Document::Sql(s)) => assert!(s.every_secs > 0 && !s.query.is_empty()),
            Err(e) => assert!(!e.message.is_empty() && e.line >= 1, "an error says where and why"),
        }
    }
    // The condition grammar on its own.
    if let Err(e) = condition::parse(text) {
        assert!(e.offset <= text.chars().count(), "{e}");
    }
});

//! Fuzzes the Sigma rule reader: any text becomes rules or errors that say
//! where and why, never a panic; a rule's conditions only name its searches.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spoor_correlate::sigma::{condition, parse_documents};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for document in parse_documents(text) {
        match document {
            Ok(rule) => assert!(!rule.conditions.is_empty(), "a rule has a condition"),
            Err(e) => assert!(!e.message.is_empty() && e.line >= 1, "an error says where and why"),
        }
    }
    // The condition grammar on its own.
    if let Err(e) = condition::parse(text) {
        assert!(e.offset <= text.chars().count(), "{e}");
    }
});

//! Fuzzes the Sigma rule reader and compiler: any text becomes rules or
//! errors that say where and why, never a panic; whatever reads compiles or
//! is refused with a reason; the same text as a field mapping file loads or
//! is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spoor_correlate::engine::{Engine, LoadedDocument, Options};
use spoor_correlate::mapping::Mappings;
use spoor_correlate::sigma::{Document, condition, parse_documents};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut loaded = Vec::new();
    for document in parse_documents(text) {
        if let Ok(d) = &document {
            loaded.push(LoadedDocument {
                file: "fuzz.yml".into(),
                document: d.clone(),
            });
        }
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
    if let Ok(mappings) = Mappings::builtin() {
        let options = Options {
            mappings,
            placeholders: Default::default(),
            limits: Default::default(),
        };
        let (_, issues) = Engine::compile(&loaded, &options);
        assert!(issues.iter().all(|i| !i.message.is_empty()));
    }
    if let Err(e) = Mappings::from_files([("fuzz.toml".to_string(), text.to_string())]) {
        assert!(!e.reason.is_empty());
    }
    // The condition grammar on its own.
    if let Err(e) = condition::parse(text) {
        assert!(e.offset <= text.chars().count(), "{e}");
    }
});

use super::*;

#[test]
fn suppression_is_parsed_and_checked() {
    let text = r#"title: ok
detection: {sel: {a: 1}, condition: sel}
suppression: {window: 15m, group_by: [host, user]}
---
title: no window
detection: {sel: {a: 1}, condition: sel}
suppression: {group_by: [host]}
---
title: bad window
detection: {sel: {a: 1}, condition: sel}
suppression: {window: soon}
---
title: unknown key
detection: {sel: {a: 1}, condition: sel}
suppression: {window: 1m, by: [host]}
---
title: corr
correlation: {type: event_count, rules: [x], group-by: [user], timespan: 5m, condition: {gte: 2}}
suppression: {window: 1h, group_by: [host]}
---
title: corr ok
correlation: {type: event_count, rules: [x], group-by: [user], timespan: 5m, condition: {gte: 2}}
suppression: {window: 1h}
"#;
    let docs = parse_documents(text);
    let Ok(Document::Detection(rule)) = &docs[0] else {
        panic!("{:?}", docs[0]);
    };
    assert_eq!(
        rule.suppression,
        Some(Suppression {
            window_secs: 900,
            group_by: vec!["host".into(), "user".into()]
        })
    );
    let message = |i: usize| docs[i].as_ref().expect_err("refused").message.clone();
    assert!(message(1).contains("needs a `window`"), "{}", message(1));
    assert!(
        message(2).contains("suppression.window: soon"),
        "{}",
        message(2)
    );
    assert!(
        message(3).contains("unknown `suppression` key `by`"),
        "{}",
        message(3)
    );
    assert!(
        message(4).contains("not in the correlation's `group-by`"),
        "{}",
        message(4)
    );
    let Ok(Document::Correlation(c)) = &docs[5] else {
        panic!("{:?}", docs[5]);
    };
    assert_eq!(c.suppression.as_ref().map(|s| s.window_secs), Some(3600));
}

const RULE: &str = r#"
title: Encoded PowerShell
id: 11111111-2222-3333-4444-555555555555
status: test
level: high
tags:
    - attack.execution
    - attack.t1059.001
logsource:
    product: windows
    category: process_creation
detection:
    selection_img:
        - Image|endswith: '\powershell.exe'
        - OriginalFileName: 'PowerShell.EXE'
    selection_cli:
        CommandLine|contains|windash:
            - ' -enc '
            - ' -e '
    filter_main:
        ParentImage: null
    keywords:
        - 'FromBase64String'
    condition: all of selection_* and not 1 of filter_* or keywords
"#;

#[test]
fn a_rule_reads_into_the_model() {
    let docs = parse_documents(RULE);
    let rule = docs[0]
        .as_ref()
        .ok()
        .and_then(Document::as_detection)
        .expect("rule");
    assert_eq!(rule.title, "Encoded PowerShell");
    assert_eq!(rule.logsource.category.as_deref(), Some("process_creation"));
    assert_eq!(rule.tags.len(), 2);
    assert_eq!(rule.searches.len(), 4);
    let (_, Search::AnyOf(img)) = &rule.searches[0];
    assert_eq!(img.len(), 2, "a list of maps is any of its maps");
    let (_, Search::AnyOf(cli)) = &rule.searches[1];
    assert_eq!(cli[0][0].modifiers, [Modifier::Contains, Modifier::Windash]);
    assert_eq!(cli[0][0].values.len(), 2);
    let (_, Search::AnyOf(filter)) = &rule.searches[2];
    assert_eq!(filter[0][0].values, [Value::Null]);
    let (_, Search::AnyOf(keywords)) = &rule.searches[3];
    assert_eq!(keywords[0][0].field, None);
    assert_eq!(
        rule.conditions[0].to_string(),
        "((all of selection_* and not 1 of filter_*) or keywords)"
    );
}

#[test]
fn bad_documents_are_refused_with_line_and_reason_and_others_still_parse() {
    let text = r#"
title: ok
logsource: {product: windows}
detection:
    sel: {EventID: 4624}
    condition: sel
---
title: bad modifier
logsource: {product: windows}
detection:
    sel:
        Image|startwith: 'x'
    condition: sel
---
title: unknown search
logsource: {product: windows}
detection:
    sel: {a: 1}
    condition: sel and other
---
title: bad regex
detection:
    sel:
        a|re: '(unclosed'
    condition: sel
"#;
    let docs = parse_documents(text);
    assert_eq!(docs.len(), 4);
    assert!(docs[0].is_ok());
    let e = docs[1].as_ref().expect_err("modifier");
    assert_eq!(e.line, 12);
    assert!(
        e.message.contains("unknown value modifier `startwith`"),
        "{e}"
    );
    let e = docs[2].as_ref().expect_err("search");
    assert!(e.message.contains("`other`"), "{e}");
    let e = docs[3].as_ref().expect_err("regex");
    assert!(e.message.contains("regular expression"), "{e}");
    let e = &parse_documents("title: [unclosed")[0];
    assert!(
        e.as_ref()
            .expect_err("yaml")
            .message
            .starts_with("not YAML")
    );
}

/// The SigmaHQ rule folders of the shared corpus: at least 99% of the rules
/// read, and every refusal has a reason (docs/rules.md lists them).
#[test]
fn the_sigmahq_corpus_parses() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/sigma");
    let folders: Vec<std::path::PathBuf> = std::fs::read_dir(&root)
        .expect("the shared corpus at ../shared/corpus/sigma")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("rules"))
        })
        .collect();
    let files = rule_files(&folders).expect("rule files");
    assert!(files.len() >= 3700, "{} rule files", files.len());
    let (mut ok, mut refused) = (0, Vec::new());
    for file in &files {
        let source = std::fs::read_to_string(file).expect("read");
        for doc in parse_documents(&source) {
            match doc {
                Ok(_) => ok += 1,
                Err(e) => refused.push(format!("{}:{e}", file.display())),
            }
        }
    }
    let total = ok + refused.len();
    assert!(
        ok * 100 >= total * 99,
        "{ok} of {total} rules read; refused:\n{}",
        refused.join("\n")
    );
    for r in &refused {
        eprintln!("refused {r}");
    }
}

proptest::proptest! {
    /// Any text: rules or errors with a place and a reason, never a panic.
    #[test]
    fn any_text_reads_or_is_refused_with_a_reason(text in "\\PC{0,400}") {
        for doc in parse_documents(&text) {
            if let Err(e) = doc {
                proptest::prop_assert!(e.line >= 1 && !e.message.is_empty());
            }
        }
    }

    /// Conditions built from the grammar's pieces never panic the parser.
    #[test]
    fn conditions_never_panic(words in proptest::collection::vec(
        proptest::prop_oneof![
            proptest::strategy::Just("and".to_string()),
            proptest::strategy::Just("or".to_string()),
            proptest::strategy::Just("not".to_string()),
            proptest::strategy::Just("(".to_string()),
            proptest::strategy::Just(")".to_string()),
            proptest::strategy::Just("1 of".to_string()),
            proptest::strategy::Just("all of".to_string()),
            proptest::strategy::Just("them".to_string()),
            proptest::strategy::Just("|".to_string()),
            "[a-z_*]{1,6}",
        ],
        0..12,
    )) {
        let text = words.join(" ");
        if let Err(e) = condition::parse(&text) {
            proptest::prop_assert!(e.offset <= text.chars().count());
        }
    }
}

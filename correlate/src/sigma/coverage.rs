//! MITRE ATT&CK coverage of a rule set, from the rules' tags
//! (sigma-appendix-tags.md): `attack.t1059` and `attack.t1059.001` name
//! techniques and sub-techniques, `attack.execution` and the like name
//! tactics. Tags are matched case-insensitively.

use std::collections::BTreeMap;

use super::Rule;

/// What a rule set covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Technique or sub-technique id (`T1059.001`) → titles of the rules.
    pub techniques: BTreeMap<String, Vec<String>>,
    /// Tactic (`execution`) → number of rules.
    pub tactics: BTreeMap<String, usize>,
    /// Rules read.
    pub rules: usize,
    /// Rules without any ATT&CK tag.
    pub untagged: usize,
}

/// A technique id from a tag's suffix: `t1059` or `t1059.001`.
fn technique(suffix: &str) -> Option<String> {
    let digits = suffix.strip_prefix('t')?;
    let (main, sub) = match digits.split_once('.') {
        Some((m, s)) => (m, Some(s)),
        None => (digits, None),
    };
    let numeric = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !numeric(main, 4) || sub.is_some_and(|s| !numeric(s, 3)) {
        return None;
    }
    Some(match sub {
        Some(s) => format!("T{main}.{s}"),
        None => format!("T{main}"),
    })
}

/// The coverage of `rules`.
pub fn coverage<'a>(rules: impl IntoIterator<Item = &'a Rule>) -> Coverage {
    let mut out = Coverage::default();
    for rule in rules {
        out.rules += 1;
        let mut tagged = false;
        for tag in &rule.tags {
            let tag = tag.to_ascii_lowercase();
            let Some(suffix) = tag.strip_prefix("attack.") else {
                continue;
            };
            tagged = true;
            if let Some(id) = technique(suffix) {
                out.techniques
                    .entry(id)
                    .or_default()
                    .push(rule.title.clone());
            } else if suffix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'-')
            {
                *out.tactics.entry(suffix.replace('_', "-")).or_default() += 1;
            }
        }
        if !tagged {
            out.untagged += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigma::parse_documents;

    #[test]
    fn techniques_and_tactics_from_tags() {
        let text = "title: a\ntags: [attack.execution, attack.t1059.001, ATTACK.T1059]\ndetection: {s: {x: 1}, condition: s}\n\
---\ntitle: b\ntags: [attack.defense_evasion, attack.t1059, attack.g0016, cve.2021-1]\ndetection: {s: {x: 1}, condition: s}\n\
---\ntitle: c\ntags: [tlp.white]\ndetection: {s: {x: 1}, condition: s}\n";
        let rules: Vec<Rule> = parse_documents(text)
            .into_iter()
            .map(|d| match d {
                Ok(crate::sigma::Document::Detection(r)) => r,
                other => panic!("a detection rule: {other:?}"),
            })
            .collect();
        let c = coverage(&rules);
        assert_eq!(c.rules, 3);
        assert_eq!(c.untagged, 1);
        assert_eq!(c.techniques["T1059"], ["a", "b"]);
        assert_eq!(c.techniques["T1059.001"], ["a"]);
        assert_eq!(c.techniques.len(), 2, "groups (g0016) are not techniques");
        assert_eq!(c.tactics["execution"], 1);
        assert_eq!(c.tactics["defense-evasion"], 1);
        assert!(!c.tactics.contains_key("g0016"));
    }
}

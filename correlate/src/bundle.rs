//! A rule set as the cluster stores it: every rule file (its path relative
//! to the folder it was read from, and its text), the extra field mapping
//! files and the `%placeholder%` values it was checked with. A bundle is
//! self-contained, so a worker compiles exactly what `spoor rules check`
//! compiled on the operator's machine, whatever is on the worker's disk.
//!
//! The bundle is serialized as JSON into `RuleSet.content` (see
//! [`RuleBundle::to_content`]); workers get their engine with
//! `RuleBundle::from_content(&rule_set.content)?.compile()`.
//!
//! This module is also where rule sources are compiled for the offline
//! tools (`spoor rules check|test|explain`): [`RuleBundle::check`] parses
//! every document, compiles the rules and plans the SQL rules, and reports
//! every refusal and warning as a [`Finding`] with file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::{Engine, Issue, LoadedDocument, Options};
use crate::mapping::{BUILTIN, Mappings};
use crate::sigma;

/// The bundle format this version writes and reads.
pub const BUNDLE_FORMAT: u32 = 1;

/// Longest file path a bundle accepts, bytes.
const MAX_PATH_BYTES: usize = 1024;

fn bundle_format() -> u32 {
    BUNDLE_FORMAT
}

/// One file of a bundle: a name and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFile {
    /// Where the file was, relative to the folder it was read from, with
    /// `/` separators (`windows/proc_creation_x.yml`). Only a name: nothing
    /// ever opens it.
    pub path: String,
    /// The file's text.
    pub text: String,
}

/// The content of a stored rule set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleBundle {
    /// The bundle format ([`BUNDLE_FORMAT`]); a reader refuses a format it
    /// does not know rather than guess.
    #[serde(default = "bundle_format")]
    pub format: u32,
    /// Rule files (Sigma rules, correlation rules, global filters, SQL
    /// rules), sorted by path.
    pub rules: Vec<BundleFile>,
    /// Extra field mapping files (`--mapping`), read after the built-in
    /// ones, in this order.
    #[serde(default)]
    pub mappings: Vec<BundleFile>,
    /// `%name%` values for `|expand` (`--placeholders`).
    #[serde(default)]
    pub placeholders: BTreeMap<String, Vec<String>>,
}

/// How [`RuleBundle::read`] names the files it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileNames {
    /// Relative to the folder given (a file given by itself: its file
    /// name); with several folders or files, each name starts with its
    /// folder's own name. The bundle is then the same from any checkout;
    /// this is how the cluster stores rule sets.
    Relative,
    /// The paths as found on this machine (`rules/windows/x.yml`), for
    /// offline tools whose output should point at local files.
    AsGiven,
}

/// A refused rule or a warning, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The problem. A document that did not parse has no title: its
    /// `rule` is empty.
    pub issue: Issue,
    /// The column, for a document that did not parse (the parser knows
    /// the exact node).
    pub column: Option<usize>,
}

impl Finding {
    /// Whether the rule was refused (rather than warned about).
    pub fn is_refusal(&self) -> bool {
        !self.issue.warning
    }
}

impl fmt::Display for Finding {
    /// As `spoor rules check` prints it: `file:line:column: reason` for a
    /// document that did not parse, `file:line: title: reason` for a
    /// refused rule, `file:line: warning: title: reason` for a warning.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.issue;
        match self.column {
            Some(column) => write!(f, "{}:{}:{column}: {}", i.file, i.line, i.message),
            None if i.warning => write!(
                f,
                "{}:{}: warning: {}: {}",
                i.file, i.line, i.rule, i.message
            ),
            None => write!(f, "{}:{}: {}: {}", i.file, i.line, i.rule, i.message),
        }
    }
}

/// A bundle compiled: the engine of every rule that compiled, and why the
/// others did not.
#[derive(Debug)]
pub struct Compiled {
    /// The rules that compiled (refused ones left out; SQL rules planned).
    pub engine: Engine,
    /// Refusals and warnings: documents that did not parse, then rules the
    /// engine refused or warned about, then SQL rules whose query does
    /// not plan.
    pub findings: Vec<Finding>,
    /// Rule files read.
    pub files: usize,
    /// Documents read, refused ones included.
    pub documents: usize,
}

impl Compiled {
    /// How many documents were refused.
    pub fn refusals(&self) -> usize {
        self.findings.iter().filter(|f| f.is_refusal()).count()
    }

    /// How many warnings there are.
    pub fn warnings(&self) -> usize {
        self.findings.len() - self.refusals()
    }

    /// Documents that were not refused (rules, correlation rules, global
    /// filters and SQL rules), as `spoor rules check` counts them.
    pub fn rules(&self) -> usize {
        self.documents.saturating_sub(self.refusals())
    }
}

/// Reads a `--placeholders` file: TOML, `name = ["value", …]`.
pub fn read_placeholders(path: &Path) -> Result<BTreeMap<String, Vec<String>>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    toml::from_str::<BTreeMap<String, Vec<String>>>(&text).map_err(|e| {
        format!(
            "{}: placeholders must be `name = [\"value\", …]`: {e}",
            path.display()
        )
    })
}

/// `path` relative to `root`, with `/` separators.
fn relative_name(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The last component of `path`, resolving `.` and `..` on this machine.
fn own_name(path: &Path) -> Option<String> {
    match path.file_name() {
        Some(n) => Some(n.to_string_lossy().into_owned()),
        None => std::fs::canonicalize(path)
            .ok()?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
    }
}

fn read_file(path: &Path, name: String) -> Result<BundleFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    Ok(BundleFile { path: name, text })
}

/// The files under `roots`, read and named as `names` says; two files of
/// the same name are an error naming both.
fn read_rule_files(roots: &[PathBuf], names: FileNames) -> Result<Vec<BundleFile>, String> {
    let mut named: BTreeMap<String, PathBuf> = BTreeMap::new();
    for root in roots {
        let files = sigma::rule_files(std::slice::from_ref(root))?;
        let is_dir = std::fs::metadata(root).is_ok_and(|m| m.is_dir());
        for file in files {
            let name = match names {
                FileNames::AsGiven => file.display().to_string(),
                FileNames::Relative => {
                    let inside = if is_dir {
                        relative_name(root, &file)
                    } else {
                        own_name(&file).unwrap_or_else(|| file.display().to_string())
                    };
                    match (roots.len() > 1 && is_dir, own_name(root)) {
                        (true, Some(prefix)) => format!("{prefix}/{inside}"),
                        _ => inside,
                    }
                }
            };
            if let Some(other) = named.get(&name) {
                if *other == file {
                    continue;
                }
                return Err(format!(
                    "{} and {} would both be stored as {name}; rename one, or give their common folder",
                    other.display(),
                    file.display()
                ));
            }
            named.insert(name, file);
        }
    }
    if named.is_empty() {
        return Err(format!(
            "no rule files (.yml, .yaml) in {}",
            roots
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    named
        .into_iter()
        .map(|(name, path)| read_file(&path, name))
        .collect()
}

impl RuleBundle {
    /// Reads rule files and folders (`.yml`/`.yaml`, recursively, as
    /// `spoor rules check` does), extra mapping files and placeholder
    /// values into a bundle, naming rule files relative to the folders
    /// given ([`FileNames::Relative`]). An unreadable file, a path without
    /// rule files, or two files that would get the same name are errors
    /// naming the paths.
    pub fn from_paths(
        rules: &[PathBuf],
        mappings: &[PathBuf],
        placeholders: BTreeMap<String, Vec<String>>,
    ) -> Result<RuleBundle, String> {
        Self::read(rules, mappings, placeholders, FileNames::Relative)
    }

    /// [`Self::from_paths`], with the files named as `names` says. Mapping
    /// files are named by their file name ([`FileNames::Relative`]) or
    /// their path.
    pub fn read(
        rules: &[PathBuf],
        mappings: &[PathBuf],
        placeholders: BTreeMap<String, Vec<String>>,
        names: FileNames,
    ) -> Result<RuleBundle, String> {
        let rules = read_rule_files(rules, names)?;
        let mut seen = BTreeSet::new();
        let mut mapping_files = Vec::new();
        for path in mappings {
            let name = match names {
                FileNames::Relative => own_name(path).unwrap_or_else(|| path.display().to_string()),
                FileNames::AsGiven => path.display().to_string(),
            };
            if !seen.insert(name.clone()) {
                return Err(format!(
                    "--mapping {}: a mapping file named {name} is given twice",
                    path.display()
                ));
            }
            mapping_files.push(read_file(path, name)?);
        }
        let bundle = RuleBundle {
            format: BUNDLE_FORMAT,
            rules,
            mappings: mapping_files,
            placeholders,
        };
        bundle.validate()?;
        Ok(bundle)
    }

    /// The bundle as stored in `RuleSet.content`: JSON, the same text for
    /// the same bundle.
    pub fn to_content(&self) -> String {
        // Strings, vectors and string-keyed maps always serialize.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"unserializable\":\"{e}\"}}"))
    }

    /// A bundle from `RuleSet.content`; an error says what is wrong and
    /// where.
    pub fn from_content(content: &str) -> Result<RuleBundle, String> {
        let bundle: RuleBundle = serde_json::from_str(content).map_err(|e| {
            format!(
                "rule set content is not a rule bundle (a JSON object with `rules`: [{{\"path\", \"text\"}}, …], `mappings`, `placeholders`): {e}"
            )
        })?;
        bundle.validate()?;
        Ok(bundle)
    }

    /// Checks what serde cannot: a known format, at least one rule file,
    /// non-empty unique paths, named placeholders.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != BUNDLE_FORMAT {
            return Err(format!(
                "rule bundle format {} is not known to this version of spoor, which reads format {BUNDLE_FORMAT}",
                self.format
            ));
        }
        if self.rules.is_empty() {
            return Err("the rule bundle has no rule files".into());
        }
        for (what, files) in [("rules", &self.rules), ("mappings", &self.mappings)] {
            let mut seen = BTreeSet::new();
            for (i, file) in files.iter().enumerate() {
                if file.path.trim().is_empty() || file.path.len() > MAX_PATH_BYTES {
                    return Err(format!(
                        "{what}[{i}].path must be 1..={MAX_PATH_BYTES} bytes, not {:?}",
                        file.path
                    ));
                }
                if !seen.insert(file.path.as_str()) {
                    return Err(format!("{what}[{i}].path {:?} is given twice", file.path));
                }
            }
        }
        if let Some(name) = self.placeholders.keys().find(|n| n.trim().is_empty()) {
            return Err(format!("placeholder name {name:?} is empty"));
        }
        Ok(())
    }

    /// Compile options: the built-in field mappings, then the bundle's,
    /// and its placeholders. A mapping file that cannot be used is an
    /// error naming it.
    pub fn options(&self) -> Result<Options, String> {
        let files = BUILTIN
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .chain(
                self.mappings
                    .iter()
                    .map(|m| (m.path.clone(), m.text.clone())),
            );
        Ok(Options {
            mappings: Mappings::from_files(files).map_err(|e| e.to_string())?,
            placeholders: self.placeholders.clone(),
            limits: Default::default(),
        })
    }

    /// Every document of every rule file, and the documents that did not
    /// parse as refusals with file, line and column.
    pub fn documents(&self) -> (Vec<LoadedDocument>, Vec<Finding>) {
        let mut loaded = Vec::new();
        let mut refused = Vec::new();
        for file in &self.rules {
            for document in sigma::parse_documents(&file.text) {
                match document {
                    Ok(document) => loaded.push(LoadedDocument {
                        file: file.path.clone(),
                        document,
                    }),
                    Err(e) => refused.push(Finding {
                        issue: Issue {
                            file: file.path.clone(),
                            line: e.line,
                            rule: String::new(),
                            message: e.message,
                            warning: false,
                        },
                        column: Some(e.column),
                    }),
                }
            }
        }
        (loaded, refused)
    }

    /// Compiles the bundle exactly as `spoor rules check` does: every
    /// document parsed, the rules compiled with [`Self::options`], every
    /// SQL rule's query planned. Refused rules are left out of the engine
    /// and reported; an error only when the bundle itself cannot be used
    /// (a bad mapping file).
    ///
    /// This blocks (SQL rules are planned on a thread of their own, so it
    /// may be called inside or outside an async runtime); from async code,
    /// call it in `spawn_blocking`.
    pub fn check(&self) -> Result<Compiled, String> {
        self.check_without(&BTreeSet::new())
    }

    /// [`Self::check`] without the rules whose key (id, else title) is in
    /// `excluded`: a shard's rule set once it has disabled rules that
    /// panicked or overran their time budget.
    pub fn check_without(&self, excluded: &BTreeSet<String>) -> Result<Compiled, String> {
        let options = self.options()?;
        let (mut loaded, mut findings) = self.documents();
        loaded.retain(|d| !excluded.contains(document_key(&d.document)));
        let documents = loaded.len() + findings.len();
        let (mut engine, issues) = Engine::compile(&loaded, &options);
        findings.extend(issues.into_iter().map(|issue| Finding {
            issue,
            column: None,
        }));
        if !engine.sql_rules.is_empty() {
            let rules: Vec<&sigma::SqlRule> = engine.sql_rules.iter().map(|(_, r)| r).collect();
            let answers = plan_sql(&rules)?;
            let mut answers = answers.into_iter();
            engine.sql_rules.retain(|(info, _)| match answers.next() {
                Some(Err(e)) => {
                    findings.push(Finding {
                        issue: Issue {
                            file: info.file.clone(),
                            line: info.line,
                            rule: info.title.clone(),
                            message: e,
                            warning: false,
                        },
                        column: None,
                    });
                    false
                }
                _ => true,
            });
        }
        Ok(Compiled {
            engine,
            findings,
            files: self.rules.len(),
            documents,
        })
    }

    /// The engine of the bundle's rules and every refusal and warning
    /// ([`Self::check`] without the counts): what a worker runs.
    pub fn compile(&self) -> Result<(Engine, Vec<Issue>), String> {
        self.compile_without(&BTreeSet::new())
    }

    /// [`Self::compile`] without the rules keyed in `excluded` (see
    /// [`Self::check_without`]).
    pub fn compile_without(
        &self,
        excluded: &BTreeSet<String>,
    ) -> Result<(Engine, Vec<Issue>), String> {
        let compiled = self.check_without(excluded)?;
        Ok((
            compiled.engine,
            compiled.findings.into_iter().map(|f| f.issue).collect(),
        ))
    }
}

/// How a rule is named where rules are disabled: its id, else its title
/// (as [`crate::engine::RuleInfo::key`]).
pub fn document_key(document: &sigma::Document) -> &str {
    document.id().unwrap_or_else(|| document.title())
}

/// Plans each SQL rule's query ([`crate::sql::check`]) on a thread with a
/// runtime of its own, so callers need none and may already be in one.
fn plan_sql(rules: &[&sigma::SqlRule]) -> Result<Vec<Result<(), String>>, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("starting a runtime to plan SQL rules: {e}"))?;
                Ok(rules
                    .iter()
                    .map(|rule| rt.block_on(crate::sql::check(rule)))
                    .collect())
            })
            .join()
            .map_err(|_| "planning the SQL rules panicked".to_string())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DETECTION: &str = "title: Whoami
id: 0f0a4d52-9d4b-4c3e-8e33-2a4f5d1c0001
logsource: {product: windows, category: process_creation}
detection:
  sel:
    Image|endswith: '\\whoami.exe'
  condition: sel
level: medium
";

    const EXPAND: &str = "title: Admins logon
logsource: {product: windows, service: security}
detection:
  sel:
    TargetUserName|expand: '%Admins%'
  condition: sel
";

    const BAD: &str = "title: fine
detection:
  sel: {a: 1}
  condition: sel
---
title: broken
detection:
  sel:
    Image|startwith: x
  condition: sel
";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("folder");
        }
        std::fs::write(&path, text).expect("write");
        path
    }

    fn admins() -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([("Admins".to_string(), vec!["root".into(), "admin".into()])])
    }

    #[test]
    fn a_bundle_round_trips_and_names_files_relative_to_the_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = dir.path().join("windows-rules");
        write(&rules, "process/whoami.yml", DETECTION);
        write(&rules, "logon/admins.yaml", EXPAND);
        write(&rules, "README.md", "not a rule");
        let bundle =
            RuleBundle::from_paths(std::slice::from_ref(&rules), &[], admins()).expect("bundle");
        let paths: Vec<&str> = bundle.rules.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["logon/admins.yaml", "process/whoami.yml"]);
        let content = bundle.to_content();
        let back = RuleBundle::from_content(&content).expect("round trip");
        assert_eq!(back, bundle);
        assert_eq!(back.to_content(), content, "the same text every time");

        // The same files elsewhere make the same bundle.
        let other = tempfile::tempdir().expect("tempdir");
        let copy = other.path().join("elsewhere");
        write(&copy, "process/whoami.yml", DETECTION);
        write(&copy, "logon/admins.yaml", EXPAND);
        let moved = RuleBundle::from_paths(&[copy], &[], admins()).expect("bundle");
        assert_eq!(moved.to_content(), content);

        let (engine, issues) = back.compile().expect("compiles");
        assert_eq!(engine.detections.len(), 2);
        assert!(issues.iter().all(|i| i.warning), "{issues:?}");

        // Without the placeholder's values, the rule using it is refused.
        let (engine, issues) = RuleBundle {
            placeholders: BTreeMap::new(),
            ..back
        }
        .compile()
        .expect("compiles");
        assert_eq!(engine.detections.len(), 1);
        let refused: Vec<&Issue> = issues.iter().filter(|i| !i.warning).collect();
        assert_eq!(refused.len(), 1, "{issues:?}");
        assert_eq!(refused[0].file, "logon/admins.yaml");
        assert!(refused[0].message.contains("%Admins%"), "{refused:?}");
    }

    #[test]
    fn several_folders_are_told_apart_by_their_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        write(&a, "x.yml", DETECTION);
        write(&b, "x.yml", EXPAND);
        let single = write(dir.path(), "single.yml", DETECTION);
        let bundle =
            RuleBundle::from_paths(&[a.clone(), b.clone(), single], &[], admins()).expect("bundle");
        let paths: Vec<&str> = bundle.rules.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a/x.yml", "b/x.yml", "single.yml"]);

        // Two files that would get the same name are refused, naming both.
        let err = RuleBundle::from_paths(&[a.join("x.yml"), b.join("x.yml")], &[], admins())
            .expect_err("same name");
        assert!(
            err.contains("a/x.yml") && err.contains("b/x.yml") && err.contains("stored as x.yml"),
            "{err}"
        );
        let err = RuleBundle::from_paths(&[dir.path().join("missing")], &[], admins())
            .expect_err("missing");
        assert!(err.contains("missing"), "{err}");
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).expect("folder");
        let err = RuleBundle::from_paths(&[empty], &[], admins()).expect_err("empty");
        assert!(
            err.contains("no rule files") && err.contains("empty"),
            "{err}"
        );
    }

    #[test]
    fn a_refused_rule_is_reported_with_file_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "rules/bad.yml", BAD);
        let bundle =
            RuleBundle::from_paths(&[dir.path().join("rules")], &[], BTreeMap::new()).expect("b");
        let compiled = bundle.check().expect("compiles");
        assert_eq!((compiled.files, compiled.documents), (1, 2));
        assert_eq!(compiled.refusals(), 1);
        assert_eq!(compiled.rules(), 1);
        let refused: Vec<String> = compiled
            .findings
            .iter()
            .filter(|f| f.is_refusal())
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            refused,
            ["bad.yml:9:5: unknown value modifier `startwith` in `Image|startwith`"]
        );
        assert_eq!(compiled.engine.detections.len(), 1, "the other rule runs");
        let (_, issues) = bundle.compile().expect("compiles");
        let issue = issues.iter().find(|i| !i.warning).expect("the refusal");
        assert_eq!((issue.file.as_str(), issue.line), ("bad.yml", 9));
    }

    #[test]
    fn sql_rules_are_planned_and_bad_queries_refused_inside_a_runtime_too() {
        let bundle = RuleBundle {
            format: BUNDLE_FORMAT,
            rules: vec![BundleFile {
                path: "sql.yml".into(),
                text: "title: good\nsql:\n  query: SELECT count(*) AS n FROM events\n  every: 1m\n---\ntitle: bad\nsql:\n  query: SELECT nope FROM events\n  every: 1m\n".into(),
            }],
            mappings: Vec::new(),
            placeholders: BTreeMap::new(),
        };
        let check = |b: &RuleBundle| {
            let compiled = b.check().expect("compiles");
            assert_eq!(compiled.engine.sql_rules.len(), 1);
            let lines: Vec<String> = compiled.findings.iter().map(ToString::to_string).collect();
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(
                lines[0].starts_with("sql.yml:6: bad: query:") && lines[0].contains("nope"),
                "{lines:?}"
            );
        };
        check(&bundle);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async { check(&bundle) });
    }

    #[test]
    fn extra_mappings_are_used_and_bad_ones_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = write(dir.path(), "r.yml", DETECTION);
        let bad = write(dir.path(), "site.toml", "family = 3\n");
        let bundle = RuleBundle::from_paths(std::slice::from_ref(&rules), &[bad], BTreeMap::new())
            .expect("bundle");
        assert_eq!(bundle.mappings[0].path, "site.toml");
        let err = bundle.compile().expect_err("bad mapping");
        assert!(err.contains("site.toml"), "{err}");
        let good = write(
            dir.path(),
            "good.toml",
            "family = \"site\"\n[fields]\nHost = \"device_hostname\"\n",
        );
        let bundle = RuleBundle::from_paths(&[rules], &[good], BTreeMap::new()).expect("bundle");
        bundle.compile().expect("a usable mapping file");
    }

    #[test]
    fn bad_content_is_refused_saying_what_is_wrong() {
        let err = RuleBundle::from_content("title: x\n").expect_err("yaml");
        assert!(err.contains("not a rule bundle"), "{err}");
        let err = RuleBundle::from_content(r#"{"rules": [{"path": "a.yml"}]}"#).expect_err("text");
        assert!(err.contains("missing field `text`"), "{err}");
        let err = RuleBundle::from_content(r#"{"rules": [], "extra": 1}"#).expect_err("field");
        assert!(err.contains("unknown field `extra`"), "{err}");
        let err = RuleBundle::from_content(r#"{"rules": []}"#).expect_err("empty");
        assert!(err.contains("no rule files"), "{err}");
        let err = RuleBundle::from_content(r#"{"format": 9, "rules": []}"#).expect_err("format");
        assert!(err.contains("format 9"), "{err}");
        let twice = r#"{"rules": [{"path": "a.yml", "text": ""}, {"path": "a.yml", "text": ""}]}"#;
        let err = RuleBundle::from_content(twice).expect_err("twice");
        assert!(
            err.contains("rules[1].path \"a.yml\" is given twice"),
            "{err}"
        );
        // The format defaults to the current one.
        let ok = RuleBundle::from_content(r#"{"rules": [{"path": "a.yml", "text": "x"}]}"#)
            .expect("minimal");
        assert_eq!(ok.format, BUNDLE_FORMAT);
    }

    #[test]
    fn placeholders_files_are_read_or_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = write(dir.path(), "p.toml", "Admins = [\"root\", \"admin\"]\n");
        assert_eq!(read_placeholders(&good).expect("read"), admins());
        let bad = write(dir.path(), "q.toml", "Admins = \"root\"\n");
        let err = read_placeholders(&bad).expect_err("not a list");
        assert!(err.contains("q.toml") && err.contains("name = ["), "{err}");
    }

    /// A `fieldref` test runs on the rows of its own field, which other
    /// rules may read on log sources where its other field is not
    /// extracted at all: the engine must answer "no value" there, not
    /// panic (the SigmaHQ Windows rules did on a batch of Sysmon process
    /// events).
    #[test]
    fn fieldref_on_rows_where_its_other_field_is_not_extracted() {
        use std::sync::Arc;

        use arrow::array::{ArrayRef, RecordBatch, StringArray, new_null_array};
        use spoor_common::schema::{event_col, event_schema};

        let rules = "title: Deletes itself
id: own
logsource: {product: windows, category: file_delete}
detection:
  sel:
    TargetFilename|fieldref: Image
  condition: sel
---
title: Secret file written
id: touch
logsource: {product: windows, category: file_event}
detection:
  sel:
    TargetFilename|contains: secret
  condition: sel
";
        let bundle = RuleBundle {
            format: BUNDLE_FORMAT,
            rules: vec![BundleFile {
                path: "r.yml".into(),
                text: rules.into(),
            }],
            mappings: Vec::new(),
            placeholders: BTreeMap::new(),
        };
        let (engine, _) = bundle.compile().expect("compiles");
        assert_eq!(engine.detections.len(), 2);
        // Two Sysmon file creation events (event 11): only `touch` applies;
        // it reads `TargetFilename` as `own` does, and `Image` is read by
        // `own` only.
        let schema = event_schema();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.name().as_str() {
                    event_col::TIME | event_col::INGEST_TIME => Arc::new(
                        arrow::array::TimestampMicrosecondArray::from(vec![0, 1])
                            .with_timezone("UTC"),
                    ),
                    event_col::METADATA_PRODUCT => Arc::new(StringArray::from(vec!["Sysmon"; 2])),
                    event_col::EVENT_CODE => Arc::new(StringArray::from(vec!["11"; 2])),
                    event_col::UNMAPPED => Arc::new(StringArray::from(vec![
                        r#"{"TargetFilename": "c:\\secret.txt"}"#,
                        r#"{"TargetFilename": "c:\\other.txt"}"#,
                    ])),
                    event_col::RAW | event_col::SOURCE_TOPIC => {
                        Arc::new(StringArray::from(vec![""; 2]))
                    }
                    _ => new_null_array(f.data_type(), 2),
                }
            })
            .collect();
        let batch = RecordBatch::try_new(schema, columns).expect("batch");
        let result = engine.evaluate(&batch).expect("evaluates");
        let hits: Vec<(&str, usize)> = result
            .hits
            .iter()
            .map(|h| (engine.detections[h.rule].info.key(), h.row))
            .collect();
        assert_eq!(hits, vec![("touch", 0)]);
    }
}

//! Parsers: the formats SOCs receive, each mapped to the event schema.
//!
//! Every source type has a [`Parser`] in its own module. A parser works in two
//! steps so configuration can sit between them: [`Parser::parse`] turns input
//! bytes into [`Draft`]s holding the source's fields, and [`Parser::map`] moves
//! fields into columns. A [`Decoder`] runs the two around the source's
//! configured field mapping (`[[ingest.sources]] fields`, tried first) and
//! turns every failure into a dead letter naming the reason and the place, so
//! nothing is dropped and nothing panics.
//!
//! `docs/sources.md` documents each source's mapping.

pub mod auditd;
pub mod cef;
pub mod cloudtrail;
pub mod draft;
pub mod entra;
pub mod json;
pub mod leef;
pub mod syslog;
pub mod windows;
pub mod zeek;

use std::fmt;

pub use draft::{Cell, Draft, EventRow, MAX_EVENT_BYTES, NormalizeError, Provenance};
pub use json::{JsonNormalizer, UnknownColumn};
pub use spoor_common::config::{SourceConfig, SourceType};

use crate::lake_writer::DeadLetterRow;

/// One event drafted from the input, with what to keep as its `raw`.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The event so far.
    pub draft: Draft,
    /// The bytes to keep as `raw` when they are not the whole input (one
    /// record of a CloudTrail batch, one line of a multi-line message, the
    /// joined records of an auditd event).
    pub raw: Option<Vec<u8>>,
    /// Where the event came from when it is not the input being decoded (an
    /// auditd event completed by a later record carries its first record's).
    pub provenance: Option<Provenance>,
}

impl Parsed {
    /// An event whose `raw` is the whole input.
    pub fn new(draft: Draft) -> Self {
        Parsed {
            draft,
            raw: None,
            provenance: None,
        }
    }

    /// An event whose `raw` is part of the input.
    pub fn with_raw(draft: Draft, raw: impl Into<Vec<u8>>) -> Self {
        Parsed {
            draft,
            raw: Some(raw.into()),
            provenance: None,
        }
    }
}

/// A problem with part of an input that the rest of the input survives (one
/// bad line of a Zeek TSV chunk): a dead letter of its own.
#[derive(Debug, Clone)]
pub struct PartFailure {
    /// The part's bytes.
    pub raw: Vec<u8>,
    /// What is wrong, naming the place within the input (`line 3: …`).
    pub error: String,
}

/// What a parser produced from one input.
#[derive(Debug, Default)]
pub struct ParseOutput {
    /// Events drafted.
    pub events: Vec<Parsed>,
    /// Parts of the input that failed while others succeeded.
    pub failures: Vec<PartFailure>,
}

/// A source format.
pub trait Parser: Send + fmt::Debug {
    /// Turns one input (a Kafka message, an HTTP line, a line or chunk of a
    /// file) from `prov` into drafts with the source's fields. An `Err` sends the whole
    /// input to dead letters; a parser that can save part of an input puts
    /// the bad parts in `out.failures` instead. Stateful parsers (auditd
    /// joining records, Zeek TSV headers) may emit nothing now and events
    /// later.
    fn parse(
        &mut self,
        input: &[u8],
        prov: &Provenance,
        out: &mut ParseOutput,
    ) -> Result<(), NormalizeError>;

    /// Moves the source's fields into columns, sets the OCSF class and
    /// notes problems. Runs after the configured field mapping, so columns
    /// already set are left alone ([`Draft::take`] does this).
    fn map(&self, draft: &mut Draft);

    /// Emits what is held back (an auditd event waiting for its end
    /// record); called before every flush, so nothing waits across one.
    fn flush(&mut self, _out: &mut ParseOutput) {}
}

/// The parser of a source type.
pub fn parser_for(source_type: SourceType) -> Box<dyn Parser> {
    match source_type {
        SourceType::Json => Box::new(json::JsonParser::new(JsonNormalizer::new())),
        SourceType::Windows => Box::new(windows::WindowsParser::new()),
        SourceType::Syslog => Box::new(syslog::SyslogParser::new()),
        SourceType::Auditd => Box::new(auditd::AuditdParser::new()),
        SourceType::Cef => Box::new(cef::CefParser::new()),
        SourceType::Leef => Box::new(leef::LeefParser::new()),
        SourceType::Zeek => Box::new(zeek::ZeekParser::new()),
        SourceType::Cloudtrail => Box::new(cloudtrail::CloudTrailParser::new()),
        SourceType::Entra => Box::new(entra::EntraParser::new()),
    }
}

/// The result of decoding one input: events and dead letters.
#[derive(Debug, Clone)]
pub enum Decoded {
    /// A normalized event.
    Event(EventRow),
    /// An input or part of one that could not be normalized.
    Dead(DeadLetterRow),
}

/// Decodes the inputs of one stream (a Kafka partition, an HTTP request, an
/// imported file) with a source's parser and configured field mapping.
#[derive(Debug)]
pub struct Decoder {
    source_type: SourceType,
    parser: Box<dyn Parser>,
    /// The configured field mapping, applied before the parser's own.
    overrides: Option<JsonNormalizer>,
    /// The source field naming the tenant, when the source routes by field.
    tenant_field: Option<String>,
    scratch: ParseOutput,
}

impl Decoder {
    /// A decoder for a configured source.
    pub fn new(source: &SourceConfig) -> Result<Self, UnknownColumn> {
        let configured = JsonNormalizer::with_fields(&source.fields, true)?;
        let (parser, overrides): (Box<dyn Parser>, _) = if source.source_type == SourceType::Json {
            let mapping = JsonNormalizer::with_fields(&source.fields, source.only_listed_fields)?;
            (Box::new(json::JsonParser::new(mapping)), None)
        } else {
            (
                parser_for(source.source_type),
                (!source.fields.is_empty()).then_some(configured),
            )
        };
        Ok(Decoder {
            source_type: source.source_type,
            parser,
            overrides,
            tenant_field: (source.tenant_from == spoor_common::config::TenantFrom::Field)
                .then(|| source.tenant_field.clone()),
            scratch: ParseOutput::default(),
        })
    }

    /// A decoder for a source type with its built-in mapping only.
    pub fn for_type(source_type: SourceType) -> Self {
        Decoder {
            source_type,
            parser: parser_for(source_type),
            overrides: None,
            tenant_field: None,
            scratch: ParseOutput::default(),
        }
    }

    /// The source type.
    pub fn source_type(&self) -> SourceType {
        self.source_type
    }

    /// Decodes one input; appends its events and dead letters to `out`.
    pub fn decode(&mut self, input: &[u8], prov: &Provenance, out: &mut Vec<Decoded>) {
        let result = draft::check_size(input).and_then(|()| {
            let mut scratch = std::mem::take(&mut self.scratch);
            let r = self.parser.parse(input, prov, &mut scratch);
            self.scratch = scratch;
            r
        });
        if let Err(e) = result {
            // A failed input may still have produced parts; they are kept.
            self.drain(Some(input), prov, out);
            out.push(Decoded::Dead(dead_letter(
                input.to_vec(),
                prov,
                &e.to_string(),
            )));
            return;
        }
        self.drain(Some(input), prov, out);
    }

    /// Emits what the parser holds back.
    pub fn flush(&mut self, prov: &Provenance, out: &mut Vec<Decoded>) {
        let mut scratch = std::mem::take(&mut self.scratch);
        self.parser.flush(&mut scratch);
        self.scratch = scratch;
        self.drain(None, prov, out);
    }

    fn drain(&mut self, input: Option<&[u8]>, prov: &Provenance, out: &mut Vec<Decoded>) {
        for failure in self.scratch.failures.drain(..) {
            out.push(Decoded::Dead(dead_letter(
                failure.raw,
                prov,
                &failure.error,
            )));
        }
        for parsed in self.scratch.events.drain(..) {
            let Parsed {
                mut draft,
                raw,
                provenance,
            } = parsed;
            let tenant_hint = self
                .tenant_field
                .as_deref()
                .and_then(|path| draft.field_str(path));
            if let Some(overrides) = &self.overrides {
                overrides.apply(&mut draft);
            }
            self.parser.map(&mut draft);
            let prov = provenance.as_ref().unwrap_or(prov);
            let mut row = match (&raw, input) {
                (Some(raw), _) => draft.finish(raw, prov),
                (None, Some(input)) => draft.finish(input, prov),
                (None, None) => draft.finish(b"", prov),
            };
            row.tenant_hint = tenant_hint;
            out.push(Decoded::Event(row));
        }
    }
}

/// A dead letter for `raw`, its error prefixed with where it was.
pub fn dead_letter(raw: Vec<u8>, prov: &Provenance, error: &str) -> DeadLetterRow {
    let place = match (prov.partition, prov.offset) {
        (Some(_), Some(offset)) => format!("offset {offset}: "),
        (None, Some(line)) => format!("line {line}: "),
        _ => String::new(),
    };
    DeadLetterRow {
        ingest_time_micros: prov.ingest_time_micros,
        topic: prov.topic.clone(),
        partition: prov.partition,
        offset: prov.offset,
        error: format!("{place}{error}"),
        raw,
    }
}

/// The lines of a text input without their line ends, with 1-based numbers,
/// skipping blank lines.
pub fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty())
}

/// Which parser reads which topic: the configured `[[ingest.sources]]`,
/// checked once at start-up; topics no entry matches are generic JSON.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    entries: std::sync::Arc<Vec<SourceConfig>>,
}

impl Sources {
    /// Checks every entry (its field mapping names real columns).
    pub fn new(entries: Vec<SourceConfig>) -> Result<Self, UnknownColumn> {
        for entry in &entries {
            Decoder::new(entry)?;
        }
        Ok(Sources {
            entries: std::sync::Arc::new(entries),
        })
    }

    /// The entry for a topic (or `http:<source>`), if one matches.
    pub fn entry_for(&self, topic: &str) -> Option<&SourceConfig> {
        self.entries.iter().find(|s| s.matches(topic))
    }

    /// A decoder for a topic (or `http:<source>`).
    pub fn decoder_for(&self, topic: &str) -> Decoder {
        match self.entry_for(topic) {
            Some(entry) => Decoder::new(entry)
                .unwrap_or_else(|e| unreachable!("entries are checked in Sources::new: {e}")),
            None => Decoder::for_type(SourceType::Json),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoor_common::schema::event_col as col;

    fn prov(offset: i64) -> Provenance {
        Provenance {
            topic: "edr".into(),
            partition: Some(3),
            offset: Some(offset),
            ingest_time_micros: 1_800_000_000_000_000,
        }
    }

    fn source(source_type: SourceType, fields: &[(&str, &[&str])], only: bool) -> SourceConfig {
        SourceConfig {
            topics: vec!["edr*".into()],
            fields: fields
                .iter()
                .map(|(c, p)| (c.to_string(), p.iter().map(|s| s.to_string()).collect()))
                .collect(),
            only_listed_fields: only,
            ..SourceConfig::of_type(source_type)
        }
    }

    fn decode_one(decoder: &mut Decoder, input: &str) -> Decoded {
        let mut out = Vec::new();
        decoder.decode(input.as_bytes(), &prov(9), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        out.remove(0)
    }

    #[test]
    fn configured_json_fields_come_first_with_nested_paths_and_coercion() {
        let mut d = Decoder::new(&source(
            SourceType::Json,
            &[
                ("src_ip", &["net.src.addr"]),
                ("src_port", &["net.src.port"]),
                ("time", &["meta.when"]),
            ],
            false,
        ))
        .expect("valid mapping");
        let Decoded::Event(row) = decode_one(
            &mut d,
            r#"{"net":{"src":{"addr":"10.1.1.1","port":"0x50"}},"src_ip":"9.9.9.9","meta":{"when":"1700000000123"},"user":{"name":"bob"}}"#,
        ) else {
            panic!("event expected")
        };
        assert_eq!(
            row.get_str(col::SRC_IP),
            Some("10.1.1.1"),
            "configured path wins"
        );
        assert_eq!(
            row.get_int(col::SRC_PORT),
            Some(80),
            "hex text coerced to int"
        );
        assert_eq!(row.time(), 1_700_000_000_123_000, "epoch ms text");
        assert_eq!(
            row.get_str(col::USER_NAME),
            Some("bob"),
            "defaults still apply"
        );
        let unmapped: serde_json::Value =
            serde_json::from_str(row.get_str(col::UNMAPPED).expect("unmapped")).expect("json");
        assert_eq!(unmapped, serde_json::json!({"src_ip": "9.9.9.9"}));
    }

    #[test]
    fn only_listed_fields_turns_the_generic_aliases_off() {
        let mut d = Decoder::new(&source(SourceType::Json, &[("user_name", &["who"])], true))
            .expect("valid mapping");
        let Decoded::Event(row) = decode_one(&mut d, r#"{"who":"amy","src_ip":"1.2.3.4"}"#) else {
            panic!("event expected")
        };
        assert_eq!(row.get_str(col::USER_NAME), Some("amy"));
        assert_eq!(row.get_str(col::SRC_IP), None);
    }

    #[test]
    fn mappings_naming_unknown_or_parser_owned_columns_are_refused() {
        let err = Decoder::new(&source(SourceType::Json, &[("source_ip", &["a"])], false))
            .expect_err("unknown column");
        assert!(err.to_string().contains("`source_ip`"), "{err}");
        assert!(Decoder::new(&source(SourceType::Json, &[("raw", &["a"])], false)).is_err());
        assert!(Sources::new(vec![source(SourceType::Json, &[("nope", &["a"])], false)]).is_err());
    }

    #[test]
    fn dead_letters_keep_the_bytes_and_name_the_place() {
        let mut d = Decoder::for_type(SourceType::Json);
        let Decoded::Dead(letter) = decode_one(&mut d, "{\"a\":") else {
            panic!("dead letter expected")
        };
        assert!(
            letter.error.starts_with("offset 9: invalid JSON"),
            "{}",
            letter.error
        );
        assert_eq!(letter.raw, b"{\"a\":");
        assert_eq!((letter.partition, letter.offset), (Some(3), Some(9)));
    }

    #[test]
    fn sources_route_topics_to_parsers() {
        let sources = Sources::new(vec![source(SourceType::Zeek, &[], false)]).expect("sources");
        assert_eq!(
            sources.decoder_for("edr-zeek").source_type(),
            SourceType::Zeek
        );
        assert_eq!(sources.decoder_for("other").source_type(), SourceType::Json);
    }
}

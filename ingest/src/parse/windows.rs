//! Windows event logs as JSON, in the shapes the common shippers produce.
//!
//! Three shapes are recognized per event, because one source (a Kafka topic
//! fed by several collectors) may mix them:
//!
//! - **Winlogbeat / Elastic Agent (ECS)**: a `winlog` object (`winlog.channel`,
//!   `winlog.event_id`, `winlog.provider_name`, `winlog.computer_name`,
//!   `winlog.event_data`, `winlog.user_data`) beside `@timestamp`, `host.name`,
//!   `event.code` and `message`.
//! - **Flat objects** (Logstash, NXLog, Microsoft Sentinel table exports,
//!   Winlogbeat 6 `event_data`): the event's own fields at the top level beside
//!   envelope fields (`Channel`, `EventID`, `SourceName`/`ProviderName`,
//!   `Hostname`/`Computer`, `TimeCreated`/`EventTime`/`@timestamp`/`UtcTime`).
//!   Sentinel's `EventData` column is a *string* holding JSON (the
//!   `WindowsEvent` table) or an XML `<EventData><Data Name="X">v</Data>…`
//!   fragment (`SecurityEvent`, `Event`); it is read (XML with quick-xml) and
//!   its fields join the top level. Sentinel's `*_string`/`*_dynamic` column
//!   suffixes are dropped when the plain name is free.
//! - **evtx-dump** (the `evtx` crate's JSON): `Event.System.*` with XML
//!   attributes under `#attributes` (or `_attributes` with
//!   `--separate-json-attributes`), `Event.EventData.*` (unnamed `Data`
//!   elements as a list or `#text`), `Event.UserData.<element>.*`.
//!
//! Parsing brings all three to one flat field set: the event data at the top
//! level, and the envelope of evtx-dump and Winlogbeat at the top level under
//! Sigma's names (the evtx → Sigma convention pySigma-based tools use: an
//! element's text under its name, an attribute `A` of element `E` as `E_A`):
//! `Provider_Name`, `Provider_Guid`, `EventID`, `EventID_Qualifiers`,
//! `Version`, `Level`, `Task`, `Opcode`, `Keywords`,
//! `TimeCreated_SystemTime`, `EventRecordID`, `Correlation_ActivityID`,
//! `Execution_ProcessID`, `Execution_ThreadID`, `Channel`, `Computer`,
//! `Security_UserID` (Winlogbeat: `winlog.provider_name` → `Provider_Name`,
//! `winlog.record_id` → `EventRecordID`, `winlog.process.pid` →
//! `Execution_ProcessID`, … see [`ECS_ENVELOPE`]). Flat shapes keep their
//! envelope names and get `Provider_Name` (a copy of the provider field) when
//! they lack it. Mapping then reads the channel and event id from whichever
//! envelope is present and maps the event data by channel + event id
//! (Sysmon, Security, System, PowerShell, Task Scheduler), so a Sysmon
//! process creation maps the same whoever shipped it.
//!
//! Collisions: the envelope is placed first, then `EventData`, then
//! `UserData`; a field whose name is already taken at the top level (by a
//! different value) stays where it was, so nothing is overwritten and the
//! envelope wins. System 104 (log cleared) thus keeps its own channel
//! (`System`) as the channel, and the cleared log's `Channel` stays in
//! `unmapped` at `Event.UserData.<element>.Channel` (evtx-dump) or
//! `winlog.user_data.Channel` (Winlogbeat). Every JSON object becomes an
//! event; one that is not recognizably a Windows event gets a note saying
//! what is missing. An input may also be a JSON array of events or several
//! JSON lines; a bad element or line is a dead letter of its own.
//!
//! Unnamed `<Data>` elements (evtx-dump's `Data` list or `#text`, Sentinel's
//! XML or JSON-array `EventData`) become `param1`, `param2`, … like
//! Winlogbeat names them, and also Sigma's `Data`: their values joined with
//! newlines (`Data|contains` rules on Windows PowerShell 400/800 and
//! application logs read it). Winlogbeat and flat `paramN` fields are left
//! as they are: a named `<Data Name="param1">` (Service Control Manager)
//! cannot be told from an unnamed one there.
//!
//! Choices, and why:
//! - The event time is the event log's own record time (`TimeCreated`,
//!   evtx `SystemTime`, Sentinel `TimeGenerated`, ECS `@timestamp`) before
//!   Sysmon's `UtcTime`: all channels of a host then share one clock (the
//!   OTRF data shows Sysmon `UtcTime` hours away from `TimeCreated` on some
//!   hosts), and `UtcTime` stays in `unmapped`. NXLog's `EventTime` is local
//!   time without a zone; it is only used as a last resort, with a note.
//! - `process_*` is always the process that acted (Sysmon `Image`, or
//!   `SourceImage` for 8 CreateRemoteThread and 10 ProcessAccess; Security
//!   `ProcessName`/`NewProcessName`). The target process of Sysmon 8/10
//!   (`TargetImage`, `TargetProcessId`, …) has no column and stays in
//!   `unmapped`.
//! - Subject* fields are the actor (`actor_user_*`), Target* fields the
//!   user acted on (`user_*`); for 4672 the Subject is the account that just
//!   logged on, so it goes to `user_*`. Sysmon's `User` (`DOMAIN\name`) is the
//!   acting process's user (`actor_user_*`).
//! - PowerShell 4104 script block text goes to `message` (it is what analysts
//!   search, and a script is not a process command line); the rendered
//!   `Message` then stays in `unmapped`. 4103/400/800 put the host
//!   process's command line (`Host Application`) in `process_cmd_line`.
//! - Derived columns (user split from `DOMAIN\name`, direction from
//!   `Initiated`, severity from `Level`, status from `Keywords`, command line
//!   from a scheduled task's XML, `hash_*` from Sysmon's `Hashes`) leave
//!   their source fields in `unmapped`: only fields copied verbatim into a
//!   column are removed. Windows Defender's names with spaces (`Threat
//!   Name`, `Process Name`) stay as they are.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use spoor_common::schema::event_col as col;

use super::draft::{
    Draft, NormalizeError, Provenance, as_text, json_kind, lookup, parse_int, parse_object,
    remove_path,
};
use super::{ParseOutput, Parsed, Parser, PartFailure, lines};

/// The format name in errors.
const FORMAT: &str = "a Windows event";

/// Where each shape keeps the channel.
const CHANNEL_PATHS: &[&str] = &[
    "Channel",
    "winlog.channel",
    "Event.System.Channel",
    "EventLog",
    "log_name",
];

/// Where each shape keeps the event id (evtx: a number, or `#text` beside
/// the `Qualifiers` attribute).
const EVENT_ID_PATHS: &[&str] = &[
    "EventID",
    "winlog.event_id",
    "event.code",
    "Event.System.EventID.#text",
    "Event.System.EventID",
    "EventId",
    "event_id",
];

/// Where each shape keeps the provider (event source); `Provider_Name` is
/// evtx-dump's and Winlogbeat's, moved there by parsing.
const PROVIDER_PATHS: &[&str] = &[
    "Provider_Name",
    "SourceName",
    "ProviderName",
    "winlog.provider_name",
    "Event.System.Provider.#attributes.Name",
    "Event.System.Provider_attributes.Name",
    "Provider",
    "EventSourceName",
    "Source",
    "source_name",
];

/// The computer the event was logged on (not the collector: NXLog's `host`
/// and Winlogbeat's `agent` are left alone).
const COMPUTER_PATHS: &[&str] = &[
    "Hostname",
    "Computer",
    "winlog.computer_name",
    "Event.System.Computer",
    "computer_name",
    "host.name",
];

/// Event time, best first (see the module doc).
const TIME_PATHS: &[&str] = &[
    "TimeCreated",
    "TimeCreated.SystemTime",
    "TimeCreated_SystemTime",
    "Event.System.TimeCreated.#attributes.SystemTime",
    "Event.System.TimeCreated_attributes.SystemTime",
    "TimeGenerated",
    "@timestamp",
    "timestamp",
    "UtcTime",
    "EventTime",
];

const LEVEL_PATHS: &[&str] = &[
    "Level",
    "Event.System.Level",
    "EventLevel",
    "winlog.level",
    "log.level",
    "EventLevelName",
];

const KEYWORD_PATHS: &[&str] = &["Keywords", "Event.System.Keywords", "winlog.keywords"];

const MESSAGE_PATHS: &[&str] = &[
    "Message",
    "message",
    "RenderedDescription",
    "Event.RenderingInfo.Message",
    "Activity",
];

/// Winlogbeat's envelope (paths in `winlog`) and Sigma's names for it, the
/// names evtx-dump's `Event.System` gets (see the module doc).
const ECS_ENVELOPE: &[(&str, &str)] = &[
    ("provider_name", "Provider_Name"),
    ("provider_guid", "Provider_Guid"),
    ("event_id", "EventID"),
    ("version", "Version"),
    ("level", "Level"),
    ("task", "Task"),
    ("opcode", "Opcode"),
    ("keywords", "Keywords"),
    ("record_id", "EventRecordID"),
    ("activity_id", "Correlation_ActivityID"),
    ("related_activity_id", "Correlation_RelatedActivityID"),
    ("process.pid", "Execution_ProcessID"),
    ("process.thread.id", "Execution_ThreadID"),
    ("channel", "Channel"),
    ("computer_name", "Computer"),
    ("user.identifier", "Security_UserID"),
];

/// The envelope names of evtx-dump and Winlogbeat after parsing; for those
/// shapes they are read before any other path, so that an event-data field
/// (`Hostname`, `SourceName`) never passes for the envelope.
const ENVELOPE_CHANNEL: &[&str] = &["Channel"];
const ENVELOPE_EVENT_ID: &[&str] = &["EventID"];
const ENVELOPE_PROVIDER: &[&str] = &["Provider_Name"];
const ENVELOPE_COMPUTER: &[&str] = &["Computer"];

/// Keyword bits of the Security log's outcome.
const AUDIT_SUCCESS: u64 = 0x0020_0000_0000_0000;
const AUDIT_FAILURE: u64 = 0x0010_0000_0000_0000;

/// The `windows` source type.
#[derive(Debug, Default)]
pub struct WindowsParser;

impl WindowsParser {
    /// A parser (stateless: every input is complete).
    pub fn new() -> Self {
        WindowsParser
    }
}

impl Parser for WindowsParser {
    fn parse(
        &mut self,
        input: &[u8],
        _prov: &Provenance,
        out: &mut ParseOutput,
    ) -> Result<(), NormalizeError> {
        match parse_object(input) {
            Ok(object) => {
                out.events.push(Parsed::new(Draft::new(normalize(object))));
                Ok(())
            }
            Err(NormalizeError::NotAnObject { found: "array" }) => parse_array(input, out),
            Err(err @ NormalizeError::Json(_)) => parse_lines(input, out, err),
            Err(err) => Err(err),
        }
    }

    fn map(&self, draft: &mut Draft) {
        map_event(draft);
    }
}

/// A JSON array of events: each object is an event (its `raw` its own
/// bytes), anything else a dead letter naming its index.
fn parse_array(input: &[u8], out: &mut ParseOutput) -> Result<(), NormalizeError> {
    let items: Vec<&RawValue> =
        serde_json::from_slice(input).map_err(|e| NormalizeError::Json(e.to_string()))?;
    if items.is_empty() {
        return Err(NormalizeError::Format {
            format: FORMAT,
            reason: "the input is an empty JSON array".into(),
        });
    }
    for (i, item) in items.into_iter().enumerate() {
        let raw = item.get().as_bytes();
        match parse_object(raw) {
            Ok(object) => out
                .events
                .push(Parsed::with_raw(Draft::new(normalize(object)), raw)),
            Err(e) => out.failures.push(PartFailure {
                raw: raw.to_vec(),
                error: format!("array element {i}: {e}"),
            }),
        }
    }
    Ok(())
}

/// Several JSON lines in one input (a file chunk): each line is an event or
/// a dead letter of its own. Only tried when the first line is an object on
/// its own, so a single truncated or pretty-printed object still fails whole
/// with its own error.
fn parse_lines(
    input: &[u8],
    out: &mut ParseOutput,
    whole: NormalizeError,
) -> Result<(), NormalizeError> {
    let Ok(text) = as_text(input) else {
        return Err(whole);
    };
    let mut numbered = lines(text);
    let Some((_, first)) = numbered.next() else {
        return Err(whole);
    };
    let Ok(first_object) = parse_object(first.as_bytes()) else {
        return Err(whole);
    };
    let Some((second_no, second)) = numbered.next() else {
        return Err(whole);
    };
    out.events.push(Parsed::with_raw(
        Draft::new(normalize(first_object)),
        first.as_bytes(),
    ));
    for (no, line) in std::iter::once((second_no, second)).chain(numbered) {
        match parse_object(line.as_bytes()) {
            Ok(object) => out.events.push(Parsed::with_raw(
                Draft::new(normalize(object)),
                line.as_bytes(),
            )),
            Err(e) => out.failures.push(PartFailure {
                raw: line.as_bytes().to_vec(),
                error: format!("line {no}: {e}"),
            }),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Shapes → one flat field set
// ---------------------------------------------------------------------------

/// Brings the event data of every shape to the top level, and the envelope
/// of evtx-dump and Winlogbeat under Sigma's names (see the module doc).
fn normalize(mut object: Map<String, Value>) -> Map<String, Value> {
    let mut notes = Vec::new();
    let structured = if matches!(object.get("Event"), Some(Value::Object(e)) if e.contains_key("System"))
    {
        normalize_evtx(&mut object);
        true
    } else if matches!(object.get("winlog"), Some(Value::Object(_))) {
        normalize_ecs(&mut object);
        true
    } else {
        normalize_flat(&mut object, &mut notes);
        false
    };
    if structured {
        object.insert(ENVELOPE_MARK.into(), Value::Bool(true));
    }
    if !notes.is_empty() {
        // Parse-time notes ride along in a field that map() turns into notes.
        object.insert(
            PARSE_NOTES.into(),
            Value::Array(notes.into_iter().map(Value::String).collect()),
        );
    }
    object
}

/// A field carrying notes from parse to map (never left in the output).
const PARSE_NOTES: &str = "_spoor_windows_parse_notes";

/// A field telling map that the envelope is under Sigma's names (evtx-dump,
/// Winlogbeat); never left in the output.
const ENVELOPE_MARK: &str = "_spoor_windows_envelope";

fn normalize_evtx(object: &mut Map<String, Value>) {
    let Some(Value::Object(event)) = object.get_mut("Event") else {
        return;
    };
    let system = match event.remove("System") {
        Some(Value::Object(system)) => Some(system),
        Some(other) => {
            event.insert("System".into(), other);
            None
        }
        None => None,
    };
    let data = match event.remove("EventData") {
        Some(Value::Object(data)) => Some(evtx_event_data(data)),
        Some(other) => {
            event.insert("EventData".into(), other);
            None
        }
        None => None,
    };
    let user_data = match event.remove("UserData") {
        Some(Value::Object(user_data)) => Some(user_data),
        Some(other) => {
            event.insert("UserData".into(), other);
            None
        }
        None => None,
    };
    // The envelope first, so that it wins over event data of the same name
    // (System 104's UserData `Channel` is the cleared log, not the event's).
    let mut leftover_system = Map::new();
    let mut empty_elements = Vec::new();
    if let Some(system) = system {
        for (k, v) in evtx_system_fields(system) {
            if matches!(&v, Value::Null) || v.as_str() == Some("") {
                // An empty element (`<Correlation/>`) has no value: it only
                // takes its name when no data field wants it.
                empty_elements.push((k, v));
            } else {
                hoist(object, &mut leftover_system, k, v);
            }
        }
    }
    let mut leftover_data = Map::new();
    let mut leftover_user = Map::new();
    if let Some((fields, rest)) = data {
        leftover_data = rest;
        for (k, v) in fields {
            hoist(object, &mut leftover_data, k, v);
        }
    }
    if let Some(user_data) = user_data {
        for (element, inner) in user_data {
            match inner {
                Value::Object(inner) => {
                    let mut rest = Map::new();
                    for (k, v) in inner {
                        if k == "#attributes" {
                            rest.insert(k, v);
                        } else {
                            hoist(object, &mut rest, k, v);
                        }
                    }
                    if !rest.is_empty() {
                        leftover_user.insert(element, Value::Object(rest));
                    }
                }
                other => {
                    leftover_user.insert(element, other);
                }
            }
        }
    }
    for (k, v) in empty_elements {
        hoist(object, &mut leftover_system, k, v);
    }
    if let Some(Value::Object(event)) = object.get_mut("Event") {
        if !leftover_system.is_empty() {
            event.insert("System".into(), Value::Object(leftover_system));
        }
        if !leftover_data.is_empty() {
            event.insert("EventData".into(), Value::Object(leftover_data));
        }
        if !leftover_user.is_empty() {
            event.insert("UserData".into(), Value::Object(leftover_user));
        }
    }
}

/// evtx `Event.System` under Sigma's names, in document order: an element's
/// text (or scalar value) under its name, its attribute `A` as `<name>_A`
/// (`Provider.#attributes.Name` and `Provider_attributes.Name` both →
/// `Provider_Name`; `EventID.#text` → `EventID`). Anything else an element
/// holds stays under its name.
fn evtx_system_fields(system: Map<String, Value>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (k, v) in system {
        if let Some(base) = k.strip_suffix("_attributes")
            && let Value::Object(attributes) = &v
        {
            for (a, av) in attributes {
                out.push((format!("{base}_{a}"), av.clone()));
            }
            continue;
        }
        match v {
            Value::Object(mut element) => {
                if let Some(Value::Object(attributes)) = element.get("#attributes") {
                    for (a, av) in attributes {
                        out.push((format!("{k}_{a}"), av.clone()));
                    }
                    element.shift_remove("#attributes");
                }
                if element.len() == 1
                    && let Some(text) = element.shift_remove("#text")
                {
                    out.push((k, text));
                } else if !element.is_empty() {
                    out.push((k, Value::Object(element)));
                }
            }
            v => out.push((k, v)),
        }
    }
    out
}

/// evtx `EventData`: named fields as they are; unnamed `Data` elements (a
/// list, a `#text` string or list, or objects without a `Name` attribute)
/// as `param1`… like Winlogbeat names them, and joined with newlines as
/// Sigma's `Data`. Returns (fields, what stays).
fn evtx_event_data(data: Map<String, Value>) -> (Map<String, Value>, Map<String, Value>) {
    let mut fields = Map::new();
    let mut rest = Map::new();
    let mut unnamed: Vec<Value> = Vec::new();
    for (k, v) in data {
        match (k.as_str(), v) {
            ("#attributes", v) => {
                rest.insert(k, v);
            }
            ("Data", Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::Object(mut o) => {
                            let name = o
                                .get("#attributes")
                                .and_then(|a| a.get("Name"))
                                .and_then(Value::as_str)
                                .map(str::to_string);
                            let text = o.remove("#text").unwrap_or(Value::Null);
                            match name {
                                Some(name) => {
                                    fields.insert(name, text);
                                }
                                None => unnamed.push(text),
                            }
                        }
                        other => unnamed.push(other),
                    }
                }
            }
            ("Data", Value::Object(mut o)) => match o.remove("#text") {
                Some(Value::Array(items)) => unnamed.extend(items),
                Some(text) => unnamed.push(text),
                None => {
                    rest.insert(k, Value::Object(o));
                }
            },
            ("Data", v @ (Value::String(_) | Value::Number(_))) => unnamed.push(v),
            (_, v) => {
                fields.insert(k, v);
            }
        }
    }
    if !unnamed.is_empty() {
        let joined = join_unnamed(&unnamed);
        let mut put = |name: String, v: Value| {
            // A named `<Data Name="param1">` or `<Data Name="Data">` keeps
            // the name; the unnamed value stays in `Event.EventData`.
            let target = if fields.contains_key(&name) {
                &mut rest
            } else {
                &mut fields
            };
            target.insert(name, v);
        };
        for (i, v) in unnamed.into_iter().enumerate() {
            put(format!("param{}", i + 1), v);
        }
        put("Data".into(), Value::String(joined));
    }
    (fields, rest)
}

/// Sigma's `Data`: the unnamed `<Data>` values joined with newlines (an
/// empty element as an empty line).
fn join_unnamed<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    values
        .into_iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn normalize_ecs(object: &mut Map<String, Value>) {
    let Some(Value::Object(winlog)) = object.get_mut("winlog") else {
        return;
    };
    let mut envelope = Vec::new();
    for (path, name) in ECS_ENVELOPE {
        if let Some(v) = lookup(winlog, path).cloned() {
            remove_path(winlog, path);
            envelope.push((*path, *name, v));
        }
    }
    let mut moved = Vec::new();
    for key in ["event_data", "user_data"] {
        if matches!(winlog.get(key), Some(Value::Object(_)))
            && let Some(Value::Object(data)) = winlog.remove(key)
        {
            moved.push((key, data));
        }
    }
    // The envelope first, so that it wins over event data of the same name.
    let mut envelope_rest = Vec::new();
    for (path, name, v) in envelope {
        let mut rest = Map::new();
        hoist(object, &mut rest, name.to_string(), v);
        if let Some(v) = rest.remove(name) {
            envelope_rest.push((path, v));
        }
    }
    let mut leftovers = Vec::new();
    for (key, data) in moved {
        let mut rest = Map::new();
        for (k, v) in data {
            hoist(object, &mut rest, k, v);
        }
        if !rest.is_empty() {
            leftovers.push((key, rest));
        }
    }
    if let Some(Value::Object(winlog)) = object.get_mut("winlog") {
        for (key, rest) in leftovers {
            winlog.insert(key.into(), Value::Object(rest));
        }
        // Taken names: the value goes back where it was.
        for (path, v) in envelope_rest {
            insert_path(winlog, path, v);
        }
        if winlog.is_empty() {
            object.remove("winlog");
        }
    }
}

/// Puts `v` at a dotted path, creating objects on the way (an existing
/// non-object on the way keeps `v` under the whole dotted key).
fn insert_path(object: &mut Map<String, Value>, path: &str, v: Value) {
    match path.split_once('.') {
        None => {
            object.insert(path.to_string(), v);
        }
        Some((head, tail)) => {
            let inner = object
                .entry(head.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            match inner {
                Value::Object(inner) => insert_path(inner, tail, v),
                _ => {
                    object.insert(path.to_string(), v);
                }
            }
        }
    }
}

fn normalize_flat(object: &mut Map<String, Value>, notes: &mut Vec<String>) {
    // Sentinel exports suffix a column's name with its type when the table
    // schema changed (`ProcessId_string`, `EventData_dynamic`).
    let suffixed: Vec<String> = object
        .keys()
        .filter(|k| k.ends_with("_string") || k.ends_with("_dynamic"))
        .cloned()
        .collect();
    for key in suffixed {
        let base = key
            .strip_suffix("_string")
            .or_else(|| key.strip_suffix("_dynamic"))
            .unwrap_or(&key)
            .to_string();
        if !base.is_empty()
            && !object.contains_key(&base)
            && let Some(v) = object.remove(&key)
        {
            object.insert(base, v);
        }
    }
    // Winlogbeat 6 and some Logstash pipelines nest the data.
    for key in ["event_data", "user_data", "EventData"] {
        if matches!(object.get(key), Some(Value::Object(_)))
            && let Some(Value::Object(data)) = object.remove(key)
        {
            let mut rest = Map::new();
            for (k, v) in data {
                hoist(object, &mut rest, k, v);
            }
            if !rest.is_empty() {
                object.insert(key.into(), Value::Object(rest));
            }
        }
    }
    if let Some(Value::String(text)) = object.get("EventData") {
        let text = text.clone();
        match expand_event_data(&text) {
            Ok(fields) => {
                object.remove("EventData");
                let mut rest = Map::new();
                for (k, v) in fields {
                    hoist(object, &mut rest, k, v);
                }
                if !rest.is_empty() {
                    object.insert("EventData".into(), Value::Object(rest));
                }
            }
            Err(reason) => notes.push(format!(
                "EventData: {reason}; kept as text, its fields are not mapped"
            )),
        }
    }
}

/// Puts `k: v` at the top level unless the key is taken there (by a
/// different value: an equal one is a duplicate and dropped); otherwise it
/// stays in `rest`, where it came from.
fn hoist(object: &mut Map<String, Value>, rest: &mut Map<String, Value>, k: String, v: Value) {
    match object.get(&k) {
        None => {
            object.insert(k, v);
        }
        Some(existing) if same_value(existing, &v) => {}
        Some(_) => {
            rest.insert(k, v);
        }
    }
}

/// Equal, or equal as text (Sentinel has `LogonType` 3 beside `"3"`).
fn same_value(a: &Value, b: &Value) -> bool {
    a == b || value_text(a).is_some_and(|x| value_text(b).is_some_and(|y| x == y))
}

fn value_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// Sentinel's `EventData` text: JSON (an object, or an array of unnamed
/// values) or an XML fragment of `<Data>` elements. Unnamed values are
/// `param1`… and, joined with newlines, Sigma's `Data` (after the others,
/// so a named `Data` keeps the name).
fn expand_event_data(text: &str) -> Result<Vec<(String, Value)>, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('<') {
        return xml_fragment(trimmed)
            .map(|(leaves, unnamed)| {
                let mut fields: Vec<(String, Value)> = leaves
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                if !unnamed.is_empty() {
                    let joined = unnamed.join("\n");
                    fields.push(("Data".into(), Value::String(joined)));
                }
                fields
            })
            .map_err(|e| format!("invalid XML: {e}"));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => Ok(o.into_iter().collect()),
        Ok(Value::Array(items)) => {
            let joined = join_unnamed(&items);
            let mut fields: Vec<(String, Value)> = items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("param{}", i + 1), v))
                .collect();
            if !fields.is_empty() {
                fields.push(("Data".into(), Value::String(joined)));
            }
            Ok(fields)
        }
        Ok(other) => Err(format!(
            "is a JSON {}, expected an object, an array or XML",
            json_kind(&other)
        )),
        Err(e) => Err(format!("neither JSON nor XML ({e})")),
    }
}

/// One element being read by [`xml_leaves`].
struct Open {
    /// The field name if it turns out to be a leaf.
    name: String,
    text: String,
    has_children: bool,
    /// An unnamed `<Data>`.
    unnamed: bool,
}

/// The leaf elements of an XML fragment as (name, text), in document order:
/// a `<Data Name="X">` is named `X`, an unnamed `<Data>` `param1`…, any
/// other leaf by its element name (UserData, a scheduled task's XML). A name
/// seen again gets `_2`, `_3`… so nothing is lost. An empty root (an
/// `<EventData/>` without data) has no leaves.
fn xml_leaves(text: &str) -> Result<Vec<(String, String)>, String> {
    xml_fragment(text).map(|(leaves, _)| leaves)
}

/// (name, text) of the leaves of an XML fragment.
type Leaves = Vec<(String, String)>;

/// [`xml_leaves`], and the texts of the unnamed `<Data>` leaves in order
/// (for Sigma's `Data`).
fn xml_fragment(text: &str) -> Result<(Leaves, Vec<String>), String> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Open> = Vec::new();
    let mut leaves: Vec<(String, String)> = Vec::new();
    let mut unnamed_texts: Vec<String> = Vec::new();
    let mut unnamed = 0usize;
    let position = |reader: &Reader<&[u8]>| reader.error_position();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("{e} at byte {}", position(&reader)))?;
        match event {
            Event::Start(start) => {
                if let Some(parent) = stack.last_mut() {
                    parent.has_children = true;
                }
                let (name, is_unnamed) = leaf_name(&start, &mut unnamed)
                    .map_err(|e| format!("{e} at byte {}", reader.buffer_position()))?;
                stack.push(Open {
                    name,
                    text: String::new(),
                    has_children: false,
                    unnamed: is_unnamed,
                });
            }
            Event::Empty(start) => {
                let Some(parent) = stack.last_mut() else {
                    continue;
                };
                parent.has_children = true;
                let (name, is_unnamed) = leaf_name(&start, &mut unnamed)
                    .map_err(|e| format!("{e} at byte {}", reader.buffer_position()))?;
                if is_unnamed {
                    unnamed_texts.push(String::new());
                }
                push_leaf(&mut leaves, name, String::new());
            }
            Event::Text(t) => {
                if let Some(open) = stack.last_mut() {
                    let s = t.decode().map_err(|e| e.to_string())?;
                    open.text.push_str(&s);
                }
            }
            Event::CData(t) => {
                if let Some(open) = stack.last_mut() {
                    let s = t.decode().map_err(|e| e.to_string())?;
                    open.text.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(open) = stack.last_mut() {
                    match r.resolve_char_ref() {
                        Ok(Some(ch)) => open.text.push(ch),
                        Ok(None) => {
                            let name = r.decode().map_err(|e| e.to_string())?;
                            match name.as_ref() {
                                "amp" => open.text.push('&'),
                                "lt" => open.text.push('<'),
                                "gt" => open.text.push('>'),
                                "quot" => open.text.push('"'),
                                "apos" => open.text.push('\''),
                                other => {
                                    return Err(format!(
                                        "unknown entity &{other}; at byte {}",
                                        reader.buffer_position()
                                    ));
                                }
                            }
                        }
                        Err(e) => {
                            return Err(format!("{e} at byte {}", reader.buffer_position()));
                        }
                    }
                }
            }
            Event::End(_) => {
                // A root without children is an empty container, not data.
                if let Some(open) = stack.pop()
                    && !open.has_children
                    && !stack.is_empty()
                {
                    if open.unnamed {
                        unnamed_texts.push(open.text.clone());
                    }
                    push_leaf(&mut leaves, open.name, open.text);
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("element `{}` is not closed", open.name));
    }
    Ok((leaves, unnamed_texts))
}

/// The field name of an element: `Data` by its `Name` attribute or as
/// `paramN` (then also `true`: unnamed), anything else by its local name.
fn leaf_name(start: &BytesStart<'_>, unnamed: &mut usize) -> Result<(String, bool), String> {
    let local = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
    if local != "Data" {
        return Ok((local, false));
    }
    match start.try_get_attribute("Name").map_err(|e| e.to_string())? {
        Some(attr) => Ok((
            attr.unescape_value()
                .map_err(|e| e.to_string())?
                .into_owned(),
            false,
        )),
        None => {
            *unnamed += 1;
            Ok((format!("param{unnamed}"), true))
        }
    }
}

fn push_leaf(leaves: &mut Vec<(String, String)>, name: String, text: String) {
    let mut key = name.clone();
    let mut n = 1;
    while leaves.iter().any(|(k, _)| *k == key) {
        n += 1;
        key = format!("{name}_{n}");
    }
    leaves.push((key, text));
}

// ---------------------------------------------------------------------------
// Mapping
// ---------------------------------------------------------------------------

/// The log an event came from, which decides how its event id reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Log {
    Sysmon,
    Security,
    System,
    Application,
    PowerShell,
    WindowsPowerShell,
    TaskScheduler,
    Wmi,
    Other,
}

impl Log {
    /// The log of a channel name (case-insensitive: OTRF has `security`),
    /// with the channel's canonical spelling.
    fn of_channel(channel: &str) -> (Log, Option<&'static str>) {
        match channel.to_ascii_lowercase().as_str() {
            "microsoft-windows-sysmon/operational" => {
                (Log::Sysmon, Some("Microsoft-Windows-Sysmon/Operational"))
            }
            "security" => (Log::Security, Some("Security")),
            "system" => (Log::System, Some("System")),
            "application" => (Log::Application, Some("Application")),
            "microsoft-windows-powershell/operational" => (
                Log::PowerShell,
                Some("Microsoft-Windows-PowerShell/Operational"),
            ),
            "windows powershell" => (Log::WindowsPowerShell, Some("Windows PowerShell")),
            "microsoft-windows-taskscheduler/operational" => (
                Log::TaskScheduler,
                Some("Microsoft-Windows-TaskScheduler/Operational"),
            ),
            "microsoft-windows-wmi-activity/operational" => {
                (Log::Wmi, Some("Microsoft-Windows-WMI-Activity/Operational"))
            }
            _ => (Log::Other, None),
        }
    }

    /// The log of an event without a channel, from its provider.
    fn of_provider(provider: &str) -> Log {
        match provider.to_ascii_lowercase().as_str() {
            "microsoft-windows-sysmon" => Log::Sysmon,
            "microsoft-windows-security-auditing" => Log::Security,
            "service control manager" => Log::System,
            "microsoft-windows-powershell" => Log::PowerShell,
            "powershell" => Log::WindowsPowerShell,
            _ => Log::Other,
        }
    }

    fn product(self) -> Option<&'static str> {
        Some(match self {
            Log::Sysmon => "Sysmon",
            Log::Security => "Windows Security",
            Log::System => "Windows System",
            Log::Application => "Windows Application",
            Log::PowerShell | Log::WindowsPowerShell => "PowerShell",
            Log::TaskScheduler => "Windows Task Scheduler",
            Log::Wmi => "Windows WMI",
            Log::Other => return None,
        })
    }
}

/// The first of `paths` present, with the path it was found at.
fn first_text(d: &Draft, paths: &[&'static str]) -> Option<(&'static str, String)> {
    paths.iter().find_map(|p| {
        d.field_str(p)
            .filter(|s| !s.trim().is_empty() && s != "-")
            .map(|s| (*p, s))
    })
}

fn map_event(d: &mut Draft) {
    if let Some(Value::Array(notes)) = d.remove(PARSE_NOTES) {
        for n in notes {
            if let Value::String(n) = n {
                d.note(n);
            }
        }
    }

    // Envelope: for evtx-dump and Winlogbeat under Sigma's names, read
    // first (an event-data `Hostname` or `SourceName` is not the envelope).
    let structured = d.remove(ENVELOPE_MARK).is_some();
    let envelope = |d: &Draft, own: &[&'static str], paths: &[&'static str]| {
        (if structured { first_text(d, own) } else { None }).or_else(|| first_text(d, paths))
    };
    let channel = envelope(d, ENVELOPE_CHANNEL, CHANNEL_PATHS);
    let mut provider = envelope(d, ENVELOPE_PROVIDER, PROVIDER_PATHS);
    let event_id = envelope(d, ENVELOPE_EVENT_ID, EVENT_ID_PATHS);
    if !structured
        && let Some((path, p)) = &mut provider
        && *path != "Provider_Name"
        && d.field("Provider_Name").is_none()
    {
        // Sigma's name for the provider (flat shapes: `SourceName`,
        // `ProviderName`, …); the copy is what a column may take, so the
        // shipper's own field stays under its name.
        d.fields
            .insert("Provider_Name".into(), Value::String(p.clone()));
        *path = "Provider_Name";
    }
    let (mut log, canonical) = match &channel {
        Some((_, c)) => Log::of_channel(c),
        None => (Log::Other, None),
    };
    if log == Log::Other
        && let Some((_, p)) = &provider
    {
        log = Log::of_provider(p);
    }
    let id: Option<u32> = event_id.as_ref().and_then(|(_, s)| s.trim().parse().ok());
    if channel.is_none() && log == Log::Other && id.is_some_and(|i| (4608..=6424).contains(&i)) {
        // Sentinel rows whose envelope was cut (OTRF has one) are Security
        // audit events by their id range.
        log = Log::Security;
        d.note("no channel: assumed Security from the event id (4608-6424)");
    }
    match &channel {
        Some((path, c)) => {
            let name = canonical.map_or_else(|| c.clone(), str::to_string);
            d.remove(path);
            d.set_str(col::METADATA_LOG_NAME, name);
        }
        None if log == Log::Security => d.set_str(col::METADATA_LOG_NAME, "Security"),
        None => d.note("no channel (Channel, winlog.channel, Event.System.Channel)"),
    }
    match (log.product(), &provider) {
        (Some(product), _) => d.set_str(col::METADATA_PRODUCT, product),
        (None, Some((path, p))) => {
            let p = p.clone();
            d.remove(path);
            d.set_str(col::METADATA_PRODUCT, p);
        }
        (None, None) => d.set_str(col::METADATA_PRODUCT, "Windows"),
    }
    match &event_id {
        Some((path, text)) => {
            let text = text.trim().to_string();
            d.remove(path);
            if id.is_none() {
                d.note(format!("event id `{text}` is not a number"));
            }
            d.set_str(col::EVENT_CODE, text);
        }
        None => d.note(
            "no event id (EventID, winlog.event_id, Event.System.EventID): not recognizable as a Windows event",
        ),
    }
    take_time(d);
    if !(structured && d.take(col::DEVICE_HOSTNAME, ENVELOPE_COMPUTER)) {
        d.take(col::DEVICE_HOSTNAME, COMPUTER_PATHS);
    }
    if let Some(severity) = severity(d) {
        d.set_int(col::SEVERITY_ID, severity);
    }

    // Event data, by log and id.
    let id = id.unwrap_or(0);
    match log {
        Log::Sysmon => map_sysmon(d, id),
        Log::Security => map_security(d, id),
        Log::System => map_system(d, id),
        Log::PowerShell => map_powershell(d, id),
        Log::WindowsPowerShell => map_windows_powershell(d, id),
        Log::TaskScheduler => map_task_scheduler(d, id),
        Log::Application | Log::Wmi | Log::Other => {}
    }
    map_common(d);
    if !d.is_set(col::STATUS) {
        status_from_envelope(d);
    }
}

/// The event time (see the module doc for the order).
fn take_time(d: &mut Draft) {
    for path in TIME_PATHS {
        let zoneless = *path == "EventTime"
            && d.field_str(path)
                .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s.trim()).is_err());
        if d.take(col::TIME, &[*path]) {
            if zoneless {
                d.note("time: from NXLog EventTime, which has no zone; read as UTC");
            }
            return;
        }
    }
}

/// OCSF severity from the Windows level (0 LogAlways, 1 Critical, 2 Error,
/// 3 Warning, 4 Information, 5 Verbose, or their names), else NXLog's
/// `SeverityValue` (1 DEBUG … 5 CRITICAL).
fn severity(d: &Draft) -> Option<i64> {
    for path in LEVEL_PATHS {
        if let Some(v) = d.field_str(path)
            && let Some(s) = level_severity(&v)
        {
            return Some(s);
        }
    }
    match d.field_str("SeverityValue")?.trim() {
        "1" | "2" => Some(1),
        "3" => Some(3),
        "4" => Some(4),
        "5" => Some(5),
        _ => None,
    }
}

fn level_severity(level: &str) -> Option<i64> {
    match level.trim().to_ascii_lowercase().as_str() {
        "0" | "4" | "5" | "information" | "informational" | "info" | "verbose" | "logalways" => {
            Some(1)
        }
        "3" | "warning" | "warn" => Some(3),
        "2" | "error" => Some(4),
        "1" | "critical" => Some(5),
        _ => None,
    }
}

/// `DOMAIN\name` as (domain, name).
fn split_user(user: &str) -> (Option<&str>, &str) {
    match user.split_once('\\') {
        Some((domain, name)) if !name.is_empty() => (Some(domain).filter(|d| !d.is_empty()), name),
        _ => (None, user),
    }
}

/// Sets the actor (or target) user from a `DOMAIN\name` field, leaving the
/// field in place (derived, see the module doc).
fn set_user_from(d: &mut Draft, path: &str, name_col: &str, domain_col: &str) {
    if d.is_set(name_col) {
        return;
    }
    let Some(user) = d
        .field_str(path)
        .filter(|u| !u.trim().is_empty() && u != "-")
    else {
        return;
    };
    let (domain, name) = split_user(&user);
    d.set_str(name_col, name);
    if let Some(domain) = domain
        && !d.is_set(domain_col)
    {
        d.set_str(domain_col, domain);
    }
}

fn map_sysmon(d: &mut Draft, id: u32) {
    let class = match id {
        1 => Some((1007, 1)),
        2 => Some((1001, 6)),
        3 => Some((4001, 1)),
        5 => Some((1007, 2)),
        6 | 7 => Some((1005, 1)),
        8 => Some((1007, 4)),
        9 => Some((1001, 2)),
        10 => Some((1007, 3)),
        11 | 15 | 29 => Some((1001, 1)),
        12..=14 => Some(registry_class(d, id)),
        22 => Some((4003, 1)),
        23 | 26 => Some((1001, 4)),
        27 => Some((1001, 1)),
        28 => Some((1001, 4)),
        _ => None,
    };
    if let Some((class, activity)) = class {
        d.set_class(class, activity);
    }
    if matches!(id, 27 | 28) {
        // File block executable / shredding: Sysmon prevented the action.
        d.set_str(col::ACTION, "blocked");
    }
    if matches!(id, 8 | 10) {
        d.take(col::PROCESS_PATH, &["SourceImage"]);
        d.take(col::PROCESS_PID, &["SourceProcessId"]);
        d.take(
            col::PROCESS_UID,
            &["SourceProcessGuid", "SourceProcessGUID"],
        );
        set_user_from(
            d,
            "SourceUser",
            col::ACTOR_USER_NAME,
            col::ACTOR_USER_DOMAIN,
        );
    }
    d.take(col::PROCESS_PATH, &["Image"]);
    d.take(col::PROCESS_PID, &["ProcessId"]);
    d.take(col::PROCESS_UID, &["ProcessGuid"]);
    set_user_from(d, "User", col::ACTOR_USER_NAME, col::ACTOR_USER_DOMAIN);
    match id {
        1 => {
            d.take(col::PROCESS_CMD_LINE, &["CommandLine"]);
            d.take(col::PROCESS_PARENT_PATH, &["ParentImage"]);
            d.take(col::PROCESS_PARENT_PID, &["ParentProcessId"]);
            d.take(col::PROCESS_PARENT_CMD_LINE, &["ParentCommandLine"]);
        }
        3 => {
            d.take(col::SRC_IP, &["SourceIp"]);
            d.take(col::SRC_PORT, &["SourcePort"]);
            d.take(col::SRC_HOSTNAME, &["SourceHostname"]);
            d.take(col::DST_IP, &["DestinationIp"]);
            d.take(col::DST_PORT, &["DestinationPort"]);
            d.take(col::DST_HOSTNAME, &["DestinationHostname"]);
            set_protocol(d, "Protocol");
            match d.field_str("Initiated").as_deref().map(str::trim) {
                Some("true") => d.set_str(col::NETWORK_DIRECTION, "outbound"),
                Some("false") => d.set_str(col::NETWORK_DIRECTION, "inbound"),
                _ => {}
            }
        }
        6 | 7 => {
            d.take(col::FILE_PATH, &["ImageLoaded"]);
        }
        9 => {
            d.take(col::FILE_PATH, &["Device"]);
        }
        12..=14 => {
            d.take(col::REGISTRY_KEY, &["TargetObject"]);
            if id == 13 {
                d.take(col::REGISTRY_VALUE, &["Details"]);
            }
        }
        22 => {
            d.take(col::DNS_QUERY, &["QueryName"]);
            d.take(col::DNS_ANSWER, &["QueryResults"]);
            if let Some(code) = d.field_str("QueryStatus") {
                let code = code.trim();
                d.set_str(col::DNS_RCODE, dns_rcode(code));
                d.set_str(col::STATUS, if code == "0" { "success" } else { "failure" });
            }
        }
        _ => {}
    }
    d.take(col::FILE_PATH, &["TargetFilename"]);
    if let Some(hashes) = d.field_str("Hashes") {
        // Derived: `Hashes` stays (Sigma rules match `IMPHASH=` in it).
        d.take_hashes(&hashes);
    }
}

/// Sysmon 12/13/14 by `EventType` (NXLog renames Sysmon's own to
/// `EventTypeOrignal`, keeping its `EventType` for the record type).
fn registry_class(d: &Draft, id: u32) -> (i64, i64) {
    let kind = ["EventType", "EventTypeOrignal", "EventTypeOriginal"]
        .iter()
        .filter_map(|p| d.field_str(p))
        .find(|t| {
            matches!(
                t.as_str(),
                "CreateKey"
                    | "DeleteKey"
                    | "CreateValue"
                    | "DeleteValue"
                    | "SetValue"
                    | "RenameKey"
            )
        });
    match (kind.as_deref(), id) {
        (Some("CreateKey"), _) => (201_001, 1),
        (Some("DeleteKey"), _) => (201_001, 4),
        (Some("RenameKey"), _) | (None, 14) => (201_001, 5),
        (Some("DeleteValue"), _) => (201_002, 4),
        (Some("CreateValue" | "SetValue"), _) | (None, 13) => (201_002, 2),
        _ => (201_001, 1),
    }
}

/// Sysmon's DNS query status (a Win32/DNS error code) as a response code.
fn dns_rcode(status: &str) -> String {
    match status {
        "0" => "NOERROR".into(),
        "9001" => "FORMERR".into(),
        "9002" => "SERVFAIL".into(),
        "9003" => "NXDOMAIN".into(),
        "9004" => "NOTIMP".into(),
        "9005" => "REFUSED".into(),
        other => other.to_string(),
    }
}

/// An IANA protocol number (Security 5156) or name (Sysmon) as a name.
fn set_protocol(d: &mut Draft, path: &str) {
    let Some(p) = d.field_str(path) else {
        return;
    };
    let name = match p.trim() {
        "1" => "icmp".to_string(),
        "2" => "igmp".to_string(),
        "6" => "tcp".to_string(),
        "17" => "udp".to_string(),
        "47" => "gre".to_string(),
        "50" => "esp".to_string(),
        "58" => "ipv6-icmp".to_string(),
        other => other.to_ascii_lowercase(),
    };
    if p.trim().parse::<u32>().is_err() {
        d.remove(path);
    }
    d.set_str(col::NETWORK_PROTOCOL, name);
}

fn map_security(d: &mut Draft, id: u32) {
    let class = match id {
        4624 | 4625 | 4648 => Some((3002, 1)),
        4634 | 4647 => Some((3002, 2)),
        4768 => Some((3002, 3)),
        4769 => Some((3002, 4)),
        4770 => Some((3002, 5)),
        4771 => Some((3002, 6)),
        4776 => Some((3002, 99)),
        4672 => Some((3003, 1)),
        4688 => Some((1007, 1)),
        4689 => Some((1007, 2)),
        4697 => Some((201_004, 1)),
        4698 => Some((1006, 1)),
        4699 => Some((1006, 3)),
        4700 => Some((1006, 4)),
        4701 => Some((1006, 5)),
        4702 => Some((1006, 2)),
        4720 => Some((3001, 1)),
        4722 => Some((3001, 2)),
        4723 => Some((3001, 3)),
        4724 => Some((3001, 4)),
        4725 => Some((3001, 5)),
        4726 => Some((3001, 6)),
        4740 => Some((3001, 9)),
        4738 | 4767 | 4781 => Some((3001, 99)),
        5140 => Some((4006, 99)),
        5145 => Some((4006, 2)),
        5156 => Some((4001, 1)),
        5157 | 5152 => Some((4001, 5)),
        5158 => Some((4001, 99)),
        _ => None,
    };
    if let Some((class, activity)) = class {
        d.set_class(class, activity);
    }
    match id {
        4624 | 4634 | 4647 | 4648 | 4672 => d.set_str(col::STATUS, "success"),
        4625 => {
            d.set_str(col::STATUS, "failure");
            set_status_detail(d);
        }
        4768..=4771 | 4776 => {
            if let Some(code) = d.field_str("Status") {
                let ok = parse_int(&code) == Some(0);
                d.set_str(col::STATUS, if ok { "success" } else { "failure" });
                if !ok {
                    set_status_detail(d);
                }
            }
        }
        _ => {}
    }
    match id {
        4672 => {
            // The Subject of 4672 is the account that just logged on.
            d.take(col::USER_NAME, &["SubjectUserName"]);
            d.take(col::USER_DOMAIN, &["SubjectDomainName"]);
        }
        4688 => {
            d.take(col::PROCESS_PID, &["NewProcessId"]);
            d.take(col::PROCESS_PATH, &["NewProcessName"]);
            d.take(col::PROCESS_CMD_LINE, &["CommandLine"]);
            d.take(col::PROCESS_PARENT_PID, &["ProcessId"]);
            d.take(col::PROCESS_PARENT_PATH, &["ParentProcessName"]);
        }
        4648 => {
            d.take(col::DST_HOSTNAME, &["TargetServerName"]);
        }
        4697 => {
            d.take(col::PROCESS_CMD_LINE, &["ServiceFileName"]);
        }
        4698..=4702 => set_task_command(d, "TaskContent"),
        4768..=4771 => {
            d.set_str(col::AUTH_PROTOCOL, "Kerberos");
        }
        4776 => {
            d.set_str(col::AUTH_PROTOCOL, "NTLM");
            d.take(col::SRC_HOSTNAME, &["Workstation"]);
        }
        5140 | 5145 => {
            let share = d.field_str("ShareName").filter(|s| !s.is_empty());
            let relative = d
                .field_str("RelativeTargetName")
                .filter(|s| !s.is_empty() && s != "-");
            match (share, relative) {
                (Some(share), Some(rel)) => {
                    let sep = if share.ends_with('\\') { "" } else { "\\" };
                    d.set_str(col::FILE_PATH, format!("{share}{sep}{rel}"));
                }
                (Some(share), None) => d.set_str(col::FILE_PATH, share),
                (None, Some(rel)) => d.set_str(col::FILE_PATH, rel),
                (None, None) => {}
            }
        }
        5152 | 5156..=5158 => {
            d.take(col::SRC_IP, &["SourceAddress"]);
            d.take(col::SRC_PORT, &["SourcePort"]);
            d.take(col::DST_IP, &["DestAddress"]);
            d.take(col::DST_PORT, &["DestPort"]);
            d.take(col::PROCESS_PATH, &["Application"]);
            // 5156's data field is `ProcessID`; elsewhere NXLog uses that
            // name for the logging process, so only here.
            d.take(col::PROCESS_PID, &["ProcessId", "ProcessID"]);
            set_protocol(d, "Protocol");
            match d.field_str("Direction").as_deref().map(str::trim) {
                Some("%%14592") => d.set_str(col::NETWORK_DIRECTION, "inbound"),
                Some("%%14593") => d.set_str(col::NETWORK_DIRECTION, "outbound"),
                Some(other) if !other.is_empty() => {
                    d.set_str(col::NETWORK_DIRECTION, other.to_ascii_lowercase())
                }
                _ => {}
            }
            d.set_str(
                col::ACTION,
                if matches!(id, 5152 | 5157) {
                    "denied"
                } else {
                    "allowed"
                },
            );
        }
        _ => {}
    }
    d.take(col::LOGON_TYPE, &["LogonType"]);
    d.take(
        col::AUTH_PROTOCOL,
        &["AuthenticationPackageName", "LogonProcessName"],
    );
    d.take(col::SRC_HOSTNAME, &["WorkstationName"]);
    d.take(col::PROCESS_PID, &["ProcessId"]);
    d.take(col::PROCESS_PATH, &["ProcessName"]);
}

/// `Status`/`SubStatus` of a failed logon, with the common codes named.
fn set_status_detail(d: &mut Draft) {
    let mut parts = Vec::new();
    for key in ["Status", "SubStatus"] {
        if let Some(code) = d.field_str(key).filter(|c| !c.is_empty() && c != "-") {
            let code = code.trim().to_ascii_lowercase();
            match ntstatus_name(&code) {
                Some(name) => parts.push(format!("{key}={code} ({name})")),
                None => parts.push(format!("{key}={code}")),
            }
        }
    }
    if let Some(reason) = d
        .field_str("FailureReason")
        .filter(|r| !r.is_empty() && r != "-")
    {
        parts.push(format!("FailureReason={}", reason.trim()));
    }
    if !parts.is_empty() {
        d.set_str(col::STATUS_DETAIL, parts.join(" "));
    }
}

/// Names of the NTSTATUS / Kerberos codes failed logons carry most.
fn ntstatus_name(code: &str) -> Option<&'static str> {
    Some(match code {
        "0xc000006d" => "bad user name or authentication information",
        "0xc000006a" => "wrong password",
        "0xc0000064" => "no such user",
        "0xc000006e" => "account restriction",
        "0xc000006f" => "logon outside allowed hours",
        "0xc0000070" => "workstation not allowed",
        "0xc0000071" => "password expired",
        "0xc0000072" => "account disabled",
        "0xc0000133" => "clock skew",
        "0xc000015b" => "logon type not granted",
        "0xc0000193" => "account expired",
        "0xc0000224" => "password must change",
        "0xc0000234" => "account locked out",
        "0xc0000413" => "authentication firewall",
        "0x6" => "Kerberos: unknown principal",
        "0x12" => "Kerberos: account disabled, expired or locked",
        "0x17" => "Kerberos: password expired",
        "0x18" => "Kerberos: pre-authentication failed (wrong password)",
        "0x25" => "Kerberos: clock skew",
        _ => return None,
    })
}

/// A scheduled task's command line from its XML definition (`Exec`
/// `Command` + `Arguments`); the XML stays in `unmapped`.
fn set_task_command(d: &mut Draft, path: &str) {
    let Some(xml) = d
        .field_str(path)
        .filter(|x| x.trim_start().starts_with('<'))
    else {
        return;
    };
    match xml_leaves(xml.trim_start()) {
        Ok(leaves) => {
            let get = |name: &str| {
                leaves
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.trim().to_string())
                    .filter(|v| !v.is_empty())
            };
            match (get("Command"), get("Arguments")) {
                (Some(cmd), Some(args)) => {
                    d.set_str(col::PROCESS_CMD_LINE, format!("{cmd} {args}"))
                }
                (Some(cmd), None) => d.set_str(col::PROCESS_CMD_LINE, cmd),
                _ => {}
            }
        }
        Err(e) => d.note(format!("{path}: invalid XML: {e}")),
    }
}

fn map_system(d: &mut Draft, id: u32) {
    match id {
        7045 => {
            d.set_class(201_004, 1);
            d.take(col::PROCESS_CMD_LINE, &["ImagePath"]);
        }
        7040 => d.set_class(201_004, 2),
        _ => {}
    }
}

/// `Key = Value` / `Key=Value` lines of PowerShell's context text, keys
/// compared without spaces and case.
fn context_value(text: &str, key: &str) -> Option<String> {
    text.split('\n').find_map(|line| {
        let (k, v) = line.split_once('=')?;
        let k: String = k.chars().filter(|c| !c.is_whitespace()).collect();
        k.eq_ignore_ascii_case(key)
            .then(|| v.trim().to_string())
            .filter(|v| !v.is_empty())
    })
}

/// Host application (the PowerShell process's command line), user and
/// script from the context text of 4103/400/800, wherever the shape put it.
fn map_powershell_context(d: &mut Draft, sources: &[&str]) {
    let texts: Vec<String> = sources.iter().filter_map(|p| d.field_str(p)).collect();
    let find = |key: &str| texts.iter().find_map(|t| context_value(t, key));
    if let Some(host) = find("HostApplication") {
        d.set_str(col::PROCESS_CMD_LINE, host);
    }
    if !d.is_set(col::ACTOR_USER_NAME)
        && let Some(user) = find("User").or_else(|| find("UserId"))
    {
        let (domain, name) = split_user(&user);
        d.set_str(col::ACTOR_USER_NAME, name);
        if let Some(domain) = domain {
            d.set_str(col::ACTOR_USER_DOMAIN, domain);
        }
    }
    if let Some(script) = find("ScriptName") {
        d.set_str(col::FILE_PATH, script);
    }
}

fn map_powershell(d: &mut Draft, id: u32) {
    match id {
        4103 => {
            d.set_class(1009, 1);
            map_powershell_context(d, &["ContextInfo", "Message", "message"]);
            d.take(col::MESSAGE, MESSAGE_PATHS);
            d.take(col::MESSAGE, &["Payload"]);
        }
        4104 => {
            d.set_class(1009, 1);
            d.take(col::MESSAGE, &["ScriptBlockText"]);
            d.take(col::FILE_PATH, &["Path"]);
        }
        _ => {}
    }
    // NXLog's envelope names the user running PowerShell.
    if !d.is_set(col::ACTOR_USER_NAME)
        && let Some(name) = d.field_str("AccountName").filter(|n| !n.is_empty())
    {
        d.set_str(col::ACTOR_USER_NAME, name);
        if let Some(domain) = d.field_str("Domain") {
            d.set_str(col::ACTOR_USER_DOMAIN, domain);
        }
    }
}

fn map_windows_powershell(d: &mut Draft, id: u32) {
    let class = match id {
        400 | 800 => Some((1009, 1)),
        // Engine stopped, provider started: no script ran, but without a
        // class the command line found would make them look like launches.
        403 | 600 => Some((1009, 99)),
        _ => None,
    };
    if let Some((class, activity)) = class {
        d.set_class(class, activity);
    }
    if matches!(id, 400 | 403 | 600 | 800) {
        map_powershell_context(
            d,
            &["param3", "param2", "param1", "Data", "Message", "message"],
        );
    }
}

fn map_task_scheduler(d: &mut Draft, id: u32) {
    let class = match id {
        106 => Some((1006, 1)),
        140 => Some((1006, 2)),
        141 => Some((1006, 3)),
        200 | 129 => Some((1006, 6)),
        _ => None,
    };
    if let Some((class, activity)) = class {
        d.set_class(class, activity);
    }
    set_user_from(
        d,
        "UserContext",
        col::ACTOR_USER_NAME,
        col::ACTOR_USER_DOMAIN,
    );
    set_user_from(d, "UserName", col::ACTOR_USER_NAME, col::ACTOR_USER_DOMAIN);
}

/// Fields that mean the same in every log, and ECS's copies; none of these
/// replaces a column the log-specific mapping set.
fn map_common(d: &mut Draft) {
    d.take(col::ACTOR_USER_NAME, &["SubjectUserName"]);
    d.take(col::ACTOR_USER_DOMAIN, &["SubjectDomainName"]);
    d.take(col::USER_NAME, &["TargetUserName"]);
    d.take(col::USER_DOMAIN, &["TargetDomainName"]);
    d.take(col::SRC_IP, &["IpAddress", "source.ip"]);
    d.take(col::SRC_PORT, &["IpPort", "source.port"]);
    d.take(col::DST_IP, &["destination.ip"]);
    d.take(col::DST_PORT, &["destination.port"]);
    d.take(col::PROCESS_PATH, &["Image", "process.executable"]);
    d.take(col::PROCESS_PID, &["ProcessId", "process.pid"]);
    d.take(col::PROCESS_UID, &["ProcessGuid", "process.entity_id"]);
    d.take(
        col::PROCESS_CMD_LINE,
        &["CommandLine", "process.command_line"],
    );
    d.take(
        col::PROCESS_PARENT_PATH,
        &["ParentImage", "process.parent.executable"],
    );
    d.take(
        col::PROCESS_PARENT_PID,
        &["ParentProcessId", "process.parent.pid"],
    );
    d.take(
        col::PROCESS_PARENT_CMD_LINE,
        &["ParentCommandLine", "process.parent.command_line"],
    );
    d.take(col::FILE_PATH, &["TargetFilename", "file.path"]);
    d.take(col::REGISTRY_KEY, &["TargetObject", "registry.path"]);
    d.take(col::DNS_QUERY, &["dns.question.name"]);
    d.take(col::MESSAGE, MESSAGE_PATHS);
    if let Some(hashes) = d.field_str("Hashes") {
        // Derived: `Hashes` stays. Taking every hash here also keeps
        // `Draft::finish` from removing it (it only removes `Hashes` when it
        // fills a hash column itself).
        d.take_hashes(&hashes);
    }
}

/// Outcome from the envelope when the event id did not give one: the audit
/// keyword bits, NXLog's `EventType`, or ECS `event.outcome`.
fn status_from_envelope(d: &mut Draft) {
    let mut outcome = None;
    for path in KEYWORD_PATHS {
        if let Some(v) = d.field(path) {
            outcome = keyword_outcome(v);
            if outcome.is_some() {
                break;
            }
        }
    }
    if outcome.is_none() {
        outcome = match d.field_str("EventType").as_deref() {
            Some("AUDIT_SUCCESS") => Some("success"),
            Some("AUDIT_FAILURE") => Some("failure"),
            _ => None,
        };
    }
    if outcome.is_none() {
        outcome = match d.field_str("event.outcome").as_deref() {
            Some("success") => Some("success"),
            Some("failure") => Some("failure"),
            _ => None,
        };
    }
    if let Some(outcome) = outcome {
        d.set_str(col::STATUS, outcome);
    }
}

/// Audit success/failure from keywords: a number (NXLog prints them
/// signed), hex text, or Winlogbeat's names.
fn keyword_outcome(v: &Value) -> Option<&'static str> {
    let bits = match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_i64().map(|i| i as u64))?,
        Value::String(s) => {
            let s = s.trim();
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16).ok()?,
                None => s
                    .parse::<u64>()
                    .ok()
                    .or_else(|| s.parse::<i64>().ok().map(|i| i as u64))?,
            }
        }
        Value::Array(names) => {
            return names.iter().find_map(|n| match n.as_str() {
                Some("Audit Success") => Some("success"),
                Some("Audit Failure") => Some("failure"),
                _ => None,
            });
        }
        _ => return None,
    };
    if bits & AUDIT_FAILURE != 0 {
        Some("failure")
    } else if bits & AUDIT_SUCCESS != 0 {
        Some("success")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::draft::{EventRow, MAX_EVENT_BYTES, NOTES_KEY};
    use crate::parse::{Decoded, Decoder, SourceType};
    use std::collections::BTreeMap;

    fn prov() -> Provenance {
        Provenance {
            topic: "t".into(),
            partition: Some(0),
            offset: Some(1),
            ingest_time_micros: 1_800_000_000_000_000,
        }
    }

    /// Decodes one input: (events, dead letter errors).
    fn decode(input: &[u8]) -> (Vec<EventRow>, Vec<String>) {
        let mut decoder = Decoder::for_type(SourceType::Windows);
        let mut out = Vec::new();
        decoder.decode(input, &prov(), &mut out);
        decoder.flush(&prov(), &mut out);
        let mut events = Vec::new();
        let mut dead = Vec::new();
        for d in out {
            match d {
                Decoded::Event(row) => events.push(row),
                Decoded::Dead(letter) => dead.push(letter.error),
            }
        }
        (events, dead)
    }

    fn one(input: &str) -> EventRow {
        let (events, dead) = decode(input.as_bytes());
        assert!(dead.is_empty(), "dead letters: {dead:?}");
        assert_eq!(events.len(), 1, "{input}");
        events.into_iter().next().expect("one event")
    }

    fn s<'a>(row: &'a EventRow, column: &str) -> Option<&'a str> {
        row.get_str(column)
    }

    fn unmapped(row: &EventRow) -> Value {
        serde_json::from_str(s(row, col::UNMAPPED).expect("unmapped")).expect("json")
    }

    fn notes(row: &EventRow) -> String {
        unmapped(row)
            .get(NOTES_KEY)
            .map(Value::to_string)
            .unwrap_or_default()
    }

    fn class(row: &EventRow) -> (Option<i64>, Option<i64>) {
        (row.get_int(col::CLASS_UID), row.get_int(col::ACTIVITY_ID))
    }

    // --- Shapes -------------------------------------------------------------

    #[test]
    fn flat_sysmon_process_creation() {
        let row = one(
            r#"{"SourceName":"Microsoft-Windows-Sysmon","Level":"4","Keywords":"0x8000000000000000","Channel":"Microsoft-Windows-Sysmon/Operational","Hostname":"WORKSTATION5","TimeCreated":"2021-06-11T09:07:15.635Z","@timestamp":"2021-06-11T09:07:15.635Z","EventID":1,"Message":"Process Create:","RuleName":"-","UtcTime":"2021-06-12 01:07:15.633","ProcessGuid":"{e2c04bb9-08c3-60c4-1c17-400100000000}","ProcessId":"2164","Image":"C:\\Windows\\System32\\PING.EXE","CommandLine":"ping  -n 3 127.0.0.1 ","User":"WORKSTATION5\\APT-Simulator","Hashes":"SHA1=565505D129A019780E351E615A29722AEF479380,MD5=F3F3D2B0196B9A00E91838888E76B5F6,SHA256=E9EF80A7849F1CF02CB5FB8396FF9E270CB9006F30294A52C6490A72B373BE00,IMPHASH=8C3B","ParentProcessGuid":"{e2c04bb9-d0f0-60c3-48da-ec0000000000}","ParentProcessId":"5632","ParentImage":"C:\\Windows\\System32\\cmd.exe","ParentCommandLine":"\"C:\\Windows\\system32\\cmd.exe\" "}"#,
        );
        assert_eq!(class(&row), (Some(1007), Some(1)));
        assert_eq!(row.get_int(col::TYPE_UID), Some(100_701));
        assert_eq!(s(&row, col::METADATA_PRODUCT), Some("Sysmon"));
        assert_eq!(
            s(&row, col::METADATA_LOG_NAME),
            Some("Microsoft-Windows-Sysmon/Operational")
        );
        assert_eq!(s(&row, col::EVENT_CODE), Some("1"));
        assert_eq!(s(&row, col::DEVICE_HOSTNAME), Some("WORKSTATION5"));
        assert_eq!(
            row.time(),
            1_623_402_435_635_000,
            "TimeCreated, not UtcTime"
        );
        assert_eq!(row.get_int(col::SEVERITY_ID), Some(1));
        assert_eq!(
            s(&row, col::PROCESS_PATH),
            Some("C:\\Windows\\System32\\PING.EXE")
        );
        assert_eq!(s(&row, col::PROCESS_NAME), Some("PING.EXE"));
        assert_eq!(row.get_int(col::PROCESS_PID), Some(2164));
        assert_eq!(
            s(&row, col::PROCESS_CMD_LINE),
            Some("ping  -n 3 127.0.0.1 ")
        );
        assert_eq!(
            s(&row, col::PROCESS_UID),
            Some("{e2c04bb9-08c3-60c4-1c17-400100000000}")
        );
        assert_eq!(row.get_int(col::PROCESS_PARENT_PID), Some(5632));
        assert_eq!(s(&row, col::PROCESS_PARENT_NAME), Some("cmd.exe"));
        assert_eq!(
            s(&row, col::PROCESS_PARENT_CMD_LINE),
            Some("\"C:\\Windows\\system32\\cmd.exe\" ")
        );
        assert_eq!(s(&row, col::ACTOR_USER_NAME), Some("APT-Simulator"));
        assert_eq!(s(&row, col::ACTOR_USER_DOMAIN), Some("WORKSTATION5"));
        assert_eq!(
            s(&row, col::HASH_MD5),
            Some("f3f3d2b0196b9a00e91838888e76b5f6")
        );
        assert_eq!(
            s(&row, col::HASH_SHA1),
            Some("565505d129a019780e351e615a29722aef479380")
        );
        assert_eq!(s(&row, col::MESSAGE), Some("Process Create:"));
        let u = unmapped(&row);
        assert_eq!(u["UtcTime"], "2021-06-12 01:07:15.633");
        assert_eq!(
            u["ParentProcessGuid"],
            "{e2c04bb9-d0f0-60c3-48da-ec0000000000}"
        );
        // `Hashes` is derived from, so it stays verbatim; `Image` was moved.
        assert_eq!(
            u["Hashes"],
            "SHA1=565505D129A019780E351E615A29722AEF479380,MD5=F3F3D2B0196B9A00E91838888E76B5F6,SHA256=E9EF80A7849F1CF02CB5FB8396FF9E270CB9006F30294A52C6490A72B373BE00,IMPHASH=8C3B"
        );
        assert!(u.get("Image").is_none());
    }

    #[test]
    fn winlogbeat_ecs_security_logon() {
        let row = one(
            r#"{"@timestamp":"2024-03-05T07:30:00.123Z","message":"An account was successfully logged on.","event":{"code":"4624","kind":"event","outcome":"success"},"host":{"name":"dc01.corp.local"},"log":{"level":"information"},"winlog":{"channel":"Security","event_id":4624,"provider_name":"Microsoft-Windows-Security-Auditing","computer_name":"DC01.corp.local","record_id":99,"keywords":["Audit Success"],"event_data":{"SubjectUserName":"DC01$","SubjectDomainName":"CORP","TargetUserName":"alice","TargetDomainName":"CORP","LogonType":"3","AuthenticationPackageName":"Kerberos","LogonProcessName":"Kerberos","IpAddress":"10.0.0.5","IpPort":"50123","WorkstationName":"-","ProcessId":"0x0","ProcessName":"-"}}}"#,
        );
        assert_eq!(class(&row), (Some(3002), Some(1)));
        assert_eq!(s(&row, col::METADATA_PRODUCT), Some("Windows Security"));
        assert_eq!(s(&row, col::METADATA_LOG_NAME), Some("Security"));
        assert_eq!(s(&row, col::EVENT_CODE), Some("4624"));
        assert_eq!(s(&row, col::DEVICE_HOSTNAME), Some("DC01.corp.local"));
        assert_eq!(s(&row, col::USER_NAME), Some("alice"));
        assert_eq!(s(&row, col::USER_DOMAIN), Some("CORP"));
        assert_eq!(s(&row, col::ACTOR_USER_NAME), Some("DC01$"));
        assert_eq!(s(&row, col::LOGON_TYPE), Some("3"));
        assert_eq!(s(&row, col::AUTH_PROTOCOL), Some("Kerberos"));
        assert_eq!(s(&row, col::SRC_IP), Some("10.0.0.5"));
        assert_eq!(row.get_int(col::SRC_PORT), Some(50123));
        assert_eq!(s(&row, col::SRC_HOSTNAME), None, "`-` is none");
        assert_eq!(s(&row, col::STATUS), Some("success"));
        assert_eq!(row.get_int(col::SEVERITY_ID), Some(1));
        assert_eq!(
            s(&row, col::MESSAGE),
            Some("An account was successfully logged on.")
        );
        assert_eq!(row.time(), 1_709_623_800_123_000);
        let u = unmapped(&row);
        assert_eq!(u["EventRecordID"], 99);
        assert_eq!(u["LogonProcessName"], "Kerberos");
    }

    #[test]
    fn evtx_dump_failed_logon_with_hex_pid() {
        let row = one(
            r##"{"Event":{"#attributes":{"xmlns":"http://schemas.microsoft.com/win/2004/08/events/event"},"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-Security-Auditing","Guid":"{54849625-5478-4994-A5BA-3E3B0328C30D}"}},"EventID":4625,"Version":0,"Level":0,"Task":12544,"Keywords":"0x8010000000000000","TimeCreated":{"#attributes":{"SystemTime":"2023-01-02T03:04:05.678901Z"}},"EventRecordID":1234,"Execution":{"#attributes":{"ProcessID":612,"ThreadID":700}},"Channel":"Security","Computer":"WS01","Security":null},"EventData":{"SubjectUserSid":"S-1-5-18","SubjectUserName":"WS01$","SubjectDomainName":"CORP","TargetUserName":"bob","TargetDomainName":"CORP","Status":"0xC000006D","FailureReason":"%%2313","SubStatus":"0xC000006A","LogonType":2,"LogonProcessName":"User32 ","AuthenticationPackageName":"Negotiate","WorkstationName":"WS01","ProcessId":"0x1a4","ProcessName":"C:\\Windows\\System32\\svchost.exe","IpAddress":"127.0.0.1","IpPort":"0"}}}"##,
        );
        assert_eq!(class(&row), (Some(3002), Some(1)));
        assert_eq!(s(&row, col::STATUS), Some("failure"));
        assert_eq!(
            s(&row, col::STATUS_DETAIL),
            Some(
                "Status=0xc000006d (bad user name or authentication information) SubStatus=0xc000006a (wrong password) FailureReason=%%2313"
            )
        );
        assert_eq!(row.get_int(col::PROCESS_PID), Some(0x1a4));
        assert_eq!(s(&row, col::PROCESS_NAME), Some("svchost.exe"));
        assert_eq!(s(&row, col::USER_NAME), Some("bob"));
        assert_eq!(s(&row, col::LOGON_TYPE), Some("2"));
        assert_eq!(s(&row, col::AUTH_PROTOCOL), Some("Negotiate"));
        assert_eq!(s(&row, col::SRC_HOSTNAME), Some("WS01"));
        assert_eq!(s(&row, col::DEVICE_HOSTNAME), Some("WS01"));
        assert_eq!(s(&row, col::EVENT_CODE), Some("4625"));
        assert_eq!(row.time(), 1_672_628_645_678_901);
        let u = unmapped(&row);
        assert_eq!(u["EventRecordID"], 1234);
        assert_eq!(u["Execution_ProcessID"], 612);
        assert!(u["Event"].get("EventData").is_none(), "data hoisted: {u}");
    }

    #[test]
    fn evtx_dump_event_id_object_and_unnamed_data() {
        let row = one(
            r##"{"Event":{"System":{"Provider":{"#attributes":{"Name":"PowerShell"}},"EventID":{"#attributes":{"Qualifiers":0},"#text":400},"Level":4,"TimeCreated":{"#attributes":{"SystemTime":"2023-08-15T09:55:20.932Z"}},"Channel":"Windows PowerShell","Computer":"MKT01"},"EventData":{"Data":{"#text":["Available","None","\tNewEngineState=Available\r\n\tPreviousEngineState=None\r\n\tHostName=ConsoleHost\r\n\tHostApplication=powershell.exe -ExecutionPolicy Bypass -enc AAAA==\r\n\tEngineVersion=2.0\r\n\tCommandLine="]},"Binary":null}}}"##,
        );
        assert_eq!(class(&row), (Some(1009), Some(1)));
        assert_eq!(s(&row, col::EVENT_CODE), Some("400"));
        assert_eq!(s(&row, col::METADATA_PRODUCT), Some("PowerShell"));
        assert_eq!(s(&row, col::METADATA_LOG_NAME), Some("Windows PowerShell"));
        assert_eq!(
            s(&row, col::PROCESS_CMD_LINE),
            Some("powershell.exe -ExecutionPolicy Bypass -enc AAAA==")
        );
        let u = unmapped(&row);
        assert_eq!(u["param1"], "Available");
        assert_eq!(u["EventID_Qualifiers"], 0);
    }

    #[test]
    fn evtx_dump_data_list_and_user_data() {
        let row = one(
            r##"{"Event":{"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-Eventlog"}},"EventID":1102,"Channel":"Security","Computer":"WS01","TimeCreated":{"#attributes":{"SystemTime":"2023-01-02T03:04:05Z"}}},"UserData":{"LogFileCleared":{"#attributes":{"xmlns":"http://manifests.microsoft.com/win/2004/08/windows/eventlog"},"SubjectUserName":"admin","SubjectDomainName":"CORP"}}}}"##,
        );
        assert_eq!(s(&row, col::ACTOR_USER_NAME), Some("admin"));
        assert_eq!(s(&row, col::ACTOR_USER_DOMAIN), Some("CORP"));
        let u = unmapped(&row);
        assert!(u["Event"]["UserData"]["LogFileCleared"]["#attributes"].is_object());
        let row = one(
            r##"{"Event":{"System":{"EventID":7045,"Channel":"System","Provider_attributes":{"Name":"Service Control Manager"},"TimeCreated_attributes":{"SystemTime":"2023-01-02T03:04:05Z"}},"EventData":{"Data":[{"#attributes":{"Name":"ServiceName"},"#text":"evil"},{"#attributes":{"Name":"ImagePath"},"#text":"cmd.exe /c calc"},"loose"]}}}"##,
        );
        assert_eq!(class(&row), (Some(201_004), Some(1)));
        assert_eq!(s(&row, col::PROCESS_CMD_LINE), Some("cmd.exe /c calc"));
        assert_eq!(s(&row, col::METADATA_PRODUCT), Some("Windows System"));
        assert_eq!(row.time(), 1_672_628_645_000_000);
        let u = unmapped(&row);
        assert_eq!(u["ServiceName"], "evil");
        assert_eq!(u["param1"], "loose");
    }

    #[test]
    fn sentinel_security_event_with_xml_event_data() {
        let row = one(
            r#"{"TenantId":"x","TimeGenerated":"2022-05-13T08:54:05.21Z","SourceSystem":"OpsManager","Computer":"WORKSTATION5","EventSourceName":"Microsoft-Windows-Security-Auditing","Channel":"Security","Task":1,"Level":"0","EventData":"<EventData xmlns=\"http://schemas.microsoft.com/win/2004/08/events/event\">\r\n  <Data Name=\"ProcessID\">3936</Data>\r\n  <Data Name=\"Application\">\\device\\harddiskvolume2\\tomcat9.exe</Data>\r\n  <Data Name=\"Direction\">%%14592</Data>\r\n  <Data Name=\"SourceAddress\">192.168.3.5</Data>\r\n  <Data Name=\"SourcePort\">50452</Data>\r\n  <Data Name=\"DestAddress\">192.168.2.5</Data>\r\n  <Data Name=\"DestPort\">8080</Data>\r\n  <Data Name=\"Protocol\">6</Data>\r\n  <Data Name=\"Note\">a &amp; b &#x41;&lt;</Data>\r\n  <Data Name=\"Empty\" />\r\n</EventData>","EventID":5156,"Activity":"5156 - The Windows Filtering Platform has allowed a connection.","Type":"SecurityEvent"}"#,
        );
        assert_eq!(class(&row), (Some(4001), Some(1)));
        assert_eq!(s(&row, col::SRC_IP), Some("192.168.3.5"));
        assert_eq!(row.get_int(col::SRC_PORT), Some(50452));
        assert_eq!(s(&row, col::DST_IP), Some("192.168.2.5"));
        assert_eq!(row.get_int(col::DST_PORT), Some(8080));
        assert_eq!(s(&row, col::NETWORK_PROTOCOL), Some("tcp"));
        assert_eq!(s(&row, col::NETWORK_DIRECTION), Some("inbound"));
        assert_eq!(s(&row, col::ACTION), Some("allowed"));
        assert_eq!(row.get_int(col::PROCESS_PID), Some(3936));
        assert_eq!(s(&row, col::PROCESS_NAME), Some("tomcat9.exe"));
        assert_eq!(row.get_int(col::SEVERITY_ID), Some(1));
        assert_eq!(
            s(&row, col::MESSAGE),
            Some("5156 - The Windows Filtering Platform has allowed a connection.")
        );
        assert_eq!(row.time(), 1_652_432_045_210_000);
        let u = unmapped(&row);
        assert_eq!(u["Note"], "a & b A<");
        assert_eq!(u["Empty"], "");
        assert!(u.get("EventData").is_none(), "expanded: {u}");
    }

    #[test]
    fn sentinel_windows_event_with_json_event_data() {
        let row = one(
            r#"{"TimeGenerated":"2022-05-13T08:54:06.797Z","Provider":"Microsoft-Windows-Sysmon","Channel":"Microsoft-Windows-Sysmon/Operational","Computer":"WORKSTATION5","EventLevel":4,"EventLevelName":"Information","EventData":"{\"RuleName\":\"-\",\"UtcTime\":\"2022-05-13T08:54:06.4420000Z\",\"ProcessGuid\":\"{f3329a35}\",\"ProcessId\":\"3936\",\"Image\":\"C:\\\\tomcat9.exe\",\"User\":\"NT AUTHORITY\\\\LOCAL SERVICE\",\"QueryName\":\"evil.example\",\"QueryStatus\":\"9003\",\"QueryResults\":\"-\"}","EventID":22,"Type":"WindowsEvent"}"#,
        );
        assert_eq!(class(&row), (Some(4003), Some(1)));
        assert_eq!(s(&row, col::DNS_QUERY), Some("evil.example"));
        assert_eq!(s(&row, col::DNS_RCODE), Some("NXDOMAIN"));
        assert_eq!(s(&row, col::STATUS), Some("failure"));
        assert_eq!(s(&row, col::DNS_ANSWER), None);
        assert_eq!(s(&row, col::ACTOR_USER_NAME), Some("LOCAL SERVICE"));
        assert_eq!(s(&row, col::ACTOR_USER_DOMAIN), Some("NT AUTHORITY"));
        assert_eq!(s(&row, col::PROCESS_NAME), Some("tomcat9.exe"));
        assert_eq!(row.time(), 1_652_432_046_797_000);
    }

    #[test]
    fn sentinel_suffixed_columns_and_missing_channel() {
        let row = one(
            r#"{"TimeGenerated":"2021-08-02T13:09:19.323Z","Computer":"ADFS01","EventID":5156,"Protocol_string":"17","SourcePort_string":"53121","Application":"System","DestAddress":"fe80::1","DestPort":"80","Direction":"%%14593","ProcessID":"4","SourceAddress":"fe80::2"}"#,
        );
        assert_eq!(s(&row, col::METADATA_LOG_NAME), Some("Security"));
        assert_eq!(s(&row, col::NETWORK_PROTOCOL), Some("udp"));
        assert_eq!(row.get_int(col::SRC_PORT), Some(53121));
        assert_eq!(s(&row, col::NETWORK_DIRECTION), Some("outbound"));
        assert_eq!(row.get_int(col::PROCESS_PID), Some(4));
        assert!(notes(&row).contains("assumed Security"), "{}", notes(&row));
    }

    // --- Sigma field names ---------------------------------------------------

    #[test]
    fn hashes_stay_verbatim_beside_the_hash_columns() {
        let hashes = "SHA1=AB,MD5=CD,SHA256=EF,IMPHASH=8C3B";
        let row = sysmon(1, &format!(r#""CommandLine":"x","Hashes":"{hashes}""#));
        assert_eq!(s(&row, col::HASH_MD5), Some("cd"));
        assert_eq!(s(&row, col::HASH_SHA1), Some("ab"));
        assert_eq!(s(&row, col::HASH_SHA256), Some("ef"));
        assert_eq!(unmapped(&row)["Hashes"], hashes);
        // Only an IMPHASH: no column, still there.
        let row = sysmon(7, r#""ImageLoaded":"C:\\x.dll","Hashes":"IMPHASH=AA""#);
        assert_eq!(s(&row, col::HASH_MD5), None);
        assert_eq!(unmapped(&row)["Hashes"], "IMPHASH=AA");
        // Another log (the common mapping) and the evtx shape.
        let row = one(
            r##"{"Event":{"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-CodeIntegrity"}},"EventID":3033,"Channel":"Microsoft-Windows-CodeIntegrity/Operational","Computer":"h","TimeCreated":{"#attributes":{"SystemTime":"2023-01-02T03:04:05Z"}}},"EventData":{"Hashes":"SHA256=AB,IMPHASH=CD"}}}"##,
        );
        assert_eq!(s(&row, col::HASH_SHA256), Some("ab"));
        assert_eq!(unmapped(&row)["Hashes"], "SHA256=AB,IMPHASH=CD");
    }

    #[test]
    fn evtx_envelope_under_sigma_names() {
        let row = one(
            r##"{"Event":{"#attributes":{"xmlns":"http://schemas.microsoft.com/win/2004/08/events/event"},"System":{"Provider":{"#attributes":{"Name":"Service Control Manager","Guid":"{555908d1-a6d7-4695-8e1e-26931d2012f4}","EventSourceName":"Service Control Manager"}},"EventID":{"#attributes":{"Qualifiers":16384},"#text":7045},"Version":0,"Level":4,"Task":0,"Opcode":0,"Keywords":"0x8080000000000000","TimeCreated":{"#attributes":{"SystemTime":"2023-01-02T03:04:05.123Z"}},"EventRecordID":42,"Correlation":{"#attributes":{"ActivityID":"{6B3DFF46-F4E6-4CDA-983B-76B101728AA5}"}},"Execution":{"#attributes":{"ProcessID":700,"ThreadID":800}},"Channel":"System","Computer":"WS01","Security":{"#attributes":{"UserID":"S-1-5-18"}}},"EventData":{"ServiceName":"evil","ImagePath":"cmd.exe /c calc","Hostname":"not-the-computer","SourceName":"not-the-provider","Level":"data level"}}}"##,
        );
        assert_eq!(s(&row, col::METADATA_LOG_NAME), Some("System"));
        assert_eq!(s(&row, col::METADATA_PRODUCT), Some("Windows System"));
        assert_eq!(s(&row, col::EVENT_CODE), Some("7045"));
        assert_eq!(s(&row, col::DEVICE_HOSTNAME), Some("WS01"), "envelope wins");
        assert_eq!(row.get_int(col::SEVERITY_ID), Some(1), "envelope Level 4");
        assert_eq!(row.time(), 1_672_628_645_123_000);
        let u = unmapped(&row);
        for (name, value) in [
            ("Provider_Name", Value::from("Service Control Manager")),
            (
                "Provider_Guid",
                "{555908d1-a6d7-4695-8e1e-26931d2012f4}".into(),
            ),
            ("Provider_EventSourceName", "Service Control Manager".into()),
            ("EventID_Qualifiers", 16384.into()),
            ("Version", 0.into()),
            ("Level", 4.into()),
            ("Task", 0.into()),
            ("Opcode", 0.into()),
            ("Keywords", "0x8080000000000000".into()),
            ("EventRecordID", 42.into()),
            (
                "Correlation_ActivityID",
                "{6B3DFF46-F4E6-4CDA-983B-76B101728AA5}".into(),
            ),
            ("Execution_ProcessID", 700.into()),
            ("Execution_ThreadID", 800.into()),
            ("Security_UserID", "S-1-5-18".into()),
            // Event data whose name the envelope has stays where it was.
            ("Hostname", "not-the-computer".into()),
            ("SourceName", "not-the-provider".into()),
        ] {
            assert_eq!(u[name], value, "{name}: {u}");
        }
        assert_eq!(u["Event"]["EventData"]["Level"], "data level", "{u}");
        assert!(u["Event"].get("System").is_none(), "{u}");
        // Columns hold what they took verbatim.
        for name in ["EventID", "Channel", "Computer", "TimeCreated_SystemTime"] {
            assert!(u.get(name).is_none(), "{name}: {u}");
        }

        // `--separate-json-attributes`, an unknown log: the provider is the
        // product (moved there), empty elements do not displace data.
        let row = one(
            r##"{"Event":{"System":{"Provider":null,"Provider_attributes":{"Name":"Microsoft-Windows-Bits-Client","Guid":"{ef1cc15b}"},"EventID":59,"Correlation":null,"Channel":"Microsoft-Windows-Bits-Client/Operational","Computer":"WS01","TimeCreated_attributes":{"SystemTime":"2023-01-02T03:04:05Z"}},"EventData":{"url":"http://x","Correlation":"data"}}}"##,
        );
        assert_eq!(
            s(&row, col::METADATA_PRODUCT),
            Some("Microsoft-Windows-Bits-Client")
        );
        assert_eq!(row.time(), 1_672_628_645_000_000);
        let u = unmapped(&row);
        assert!(u.get("Provider_Name").is_none(), "in the column: {u}");
        assert_eq!(u["Provider_Guid"], "{ef1cc15b}");
        assert_eq!(u["Correlation"], "data", "{u}");
        assert_eq!(u["url"], "http://x");
    }

    #[test]
    fn winlogbeat_and_flat_envelope_under_sigma_names() {
        let row = one(
            r#"{"@timestamp":"2024-03-05T07:30:00Z","winlog":{"channel":"System","event_id":"7036","provider_name":"Service Control Manager","provider_guid":"{555908d1}","record_id":7,"computer_name":"WS1","task":"None","opcode":"Info","version":1,"keywords":["Classic"],"activity_id":"{a}","process":{"pid":640,"thread":{"id":6}},"user":{"identifier":"S-1-5-18","name":"SYSTEM"},"api":"wineventlog","event_data":{"param1":"BITS","param2":"running","Hostname":"data"}},"host":{"name":"ws1.corp"}}"#,
        );
        assert_eq!(s(&row, col::METADATA_LOG_NAME), Some("System"));
        assert_eq!(s(&row, col::EVENT_CODE), Some("7036"));
        assert_eq!(s(&row, col::DEVICE_HOSTNAME), Some("WS1"));
        let u = unmapped(&row);
        for (name, value) in [
            ("Provider_Name", Value::from("Service Control Manager")),
            ("Provider_Guid", "{555908d1}".into()),
            ("EventRecordID", 7.into()),
            ("Task", "None".into()),
            ("Opcode", "Info".into()),
            ("Version", 1.into()),
            ("Keywords", serde_json::json!(["Classic"])),
            ("Correlation_ActivityID", "{a}".into()),
            ("Execution_ProcessID", 640.into()),
            ("Execution_ThreadID", 6.into()),
            ("Security_UserID", "S-1-5-18".into()),
            ("param1", "BITS".into()),
            ("Hostname", "data".into()),
        ] {
            assert_eq!(u[name], value, "{name}: {u}");
        }
        // What Sigma has no name for stays in `winlog`.
        assert_eq!(
            u["winlog"],
            serde_json::json!({"user": {"name": "SYSTEM"}, "api": "wineventlog"})
        );

        // Flat: `Provider_Name` is added; the shipper's field stays.
        let row = one(
            r#"{"SourceName":"Service Control Manager","Channel":"System","EventID":7036,"Hostname":"WS1","TimeCreated":"2021-06-11T09:07:41Z","param1":"BITS"}"#,
        );
        let u = unmapped(&row);
        assert_eq!(u["Provider_Name"], "Service Control Manager");
        assert_eq!(u["SourceName"], "Service Control Manager");
        assert!(u.get("Data").is_none(), "flat paramN are not joined: {u}");
        // An unknown log: the product column takes the provider.
        let row = one(
            r#"{"ProviderName":"Microsoft-Windows-Bits-Client","Channel":"Microsoft-Windows-Bits-Client/Operational","EventID":59,"Hostname":"WS1","TimeCreated":"2021-06-11T09:07:41Z"}"#,
        );
        assert_eq!(
            s(&row, col::METADATA_PRODUCT),
            Some("Microsoft-Windows-Bits-Client")
        );
        let u = unmapped(&row);
        assert!(u.get("Provider_Name").is_none(), "{u}");
        assert_eq!(u["ProviderName"], "Microsoft-Windows-Bits-Client");
    }

    #[test]
    fn log_cleared_keeps_its_own_channel() {
        // System 104: UserData `Channel` is the log that was cleared.
        let row = one(
            r##"{"Event":{"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-Eventlog"}},"EventID":104,"Channel":"System","Computer":"WS1","TimeCreated":{"#attributes":{"SystemTime":"2023-01-02T03:04:05Z"}}},"UserData":{"LogFileCleared":{"#attributes":{"xmlns":"http://manifests.microsoft.com/win/2004/08/windows/eventlog"},"SubjectUserName":"admin","SubjectDomainName":"CORP","Channel":"Security","BackupPath":""}}}}"##,
        );
        assert_eq!(s(&row, col::METADATA_LOG_NAME), Some("System"));
        assert_eq!(s(&row, col::METADATA_PRODUCT), Some("Windows System"));
        assert_eq!(s(&row, col::ACTOR_USER_NAME), Some("admin"));
        let u = unmapped(&row);
        assert_eq!(
            u["Event"]["UserData"]["LogFileCleared"]["Channel"],
            "Security"
        );
        assert_eq!(u["Provider_Name"], "Microsoft-Windows-Eventlog");
        let row = one(
            r#"{"@timestamp":"2024-03-05T07:30:00Z","winlog":{"channel":"System","event_id":104,"provider_name":"Microsoft-Windows-Eventlog","computer_name":"WS1","user_data":{"SubjectUserName":"admin","Channel":"Security","EventID":"data"}}}"#,
        );
        assert_eq!(s(&row, col::METADATA_LOG_NAME), Some("System"));
        assert_eq!(s(&row, col::EVENT_CODE), Some("104"));
        let u = unmapped(&row);
        assert_eq!(u["winlog"]["user_data"]["Channel"], "Security");
        assert_eq!(u["winlog"]["user_data"]["EventID"], "data");
    }

    #[test]
    fn unnamed_data_is_sigma_data() {
        // evtx `#text` list (several unnamed `<Data>`).
        let row = one(
            r##"{"Event":{"System":{"Provider":{"#attributes":{"Name":"PowerShell"}},"EventID":400,"Channel":"Windows PowerShell","Computer":"h","TimeCreated":{"#attributes":{"SystemTime":"2023-01-02T03:04:05Z"}}},"EventData":{"Data":{"#text":["Available","None","\tHostApplication=powershell.exe -enc AA=="]}}}}"##,
        );
        let u = unmapped(&row);
        assert_eq!(
            u["Data"],
            "Available\nNone\n\tHostApplication=powershell.exe -enc AA=="
        );
        assert_eq!(u["param3"], "\tHostApplication=powershell.exe -enc AA==");
        // One unnamed `<Data>`; a list mixing named, unnamed and empty.
        let evtx = |data: &str| {
            one(&format!(
                r##"{{"Event":{{"System":{{"EventID":1,"Channel":"Application","Computer":"h","TimeCreated":{{"#attributes":{{"SystemTime":"2023-01-02T03:04:05Z"}}}}}},"EventData":{data}}}}}"##
            ))
        };
        let u = unmapped(&evtx(r##"{"Data":{"#text":"only"}}"##));
        assert_eq!((&u["Data"], &u["param1"]), (&"only".into(), &"only".into()));
        let u = unmapped(&evtx(
            r##"{"Data":[{"#attributes":{"Name":"X"},"#text":"x"},"a",null,{"#text":"b"}]}"##,
        ));
        assert_eq!(u["Data"], "a\n\nb");
        assert_eq!(u["X"], "x");
        // A named `<Data Name="Data">` keeps the name.
        let u = unmapped(&evtx(
            r##"{"Data":[{"#attributes":{"Name":"Data"},"#text":"named"},"a"]}"##,
        ));
        assert_eq!(u["Data"], "named");
        assert_eq!(u["Event"]["EventData"]["Data"], "a", "{u}");
        // Sentinel XML and JSON array.
        let row = one(
            r#"{"Channel":"Application","EventID":33205,"Computer":"sql","TimeGenerated":"2021-08-02T13:05:32Z","EventData":"<EventData><Data>statement:sp_configure</Data><Data Name=\"N\">n</Data><Data></Data><Data>end</Data></EventData>"}"#,
        );
        let u = unmapped(&row);
        assert_eq!(u["Data"], "statement:sp_configure\n\nend");
        assert_eq!(u["N"], "n");
        let row = one(
            r#"{"Channel":"Application","EventID":1,"Computer":"h","TimeGenerated":"2021-08-02T13:05:32Z","EventData":"[\"a\",2]"}"#,
        );
        let u = unmapped(&row);
        assert_eq!((&u["Data"], &u["param2"]), (&"a\n2".into(), &2.into()));
    }

    #[test]
    fn defender_names_with_spaces_stay() {
        let row = one(
            r##"{"Event":{"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-Windows Defender"}},"EventID":1116,"Channel":"Microsoft-Windows-Windows Defender/Operational","Computer":"h","TimeCreated":{"#attributes":{"SystemTime":"2023-01-02T03:04:05Z"}}},"EventData":{"Threat Name":"Tool:Win32/EICAR_Test_File","Source Name":"Real-Time Protection","Process Name":"C:\\x.exe","Severity ID":"5"}}}"##,
        );
        let u = unmapped(&row);
        assert_eq!(u["Threat Name"], "Tool:Win32/EICAR_Test_File");
        assert_eq!(u["Source Name"], "Real-Time Protection");
        assert_eq!(u["Process Name"], "C:\\x.exe");
        assert_eq!(u["Severity ID"], "5");
        assert_eq!(
            s(&row, col::METADATA_PRODUCT),
            Some("Microsoft-Windows-Windows Defender"),
            "`Source Name` is not `SourceName`"
        );
    }

    // --- Sysmon kinds -------------------------------------------------------

    fn sysmon(id: u32, data: &str) -> EventRow {
        one(&format!(
            r#"{{"Channel":"Microsoft-Windows-Sysmon/Operational","EventID":{id},"Hostname":"h","TimeCreated":"2021-06-11T09:07:15Z","Image":"C:\\a\\p.exe","ProcessId":"10","ProcessGuid":"{{g}}",{data}}}"#
        ))
    }

    #[test]
    fn sysmon_network_and_process_kinds() {
        let row = sysmon(
            3,
            r#""User":"NT AUTHORITY\\SYSTEM","Protocol":"tcp","Initiated":"true","SourceIp":"10.0.0.1","SourceHostname":"-","SourcePort":"59324","DestinationIp":"10.0.0.2","DestinationHostname":"srv","DestinationPort":"445""#,
        );
        assert_eq!(class(&row), (Some(4001), Some(1)));
        assert_eq!(s(&row, col::SRC_IP), Some("10.0.0.1"));
        assert_eq!(s(&row, col::SRC_HOSTNAME), None);
        assert_eq!(s(&row, col::DST_HOSTNAME), Some("srv"));
        assert_eq!(row.get_int(col::DST_PORT), Some(445));
        assert_eq!(s(&row, col::NETWORK_PROTOCOL), Some("tcp"));
        assert_eq!(s(&row, col::NETWORK_DIRECTION), Some("outbound"));
        assert_eq!(s(&row, col::ACTOR_USER_NAME), Some("SYSTEM"));

        let row = sysmon(5, r#""User":"x""#);
        assert_eq!(class(&row), (Some(1007), Some(2)));
        assert_eq!(s(&row, col::PROCESS_NAME), Some("p.exe"));

        let row = sysmon(
            7,
            r#""ImageLoaded":"C:\\Windows\\System32\\amsi.dll","Hashes":"SHA256=ABCD","Signed":"true""#,
        );
        assert_eq!(class(&row), (Some(1005), Some(1)));
        assert_eq!(s(&row, col::FILE_NAME), Some("amsi.dll"));
        assert_eq!(s(&row, col::HASH_SHA256), Some("abcd"));
        assert_eq!(s(&row, col::PROCESS_PATH), Some("C:\\a\\p.exe"));

        let row = one(
            r#"{"Channel":"Microsoft-Windows-Sysmon/Operational","EventID":8,"Hostname":"h","TimeCreated":"2021-06-11T09:07:15Z","SourceProcessGuid":"{s}","SourceProcessId":"1","SourceImage":"C:\\evil.exe","TargetProcessGuid":"{t}","TargetProcessId":"2","TargetImage":"C:\\Windows\\notepad.exe","StartFunction":"LoadLibraryW","SourceUser":"CORP\\eve"}"#,
        );
        assert_eq!(class(&row), (Some(1007), Some(4)));
        assert_eq!(s(&row, col::PROCESS_PATH), Some("C:\\evil.exe"));
        assert_eq!(row.get_int(col::PROCESS_PID), Some(1));
        assert_eq!(s(&row, col::PROCESS_UID), Some("{s}"));
        assert_eq!(s(&row, col::ACTOR_USER_NAME), Some("eve"));
        assert_eq!(unmapped(&row)["TargetImage"], "C:\\Windows\\notepad.exe");

        let row = one(
            r#"{"Channel":"Microsoft-Windows-Sysmon/Operational","EventID":10,"Hostname":"h","TimeCreated":"2021-06-11T09:07:15Z","SourceProcessGUID":"{s}","SourceProcessId":"968","SourceImage":"C:\\Windows\\system32\\svchost.exe","TargetProcessGUID":"{t}","TargetProcessId":"700","TargetImage":"C:\\Windows\\system32\\lsass.exe","GrantedAccess":"0x1010"}"#,
        );
        assert_eq!(class(&row), (Some(1007), Some(3)));
        assert_eq!(s(&row, col::PROCESS_NAME), Some("svchost.exe"));
        assert_eq!(row.get_int(col::PROCESS_PID), Some(968));
        assert_eq!(
            unmapped(&row)["TargetImage"],
            "C:\\Windows\\system32\\lsass.exe"
        );
    }

    #[test]
    fn sysmon_file_and_registry_kinds() {
        let row = sysmon(11, r#""TargetFilename":"C:\\Temp\\drop.ps1""#);
        assert_eq!(class(&row), (Some(1001), Some(1)));
        assert_eq!(s(&row, col::FILE_PATH), Some("C:\\Temp\\drop.ps1"));
        assert_eq!(s(&row, col::FILE_NAME), Some("drop.ps1"));
        for id in [23, 26] {
            let row = sysmon(
                id,
                r#""TargetFilename":"C:\\Temp\\x.exe","Hashes":"MD5=AA","IsExecutable":"true""#,
            );
            assert_eq!(class(&row), (Some(1001), Some(4)), "{id}");
            assert_eq!(s(&row, col::HASH_MD5), Some("aa"));
        }
        let row = sysmon(
            12,
            r#""EventType":"CreateKey","TargetObject":"HKLM\\Software\\X""#,
        );
        assert_eq!(class(&row), (Some(201_001), Some(1)));
        assert_eq!(s(&row, col::REGISTRY_KEY), Some("HKLM\\Software\\X"));
        let row = sysmon(
            12,
            r#""EventType":"DeleteKey","TargetObject":"HKLM\\Software\\X""#,
        );
        assert_eq!(class(&row), (Some(201_001), Some(4)));
        // NXLog keeps Sysmon's own EventType as EventTypeOrignal.
        let row = sysmon(
            13,
            r#""EventType":"INFO","EventTypeOrignal":"SetValue","TargetObject":"HKCU\\Run\\evil","Details":"C:\\evil.exe""#,
        );
        assert_eq!(class(&row), (Some(201_002), Some(2)));
        assert_eq!(s(&row, col::REGISTRY_VALUE), Some("C:\\evil.exe"));
        let row = sysmon(
            14,
            r#""EventType":"RenameKey","TargetObject":"HKLM\\A","NewName":"HKLM\\B""#,
        );
        assert_eq!(class(&row), (Some(201_001), Some(5)));
        assert_eq!(s(&row, col::REGISTRY_KEY), Some("HKLM\\A"));
    }

    // --- Security kinds -----------------------------------------------------

    fn security(id: u32, data: &str) -> EventRow {
        one(&format!(
            r#"{{"Channel":"Security","SourceName":"Microsoft-Windows-Security-Auditing","EventID":{id},"Hostname":"dc","TimeCreated":"2021-06-11T09:07:15Z","Keywords":"0x8020000000000000",{data}}}"#
        ))
    }

    const SUBJECT: &str = r#""SubjectUserSid":"S-1-5-18","SubjectUserName":"admin","SubjectDomainName":"CORP","SubjectLogonId":"0x3e7""#;

    #[test]
    fn security_logon_kinds() {
        let row = security(
            4634,
            r#""TargetUserName":"alice","TargetDomainName":"CORP","LogonType":"3""#,
        );
        assert_eq!(class(&row), (Some(3002), Some(2)));
        assert_eq!(s(&row, col::USER_NAME), Some("alice"));
        assert_eq!(s(&row, col::STATUS), Some("success"));
        let row = security(
            4647,
            r#""TargetUserName":"alice","TargetDomainName":"CORP""#,
        );
        assert_eq!(class(&row), (Some(3002), Some(2)));
        let row = security(
            4648,
            &format!(
                r#"{SUBJECT},"TargetUserName":"bob","TargetDomainName":"CORP","TargetServerName":"fs01","IpAddress":"-","IpPort":"-","ProcessId":"0x1f0","ProcessName":"C:\\Windows\\System32\\lsass.exe""#
            ),
        );
        assert_eq!(class(&row), (Some(3002), Some(1)));
        assert_eq!(s(&row, col::ACTOR_USER_NAME), Some("admin"));
        assert_eq!(s(&row, col::USER_NAME), Some("bob"));
        assert_eq!(s(&row, col::DST_HOSTNAME), Some("fs01"));
        assert_eq!(s(&row, col::SRC_IP), None);
        assert_eq!(row.get_int(col::SRC_PORT), None);
        assert_eq!(row.get_int(col::PROCESS_PID), Some(0x1f0));
        let row = security(
            4672,
            &format!(r#"{SUBJECT},"PrivilegeList":"SeDebugPrivilege""#),
        );
        assert_eq!(class(&row), (Some(3003), Some(1)));
        assert_eq!(s(&row, col::USER_NAME), Some("admin"));
        assert_eq!(s(&row, col::USER_DOMAIN), Some("CORP"));
        assert_eq!(s(&row, col::ACTOR_USER_NAME), None);
    }

    #[test]
    fn security_process_service_task_kinds() {
        let row = security(
            4688,
            &format!(
                r#"{SUBJECT},"NewProcessId":"0x1a4","NewProcessName":"C:\\Windows\\System32\\whoami.exe","TokenElevationType":"%%1936","ProcessId":"0x12d8","CommandLine":"whoami /all","TargetUserName":"-","ParentProcessName":"C:\\Windows\\System32\\cmd.exe""#
            ),
        );
        assert_eq!(class(&row), (Some(1007), Some(1)));
        assert_eq!(row.get_int(col::PROCESS_PID), Some(420));
        assert_eq!(s(&row, col::PROCESS_NAME), Some("whoami.exe"));
        assert_eq!(s(&row, col::PROCESS_CMD_LINE), Some("whoami /all"));
        assert_eq!(row.get_int(col::PROCESS_PARENT_PID), Some(0x12d8));
        assert_eq!(s(&row, col::PROCESS_PARENT_NAME), Some("cmd.exe"));
        assert_eq!(s(&row, col::ACTOR_USER_NAME), Some("admin"));
        assert_eq!(s(&row, col::USER_NAME), None);
        assert_eq!(s(&row, col::STATUS), Some("success"), "from Keywords");

        let row = security(
            4689,
            &format!(
                r#"{SUBJECT},"Status":"0x0","ProcessId":"0x12d8","ProcessName":"C:\\Windows\\System32\\rundll32.exe""#
            ),
        );
        assert_eq!(class(&row), (Some(1007), Some(2)));
        assert_eq!(row.get_int(col::PROCESS_PID), Some(0x12d8));
        assert_eq!(s(&row, col::PROCESS_NAME), Some("rundll32.exe"));

        let row = security(
            4697,
            &format!(
                r#"{SUBJECT},"ServiceName":"tbbd05","ServiceFileName":"%COMSPEC% echo /c b6a1458f396 > \\\\.\\pipe\\334485","ServiceType":"0x10""#
            ),
        );
        assert_eq!(class(&row), (Some(201_004), Some(1)));
        assert_eq!(
            s(&row, col::PROCESS_CMD_LINE),
            Some("%COMSPEC% echo /c b6a1458f396 > \\\\.\\pipe\\334485")
        );
        assert_eq!(unmapped(&row)["ServiceName"], "tbbd05");

        let row = security(
            4698,
            &format!(
                r#"{SUBJECT},"TaskName":"\\Evil","TaskContent":"<?xml version=\"1.0\" encoding=\"UTF-16\"?>\r\n<Task version=\"1.2\" xmlns=\"http://schemas.microsoft.com/windows/2004/02/mit/task\"><Actions Context=\"Author\"><Exec><Command>C:\\Windows\\system32\\cmd.exe</Command><Arguments>/C C:\\Windows\\System32\\notepad.exe</Arguments></Exec></Actions></Task>""#
            ),
        );
        assert_eq!(class(&row), (Some(1006), Some(1)));
        assert_eq!(
            s(&row, col::PROCESS_CMD_LINE),
            Some("C:\\Windows\\system32\\cmd.exe /C C:\\Windows\\System32\\notepad.exe")
        );
        assert!(unmapped(&row)["TaskContent"].is_string());
    }

    #[test]
    fn security_account_share_and_kerberos_kinds() {
        for (id, activity) in [(4720, 1), (4726, 6), (4738, 99)] {
            let row = security(
                id,
                &format!(r#"{SUBJECT},"TargetUserName":"newbie","TargetDomainName":"CORP""#),
            );
            assert_eq!(class(&row), (Some(3001), Some(activity)), "{id}");
            assert_eq!(s(&row, col::USER_NAME), Some("newbie"));
            assert_eq!(s(&row, col::ACTOR_USER_NAME), Some("admin"));
        }
        let row = security(
            5140,
            &format!(
                r#"{SUBJECT},"ObjectType":"File","IpAddress":"10.0.0.9","IpPort":"50000","ShareName":"\\\\*\\C$","AccessMask":"0x1""#
            ),
        );
        assert_eq!(class(&row), (Some(4006), Some(99)));
        assert_eq!(s(&row, col::FILE_PATH), Some("\\\\*\\C$"));
        assert_eq!(s(&row, col::SRC_IP), Some("10.0.0.9"));
        let row = security(
            5145,
            &format!(
                r#"{SUBJECT},"IpAddress":"fe80::1","IpPort":"59324","ShareName":"\\\\*\\ADMIN$","ShareLocalPath":"\\??\\C:\\Windows","RelativeTargetName":"b6a.exe""#
            ),
        );
        assert_eq!(class(&row), (Some(4006), Some(2)));
        assert_eq!(s(&row, col::FILE_PATH), Some("\\\\*\\ADMIN$\\b6a.exe"));
        assert_eq!(s(&row, col::FILE_NAME), Some("b6a.exe"));
        assert_eq!(row.get_int(col::SRC_PORT), Some(59324));
        let row = security(
            4771,
            r#""TargetUserName":"carol","IpAddress":"::ffff:10.0.0.7","Status":"0x18""#,
        );
        assert_eq!(class(&row), (Some(3002), Some(6)));
        assert_eq!(s(&row, col::STATUS), Some("failure"));
        assert_eq!(s(&row, col::AUTH_PROTOCOL), Some("Kerberos"));
        assert!(
            s(&row, col::STATUS_DETAIL).is_some_and(|d| d.contains("pre-authentication")),
            "{:?}",
            s(&row, col::STATUS_DETAIL)
        );
    }

    #[test]
    fn nxlog_signed_keywords_and_severity_value() {
        let row = one(
            r#"{"EventTime":"2020-10-22 04:29:46","SourceName":"Microsoft-Windows-Security-Auditing","Channel":"security","EventID":4663,"Keywords":-9218868437227405312,"EventType":"AUDIT_FAILURE","SeverityValue":4,"Hostname":"WS","ObjectName":"C:\\secret"}"#,
        );
        assert_eq!(s(&row, col::STATUS), Some("failure"));
        assert_eq!(s(&row, col::METADATA_LOG_NAME), Some("Security"));
        assert_eq!(row.get_int(col::SEVERITY_ID), Some(4));
        assert_eq!(row.time(), 1_603_340_986_000_000);
        assert!(notes(&row).contains("EventTime"), "{}", notes(&row));
    }

    // --- Other logs ---------------------------------------------------------

    #[test]
    fn system_service_install() {
        let row = one(
            r#"{"SourceName":"Service Control Manager","Level":"4","Channel":"System","Hostname":"WS5","TimeCreated":"2021-06-11T09:07:41.212Z","EventID":7045,"ServiceName":"tbbd05","ImagePath":"%COMSPEC% echo /c b6a","ServiceType":"user mode service","StartType":"demand start","AccountName":"LocalSystem"}"#,
        );
        assert_eq!(class(&row), (Some(201_004), Some(1)));
        assert_eq!(
            s(&row, col::PROCESS_CMD_LINE),
            Some("%COMSPEC% echo /c b6a")
        );
        assert_eq!(s(&row, col::METADATA_PRODUCT), Some("Windows System"));
        assert_eq!(unmapped(&row)["AccountName"], "LocalSystem");
    }

    #[test]
    fn powershell_kinds() {
        let row = one(
            r#"{"SourceName":"Microsoft-Windows-PowerShell","Level":"5","Channel":"Microsoft-Windows-PowerShell/Operational","Hostname":"MKT01","TimeCreated":"2023-08-15T09:53:46.401Z","EventID":4104,"Message":"Creating Scriptblock text (1 of 1):\r\nIEX (New-Object Net.WebClient)","MessageNumber":"1","MessageTotal":"1","ScriptBlockText":"IEX (New-Object Net.WebClient)","ScriptBlockId":"14cc","Path":"C:\\x.ps1"}"#,
        );
        assert_eq!(class(&row), (Some(1009), Some(1)));
        assert_eq!(
            s(&row, col::MESSAGE),
            Some("IEX (New-Object Net.WebClient)")
        );
        assert_eq!(s(&row, col::FILE_PATH), Some("C:\\x.ps1"));
        assert_eq!(s(&row, col::METADATA_PRODUCT), Some("PowerShell"));
        assert!(unmapped(&row)["Message"].is_string());

        let row = one(
            r#"{"Channel":"Microsoft-Windows-PowerShell/Operational","EventID":4103,"Hostname":"WS","@timestamp":"2020-07-22T04:18:48.995Z","Payload":"CommandInvocation(Start-Sleep): \"Start-Sleep\"\r\n","ContextInfo":"        Severity = Informational\r\n        Host Name = ConsoleHost\r\n        Host Application = C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe -noP -enc SQBGAA==\r\n        User = MORDOR\\pgustavo\r\n","AccountName":"pgustavo","Domain":"MORDOR"}"#,
        );
        assert_eq!(class(&row), (Some(1009), Some(1)));
        assert_eq!(
            s(&row, col::PROCESS_CMD_LINE),
            Some(
                "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe -noP -enc SQBGAA=="
            )
        );
        assert_eq!(s(&row, col::ACTOR_USER_NAME), Some("pgustavo"));
        assert_eq!(s(&row, col::ACTOR_USER_DOMAIN), Some("MORDOR"));
        assert_eq!(
            s(&row, col::MESSAGE),
            Some("CommandInvocation(Start-Sleep): \"Start-Sleep\"\r\n")
        );

        let row = one(
            r#"{"SourceName":"PowerShell","Channel":"Windows PowerShell","EventID":800,"Hostname":"WS","@timestamp":"2020-07-22T04:18:48.995Z","Message":"Pipeline execution details for command line: Start-Sleep;\n. \r\n\r\nContext Information: \r\n\tDetailSequence=1\r\n\tUserId=MORDOR\\pgustavo\r\n\tHostApplication=powershell.exe -noP -w 1\r\n"}"#,
        );
        assert_eq!(class(&row), (Some(1009), Some(1)));
        assert_eq!(
            s(&row, col::PROCESS_CMD_LINE),
            Some("powershell.exe -noP -w 1")
        );
        assert_eq!(s(&row, col::ACTOR_USER_NAME), Some("pgustavo"));
        assert!(s(&row, col::MESSAGE).is_some_and(|m| m.starts_with("Pipeline")));
    }

    // --- Bad input ----------------------------------------------------------

    #[test]
    fn bad_inputs_name_the_problem() {
        let (events, dead) = decode(br#"{"EventID":4624,"Channel":"Sec"#);
        assert!(events.is_empty());
        assert!(dead.len() == 1 && dead[0].contains("EOF"), "{dead:?}");
        let (_, dead) = decode(b"garbage here");
        assert!(
            dead.len() == 1 && dead[0].contains("invalid JSON"),
            "{dead:?}"
        );
        let (_, dead) = decode(&[b'{', b'"', 0xff, 0xfe, b'"', b'}']);
        assert!(
            dead.len() == 1 && dead[0].contains("invalid JSON"),
            "{dead:?}"
        );
        let (_, dead) = decode(b"42");
        assert!(
            dead.len() == 1 && dead[0].contains("JSON number"),
            "{dead:?}"
        );
        let (_, dead) = decode(b"[]");
        assert!(
            dead.len() == 1 && dead[0].contains("empty JSON array"),
            "{dead:?}"
        );
        let (_, dead) = decode(b"   ");
        assert!(dead.len() == 1 && dead[0].contains("empty"), "{dead:?}");
        let mut huge = br#"{"EventID":1,"Message":""#.to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_EVENT_BYTES));
        huge.extend(br#""}"#);
        let (events, dead) = decode(&huge);
        assert!(events.is_empty());
        assert!(
            dead.len() == 1 && dead[0].contains("exceeds the limit"),
            "{dead:?}"
        );
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let (_, dead) = decode(deep.as_bytes());
        assert!(
            dead.len() == 1 && dead[0].contains("nested deeper"),
            "{dead:?}"
        );
    }

    #[test]
    fn arrays_and_lines_keep_good_events() {
        let (events, dead) = decode(
            br#"[{"EventID":4624,"Channel":"Security","TargetUserName":"a"},7,{"EventID":4634,"Channel":"Security"}]"#,
        );
        assert_eq!(events.len(), 2);
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0].contains("array element 1") && dead[0].contains("JSON number"),
            "{dead:?}"
        );
        assert_eq!(
            s(&events[0], col::RAW),
            Some(r#"{"EventID":4624,"Channel":"Security","TargetUserName":"a"}"#)
        );
        let (events, dead) = decode(
            b"{\"EventID\":1,\"Channel\":\"Microsoft-Windows-Sysmon/Operational\"}\n{broken\n\n{\"EventID\":5,\"Channel\":\"Microsoft-Windows-Sysmon/Operational\"}\n",
        );
        assert_eq!(events.len(), 2);
        assert_eq!(dead.len(), 1);
        assert!(dead[0].contains("line 2"), "{dead:?}");
        assert_eq!(
            s(&events[1], col::RAW),
            Some("{\"EventID\":5,\"Channel\":\"Microsoft-Windows-Sysmon/Operational\"}")
        );
    }

    #[test]
    fn odd_events_become_events_with_notes() {
        let row = one(r#"{"hello":"world"}"#);
        let n = notes(&row);
        assert!(n.contains("no event id") && n.contains("no channel"), "{n}");
        assert_eq!(s(&row, col::METADATA_PRODUCT), Some("Windows"));
        assert_eq!(unmapped(&row)["hello"], "world");

        let row = one(
            r#"{"Channel":"Security","EventID":4624,"EventData":"<EventData><Data Name=\"A\">x</Data>"}"#,
        );
        let n = notes(&row);
        assert!(n.contains("EventData: invalid XML"), "{n}");
        assert!(unmapped(&row)["EventData"].is_string());

        let row = one(r#"{"Channel":"Security","EventID":"47x","EventData":"not json"}"#);
        let n = notes(&row);
        assert!(n.contains("`47x` is not a number"), "{n}");
        assert!(n.contains("neither JSON nor XML"), "{n}");
    }

    #[test]
    fn xml_leaves_reads_data_and_refuses_bad_xml() {
        let leaves = xml_leaves(
            "<EventData><Data>a</Data><Data Name=\"X\">1</Data><Data>b</Data><Data Name=\"X\">2</Data><Binary>00</Binary></EventData>",
        )
        .expect("valid");
        assert_eq!(
            leaves,
            vec![
                ("param1".to_string(), "a".to_string()),
                ("X".to_string(), "1".to_string()),
                ("param2".to_string(), "b".to_string()),
                ("X_2".to_string(), "2".to_string()),
                ("Binary".to_string(), "00".to_string()),
            ]
        );
        assert!(xml_leaves("<a><b>x</c></a>").is_err());
        assert!(
            xml_leaves("<Data Name=\"a\">&bogus;</Data>")
                .expect_err("entity")
                .contains("bogus")
        );
        assert_eq!(
            xml_leaves("<EventData xmlns=\"x\"></EventData>"),
            Ok(vec![])
        );
        assert_eq!(xml_leaves("<EventData/>"), Ok(vec![]));
    }

    // --- Corpus -------------------------------------------------------------

    const OTRF_WINDOWS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/corpus/events/otrf-windows"
    );
    const OTRF_SENTINEL: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/corpus/events/otrf-sentinel"
    );

    /// Per-file counts, and the rows (every line decoded as one input).
    fn decode_file(path: &std::path::Path) -> (usize, Vec<EventRow>, Vec<String>) {
        let text = std::fs::read_to_string(path).expect("corpus file");
        let mut decoder = Decoder::for_type(SourceType::Windows);
        let mut out = Vec::new();
        let mut lines_seen = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            lines_seen += 1;
            decoder.decode(line.as_bytes(), &prov(), &mut out);
        }
        decoder.flush(&prov(), &mut out);
        let mut events = Vec::new();
        let mut dead = Vec::new();
        for d in out {
            match d {
                Decoded::Event(row) => events.push(row),
                Decoded::Dead(letter) => dead.push(letter.error),
            }
        }
        (lines_seen, events, dead)
    }

    /// (log name, event code) → (count, count with every column filled).
    fn fill(rows: &[EventRow], log: &str, code: &str, columns: &[&str]) -> (usize, usize) {
        let of_kind: Vec<&EventRow> = rows
            .iter()
            .filter(|r| {
                s(r, col::METADATA_LOG_NAME) == Some(log) && s(r, col::EVENT_CODE) == Some(code)
            })
            .collect();
        let full = of_kind
            .iter()
            .filter(|r| {
                columns
                    .iter()
                    .all(|c| r.get(c).is_some_and(|v| *v != crate::parse::Cell::Null))
            })
            .count();
        (of_kind.len(), full)
    }

    #[test]
    fn otrf_windows_corpus_every_event_maps() {
        let mut files: Vec<_> = std::fs::read_dir(OTRF_WINDOWS)
            .expect("corpus dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        assert_eq!(files.len(), 12);
        let mut all = Vec::new();
        let mut per_file = BTreeMap::new();
        for path in &files {
            let (lines_seen, events, dead) = decode_file(path);
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            assert!(
                dead.is_empty(),
                "{name:?}: {:?}",
                &dead[..dead.len().min(3)]
            );
            assert_eq!(events.len(), lines_seen, "{name:?}");
            per_file.insert(name, events.len());
            all.extend(events);
        }
        eprintln!("otrf-windows per file: {per_file:?}");
        assert_eq!(all.len(), 24_591);
        for row in &all {
            assert!(s(row, col::EVENT_CODE).is_some(), "{:?}", s(row, col::RAW));
            assert!(s(row, col::METADATA_LOG_NAME).is_some());
            assert!(s(row, col::METADATA_PRODUCT).is_some());
            assert!(s(row, col::DEVICE_HOSTNAME).is_some());
            let n = notes(row);
            assert!(
                !n.contains("no readable time"),
                "{n}: {:?}",
                s(row, col::RAW)
            );
        }
        let sysmon = "Microsoft-Windows-Sysmon/Operational";
        let checks: &[(&str, &str, &[&str])] = &[
            (
                sysmon,
                "1",
                &[
                    col::PROCESS_PATH,
                    col::PROCESS_CMD_LINE,
                    col::PROCESS_PID,
                    col::PROCESS_PARENT_PATH,
                    col::HASH_SHA256,
                    col::ACTOR_USER_NAME,
                    col::CLASS_UID,
                ],
            ),
            (
                sysmon,
                "3",
                &[
                    col::SRC_IP,
                    col::DST_IP,
                    col::DST_PORT,
                    col::NETWORK_PROTOCOL,
                    col::PROCESS_PATH,
                ],
            ),
            (sysmon, "5", &[col::PROCESS_PATH, col::PROCESS_PID]),
            (sysmon, "7", &[col::FILE_PATH, col::PROCESS_PATH]),
            (sysmon, "10", &[col::PROCESS_PATH, col::PROCESS_PID]),
            (sysmon, "11", &[col::FILE_PATH]),
            (sysmon, "12", &[col::REGISTRY_KEY, col::CLASS_UID]),
            (sysmon, "13", &[col::REGISTRY_KEY, col::REGISTRY_VALUE]),
            (sysmon, "22", &[col::DNS_QUERY, col::DNS_RCODE]),
            (sysmon, "23", &[col::FILE_PATH]),
            (
                "Security",
                "4624",
                &[
                    col::USER_NAME,
                    col::LOGON_TYPE,
                    col::AUTH_PROTOCOL,
                    col::STATUS,
                ],
            ),
            (
                "Security",
                "4625",
                &[col::USER_NAME, col::STATUS, col::STATUS_DETAIL],
            ),
            (
                "Security",
                "4688",
                &[
                    col::PROCESS_PATH,
                    col::PROCESS_PID,
                    col::PROCESS_CMD_LINE,
                    col::PROCESS_PARENT_PATH,
                ],
            ),
            ("Security", "4689", &[col::PROCESS_PATH, col::PROCESS_PID]),
            (
                "Security",
                "5156",
                &[
                    col::SRC_IP,
                    col::DST_IP,
                    col::DST_PORT,
                    col::NETWORK_PROTOCOL,
                    col::NETWORK_DIRECTION,
                ],
            ),
            ("Security", "5145", &[col::FILE_PATH, col::SRC_IP]),
            ("Security", "4698", &[col::PROCESS_CMD_LINE]),
            ("System", "7045", &[col::PROCESS_CMD_LINE]),
            (
                "Microsoft-Windows-PowerShell/Operational",
                "4104",
                &[col::MESSAGE],
            ),
            (
                "Microsoft-Windows-PowerShell/Operational",
                "4103",
                &[col::CLASS_UID],
            ),
        ];
        for (log, code, columns) in checks {
            let (n, full) = fill(&all, log, code, columns);
            assert!(n > 0, "{log} {code}: none in the corpus");
            assert_eq!(full, n, "{log} {code}: {full}/{n} have all of {columns:?}");
        }
        // The host command line is in 4103's ContextInfo for all but the
        // two OTRF events without it.
        let (n, full) = fill(
            &all,
            "Microsoft-Windows-PowerShell/Operational",
            "4103",
            &[col::PROCESS_CMD_LINE],
        );
        assert!(full + 2 >= n, "4103 host application: {full}/{n}");
    }

    const SIGMA_REGRESSION: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/corpus/sigma/regression_data"
    );

    /// Every `.json` under a directory, recursively, sorted.
    fn json_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("corpus dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                json_files(&path, out);
            } else if path.extension().is_some_and(|x| x == "json") {
                out.push(path);
            }
        }
    }

    /// SigmaHQ's regression data (evtx-dump JSON; a file may hold several
    /// pretty-printed objects back to back): the envelope is under Sigma's
    /// names and nothing is left in `Event.System`.
    #[test]
    fn sigma_regression_data_envelope_names() {
        let mut files = Vec::new();
        json_files(std::path::Path::new(SIGMA_REGRESSION), &mut files);
        files.sort();
        assert!(files.len() >= 200, "{} files", files.len());
        let mut events = 0;
        for path in &files {
            let text = std::fs::read_to_string(path).expect("file");
            for object in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
                let object = object.expect("JSON");
                let row = one(&object.to_string());
                events += 1;
                let u = unmapped(&row);
                let name = path.display();
                assert!(u.get(NOTES_KEY).is_none(), "{name}: {u}");
                assert!(
                    u.get("Event").and_then(|e| e.get("System")).is_none(),
                    "{name}: {u}"
                );
                for field in ["EventRecordID", "Level", "Keywords", "Execution_ProcessID"] {
                    assert!(u.get(field).is_some(), "{name}: {field} in {u}");
                }
                // In `unmapped`, or moved as it is into the product column.
                let provider = u["Provider_Name"]
                    .as_str()
                    .or(s(&row, col::METADATA_PRODUCT))
                    .expect("provider");
                assert_eq!(
                    Some(provider),
                    object["Event"]["System"]["Provider"]["#attributes"]["Name"].as_str(),
                    "{name}"
                );
                if let Some(hashes) = object["Event"]["EventData"]["Hashes"].as_str() {
                    assert_eq!(u["Hashes"], hashes, "{name}");
                }
            }
        }
        eprintln!(
            "sigma regression data: {} files, {events} events",
            files.len()
        );
        assert!(events >= files.len());
    }

    #[test]
    fn otrf_sentinel_windows_files() {
        for (file, expected) in [
            ("log4shell_sysmon_windows.jsonl", 487),
            ("log4shell_securityevent_windows.jsonl", 39),
            ("goldensaml_securityevent_adfs.jsonl", 38),
        ] {
            let (lines_seen, events, dead) =
                decode_file(&std::path::Path::new(OTRF_SENTINEL).join(file));
            assert_eq!(lines_seen, expected, "{file}");
            assert!(dead.is_empty(), "{file}: {dead:?}");
            assert_eq!(events.len(), expected, "{file}");
            for row in &events {
                let n = notes(row);
                assert!(!n.contains("EventData"), "{file}: {n}");
                assert!(s(row, col::EVENT_CODE).is_some(), "{file}");
            }
            if file.contains("sysmon") {
                let sysmon = "Microsoft-Windows-Sysmon/Operational";
                let (n, full) = fill(
                    &events,
                    sysmon,
                    "12",
                    &[col::REGISTRY_KEY, col::PROCESS_PATH],
                );
                assert_eq!((n, full), (292, 292));
                let (n, full) = fill(
                    &events,
                    sysmon,
                    "1",
                    &[col::PROCESS_CMD_LINE, col::HASH_SHA256],
                );
                assert_eq!((n, full), (2, 2));
            }
            if file.contains("log4shell_security") {
                let (n, full) = fill(
                    &events,
                    "Security",
                    "5156",
                    &[col::SRC_IP, col::DST_PORT, col::PROCESS_PATH],
                );
                assert_eq!((n, full), (5, 5));
            }
            if file.contains("adfs") {
                let (n, full) = fill(
                    &events,
                    "Security",
                    "4624",
                    &[col::USER_NAME, col::LOGON_TYPE, col::AUTH_PROTOCOL],
                );
                assert_eq!((n, full), (28, 28));
                // One logon has IpAddress `-` (none).
                let (n, full) = fill(&events, "Security", "4624", &[col::SRC_IP]);
                assert_eq!((n, full), (28, 27));
            }
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Arbitrary bytes never panic the decoder.
            #[test]
            fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = decode(&bytes);
            }

            /// Any JSON object with Windows-looking keys becomes exactly one event.
            #[test]
            fn objects_always_become_events(
                fields in proptest::collection::btree_map(
                    prop_oneof![
                        Just("EventID".to_string()), Just("Channel".to_string()),
                        Just("EventData".to_string()), Just("Keywords".to_string()),
                        Just("Level".to_string()), Just("ProcessId".to_string()),
                        Just("Status".to_string()), Just("TaskContent".to_string()),
                        Just("User".to_string()), Just("Initiated".to_string()),
                        "[A-Za-z_]{1,10}",
                    ],
                    prop_oneof![
                        "[ -~]{0,24}".prop_map(Value::String),
                        any::<i64>().prop_map(Value::from),
                        Just(Value::String("<EventData><Data Name=\"a\">&amp;</Data></EventData>".into())),
                        Just(Value::String("Microsoft-Windows-Sysmon/Operational".into())),
                        Just(Value::String("Security".into())),
                        (1u32..8000).prop_map(Value::from),
                    ],
                    0..10,
                )
            ) {
                let bytes = serde_json::to_vec(&fields).expect("json");
                let (events, dead) = decode(&bytes);
                prop_assert!(dead.is_empty(), "{:?}", dead);
                prop_assert_eq!(events.len(), 1);
            }
        }
    }
}

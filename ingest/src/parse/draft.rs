//! The shared half of every parser: an event being normalized.
//!
//! A parser turns its input into source fields (a JSON object), then moves
//! the fields it understands into columns with [`Draft::take`] or sets columns
//! it computes with [`Draft::set`]. Whatever is left in the fields becomes
//! `unmapped`, so normalization never loses a field; the original bytes become
//! `raw`. [`Draft::finish`] fills what follows from the rest (names from paths,
//! hashes from Sysmon's `Hashes`, the OCSF category and type, the time) and
//! notes every problem it worked around in `unmapped._spoor_notes`.

use serde_json::{Map, Value};
use spoor_common::schema::{ColumnKind, EVENT_COLUMNS, event_col as col};

/// One cell of a row, before it becomes an Arrow array.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No value.
    Null,
    /// Text.
    Str(String),
    /// Integer, or a timestamp in microseconds.
    Int(i64),
}

/// A normalized event, one cell per column of [`EVENT_COLUMNS`].
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Cells in column order.
    pub cells: Vec<Cell>,
    /// The value of the source's tenant field, when the source takes its
    /// tenant from one (read before mapping; see `routing`).
    pub tenant_hint: Option<String>,
}

impl EventRow {
    /// The event time, microseconds.
    pub fn time(&self) -> i64 {
        match self.cells.first() {
            Some(Cell::Int(t)) => *t,
            _ => 0,
        }
    }

    /// A cell by column name (tests and diagnostics).
    pub fn get(&self, name: &str) -> Option<&Cell> {
        column_index(name).and_then(|i| self.cells.get(i))
    }

    /// A text cell by column name.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Cell::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// An integer cell by column name.
    pub fn get_int(&self, name: &str) -> Option<i64> {
        match self.get(name) {
            Some(Cell::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// The row as a JSON object of its non-null columns, `unmapped` parsed
    /// back to JSON (for `spoor ingest parse` and tests).
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        for (def, cell) in EVENT_COLUMNS.iter().zip(&self.cells) {
            let value = match cell {
                Cell::Null => continue,
                Cell::Int(i) if def.kind == ColumnKind::Timestamp => {
                    Value::String(crate::parse::draft::format_micros(*i))
                }
                Cell::Int(i) => Value::from(*i),
                Cell::Str(s) if def.name == col::UNMAPPED => {
                    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
                }
                Cell::Str(s) => Value::String(s.clone()),
            };
            out.insert(def.name.to_string(), value);
        }
        Value::Object(out)
    }
}

/// Microseconds since the epoch as RFC 3339 text.
pub fn format_micros(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| micros.to_string())
}

/// Where an event came from, recorded in the provenance columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// Kafka topic, `http:<source>`, or `import:<file>`.
    pub topic: String,
    /// Kafka partition, if any.
    pub partition: Option<i32>,
    /// Kafka offset, or line number for HTTP and file import.
    pub offset: Option<i64>,
    /// When Spoor received the event, microseconds.
    pub ingest_time_micros: i64,
}

/// Why an input could not become an event; it goes to dead letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// Not JSON at all.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// JSON, but not an object.
    #[error("event is a JSON {found}, expected an object")]
    NotAnObject {
        /// What was found instead.
        found: &'static str,
    },
    /// Empty or blank.
    #[error("event is empty")]
    Empty,
    /// Larger than allowed.
    #[error("event of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Event size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Text formats (syslog, CEF, LEEF, Zeek TSV, auditd) must be UTF-8.
    #[error("invalid UTF-8 at byte {at}")]
    Utf8 {
        /// Offset of the first invalid byte.
        at: usize,
    },
    /// The input does not have the shape of the configured source type.
    #[error("not {format}: {reason}")]
    Format {
        /// The format expected (`CEF`, `syslog`, ...).
        format: &'static str,
        /// What is wrong and where.
        reason: String,
    },
}

/// Events larger than this go to dead letters (they would bloat row groups and
/// are almost always a shipper fault).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Nesting deeper than this is refused: serde_json's own limit is 128, and
/// deeper objects are almost always an attack or a shipper loop.
pub const MAX_JSON_DEPTH: usize = 64;

/// Event times before this (1990-01-01) are implausible for security
/// telemetry (typically a zero FILETIME or a seconds/milliseconds mix-up).
pub const EARLIEST_PLAUSIBLE_MICROS: i64 = 631_152_000_000_000;

/// Event times more than this far ahead of the ingest time are implausible
/// (clock skew of a day is seen in the wild; more is a broken clock).
pub const MAX_FUTURE_MICROS: i64 = 24 * 3600 * 1_000_000;

/// The key in `unmapped` where problems worked around are listed.
pub const NOTES_KEY: &str = "_spoor_notes";

/// The index of a column of the `events` table.
pub fn column_index(name: &str) -> Option<usize> {
    EVENT_COLUMNS.iter().position(|c| c.name == name)
}

fn index_of(name: &str) -> usize {
    column_index(name).unwrap_or_else(|| panic!("{name} is not a column of the events table"))
}

/// Checks the cheap limits every input must meet, before any parsing.
pub fn check_size(bytes: &[u8]) -> Result<(), NormalizeError> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(NormalizeError::TooLarge {
            size: bytes.len(),
            limit: MAX_EVENT_BYTES,
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(NormalizeError::Empty);
    }
    Ok(())
}

/// The input as UTF-8 text (for text formats), or an error naming the byte.
pub fn as_text(bytes: &[u8]) -> Result<&str, NormalizeError> {
    std::str::from_utf8(bytes).map_err(|e| NormalizeError::Utf8 {
        at: e.valid_up_to(),
    })
}

/// Parses a JSON object, refusing deep nesting, and names what it found
/// when it is not an object.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, NormalizeError> {
    check_size(bytes)?;
    if let Some(depth) = nesting_deeper_than(bytes, MAX_JSON_DEPTH) {
        return Err(NormalizeError::Json(format!(
            "nested deeper than {MAX_JSON_DEPTH} levels at byte {depth}"
        )));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| NormalizeError::Json(e.to_string()))?;
    match value {
        Value::Object(object) => Ok(object),
        other => Err(NormalizeError::NotAnObject {
            found: json_kind(&other),
        }),
    }
}

/// The byte at which brackets nest deeper than `limit`, ignoring strings.
fn nesting_deeper_than(bytes: &[u8], limit: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return Some(i);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// At most the first `max` characters of `s` (for error messages).
pub fn prefix(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((at, _)) => s.get(..at).unwrap_or(s),
        None => s,
    }
}

/// The first keys of an object in sorted order, for error messages that say
/// what was found instead of the expected shape.
pub fn keys_list(object: &Map<String, Value>) -> String {
    if object.is_empty() {
        return "none".into();
    }
    let mut names: Vec<&String> = object.keys().collect();
    names.sort_unstable();
    let mut keys: Vec<String> = names
        .into_iter()
        .take(12)
        .map(|k| format!("`{}`", prefix(k, 40)))
        .collect();
    if object.len() > 12 {
        keys.push(format!("… ({} in all)", object.len()));
    }
    keys.join(", ")
}

/// The name of a JSON value's kind, for error messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// An event being normalized: columns set so far, source fields not yet
/// used, and notes on problems worked around.
#[derive(Debug, Clone)]
pub struct Draft {
    cells: Vec<Cell>,
    /// Source fields not (yet) moved into a column; `unmapped` at the end.
    pub fields: Map<String, Value>,
    notes: Vec<String>,
}

impl Draft {
    /// A draft over the source's fields.
    pub fn new(fields: Map<String, Value>) -> Self {
        Draft {
            cells: vec![Cell::Null; EVENT_COLUMNS.len()],
            fields,
            notes: Vec::new(),
        }
    }

    /// Sets a column (by its `event_col` name). Panics on an unknown column
    /// name: column names are constants of this program, never input.
    pub fn set(&mut self, column: &str, cell: Cell) {
        self.cells[index_of(column)] = cell;
    }

    /// Sets a text column unless `value` is empty or `-`.
    pub fn set_str(&mut self, column: &str, value: impl Into<String>) {
        let value = value.into();
        if !value.is_empty() && value != "-" {
            self.set(column, Cell::Str(value));
        }
    }

    /// Sets an integer column.
    pub fn set_int(&mut self, column: &str, value: i64) {
        self.set(column, Cell::Int(value));
    }

    /// Sets the OCSF class and activity (category and type follow in
    /// [`Draft::finish`]).
    pub fn set_class(&mut self, class_uid: i64, activity_id: i64) {
        self.set_int(col::CLASS_UID, class_uid);
        self.set_int(col::ACTIVITY_ID, activity_id);
    }

    /// Whether a column has a value.
    pub fn is_set(&self, column: &str) -> bool {
        self.cells[index_of(column)] != Cell::Null
    }

    /// A column's value.
    pub fn get(&self, column: &str) -> &Cell {
        &self.cells[index_of(column)]
    }

    /// A text column's value.
    pub fn get_str(&self, column: &str) -> Option<&str> {
        match self.get(column) {
            Cell::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Notes a problem worked around; kept in `unmapped._spoor_notes`.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// A source field by dotted path (see [`lookup`]), not removing it.
    pub fn field(&self, path: &str) -> Option<&Value> {
        lookup(&self.fields, path)
    }

    /// A source field as text (strings as they are, numbers and booleans
    /// printed), not removing it.
    pub fn field_str(&self, path: &str) -> Option<String> {
        match self.field(path)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// Moves the first of `paths` whose value fits the column's type into
    /// the column; returns whether one did. Does nothing when the column is
    /// already set. A value that does not fit stays in the fields.
    pub fn take(&mut self, column: &str, paths: &[&str]) -> bool {
        self.take_index(index_of(column), paths)
    }

    /// [`Draft::take`] by column index (see [`column_index`]), for mappings
    /// that resolve their columns once.
    pub fn take_index<S: AsRef<str>>(&mut self, index: usize, paths: &[S]) -> bool {
        if self.cells[index] != Cell::Null {
            return false;
        }
        let kind = EVENT_COLUMNS[index].kind;
        for path in paths {
            let path = path.as_ref();
            let Some(v) = lookup(&self.fields, path) else {
                continue;
            };
            if let Some(cell) = coerce(v, kind) {
                self.cells[index] = cell;
                remove_path(&mut self.fields, path);
                return true;
            }
        }
        false
    }

    /// Removes a source field and returns it.
    pub fn remove(&mut self, path: &str) -> Option<Value> {
        let value = lookup(&self.fields, path)?.clone();
        remove_path(&mut self.fields, path);
        Some(value)
    }

    /// Completes the row: derived columns, time checks, `raw`, `unmapped`
    /// and provenance.
    pub fn finish(mut self, raw: &[u8], prov: &Provenance) -> EventRow {
        self.derive();
        self.check_time(prov.ingest_time_micros);
        let set = |cells: &mut Vec<Cell>, name: &str, cell: Cell| cells[index_of(name)] = cell;
        set(
            &mut self.cells,
            col::RAW,
            Cell::Str(String::from_utf8_lossy(raw).into_owned()),
        );
        if !self.notes.is_empty() {
            self.fields.insert(
                NOTES_KEY.to_string(),
                Value::Array(self.notes.into_iter().map(Value::String).collect()),
            );
        }
        set(
            &mut self.cells,
            col::UNMAPPED,
            Cell::Str(Value::Object(self.fields).to_string()),
        );
        set(
            &mut self.cells,
            col::SOURCE_TOPIC,
            Cell::Str(prov.topic.clone()),
        );
        set(
            &mut self.cells,
            col::SOURCE_PARTITION,
            prov.partition.map_or(Cell::Null, |p| Cell::Int(p.into())),
        );
        set(
            &mut self.cells,
            col::SOURCE_OFFSET,
            prov.offset.map_or(Cell::Null, Cell::Int),
        );
        set(
            &mut self.cells,
            col::INGEST_TIME,
            Cell::Int(prov.ingest_time_micros),
        );
        EventRow {
            cells: self.cells,
            tenant_hint: None,
        }
    }

    /// Falls back to the ingest time when the source gave no usable time,
    /// and refuses implausible times (noted, the ingest time used, the
    /// source's value kept in the notes).
    fn check_time(&mut self, ingest_time: i64) {
        let index = index_of(col::TIME);
        match self.cells[index] {
            Cell::Int(t) if t < EARLIEST_PLAUSIBLE_MICROS => {
                self.note(format!(
                    "time: {} is before 1990; the ingest time is used",
                    format_micros(t)
                ));
                self.cells[index] = Cell::Int(ingest_time);
            }
            Cell::Int(t) if t > ingest_time.saturating_add(MAX_FUTURE_MICROS) => {
                self.note(format!(
                    "time: {} is more than a day after the ingest time; the ingest time is used",
                    format_micros(t)
                ));
                self.cells[index] = Cell::Int(ingest_time);
            }
            Cell::Int(_) => {}
            _ => {
                self.note("time: the event has no readable time; the ingest time is used");
                self.cells[index] = Cell::Int(ingest_time);
            }
        }
    }

    /// Fills columns that follow from others: names from paths, hashes from
    /// Sysmon's `Hashes`, and the OCSF class when the parser set none.
    fn derive(&mut self) {
        for (name, path) in [
            (col::PROCESS_NAME, col::PROCESS_PATH),
            (col::PROCESS_PARENT_NAME, col::PROCESS_PARENT_PATH),
            (col::FILE_NAME, col::FILE_PATH),
        ] {
            if !self.is_set(name)
                && let Some(p) = self.get_str(path)
            {
                let base = p.rsplit(['\\', '/']).next().unwrap_or(p);
                if !base.is_empty() {
                    let base = base.to_string();
                    self.set(name, Cell::Str(base));
                }
            }
        }
        if let Some(Value::String(hashes)) = self.fields.get("Hashes").cloned()
            && self.take_hashes(&hashes)
        {
            self.fields.shift_remove("Hashes");
        }
        if !self.is_set(col::CLASS_UID) {
            self.infer_class();
        }
        if let Cell::Int(class) = *self.get(col::CLASS_UID) {
            if !self.is_set(col::CATEGORY_UID) {
                self.set_int(col::CATEGORY_UID, class / 1000);
            }
            if !self.is_set(col::TYPE_UID)
                && let Cell::Int(activity) = *self.get(col::ACTIVITY_ID)
            {
                self.set_int(col::TYPE_UID, class * 100 + activity);
            }
        }
    }

    /// Sysmon's `Hashes` (`MD5=…,SHA256=…`) into the hash columns; returns
    /// whether any was used.
    pub fn take_hashes(&mut self, hashes: &str) -> bool {
        let mut used = false;
        for part in hashes.split(',') {
            if let Some((algo, digest)) = part.split_once('=') {
                let column = match algo.trim().to_ascii_uppercase().as_str() {
                    "MD5" => col::HASH_MD5,
                    "SHA1" => col::HASH_SHA1,
                    "SHA256" => col::HASH_SHA256,
                    _ => continue,
                };
                if !self.is_set(column) {
                    self.set(column, Cell::Str(digest.trim().to_ascii_lowercase()));
                    used = true;
                }
            }
        }
        used
    }

    /// The OCSF class guessed from which columns are filled (the generic
    /// mapping; parsers of known formats set the class themselves).
    fn infer_class(&mut self) {
        let code = self.get_str(col::EVENT_CODE).unwrap_or("");
        let has = |c: &str| self.is_set(c);
        let (class, activity) = if matches!(code, "4624" | "4625" | "4634" | "4648" | "4672") {
            (3002, if code == "4634" { 2 } else { 1 })
        } else if has(col::PROCESS_CMD_LINE)
            || (has(col::PROCESS_PATH) && matches!(code, "1" | "4688"))
        {
            (1007, 1)
        } else if has(col::DNS_QUERY) {
            (4003, 1)
        } else if has(col::URL) || has(col::HTTP_METHOD) {
            (4002, 0)
        } else if has(col::API_OPERATION) {
            (6003, 0)
        } else if has(col::SRC_IP) && has(col::DST_IP) {
            (4001, 0)
        } else {
            return;
        };
        self.set_int(col::CLASS_UID, class);
        if !self.is_set(col::ACTIVITY_ID) {
            self.set_int(col::ACTIVITY_ID, activity);
        }
    }
}

/// Finds a dotted path, preferring a literal key with dots at each level
/// (Zeek's `id.orig_h`, flattened ECS).
pub fn lookup<'a>(object: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = object.get(path) {
        return Some(v);
    }
    let mut rest = path;
    let mut current = object;
    while let Some((head, tail)) = rest.split_once('.') {
        match current.get(head) {
            Some(Value::Object(inner)) => {
                if let Some(v) = inner.get(tail) {
                    return Some(v);
                }
                current = inner;
                rest = tail;
            }
            _ => return None,
        }
    }
    None
}

/// Removes what [`lookup`] found, dropping objects left empty.
pub fn remove_path(object: &mut Map<String, Value>, path: &str) {
    // shift_remove keeps the source's field order in `unmapped` (serde_json
    // keeps insertion order here: the evtx crate enables preserve_order).
    if object.shift_remove(path).is_some() {
        return;
    }
    if let Some((head, tail)) = path.split_once('.')
        && let Some(Value::Object(inner)) = object.get_mut(head)
    {
        remove_path(inner, tail);
        if inner.is_empty() {
            object.shift_remove(head);
        }
    }
}

/// A JSON value as a cell of `kind`, or `None` when it does not fit (it then
/// stays in `unmapped`).
pub fn coerce(v: &Value, kind: ColumnKind) -> Option<Cell> {
    match kind {
        ColumnKind::Utf8 => match v {
            Value::String(s) if !s.is_empty() && s != "-" => Some(Cell::Str(s.clone())),
            Value::Number(n) => Some(Cell::Str(n.to_string())),
            Value::Bool(b) => Some(Cell::Str(b.to_string())),
            Value::Array(items)
                if !items.is_empty() && items.iter().all(|i| !i.is_object() && !i.is_array()) =>
            {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                Some(Cell::Str(parts.join(",")))
            }
            _ => None,
        },
        ColumnKind::Int32 | ColumnKind::Int64 => {
            let n = match v {
                Value::Number(n) => n
                    .as_i64()
                    .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))?,
                Value::String(s) => parse_int(s)?,
                Value::Bool(b) => i64::from(*b),
                _ => return None,
            };
            if kind == ColumnKind::Int32 && i32::try_from(n).is_err() {
                return None;
            }
            Some(Cell::Int(n))
        }
        ColumnKind::Timestamp => parse_time(v),
        // No event column has these kinds: `raw` bytes are the parser's,
        // floats exist only in `alerts`.
        ColumnKind::Binary | ColumnKind::Float64 => None,
    }
}

/// Decimal or `0x` hexadecimal integer text (Windows writes pids both ways).
pub fn parse_int(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return i64::from_str_radix(hex, 16).ok();
    }
    s.parse::<i64>().ok()
}

/// Reads an event time: RFC 3339, `YYYY-MM-DD HH:MM:SS[.f]` (UTC), or epoch
/// seconds, milliseconds, microseconds or nanoseconds (chosen by magnitude).
pub fn parse_time(v: &Value) -> Option<Cell> {
    let micros = match v {
        Value::Number(n) => epoch_to_micros(n.as_f64()?)?,
        Value::String(s) => parse_time_str(s)?,
        _ => return None,
    };
    Some(Cell::Int(micros))
}

/// [`parse_time`] for text.
pub fn parse_time_str(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_micros());
    }
    if let Ok(f) = s.parse::<f64>() {
        return epoch_to_micros(f);
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.fZ",
    ]
    .iter()
    .find_map(|fmt| chrono::NaiveDateTime::parse_from_str(s, fmt).ok())?;
    Some(naive.and_utc().timestamp_micros())
}

/// Epoch seconds, milliseconds, microseconds or nanoseconds (by magnitude)
/// as microseconds.
pub fn epoch_to_micros(f: f64) -> Option<i64> {
    if !f.is_finite() || f <= 0.0 {
        return None;
    }
    let micros = if f < 1e11 {
        f * 1e6
    } else if f < 1e14 {
        f * 1e3
    } else if f < 1e17 {
        f
    } else {
        f / 1e3
    };
    Some(micros as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prov() -> Provenance {
        Provenance {
            topic: "t".into(),
            partition: Some(0),
            offset: Some(7),
            ingest_time_micros: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn implausible_times_fall_back_to_ingest_time_with_a_note() {
        for (time, says) in [
            (Value::from("1601-01-01T00:00:00Z"), "before 1990"),
            (Value::from("2999-01-01T00:00:00Z"), "more than a day after"),
            (Value::from("not a time"), "no readable time"),
        ] {
            let mut fields = Map::new();
            fields.insert("time".into(), time.clone());
            let mut d = Draft::new(fields);
            d.take(col::TIME, &["time"]);
            let row = d.finish(b"{}", &prov());
            assert_eq!(row.time(), prov().ingest_time_micros, "{time}");
            let unmapped: Value =
                serde_json::from_str(row.get_str(col::UNMAPPED).expect("unmapped")).expect("json");
            let notes = unmapped[NOTES_KEY].to_string();
            assert!(notes.contains(says), "{time}: {notes}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_with_its_position() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let err = parse_object(deep.as_bytes()).expect_err("too deep");
        assert!(err.to_string().contains("at byte 64"), "{err}");
        let inside_string = format!(r#"{{"a":"{}"}}"#, "[".repeat(100));
        assert!(parse_object(inside_string.as_bytes()).is_ok());
    }

    #[test]
    fn hex_and_decimal_integers() {
        assert_eq!(parse_int("0x1F4"), Some(500));
        assert_eq!(parse_int(" 42 "), Some(42));
        assert_eq!(parse_int("4x"), None);
    }
}

//! A whole event file decoded by ingest's parsers, outside any stream: what
//! `spoor rules test` evaluates and the detection bench measures, so both
//! read events exactly as ingest would.
//!
//! The format is given or guessed from the file. JSON formats are split
//! into top-level JSON values (one pretty-printed object, JSON Lines,
//! objects one after another and arrays all work), line formats into lines,
//! `.evtx` files into records by the evtx reader `spoor import` uses. The
//! result keeps file order: events and dead letters alike, so an item's
//! position is the event's position in its file.

use std::path::Path;

use serde_json::value::RawValue;
use spoor_common::config::SourceType;

use crate::parse::{Decoded, Decoder, Provenance, dead_letter};

/// Guesses a file's format from its name and first bytes.
pub fn guess_format(path: &Path, head: &str) -> SourceType {
    let trimmed = head.trim_start();
    if path.extension().is_some_and(|e| e == "evtx") {
        return SourceType::Windows;
    }
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let windows_keys = [
            "\"Event\"",
            "\"winlog\"",
            "\"EventID\"",
            "\"Channel\"",
            "\"EventId\"",
        ];
        if windows_keys.iter().any(|k| head.contains(k)) {
            return SourceType::Windows;
        }
        if head.contains("\"Records\"")
            || (head.contains("\"eventSource\"") && head.contains("\"eventVersion\""))
        {
            return SourceType::Cloudtrail;
        }
        if head.contains("\"operationName\"") && head.contains("\"properties\"") {
            return SourceType::Entra;
        }
        return SourceType::Json;
    }
    if trimmed.starts_with("#separator") || trimmed.starts_with("#fields") {
        return SourceType::Zeek;
    }
    if trimmed.starts_with("type=") || trimmed.contains(" type=") && trimmed.contains("msg=audit(")
    {
        return SourceType::Auditd;
    }
    if trimmed.contains("CEF:") {
        return SourceType::Cef;
    }
    if trimmed.contains("LEEF:") {
        return SourceType::Leef;
    }
    SourceType::Syslog
}

/// A file's inputs for the parser: top-level JSON values for JSON formats,
/// lines otherwise. Text that stops being a JSON stream goes on line by
/// line, and the parser names what is wrong with each.
pub fn inputs(text: &str, format: SourceType) -> Vec<&str> {
    let json_like = matches!(
        format,
        SourceType::Json | SourceType::Windows | SourceType::Cloudtrail | SourceType::Entra
    );
    if !json_like {
        return non_blank_lines(text);
    }
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
    loop {
        let start = stream.byte_offset();
        match stream.next() {
            Some(Ok(value)) => out.push(value.get()),
            Some(Err(_)) => {
                out.extend(non_blank_lines(&text[start..]));
                break;
            }
            None => break,
        }
    }
    out
}

fn non_blank_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Decodes a whole file with the parser of `format` (guessed when `None`),
/// in file order.
pub fn decode_file(path: &Path, format: Option<SourceType>) -> Result<Vec<Decoded>, String> {
    let file = path.display().to_string();
    let now = spoor_common::time::now_micros();
    let prov = |offset: Option<i64>| Provenance {
        topic: format!("file:{file}"),
        partition: None,
        offset,
        ingest_time_micros: now,
    };
    let mut out = Vec::new();
    #[cfg(not(feature = "evtx"))]
    if path.extension().is_some_and(|e| e == "evtx") {
        return Err(format!(
            "{file}: this build reads no .evtx files (feature `evtx`)"
        ));
    }
    #[cfg(feature = "evtx")]
    if path.extension().is_some_and(|e| e == "evtx") {
        // Binary event logs: each record as evtx-dump JSON; a record the
        // reader fails on is a dead letter of its own (its position counts).
        let mut decoder = Decoder::for_type(SourceType::Windows);
        let mut n = 0i64;
        crate::import::for_each_evtx_record(path, |record| {
            n += 1;
            match record {
                Ok(json) => decoder.decode(&json, &prov(Some(n)), &mut out),
                Err(reason) => out.push(Decoded::Dead(dead_letter(
                    Vec::new(),
                    &prov(Some(n)),
                    &format!("record {n}: {reason}"),
                ))),
            }
            true
        })
        .map_err(|e| format!("{file}: {e}"))?;
        decoder.flush(&prov(None), &mut out);
        return Ok(out);
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: {e}"))?;
    let head: String = text.chars().take(4096).collect();
    let format = format.unwrap_or_else(|| guess_format(path, &head));
    let mut decoder = Decoder::for_type(format);
    for (n, input) in inputs(&text, format).iter().enumerate() {
        decoder.decode(input.as_bytes(), &prov(Some(n as i64 + 1)), &mut out);
    }
    decoder.flush(&prov(None), &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_files_split_into_values_whatever_their_layout() {
        let pretty = "{\n  \"a\": 1\n}\n{\n  \"a\": 2\n}\n";
        assert_eq!(inputs(pretty, SourceType::Windows).len(), 2);
        assert_eq!(
            inputs("{\"a\":1}\n{\"a\":2}\n\n{\"a\":3}", SourceType::Json).len(),
            3
        );
        let broken = "{\"a\":1}\nnot json\n{\"b\":2}";
        assert_eq!(
            inputs(broken, SourceType::Json),
            ["{\"a\":1}", "not json", "{\"b\":2}"]
        );
        assert_eq!(inputs("l1\n\nl2\n", SourceType::Syslog), ["l1", "l2"]);
    }

    #[test]
    fn formats_are_guessed_from_content() {
        let p = Path::new("x.json");
        assert_eq!(
            guess_format(p, "{\"Event\": {\"System\": {}}}"),
            SourceType::Windows
        );
        assert_eq!(guess_format(p, "{\"Records\": []}"), SourceType::Cloudtrail);
        assert_eq!(guess_format(p, "{\"user\": \"x\"}"), SourceType::Json);
        assert_eq!(guess_format(p, "#separator \\x09"), SourceType::Zeek);
        assert_eq!(
            guess_format(p, "type=SYSCALL msg=audit(1.0:1): x"),
            SourceType::Auditd
        );
        assert_eq!(
            guess_format(p, "<13>Jan  1 host CEF:0|a|b"),
            SourceType::Cef
        );
        assert_eq!(
            guess_format(p, "<13>Jan  1 host sshd: hi"),
            SourceType::Syslog
        );
    }

    #[test]
    fn a_file_decodes_in_order_with_its_dead_letters() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("events.json");
        std::fs::write(
            &path,
            "{\"Channel\": \"Security\", \"EventID\": 4625, \"TimeCreated\": \"2024-05-01T10:00:00Z\"}\nnot json\n",
        )
        .expect("write");
        let decoded = decode_file(&path, None).expect("decode");
        assert_eq!(decoded.len(), 2);
        assert!(matches!(decoded[0], Decoded::Event(_)));
        assert!(matches!(decoded[1], Decoded::Dead(_)));
    }
}

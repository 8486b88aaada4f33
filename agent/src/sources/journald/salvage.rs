//! Salvage of a journal entry from a cut or damaged JSON line.
//!
//! journalctl prints each entry as one flat JSON object whose values are
//! strings, arrays (byte values, or the values of a repeated field) or null,
//! with `__CURSOR` and `__REALTIME_TIMESTAMP` first. When a line is longer
//! than `max_line_bytes` only its start is kept; [`salvage`] reads the
//! complete `"KEY": value` pairs of that start, plus what can be read of the
//! value that was cut (the beginning of a string, the whole bytes of an
//! array), so the event keeps its cursor, time and most of its message.
//! It never fails: it stops at the first thing it cannot read.

use serde_json::{Map, Value};

/// How many bytes to drop, at most, from the end of a cut string before
/// giving up: enough for a cut escape (`\uXXXX`, 6 bytes) or a cut UTF-8
/// character (4 bytes).
const MAX_STRING_TRIM_BYTES: usize = 8;

/// The fields readable from the start of a journal entry's JSON line. Empty
/// when the line does not start like a JSON object.
pub(crate) fn salvage(line: &[u8]) -> Map<String, Value> {
    let mut map = Map::new();
    let mut pos = skip_ws(line, 0);
    if line.get(pos) != Some(&b'{') {
        return map;
    }
    pos += 1;
    loop {
        pos = skip_ws(line, pos);
        let Some((Value::String(key), next)) = parse_value(line, pos) else {
            break;
        };
        pos = skip_ws(line, next);
        if line.get(pos) != Some(&b':') {
            break;
        }
        pos = skip_ws(line, pos + 1);
        match parse_value(line, pos) {
            Some((value, next)) => {
                map.insert(key, value);
                pos = skip_ws(line, next);
                if line.get(pos) != Some(&b',') {
                    break;
                }
                pos += 1;
            }
            None => {
                if let Some(value) = partial_value(&line[pos..]) {
                    map.insert(key, value);
                }
                break;
            }
        }
    }
    map
}

/// One whole JSON value at `pos`, and the position after it.
fn parse_value(line: &[u8], pos: usize) -> Option<(Value, usize)> {
    let rest = line.get(pos..)?;
    let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<Value>();
    match values.next() {
        Some(Ok(value)) => Some((value, pos + values.byte_offset())),
        _ => None,
    }
}

/// What can be read of a value cut by the end of the line: the start of a
/// string, or the complete byte values of an array (the last one may be cut
/// and is dropped).
fn partial_value(rest: &[u8]) -> Option<Value> {
    match rest.first()? {
        b'"' => (0..=MAX_STRING_TRIM_BYTES.min(rest.len().saturating_sub(1))).find_map(|trim| {
            let mut candidate = rest[..rest.len() - trim].to_vec();
            candidate.push(b'"');
            match serde_json::from_slice::<Value>(&candidate) {
                Ok(value @ Value::String(_)) => Some(value),
                _ => None,
            }
        }),
        b'[' => {
            let body = &rest[1..];
            let cut = body.iter().rposition(|&b| b == b',')?;
            let bytes = body[..cut]
                .split(|&b| b == b',')
                .map(|item| {
                    std::str::from_utf8(item)
                        .ok()
                        .and_then(|s| s.trim().parse::<u8>().ok())
                        .map(Value::from)
                })
                .collect::<Option<Vec<Value>>>()?;
            Some(Value::Array(bytes))
        }
        _ => None,
    }
}

fn skip_ws(line: &[u8], mut pos: usize) -> usize {
    while line.get(pos).is_some_and(u8::is_ascii_whitespace) {
        pos += 1;
    }
    pos
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value_of(line: &str) -> Value {
        Value::Object(salvage(line.as_bytes()))
    }

    #[test]
    fn whole_line_reads_every_field() {
        let line = r#"{"__CURSOR":"s=1;i=2","PRIORITY":"6","MESSAGE":[104,105],"X":null}"#;
        assert_eq!(
            value_of(line),
            json!({"__CURSOR":"s=1;i=2","PRIORITY":"6","MESSAGE":[104,105],"X":null})
        );
    }

    #[test]
    fn cut_string_keeps_its_start() {
        let line = r#"{"__CURSOR":"s=1;i=2", "MESSAGE" : "hello wor"#;
        assert_eq!(
            value_of(line),
            json!({"__CURSOR":"s=1;i=2","MESSAGE":"hello wor"})
        );
    }

    #[test]
    fn cut_escape_and_cut_utf8_are_trimmed() {
        let escape = r#"{"__CURSOR":"c","MESSAGE":"tab\there\u00"#;
        assert_eq!(
            value_of(escape),
            json!({"__CURSOR":"c","MESSAGE":"tab\there"})
        );
        let mut utf8 = br#"{"__CURSOR":"c","MESSAGE":"caf"#.to_vec();
        utf8.extend_from_slice(&"é".as_bytes()[..1]);
        assert_eq!(
            Value::Object(salvage(&utf8)),
            json!({"__CURSOR":"c","MESSAGE":"caf"})
        );
    }

    #[test]
    fn cut_byte_array_keeps_whole_bytes() {
        let line = r#"{"__CURSOR":"c","MESSAGE":[104,105,10"#;
        assert_eq!(value_of(line), json!({"__CURSOR":"c","MESSAGE":[104,105]}));
    }

    #[test]
    fn cut_key_or_garbage_stops_cleanly() {
        assert_eq!(
            value_of(r#"{"__CURSOR":"c","MESS"#),
            json!({"__CURSOR":"c"})
        );
        assert_eq!(value_of("not json"), json!({}));
        assert_eq!(value_of(""), json!({}));
        assert_eq!(value_of(r#"{"a":"b" "c":"d"}"#), json!({"a":"b"}));
    }
}

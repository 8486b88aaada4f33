//! Compact JSON writing of events, byte for byte as `serde_json` writes them.
//!
//! The agent writes every event it ships, so this is on the per-line path. `serde_json` checks
//! string bytes one at a time against its escape table; here a whole string is first checked
//! for characters to escape (a loop the compiler turns into vector instructions) and, as log
//! text rarely holds any, copied at once.
//!
//! Output invariants, the same as `serde_json::to_writer` (without `preserve_order` a map
//! iterates in key order, and this writer iterates it the same way):
//! - no whitespace; object members in the map's iteration order;
//! - in strings, `"` and `\` are escaped as `\"` and `\\`; the control characters U+0008,
//!   U+0009, U+000A, U+000C and U+000D as `\b`, `\t`, `\n`, `\f`, `\r`; the other ones below
//!   U+0020 as `\u00XX` with lowercase hex digits; everything else (DEL and non-ASCII
//!   included) is written as is;
//! - numbers are written by `serde_json` itself.

use serde_json::{Map, Number, Value};

/// Appends a JSON object.
pub(crate) fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>) {
    out.push(b'{');
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

/// Appends any JSON value.
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

/// Numbers are few in an event: `serde_json` writes them, so integers and floats keep its exact
/// formatting.
fn write_number(out: &mut Vec<u8>, n: &Number) {
    if serde_json::to_writer(&mut *out, n).is_err() {
        // Writing into a Vec cannot fail; keep the document valid all the same.
        out.extend_from_slice(b"null");
    }
}

/// Whether a byte must be escaped inside a JSON string.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Appends a JSON string: quoted, with the escapes listed in the module documentation.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // `fold` rather than `any`: without an early exit the check compiles to vector
    // instructions that test many bytes per step. Nearly every string passes it.
    if bytes
        .iter()
        .fold(false, |found, &b| found | needs_escape(b))
    {
        write_escaped(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

/// Appends the bytes of a string with its characters escaped: runs that need no escape are
/// copied whole.
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    // `start` is where the bytes not written yet begin.
    let mut start = 0;
    for (at, &b) in bytes.iter().enumerate() {
        if needs_escape(b) {
            out.extend_from_slice(&bytes[start..at]);
            write_escape(out, b);
            start = at + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends the escape sequence of a byte for which [`needs_escape`] holds.
fn write_escape(out: &mut Vec<u8>, b: u8) {
    const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";
    let short = match b {
        b'"' => b'"',
        b'\\' => b'\\',
        0x08 => b'b',
        0x09 => b't',
        0x0a => b'n',
        0x0c => b'f',
        0x0d => b'r',
        _ => {
            let hex = [
                HEX_DIGITS[usize::from(b >> 4)],
                HEX_DIGITS[usize::from(b & 0xf)],
            ];
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&hex);
            return;
        }
    };
    out.extend_from_slice(&[b'\\', short]);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ours(value: &Value) -> String {
        let mut out = Vec::new();
        write_value(&mut out, value);
        String::from_utf8(out).unwrap()
    }

    fn assert_same(value: &Value) {
        assert_eq!(
            ours(value),
            serde_json::to_string(value).unwrap(),
            "{value:?}"
        );
    }

    #[test]
    fn every_ascii_and_some_unicode_escape_like_serde_json() {
        for b in 0u8..=0x7f {
            let c = char::from(b);
            // The character alone, and at every position of a string longer than a chunk, so
            // both the chunk check and the byte loop meet it.
            assert_same(&Value::String(c.to_string()));
            for at in 0..40 {
                let mut s: String = "abcdefghijklmnopqrstuvwxyz0123456789ABCD".into();
                s.insert(at, c);
                assert_same(&Value::String(s));
            }
        }
        for s in [
            "",
            "é",
            "U+FFFD \u{fffd}, BOM \u{feff}, emoji 🦀, line sep \u{2028}",
            "\"quoted\" \\ back\\slash \t tab \r\n crlf \u{1f} \u{0} \u{7f}",
            "ends with an escape\n",
            "\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\",
        ] {
            assert_same(&Value::String(s.into()));
        }
    }

    #[test]
    fn documents_match_serde_json() {
        assert_same(&json!({}));
        assert_same(&json!([]));
        assert_same(&json!({
            "@timestamp": "2026-11-26T10:00:00.000000Z",
            "z": null, "t": true, "f": false,
            "numbers": [0, 1, -1, 48211, u64::MAX, i64::MIN, 1.5, -0.0, 1e300, 0.1, 12345678.9],
            "nested": {"a": {"b": {"c": ["x", {"d\n": "e\"f"}]}}, "empty": {}},
            "k\u{1}ey": "v",
        }));
    }

    #[test]
    fn pseudo_random_strings_match_serde_json() {
        // Mostly plain text with some characters to escape, of lengths around the vector widths.
        let alphabet: Vec<char> = "ab c\"\\\n\t\u{1}\u{1f}é€🦀x".chars().collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5_000 {
            let len = next() % 70;
            let s: String = (0..len)
                .map(|_| match next() {
                    r if r & 3 == 0 => alphabet[(r >> 8) as usize % alphabet.len()],
                    _ => 'p',
                })
                .collect();
            assert_same(&Value::String(s));
        }
    }
}

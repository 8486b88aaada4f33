//! The `json` codec: one JSON object per line, kept as the event.
//!
//! The object is kept as it is (nested objects included) with these adjustments, so that the
//! fields every event carries can be written without losing data:
//! - `@timestamp` is read from `@timestamp`, else `timestamp`, `time` or `ts` (the first that
//!   parses: RFC 3339, or an epoch number or numeric string in seconds, milliseconds,
//!   microseconds or nanoseconds, told apart by magnitude) and rewritten in Vigie's form (RFC
//!   3339, UTC, microseconds); the source fields other than `@timestamp` are kept. Without any,
//!   `@timestamp` is the read time;
//! - `message`, when absent, is copied from a string `msg` or `log` (Docker's json-file format,
//!   trailing newline dropped), else it is the raw line;
//! - a top-level `event`, `host` or `log` that is not an object would block `event.kind`,
//!   `host.name` or `log.flags`; its value moves to `event.action`, `host.name` or
//!   `log.original` respectively (Teleport writes `"event":"session.start"`, many apps
//!   `"host":"web-1"`).
//!
//! A line that is not a JSON object (invalid JSON, an array, a scalar, nesting deeper than
//! serde_json's recursion limit of 128) is a parse failure.

use serde_json::{Map, Value};
use vigie_event::{fields, Event};

use crate::time;
use crate::{Context, NotParsed};

/// Fields read, in order, for `@timestamp`.
const TIME_FIELDS: [&str; 4] = [fields::TIMESTAMP, "timestamp", "time", "ts"];

/// Fields read, in order, for `message` when the object has none.
const MESSAGE_FIELDS: [&str; 2] = ["msg", "log"];

/// Top-level keys that must hold objects, and where a scalar found there moves to.
const BLOCKING_KEYS: [(&str, &str); 3] =
    [("event", "action"), ("host", "name"), ("log", "original")];

/// Decodes one JSON line.
pub(crate) fn decode(text: &str, ctx: &Context) -> Result<Event, NotParsed> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut map = match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(map)) => map,
        _ => return Err(NotParsed),
    };
    let ts = TIME_FIELDS
        .iter()
        .find_map(|key| map.get(*key).and_then(|v| timestamp_value(v, ctx)))
        .unwrap_or(ctx.now);
    if !map.contains_key(fields::MESSAGE) {
        let message = MESSAGE_FIELDS
            .iter()
            .find_map(|key| map.get(*key).and_then(Value::as_str))
            .map(|m| m.strip_suffix('\n').unwrap_or(m).to_owned())
            .unwrap_or_else(|| text.to_owned());
        map.insert(fields::MESSAGE.to_owned(), Value::String(message));
    }
    for (key, sub) in BLOCKING_KEYS {
        make_room(&mut map, key, sub);
    }
    let mut ev = Event::from_map(map);
    ev.set_timestamp(ts);
    Ok(ev)
}

/// Reads a timestamp value: an RFC 3339 string (local offset when it has none), an epoch number,
/// or a string of digits (an epoch number written as a string).
fn timestamp_value(v: &Value, ctx: &Context) -> Option<chrono::DateTime<chrono::Utc>> {
    match v {
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                time::from_epoch_int(s.parse().ok()?)
            } else {
                time::rfc3339_exact(s)?.to_utc(ctx.local_offset)
            }
        }
        Value::Number(n) => match n.as_i64() {
            Some(i) => time::from_epoch_int(i),
            None => time::from_epoch(n.as_f64()?),
        },
        _ => None,
    }
}

/// Moves a non-object value at `key` to `key.sub` so that `key` can hold an object.
fn make_room(map: &mut Map<String, Value>, key: &str, sub: &str) {
    if let Some(slot) = map.get_mut(key) {
        if !slot.is_object() {
            let old = slot.take();
            let mut inner = Map::new();
            inner.insert(sub.to_owned(), old);
            *slot = Value::Object(inner);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use serde_json::json;

    fn ctx() -> Context {
        Context::new(
            DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        )
    }

    fn decode_value(line: &str) -> Option<Value> {
        decode(line, &ctx()).ok().map(Event::into_value)
    }

    #[test]
    fn not_objects_fail() {
        for line in [
            "", "[1,2]", "42", "\"str\"", "null", "{\"a\":", "{} {}", "not json",
        ] {
            assert!(decode(line, &ctx()).is_err(), "{line:?}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        assert!(decode(&deep, &ctx()).is_err());
        let ok = format!("{}1{}", "{\"a\":".repeat(100), "}".repeat(100));
        assert!(decode(&ok, &ctx()).is_ok());
    }

    #[test]
    fn timestamp_fallbacks_in_order() {
        let v = decode_value(r#"{"time":"2026-11-26T10:00:00+01:00","ts":1}"#).unwrap();
        assert_eq!(v["@timestamp"], json!("2026-11-26T09:00:00.000000Z"));
        assert_eq!(v["time"], json!("2026-11-26T10:00:00+01:00"));
        // An unreadable candidate is skipped.
        let v = decode_value(r#"{"timestamp":"yesterday","ts":1700000000123}"#).unwrap();
        assert_eq!(v["@timestamp"], json!("2023-11-14T22:13:20.123000Z"));
        let v = decode_value(r#"{"ts":"1700000000"}"#).unwrap();
        assert_eq!(v["@timestamp"], json!("2023-11-14T22:13:20.000000Z"));
        let v = decode_value(r#"{"ts":1700000000.5}"#).unwrap();
        assert_eq!(v["@timestamp"], json!("2023-11-14T22:13:20.500000Z"));
        // None at all: read time.
        let v = decode_value(r#"{"a":1}"#).unwrap();
        assert_eq!(v["@timestamp"], json!("2026-11-26T12:00:00.000000Z"));
    }

    #[test]
    fn blocking_scalars_move_aside() {
        let v = decode_value(r#"{"event":"session.start","host":"web-1","log":"hi\n"}"#).unwrap();
        assert_eq!(v["event"], json!({"action":"session.start"}));
        assert_eq!(v["host"], json!({"name":"web-1"}));
        assert_eq!(v["log"], json!({"original":"hi\n"}));
        assert_eq!(v["message"], json!("hi"));
    }

    #[test]
    fn message_fallbacks() {
        assert_eq!(
            decode_value(r#"{"msg":"m","log":"l"}"#).unwrap()["message"],
            json!("m")
        );
        assert_eq!(
            decode_value(r#"{"message":{"x":1},"msg":"m"}"#).unwrap()["message"],
            json!({"x":1})
        );
        assert_eq!(
            decode_value(r#"{"a":1}"#).unwrap()["message"],
            json!(r#"{"a":1}"#)
        );
    }
}

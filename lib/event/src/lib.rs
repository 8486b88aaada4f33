//! Vigie's event model.
//!
//! An [`Event`] is a JSON object shaped like an ECS document: nested objects
//! (`{"process":{"command_line":"…"}}`), read and written through dotted paths
//! (`process.command_line`). The agent builds events from raw lines, the wire
//! carries them as NDJSON, and the collector stores them as they are.
//!
//! Invariants kept by the helpers here:
//! - [`Event::set`] creates intermediate objects and replaces a non-object on
//!   the way, so a path always ends up holding the value it was given;
//! - [`Event::get`] first tries the nested path, then a literal key holding
//!   dots (events that arrive raw, e.g. `{"event.code":"4624"}`), so both
//!   shapes are readable;
//! - `log.flags` is a set of short strings (no duplicates) that records what
//!   happened to the line on its way (truncated, parse failure, …).
//!
//! The agent runs these helpers for every log line, so they avoid needless
//! work: a path is walked once per call, each level searched once, and a key
//! is copied into the event only when it is inserted.
//! [`Event::write_json`] writes the exact bytes `serde_json` would, faster.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod json;

/// Well-known ECS field paths used across Vigie.
pub mod fields {
    pub const TIMESTAMP: &str = "@timestamp";
    pub const MESSAGE: &str = "message";
    pub const EVENT_ORIGINAL: &str = "event.original";
    pub const EVENT_DATASET: &str = "event.dataset";
    pub const EVENT_KIND: &str = "event.kind";
    pub const EVENT_CATEGORY: &str = "event.category";
    pub const EVENT_TYPE: &str = "event.type";
    pub const EVENT_OUTCOME: &str = "event.outcome";
    pub const EVENT_INGESTED: &str = "event.ingested";
    pub const EVENT_MODULE: &str = "event.module";
    pub const EVENT_SEVERITY: &str = "event.severity";
    pub const HOST_NAME: &str = "host.name";
    pub const HOST_HOSTNAME: &str = "host.hostname";
    pub const AGENT_ID: &str = "agent.id";
    pub const AGENT_NAME: &str = "agent.name";
    pub const AGENT_TYPE: &str = "agent.type";
    pub const AGENT_VERSION: &str = "agent.version";
    pub const LOG_FILE_PATH: &str = "log.file.path";
    pub const LOG_OFFSET: &str = "log.offset";
    pub const LOG_FLAGS: &str = "log.flags";
    pub const LOG_LEVEL: &str = "log.level";
    pub const LOG_SYSLOG_PRIORITY: &str = "log.syslog.priority";
    pub const LOG_SYSLOG_FACILITY_CODE: &str = "log.syslog.facility.code";
    pub const LOG_SYSLOG_SEVERITY_CODE: &str = "log.syslog.severity.code";
    pub const LOG_SYSLOG_APPNAME: &str = "log.syslog.appname";
    pub const LOG_SYSLOG_HOSTNAME: &str = "log.syslog.hostname";
    pub const LOG_SYSLOG_MSGID: &str = "log.syslog.msgid";
    pub const LOG_SYSLOG_VERSION: &str = "log.syslog.version";
    pub const LOG_SYSLOG_STRUCTURED_DATA: &str = "log.syslog.structured_data";
    pub const PROCESS_NAME: &str = "process.name";
    pub const PROCESS_PID: &str = "process.pid";
    pub const USER_NAME: &str = "user.name";
    pub const USER_ID: &str = "user.id";
    pub const SOURCE_IP: &str = "source.ip";
    pub const DESTINATION_IP: &str = "destination.ip";
    pub const SERVICE_NAME: &str = "service.name";
    pub const SYSTEMD_UNIT: &str = "systemd.unit";
    pub const LOGSOURCE_PRODUCT: &str = "vigie.logsource.product";
    pub const LOGSOURCE_CATEGORY: &str = "vigie.logsource.category";
    pub const LOGSOURCE_SERVICE: &str = "vigie.logsource.service";
    pub const VIGIE_SOURCE: &str = "vigie.source";
    pub const VIGIE_DETECTIONS: &str = "vigie.detections";
    pub const VIGIE_RULEPACK: &str = "vigie.rulepack";
}

/// Values of `log.flags`: what happened to a line on its way in.
pub mod flags {
    /// The line was longer than `max_line_bytes` and was cut.
    pub const TRUNCATED: &str = "truncated";
    /// The codec could not parse the line; it is kept as a plain message.
    pub const PARSE_FAILURE: &str = "parse_failure";
    /// The line held bytes that are not UTF-8; they were replaced by U+FFFD.
    pub const INVALID_UTF8: &str = "invalid_utf8";
    /// Several physical lines were joined into this event.
    pub const MULTILINE: &str = "multiline";
    /// The timestamp could not be read from the line; `@timestamp` is the read time.
    pub const TIMESTAMP_MISSING: &str = "timestamp_missing";
}

/// An ECS-shaped event: a JSON object with dotted-path helpers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Event(Map<String, Value>);

impl Event {
    /// An empty event.
    pub fn new() -> Self {
        Self(Map::new())
    }

    /// Wraps an existing JSON object.
    pub fn from_map(map: Map<String, Value>) -> Self {
        Self(map)
    }

    /// Wraps a JSON value if it is an object.
    pub fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Self(map)),
            _ => None,
        }
    }

    /// The underlying object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The underlying object, mutable.
    pub fn as_map_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.0
    }

    /// Consumes the event into its JSON object.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    /// Consumes the event into a JSON value.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }

    /// Reads a field by dotted path (`process.command_line`), falling back to a
    /// literal key that holds dots.
    pub fn get(&self, path: &str) -> Option<&Value> {
        get_path(&self.0, path)
    }

    /// Reads a string field by dotted path.
    pub fn get_str(&self, path: &str) -> Option<&str> {
        self.get(path).and_then(Value::as_str)
    }

    /// Reads an integer field by dotted path; numeric strings are accepted.
    pub fn get_i64(&self, path: &str) -> Option<i64> {
        match self.get(path)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// Whether the field exists (with any value, null included).
    pub fn contains(&self, path: &str) -> bool {
        self.get(path).is_some()
    }

    /// Writes a field by dotted path, creating the objects on the way.
    pub fn set(&mut self, path: &str, value: impl Into<Value>) {
        let value = value.into();
        with_parent(&mut self.0, path, |parent, last| {
            // `insert` keeps the key already there, if any; the key is usually new.
            parent.insert(last.to_owned(), value);
        });
    }

    /// Writes a field only when it is not present yet (see [`Event::contains`]).
    pub fn set_default(&mut self, path: &str, value: impl Into<Value>) {
        // A literal key holding the whole dotted path counts as present; checked first so
        // that no parent object is created for nothing.
        if path.contains('.') && self.0.contains_key(path) {
            return;
        }
        // When the nested field exists its parents are objects already: nothing is created.
        with_parent(&mut self.0, path, |parent, last| {
            if !parent.contains_key(last) {
                parent.insert(last.to_owned(), value.into());
            }
        });
    }

    /// Removes a field by dotted path and returns its value. Objects left empty
    /// by the removal are kept (ECS does not care, and removal stays cheap).
    pub fn remove(&mut self, path: &str) -> Option<Value> {
        if let Some(v) = self.0.remove(path) {
            return Some(v);
        }
        let mut cur = &mut self.0;
        let mut rest = path;
        while let (part, Some(tail)) = split_first(rest) {
            cur = cur.get_mut(part)?.as_object_mut()?;
            rest = tail;
        }
        cur.remove(rest)
    }

    /// Adds a flag to `log.flags` (kept as a set).
    pub fn add_flag(&mut self, flag: &str) {
        with_parent(
            &mut self.0,
            fields::LOG_FLAGS,
            |parent, last| match parent.get_mut(last) {
                Some(Value::Array(items)) => {
                    if !items.iter().any(|v| v.as_str() == Some(flag)) {
                        items.push(Value::String(flag.to_owned()));
                    }
                }
                Some(other) => *other = Value::Array(vec![Value::String(flag.to_owned())]),
                None => {
                    let flags = vec![Value::String(flag.to_owned())];
                    parent.insert(last.to_owned(), Value::Array(flags));
                }
            },
        );
    }

    /// Whether `log.flags` holds this flag.
    pub fn has_flag(&self, flag: &str) -> bool {
        match self.get(fields::LOG_FLAGS) {
            Some(Value::Array(items)) => items.iter().any(|v| v.as_str() == Some(flag)),
            _ => false,
        }
    }

    /// Sets `@timestamp` from a UTC time, in RFC 3339 with microseconds.
    pub fn set_timestamp(&mut self, ts: DateTime<Utc>) {
        self.set(fields::TIMESTAMP, format_timestamp(ts));
    }

    /// Reads `@timestamp` (RFC 3339, or epoch milliseconds as a number).
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        parse_timestamp_value(self.get(fields::TIMESTAMP)?)
    }

    /// Appends the event as one compact JSON object (no newline) to `out`:
    /// the same bytes as `serde_json::to_writer(out, self.as_map())`, about a
    /// fifth faster (each string is checked for characters to escape with
    /// vector instructions, then copied whole).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        json::write_object(out, &self.0);
    }

    /// The event as one JSON line, without the newline.
    pub fn to_json_line(&self) -> String {
        // Serializing a Map of Values cannot fail.
        serde_json::to_string(&self.0).unwrap_or_else(|_| String::from("{}"))
    }
}

impl From<Map<String, Value>> for Event {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

/// Formats a time as Vigie writes `@timestamp`: RFC 3339, UTC, microseconds
/// (`2026-11-26T10:00:00.123456Z`, the fraction truncated, not rounded).
pub fn format_timestamp(ts: DateTime<Utc>) -> String {
    let (date, time) = (ts.date_naive(), ts.time());
    let (year, nanos) = (date.year(), time.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // Signed years and leap seconds: rare, left to chrono.
        return ts.to_rfc3339_opts(SecondsFormat::Micros, true);
    }
    // The same text as chrono's, written digit by digit: chrono goes through
    // `fmt` machinery that costs several times more, once per log line.
    let mut out = String::with_capacity(27);
    push_digits(&mut out, year.unsigned_abs(), 4);
    out.push('-');
    push_digits(&mut out, date.month(), 2);
    out.push('-');
    push_digits(&mut out, date.day(), 2);
    out.push('T');
    push_digits(&mut out, time.hour(), 2);
    out.push(':');
    push_digits(&mut out, time.minute(), 2);
    out.push(':');
    push_digits(&mut out, time.second(), 2);
    out.push('.');
    push_digits(&mut out, nanos / 1_000, 6);
    out.push('Z');
    out
}

/// Appends the last `width` decimal digits of `value`, zero-padded.
fn push_digits(out: &mut String, value: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = value / 10u32.pow(place) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// Reads a timestamp value: an RFC 3339 string, or a number of epoch
/// milliseconds.
pub fn parse_timestamp_value(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        Value::Number(n) => n.as_i64().and_then(DateTime::<Utc>::from_timestamp_millis),
        _ => None,
    }
}

/// Splits a dotted path at its first dot: the first part, and the rest if
/// there was a dot.
fn split_first(path: &str) -> (&str, Option<&str>) {
    match path.bytes().position(|b| b == b'.') {
        Some(i) => (&path[..i], Some(&path[i + 1..])),
        None => (path, None),
    }
}

/// [`Event::get`] on a bare JSON object (an event not wrapped in [`Event`]).
pub fn get_path<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    match nested_get(map, path) {
        None if path.contains('.') => map.get(path),
        found => found,
    }
}

/// The value at a dotted path, through nested objects only.
fn nested_get<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut cur = map;
    let mut rest = path;
    while let (part, Some(tail)) = split_first(rest) {
        cur = cur.get(part)?.as_object()?;
        rest = tail;
    }
    cur.get(rest)
}

/// Calls `f` with the object that holds the last part of `path`, and that part. The parent
/// objects are created where missing, and a non-object on the way is replaced by one.
///
/// Each level is searched once; a key is copied only when its object is created. (A loop that
/// hands out `&mut` to the parent would have to search twice: the borrow checker does not let a
/// borrow from a failed `get_mut` end early. The recursion returns no borrow, so it can; its
/// depth is the number of parts of `path`, a handful for ECS fields.)
fn with_parent<R>(
    map: &mut Map<String, Value>,
    path: &str,
    f: impl FnOnce(&mut Map<String, Value>, &str) -> R,
) -> R {
    match split_first(path) {
        (last, None) => f(map, last),
        (part, Some(rest)) => {
            if let Some(Value::Object(child)) = map.get_mut(part) {
                return with_parent(child, rest, f);
            }
            let mut child = Map::new();
            let result = with_parent(&mut child, rest, f);
            map.insert(part.to_owned(), Value::Object(child));
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_and_get_nested_paths() {
        let mut e = Event::new();
        e.set("process.command_line", "ls -la");
        e.set("process.pid", 42);
        assert_eq!(e.get_str("process.command_line"), Some("ls -la"));
        assert_eq!(e.get_i64("process.pid"), Some(42));
        assert_eq!(
            e.into_value(),
            json!({"process":{"command_line":"ls -la","pid":42}})
        );
    }

    #[test]
    fn literal_dotted_keys_are_readable() {
        let e = Event::from_value(json!({"event.code":"4624","a":{"b":1}})).unwrap();
        assert_eq!(e.get_str("event.code"), Some("4624"));
        assert_eq!(e.get_i64("a.b"), Some(1));
        assert_eq!(e.get("a.c"), None);
    }

    #[test]
    fn set_replaces_scalars_on_the_way() {
        let mut e = Event::from_value(json!({"user":"root"})).unwrap();
        e.set("user.name", "root");
        assert_eq!(e.get_str("user.name"), Some("root"));
    }

    #[test]
    fn flags_are_a_set() {
        let mut e = Event::new();
        e.add_flag(flags::TRUNCATED);
        e.add_flag(flags::TRUNCATED);
        e.add_flag(flags::INVALID_UTF8);
        assert!(e.has_flag(flags::TRUNCATED));
        assert_eq!(
            e.get("log.flags"),
            Some(&json!(["truncated", "invalid_utf8"]))
        );
    }

    #[test]
    fn remove_nested_and_literal() {
        let mut e = Event::from_value(json!({"a":{"b":1,"c":2},"x.y":3})).unwrap();
        assert_eq!(e.remove("a.b"), Some(json!(1)));
        assert_eq!(e.remove("x.y"), Some(json!(3)));
        assert_eq!(e.remove("a.zz"), None);
        assert_eq!(e.into_value(), json!({"a":{"c":2}}));
    }

    #[test]
    fn timestamps_round_trip() {
        let mut e = Event::new();
        let t = DateTime::parse_from_rfc3339("2026-11-26T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        e.set_timestamp(t);
        assert_eq!(e.get_str("@timestamp"), Some("2026-11-26T10:00:00.123456Z"));
        assert_eq!(e.timestamp(), Some(t));
        let e2 = Event::from_value(json!({"@timestamp": 1_700_000_000_000i64})).unwrap();
        assert_eq!(e2.timestamp().unwrap().timestamp(), 1_700_000_000);
    }

    #[test]
    fn timestamps_format_like_chrono() {
        let chrono_text = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Seconds from year 0 to 9999, any nanosecond.
            let secs = (state % 315_537_897_600) as i64 - 62_167_219_200;
            let nanos = (state >> 40) as u32 % 1_000_000_000;
            let t = DateTime::from_timestamp(secs, nanos).unwrap();
            assert_eq!(format_timestamp(t), chrono_text(t));
        }
        for text in [
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "2026-11-26T10:00:00.000000999Z",
            "-0001-12-31T23:59:59Z",
            "+10000-01-01T00:00:00Z",
        ] {
            let t = DateTime::parse_from_rfc3339(text)
                .map(|t| t.to_utc())
                .or_else(|_| text.parse::<DateTime<Utc>>())
                .unwrap();
            assert_eq!(format_timestamp(t), chrono_text(t), "{text}");
        }
        // A leap second, as chrono holds it (second 59, nanoseconds past one billion).
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_micro_opt(23, 59, 59, 1_500_000))
            .unwrap()
            .and_utc();
        assert_eq!(format_timestamp(leap), "2016-12-31T23:59:60.500000Z");
    }

    #[test]
    fn write_json_is_serde_json_compact_output() {
        let mut e = Event::new();
        e.set_timestamp(DateTime::from_timestamp(1_764_151_200, 0).unwrap());
        e.set("message", "Failed password for \"root\"\tfrom 203.0.113.45");
        e.set("process.pid", 48211);
        e.set("log.offset", 12_345_678_901u64);
        e.set("log.syslog.appname", "sshd");
        e.add_flag(flags::TRUNCATED);
        e.as_map_mut().insert("event.code".into(), json!(4624));
        let mut out = b"previous line\n".to_vec();
        e.write_json(&mut out);
        let expected = format!(
            "previous line\n{}",
            serde_json::to_string(e.as_map()).unwrap()
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn set_default_and_get_see_nested_and_literal_keys() {
        let mut e = Event::from_value(json!({"event.kind":"alert","host":"h"})).unwrap();
        e.set_default("event.kind", "event");
        e.set_default("host.name", "agent-host");
        e.set_default("agent.type", "vigie");
        e.set_default("agent.type", "other");
        assert_eq!(
            e.into_value(),
            json!({"event.kind":"alert","host":{"name":"agent-host"},"agent":{"type":"vigie"}})
        );
    }
}

//! Events that do not come from agents: SaaS logs pushed to an intake
//! (`POST /api/v1/intake/{key}`) or pulled by a connector. Both go the same way:
//!
//! 1. the body is split into JSON records: one object, an array of objects, or NDJSON
//!    (several objects one after the other); a CloudTrail `{"Records": [...]}` file is split
//!    into its records. A record that is not a JSON object, or a body that is not JSON,
//!    refuses the whole body (nothing is stored, the sender can fix and send again);
//! 2. each record is normalized by the intake's format, a built-in parser
//!    (`rules/parsers/*.yml`) or the `json` codec, keeping the record in `event.original`;
//!    `event.ingested` and `vigie.source` (`intake:<name>` or `connector:<name>`) are set;
//! 3. the events are evaluated by the central rule pack, stored durably like an agent batch,
//!    then their detections feed the correlations and raise alerts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use vigie_event::{fields, format_timestamp};
use vigie_parse::{Codec, Context, Parser, Registry};
use vigie_wire::BatchId;

use crate::api::AppState;
use crate::ingest::{IndexError, IndexOutcome};

/// Most records one request (or one connector page) may hold.
pub const MAX_RECORDS: usize = 100_000;

/// How the records of a source are normalized.
#[derive(Clone, Copy)]
pub enum Format {
    /// A built-in parser.
    Parser(&'static Parser),
    /// A codec (`json`: the record as it is).
    Codec(Codec),
}

impl Format {
    /// The format named `name`: a built-in parser, else a codec.
    pub fn resolve(name: &str) -> Result<Format, String> {
        if let Some(p) = Registry::shared().get(name) {
            return Ok(Format::Parser(p));
        }
        match name.parse::<Codec>() {
            Ok(c) => Ok(Format::Codec(c)),
            Err(_) => Err(format!(
                "unknown format {name:?}: use a parser ({}) or \"json\"",
                Registry::shared().names().join(", ")
            )),
        }
    }
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("the body is not JSON (record {record}): {reason}")]
    NotJson { record: usize, reason: String },
    #[error("record {record} is not a JSON object")]
    NotObject { record: usize },
    #[error("the body holds more than {max} records")]
    TooMany { max: usize },
    #[error("the body holds no record")]
    Empty,
}

/// Splits a body into records (see the module documentation).
pub fn split_records(body: &[u8], max: usize) -> Result<Vec<Map<String, Value>>, BodyError> {
    let mut out = Vec::new();
    let push = |v: Value, record: usize, out: &mut Vec<Map<String, Value>>| {
        if out.len() >= max {
            return Err(BodyError::TooMany { max });
        }
        match v {
            Value::Object(m) => {
                out.push(m);
                Ok(())
            }
            _ => Err(BodyError::NotObject { record }),
        }
    };
    let stream = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    for (i, value) in stream.enumerate() {
        let value = value.map_err(|e| BodyError::NotJson {
            record: out.len() + 1,
            reason: e.to_string(),
        })?;
        match value {
            Value::Array(items) => {
                for item in items {
                    let n = out.len() + 1;
                    push(item, n, &mut out)?;
                }
            }
            Value::Object(mut m) => {
                // A CloudTrail file: {"Records": [...]}.
                if m.len() == 1 {
                    if let Some(Value::Array(records)) = m.remove("Records") {
                        for item in records {
                            let n = out.len() + 1;
                            push(item, n, &mut out)?;
                        }
                        continue;
                    }
                }
                let n = out.len() + 1;
                push(Value::Object(m), n, &mut out)?;
            }
            _ => return Err(BodyError::NotObject { record: i + 1 }),
        }
    }
    if out.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(out)
}

/// Normalizes records with `format`; `source` goes to `vigie.source`.
pub fn normalize(
    records: Vec<Map<String, Value>>,
    format: Format,
    source: &str,
    now: DateTime<Utc>,
) -> Vec<Map<String, Value>> {
    let ctx = Context::new(now);
    let ingested = Value::String(format_timestamp(now));
    records
        .into_iter()
        .map(|record| {
            let line = serde_json::to_vec(&Value::Object(record)).unwrap_or_default();
            let mut ev = match format {
                Format::Parser(p) => p.parse(&line, &ctx),
                Format::Codec(c) => vigie_parse::decode(c, &line, false, &ctx),
            };
            ev.set(fields::EVENT_INGESTED, ingested.clone());
            ev.set("vigie.source", source);
            ev.into_map()
        })
        .collect()
}

/// Batch sequence numbers for intakes and connectors: unique within a process and
/// increasing across restarts (they start from the clock).
fn next_sequence() -> u64 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(Utc::now().timestamp_micros()).unwrap_or(0);
    let mut cur = SEQ.load(Ordering::Relaxed);
    loop {
        let next = now.max(cur + 1);
        match SEQ.compare_exchange(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => cur = seen,
        }
    }
}

/// Evaluates, stores durably and alerts on normalized events from `source_id`
/// (`intake:<id>`, `connector:<name>`); the number stored.
pub async fn store(
    st: &Arc<AppState>,
    source_id: &str,
    events: Vec<Map<String, Value>>,
) -> Result<u64, IndexError> {
    let st2 = st.clone();
    let events = tokio::task::spawn_blocking(move || {
        let mut events = events;
        let counts = st2.central.evaluate(&mut events, None);
        crate::api::agent::count_central(&st2, counts);
        events
    })
    .await
    .map_err(|e| IndexError::Storage(e.to_string()))?;
    let batch = BatchId {
        stream: "external".into(),
        sequence: next_sequence(),
    };
    match crate::api::agent::store_and_alert(st, source_id.to_owned(), batch, events).await? {
        IndexOutcome::Stored(n) => Ok(n),
        IndexOutcome::Duplicate => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_split_into_records() {
        let one = split_records(br#"{"a":1}"#, 10).unwrap();
        assert_eq!(one.len(), 1);
        let arr = split_records(br#"[{"a":1},{"a":2}]"#, 10).unwrap();
        assert_eq!(arr.len(), 2);
        let nd = split_records(b"{\"a\":1}\n{\"a\":2}\n\n{\"a\":3}\n", 10).unwrap();
        assert_eq!(nd.len(), 3);
        let trail =
            split_records(br#"{"Records":[{"eventName":"A"},{"eventName":"B"}]}"#, 10).unwrap();
        assert_eq!(trail[1]["eventName"], "B");
        assert_eq!(
            split_records(b"{\"a\":1}\n{\"a\":", 10),
            Err(BodyError::NotJson {
                record: 2,
                reason: "EOF while parsing a value at line 2 column 5".into()
            })
        );
        assert_eq!(
            split_records(b"[{\"a\":1}, 3]", 10),
            Err(BodyError::NotObject { record: 2 })
        );
        assert_eq!(split_records(b"  ", 10), Err(BodyError::Empty));
        assert_eq!(
            split_records(b"[{},{},{}]", 2),
            Err(BodyError::TooMany { max: 2 })
        );
    }

    #[test]
    fn records_are_normalized_by_their_format() {
        let now = Utc::now();
        let rec = split_records(br#"{"msg":"hello","user":"alice"}"#, 1).unwrap();
        let ev = normalize(rec, Format::resolve("json").unwrap(), "intake:test", now);
        assert_eq!(ev[0]["vigie"]["source"], "intake:test");
        assert!(ev[0].contains_key("@timestamp"));
        assert!(Format::resolve("nosuchformat").is_err());
        assert!(matches!(
            Format::resolve("linux_auth"),
            Ok(Format::Parser(_))
        ));
        let seq = next_sequence();
        assert!(next_sequence() > seq);
    }
}

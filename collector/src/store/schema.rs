//! The tantivy schema of a day index, and the document that feeds it.
//!
//! Every day index has the same four fields:
//! - `ts` — the event time (`@timestamp`, else `event.ingested`, else the
//!   time it was added), a date fast field with microsecond precision, used
//!   for time ranges and the newest-first sort; not indexed, not stored;
//! - `kw` — a JSON field holding the whole event flattened to keyword terms:
//!   each string value is one raw term (exact, case-sensitive), numbers and
//!   booleans are typed terms, arrays index each element, and dotted keys are
//!   expanded (`{"host.name":…}` and `{"host":{"name":…}}` give the same
//!   path). The full-text fields (`message`, `event.original`) and
//!   `@timestamp` are replaced there by a `true` marker, so `field:*` still
//!   finds them without indexing long or unique strings as keywords;
//! - `text` — `message` (or `event.original` when there is no message),
//!   tokenized by tantivy's
//!   `default` tokenizer (split on non-alphanumerics, lowercased, tokens over
//!   40 bytes dropped), with positions for phrases;
//! - `src` — the event serialized once as JSON, stored (compressed by the
//!   doc store) and returned as is by searches;
//! - `grp` — the ingest commit group that added the event (indexed, not
//!   stored): after a crash in the middle of a group, its events are
//!   deleted by this term (see `ingest.rs`).
//!
//! [`EventDoc`] implements tantivy's [`Document`] over a flattened copy of
//! the event (one string buffer and one vector of leaves), built on the
//! caller's thread; the indexing thread borrows it and frees two allocations.

use serde_json::{Map, Value};
use tantivy::schema::document::{ReferenceValue, ReferenceValueLeaf};
use tantivy::schema::{
    BytesOptions, DateOptions, DateTimePrecision, Document, Field, IndexRecordOption,
    JsonObjectOptions, NumericOptions, Schema, TextFieldIndexing, TextOptions,
    Value as TantivyValue,
};
use tantivy::DateTime as TantivyDateTime;

/// Name of the date fast field (event time).
pub(crate) const TS_FIELD: &str = "ts";
/// Name of the JSON keyword field.
pub(crate) const KW_FIELD: &str = "kw";
/// Name of the full-text field.
pub(crate) const TEXT_FIELD: &str = "text";
/// Name of the stored source field.
pub(crate) const SRC_FIELD: &str = "src";
/// Name of the commit-group field.
pub(crate) const GRP_FIELD: &str = "grp";

/// Event fields searched as full text instead of keywords.
pub(crate) const FULL_TEXT_FIELDS: [&str; 2] = ["message", "event.original"];

/// Handles of the schema fields (the same in every day index).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    pub ts: Field,
    pub kw: Field,
    pub text: Field,
    pub src: Field,
    pub grp: Field,
}

/// Builds the day-index schema.
pub(crate) fn build_schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let ts = b.add_date_field(
        TS_FIELD,
        DateOptions::default()
            .set_fast()
            .set_precision(DateTimePrecision::Microseconds),
    );
    let kw = b.add_json_field(
        KW_FIELD,
        JsonObjectOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("raw")
                    .set_index_option(IndexRecordOption::Basic)
                    .set_fieldnorms(false),
            )
            .set_expand_dots_enabled(),
    );
    let text = b.add_text_field(
        TEXT_FIELD,
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("default")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions)
                .set_fieldnorms(false),
        ),
    );
    let src = b.add_bytes_field(SRC_FIELD, BytesOptions::default().set_stored());
    let grp = b.add_u64_field(GRP_FIELD, NumericOptions::default().set_indexed());
    (
        b.build(),
        Fields {
            ts,
            kw,
            text,
            src,
            grp,
        },
    )
}

/// One event ready for a day index, flattened on the caller's thread.
///
/// Everything the indexer reads lives in two allocations: `buf` (the
/// serialized event, then the paths and string values of `leaves`) and
/// `leaves`. The event's own `Map` is dropped by the caller: handing its many
/// small allocations to the indexing thread to free costs more than
/// indexing them (allocator lock contention between the two threads).
pub(crate) struct EventDoc {
    fields: Fields,
    ts_micros: i64,
    group: u64,
    buf: String,
    source_len: usize,
    /// `message` and `event.original` (ranges in `buf`).
    text: [Option<Span>; 2],
    /// Keyword values by dotted path.
    leaves: Vec<Leaf>,
}

/// A range of `EventDoc::buf`.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u32,
    end: u32,
}

#[derive(Clone, Copy, Debug)]
struct Leaf {
    path: Span,
    value: LeafValue,
}

#[derive(Clone, Copy, Debug)]
enum LeafValue {
    Str(Span),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

/// Builds [`EventDoc`]s, reusing a scratch path between events.
#[derive(Default)]
pub(crate) struct DocBuilder {
    path: String,
}

impl DocBuilder {
    /// Serializes `event` and flattens it into an [`EventDoc`].
    pub(crate) fn build(
        &mut self,
        fields: Fields,
        ts_micros: i64,
        group: u64,
        event: &Map<String, Value>,
    ) -> Result<EventDoc, serde_json::Error> {
        let mut buf = serde_json::to_string(event)?;
        buf.reserve(buf.len());
        let mut doc = EventDoc {
            fields,
            ts_micros,
            group,
            source_len: buf.len(),
            buf: String::new(),
            text: [None, None],
            leaves: Vec::with_capacity(event.len() * 2),
        };
        for (key, value) in event {
            self.path.clear();
            self.path.push_str(key);
            match (key.as_str(), value) {
                ("message", _) => {
                    doc.text[0] = value.as_str().map(|s| push(&mut buf, s));
                    doc.marker(&mut buf, &self.path);
                }
                ("event.original", _) => {
                    if doc.text[1].is_none() {
                        doc.text[1] = value.as_str().map(|s| push(&mut buf, s));
                    }
                    doc.marker(&mut buf, &self.path);
                }
                ("@timestamp", _) => doc.marker(&mut buf, &self.path),
                ("event", Value::Object(inner)) => {
                    for (k, v) in inner {
                        self.path.truncate(key.len());
                        self.path.push('.');
                        self.path.push_str(k);
                        if k == "original" {
                            if doc.text[1].is_none() {
                                doc.text[1] = v.as_str().map(|s| push(&mut buf, s));
                            }
                            doc.marker(&mut buf, &self.path);
                        } else {
                            doc.flatten(&mut buf, &mut self.path, v);
                        }
                    }
                }
                _ => doc.flatten(&mut buf, &mut self.path, value),
            }
        }
        doc.buf = buf;
        Ok(doc)
    }
}

/// Appends `s` to `buf`, returning where it is.
fn push(buf: &mut String, s: &str) -> Span {
    let start = buf.len();
    buf.push_str(s);
    Span {
        start: start as u32,
        end: buf.len() as u32,
    }
}

impl EventDoc {
    fn marker(&mut self, buf: &mut String, path: &str) {
        let path = push(buf, path);
        self.leaves.push(Leaf {
            path,
            value: LeafValue::Bool(true),
        });
    }

    fn flatten(&mut self, buf: &mut String, path: &mut String, value: &Value) {
        let leaf = match value {
            Value::Null => return,
            Value::Bool(b) => LeafValue::Bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    LeafValue::I64(i)
                } else if let Some(u) = n.as_u64() {
                    LeafValue::U64(u)
                } else {
                    match n.as_f64() {
                        Some(f) if f.is_finite() => LeafValue::F64(f),
                        _ => return,
                    }
                }
            }
            // Strings stay strings: no date or number inference.
            Value::String(s) => LeafValue::Str(push(buf, s)),
            Value::Array(items) => {
                for item in items {
                    self.flatten(buf, path, item);
                }
                return;
            }
            Value::Object(map) => {
                let len = path.len();
                for (k, v) in map {
                    path.truncate(len);
                    path.push('.');
                    path.push_str(k);
                    self.flatten(buf, path, v);
                }
                path.truncate(len);
                return;
            }
        };
        let path = push(buf, path);
        self.leaves.push(Leaf { path, value: leaf });
    }

    fn str(&self, span: Span) -> &str {
        self.buf
            .get(span.start as usize..span.end as usize)
            .unwrap_or_default()
    }

    /// Bytes of the event as added (serialized JSON).
    #[cfg(test)]
    pub(crate) fn source(&self) -> &[u8] {
        &self.buf.as_bytes()[..self.source_len]
    }
}

impl Document for EventDoc {
    type Value<'a> = DocValue<'a>;
    type FieldsValuesIter<'a> = EventFields<'a>;

    fn iter_fields_and_values(&self) -> Self::FieldsValuesIter<'_> {
        EventFields { doc: self, step: 0 }
    }
}

/// Iterates the fields of an [`EventDoc`] without allocating.
pub(crate) struct EventFields<'a> {
    doc: &'a EventDoc,
    step: u8,
}

impl<'a> Iterator for EventFields<'a> {
    type Item = (Field, DocValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let step = self.step;
            self.step = self.step.saturating_add(1);
            let (doc, f) = (self.doc, self.doc.fields);
            match step {
                0 => {
                    let source = doc.buf.as_bytes().get(..doc.source_len).unwrap_or_default();
                    return Some((f.src, DocValue::Bytes(source)));
                }
                1 => {
                    let dt = TantivyDateTime::from_timestamp_micros(doc.ts_micros);
                    return Some((f.ts, DocValue::Date(dt)));
                }
                2 => {
                    // `event.original` is searched only when there is no
                    // `message` (ECS does not index it at all): the message
                    // is most of it, and the rest (host, program, pid) is in
                    // keyword fields. Indexing both cost a third of the
                    // indexing time.
                    if let Some(span) = doc.text[0].or(doc.text[1]) {
                        return Some((f.text, DocValue::Str(doc.str(span))));
                    }
                }
                3 => return Some((f.grp, DocValue::U64(doc.group))),
                4 => return Some((f.kw, DocValue::Flat(doc))),
                _ => return None,
            }
        }
    }
}

/// A value handed to tantivy: a view over an [`EventDoc`], never a copy.
#[derive(Clone, Debug)]
pub(crate) enum DocValue<'a> {
    Bytes(&'a [u8]),
    Date(TantivyDateTime),
    Str(&'a str),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    /// The keyword leaves, as one object keyed by dotted paths (which the
    /// `kw` field expands like nested objects).
    Flat(&'a EventDoc),
}

impl std::fmt::Debug for EventDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventDoc")
            .field("ts_micros", &self.ts_micros)
            .field("leaves", &self.leaves.len())
            .finish()
    }
}

impl<'a> TantivyValue<'a> for DocValue<'a> {
    type ArrayIter = std::iter::Empty<DocValue<'a>>;
    type ObjectIter = FlatIter<'a>;

    fn as_value(&self) -> ReferenceValue<'a, Self> {
        match self {
            DocValue::Bytes(b) => ReferenceValueLeaf::Bytes(b).into(),
            DocValue::Date(d) => ReferenceValueLeaf::Date(*d).into(),
            DocValue::Str(s) => ReferenceValueLeaf::Str(s).into(),
            DocValue::I64(v) => ReferenceValueLeaf::I64(*v).into(),
            DocValue::U64(v) => ReferenceValueLeaf::U64(*v).into(),
            DocValue::F64(v) => ReferenceValueLeaf::F64(*v).into(),
            DocValue::Bool(v) => ReferenceValueLeaf::Bool(*v).into(),
            DocValue::Flat(doc) => ReferenceValue::Object(FlatIter {
                doc,
                leaves: doc.leaves.iter(),
            }),
        }
    }
}

/// The `(dotted path, value)` pairs of an event's keyword leaves.
#[derive(Clone, Debug)]
pub(crate) struct FlatIter<'a> {
    doc: &'a EventDoc,
    leaves: std::slice::Iter<'a, Leaf>,
}

impl<'a> Iterator for FlatIter<'a> {
    type Item = (&'a str, DocValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let leaf = self.leaves.next()?;
        let value = match leaf.value {
            LeafValue::Str(span) => DocValue::Str(self.doc.str(span)),
            LeafValue::I64(v) => DocValue::I64(v),
            LeafValue::U64(v) => DocValue::U64(v),
            LeafValue::F64(v) => DocValue::F64(v),
            LeafValue::Bool(v) => DocValue::Bool(v),
        };
        Some((self.doc.str(leaf.path), value))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn events_flatten_to_dotted_leaves_with_markers() {
        let (_, fields) = build_schema();
        let event = json!({
            "@timestamp": "2024-03-01T10:00:00Z",
            "message": "Failed password",
            "event": {"original": "raw line", "outcome": "failure", "category": ["a", "b"]},
            "host.name": "web-1",
            "process": {"pid": 42, "ratio": 0.5, "big": u64::MAX, "ok": false, "none": null,
                        "args": [["x"], {"k": "v"}]},
        });
        let Value::Object(map) = &event else {
            panic!("not an object")
        };
        let doc = DocBuilder::default()
            .build(fields, 7, 0, map)
            .expect("build");
        assert_eq!(
            serde_json::from_slice::<Value>(doc.source()).expect("json"),
            event
        );
        let text: Vec<&str> = doc.text.iter().flatten().map(|s| doc.str(*s)).collect();
        assert_eq!(text, vec!["Failed password", "raw line"]);
        // Sorted: the key order of a serde_json map depends on its features.
        let mut leaves: Vec<String> = doc
            .leaves
            .iter()
            .map(|l| {
                let v = match l.value {
                    LeafValue::Str(s) => format!("{:?}", doc.str(s)),
                    LeafValue::I64(v) => format!("i{v}"),
                    LeafValue::U64(v) => format!("u{v}"),
                    LeafValue::F64(v) => format!("f{v}"),
                    LeafValue::Bool(v) => format!("{v}"),
                };
                format!("{}={v}", doc.str(l.path))
            })
            .collect();
        leaves.sort();
        assert_eq!(
            leaves,
            vec![
                "@timestamp=true",
                "event.category=\"a\"",
                "event.category=\"b\"",
                "event.original=true",
                "event.outcome=\"failure\"",
                "host.name=\"web-1\"",
                "message=true",
                "process.args.k=\"v\"",
                "process.args=\"x\"",
                format!("process.big=u{}", u64::MAX).as_str(),
                "process.ok=false",
                "process.pid=i42",
                "process.ratio=f0.5",
            ]
        );
    }
}

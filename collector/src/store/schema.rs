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
//! - `text` — `message` and `event.original`, tokenized by tantivy's
//!   `default` tokenizer (split on non-alphanumerics, lowercased, tokens over
//!   40 bytes dropped), with positions for phrases;
//! - `src` — the event serialized once as JSON, stored (compressed by the
//!   doc store) and returned as is by searches.
//!
//! [`EventDoc`] implements tantivy's [`Document`] directly over the event's
//! `serde_json::Map`, so indexing borrows the event instead of copying it
//! into a `TantivyDocument`.

use serde_json::{Map, Value};
use tantivy::schema::document::{ReferenceValue, ReferenceValueLeaf};
use tantivy::schema::{
    BytesOptions, DateOptions, DateTimePrecision, Document, Field, IndexRecordOption,
    JsonObjectOptions, Schema, TextFieldIndexing, TextOptions, Value as TantivyValue,
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

/// Event fields searched as full text instead of keywords.
pub(crate) const FULL_TEXT_FIELDS: [&str; 2] = ["message", "event.original"];

/// Handles of the schema fields (the same in every day index).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    pub ts: Field,
    pub kw: Field,
    pub text: Field,
    pub src: Field,
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
    (b.build(), Fields { ts, kw, text, src })
}

/// One event ready for a day index: its time, its serialized source and
/// the event itself (borrowed by the indexer through [`DocValue`]).
pub(crate) struct EventDoc {
    pub fields: Fields,
    pub ts_micros: i64,
    pub source: Vec<u8>,
    pub event: Map<String, Value>,
}

impl EventDoc {
    fn text_value(&self, which: usize) -> Option<&str> {
        match which {
            0 => self.event.get("message").and_then(Value::as_str),
            _ => self
                .event
                .get("event")
                .and_then(|e| e.get("original"))
                .or_else(|| self.event.get("event.original"))
                .and_then(Value::as_str),
        }
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
            let f = self.doc.fields;
            match step {
                0 => return Some((f.src, DocValue::Bytes(&self.doc.source))),
                1 => {
                    let dt = TantivyDateTime::from_timestamp_micros(self.doc.ts_micros);
                    return Some((f.ts, DocValue::Date(dt)));
                }
                2 | 3 => {
                    if let Some(s) = self.doc.text_value(usize::from(step - 2)) {
                        return Some((f.text, DocValue::Str(s)));
                    }
                }
                4 => return Some((f.kw, DocValue::Object(&self.doc.event, Level::Root))),
                _ => return None,
            }
        }
    }
}

/// Where an object sits in the event, to know which keys are replaced by
/// a marker in the keyword field.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Level {
    /// The event itself: `message`, `event.original`, `@timestamp` are markers.
    Root,
    /// The `event` object at the root: `original` is a marker.
    Event,
    /// Anywhere else: everything is indexed.
    Nested,
}

/// A value handed to tantivy: a view over the event, never a copy.
#[derive(Clone, Debug)]
pub(crate) enum DocValue<'a> {
    Bytes(&'a [u8]),
    Date(TantivyDateTime),
    Str(&'a str),
    /// Stands for a value that is not indexed as a keyword.
    Marker,
    Json(&'a Value),
    Object(&'a Map<String, Value>, Level),
}

impl<'a> TantivyValue<'a> for DocValue<'a> {
    type ArrayIter = ArrayIter<'a>;
    type ObjectIter = ObjectIter<'a>;

    fn as_value(&self) -> ReferenceValue<'a, Self> {
        match self {
            DocValue::Bytes(b) => ReferenceValueLeaf::Bytes(b).into(),
            DocValue::Date(d) => ReferenceValueLeaf::Date(*d).into(),
            DocValue::Str(s) => ReferenceValueLeaf::Str(s).into(),
            DocValue::Marker => ReferenceValueLeaf::Bool(true).into(),
            DocValue::Object(map, level) => ReferenceValue::Object(ObjectIter {
                iter: map.iter(),
                level: *level,
            }),
            DocValue::Json(v) => match v {
                Value::Null => ReferenceValueLeaf::Null.into(),
                Value::Bool(b) => ReferenceValueLeaf::Bool(*b).into(),
                Value::Number(n) => {
                    if let Some(i) = n.as_i64() {
                        ReferenceValueLeaf::I64(i).into()
                    } else if let Some(u) = n.as_u64() {
                        ReferenceValueLeaf::U64(u).into()
                    } else {
                        // serde_json numbers are always i64, u64 or f64.
                        ReferenceValueLeaf::F64(n.as_f64().unwrap_or(f64::NAN)).into()
                    }
                }
                // Strings stay strings: no date or number inference.
                Value::String(s) => ReferenceValueLeaf::Str(s).into(),
                Value::Array(a) => ReferenceValue::Array(ArrayIter(a.iter())),
                Value::Object(map) => ReferenceValue::Object(ObjectIter {
                    iter: map.iter(),
                    level: Level::Nested,
                }),
            },
        }
    }
}

/// Elements of a JSON array.
#[derive(Clone, Debug)]
pub(crate) struct ArrayIter<'a>(std::slice::Iter<'a, Value>);

impl<'a> Iterator for ArrayIter<'a> {
    type Item = DocValue<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(DocValue::Json)
    }
}

/// Key/value pairs of a JSON object, with markers where [`Level`] says so.
#[derive(Clone, Debug)]
pub(crate) struct ObjectIter<'a> {
    iter: serde_json::map::Iter<'a>,
    level: Level,
}

impl<'a> Iterator for ObjectIter<'a> {
    type Item = (&'a str, DocValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (k, v) = self.iter.next()?;
        let value = match (self.level, k.as_str(), v) {
            (Level::Root, "message" | "event.original" | "@timestamp", _) => DocValue::Marker,
            (Level::Root, "event", Value::Object(map)) => DocValue::Object(map, Level::Event),
            (Level::Event, "original", _) => DocValue::Marker,
            _ => DocValue::Json(v),
        };
        Some((k.as_str(), value))
    }
}

//! How the Sigma engine sees a Vigie [`Event`].
//!
//! - Field lookups take a flat key first (`CommandLine`, or a key that itself holds dots), then
//!   walk nested objects along the dots (`process.command_line`). A path that crosses an array
//!   collects the value in every element, so an array matches when any element does.
//! - Keyword rules (a detection that is a plain list of strings) search the event's `message`
//!   and `event.original`, as the contract says; an event that has neither (raw JSON
//!   from an unmapped source) is searched in all its string values, so it still matches.
//! - Each field is resolved once per view: hundreds of rules ask for the same few fields
//!   (`process.executable`, `type`...), and a lookup walks B-tree maps and the fallbacks.

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::hash::BuildHasher;

use rsigma_eval::event::{Event as SigmaEvent, EventValue};
use serde_json::{Map, Value};
use vigie_event::Event;

use crate::mapping::Fallbacks;

/// Nesting deeper than this is not searched by keywords (a hostile event cannot recurse us).
const MAX_DEPTH: usize = 32;

/// Field paths up to this length are remembered by [`SigmaView`] (longer ones, rare, are
/// resolved at each lookup).
const CACHED_PATH_BYTES: usize = 48;

/// A resolved field: its path (inline, so remembering it allocates nothing) and its value.
#[derive(Debug, Clone)]
struct Resolved<'a> {
    path: [u8; CACHED_PATH_BYTES],
    len: usize,
    value: Option<EventValue<'a>>,
}

/// A borrowed view of an [`Event`] for the Sigma engine.
#[derive(Debug, Clone)]
pub struct SigmaView<'a> {
    map: &'a Map<String, Value>,
    /// ECS name -> the Sigma names mapped to it, tried when the ECS field is absent.
    fallbacks: Option<&'a Fallbacks>,
    /// Fields resolved so far, by the hash of their path.
    resolved: RefCell<HashMap<u64, Resolved<'a>, rustc_hash::FxBuildHasher>>,
    /// `message` and `event.original`, once looked up (every keyword rule searches them).
    keyword_fields: OnceCell<[Option<&'a str>; 2]>,
    /// Whether a top-level key holds a dot, once looked at.
    root_dotted: OnceCell<bool>,
}

impl<'a> SigmaView<'a> {
    /// Views `event` for evaluation; nothing is copied.
    pub fn new(event: &'a Event) -> Self {
        Self::from_map(event.as_map())
    }

    /// Also looks a missing mapped field up under its original Sigma names.
    pub(crate) fn with_fallbacks(mut self, fallbacks: &'a Fallbacks) -> Self {
        if !fallbacks.is_empty() {
            self.fallbacks = Some(fallbacks);
        }
        self
    }

    fn lookup(&self, path: &str) -> Option<EventValue<'a>> {
        let Some((root, rest)) = path.split_once('.') else {
            return self.map.get(path).map(EventValue::from);
        };
        // A dotted path is a top-level key only if some top-level key holds a dot; ECS
        // events have none, and the probe would cost a B-tree search per lookup.
        if self.root_has_dotted_keys() {
            if let Some(v) = self.map.get(path) {
                return Some(EventValue::from(v));
            }
        }
        let mut value = self.map.get(root)?;
        let mut rest = rest;
        // The common case, nested objects only, without allocating.
        loop {
            match value {
                Value::Object(map) => {
                    if let Some(v) = map.get(rest) {
                        return Some(EventValue::from(v));
                    }
                    let (head, tail) = rest.split_once('.')?;
                    value = map.get(head)?;
                    rest = tail;
                }
                Value::Array(_) => break,
                _ => return None,
            }
        }
        let mut found = Vec::new();
        collect(value, rest, &mut found);
        match found.len() {
            0 => None,
            1 => found.pop(),
            _ => Some(EventValue::Array(found)),
        }
    }

    /// Views a JSON object (a test event, an event from the API).
    pub fn from_map(map: &'a Map<String, Value>) -> Self {
        Self {
            map,
            fallbacks: None,
            resolved: RefCell::default(),
            keyword_fields: OnceCell::new(),
            root_dotted: OnceCell::new(),
        }
    }

    /// The field at `path`, under a fallback name when the ECS field is absent.
    fn resolve(&self, path: &str) -> Option<EventValue<'a>> {
        if let Some(v) = self.lookup(path) {
            return Some(v);
        }
        self.fallbacks?
            .get(path)?
            .iter()
            .find_map(|name| self.lookup(name))
    }

    /// Whether a top-level key holds a dot (`"event.original": …`), looked at once.
    fn root_has_dotted_keys(&self) -> bool {
        *self
            .root_dotted
            .get_or_init(|| self.map.keys().any(|k| k.contains('.')))
    }

    /// The fields keyword rules search, when the event has them.
    fn keyword_fields(&self) -> [Option<&'a str>; 2] {
        *self
            .keyword_fields
            .get_or_init(|| keyword_fields_of(self.map))
    }
}

/// `message` and `event.original` (flat or nested) of an event, when they are strings.
fn keyword_fields_of(map: &Map<String, Value>) -> [Option<&str>; 2] {
    let message = map.get("message").and_then(Value::as_str);
    let original = match map.get("event.original") {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => map
            .get("event")
            .and_then(|e| e.get("original"))
            .and_then(Value::as_str),
    };
    [message, original]
}

impl SigmaEvent for SigmaView<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        if path.len() > CACHED_PATH_BYTES {
            return self.resolve(path);
        }
        let hash = rustc_hash::FxBuildHasher.hash_one(path);
        if let Some(known) = self.resolved.borrow().get(&hash) {
            if &known.path[..known.len] == path.as_bytes() {
                return known.value.clone();
            }
            // Two paths with one hash: the first keeps the slot.
            return self.resolve(path);
        }
        let value = self.resolve(path);
        let mut inline = [0u8; CACHED_PATH_BYTES];
        inline[..path.len()].copy_from_slice(path.as_bytes());
        self.resolved.borrow_mut().insert(
            hash,
            Resolved {
                path: inline,
                len: path.len(),
                value: value.clone(),
            },
        );
        value
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        let fields = self.keyword_fields();
        if fields.iter().any(Option::is_some) {
            return fields.iter().flatten().any(|s| pred(s));
        }
        let mut hit = false;
        visit_strings(self.map, &mut |s| hit = hit || pred(s), MAX_DEPTH);
        hit
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        let mut out = Vec::new();
        self.visit_string_values(&mut |s| out.push(Cow::Owned(s.to_owned())));
        out
    }

    fn visit_string_values(&self, visit: &mut dyn FnMut(&str)) {
        let fields = self.keyword_fields();
        if fields.iter().any(Option::is_some) {
            fields.iter().flatten().for_each(|s| visit(s));
        } else {
            visit_strings(self.map, visit, MAX_DEPTH);
        }
    }

    fn to_json(&self) -> Value {
        Value::Object(self.map.clone())
    }

    fn visit_top_level_keys(&self, visit: &mut dyn FnMut(&str)) -> bool {
        // With fallbacks, a field may be found under a root the event's keys do not show.
        if self.fallbacks.is_some() {
            return false;
        }
        // Keys with dots in them ("event.original") make the root of a dotted path ambiguous,
        // so the candidate index may only prune by root when no key holds a dot.
        if self.root_has_dotted_keys() {
            return false;
        }
        self.map.keys().for_each(|k| visit(k));
        true
    }

    fn top_level_keys(&self) -> Option<Vec<Cow<'_, str>>> {
        let mut keys = Vec::new();
        self.visit_top_level_keys(&mut |k| keys.push(Cow::Owned(k.to_owned())))
            .then_some(keys)
    }
}

/// Follows `path` (dot-separated) from `value`, pushing every value reached; arrays fan out.
fn collect<'a>(value: &'a Value, path: &str, out: &mut Vec<EventValue<'a>>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| collect(item, path, out)),
        Value::Object(map) => {
            if let Some(v) = map.get(path) {
                out.push(EventValue::from(v));
                return;
            }
            if let Some((head, rest)) = path.split_once('.') {
                if let Some(v) = map.get(head) {
                    collect(v, rest, out);
                }
            }
        }
        _ => {}
    }
}

/// Calls `visit` on every string (and number, as text) under `map`.
fn visit_strings(map: &Map<String, Value>, visit: &mut dyn FnMut(&str), depth: usize) {
    for v in map.values() {
        visit_value(v, visit, depth);
    }
}

fn visit_value(v: &Value, visit: &mut dyn FnMut(&str), depth: usize) {
    if depth == 0 {
        return;
    }
    match v {
        Value::String(s) => visit(s),
        Value::Number(n) => visit(&n.to_string()),
        Value::Array(items) => items.iter().for_each(|i| visit_value(i, visit, depth - 1)),
        Value::Object(map) => visit_strings(map, visit, depth - 1),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(v: &Value) -> SigmaView<'_> {
        SigmaView::from_map(v.as_object().unwrap())
    }

    #[test]
    fn nested_flat_and_array_paths() {
        let v = json!({"process": {"command_line": "id"}, "a.b": 1,
                       "hosts": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]});
        let e = view(&v);
        assert_eq!(
            e.get_field("process.command_line")
                .unwrap()
                .as_str()
                .unwrap(),
            "id"
        );
        assert_eq!(e.get_field("a.b"), Some(EventValue::Int(1)));
        match e.get_field("hosts.ip") {
            Some(EventValue::Array(a)) => assert_eq!(a.len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(e.get_field("process.missing"), None);
        assert_eq!(e.get_field("nope"), None);
    }

    #[test]
    fn keywords_search_message_and_original_only() {
        let v = json!({"message": "hello", "event": {"original": "raw text"}, "user": "zed"});
        let e = view(&v);
        assert!(e.any_string_value(&|s| s.contains("raw")));
        assert!(e.any_string_value(&|s| s.contains("hello")));
        assert!(!e.any_string_value(&|s| s.contains("zed")));
        let raw = json!({"user": "zed", "n": {"deep": ["x", 42]}});
        let e = view(&raw);
        assert!(e.any_string_value(&|s| s == "zed"));
        assert!(e.any_string_value(&|s| s == "42"));
    }
}

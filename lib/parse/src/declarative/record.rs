//! The working record the stages run on: one slot per field path the parser file names, over a
//! base [`Event`].
//!
//! Every field path a parser file names (written or read, in any stage) gets a slot index when
//! the file loads, so the stages read and write fields by index, without walking nested maps or
//! allocating keys. The base event holds what comes whole from a codec (the syslog header, a
//! JSON object) and what `kv` writes under dynamic names. When the stages are done, the set slots are written into the base event in one pass over the field
//! tree, each object created once; scratch fields (`_…`) are never written.
//!
//! Values move rather than being copied where the semantics allow it: `take` (rename, delete,
//! append) moves the value out of where it is, and [`Record::get_mut`] lets a template that
//! is the last read of a scratch field move its value out (see `ValueTpl::mark_last_reads`).
//!
//! Invariants:
//! - a read sees the last write: a set slot, else a value inside an ancestor slot holding an
//!   object, else the base event (only for fields a codec stage may have written there);
//! - writing a field clears the slots of the fields under it (the new value replaces them);
//!   fields written into the base by a codec stage clear the slots they replace.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value};
use vigie_event::Event;

/// A field named by the parser file: its slot and its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub id: usize,
    pub path: String,
}

/// A slot index that names no slot (a field built outside a parser file).
pub(crate) const NO_SLOT: usize = usize::MAX;

/// The fields of a parser, by slot.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldTable {
    paths: Vec<String>,
    parts: Vec<Vec<String>>,
    index: HashMap<String, usize>,
    /// Slots of the fields strictly under each field.
    below: Vec<Vec<usize>>,
    /// Slots of the fields strictly above each field, nearest first, with their depth.
    above: Vec<Vec<usize>>,
    /// Whether the base event may hold the field (or something above or below it).
    in_base: Vec<bool>,
    /// The output tree (scratch fields left out).
    tree: Vec<Node>,
}

/// A node of the output tree.
#[derive(Debug, Clone)]
struct Node {
    key: String,
    slot: Option<usize>,
    /// Every slot in this subtree, this node's included.
    subtree: Vec<usize>,
    children: Vec<Node>,
}

impl FieldTable {
    /// The slot of `path`, added if new.
    pub fn intern(&mut self, path: &str) -> usize {
        if let Some(&id) = self.index.get(path) {
            return id;
        }
        let id = self.paths.len();
        self.paths.push(path.to_owned());
        self.parts
            .push(path.split('.').map(str::to_owned).collect());
        self.index.insert(path.to_owned(), id);
        id
    }

    /// The slot of `path`, if the file names it.
    pub fn slot(&self, path: &str) -> Option<usize> {
        self.index.get(path).copied()
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether the base event may hold the field.
    pub fn in_base(&self, id: usize) -> bool {
        self.in_base.get(id).copied().unwrap_or(false)
    }

    /// Writes a slot (see [`Record::set`]); split from the record so that a stage can write
    /// slots while it reads the base event.
    pub fn set_slot(&self, slots: &mut [Option<Value>], f: &Field, v: Value) {
        if f.id == NO_SLOT {
            return;
        }
        for &b in &self.below[f.id] {
            slots[b] = None;
        }
        slots[f.id] = Some(v);
    }

    /// Computes the relations between fields once all are known. `base` tells whether the
    /// base event may hold a path.
    pub fn seal(&mut self, base: impl Fn(&str) -> bool) {
        let n = self.paths.len();
        let under = |a: &[String], b: &[String]| b.len() > a.len() && b[..a.len()] == *a;
        self.below = (0..n)
            .map(|i| {
                (0..n)
                    .filter(|&j| under(&self.parts[i], &self.parts[j]))
                    .collect()
            })
            .collect();
        self.above = (0..n)
            .map(|i| {
                let mut up: Vec<usize> = (0..n)
                    .filter(|&j| under(&self.parts[j], &self.parts[i]))
                    .collect();
                up.sort_by_key(|&j| std::cmp::Reverse(self.parts[j].len()));
                up
            })
            .collect();
        self.in_base = (0..n).map(|i| base(&self.paths[i])).collect();
        let mut order: Vec<usize> = (0..n)
            .filter(|&i| !self.parts[i][0].starts_with('_'))
            .collect();
        order.sort_by(|&a, &b| self.parts[a].cmp(&self.parts[b]));
        self.tree = build_tree(&self.parts, &order, 0);
    }
}

/// The nodes at `depth` for the slots of `order` (sorted by path, all sharing the parts above).
fn build_tree(parts: &[Vec<String>], order: &[usize], depth: usize) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let key = &parts[order[i]][depth];
        let end = i + order[i..]
            .iter()
            .take_while(|&&s| parts[s][depth] == *key)
            .count();
        let group = &order[i..end];
        let slot = group.iter().copied().find(|&s| parts[s].len() == depth + 1);
        let deeper: Vec<usize> = group
            .iter()
            .copied()
            .filter(|&s| parts[s].len() > depth + 1)
            .collect();
        nodes.push(Node {
            key: key.clone(),
            slot,
            subtree: group.to_vec(),
            children: build_tree(parts, &deeper, depth + 1),
        });
        i = end;
    }
    nodes
}

/// The working record of one line.
#[derive(Debug)]
pub(crate) struct Record<'t> {
    pub table: &'t FieldTable,
    pub slots: Vec<Option<Value>>,
    pub base: Event,
}

/// The value at `parts` inside `v`.
fn descend<'v>(mut v: &'v Value, parts: &[String]) -> Option<&'v Value> {
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

thread_local! {
    /// A slot vector kept between lines, so that a line does not allocate one.
    static SPARE: std::cell::Cell<Vec<Option<Value>>> = const { std::cell::Cell::new(Vec::new()) };
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        let mut slots = std::mem::take(&mut self.slots);
        slots.clear();
        SPARE.with(|s| s.set(slots));
    }
}

impl<'t> Record<'t> {
    /// A record over `base`, no slot set.
    pub fn new(table: &'t FieldTable, base: Event) -> Record<'t> {
        let mut slots = SPARE.with(std::cell::Cell::take);
        slots.resize(table.len(), None);
        Record { table, slots, base }
    }

    /// The field's value (see the module invariants); an object read while fields under it are
    /// set in slots is given as the base object, without them (see [`Record::get_cow`]).
    pub fn get(&self, f: &Field) -> Option<&Value> {
        let t = self.table;
        let slot = self.slots.get(f.id)?;
        if let Some(v) = slot {
            return Some(v);
        }
        for &a in &t.above[f.id] {
            if let Some(v) = &self.slots[a] {
                return descend(v, &t.parts[f.id][t.parts[a].len()..]);
            }
        }
        if t.in_base[f.id] {
            base_get(self.base.as_map(), &f.path, &t.parts[f.id])
        } else {
            None
        }
    }

    /// Whether no slot above the field is set (so that it is in its own slot or the base).
    pub fn ancestors_empty(&self, id: usize) -> bool {
        id == NO_SLOT
            || self.table.above[id]
                .iter()
                .all(|&a| self.slots[a].is_none())
    }

    /// Whether any slot under the field is set.
    pub fn any_below(&self, f: &Field) -> bool {
        f.id != NO_SLOT
            && self.table.below[f.id]
                .iter()
                .any(|&b| self.slots[b].is_some())
    }

    /// The value [`Record::get`] reads, in place.
    pub fn get_mut(&mut self, f: &Field) -> Option<&mut Value> {
        let t = self.table;
        if self.slots.get(f.id)?.is_some() {
            return self.slots[f.id].as_mut();
        }
        if let Some(&a) = t.above[f.id].iter().find(|&&a| self.slots[a].is_some()) {
            let mut v = self.slots[a].as_mut()?;
            for p in &t.parts[f.id][t.parts[a].len()..] {
                v = v.as_object_mut()?.get_mut(p)?;
            }
            return Some(v);
        }
        if !t.in_base[f.id] {
            return None;
        }
        let (map, parts) = (self.base.as_map_mut(), &t.parts[f.id]);
        if parts.len() > 1 && map.contains_key(&f.path) && descend_map(map, parts).is_none() {
            return map.get_mut(&f.path);
        }
        let (first, rest) = parts.split_first()?;
        let mut v = map.get_mut(first)?;
        for p in rest {
            v = v.as_object_mut()?.get_mut(p)?;
        }
        Some(v)
    }

    /// Whether the field exists, as a value or as an object some of whose fields are set.
    pub fn exists(&self, f: &Field) -> bool {
        self.get(f).is_some() || self.any_below(f)
    }

    /// The field's value, objects included with the fields set under them.
    pub fn get_cow(&self, f: &Field) -> Option<Cow<'_, Value>> {
        if !self.any_below(f) {
            return self.get(f).map(Cow::Borrowed);
        }
        let mut obj = match self.get(f) {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        let depth = self.table.parts[f.id].len();
        for &b in &self.table.below[f.id] {
            if let Some(v) = &self.slots[b] {
                insert_path(&mut obj, &self.table.parts[b][depth..], v.clone());
            }
        }
        Some(Cow::Owned(Value::Object(obj)))
    }

    /// Writes the field.
    pub fn set(&mut self, f: &Field, v: Value) {
        self.table.set_slot(&mut self.slots, f, v);
    }

    /// Removes the field and returns its value (the value [`Record::get_cow`] gives, moved out
    /// of where it is rather than copied).
    pub fn take(&mut self, f: &Field) -> Option<Value> {
        if f.id == NO_SLOT {
            return None;
        }
        let t = self.table;
        let below = self.any_below(f);
        let own = self.slots[f.id].take();
        // The nearest set ancestor holds the value when the field has no slot of its own, and
        // it keeps no copy of it either way.
        let above = t.above[f.id]
            .iter()
            .copied()
            .find(|&a| self.slots[a].is_some());
        let in_above = match above {
            Some(a) => match &mut self.slots[a] {
                Some(Value::Object(m)) => remove_path(m, &t.parts[f.id][t.parts[a].len()..]),
                _ => None,
            },
            None => None,
        };
        let in_base = if t.in_base[f.id] {
            base_take(&mut self.base, &f.path, &t.parts[f.id])
        } else {
            None
        };
        let value = match (own, above) {
            (Some(v), _) => Some(v),
            (None, Some(_)) => in_above,
            (None, None) => in_base,
        };
        if !below {
            return value;
        }
        let mut obj = match value {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let depth = t.parts[f.id].len();
        for &b in &t.below[f.id] {
            if let Some(v) = self.slots[b].take() {
                insert_path(&mut obj, &t.parts[b][depth..], v);
            }
        }
        Some(Value::Object(obj))
    }

    /// Clears the slots whose first part is `key` (a codec stage wrote `key` into the base).
    pub fn clear_under(&mut self, key: &str) {
        for (i, parts) in self.table.parts.iter().enumerate() {
            if parts[0] == key {
                self.slots[i] = None;
            }
        }
    }

    /// The finished event: the base with every set slot written in.
    pub fn into_event(mut self) -> Event {
        let mut base = std::mem::take(&mut self.base);
        write_nodes(&self.table.tree, base.as_map_mut(), &mut self.slots);
        base
    }
}

impl Record<'_> {}

/// Writes the set slots of `nodes` into `map`, which may already hold some of their fields.
fn write_nodes(nodes: &[Node], map: &mut Map<String, Value>, slots: &mut [Option<Value>]) {
    for node in nodes {
        if !node.subtree.iter().any(|&s| slots[s].is_some()) {
            continue;
        }
        let own = node.slot.and_then(|s| slots[s].take());
        let below = !node.children.is_empty() && node.subtree.iter().any(|&s| slots[s].is_some());
        if !below {
            if let Some(v) = own {
                map.insert(node.key.clone(), v);
            }
            continue;
        }
        // An object in the base (or the node's own value) receives the fields below; else a
        // new object is built, then inserted once.
        match (own, map.get_mut(&node.key)) {
            (None, Some(Value::Object(child))) => write_nodes(&node.children, child, slots),
            (Some(Value::Object(mut child)), _) => {
                write_nodes(&node.children, &mut child, slots);
                map.insert(node.key.clone(), Value::Object(child));
            }
            (_, _) => {
                let child = build_nodes(&node.children, slots);
                map.insert(node.key.clone(), Value::Object(child));
            }
        }
    }
}

/// A new object holding the set slots of `nodes` (keys come in order: the map is built in
/// one pass rather than key by key).
fn build_nodes(nodes: &[Node], slots: &mut [Option<Value>]) -> Map<String, Value> {
    let mut out = Map::new();
    for node in nodes {
        if !node.subtree.iter().any(|&s| slots[s].is_some()) {
            continue;
        }
        let own = node.slot.and_then(|s| slots[s].take());
        let below = !node.children.is_empty() && node.subtree.iter().any(|&s| slots[s].is_some());
        let value = match own {
            Some(v) if !below => v,
            Some(Value::Object(mut child)) => {
                write_nodes(&node.children, &mut child, slots);
                Value::Object(child)
            }
            _ => Value::Object(build_nodes(&node.children, slots)),
        };
        out.insert(node.key.clone(), value);
    }
    out
}

/// Writes `v` at `parts` under `map`, creating objects (and replacing non-objects) on the way.
pub(crate) fn insert_path(map: &mut Map<String, Value>, parts: &[String], v: Value) {
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut cur = map;
    for p in parents {
        if !matches!(cur.get(p), Some(Value::Object(_))) {
            cur.insert(p.clone(), Value::Object(Map::new()));
        }
        let Some(Value::Object(next)) = cur.get_mut(p) else {
            return;
        };
        cur = next;
    }
    cur.insert(last.clone(), v);
}

/// Removes the value at `parts` under `map` and returns it.
fn remove_path(map: &mut Map<String, Value>, parts: &[String]) -> Option<Value> {
    let (last, parents) = parts.split_last()?;
    let mut cur = map;
    for p in parents {
        cur = cur.get_mut(p)?.as_object_mut()?;
    }
    cur.remove(last)
}

/// Removes `path` from the base event as [`Event::remove`] does, and returns the value
/// [`Event::get`] read there before (the two differ only when the root holds a literal dotted
/// key `path` as well as the nested field: the literal key goes, the nested value is given).
fn base_take(base: &mut Event, path: &str, parts: &[String]) -> Option<Value> {
    if parts.len() > 1 && base.as_map().contains_key(path) {
        let nested = descend_map(base.as_map(), parts).cloned();
        let literal = base.as_map_mut().remove(path);
        return nested.or(literal);
    }
    base.remove(path)
}

/// [`Event::get`] with the path split once for all: the nested field, else a literal dotted
/// key at the root.
fn base_get<'v>(map: &'v Map<String, Value>, path: &str, parts: &[String]) -> Option<&'v Value> {
    match descend_map(map, parts) {
        None if parts.len() > 1 => map.get(path),
        found => found,
    }
}

/// The value at `parts` under `map`, through nested objects only.
fn descend_map<'v>(map: &'v Map<String, Value>, parts: &[String]) -> Option<&'v Value> {
    let (first, rest) = parts.split_first()?;
    descend(map.get(first)?, rest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(paths: &[&str]) -> (FieldTable, Vec<Field>) {
        let mut t = FieldTable::default();
        let fields = paths
            .iter()
            .map(|p| Field {
                id: t.intern(p),
                path: (*p).to_owned(),
            })
            .collect();
        t.seal(|p| p == "message" || p.starts_with("process"));
        (t, fields)
    }

    #[test]
    fn reads_see_the_last_write_and_the_tree_is_built_once() {
        let (t, f) = table(&["a", "a.b", "a.c.d", "_tmp", "process.name", "message"]);
        let base =
            Event::from_value(json!({"message": "m", "process": {"name": "x", "pid": 1}})).unwrap();
        let mut r = Record::new(&t, base);
        assert_eq!(r.get(&f[5]), Some(&json!("m")));
        r.set(&f[1], json!(1));
        r.set(&f[2], json!(2));
        assert!(r.exists(&f[0]) && r.get(&f[0]).is_none());
        assert_eq!(
            r.get_cow(&f[0]).unwrap().into_owned(),
            json!({"b": 1, "c": {"d": 2}})
        );
        // An object written over fields set below it replaces them.
        r.set(&f[0], json!({"z": true}));
        assert_eq!(r.get(&f[1]), None);
        r.set(&f[1], json!("b"));
        r.set(&f[3], json!("scratch"));
        r.set(&f[4], json!("y"));
        assert_eq!(r.take(&f[3]), Some(json!("scratch")));
        assert_eq!(
            r.into_event().into_value(),
            json!({"message": "m", "a": {"z": true, "b": "b"}, "process": {"name": "y", "pid": 1}})
        );
    }

    #[test]
    fn values_inside_objects_are_read_and_taken() {
        let (t, f) = table(&["a", "a.b", "process"]);
        let mut r = Record::new(
            &t,
            Event::from_value(json!({"process": {"pid": 1}})).unwrap(),
        );
        r.set(&f[0], json!({"b": 7, "c": 8}));
        assert_eq!(r.get(&f[1]), Some(&json!(7)));
        assert_eq!(r.take(&f[1]), Some(json!(7)));
        assert_eq!(r.get(&f[0]), Some(&json!({"c": 8})));
        assert_eq!(r.take(&f[2]), Some(json!({"pid": 1})));
        assert_eq!(r.into_event().into_value(), json!({"a": {"c": 8}}));
    }
}

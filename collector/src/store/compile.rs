//! Turns a parsed [`Query`] into a tantivy query over the day-index schema.
//!
//! - A field term goes to the JSON keyword field `kw` at the field's path:
//!   the exact string, plus the number (normalized like tantivy does at
//!   indexing: `42`, `42.0` → i64 42) and the boolean it reads as, so
//!   `process.pid:42` finds a number and a string "42" alike.
//! - `message` and `event.original` terms, and bare terms, go to the
//!   full-text field `text` (which holds the message, or the original of an
//!   event without one): tokenized like at indexing (lowercased), one
//!   token is a term query, several are a phrase.
//! - Wildcards and `field:*` scan a range of the term dictionary
//!   ([`TermScanQuery`]): the terms under the field's path (or with the
//!   wildcard's literal prefix), filtered by the pattern, their postings
//!   unioned into a bitset.
//! - `@timestamp:T` is a one-microsecond range on the `ts` fast field.
//!
//! Nothing is scored: searches sort by time.

use std::ops::Bound;
use std::sync::Arc;

use chrono::DateTime;
use tantivy::columnar::NumericalValue;
use tantivy::query::{
    AllQuery, BitSetDocSet, BooleanQuery, ConstScorer, EmptyQuery, EnableScoring, Explanation,
    Occur, PhraseQuery, Query as TantivyQuery, RangeQuery, Scorer, TermQuery, Weight,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::{TextAnalyzer, TokenizerManager};
use tantivy::{BitSet, DateTime as TantivyDateTime, DocId, DocSet, Score, SegmentReader, Term};

use super::query::{Match, Query};
use super::schema::{Fields, FULL_TEXT_FIELDS};

/// Type code of strings inside a JSON term (`[path]\0[type][value]`).
const JSON_STR_TYPE: u8 = b's';

/// Compiles queries for one schema.
pub(crate) struct Compiler {
    fields: Fields,
    analyzer: TextAnalyzer,
}

impl Compiler {
    pub(crate) fn new(fields: Fields) -> Compiler {
        let analyzer = TokenizerManager::default()
            .get("default")
            .unwrap_or_else(|| TextAnalyzer::from(tantivy::tokenizer::SimpleTokenizer::default()));
        Compiler { fields, analyzer }
    }

    pub(crate) fn compile(&mut self, q: &Query) -> Box<dyn TantivyQuery> {
        match q {
            Query::All => Box::new(AllQuery),
            Query::Not(inner) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery)),
                (Occur::MustNot, self.compile(inner)),
            ])),
            Query::And(items) => {
                let mut clauses: Vec<(Occur, Box<dyn TantivyQuery>)> = Vec::new();
                for item in items {
                    match item {
                        Query::Not(inner) => clauses.push((Occur::MustNot, self.compile(inner))),
                        other => clauses.push((Occur::Must, self.compile(other))),
                    }
                }
                if !clauses.iter().any(|(o, _)| *o == Occur::Must) {
                    clauses.push((Occur::Must, Box::new(AllQuery)));
                }
                Box::new(BooleanQuery::new(clauses))
            }
            Query::Or(items) => Box::new(BooleanQuery::new(
                items
                    .iter()
                    .map(|i| (Occur::Should, self.compile(i)))
                    .collect(),
            )),
            Query::Term { field: None, value } => self.full_text(value),
            Query::Term {
                field: Some(field),
                value,
            } => {
                if field == "@timestamp" {
                    return self.timestamp(value);
                }
                if FULL_TEXT_FIELDS.contains(&field.as_str()) && *value != Match::Exists {
                    return self.full_text(value);
                }
                self.keyword(field, value)
            }
        }
    }

    fn tokens(&mut self, text: &str) -> Vec<(usize, Term)> {
        let mut stream = self.analyzer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            let t = stream.token();
            out.push((t.position, Term::from_field_text(self.fields.text, &t.text)));
        }
        out
    }

    fn full_text(&mut self, value: &Match) -> Box<dyn TantivyQuery> {
        match value {
            Match::Word(s) | Match::Phrase(s) => {
                let mut tokens = self.tokens(s);
                match tokens.len() {
                    0 => Box::new(EmptyQuery),
                    1 => {
                        let (_, term) = tokens.remove(0);
                        Box::new(TermQuery::new(term, IndexRecordOption::Basic))
                    }
                    _ => Box::new(PhraseQuery::new_with_offset(tokens)),
                }
            }
            Match::Wildcard(parts) => {
                let parts: Vec<Vec<u8>> = parts
                    .iter()
                    .map(|p| p.to_lowercase().into_bytes())
                    .collect();
                Box::new(TermScanQuery::wildcard(self.fields.text, Vec::new(), parts))
            }
            Match::Exists => Box::new(AllQuery),
        }
    }

    fn keyword(&mut self, field: &str, value: &Match) -> Box<dyn TantivyQuery> {
        let path = Term::from_field_json_path(self.fields.kw, field, true);
        match value {
            Match::Word(s) | Match::Phrase(s) => {
                let mut terms = Vec::with_capacity(3);
                let mut t = path.clone();
                t.append_type_and_str(s);
                terms.push(t);
                if let Ok(n) = s.trim().parse::<NumericalValue>() {
                    let mut t = path.clone();
                    match n.normalize() {
                        NumericalValue::I64(v) => t.append_type_and_fast_value(v),
                        NumericalValue::U64(v) => t.append_type_and_fast_value(v),
                        NumericalValue::F64(v) => t.append_type_and_fast_value(v),
                    }
                    terms.push(t);
                }
                if let Ok(b) = s.parse::<bool>() {
                    let mut t = path.clone();
                    t.append_type_and_fast_value(b);
                    terms.push(t);
                }
                if terms.len() == 1 {
                    let t = terms.remove(0);
                    Box::new(TermQuery::new(t, IndexRecordOption::Basic))
                } else {
                    Box::new(BooleanQuery::new(
                        terms
                            .into_iter()
                            .map(|t| {
                                let q: Box<dyn TantivyQuery> =
                                    Box::new(TermQuery::new(t, IndexRecordOption::Basic));
                                (Occur::Should, q)
                            })
                            .collect(),
                    ))
                }
            }
            Match::Wildcard(parts) => {
                let mut prefix = path.serialized_value_bytes().to_vec();
                prefix.push(JSON_STR_TYPE);
                let parts = parts.iter().map(|p| p.as_bytes().to_vec()).collect();
                Box::new(TermScanQuery::wildcard(self.fields.kw, prefix, parts))
            }
            Match::Exists => {
                // `[path]\0…` are the field's own values, `[path]\1…` its sub-fields.
                let path_end = path.serialized_value_bytes();
                let base = &path_end[..path_end.len().saturating_sub(1)];
                let mut lo = base.to_vec();
                lo.push(0);
                let mut hi = base.to_vec();
                hi.push(2);
                Box::new(TermScanQuery {
                    field: self.fields.kw,
                    lo,
                    hi: Some(hi),
                    glob: None,
                })
            }
        }
    }

    fn timestamp(&self, value: &Match) -> Box<dyn TantivyQuery> {
        match value {
            Match::Word(s) | Match::Phrase(s) => match DateTime::parse_from_rfc3339(s) {
                Ok(t) => {
                    let us = t.timestamp_micros();
                    self.ts_range(us, us.saturating_add(1))
                }
                Err(_) => Box::new(EmptyQuery),
            },
            Match::Exists => Box::new(AllQuery),
            Match::Wildcard(_) => Box::new(EmptyQuery),
        }
    }

    /// Events with `lo_us <= ts < hi_us`.
    pub(crate) fn ts_range(&self, lo_us: i64, hi_us: i64) -> Box<dyn TantivyQuery> {
        let term = |us: i64| {
            Term::from_field_date(self.fields.ts, TantivyDateTime::from_timestamp_micros(us))
        };
        Box::new(RangeQuery::new(
            Bound::Included(term(lo_us)),
            Bound::Excluded(term(hi_us)),
        ))
    }
}

/// Matches the documents holding a term of `field` in `[lo, hi)` whose bytes
/// after `lo`'s fixed prefix match `glob` (when set).
#[derive(Clone, Debug)]
pub(crate) struct TermScanQuery {
    field: Field,
    lo: Vec<u8>,
    hi: Option<Vec<u8>>,
    glob: Option<Arc<Glob>>,
}

impl TermScanQuery {
    /// Terms starting with `prefix` whose rest matches the wildcard `parts`.
    fn wildcard(field: Field, prefix: Vec<u8>, parts: Vec<Vec<u8>>) -> TermScanQuery {
        let skip = prefix.len();
        let mut lo = prefix;
        if let Some(first) = parts.first() {
            lo.extend_from_slice(first);
        }
        let hi = prefix_end(&lo);
        TermScanQuery {
            field,
            lo,
            hi,
            glob: Some(Arc::new(Glob { skip, parts })),
        }
    }
}

/// The smallest byte string greater than every string starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A `*` pattern over the bytes of a term after its first `skip` bytes.
#[derive(Debug)]
struct Glob {
    skip: usize,
    /// Literal parts between the stars (at least two).
    parts: Vec<Vec<u8>>,
}

impl Glob {
    fn matches(&self, term: &[u8]) -> bool {
        let Some(mut rest) = term.get(self.skip..) else {
            return false;
        };
        let n = self.parts.len();
        if n < 2 {
            return self.parts.first().is_some_and(|p| p.as_slice() == rest);
        }
        let (first, last) = (&self.parts[0], &self.parts[n - 1]);
        let Some(r) = rest.strip_prefix(first.as_slice()) else {
            return false;
        };
        rest = r;
        let Some(r) = rest.strip_suffix(last.as_slice()) else {
            return false;
        };
        rest = r;
        for mid in &self.parts[1..n - 1] {
            match find(rest, mid) {
                Some(at) => rest = &rest[at + mid.len()..],
                None => return false,
            }
        }
        true
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl TantivyQuery for TermScanQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl Weight for TermScanQuery {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let mut docs = BitSet::with_max_value(reader.max_doc());
        let inverted = reader.inverted_index(self.field)?;
        let mut range = inverted.terms().range().ge(&self.lo);
        if let Some(hi) = &self.hi {
            range = range.lt(hi);
        }
        let mut stream = range.into_stream()?;
        while stream.advance() {
            if let Some(glob) = &self.glob {
                if !glob.matches(stream.key()) {
                    continue;
                }
            }
            let mut postings = inverted
                .read_block_postings_from_terminfo(stream.value(), IndexRecordOption::Basic)?;
            loop {
                let block = postings.docs();
                if block.is_empty() {
                    break;
                }
                for &doc in block {
                    docs.insert(doc);
                }
                postings.advance();
            }
        }
        Ok(Box::new(ConstScorer::new(BitSetDocSet::from(docs), boost)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) == doc {
            Ok(Explanation::new("TermScanQuery", 1.0))
        } else {
            Err(tantivy::TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(parts: &[&str]) -> Glob {
        Glob {
            skip: 0,
            parts: parts.iter().map(|p| p.as_bytes().to_vec()).collect(),
        }
    }

    #[test]
    fn glob_matches_prefix_suffix_and_middle() {
        assert!(glob(&["adm", ""]).matches(b"admin"));
        assert!(!glob(&["adm", ""]).matches(b"root"));
        assert!(glob(&["", "-prod"]).matches(b"web-prod"));
        assert!(!glob(&["", "-prod"]).matches(b"web-prod-2"));
        assert!(glob(&["a", "b", "c"]).matches(b"a--b--c"));
        assert!(!glob(&["a", "b", "c"]).matches(b"a--c--b"));
        // The first and last parts must not overlap.
        assert!(!glob(&["ab", "bc"]).matches(b"abc"));
        assert!(glob(&["ab", "bc"]).matches(b"abbc"));
    }

    #[test]
    fn prefix_end_increments_with_carry() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xFF]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xFF]), None);
        assert_eq!(prefix_end(b""), None);
    }
}

//! The read side of the store: search, count and export over day indexes.
//!
//! Each day is searched through its reader's current searcher (a snapshot
//! of its last reload), newest day first. A time range that covers a whole
//! day adds no filter; one that cuts a day adds a range on the `ts` fast
//! field. Results are sorted by `ts`, newest first; equal times keep index
//! order.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, EnableScoring, Occur, Query as TantivyQuery};
use tantivy::schema::Value as _;
use tantivy::{
    DateTime as TantivyDateTime, DocAddress, DocSet, Order, Searcher, TantivyDocument, TERMINATED,
};

use super::compile::Compiler;
use super::day::DayIndex;
use super::schema::TS_FIELD;
use super::{index_err, Query, SearchResult, Store, StoreError};

impl Store {
    /// The day indexes overlapping `[from, to)`, newest first, with the
    /// bounds in microseconds.
    fn days_in_range(
        &self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<(Vec<Arc<DayIndex>>, i64, i64), StoreError> {
        let lo = from.map_or(i64::MIN, |t| t.timestamp_micros());
        let hi = to.map_or(i64::MAX, |t| t.timestamp_micros());
        let days = self.days.read().map_err(|_| StoreError::Poisoned)?;
        let selected = days
            .values()
            .rev()
            .filter(|d| lo < hi && d.start_us() < hi && d.end_us() > lo)
            .cloned()
            .collect();
        Ok((selected, lo, hi))
    }

    /// `base` restricted to `[lo, hi)` within `day` (unchanged when the range
    /// covers the whole day).
    fn restrict(
        compiler: &Compiler,
        base: &dyn TantivyQuery,
        day: &DayIndex,
        lo: i64,
        hi: i64,
    ) -> Box<dyn TantivyQuery> {
        if lo <= day.start_us() && hi >= day.end_us() {
            return base.box_clone();
        }
        let lo = lo.max(day.start_us());
        let hi = hi.min(day.end_us());
        Box::new(BooleanQuery::new(vec![
            (Occur::Must, base.box_clone()),
            (Occur::Must, compiler.ts_range(lo, hi)),
        ]))
    }

    /// Searches `[from, to)` (unbounded when `None`): `total` counts every
    /// match, `events` holds `limit` of them after skipping `offset`, newest
    /// first.
    pub fn search(
        &self,
        q: &Query,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        limit: usize,
        offset: usize,
    ) -> Result<SearchResult, StoreError> {
        let (days, lo, hi) = self.days_in_range(from, to)?;
        let mut compiler = Compiler::new(self.fields);
        let base = compiler.compile(q);
        let mut total = 0u64;
        let mut skip = offset;
        let mut events = Vec::new();
        for day in &days {
            let query = Self::restrict(&compiler, base.as_ref(), day, lo, hi);
            let searcher = day.reader.searcher();
            let count = searcher
                .search(query.as_ref(), &Count)
                .map_err(index_err(day))?;
            total += count as u64;
            // Counting first keeps the top-docs heap (offset + limit) within
            // this day's matches, whatever offset was asked.
            if events.len() < limit && count > skip {
                let want = (limit - events.len()).min(count - skip);
                let top = TopDocs::with_limit(want)
                    .and_offset(skip)
                    .order_by_fast_field::<TantivyDateTime>(TS_FIELD, Order::Desc);
                let hits = searcher
                    .search(query.as_ref(), &top)
                    .map_err(index_err(day))?;
                for (_, addr) in hits {
                    events.push(self.load(day, &searcher, addr)?);
                }
            }
            skip = skip.saturating_sub(count);
        }
        Ok(SearchResult { total, events })
    }

    /// Counts the matches in `[from, to)`.
    pub fn count(
        &self,
        q: &Query,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<u64, StoreError> {
        let (days, lo, hi) = self.days_in_range(from, to)?;
        let mut compiler = Compiler::new(self.fields);
        let base = compiler.compile(q);
        let mut total = 0u64;
        for day in &days {
            let query = Self::restrict(&compiler, base.as_ref(), day, lo, hi);
            let searcher = day.reader.searcher();
            total += searcher
                .search(query.as_ref(), &Count)
                .map_err(index_err(day))? as u64;
        }
        Ok(total)
    }

    /// Streams every match in `[from, to)` to `sink`, newest first, until
    /// `sink` returns `false`. Returns the number of events given to `sink`.
    ///
    /// Memory stays bounded: each day is cut into time windows holding at
    /// most a page of matches (halving a window while it holds more), each
    /// window is sorted and streamed, then dropped. Matches sharing one
    /// microsecond beyond a page are streamed in index order.
    pub fn export(
        &self,
        q: &Query,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        sink: &mut dyn FnMut(Value) -> bool,
    ) -> Result<u64, StoreError> {
        let (days, lo, hi) = self.days_in_range(from, to)?;
        let mut compiler = Compiler::new(self.fields);
        let base = compiler.compile(q);
        let mut sent = 0u64;
        for day in &days {
            let searcher = day.reader.searcher();
            // Windows to visit; the newest is on top of the stack.
            let mut windows = vec![(lo.max(day.start_us()), hi.min(day.end_us()))];
            while let Some((wlo, whi)) = windows.pop() {
                let query = Self::restrict(&compiler, base.as_ref(), day, wlo, whi);
                let count = searcher
                    .search(query.as_ref(), &Count)
                    .map_err(index_err(day))?;
                if count == 0 {
                    continue;
                }
                let go_on = if count <= self.export_page_docs {
                    let top = TopDocs::with_limit(count)
                        .order_by_fast_field::<TantivyDateTime>(TS_FIELD, Order::Desc);
                    let hits = searcher
                        .search(query.as_ref(), &top)
                        .map_err(index_err(day))?;
                    self.emit(
                        day,
                        &searcher,
                        hits.into_iter().map(|(_, a)| a),
                        sink,
                        &mut sent,
                    )?
                } else if whi - wlo > 1 {
                    let mid = wlo + (whi - wlo) / 2;
                    windows.push((wlo, mid));
                    windows.push((mid, whi));
                    true
                } else {
                    self.stream_unsorted(day, &searcher, query.as_ref(), sink, &mut sent)?
                };
                if !go_on {
                    return Ok(sent);
                }
            }
        }
        Ok(sent)
    }

    /// Loads and sends events; `false` when the sink asked to stop.
    fn emit(
        &self,
        day: &DayIndex,
        searcher: &Searcher,
        addrs: impl Iterator<Item = DocAddress>,
        sink: &mut dyn FnMut(Value) -> bool,
        sent: &mut u64,
    ) -> Result<bool, StoreError> {
        for addr in addrs {
            let event = self.load(day, searcher, addr)?;
            *sent += 1;
            if !sink(event) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sends every match of `query` in index order, one at a time.
    fn stream_unsorted(
        &self,
        day: &DayIndex,
        searcher: &Searcher,
        query: &dyn TantivyQuery,
        sink: &mut dyn FnMut(Value) -> bool,
        sent: &mut u64,
    ) -> Result<bool, StoreError> {
        let weight = query
            .weight(EnableScoring::disabled_from_searcher(searcher))
            .map_err(index_err(day))?;
        for (ord, segment) in searcher.segment_readers().iter().enumerate() {
            let mut scorer = weight.scorer(segment, 1.0).map_err(index_err(day))?;
            let alive = segment.alive_bitset();
            let mut doc = scorer.doc();
            while doc != TERMINATED {
                if alive.is_none_or(|a| a.is_alive(doc)) {
                    let addr = DocAddress::new(ord as u32, doc);
                    if !self.emit(day, searcher, std::iter::once(addr), sink, sent)? {
                        return Ok(false);
                    }
                }
                doc = scorer.advance();
            }
        }
        Ok(true)
    }

    /// Reads a stored event back.
    fn load(
        &self,
        day: &DayIndex,
        searcher: &Searcher,
        addr: DocAddress,
    ) -> Result<Value, StoreError> {
        let doc: TantivyDocument = searcher.doc(addr).map_err(index_err(day))?;
        let corrupt = |message: String| StoreError::Corrupt {
            day: day.name.clone(),
            message,
        };
        let bytes = doc
            .get_first(self.fields.src)
            .and_then(|v| v.as_bytes())
            .ok_or_else(|| corrupt("no source".to_owned()))?;
        serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))
    }
}

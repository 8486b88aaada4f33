//! The event store: one tantivy index per UTC day, and the query language.
//!
//! Layout: `DIR/YYYY-MM-DD/` holds the tantivy index of the events whose
//! time (`@timestamp`, else `event.ingested`, else the time they were added)
//! falls on that UTC day. Retention deletes whole day directories (renamed
//! to `DIR/.expired-YYYY-MM-DD/` first; `open` removes leftovers). Other
//! entries of `DIR` are ignored.
//!
//! Invariants:
//! - an event comes back exactly as it was added (it is stored serialized as
//!   JSON next to the indexed fields; `schema.rs` says what is indexed and
//!   how);
//! - [`Store::add`] makes nothing visible nor durable; [`Store::commit`]
//!   commits every day index written since the last commit, then reloads
//!   their readers, so a search started after `commit` returns sees all of it.
//!   A writer evicted between two commits (see below) is committed early,
//!   which makes its events durable sooner but still not visible;
//! - at most [`MAX_OPEN_WRITERS`] index writers are open at a time (the
//!   current day and one late day, in practice); a write to another day
//!   commits and closes the least recently used one. At each commit, a
//!   writer that received nothing since the previous commit is closed,
//!   unless it is the newest day's. Each writer gets
//!   `writer_memory_bytes / MAX_OPEN_WRITERS` of indexing memory;
//! - searches read through per-day readers and never take the writers' lock,
//!   so they run alongside ingest; results are newest first (by `ts`, then
//!   in index order for equal times), days are walked newest first.
//!
//! Time bounds of searches are `from <= time < to` (microsecond precision).

mod compile;
mod day;
mod query;
mod read;
mod schema;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use tantivy::collector::Count;
use tantivy::indexer::UserOperation;
use tantivy::query::TermQuery;
use tantivy::schema::{IndexRecordOption, Schema};
use tantivy::{IndexWriter, TantivyError, Term};

use self::day::{day_name, day_of, parse_day_name, DayIndex};
pub use self::query::{parse_query, Match, Query, QueryError};
use self::schema::{build_schema, DocBuilder, EventDoc, Fields};

/// Index writers open at the same time (the current day and one late day).
pub const MAX_OPEN_WRITERS: usize = 2;

/// Smallest indexing memory tantivy accepts per writer thread (15 MB).
pub const MIN_MEMORY_PER_THREAD_BYTES: usize = 15_000_000;

/// Events handed to an index writer in one message.
const SEND_CHUNK_DOCS: usize = 64;

/// Prefix of a day directory being deleted by retention.
const EXPIRED_PREFIX: &str = ".expired-";

/// Export sorts at most this many events at once (see [`Store::export`]).
const EXPORT_PAGE_DOCS: usize = 10_000;

/// Event store settings (the `[storage]` part of the collector config).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Indexing memory shared by the open day writers (at most two), in
    /// bytes; each writer thread needs at least 15 MB of its writer's half.
    /// More memory means fewer, larger segments. Default: 64 MiB.
    #[serde(default = "default_writer_memory_bytes")]
    pub writer_memory_bytes: usize,
    /// Days of events kept besides the current one; older day indexes are
    /// deleted whole. 0 keeps everything. Default: 30.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Indexing threads per day writer (1 to 8). Default: 1.
    #[serde(default = "default_writer_threads")]
    pub writer_threads: usize,
}

fn default_writer_memory_bytes() -> usize {
    64 << 20
}

fn default_retention_days() -> u32 {
    30
}

fn default_writer_threads() -> usize {
    1
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            writer_memory_bytes: default_writer_memory_bytes(),
            retention_days: default_retention_days(),
            writer_threads: default_writer_threads(),
        }
    }
}

impl StoreConfig {
    /// Checks the settings against tantivy's limits.
    pub fn validate(&self) -> Result<(), StoreError> {
        if !(1..=8).contains(&self.writer_threads) {
            return Err(StoreError::Config(format!(
                "writer_threads = {} is out of range: use 1 to 8",
                self.writer_threads
            )));
        }
        let needed = MIN_MEMORY_PER_THREAD_BYTES * self.writer_threads * MAX_OPEN_WRITERS;
        if self.writer_memory_bytes < needed {
            return Err(StoreError::Config(format!(
                "writer_memory_bytes = {} is too small for {} writer thread(s): use at least {needed}",
                self.writer_memory_bytes, self.writer_threads
            )));
        }
        Ok(())
    }

    fn memory_per_writer_bytes(&self) -> usize {
        // tantivy caps the budget of one thread just under 4 GiB.
        let cap = (u32::MAX as usize - 1_000_000) * self.writer_threads;
        (self.writer_memory_bytes / MAX_OPEN_WRITERS).min(cap)
    }
}

/// What a search returns.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchResult {
    /// Matches over all days in the time range.
    pub total: u64,
    /// The requested page of matches, newest first, as they were added.
    pub events: Vec<Value>,
}

/// Size of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Day indexes on disk.
    pub days: usize,
    /// Committed events.
    pub docs: u64,
    /// Bytes of the day indexes on disk.
    pub bytes: u64,
}

/// Errors of the event store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The configuration cannot work; the message says what to change.
    #[error("invalid event store configuration: {0}")]
    Config(String),
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// tantivy failed on a day index.
    #[error("day index {day}: {source}")]
    Index {
        day: String,
        #[source]
        source: TantivyError,
    },
    /// A day index was written with another schema (another Vigie version).
    #[error("day index {day} has an incompatible schema; move it out of the events directory")]
    Incompatible { day: String },
    /// A stored event could not be read back.
    #[error("day index {day}: stored event is unreadable: {message}")]
    Corrupt { day: String, message: String },
    /// An event could not be serialized (should not happen with JSON maps).
    #[error("event cannot be serialized: {0}")]
    Serialize(#[source] serde_json::Error),
    /// A thread panicked while holding the store's lock.
    #[error("the event store is unusable after a panic in another thread")]
    Poisoned,
}

/// An open index writer and its bookkeeping.
struct OpenWriter {
    writer: IndexWriter<EventDoc>,
    /// Documents were added since the last commit.
    dirty: AtomicBool,
    /// Value of the store's tick at the last add (for LRU eviction).
    last_used: AtomicU64,
    /// Commits in a row that found this writer with nothing to commit.
    idle_commits: u32,
}

#[derive(Default)]
struct Writers {
    open: HashMap<i64, OpenWriter>,
    /// Days committed by an eviction, whose readers reload at the next commit.
    pending_reload: BTreeSet<i64>,
}

/// The per-day event store. `Send + Sync`: share it in an `Arc`.
pub struct Store {
    root: PathBuf,
    cfg: StoreConfig,
    schema: Schema,
    fields: Fields,
    /// Lock order: `writers` before `days`.
    days: RwLock<BTreeMap<i64, Arc<DayIndex>>>,
    writers: RwLock<Writers>,
    tick: AtomicU64,
    export_page_docs: usize,
}

fn index_err(day: &DayIndex) -> impl Fn(TantivyError) -> StoreError + '_ {
    move |source| StoreError::Index {
        day: day.name.clone(),
        source,
    }
}

impl Store {
    /// Opens the store in `dir` (created if missing) with the day indexes
    /// found there. Entries that are not `YYYY-MM-DD` directories are ignored.
    pub fn open(dir: &Path, cfg: StoreConfig) -> Result<Store, StoreError> {
        cfg.validate()?;
        let io = |source| StoreError::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let (schema, fields) = build_schema();
        let mut days = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            match parse_day_name(&name) {
                Some(day) if is_dir => {
                    let index = DayIndex::open_or_create(dir, day, &name, &schema)?;
                    days.insert(day, Arc::new(index));
                }
                _ if is_dir && name.starts_with(EXPIRED_PREFIX) => {
                    if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                        tracing::warn!(path = %entry.path().display(), error = %e,
                            "cannot finish deleting an expired day index");
                    }
                }
                _ => tracing::warn!(path = %entry.path().display(), "not a day index; ignored"),
            }
        }
        Ok(Store {
            root: dir.to_owned(),
            cfg,
            schema,
            fields,
            days: RwLock::new(days),
            writers: RwLock::new(Writers::default()),
            tick: AtomicU64::new(0),
            export_page_docs: EXPORT_PAGE_DOCS,
        })
    }

    /// Adds events, each to the index of its UTC day (its `@timestamp` as
    /// RFC 3339, else its `event.ingested`, else now). Nothing is visible
    /// nor durable before [`Store::commit`]. Returns the number added.
    pub fn add(&self, events: Vec<Map<String, Value>>) -> Result<usize, StoreError> {
        self.add_in_group(events, 0)
    }

    /// [`Store::add`], marking the events with the ingest commit `group`
    /// that [`Store::delete_group`] removes.
    pub fn add_in_group(
        &self,
        events: Vec<Map<String, Value>>,
        group: u64,
    ) -> Result<usize, StoreError> {
        let n = events.len();
        if n == 0 {
            return Ok(0);
        }
        let now_us = Utc::now().timestamp_micros();
        let mut groups: Vec<(i64, Vec<EventDoc>)> = Vec::new();
        let mut builder = DocBuilder::default();
        for event in events {
            let ts_micros = event_time_us(&event).unwrap_or(now_us);
            let doc = builder
                .build(self.fields, ts_micros, group, &event)
                .map_err(StoreError::Serialize)?;
            // `event` is freed here, on this thread.
            drop(event);
            let day = day_of(ts_micros);
            match groups.iter_mut().find(|(d, _)| *d == day) {
                Some((_, docs)) => docs.push(doc),
                None => groups.push((day, vec![doc])),
            }
        }
        let tick = self.tick.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let writers = self.writers.read().map_err(|_| StoreError::Poisoned)?;
            if groups.iter().all(|(d, _)| writers.open.contains_key(d)) {
                for (day, docs) in groups {
                    if let Some(w) = writers.open.get(&day) {
                        self.add_docs(w, day, docs, tick)?;
                    }
                }
                return Ok(n);
            }
        }
        let mut writers = self.writers.write().map_err(|_| StoreError::Poisoned)?;
        for (day, docs) in groups {
            self.ensure_writer(&mut writers, day)?;
            if let Some(w) = writers.open.get(&day) {
                self.add_docs(w, day, docs, tick)?;
            }
        }
        Ok(n)
    }

    fn add_docs(
        &self,
        w: &OpenWriter,
        day: i64,
        docs: Vec<EventDoc>,
        tick: u64,
    ) -> Result<(), StoreError> {
        w.dirty.store(true, Ordering::Release);
        w.last_used.store(tick, Ordering::Relaxed);
        // One channel message (and at most one wake-up of the indexing
        // thread) per chunk rather than per event.
        let mut docs = docs.into_iter();
        loop {
            let chunk: Vec<UserOperation<EventDoc>> = docs
                .by_ref()
                .take(SEND_CHUNK_DOCS)
                .map(UserOperation::Add)
                .collect();
            if chunk.is_empty() {
                return Ok(());
            }
            w.writer.run(chunk).map_err(|source| StoreError::Index {
                day: day_name(day).unwrap_or_default(),
                source,
            })?;
        }
    }

    /// Opens a writer for `day`, first closing the least recently used one
    /// when [`MAX_OPEN_WRITERS`] are open (committing it if it has data).
    fn ensure_writer(&self, writers: &mut Writers, day: i64) -> Result<(), StoreError> {
        if writers.open.contains_key(&day) {
            return Ok(());
        }
        while writers.open.len() >= MAX_OPEN_WRITERS {
            let Some(victim) = writers
                .open
                .iter()
                .min_by_key(|(_, w)| w.last_used.load(Ordering::Relaxed))
                .map(|(d, _)| *d)
            else {
                break;
            };
            if let Some(mut w) = writers.open.remove(&victim) {
                if w.dirty.load(Ordering::Acquire) {
                    if let Err(source) = w.writer.commit() {
                        // Keep it: its events are still pending for the next commit.
                        writers.open.insert(victim, w);
                        return Err(StoreError::Index {
                            day: day_name(victim).unwrap_or_default(),
                            source,
                        });
                    }
                    writers.pending_reload.insert(victim);
                }
            }
        }
        let index = self.day_index(day)?;
        let writer = index
            .index
            .writer_with_num_threads(self.cfg.writer_threads, self.cfg.memory_per_writer_bytes())
            .map_err(index_err(&index))?;
        writers.open.insert(
            day,
            OpenWriter {
                writer,
                dirty: AtomicBool::new(false),
                last_used: AtomicU64::new(0),
                idle_commits: 0,
            },
        );
        Ok(())
    }

    /// The index of `day`, created when missing.
    fn day_index(&self, day: i64) -> Result<Arc<DayIndex>, StoreError> {
        if let Some(d) = self
            .days
            .read()
            .map_err(|_| StoreError::Poisoned)?
            .get(&day)
        {
            return Ok(d.clone());
        }
        let mut days = self.days.write().map_err(|_| StoreError::Poisoned)?;
        if let Some(d) = days.get(&day) {
            return Ok(d.clone());
        }
        let name = day_name(day).ok_or_else(|| {
            StoreError::Config(format!("day {day} is outside the supported calendar"))
        })?;
        let index = Arc::new(DayIndex::open_or_create(
            &self.root,
            day,
            &name,
            &self.schema,
        )?);
        days.insert(day, index.clone());
        Ok(index)
    }

    /// Commits every day index written since the last commit and makes it
    /// visible to searches. On a failed commit, that day's uncommitted
    /// events are discarded (rolled back) so that the batches they came from
    /// can be retried without doubling; the error is returned after the
    /// other days are committed.
    pub fn commit(&self) -> Result<(), StoreError> {
        let mut writers = self.writers.write().map_err(|_| StoreError::Poisoned)?;
        let mut reload = std::mem::take(&mut writers.pending_reload);
        let mut first_err = None;
        for (day, w) in writers.open.iter_mut() {
            if !w.dirty.swap(false, Ordering::AcqRel) {
                w.idle_commits = w.idle_commits.saturating_add(1);
                continue;
            }
            w.idle_commits = 0;
            match w.writer.commit() {
                Ok(_) => {
                    reload.insert(*day);
                }
                Err(source) => {
                    if let Err(e) = w.writer.rollback() {
                        tracing::error!(error = %e, "rollback after a failed commit failed");
                    }
                    first_err.get_or_insert(StoreError::Index {
                        day: day_name(*day).unwrap_or_default(),
                        source,
                    });
                }
            }
        }
        let newest = writers.open.keys().max().copied();
        writers
            .open
            .retain(|day, w| Some(*day) == newest || w.idle_commits == 0);
        drop(writers);
        let days = self.days.read().map_err(|_| StoreError::Poisoned)?;
        for day in reload {
            if let Some(d) = days.get(&day) {
                d.reader.reload().map_err(index_err(d))?;
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Deletes, in every day index, the committed events of ingest commit
    /// `group` (left by a crash in the middle of that group) and commits.
    /// Returns how many were deleted.
    pub fn delete_group(&self, group: u64) -> Result<u64, StoreError> {
        let term = Term::from_field_u64(self.fields.grp, group);
        let query = TermQuery::new(term.clone(), IndexRecordOption::Basic);
        let days: Vec<Arc<DayIndex>> = self
            .days
            .read()
            .map_err(|_| StoreError::Poisoned)?
            .values()
            .cloned()
            .collect();
        let mut deleted = 0u64;
        for d in days {
            let found = d
                .reader
                .searcher()
                .search(&query, &Count)
                .map_err(index_err(&d))? as u64;
            if found == 0 {
                continue;
            }
            let mut writers = self.writers.write().map_err(|_| StoreError::Poisoned)?;
            self.ensure_writer(&mut writers, d.day)?;
            if let Some(w) = writers.open.get_mut(&d.day) {
                w.writer.delete_term(term.clone());
                w.writer.commit().map_err(index_err(&d))?;
            }
            drop(writers);
            d.reader.reload().map_err(index_err(&d))?;
            deleted += found;
        }
        Ok(deleted)
    }

    /// Deletes the day indexes older than `retention_days` before `now`'s
    /// day (with 30, on 2026-03-31 the oldest day kept is 2026-03-01).
    /// Returns the names of the days removed. Does nothing when
    /// `retention_days` is 0.
    pub fn apply_retention(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        if self.cfg.retention_days == 0 {
            return Ok(Vec::new());
        }
        let cutoff = day_of(now.timestamp_micros()) - i64::from(self.cfg.retention_days);
        let expired: Vec<Arc<DayIndex>> = {
            let mut writers = self.writers.write().map_err(|_| StoreError::Poisoned)?;
            let mut days = self.days.write().map_err(|_| StoreError::Poisoned)?;
            let victims: Vec<i64> = days.range(..cutoff).map(|(d, _)| *d).collect();
            victims
                .into_iter()
                .filter_map(|day| {
                    // Uncommitted events of an expired day go with it.
                    writers.open.remove(&day);
                    writers.pending_reload.remove(&day);
                    days.remove(&day)
                })
                .collect()
        };
        // Searches still holding a day's files keep reading them until they end.
        let mut removed = Vec::with_capacity(expired.len());
        for index in expired {
            // Renamed first (atomic), so a crash mid-delete never leaves a
            // half-deleted day index to open; `open` finishes the job.
            let trash = self.root.join(format!("{EXPIRED_PREFIX}{}", index.name));
            std::fs::rename(&index.path, &trash).map_err(|source| StoreError::Io {
                path: index.path.clone(),
                source,
            })?;
            std::fs::remove_dir_all(&trash).map_err(|source| StoreError::Io {
                path: trash.clone(),
                source,
            })?;
            removed.push(index.name.clone());
        }
        Ok(removed)
    }

    /// Names (`YYYY-MM-DD`) of the day indexes, oldest first.
    pub fn days(&self) -> Vec<String> {
        match self.days.read() {
            Ok(days) => days.values().map(|d| d.name.clone()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Days, committed events and bytes on disk.
    pub fn stats(&self) -> StoreStats {
        let Ok(days) = self.days.read() else {
            return StoreStats::default();
        };
        let mut stats = StoreStats {
            days: days.len(),
            ..StoreStats::default()
        };
        for d in days.values() {
            stats.docs += d.reader.searcher().num_docs();
            stats.bytes += d.disk_bytes();
        }
        stats
    }

    /// The directory holding the day indexes.
    pub fn dir(&self) -> &Path {
        &self.root
    }
}

/// The event's time in microseconds: `@timestamp`, else `event.ingested`
/// (nested or dotted key), when RFC 3339 and within years 0–9999.
fn event_time_us(event: &Map<String, Value>) -> Option<i64> {
    let ingested = || {
        event
            .get("event")
            .and_then(|e| e.get("ingested"))
            .or_else(|| event.get("event.ingested"))
    };
    [event.get("@timestamp"), ingested()]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp_micros())
        .find(|us| day_name(day_of(*us)).is_some())
}

//! Ingest: from an agent batch to durable, acknowledged events.
//!
//! [`decode_batch`] inflates a body (capped), splits it into lines, keeps
//! every line that is a JSON object and reports the others by line number.
//! Every kept event is stamped with `agent.id` (from the certificate, never
//! from the payload) and `event.ingested`.
//!
//! The [`Indexer`] is a group commit: batches from every connection are added
//! to the store as they come, and committed together as soon as no more
//! batches are waiting and `commit_min_interval_ms` has passed since the
//! previous commit started; at the latest `commit_interval_ms` after the
//! oldest pending batch arrived, or once `commit_max_events` are pending.
//! Batches that arrive during a commit wait for the next one, so the size of
//! a commit grows with the load and their rate stays bounded.
//!
//! Crash safety: each group of batches committed together has a number,
//! marked open in SQLite (durably) before its first event reaches the
//! store (by the transaction that closed the previous group, so a group
//! costs one fsync), and every event carries it. The store's commit, then one SQLite
//! transaction that records the group's batch ids and closes the group,
//! make it acknowledged. A crash in between (or a failed commit) leaves the
//! group open: at the next start ([`Indexer::spawn`]) its events are deleted
//! from the store, and its batches, never acknowledged, are stored once when
//! the agents send them again. Only after the commit returned, and the batch ids were recorded
//! in SQLite, are the waiting requests answered: an acknowledgement means
//! durable. A batch id seen before (stored, or pending in the current group)
//! is answered as a duplicate and not stored again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use vigie_event::{fields, format_timestamp};
use vigie_wire::{gunzip_capped, BatchId, DecompressError};

use crate::config::{IngestConfig, StorageConfig};
use crate::db::Db;
use crate::metrics::{add, Metrics};
use crate::store::Store;

/// A decoded batch.
#[derive(Debug, Default)]
pub struct Decoded {
    pub events: Vec<Map<String, Value>>,
    /// (1-based line number, reason, start of the line)
    pub rejected: Vec<(usize, String, String)>,
    pub decompressed_bytes: usize,
}

/// Why a whole batch was refused.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Decompress(#[from] DecompressError),
    #[error("batch holds more than {max} events")]
    TooManyEvents { max: usize },
}

/// Inflates (when `gzip`) and splits a batch body into stamped events.
pub fn decode_batch(
    body: &[u8],
    gzip: bool,
    cfg: &IngestConfig,
    agent_id: &str,
    now: DateTime<Utc>,
) -> Result<Decoded, BatchError> {
    let inflated;
    let raw: &[u8] = if gzip {
        inflated = gunzip_capped(body, cfg.max_decompressed_bytes)?;
        &inflated
    } else {
        if body.len() > cfg.max_decompressed_bytes {
            return Err(DecompressError::TooLarge {
                cap: cfg.max_decompressed_bytes,
            }
            .into());
        }
        body
    };
    let ingested = Value::String(format_timestamp(now));
    let mut out = Decoded {
        decompressed_bytes: raw.len(),
        ..Decoded::default()
    };
    for (i, line) in raw.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if out.events.len() + out.rejected.len() >= cfg.max_batch_events {
            return Err(BatchError::TooManyEvents {
                max: cfg.max_batch_events,
            });
        }
        let lineno = i + 1;
        if line.len() > cfg.max_event_bytes {
            out.rejected.push((
                lineno,
                format!("line is longer than {} bytes", cfg.max_event_bytes),
                snippet(line),
            ));
            continue;
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(mut map)) => {
                stamp(&mut map, agent_id, &ingested);
                out.events.push(map);
            }
            Ok(_) => out
                .rejected
                .push((lineno, "not a JSON object".into(), snippet(line))),
            Err(e) => out
                .rejected
                .push((lineno, format!("not JSON: {e}"), snippet(line))),
        }
    }
    Ok(out)
}

/// Sets `agent.id` and `event.ingested`, overriding whatever the payload said.
fn stamp(map: &mut Map<String, Value>, agent_id: &str, ingested: &Value) {
    map.remove(fields::AGENT_ID);
    map.remove(fields::EVENT_INGESTED);
    let mut ev = vigie_event::Event::from_map(std::mem::take(map));
    ev.set(fields::AGENT_ID, agent_id);
    ev.set(fields::EVENT_INGESTED, ingested.clone());
    if ev.timestamp().is_none() {
        ev.set(fields::TIMESTAMP, ingested.clone());
    }
    *map = ev.into_map();
}

fn snippet(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(1024)]).into_owned()
}

/// What happened to a batch handed to the indexer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexOutcome {
    /// Durably stored, with this many events.
    Stored(u64),
    /// Already stored before; nothing stored again.
    Duplicate,
}

/// Why the indexer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read or repair the ingest state: {0}")]
    Db(#[from] crate::db::DbError),
    #[error("cannot remove the events of an interrupted commit: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot start the indexer thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Why the indexer could not take a batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IndexError {
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("the collector is shutting down")]
    ShuttingDown,
}

/// One batch on its way to the store.
pub struct IndexRequest {
    pub agent_id: String,
    pub batch: BatchId,
    pub events: Vec<Map<String, Value>>,
    pub reply: oneshot::Sender<Result<Submitted, IndexError>>,
}

/// What happened to a batch, with the positions (in the batch as submitted) of the edge
/// detections left out because they were already stored (an agent's fast-lane copy, then
/// its spooled original): their detections must not be counted again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub outcome: IndexOutcome,
    pub dropped: Vec<usize>,
}

impl Submitted {
    fn duplicate() -> Self {
        Submitted {
            outcome: IndexOutcome::Duplicate,
            dropped: Vec::new(),
        }
    }
}

/// The handle of the indexer thread.
#[derive(Clone)]
pub struct Indexer {
    tx: mpsc::Sender<IndexRequest>,
}

impl Indexer {
    /// Removes what an interrupted commit left in the store, then starts
    /// the indexer on its own thread. It stops (after a last commit) when
    /// every handle is dropped.
    pub fn spawn(
        store: Arc<Store>,
        db: Arc<Db>,
        metrics: Arc<Metrics>,
        cfg: &StorageConfig,
    ) -> Result<(Indexer, std::thread::JoinHandle<()>), StartError> {
        let (open, last) = db.ingest_groups()?;
        if let Some(group) = open {
            // Usually empty: each commit opens the next group in advance.
            let deleted = store.delete_group(group)?;
            db.abandon_group()?;
            if deleted > 0 {
                tracing::warn!(group, deleted, "removed the events of a commit interrupted by a crash; their batches were not acknowledged and will be sent again");
            }
        }
        let (tx, rx) = mpsc::channel(64);
        let handle = tokio::runtime::Handle::current();
        let worker = Worker {
            store,
            db,
            metrics,
            interval: Duration::from_millis(cfg.commit_interval_ms),
            min_interval: Duration::from_millis(
                cfg.commit_min_interval_ms.min(cfg.commit_interval_ms),
            ),
            last_commit: None,
            max_events: cfg.commit_max_events,
            pending: Vec::new(),
            pending_ids: HashSet::new(),
            pending_edge: HashSet::new(),
            dup_waiters: Vec::new(),
            pending_events: 0,
            oldest: None,
            group: last + 1,
            group_open: false,
        };
        let join = std::thread::Builder::new()
            .name("vigie-indexer".into())
            .spawn(move || worker.run(rx, handle))?;
        Ok((Indexer { tx }, join))
    }

    /// Hands a batch to the indexer and waits until it is durable.
    pub async fn submit(
        &self,
        agent_id: String,
        batch: BatchId,
        events: Vec<Map<String, Value>>,
    ) -> Result<IndexOutcome, IndexError> {
        Ok(self.submit_detailed(agent_id, batch, events).await?.outcome)
    }

    /// [`Indexer::submit`], also saying which events were left out as edge duplicates.
    pub async fn submit_detailed(
        &self,
        agent_id: String,
        batch: BatchId,
        events: Vec<Map<String, Value>>,
    ) -> Result<Submitted, IndexError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(IndexRequest {
                agent_id,
                batch,
                events,
                reply,
            })
            .await
            .map_err(|_| IndexError::ShuttingDown)?;
        rx.await.map_err(|_| IndexError::ShuttingDown)?
    }
}

type Key = (String, String, u64);

/// The `event.id` of an edge detection (an event an agent tagged with `vigie.detections`).
fn edge_event_id(ev: &Map<String, Value>) -> Option<&str> {
    let vigie = ev.get("vigie")?;
    vigie
        .get("detections")?
        .as_array()
        .filter(|d| !d.is_empty())?;
    ev.get("event")?.get("id")?.as_str()
}
type Reply = oneshot::Sender<Result<Submitted, IndexError>>;

struct Worker {
    store: Arc<Store>,
    db: Arc<Db>,
    metrics: Arc<Metrics>,
    interval: Duration,
    min_interval: Duration,
    /// When the previous commit started.
    last_commit: Option<Instant>,
    max_events: usize,
    pending: Vec<(Key, u64, Vec<usize>, Reply)>,
    pending_ids: HashSet<Key>,
    /// Edge detections `(agent, event.id)` in the open group, recorded when it closes.
    pending_edge: HashSet<(String, String)>,
    dup_waiters: Vec<Reply>,
    pending_events: usize,
    oldest: Option<Instant>,
    /// The current commit group, and whether SQLite marks it open.
    group: u64,
    group_open: bool,
}

impl Worker {
    fn run(mut self, mut rx: mpsc::Receiver<IndexRequest>, rt: tokio::runtime::Handle) {
        loop {
            let wait = match self.oldest {
                Some(oldest) => self.commit_wait(oldest),
                None => Duration::from_secs(3600),
            };
            let next = rt.block_on(async { tokio::time::timeout(wait, rx.recv()).await });
            match next {
                Ok(Some(req)) => self.take(req),
                Ok(None) => {
                    self.commit();
                    return;
                }
                Err(_elapsed) => {}
            }
            // Take whatever else is already waiting before deciding.
            let mut closed = false;
            while self.pending_events < self.max_events {
                match rx.try_recv() {
                    Ok(req) => self.take(req),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if closed {
                self.commit();
                return;
            }
            let due = self
                .oldest
                .is_some_and(|oldest| self.commit_wait(oldest).is_zero());
            if due || self.pending_events >= self.max_events {
                self.commit();
            }
        }
    }

    /// How long pending batches (the oldest arrived at `oldest`) may still
    /// wait: until `min_interval` after the previous commit started, as the
    /// queue is empty whenever this is asked, but never past `interval`
    /// after `oldest`.
    fn commit_wait(&self, oldest: Instant) -> Duration {
        let latest = self.interval.saturating_sub(oldest.elapsed());
        let earliest = match self.last_commit {
            Some(t) => self.min_interval.saturating_sub(t.elapsed()),
            None => Duration::ZERO,
        };
        earliest.min(latest)
    }

    fn take(&mut self, req: IndexRequest) {
        let key: Key = (req.agent_id, req.batch.stream, req.batch.sequence);
        if self.pending_ids.contains(&key) {
            self.dup_waiters.push(req.reply);
            return;
        }
        match self.db.batch_seen(&key.0, &key.1, key.2) {
            Ok(true) => {
                add(&self.metrics.batches_duplicate, 1);
                let _ = req.reply.send(Ok(Submitted::duplicate()));
                return;
            }
            Ok(false) => {}
            Err(e) => {
                let _ = req.reply.send(Err(IndexError::Storage(e.to_string())));
                return;
            }
        }
        if !self.group_open {
            if let Err(e) = self.db.open_group(self.group) {
                let _ = req.reply.send(Err(IndexError::Storage(e.to_string())));
                return;
            }
            self.group_open = true;
        }
        let mut events = req.events;
        let mut edge_new = Vec::new();
        let dropped = match self.drop_edge_copies(&key.0, &mut events, &mut edge_new) {
            Ok(d) => d,
            Err(e) => {
                let _ = req.reply.send(Err(IndexError::Storage(e.to_string())));
                return;
            }
        };
        let n = events.len();
        if let Err(e) = self.store.add_in_group(events, self.group) {
            tracing::error!(error = %e, agent = %key.0, "adding events to the store failed");
            let _ = req.reply.send(Err(IndexError::Storage(e.to_string())));
            return;
        }
        self.pending_events += n;
        add(&self.metrics.events_pending, n as u64);
        self.oldest.get_or_insert_with(Instant::now);
        self.pending_ids.insert(key.clone());
        self.pending_edge.extend(edge_new);
        self.pending.push((key, n as u64, dropped, req.reply));
    }

    /// Removes from `events` the edge detections already stored or pending (an agent sends a
    /// tagged event twice: on its fast lane, then from its spool); the new ones go to `fresh`.
    /// Returns the positions of the removed ones.
    fn drop_edge_copies(
        &self,
        agent_id: &str,
        events: &mut Vec<Map<String, Value>>,
        fresh: &mut Vec<(String, String)>,
    ) -> Result<Vec<usize>, crate::db::DbError> {
        let mut seen_here = HashSet::new();
        let mut err = None;
        let before = events.len();
        let mut position = 0usize;
        let mut dropped = Vec::new();
        events.retain(|ev| {
            let at = position;
            position += 1;
            let Some(id) = edge_event_id(ev) else {
                return true;
            };
            let key = (agent_id.to_owned(), id.to_owned());
            if self.pending_edge.contains(&key) || seen_here.contains(&key) {
                dropped.push(at);
                return false;
            }
            match self.db.edge_event_seen(agent_id, id) {
                Ok(true) => {
                    dropped.push(at);
                    false
                }
                Ok(false) => {
                    seen_here.insert(key.clone());
                    fresh.push(key);
                    true
                }
                Err(e) => {
                    err = Some(e);
                    true
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        add(
            &self.metrics.edge_duplicates,
            (before - events.len()) as u64,
        );
        Ok(dropped)
    }

    fn commit(&mut self) {
        if self.pending.is_empty() && self.dup_waiters.is_empty() {
            self.oldest = None;
            return;
        }
        self.last_commit = Some(Instant::now());
        let pending = std::mem::take(&mut self.pending);
        let waiters = std::mem::take(&mut self.dup_waiters);
        self.pending_ids.clear();
        self.metrics
            .events_pending
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let events = std::mem::take(&mut self.pending_events) as u64;
        self.oldest = None;
        let edge: Vec<(String, String)> = self.pending_edge.drain().collect();
        let ids: Vec<(String, String, u64, u64)> = pending
            .iter()
            .map(|((a, s, q), n, _, _)| (a.clone(), s.clone(), *q, *n))
            .collect();
        // The transaction that closes this group also opens the next one, so
        // a group costs one SQLite fsync.
        let group = self.group;
        let next = if self.group_open { group + 1 } else { group };
        let result = self
            .store
            .commit()
            .map_err(|e| e.to_string())
            .and_then(|()| {
                self.db
                    .close_group(&ids, &edge, Utc::now(), Some(next))
                    .map_err(|e| e.to_string())
            });
        match &result {
            Ok(()) => {
                self.group = next;
                self.group_open = true;
            }
            Err(_) if self.group_open => {
                // Part of the group may be committed: take it out, so that
                // the batches (not acknowledged) are stored once when sent
                // again. Its number is not used again.
                self.group = group + 1;
                self.group_open = false;
                match self.store.delete_group(group) {
                    Ok(_) => {
                        if let Err(e) = self.db.abandon_group() {
                            tracing::error!(error = %e, group, "cannot close an abandoned commit group; it is cleaned again at the next start");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, group, "cannot remove the events of a failed commit; they are removed at the next start")
                    }
                }
            }
            Err(_) => {}
        }
        match result {
            Ok(()) => {
                add(&self.metrics.commits, 1);
                add(&self.metrics.events_stored, events);
                add(&self.metrics.batches_duplicate, waiters.len() as u64);
                for (_, n, dropped, reply) in pending {
                    let _ = reply.send(Ok(Submitted {
                        outcome: IndexOutcome::Stored(n),
                        dropped,
                    }));
                }
                for reply in waiters {
                    let _ = reply.send(Ok(Submitted::duplicate()));
                }
            }
            Err(e) => {
                add(&self.metrics.commit_errors, 1);
                tracing::error!(error = %e, batches = ids.len(), "commit failed; batches not acknowledged, agents will retry");
                for (_, _, _, reply) in pending {
                    let _ = reply.send(Err(IndexError::Storage(e.clone())));
                }
                for reply in waiters {
                    let _ = reply.send(Err(IndexError::Storage(e.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> IngestConfig {
        IngestConfig {
            max_body_bytes: 1 << 20,
            max_decompressed_bytes: 1 << 20,
            max_batch_events: 100,
            max_event_bytes: 200,
            ..IngestConfig::default()
        }
    }

    #[test]
    fn good_lines_are_stamped_bad_lines_reported() {
        let body = b"{\"message\":\"a\",\"agent\":{\"id\":\"forged\"}}\nnot json\n[1,2]\n\n{\"message\":\"b\",\"@timestamp\":\"2026-11-26T10:00:00Z\"}\n";
        let now = Utc::now();
        let d = decode_batch(&vigie_wire::gzip(body, 1), true, &cfg(), "agt_1", now).unwrap();
        assert_eq!(d.events.len(), 2);
        let e0 = vigie_event::Event::from_map(d.events[0].clone());
        assert_eq!(e0.get_str("agent.id"), Some("agt_1"));
        assert!(e0.get_str("event.ingested").is_some());
        assert!(
            e0.get_str("@timestamp").is_some(),
            "missing @timestamp gets the ingest time"
        );
        let e1 = vigie_event::Event::from_map(d.events[1].clone());
        assert_eq!(e1.get_str("@timestamp"), Some("2026-11-26T10:00:00Z"));
        let lines: Vec<usize> = d.rejected.iter().map(|r| r.0).collect();
        assert_eq!(lines, vec![2, 3]);
    }

    #[test]
    fn bomb_and_count_limits() {
        let big = vec![b' '; 2 << 20];
        let err = decode_batch(&vigie_wire::gzip(&big, 9), true, &cfg(), "a", Utc::now());
        assert!(matches!(
            err,
            Err(BatchError::Decompress(DecompressError::TooLarge { .. }))
        ));
        let many = "{}\n".repeat(101);
        let err = decode_batch(many.as_bytes(), false, &cfg(), "a", Utc::now());
        assert!(matches!(err, Err(BatchError::TooManyEvents { max: 100 })));
    }

    fn event(n: u64) -> Map<String, Value> {
        let v = serde_json::json!({"@timestamp": "2026-11-26T10:00:00Z", "message": format!("line {n}")});
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn open(dir: &std::path::Path) -> (Arc<Store>, Arc<Db>) {
        let store = Store::open(
            &dir.join("events"),
            crate::store::StoreConfig {
                writer_memory_bytes: 64 << 20,
                retention_days: 0,
                writer_threads: 1,
            },
        )
        .unwrap();
        (
            Arc::new(store),
            Arc::new(Db::open(&dir.join("vigie.db")).unwrap()),
        )
    }

    fn stored(store: &Store) -> u64 {
        let q = crate::store::parse_query("").unwrap();
        store.count(&q, None, None).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_interrupted_by_a_crash_is_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, db) = open(dir.path());
            // Group 1 completes: stored and recorded.
            db.open_group(1).unwrap();
            store.add_in_group(vec![event(1), event(2)], 1).unwrap();
            store.commit().unwrap();
            db.record_batches(&[("agt_1".into(), "s1".into(), 1, 2)], Utc::now())
                .unwrap();
            // Group 2 reaches the store, then the process dies before SQLite
            // records its batch.
            db.open_group(2).unwrap();
            store
                .add_in_group(vec![event(3), event(4), event(5)], 2)
                .unwrap();
            store.commit().unwrap();
            assert_eq!(stored(&store), 5);
        }
        let (store, db) = open(dir.path());
        let cfg = StorageConfig::default();
        let (indexer, join) =
            Indexer::spawn(store.clone(), db.clone(), Arc::default(), &cfg).unwrap();
        assert_eq!(stored(&store), 2, "the interrupted group's events are gone");
        assert_eq!(db.ingest_groups().unwrap(), (None, 2));
        // The unacknowledged batch sent again is stored once; the completed
        // one is a duplicate.
        let id = |seq| BatchId::parse(&format!("s1/{seq}")).unwrap();
        let again = indexer
            .submit("agt_1".into(), id(2), vec![event(3), event(4), event(5)])
            .await
            .unwrap();
        assert_eq!(again, IndexOutcome::Stored(3));
        let dup = indexer
            .submit("agt_1".into(), id(1), vec![event(1), event(2)])
            .await
            .unwrap();
        assert_eq!(dup, IndexOutcome::Duplicate);
        assert_eq!(stored(&store), 5);
        assert_eq!(
            db.ingest_groups().unwrap(),
            (Some(4), 4),
            "group 3 closed, group 4 opened by the same transaction"
        );
        drop(indexer);
        join.join().unwrap();
    }

    fn detection(id: &str, n: u64) -> Map<String, Value> {
        let mut m = event(n);
        m.insert(
            "event".into(),
            serde_json::json!({"id": id, "kind": "event"}),
        );
        m.insert(
            "vigie".into(),
            serde_json::json!({"detections": [{"rule_id": "r1", "title": "t", "level": "high"}]}),
        );
        m
    }

    /// An agent sends each edge detection twice (fast lane, then spool): it is stored once,
    /// whether the copies meet in one commit group, in two, or after a restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_edge_detection_sent_twice_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let id = |s: &str| BatchId::parse(s).unwrap();
        {
            let (store, db) = open(dir.path());
            let (indexer, join) =
                Indexer::spawn(store.clone(), db, Arc::default(), &StorageConfig::default())
                    .unwrap();
            // The fast copy, then the spooled batch carrying the same event among others.
            let fast = indexer
                .submit("agt_1".into(), id("f1/0"), vec![detection("e1", 1)])
                .await
                .unwrap();
            assert_eq!(fast, IndexOutcome::Stored(1));
            let spooled = indexer
                .submit(
                    "agt_1".into(),
                    id("s1/1"),
                    vec![event(2), detection("e1", 1), detection("e2", 3)],
                )
                .await
                .unwrap();
            assert_eq!(spooled, IndexOutcome::Stored(2));
            assert_eq!(stored(&store), 3);
            drop(indexer);
            join.join().unwrap();
        }
        let (store, db) = open(dir.path());
        let (indexer, join) =
            Indexer::spawn(store.clone(), db, Arc::default(), &StorageConfig::default()).unwrap();
        // After a restart: the spooled copy of e2 is known; another agent's e2 is not the
        // same event; an event with an id but no detection is never deduplicated.
        let later = indexer
            .submit("agt_1".into(), id("s1/2"), vec![detection("e2", 3)])
            .await
            .unwrap();
        assert_eq!(later, IndexOutcome::Stored(0));
        let other = indexer
            .submit("agt_2".into(), id("s9/1"), vec![detection("e2", 3)])
            .await
            .unwrap();
        assert_eq!(other, IndexOutcome::Stored(1));
        let mut plain = event(4);
        plain.insert("event".into(), serde_json::json!({"id": "e1"}));
        let plain = indexer
            .submit("agt_1".into(), id("s1/3"), vec![plain])
            .await
            .unwrap();
        assert_eq!(plain, IndexOutcome::Stored(1));
        assert_eq!(stored(&store), 5);
        drop(indexer);
        join.join().unwrap();
    }

    #[test]
    fn overlong_line_goes_to_dead_letters() {
        let body = format!("{{\"message\":\"{}\"}}\n{{}}\n", "x".repeat(300));
        let d = decode_batch(body.as_bytes(), false, &cfg(), "a", Utc::now()).unwrap();
        assert_eq!(d.events.len(), 1);
        assert_eq!(d.rejected[0].0, 1);
    }
}

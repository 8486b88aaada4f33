//! The spool against a model: random appends, hand-outs, acknowledgements
//! (in any order), syncs, clean restarts, crashes and crashes that tear the
//! last record.
//!
//! Checked after every step: every record handed out is live (appended, not
//! acknowledged before the persisted watermark, not dropped nor torn), with
//! its payload, in increasing seq order, once per process; once the spool
//! says nothing is left, every live record was handed out since the last
//! (re)open; the persisted watermark never claims a live record; seqs are
//! never reused; drops are exactly the oldest live records; counters and disk
//! bytes match the model and the directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use proptest::prelude::*;

use super::format::{record_bytes, scan_segment};
use super::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        events: u32,
        len: usize,
    },
    Next,
    Ack(usize),
    Sync,
    Close,
    Crash,
    /// Crash, then tear the last record of the last segment (see `tear`).
    Tear {
        keep: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u32..50, 0usize..100).prop_map(|(events, len)| Op::Append { events, len }),
        4 => Just(Op::Next),
        4 => any::<usize>().prop_map(Op::Ack),
        1 => Just(Op::Sync),
        1 => Just(Op::Close),
        1 => Just(Op::Crash),
        1 => any::<u64>().prop_map(|keep| Op::Tear { keep }),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Must be handed out after every (re)open until acknowledged.
    Live,
    /// Acknowledged in this process (comes back after a restart unless the
    /// persisted watermark covers it or its segment was deleted).
    Acked,
    /// Acknowledged under the persisted watermark, dropped, or torn: never again.
    Gone,
}

#[derive(Debug)]
struct MRec {
    events: u32,
    /// The payload is `payload_of(tag, len)`.
    tag: u64,
    len: usize,
    status: Status,
}

fn payload_of(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as usize * 7 + i * 13) as u8)
        .collect()
}

#[derive(Default)]
struct Model {
    recs: BTreeMap<u64, MRec>,
    /// Handed out since the last open and not acknowledged (maybe dropped since).
    in_flight: Vec<u64>,
    handed_this_life: BTreeSet<u64>,
    last_handed: u64,
    max_seq: u64,
}

impl Model {
    fn live(&self) -> impl Iterator<Item = (&u64, &MRec)> {
        self.recs.iter().filter(|(_, r)| r.status == Status::Live)
    }

    fn totals(&self) -> (u64, u64, u64) {
        self.live().fold((0, 0, 0), |(n, e, b), (_, r)| {
            (n + 1, e + u64::from(r.events), b + record_bytes(r.len))
        })
    }

    /// A restart: what the persisted watermark covers is gone; other
    /// acknowledged records come back if their segment was not deleted yet
    /// (`on_disk`: the seqs in the segment files after open).
    fn reopen(&mut self, persisted: u64, on_disk: &BTreeSet<u64>) {
        for (seq, r) in self.recs.iter_mut() {
            match r.status {
                Status::Acked if *seq > persisted && on_disk.contains(seq) => {
                    r.status = Status::Live;
                }
                Status::Acked => r.status = Status::Gone,
                Status::Live => assert!(on_disk.contains(seq), "live record {seq} lost"),
                Status::Gone => {}
            }
        }
        self.in_flight.clear();
        self.handed_this_life.clear();
        self.last_handed = 0;
    }
}

fn check(spool: &Spool, model: &Model, cfg: &SpoolConfig) {
    let (n, e, b) = model.totals();
    assert_eq!(
        (spool.records(), spool.events(), spool.bytes()),
        (n, e, b),
        "counters"
    );
    for seq in [spool.persisted_acked_seq(), spool.acked_seq()] {
        if let Some((live, _)) = model.live().next() {
            assert!(*live > seq, "watermark {seq} claims live record {live}");
        }
    }
    let in_flight = model
        .in_flight
        .iter()
        .filter(|s| model.recs.get(s).is_some_and(|r| r.status == Status::Live))
        .count();
    assert_eq!(spool.in_flight(), in_flight, "in flight");
    assert!(spool.disk_bytes() <= cfg.max_bytes, "over max_bytes");
    let on_disk: u64 = segment_files(spool.dir())
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(spool.disk_bytes(), on_disk, "disk bytes");
}

fn reopen(dir: &Path, cfg: &SpoolConfig, model: &mut Model, persisted: u64) -> Spool {
    let (spool, report) = Spool::open(dir, cfg).unwrap();
    model.reopen(persisted, &seqs_on_disk(dir));
    let (n, e, _) = model.totals();
    assert_eq!((report.records, report.events), (n, e), "open report");
    assert!(report.next_seq > model.max_seq, "seq reuse after open");
    spool
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}

fn first_seq_of(path: &Path) -> u64 {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap();
    format::parse_segment_name(name).unwrap()
}

fn seqs_on_disk(dir: &Path) -> BTreeSet<u64> {
    let mut seqs = BTreeSet::new();
    for f in segment_files(dir) {
        let scan = scan_segment(&f, first_seq_of(&f), None, |r| {
            seqs.insert(r.seq);
        })
        .unwrap();
        assert!(scan.bad.is_none(), "{f:?} still corrupt after open");
    }
    seqs
}

/// Cuts the last record of the last segment, leaving 1 to size-1 of its
/// bytes (a torn write); returns its seq.
fn tear(dir: &Path, keep: u64) -> Option<u64> {
    let last = segment_files(dir).pop()?;
    let mut found = None;
    scan_segment(&last, first_seq_of(&last), None, |r| found = Some(r)).unwrap();
    let r = found?;
    let f = fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(r.offset + 1 + keep % (r.bytes - 1)).unwrap();
    Some(r.seq)
}

fn run(cfg: SpoolConfig, ops: Vec<Op>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut model = Model::default();
    let (mut spool, _) = Spool::open(dir, &cfg).unwrap();
    for op in ops {
        match op {
            Op::Append { events, len } => {
                let disk_before = spool.disk_bytes();
                match spool
                    .append(events, &payload_of(model.max_seq + 1, len))
                    .unwrap()
                {
                    Append::Full => {
                        assert_eq!(cfg.when_full, WhenFull::Block);
                        assert!(disk_before + record_bytes(len) > cfg.max_bytes);
                    }
                    Append::Stored { seq, dropped } => {
                        assert!(seq > model.max_seq, "seq {seq} reused");
                        // Drops take exactly the oldest live records; those
                        // in flight are not counted (their sender still
                        // delivers them, or abandons them).
                        let live_before = model.live().count() as u64;
                        let removed = live_before + 1 - spool.records();
                        let oldest: Vec<u64> = model
                            .live()
                            .take(removed as usize)
                            .map(|(s, _)| *s)
                            .collect();
                        assert_eq!(oldest.len() as u64, removed);
                        let mut want = Dropped::default();
                        for s in oldest {
                            let sending = model.in_flight.contains(&s);
                            if let Some(r) = model.recs.get_mut(&s) {
                                if !sending {
                                    want.add(Dropped {
                                        records: 1,
                                        events: u64::from(r.events),
                                        bytes: record_bytes(r.len),
                                    });
                                }
                                r.status = Status::Gone;
                            }
                            // Still in `in_flight`: the collector may ack it anyway.
                        }
                        assert_eq!(dropped, want, "drop counts");
                        if cfg.when_full == WhenFull::Block {
                            assert!(dropped.is_empty());
                        }
                        let tag = model.max_seq + 1;
                        model.max_seq = seq;
                        model.recs.insert(
                            seq,
                            MRec {
                                events,
                                tag,
                                len,
                                status: Status::Live,
                            },
                        );
                    }
                }
            }
            Op::Next => match spool.next_unsent().unwrap() {
                Some(rec) => {
                    let m = model.recs.get(&rec.seq).expect("handed out an unknown seq");
                    assert_eq!(m.status, Status::Live, "handed out seq {}", rec.seq);
                    assert!(rec.seq > model.last_handed, "out of order");
                    assert!(model.handed_this_life.insert(rec.seq), "handed out twice");
                    assert_eq!(rec.events, m.events);
                    assert_eq!(rec.payload, payload_of(m.tag, m.len));
                    model.last_handed = rec.seq;
                    model.in_flight.push(rec.seq);
                }
                None => {
                    for (seq, _) in model.live() {
                        assert!(
                            model.handed_this_life.contains(seq),
                            "live record {seq} never handed out"
                        );
                    }
                }
            },
            Op::Ack(i) => {
                if !model.in_flight.is_empty() {
                    let seq = model.in_flight.remove(i % model.in_flight.len());
                    spool.ack(seq).unwrap();
                    if let Some(r) = model.recs.get_mut(&seq) {
                        // An ack of a record dropped meanwhile changes nothing.
                        if r.status == Status::Live {
                            r.status = Status::Acked;
                        }
                    }
                }
            }
            Op::Sync => spool.sync().unwrap(),
            Op::Close => {
                // close() persists the watermark.
                let persisted = spool.acked_seq();
                spool.close().unwrap();
                spool = reopen(dir, &cfg, &mut model, persisted);
            }
            Op::Crash => {
                let persisted = spool.persisted_acked_seq();
                drop(spool);
                spool = reopen(dir, &cfg, &mut model, persisted);
            }
            Op::Tear { keep } => {
                let persisted = spool.persisted_acked_seq();
                drop(spool);
                if let Some(seq) = tear(dir, keep) {
                    if let Some(r) = model.recs.get_mut(&seq) {
                        r.status = Status::Gone;
                    }
                }
                spool = reopen(dir, &cfg, &mut model, persisted);
            }
        }
        check(&spool, &model, &cfg);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn spool_matches_model(
        segment_bytes in prop_oneof![Just(150u64), Just(400)],
        max_factor in 2u64..5,
        drop_oldest in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let cfg = SpoolConfig {
            fsync: FsyncPolicy::Never,
            segment_bytes,
            max_bytes: segment_bytes * max_factor,
            when_full: if drop_oldest { WhenFull::DropOldest } else { WhenFull::Block },
            ..SpoolConfig::default()
        };
        run(cfg, ops);
    }
}

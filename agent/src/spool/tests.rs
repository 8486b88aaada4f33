use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::format::HEADER_BYTES;
use super::*;

/// 24 bytes of framing + 76 of payload: records of exactly 100 bytes.
const PAYLOAD_100: usize = 76;

fn cfg() -> SpoolConfig {
    SpoolConfig {
        fsync: FsyncPolicy::Never,
        segment_bytes: 1 << 10,
        max_bytes: 1 << 20,
        ..SpoolConfig::default()
    }
}

/// Segments of two 100-byte records.
fn small_cfg(max_bytes: u64, when_full: WhenFull) -> SpoolConfig {
    SpoolConfig {
        segment_bytes: 200,
        max_bytes,
        when_full,
        ..cfg()
    }
}

fn payload(tag: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (tag as usize * 31 + i) as u8).collect()
}

fn stored(a: Append) -> u64 {
    match a {
        Append::Stored { seq, dropped } => {
            assert!(dropped.is_empty(), "unexpected drop: {dropped:?}");
            seq
        }
        Append::Full => panic!("spool unexpectedly full"),
    }
}

fn drain(s: &mut Spool) -> Vec<Record> {
    let mut out = Vec::new();
    while let Some(r) = s.next_unsent().unwrap() {
        out.push(r);
    }
    out
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

fn seg_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).unwrap().len()
}

#[test]
fn spool_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<Spool>();
}

#[test]
fn append_read_ack_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, report) = Spool::open(dir.path(), &cfg()).unwrap();
    assert_eq!(report.records, 0);
    assert_eq!(report.next_seq, 1);
    for i in 1..=3u64 {
        let seq = stored(
            s.append(i as u32 * 10, &payload(i, 50 * i as usize))
                .unwrap(),
        );
        assert_eq!(seq, i);
    }
    assert_eq!((s.records(), s.events()), (3, 60));
    assert_eq!(s.bytes(), 3 * 24 + 300);
    let got = drain(&mut s);
    assert_eq!(seqs(&got), vec![1, 2, 3]);
    for r in &got {
        assert_eq!(r.events, r.seq as u32 * 10);
        assert_eq!(r.payload, payload(r.seq, 50 * r.seq as usize));
    }
    assert_eq!(s.in_flight(), 3);
    assert!(s.next_unsent().unwrap().is_none(), "handed out once");
    for r in &got {
        s.ack(r.seq).unwrap();
    }
    assert_eq!((s.records(), s.events(), s.bytes()), (0, 0, 0));
    assert_eq!(s.acked_seq(), 3);
    // Appends after catching up are handed out too.
    assert_eq!(stored(s.append(1, b"x").unwrap()), 4);
    assert_eq!(seqs(&drain(&mut s)), vec![4]);
}

#[test]
fn restart_keeps_unacked_records_and_seq_continuity() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(dir.path(), &cfg()).unwrap();
    for i in 1..=5u64 {
        stored(s.append(i as u32, &payload(i, 40)).unwrap());
    }
    drain(&mut s);
    s.ack(1).unwrap();
    s.ack(2).unwrap();
    s.close().unwrap();

    let (mut s, report) = Spool::open(dir.path(), &cfg()).unwrap();
    assert_eq!((report.records, report.events), (3, 3 + 4 + 5));
    assert_eq!(report.acked_seq, 2);
    assert_eq!(report.next_seq, 6);
    assert_eq!(report.truncated_bytes, 0);
    let got = drain(&mut s);
    assert_eq!(seqs(&got), vec![3, 4, 5]);
    assert_eq!(got[0].payload, payload(3, 40));
    assert_eq!(stored(s.append(9, b"next").unwrap()), 6);
}

#[test]
fn fsync_always_persists_each_ack_so_a_crash_resends_only_unacked() {
    let dir = tempfile::tempdir().unwrap();
    let always = SpoolConfig {
        fsync: FsyncPolicy::Always,
        ..cfg()
    };
    let (mut s, _) = Spool::open(dir.path(), &always).unwrap();
    for i in 1..=3u64 {
        stored(s.append(1, &payload(i, 10)).unwrap());
        assert_eq!(s.durable_seq(), i);
    }
    drain(&mut s);
    s.ack(1).unwrap();
    s.ack(3).unwrap();
    assert_eq!(s.persisted_acked_seq(), 1, "3 is acked but 2 is not");
    drop(s); // crash: no close

    let (mut s, report) = Spool::open(dir.path(), &always).unwrap();
    assert_eq!(report.acked_seq, 1);
    // 3 was acknowledged, but not under the watermark: sent again (the
    // collector recognises it by batch id).
    assert_eq!(seqs(&drain(&mut s)), vec![2, 3]);
}

#[test]
fn out_of_order_acks_move_the_watermark_only_over_contiguous_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(dir.path(), &cfg()).unwrap();
    for i in 1..=5u64 {
        stored(s.append(1, &payload(i, 8)).unwrap());
    }
    drain(&mut s);
    s.ack(3).unwrap();
    s.ack(5).unwrap();
    assert_eq!(s.acked_seq(), 0);
    assert_eq!(s.records(), 3);
    s.ack(1).unwrap();
    assert_eq!(s.acked_seq(), 1);
    s.ack(2).unwrap();
    assert_eq!(s.acked_seq(), 3);
    s.ack(3).unwrap(); // idempotent
    assert_eq!(s.records(), 1);
    s.sync().unwrap();
    assert_eq!(s.persisted_acked_seq(), 3, "never claims unacked 4");
    s.ack(4).unwrap();
    assert_eq!(s.acked_seq(), 5);
    assert_eq!(s.records(), 0);
}

#[test]
fn bad_acks_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(dir.path(), &cfg()).unwrap();
    stored(s.append(1, b"a").unwrap());
    stored(s.append(1, b"b").unwrap());
    let err = s.ack(7).unwrap_err();
    assert!(
        matches!(err, SpoolError::UnknownSeq { seq: 7, .. }),
        "{err}"
    );
    let err = s.ack(1).unwrap_err();
    assert!(
        matches!(err, SpoolError::NotHandedOut { seq: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&dir.path().display().to_string()));
}

#[test]
fn segments_roll_over_and_fully_acked_ones_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(dir.path(), &small_cfg(1 << 20, WhenFull::Block)).unwrap();
    for i in 1..=6u64 {
        stored(s.append(1, &payload(i, PAYLOAD_100)).unwrap());
    }
    let files = seg_files(dir.path());
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "00000000000000000001.seg",
            "00000000000000000003.seg",
            "00000000000000000005.seg"
        ]
    );
    assert!(files.iter().all(|f| file_len(f) == 200));
    assert_eq!(s.disk_bytes(), 600);
    drain(&mut s);
    s.ack(2).unwrap();
    assert_eq!(seg_files(dir.path()).len(), 3);
    s.ack(1).unwrap();
    assert_eq!(seg_files(dir.path()).len(), 2, "first segment deleted");
    s.ack(3).unwrap();
    s.ack(4).unwrap();
    assert_eq!(seg_files(dir.path()).len(), 1);
    s.ack(5).unwrap();
    s.ack(6).unwrap();
    // The segment still being appended to is kept until it rolls over.
    assert_eq!(seg_files(dir.path()).len(), 1);
    assert_eq!(s.disk_bytes(), 200);
    assert_eq!(stored(s.append(1, &payload(7, PAYLOAD_100)).unwrap()), 7);
    assert_eq!(seg_files(dir.path()).len(), 1, "acked segment reclaimed");
    assert_eq!(s.disk_bytes(), 100);
}

#[test]
fn seq_is_never_reused_after_every_segment_was_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(dir.path(), &cfg()).unwrap();
    for i in 1..=3u64 {
        stored(s.append(1, &payload(i, 10)).unwrap());
    }
    for r in drain(&mut s) {
        s.ack(r.seq).unwrap();
    }
    s.close().unwrap();
    let (s, report) = Spool::open(dir.path(), &cfg()).unwrap();
    assert!(
        seg_files(dir.path()).is_empty(),
        "fully acked spool is empty"
    );
    assert_eq!((report.records, report.next_seq), (0, 4));
    assert_eq!(report.written_end, 4, "acknowledged records were written");
    drop(s);
    let (mut s, _) = Spool::open(dir.path(), &cfg()).unwrap();
    assert_eq!(stored(s.append(1, b"new").unwrap()), 4);
}

/// Builds a spool of three small records and returns (dir, offset where the
/// last record starts, length of the segment).
fn three_records(dir: &Path) -> (u64, u64) {
    let (mut s, _) = Spool::open(dir, &cfg()).unwrap();
    for i in 1..=3u64 {
        stored(s.append(i as u32, &payload(i, 5)).unwrap());
    }
    drop(s);
    let files = seg_files(dir);
    assert_eq!(files.len(), 1);
    let len = file_len(&files[0]);
    (len - (24 + 5), len)
}

#[test]
fn torn_tail_is_cut_at_every_offset_and_earlier_records_survive() {
    let probe = tempfile::tempdir().unwrap();
    let (start, len) = three_records(probe.path());
    for cut_at in start..len {
        let dir = tempfile::tempdir().unwrap();
        three_records(dir.path());
        let seg = seg_files(dir.path()).remove(0);
        fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut_at)
            .unwrap();
        let (mut s, report) = Spool::open(dir.path(), &cfg()).unwrap();
        let torn = cut_at - start;
        assert_eq!(report.truncated_bytes, torn, "cut at {cut_at}");
        // Record 3 never completed: positions pending on it must not apply,
        // even though its seq is not reused.
        assert_eq!(report.written_end, 3, "cut at {cut_at}");
        assert_eq!(report.corruptions.len(), usize::from(torn > 0));
        if torn > 0 {
            let c = &report.corruptions[0];
            assert!(
                c.truncated && c.torn && c.offset == start && c.path == seg,
                "{c:?}"
            );
        }
        assert_eq!(file_len(&seg), start, "tail cut off");
        assert_eq!((report.records, report.events), (2, 3));
        let got = drain(&mut s);
        assert_eq!(seqs(&got), vec![1, 2]);
        assert_eq!(got[1].payload, payload(2, 5));
        let next = stored(s.append(1, b"after").unwrap());
        if torn > 0 {
            assert!(
                next > 3,
                "seq 3 may have been sent: not reused (got {next})"
            );
        }
        assert_eq!(seqs(&drain(&mut s)), vec![next]);
        s.close().unwrap();
        let (mut s, report) = Spool::open(dir.path(), &cfg()).unwrap();
        assert_eq!(report.truncated_bytes, 0, "clean after the cut");
        assert_eq!(seqs(&drain(&mut s)), vec![1, 2, next]);
    }
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (_, len) = three_records(dir.path());
    let seg = seg_files(dir.path()).remove(0);
    let mut bytes = fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(&seg, &bytes).unwrap();
    let (mut s, report) = Spool::open(dir.path(), &cfg()).unwrap();
    assert_eq!(report.truncated_bytes, 4096);
    assert!(!report.corruptions[0].torn, "garbage is not a torn write");
    assert_eq!(report.written_end, 4);
    assert_eq!(file_len(&seg), len);
    assert_eq!(seqs(&drain(&mut s)), vec![1, 2, 3]);
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x40;
    fs::write(path, &bytes).unwrap();
}

#[test]
fn flipped_byte_is_detected_by_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(dir.path(), &small_cfg(1 << 20, WhenFull::Block)).unwrap();
    for i in 1..=6u64 {
        stored(s.append(i as u32, &payload(i, PAYLOAD_100)).unwrap());
    }
    drop(s);
    let files = seg_files(dir.path());
    // Record 2 (sealed segment), in its payload; record 5 (last segment).
    flip(&files[0], 100 + HEADER_BYTES + 40);
    flip(&files[2], HEADER_BYTES + 30);
    let (mut s, report) = Spool::open(dir.path(), &small_cfg(1 << 20, WhenFull::Block)).unwrap();
    assert_eq!(report.corrupt_segments, 1);
    assert_eq!(report.corrupt_bytes, 100);
    assert_eq!(report.truncated_bytes, 200);
    assert_eq!(report.corruptions.len(), 2);
    assert!(report.corruptions[0].reason.contains("checksum"));
    assert_eq!(report.corruptions[0].path, files[0]);
    assert!(!report.corruptions[0].truncated);
    assert!(
        report.corruptions[1].truncated && !report.corruptions[1].torn,
        "a checksum mismatch is damage, not a torn write"
    );
    assert_eq!(report.records, 3);
    let got = drain(&mut s);
    assert_eq!(seqs(&got), vec![1, 3, 4]);
    assert_eq!(got[1].payload, payload(3, PAYLOAD_100));
    // Records 5 and 6 were cut: their seqs are not reused.
    assert!(stored(s.append(1, b"x").unwrap()) > 6);
}

#[test]
fn corruption_found_when_reading_back_is_counted_as_lost() {
    let dir = tempfile::tempdir().unwrap();
    let c = small_cfg(1 << 20, WhenFull::Block);
    let (mut s, _) = Spool::open(dir.path(), &c).unwrap();
    for i in 1..=4u64 {
        stored(s.append(i as u32, &payload(i, PAYLOAD_100)).unwrap());
    }
    // Record 2 rots on disk after open, before it is read back.
    flip(&seg_files(dir.path())[0], 100 + HEADER_BYTES + 40);
    let got = drain(&mut s);
    assert_eq!(seqs(&got), vec![1, 3, 4]);
    assert_eq!(
        s.lost(),
        Dropped {
            records: 1,
            events: 2,
            bytes: 100
        }
    );
    assert_eq!(s.records(), 3);
    s.ack(1).unwrap();
    assert_eq!(
        s.acked_seq(),
        2,
        "the lost record does not hold the watermark"
    );
    assert_eq!(seg_files(dir.path()).len(), 1, "its segment is gone");
}

#[test]
fn block_mode_reports_full_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(dir.path(), &small_cfg(400, WhenFull::Block)).unwrap();
    for i in 1..=4u64 {
        stored(s.append(1, &payload(i, PAYLOAD_100)).unwrap());
    }
    assert_eq!(s.append(1, &payload(5, PAYLOAD_100)).unwrap(), Append::Full);
    assert_eq!((s.disk_bytes(), s.records(), s.next_seq()), (400, 4, 5));
    assert_eq!(seqs(&drain(&mut s)), vec![1, 2, 3, 4]);
    s.ack(1).unwrap();
    assert_eq!(s.append(1, &payload(5, PAYLOAD_100)).unwrap(), Append::Full);
    s.ack(2).unwrap();
    assert_eq!(stored(s.append(1, &payload(5, PAYLOAD_100)).unwrap()), 5);
    assert!(s.disk_bytes() <= 400);
}

#[test]
fn drop_oldest_counts_exactly_and_never_hands_out_dropped_records() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Spool::open(dir.path(), &small_cfg(400, WhenFull::DropOldest)).unwrap();
    for i in 1..=4u64 {
        stored(s.append(i as u32 * 100, &payload(i, PAYLOAD_100)).unwrap());
    }
    // 1 and 2 are in flight.
    assert_eq!(s.next_unsent().unwrap().map(|r| r.seq), Some(1));
    let r2 = s.next_unsent().unwrap();
    assert_eq!(r2.map(|r| r.seq), Some(2));
    // Drops segment [1, 2]: both unacknowledged but in flight, so not
    // counted yet: their sender delivers them or abandons them.
    let a = s.append(5, &payload(5, PAYLOAD_100)).unwrap();
    assert_eq!(
        a,
        Append::Stored {
            seq: 5,
            dropped: Dropped::default()
        }
    );
    // 2 is abandoned (the agent stops before delivering it): lost now.
    assert_eq!(
        s.abandon(2),
        Dropped {
            records: 1,
            events: 200,
            bytes: 100
        }
    );
    assert_eq!(s.abandon(2), Dropped::default(), "counted once");
    assert_eq!(s.acked_seq(), 2);
    assert_eq!(s.next_unsent().unwrap().map(|r| r.seq), Some(3));
    s.ack(3).unwrap();
    s.ack(1).unwrap(); // dropped meanwhile: ignored
    assert_eq!((s.records(), s.events()), (2, 400 + 5));
    assert_eq!(stored(s.append(6, &payload(6, PAYLOAD_100)).unwrap()), 6);
    // Drops segment [3, 4]: 3 was acknowledged, only 4 counts.
    let a = s.append(7, &payload(7, PAYLOAD_100)).unwrap();
    assert_eq!(
        a,
        Append::Stored {
            seq: 7,
            dropped: Dropped {
                records: 1,
                events: 400,
                bytes: 100
            }
        }
    );
    assert_eq!(seqs(&drain(&mut s)), vec![5, 6, 7]);
    assert_eq!(s.disk_bytes(), 300);
    s.close().unwrap();
    let (mut s, report) = Spool::open(dir.path(), &small_cfg(400, WhenFull::DropOldest)).unwrap();
    assert_eq!(report.acked_seq, 4);
    assert_eq!(seqs(&drain(&mut s)), vec![5, 6, 7]);
}

#[test]
fn a_record_larger_than_the_spool_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for when_full in [WhenFull::Block, WhenFull::DropOldest] {
        let (mut s, _) = Spool::open(dir.path(), &small_cfg(400, when_full)).unwrap();
        let err = s.append(1, &vec![0u8; 400]).unwrap_err();
        assert!(
            matches!(
                err,
                SpoolError::TooLarge {
                    bytes: 424,
                    limit: 400,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("max_bytes"), "{err}");
        assert_eq!(s.next_seq(), 1);
    }
}

#[test]
fn interval_policy_hands_out_only_synced_records() {
    let dir = tempfile::tempdir().unwrap();
    let c = SpoolConfig {
        fsync: FsyncPolicy::Interval,
        fsync_interval_ms: 3_600_000,
        ..cfg()
    };
    let (mut s, _) = Spool::open(dir.path(), &c).unwrap();
    assert_eq!(
        s.sync_interval(),
        Some(std::time::Duration::from_secs(3600))
    );
    stored(s.append(1, b"a").unwrap());
    stored(s.append(1, b"b").unwrap());
    assert_eq!(s.durable_seq(), 0);
    assert!(s.needs_sync());
    assert!(s.next_unsent().unwrap().is_none(), "not on disk yet");
    s.sync().unwrap();
    assert!(!s.needs_sync());
    assert_eq!(s.durable_seq(), 2);
    assert_eq!(seqs(&drain(&mut s)), vec![1, 2]);
    s.ack(1).unwrap();
    assert!(s.needs_sync(), "watermark to persist");
}

#[test]
fn files_are_private() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("spool");
    let (mut s, _) = Spool::open(&dir, &cfg()).unwrap();
    stored(s.append(1, b"a").unwrap());
    drain(&mut s);
    s.ack(1).unwrap();
    s.close().unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&seg_files(&dir)[0]), 0o600);
    assert_eq!(mode(&dir.join("acked")), 0o600);
    assert!(!dir.join("acked.tmp").exists());
}

#[test]
fn corrupt_state_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("acked"), b"{\"version\":1,").unwrap();
    let err = Spool::open(dir.path(), &cfg()).unwrap_err();
    assert!(matches!(err, SpoolError::State { .. }), "{err}");
    assert!(err.to_string().contains("acked"), "{err}");
}

#[test]
fn config_parses_with_defaults_and_refuses_unknown_keys() {
    let c: SpoolConfig = toml::from_str("").unwrap();
    assert_eq!(c, SpoolConfig::default());
    assert!(c.enabled);
    assert_eq!(c.max_bytes, 1 << 30);
    assert_eq!(c.segment_bytes, 64 << 20);
    assert_eq!(
        (c.fsync, c.when_full),
        (FsyncPolicy::Always, WhenFull::Block)
    );
    let c: SpoolConfig = toml::from_str(
        "dir = \"/var/spool/vigie\"\nfsync = \"interval\"\nfsync_interval_ms = 250\n\
         when_full = \"drop_oldest\"\nmax_bytes = 1000000\nsegment_bytes = 100000",
    )
    .unwrap();
    assert_eq!(c.fsync, FsyncPolicy::Interval);
    assert_eq!(c.when_full, WhenFull::DropOldest);
    assert_eq!(c.dir.as_deref(), Some(Path::new("/var/spool/vigie")));
    assert!(c.validate().is_ok());
    assert!(toml::from_str::<SpoolConfig>("max_size = 1").is_err());
    assert!(toml::from_str::<SpoolConfig>("fsync = \"sometimes\"").is_err());
    let bad = SpoolConfig {
        max_bytes: 10,
        ..SpoolConfig::default()
    };
    let err = bad.validate().unwrap_err();
    assert!(err.contains("spool.max_bytes"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Spool::open(dir.path(), &bad),
        Err(SpoolError::Config(_))
    ));
}

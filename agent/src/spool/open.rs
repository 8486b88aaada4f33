//! Opening a spool: reading every segment back, cutting a torn tail off,
//! and rebuilding the index, the watermark and the read cursor.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, DirBuilder, OpenOptions};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::format::{self, MIN_RECORD_BYTES};
use super::state;
use super::store::{Cursor, Segment};
use super::{Corruption, Dropped, FsyncPolicy, OpenReport, Spool, SpoolConfig, SpoolError};

impl Spool {
    /// Opens (or creates) the spool in `dir`, checks every segment, cuts a
    /// torn tail off, and positions the read cursor on the oldest record not
    /// acknowledged. `cfg.dir` and `cfg.enabled` are the caller's business.
    pub fn open(dir: &Path, cfg: &SpoolConfig) -> Result<(Spool, OpenReport), SpoolError> {
        cfg.validate().map_err(SpoolError::Config)?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| SpoolError::Dir {
                path: dir.to_path_buf(),
                source,
            })?;
        let persisted = state::load(dir)?.unwrap_or_default();
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            cfg: cfg.clone(),
            segments: VecDeque::new(),
            active: None,
            next_seq: persisted.next_seq,
            acked: persisted.acked_seq,
            persisted,
            acked_ahead: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            dropped_in_flight: BTreeMap::new(),
            cursor: Cursor {
                seq: 0,
                segment: None,
                offset: 0,
            },
            reader: None,
            durable: 0,
            unsynced: false,
            last_sync: Instant::now(),
            live: Dropped::default(),
            disk_bytes: 0,
            doomed: Vec::new(),
            lost: Dropped::default(),
            buf: Vec::new(),
        };
        let mut report = OpenReport {
            written_end: persisted.next_seq.max(persisted.acked_seq + 1),
            ..OpenReport::default()
        };
        let first_live = spool.recover(&mut report)?;
        spool.collect()?;
        spool.advance_watermark();
        spool.keep_seq_floor()?;
        spool.cursor = Cursor {
            seq: spool.acked + 1,
            segment: first_live.map(|(first, _)| first),
            offset: first_live.map_or(0, |(_, offset)| offset),
        };
        let sync = spool.cfg.fsync != FsyncPolicy::Never;
        if let Some(last) = spool.segments.back() {
            let contiguous = last.end_seq == spool.next_seq
                && last.valid_bytes == last.file_bytes
                && last.valid_bytes < spool.cfg.segment_bytes;
            let file = OpenOptions::new()
                .append(true)
                .open(&last.path)
                .map_err(|source| SpoolError::Write {
                    path: last.path.clone(),
                    source,
                })?;
            // What the last run wrote may still sit in the page cache: make it
            // durable before handing it out.
            if sync {
                file.sync_data().map_err(|source| SpoolError::Write {
                    path: last.path.clone(),
                    source,
                })?;
            }
            if contiguous {
                spool.active = Some(file);
            }
        }
        spool.durable = spool.next_seq - 1;
        report.segments = spool.segments.len() as u32;
        report.records = spool.live.records;
        report.events = spool.live.events;
        report.bytes = spool.live.bytes;
        report.acked_seq = spool.acked;
        report.next_seq = spool.next_seq;
        Ok((spool, report))
    }

    /// Scans every segment file into `self.segments`; returns where the first
    /// live record is (segment, offset).
    fn recover(&mut self, report: &mut OpenReport) -> Result<Option<(u64, u64)>, SpoolError> {
        let mut files = list_segments(&self.dir)?;
        files.sort();
        let watermark = self.acked;
        let mut first_live = None;
        for k in 0..files.len() {
            let (first, path) = files[k].clone();
            let next_first = files.get(k + 1).map(|f| f.0);
            self.next_seq = self.next_seq.max(first);
            if next_first.is_some_and(|next| next <= watermark + 1) {
                // Everything in it is acknowledged: no need to read it.
                let bytes = fs::metadata(&path).map_or(0, |m| m.len());
                self.disk_bytes += bytes;
                self.doomed.push((path, bytes));
                continue;
            }
            let mut live = Dropped::default();
            let mut live_offset = None;
            let scan = format::scan_segment(&path, first, next_first, |r| {
                if r.seq > watermark {
                    live.add(Dropped::one(r.events, r.bytes));
                    live_offset.get_or_insert(r.offset);
                }
            })
            .map_err(|source| SpoolError::Read {
                path: path.clone(),
                source,
            })?;
            let end_seq = first + scan.records;
            report.written_end = report.written_end.max(end_seq);
            let mut file_bytes = scan.file_bytes;
            if let Some(bad) = scan.bad {
                let cut = scan.file_bytes - scan.valid_bytes;
                let last = next_first.is_none();
                if last {
                    truncate(
                        &path,
                        scan.valid_bytes,
                        self.cfg.fsync != FsyncPolicy::Never,
                    )?;
                    file_bytes = scan.valid_bytes;
                    report.truncated_bytes += cut;
                    // The cut bytes may have held records already sent: never
                    // reuse a seq they could have carried.
                    self.next_seq = self.next_seq.max(end_seq + cut.div_ceil(MIN_RECORD_BYTES));
                } else {
                    report.corrupt_segments += 1;
                    report.corrupt_bytes += cut;
                }
                report.corruptions.push(Corruption {
                    path: path.clone(),
                    offset: scan.valid_bytes,
                    bytes: cut,
                    truncated: last,
                    torn: last && matches!(bad, format::Bad::ShortHeader | format::Bad::ShortBody),
                    reason: bad.to_string(),
                });
            }
            self.next_seq = self.next_seq.max(end_seq);
            if first_live.is_none() {
                first_live = live_offset.map(|offset| (first, offset));
            }
            self.live.add(live);
            self.disk_bytes += file_bytes;
            self.segments.push_back(Segment {
                first_seq: first,
                end_seq,
                path,
                file_bytes,
                valid_bytes: scan.valid_bytes,
                live,
            });
        }
        Ok(first_live)
    }
}

/// The segment files of `dir`, by first seq (unsorted).
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let dir_err = |source| SpoolError::Dir {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(dir_err)? {
        let entry = entry.map_err(dir_err)?;
        let Some(first) = entry
            .file_name()
            .to_str()
            .and_then(format::parse_segment_name)
        else {
            continue;
        };
        if entry.file_type().map_err(dir_err)?.is_file() {
            out.push((first, entry.path()));
        }
    }
    Ok(out)
}

fn truncate(path: &Path, len: u64, sync: bool) -> Result<(), SpoolError> {
    let err = |source| SpoolError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new().write(true).open(path).map_err(err)?;
    file.set_len(len).map_err(err)?;
    if sync {
        file.sync_all().map_err(err)?;
    }
    Ok(())
}

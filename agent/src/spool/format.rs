//! On-disk framing of spool records, segment file names, and the segment
//! scanner used at open.
//!
//! A record is a 12-byte header followed by its body:
//!
//! ```text
//! header  0..3   magic b"VGS"
//!         3      format version (1)
//!         4..8   body length in bytes, u32 LE (12 ..= 12 + MAX_PAYLOAD_BYTES)
//!         8..12  CRC-32 (IEEE, crc32fast) of the whole body
//! body    0..8   seq, u64 LE
//!         8..12  event count, u32 LE
//!         12..   payload (the gzip'ed NDJSON batch; opaque here)
//! ```
//!
//! A segment file is named after the seq of its first record, zero-padded to
//! 20 digits: `00000000000000000042.seg`. Records in one segment have
//! consecutive seqs starting at that number, so a record whose seq is not the
//! expected one is as corrupt as one whose checksum is wrong.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Largest payload one record may carry; a header announcing more is corrupt.
pub const MAX_PAYLOAD_BYTES: u64 = 64 << 20;

const MAGIC: [u8; 3] = *b"VGS";
const VERSION: u8 = 1;
/// Bytes of the record header.
pub(super) const HEADER_BYTES: u64 = 12;
/// Bytes of the body before the payload (seq + event count).
const BODY_PREFIX_BYTES: u64 = 12;
/// The smallest possible record (empty payload).
pub(super) const MIN_RECORD_BYTES: u64 = HEADER_BYTES + BODY_PREFIX_BYTES;
const MAX_BODY_BYTES: u64 = BODY_PREFIX_BYTES + MAX_PAYLOAD_BYTES;
const SEGMENT_SUFFIX: &str = ".seg";

/// Why a record is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Bad {
    /// The file ends inside a header.
    ShortHeader,
    /// The header does not start with the magic bytes.
    Magic,
    /// The header carries another format version.
    Version(u8),
    /// The announced body length is impossible.
    Length(u32),
    /// The file ends inside the body.
    ShortBody,
    /// The body does not match its checksum.
    Checksum,
    /// The record is intact but not the one expected at this place.
    Seq { expected: u64, found: u64 },
    /// The record's seq belongs to the next segment.
    Overlap { seq: u64 },
}

impl fmt::Display for Bad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bad::ShortHeader => f.write_str("file ends inside a record header (torn write)"),
            Bad::Magic => f.write_str("bad record magic"),
            Bad::Version(v) => write!(f, "unknown record format version {v}"),
            Bad::Length(n) => write!(f, "impossible record length {n}"),
            Bad::ShortBody => f.write_str("file ends inside a record (torn write)"),
            Bad::Checksum => f.write_str("record checksum mismatch"),
            Bad::Seq { expected, found } => {
                write!(f, "record seq {found} where {expected} was expected")
            }
            Bad::Overlap { seq } => write!(f, "record seq {seq} belongs to the next segment"),
        }
    }
}

/// Size on disk of a record carrying `payload_len` bytes.
pub(super) fn record_bytes(payload_len: usize) -> u64 {
    HEADER_BYTES + BODY_PREFIX_BYTES + payload_len as u64
}

/// Appends the framed record to `out`.
pub(super) fn encode(seq: u64, events: u32, payload: &[u8], out: &mut Vec<u8>) {
    let body_len = (BODY_PREFIX_BYTES as usize + payload.len()) as u32;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(&events.to_le_bytes());
    hasher.update(payload);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&events.to_le_bytes());
    out.extend_from_slice(payload);
}

/// A parsed header: body length and expected checksum.
#[derive(Debug, Clone, Copy)]
struct Header {
    body_len: u64,
    crc: u32,
}

fn parse_header(h: &[u8; HEADER_BYTES as usize]) -> Result<Header, Bad> {
    if h[0..3] != MAGIC {
        return Err(Bad::Magic);
    }
    if h[3] != VERSION {
        return Err(Bad::Version(h[3]));
    }
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if u64::from(len) < BODY_PREFIX_BYTES || u64::from(len) > MAX_BODY_BYTES {
        return Err(Bad::Length(len));
    }
    Ok(Header {
        body_len: u64::from(len),
        crc: u32::from_le_bytes([h[8], h[9], h[10], h[11]]),
    })
}

fn parse_prefix(b: &[u8]) -> (u64, u32) {
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&b[0..8]);
    let mut events = [0u8; 4];
    events.copy_from_slice(&b[8..12]);
    (u64::from_le_bytes(seq), u32::from_le_bytes(events))
}

/// The segment file name for a segment starting at `first_seq`.
pub(super) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// The first seq of a segment file name, if `name` is one.
pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One valid record found by [`scan_segment`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Scanned {
    pub seq: u64,
    pub events: u32,
    pub offset: u64,
    pub bytes: u64,
}

/// What [`scan_segment`] found.
#[derive(Debug)]
pub(super) struct Scan {
    /// Valid records.
    pub records: u64,
    /// End of the last valid record.
    pub valid_bytes: u64,
    /// Length of the file.
    pub file_bytes: u64,
    /// The first invalid record, if the file does not end at `valid_bytes`.
    pub bad: Option<Bad>,
}

/// Reads a segment from its start, checking every record, and calls `visit`
/// for each valid one. Stops at the first invalid record. `first_seq` is the
/// seq the first record must carry; `seq_limit`, if any, the first seq that
/// belongs to the next segment. Memory use is bounded whatever the file holds.
pub(super) fn scan_segment(
    path: &Path,
    first_seq: u64,
    seq_limit: Option<u64>,
    mut visit: impl FnMut(Scanned),
) -> io::Result<Scan> {
    let file = File::open(path)?;
    let file_bytes = file.metadata()?.len();
    let mut r = BufReader::with_capacity(256 << 10, file);
    let mut scan = Scan {
        records: 0,
        valid_bytes: 0,
        file_bytes,
        bad: None,
    };
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let expected = first_seq + scan.records;
        match scan_one(&mut r, &mut chunk, scan.valid_bytes, file_bytes, expected)? {
            None => return Ok(scan),
            Some(Ok(rec)) if seq_limit.is_some_and(|limit| rec.seq >= limit) => {
                scan.bad = Some(Bad::Overlap { seq: rec.seq });
                return Ok(scan);
            }
            Some(Ok(rec)) => {
                visit(rec);
                scan.records += 1;
                scan.valid_bytes += rec.bytes;
            }
            Some(Err(bad)) => {
                scan.bad = Some(bad);
                return Ok(scan);
            }
        }
    }
}

/// Reads the record at `offset` (the reader's position); `None` at the end
/// of the file.
fn scan_one(
    r: &mut impl Read,
    chunk: &mut [u8],
    offset: u64,
    file_bytes: u64,
    expected: u64,
) -> io::Result<Option<Result<Scanned, Bad>>> {
    let mut h = [0u8; HEADER_BYTES as usize];
    let got = read_full(r, &mut h)?;
    if got == 0 {
        return Ok(None);
    }
    if got < h.len() {
        return Ok(Some(Err(Bad::ShortHeader)));
    }
    let header = match parse_header(&h) {
        Ok(header) => header,
        Err(bad) => return Ok(Some(Err(bad))),
    };
    if offset + HEADER_BYTES + header.body_len > file_bytes {
        return Ok(Some(Err(Bad::ShortBody)));
    }
    // Stream the body through the checksum: a 64 MiB record costs one chunk here.
    let mut hasher = crc32fast::Hasher::new();
    let mut prefix = [0u8; BODY_PREFIX_BYTES as usize];
    r.read_exact(&mut prefix)?;
    hasher.update(&prefix);
    let mut left = header.body_len - BODY_PREFIX_BYTES;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        r.read_exact(&mut chunk[..n])?;
        hasher.update(&chunk[..n]);
        left -= n as u64;
    }
    if hasher.finalize() != header.crc {
        return Ok(Some(Err(Bad::Checksum)));
    }
    let (seq, events) = parse_prefix(&prefix);
    if seq != expected {
        return Ok(Some(Err(Bad::Seq {
            expected,
            found: seq,
        })));
    }
    Ok(Some(Ok(Scanned {
        seq,
        events,
        offset,
        bytes: HEADER_BYTES + header.body_len,
    })))
}

/// Reads until `buf` is full or the end of the file; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A record read back for sending.
#[derive(Debug)]
pub(super) struct ReadBack {
    pub seq: u64,
    pub events: u32,
    pub payload: Vec<u8>,
    pub bytes: u64,
}

/// Reads the record at `offset` of `file`, which must end by `limit`
/// (the known valid length of the segment). Only the seq is read (not the
/// payload, nor the checksum) when it is below `want_seq`, so skipping
/// records costs little.
pub(super) fn read_at(
    file: &File,
    offset: u64,
    limit: u64,
    want_seq: u64,
) -> io::Result<Result<ReadBack, Bad>> {
    if offset + HEADER_BYTES > limit {
        return Ok(Err(Bad::ShortHeader));
    }
    let mut h = [0u8; HEADER_BYTES as usize];
    file.read_exact_at(&mut h, offset)?;
    let header = match parse_header(&h) {
        Ok(header) => header,
        Err(bad) => return Ok(Err(bad)),
    };
    let bytes = HEADER_BYTES + header.body_len;
    if offset + bytes > limit {
        return Ok(Err(Bad::ShortBody));
    }
    let mut prefix = [0u8; BODY_PREFIX_BYTES as usize];
    file.read_exact_at(&mut prefix, offset + HEADER_BYTES)?;
    let (seq, events) = parse_prefix(&prefix);
    if seq < want_seq {
        return Ok(Ok(ReadBack {
            seq,
            events,
            payload: Vec::new(),
            bytes,
        }));
    }
    let mut payload = vec![0u8; (header.body_len - BODY_PREFIX_BYTES) as usize];
    file.read_exact_at(&mut payload, offset + HEADER_BYTES + BODY_PREFIX_BYTES)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&prefix);
    hasher.update(&payload);
    if hasher.finalize() != header.crc {
        return Ok(Err(Bad::Checksum));
    }
    Ok(Ok(ReadBack {
        seq,
        events,
        payload,
        bytes,
    }))
}

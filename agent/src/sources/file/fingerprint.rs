//! File identity: a fingerprint of the first line.
//!
//! A file is identified by the xxh3-64 hash of its first line without the
//! newline, or of its first `fingerprint_bytes` bytes when the first line is at
//! least that long. The fingerprint exists only once that much is written: a
//! file whose first line is shorter and not yet complete has none yet and is
//! retried at the next scan. Append-only files keep their fingerprint forever,
//! whatever their path or inode, which is what lets rotation (rename or copy)
//! and restarts find the position again. Inode numbers are never trusted alone:
//! a recycled inode with different content has a different fingerprint.
//!
//! Limitation (shared with every first-bytes scheme): two files whose first
//! lines are identical are the same file to the tailer.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use xxhash_rust::xxh3::xxh3_64;

/// Hashes the identifying prefix of `head`, the first bytes of a file (at most
/// `fingerprint_bytes` of them, fewer only when the file is shorter).
///
/// Returns `None` when the first line is not complete yet and shorter than
/// `fingerprint_bytes`.
pub(crate) fn fingerprint_of(head: &[u8], fingerprint_bytes: usize) -> Option<u64> {
    let head = &head[..head.len().min(fingerprint_bytes)];
    match head.iter().position(|&b| b == b'\n') {
        Some(end) => Some(xxh3_64(&head[..end])),
        None if head.len() == fingerprint_bytes => Some(xxh3_64(head)),
        None => None,
    }
}

/// Reads the fingerprint of an open file (positional read: the handle's cursor is untouched).
pub(crate) fn read_fingerprint(file: &File, fingerprint_bytes: usize) -> io::Result<Option<u64>> {
    // Read at every poll that finds new data: the default 1 KiB stays on the stack.
    let mut stack = [0u8; 4096];
    let mut heap = Vec::new();
    let head: &mut [u8] = if fingerprint_bytes <= stack.len() {
        &mut stack[..fingerprint_bytes]
    } else {
        heap.resize(fingerprint_bytes, 0);
        &mut heap
    };
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if head[filled - n..filled].contains(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(fingerprint_of(&head[..filled], fingerprint_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn first_line_without_newline_is_the_identity() {
        let a = fingerprint_of(b"hello\nworld\n", 1024);
        assert_eq!(a, Some(xxh3_64(b"hello")));
        // More lines do not change it.
        assert_eq!(fingerprint_of(b"hello\nother\nmore\n", 1024), a);
        assert_ne!(fingerprint_of(b"hellp\n", 1024), a);
    }

    #[test]
    fn incomplete_short_first_line_has_no_fingerprint_yet() {
        assert_eq!(fingerprint_of(b"", 16), None);
        assert_eq!(fingerprint_of(b"partial", 16), None);
    }

    #[test]
    fn long_first_line_uses_the_first_fingerprint_bytes() {
        let fp = fingerprint_of(b"0123456789abcdefXYZ", 16);
        assert_eq!(fp, Some(xxh3_64(b"0123456789abcdef")));
        // The same once the line is complete and more is written.
        assert_eq!(fingerprint_of(b"0123456789abcdefXYZ\nnext\n", 16), fp);
        // A first line of exactly fingerprint_bytes: same rule with or without its newline.
        assert_eq!(fingerprint_of(b"0123456789abcdef\n", 16), fp);
    }

    #[test]
    fn read_fingerprint_reads_positionally() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"first line\nsecond\n").unwrap();
        assert_eq!(
            read_fingerprint(&f, 1024).unwrap(),
            Some(xxh3_64(b"first line"))
        );
        let empty = tempfile::tempfile().unwrap();
        assert_eq!(read_fingerprint(&empty, 1024).unwrap(), None);
    }
}

//! Line splitting over one open file, with bounded memory.
//!
//! A [`LineReader`] owns an open handle, a read buffer (at most
//! [`READ_BUF_BYTES`], released whenever it is fully consumed) and the bytes of
//! the line in progress (at most `max_line_bytes + 1`). Lines are handed out
//! one at a time so a caller can stop at any line and resume later without
//! losing or repeating one.
//!
//! Invariants:
//! - `line_start()` is the offset of the first byte not yet handed out in a
//!   complete line: reopening the file there resumes exactly.
//! - A line is complete only at its `\n`; the partial last line of a file is
//!   kept until its newline arrives, or handed out by [`LineReader::take_partial`]
//!   when the file is being closed for good.
//! - A line longer than `max_line_bytes` is cut there and flagged; the rest of
//!   it is read and dropped, whatever its length.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;

/// Size of the per-file read buffer.
pub(crate) const READ_BUF_BYTES: usize = 64 * 1024;

/// One complete line as read from the file.
#[derive(Debug)]
pub(crate) struct Line {
    /// Offset of the line's first byte.
    pub offset: u64,
    /// Offset just after the line and its newline.
    pub end_offset: u64,
    /// The line without `\n` and without a trailing `\r`, cut at `max_line_bytes`.
    pub bytes: Vec<u8>,
    /// The line was longer than `max_line_bytes`.
    pub truncated: bool,
}

/// An open file being split into lines.
#[derive(Debug)]
pub(crate) struct LineReader {
    file: File,
    dev: u64,
    ino: u64,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[end]`: the next byte `fill` reads.
    read_pos: u64,
    /// First bytes of the line in progress (at most `max_line_bytes + 1`).
    line: Vec<u8>,
    /// Offset of the line in progress.
    line_start: u64,
    /// Full length so far of the line in progress.
    line_len: u64,
    /// Drop bytes up to and including the next newline (started inside a line).
    skip_to_newline: bool,
}

impl LineReader {
    /// Wraps an open file, positioned at `pos` (which must be a line start).
    pub(crate) fn new(mut file: File, pos: u64) -> io::Result<LineReader> {
        let meta = file.metadata()?;
        file.seek(SeekFrom::Start(pos))?;
        Ok(LineReader {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            buf: Vec::new(),
            start: 0,
            end: 0,
            read_pos: pos,
            line: Vec::new(),
            line_start: pos,
            line_len: 0,
            skip_to_newline: false,
        })
    }

    /// Wraps an open file positioned at `pos` inside a line: the rest of that line is
    /// skipped, reading starts at the next line.
    pub(crate) fn new_mid_line(file: File, pos: u64) -> io::Result<LineReader> {
        let mut r = LineReader::new(file, pos)?;
        r.skip_to_newline = true;
        Ok(r)
    }

    /// `(device, inode)` of the open file.
    pub(crate) fn inode(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Offset of the first byte not yet handed out in a complete line.
    pub(crate) fn line_start(&self) -> u64 {
        self.line_start
    }

    /// Offset of the next byte to read from the file.
    pub(crate) fn read_pos(&self) -> u64 {
        self.read_pos
    }

    /// True when read bytes are waiting in the buffer.
    pub(crate) fn has_buffered(&self) -> bool {
        self.start < self.end
    }

    /// True when a line without its newline has been read.
    pub(crate) fn has_partial(&self) -> bool {
        self.line_len > 0 && !self.skip_to_newline
    }

    /// Gives the read buffer up when it holds nothing (keeps idle files cheap): into
    /// `spare` when that is empty, so the next file read takes it instead of a new one.
    pub(crate) fn release_buffer_if_empty(&mut self, spare: &mut Vec<u8>) {
        if self.start == self.end && !self.buf.is_empty() {
            let buf = std::mem::take(&mut self.buf);
            if spare.is_empty() {
                *spare = buf;
            }
            self.start = 0;
            self.end = 0;
        }
    }

    /// The next complete line from the buffer, or `None` when the buffer holds no
    /// newline (its bytes then join the line in progress and `fill` is needed).
    pub(crate) fn next_buffered(&mut self, max_line_bytes: usize) -> Option<Line> {
        loop {
            if self.start >= self.end {
                return None;
            }
            let newline = memchr::memchr(b'\n', &self.buf[self.start..self.end]);
            let Some(i) = newline else {
                let (s, e) = (self.start, self.end);
                if !self.skip_to_newline {
                    self.append(s, e, max_line_bytes);
                }
                self.start = self.end;
                return None;
            };
            let end_offset = self.offset_of(self.start) + i as u64 + 1;
            if self.skip_to_newline {
                self.skip_to_newline = false;
                self.start += i + 1;
                self.line_start = end_offset;
                self.line.clear();
                self.line_len = 0;
                continue;
            }
            let (s, e) = (self.start, self.start + i);
            self.append(s, e, max_line_bytes);
            self.start += i + 1;
            return Some(self.finish_line(end_offset, max_line_bytes));
        }
    }

    /// Hands out the partial last line (no newline) as a line, when the file is closed
    /// for good. Only valid once the buffer is consumed.
    pub(crate) fn take_partial(&mut self, max_line_bytes: usize) -> Option<Line> {
        if self.has_buffered() || !self.has_partial() {
            return None;
        }
        let end_offset = self.line_start + self.line_len;
        Some(self.finish_line(end_offset, max_line_bytes))
    }

    /// Reads at most `max_bytes` (and at most [`READ_BUF_BYTES`]) into the buffer, which
    /// must be consumed. Returns the number of bytes read, 0 at end of file. Without a
    /// buffer, takes `spare` (see [`LineReader::release_buffer_if_empty`]) or a new one.
    pub(crate) fn fill(&mut self, max_bytes: usize, spare: &mut Vec<u8>) -> io::Result<usize> {
        debug_assert!(!self.has_buffered());
        if self.buf.is_empty() {
            self.buf = if spare.len() == READ_BUF_BYTES {
                std::mem::take(spare)
            } else {
                vec![0; READ_BUF_BYTES]
            };
        }
        let want = max_bytes.clamp(1, READ_BUF_BYTES);
        loop {
            match self.file.read(&mut self.buf[..want]) {
                Ok(n) => {
                    self.start = 0;
                    self.end = n;
                    self.read_pos += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn offset_of(&self, index: usize) -> u64 {
        self.read_pos - (self.end - index) as u64
    }

    fn append(&mut self, s: usize, e: usize, max_line_bytes: usize) {
        let keep = (max_line_bytes + 1).saturating_sub(self.line.len());
        let take = keep.min(e - s);
        self.line.extend_from_slice(&self.buf[s..s + take]);
        self.line_len += (e - s) as u64;
    }

    fn finish_line(&mut self, end_offset: u64, max_line_bytes: usize) -> Line {
        let mut bytes = std::mem::take(&mut self.line);
        let mut len = self.line_len;
        // `line` holds the whole line when len <= max + 1: only then is its last byte
        // the line's last byte.
        if len <= max_line_bytes as u64 + 1 && bytes.last() == Some(&b'\r') {
            bytes.pop();
            len -= 1;
        }
        let truncated = len > max_line_bytes as u64;
        bytes.truncate(max_line_bytes);
        let line = Line {
            offset: self.line_start,
            end_offset,
            bytes,
            truncated,
        };
        self.line_start = end_offset;
        self.line_len = 0;
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn reader_over(content: &[u8], pos: u64) -> LineReader {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        LineReader::new(f, pos).unwrap()
    }

    fn drain(r: &mut LineReader, max: usize) -> Vec<Line> {
        let mut lines = Vec::new();
        loop {
            while let Some(l) = r.next_buffered(max) {
                lines.push(l);
            }
            if r.fill(7, &mut Vec::new()).unwrap() == 0 {
                return lines;
            }
        }
    }

    #[test]
    fn splits_lines_across_small_reads_with_offsets() {
        let mut r = reader_over(b"alpha\r\nbeta\n\ngamma-partial", 0);
        let lines = drain(&mut r, 100);
        let got: Vec<_> = lines
            .iter()
            .map(|l| (l.bytes.as_slice(), l.offset, l.end_offset, l.truncated))
            .collect();
        assert_eq!(
            got,
            vec![
                (&b"alpha"[..], 0, 7, false),
                (&b"beta"[..], 7, 12, false),
                (&b""[..], 12, 13, false)
            ]
        );
        assert_eq!(r.line_start(), 13);
        assert!(r.has_partial());
        let last = r.take_partial(100).unwrap();
        assert_eq!(
            (last.bytes.as_slice(), last.end_offset),
            (&b"gamma-partial"[..], 26)
        );
    }

    #[test]
    fn long_line_is_cut_and_flagged_and_the_next_is_intact() {
        let mut content = vec![b'x'; 50];
        content.extend_from_slice(b"\nok\n");
        let mut r = reader_over(&content, 0);
        let lines = drain(&mut r, 10);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].bytes, vec![b'x'; 10]);
        assert!(lines[0].truncated);
        assert_eq!(lines[0].end_offset, 51);
        assert_eq!(
            (lines[1].bytes.as_slice(), lines[1].truncated),
            (&b"ok"[..], false)
        );
    }

    #[test]
    fn crlf_at_exact_limit_is_not_truncated() {
        let mut r = reader_over(b"0123456789\r\n", 0);
        let lines = drain(&mut r, 10);
        assert_eq!(lines[0].bytes, b"0123456789");
        assert!(!lines[0].truncated);
    }

    #[test]
    fn mid_line_start_skips_to_the_next_line() {
        let mut r = LineReader::new_mid_line(
            {
                let mut f = tempfile::tempfile().unwrap();
                f.write_all(b"abc\ndef\n").unwrap();
                f
            },
            1,
        )
        .unwrap();
        let lines = drain(&mut r, 100);
        assert_eq!(lines.len(), 1);
        assert_eq!(
            (lines[0].bytes.as_slice(), lines[0].offset),
            (&b"def"[..], 4)
        );
    }
}

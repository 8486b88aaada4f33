//! Multiline events: joining continuation lines (stack traces…) to the line
//! that starts the event.
//!
//! A line matching the start pattern starts a new event; any other line is
//! appended to the current one with `\n` (a continuation with no event open
//! starts one). An event is complete when the next start line arrives, when no
//! line arrived for the timeout, or when it reaches `max_lines`. Its offset is
//! its first line's, its end offset its last line's: acknowledging it moves the
//! checkpoint past every line it holds. Its bytes are capped at
//! `max_line_bytes` (then flagged truncated). There is one assembler per file,
//! so lines of different files never mix.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::bytes::Regex;

use super::reader::Line;

/// Compiled multiline settings, shared by the assemblers of one source.
#[derive(Debug, Clone)]
pub(crate) struct MultilineRule {
    pub start: Regex,
    pub timeout: Duration,
    pub max_lines: usize,
    pub max_bytes: usize,
}

/// An event being assembled or completed.
#[derive(Debug)]
pub(crate) struct Event {
    pub path: Arc<Path>,
    pub offset: u64,
    pub end_offset: u64,
    pub bytes: Vec<u8>,
    pub truncated: bool,
    pub lines: u32,
}

/// Per-file assembler.
#[derive(Debug, Default)]
pub(crate) struct Assembler {
    pending: Option<(Event, Instant)>,
}

impl Assembler {
    /// True when an event is being assembled.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Adds a line; returns the event it completed, if any (never more than one).
    pub(crate) fn push(
        &mut self,
        rule: &MultilineRule,
        path: &Arc<Path>,
        line: Line,
        now: Instant,
    ) -> Option<Event> {
        let mut done = None;
        match self.pending.as_mut() {
            Some((event, at)) if !rule.start.is_match(&line.bytes) => {
                append(event, rule, &line);
                *at = now;
            }
            _ => {
                done = self.pending.take().map(|(e, _)| e);
                self.pending = Some((start_event(path, line), now));
            }
        }
        if self
            .pending
            .as_ref()
            .is_some_and(|(e, _)| e.lines as usize >= rule.max_lines)
        {
            // An event is flushed as soon as it reaches max_lines, so when a start line
            // completed the previous event the new one holds a single line and only
            // reaches the limit if max_lines is 1, in which case there was no previous.
            debug_assert!(done.is_none());
            done = done.or_else(|| self.pending.take().map(|(e, _)| e));
        }
        done
    }

    /// The pending event if no line arrived for the timeout.
    pub(crate) fn flush_if_idle(&mut self, rule: &MultilineRule, now: Instant) -> Option<Event> {
        match &self.pending {
            Some((_, at)) if now.saturating_duration_since(*at) >= rule.timeout => self.flush(),
            _ => None,
        }
    }

    /// The pending event, whatever its age.
    pub(crate) fn flush(&mut self) -> Option<Event> {
        self.pending.take().map(|(e, _)| e)
    }
}

fn start_event(path: &Arc<Path>, line: Line) -> Event {
    Event {
        path: Arc::clone(path),
        offset: line.offset,
        end_offset: line.end_offset,
        bytes: line.bytes,
        truncated: line.truncated,
        lines: 1,
    }
}

fn append(event: &mut Event, rule: &MultilineRule, line: &Line) {
    event.lines += 1;
    event.end_offset = line.end_offset;
    event.truncated |= line.truncated;
    let room = rule.max_bytes.saturating_sub(event.bytes.len());
    if room == 0 {
        event.truncated = true;
        return;
    }
    event.bytes.push(b'\n');
    let take = line.bytes.len().min(room - 1);
    event.bytes.extend_from_slice(&line.bytes[..take]);
    if take < line.bytes.len() {
        event.truncated = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(max_lines: usize, max_bytes: usize) -> MultilineRule {
        MultilineRule {
            start: Regex::new(r"^\d").unwrap(),
            timeout: Duration::from_millis(100),
            max_lines,
            max_bytes,
        }
    }

    fn line(text: &str, offset: u64) -> Line {
        Line {
            offset,
            end_offset: offset + text.len() as u64 + 1,
            bytes: text.as_bytes().to_vec(),
            truncated: false,
        }
    }

    #[test]
    fn start_line_completes_the_previous_event() {
        let r = rule(10, 1000);
        let p: Arc<Path> = Arc::from(Path::new("/x"));
        let mut a = Assembler::default();
        let t = Instant::now();
        assert!(a.push(&r, &p, line("1 boom", 0), t).is_none());
        assert!(a.push(&r, &p, line("  at a", 7), t).is_none());
        let e = a.push(&r, &p, line("2 next", 14), t).unwrap();
        assert_eq!(e.bytes, b"1 boom\n  at a");
        assert_eq!((e.offset, e.end_offset, e.lines), (0, 14, 2));
        assert!(a.has_pending());
        assert!(a.flush_if_idle(&r, t).is_none());
        let e = a.flush_if_idle(&r, t + Duration::from_millis(100)).unwrap();
        assert_eq!(e.bytes, b"2 next");
    }

    #[test]
    fn max_lines_and_max_bytes_bound_an_event() {
        let r = rule(2, 8);
        let p: Arc<Path> = Arc::from(Path::new("/x"));
        let mut a = Assembler::default();
        let t = Instant::now();
        assert!(a.push(&r, &p, line("1 abcd", 0), t).is_none());
        let e = a.push(&r, &p, line("efgh", 7), t).unwrap();
        assert_eq!(e.bytes, b"1 abcd\ne");
        assert!(e.truncated);
        assert_eq!(e.lines, 2);
        assert!(!a.has_pending());

        let one = rule(1, 100);
        assert_eq!(a.push(&one, &p, line("x", 0), t).unwrap().bytes, b"x");
        assert_eq!(a.push(&one, &p, line("1", 2), t).unwrap().bytes, b"1");
    }
}

//! Batch buffers and gzip state, reused from one batch to the next.
//!
//! A batch body grows to `max_bytes` (1 MiB by default). With the unit's
//! `glibc.malloc.mmap_threshold` of 128 KiB, glibc maps every such buffer
//! fresh and unmaps it when it is freed, so each new body, each gzipped copy
//! and each new deflate state is pages to fault in again: at 2,000 lines/s
//! that was about a tenth of the agent's CPU (`perf`, bench/README.md). The
//! [`Recycler`] keeps one of each between batches: the pipeline takes its
//! next body from it, the gzip step gives the body back, and the spool
//! writer gives back the gzipped copy once it is on disk.
//!
//! Memory at rest grows by what the kept buffers hold (at most one body and
//! one gzipped body, plus the deflate state); buffers larger than
//! [`KEEP_MAX_BYTES`] are not kept.

use std::sync::{Mutex, MutexGuard};

use vigie_wire::Gzipper;

/// Largest buffer kept for reuse; a larger one is freed.
pub const KEEP_MAX_BYTES: usize = 2 << 20;

/// Buffers and a compressor kept between batches (see the module header).
#[derive(Debug, Default)]
pub struct Recycler {
    body: Mutex<Option<Vec<u8>>>,
    gzipped: Mutex<Option<Vec<u8>>>,
    gzipper: Mutex<Option<Gzipper>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn keep(slot: &Mutex<Option<Vec<u8>>>, mut buf: Vec<u8>) {
    if buf.capacity() <= KEEP_MAX_BYTES {
        buf.clear();
        *lock(slot) = Some(buf);
    }
}

impl Recycler {
    /// An empty buffer for the next batch body, with room for `capacity` bytes.
    pub fn body(&self, capacity: usize) -> Vec<u8> {
        match lock(&self.body).take() {
            Some(mut b) => {
                b.reserve(capacity);
                b
            }
            None => Vec::with_capacity(capacity),
        }
    }

    /// Hands a body back once it has been gzipped.
    pub fn give_body(&self, body: Vec<u8>) {
        keep(&self.body, body);
    }

    /// Hands a gzipped body back once it is no longer needed (written to the spool).
    pub fn give_gzipped(&self, gzipped: Vec<u8>) {
        keep(&self.gzipped, gzipped);
    }

    /// Gzips `raw` at `level` with the kept compressor, into the kept gzip buffer.
    pub fn gzip(&self, raw: &[u8], level: u32) -> Vec<u8> {
        let mut gz = lock(&self.gzipper)
            .take()
            .filter(|g| g.level() == level.min(9))
            .unwrap_or_else(|| Gzipper::new(level));
        let mut out = lock(&self.gzipped).take().unwrap_or_default();
        gz.gzip_into(raw, &mut out);
        *lock(&self.gzipper) = Some(gz);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_with_their_room() {
        let r = Recycler::default();
        let mut b = r.body(1000);
        b.extend_from_slice(&[b'x'; 4000]);
        let cap = b.capacity();
        let gz = r.gzip(&b, 1);
        assert_eq!(vigie_wire::gunzip_capped(&gz, 1 << 20).unwrap(), b);
        r.give_body(b);
        r.give_gzipped(gz);
        let again = r.body(10);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), cap, "the same buffer, not a new one");
        // The kept gzip buffer and state serve the next body, at another level too.
        let next = b"{\"message\":\"next\"}\n".repeat(50);
        for level in [1, 6] {
            let gz = r.gzip(&next, level);
            assert_eq!(vigie_wire::gunzip_capped(&gz, 1 << 20).unwrap(), next);
            r.give_gzipped(gz);
        }
    }

    #[test]
    fn huge_buffers_are_not_kept() {
        let r = Recycler::default();
        r.give_body(Vec::with_capacity(KEEP_MAX_BYTES + 1));
        assert_eq!(r.body(0).capacity(), 0);
    }
}

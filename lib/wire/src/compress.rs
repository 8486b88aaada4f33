//! Gzip on the wire, always capped on the way in.
//!
//! A batch body is gzip of NDJSON. Decompression stops with
//! [`DecompressError::TooLarge`] as soon as the output passes the cap, so a
//! gzip bomb costs at most `cap` bytes of memory and is answered with `413`.
//!
//! [`Gzipper`] keeps its deflate state from one body to the next: an agent
//! gzips a batch a second, and a fresh state is a few hundred KiB of new
//! pages to fault in each time.

use std::io::Read;

use flate2::read::MultiGzDecoder;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Why a body could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("decompressed body exceeds the limit of {cap} bytes")]
    TooLarge { cap: usize },
    #[error("body is not valid gzip: {0}")]
    Corrupt(#[source] std::io::Error),
}

/// Gzips `data` at the given level (0-9; 1 is fast and good enough for logs).
pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut out = Vec::new();
    Gzipper::new(level).gzip_into(data, &mut out);
    out
}

/// A gzip compressor whose deflate state is reset, not rebuilt, between bodies.
pub struct Gzipper {
    deflate: Compress,
    level: u32,
}

impl std::fmt::Debug for Gzipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gzipper")
            .field("level", &self.level)
            .finish()
    }
}

/// The gzip member header (RFC 1952): no name, no time, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

impl Gzipper {
    /// A compressor at `level` (0-9, clamped).
    pub fn new(level: u32) -> Self {
        let level = level.min(9);
        Gzipper {
            // Raw deflate: the gzip header and trailer are written here.
            deflate: Compress::new(Compression::new(level), false),
            level,
        }
    }

    /// The level this compressor was made for.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// Replaces `out`'s contents with one gzip member holding `data`. `out` keeps its
    /// capacity, so a buffer passed again and again is not reallocated.
    pub fn gzip_into(&mut self, data: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.reserve(data.len() / 4 + 64);
        out.extend_from_slice(&GZIP_HEADER);
        self.deflate.reset();
        loop {
            let consumed = usize::try_from(self.deflate.total_in()).unwrap_or(usize::MAX);
            let rest = data.get(consumed..).unwrap_or_default();
            if out.capacity() - out.len() < 1024 {
                out.reserve(rest.len() / 2 + 4096);
            }
            let before = (self.deflate.total_in(), self.deflate.total_out());
            match self.deflate.compress_vec(rest, out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => break,
                Ok(Status::Ok | Status::BufError) => {
                    // No progress with room to write would loop forever: give it more room.
                    if before == (self.deflate.total_in(), self.deflate.total_out()) {
                        out.reserve(out.capacity().max(4096));
                    }
                }
                Err(_) => {
                    // Deflate into a Vec has no failure mode; should the state be corrupt,
                    // start over from a fresh one rather than ship a broken body.
                    *self = Gzipper::new(self.level);
                    let mut enc = flate2::write::GzEncoder::new(
                        std::mem::take(out),
                        Compression::new(self.level),
                    );
                    let _ = std::io::Write::write_all(&mut enc, data);
                    *out = enc.finish().unwrap_or_default();
                    return;
                }
            }
        }
        let mut crc = Crc::new();
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        // ISIZE: the input's length modulo 2^32.
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    }
}

/// Inflates a gzip body, refusing to produce more than `cap` bytes.
pub fn gunzip_capped(body: &[u8], cap: usize) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(cap));
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    MultiGzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(DecompressError::Corrupt)?;
    if out.len() > cap {
        return Err(DecompressError::TooLarge { cap });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let data = b"{\"message\":\"hello\"}\n".repeat(100);
        let z = gzip(&data, 1);
        assert!(z.len() < data.len());
        assert_eq!(gunzip_capped(&z, 1 << 20).unwrap(), data);
    }

    #[test]
    fn a_reused_gzipper_writes_valid_independent_members() {
        let mut gz = Gzipper::new(1);
        let mut out = Vec::new();
        // Large and incompressible enough to need several rounds of output room.
        let mut big = Vec::new();
        let mut x: u64 = 7;
        for _ in 0..200_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            big.extend_from_slice(&x.to_le_bytes()[..5]);
        }
        for data in [
            b"{\"message\":\"hello\"}\n".repeat(1000),
            Vec::new(),
            big,
            b"second use of the same state\n".to_vec(),
        ] {
            gz.gzip_into(&data, &mut out);
            assert_eq!(gunzip_capped(&out, 16 << 20).unwrap(), data);
            // What a standard decoder reads, header and trailer included.
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&out[..])
                .read_to_end(&mut plain)
                .unwrap();
            assert_eq!(plain, data);
        }
    }

    #[test]
    fn bomb_is_refused_at_the_cap() {
        let zeros = vec![0u8; 50 << 20];
        let z = gzip(&zeros, 9);
        assert!(z.len() < 100 << 10, "a 50 MiB bomb compresses small");
        match gunzip_capped(&z, 1 << 20) {
            Err(DecompressError::TooLarge { cap }) => assert_eq!(cap, 1 << 20),
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn exactly_at_the_cap_is_fine() {
        let data = vec![b'a'; 4096];
        assert_eq!(gunzip_capped(&gzip(&data, 1), 4096).unwrap().len(), 4096);
    }

    #[test]
    fn garbage_is_corrupt() {
        assert!(matches!(
            gunzip_capped(b"not gzip at all", 1024),
            Err(DecompressError::Corrupt(_))
        ));
    }
}

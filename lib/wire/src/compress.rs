//! Gzip on the wire, always capped on the way in.
//!
//! A batch body is gzip of NDJSON. Decompression stops with
//! [`DecompressError::TooLarge`] as soon as the output passes the cap, so a
//! gzip bomb costs at most `cap` bytes of memory and is answered with `413`.

use std::io::{Read, Write};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

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
    let mut enc = GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        Compression::new(level),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
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

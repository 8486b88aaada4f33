//! The batch envelope of `POST /v1/batches`.
//!
//! A batch is NDJSON (one ECS event per line), gzip-compressed, identified by
//! the header `Vigie-Batch: <stream>/<sequence>`. The agent id is not in the
//! batch: the collector takes it from the client certificate. `stream` names
//! one ordered flow of batches of an agent (e.g. `main`); `sequence` grows by
//! one per new batch of that stream and is reused, unchanged, when a batch is
//! sent again, which is how the collector recognises a retry.

use serde::{Deserialize, Serialize};

/// The header carrying the batch id.
pub const BATCH_HEADER: &str = "vigie-batch";
/// The header carrying the agent's version (informational).
pub const AGENT_VERSION_HEADER: &str = "vigie-agent-version";
/// Content type of a batch body (before compression).
pub const NDJSON: &str = "application/x-ndjson";

/// A batch id as carried by the `Vigie-Batch` header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchId {
    /// The stream name: 1 to 64 characters of `[A-Za-z0-9_.-]`.
    pub stream: String,
    /// The sequence number within the stream.
    pub sequence: u64,
}

/// Why a `Vigie-Batch` header was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchIdError {
    #[error("Vigie-Batch must be '<stream>/<sequence>', got {0:?}")]
    Shape(String),
    #[error("Vigie-Batch stream must be 1-64 characters of [A-Za-z0-9_.-], got {0:?}")]
    Stream(String),
    #[error("Vigie-Batch sequence must be an unsigned integer, got {0:?}")]
    Sequence(String),
}

impl BatchId {
    /// A new batch id.
    pub fn new(stream: impl Into<String>, sequence: u64) -> Self {
        Self {
            stream: stream.into(),
            sequence,
        }
    }

    /// Parses the header value.
    pub fn parse(value: &str) -> Result<Self, BatchIdError> {
        let (stream, seq) = value
            .trim()
            .split_once('/')
            .ok_or_else(|| BatchIdError::Shape(value.to_owned()))?;
        if !valid_stream(stream) {
            return Err(BatchIdError::Stream(stream.to_owned()));
        }
        let sequence = seq
            .parse::<u64>()
            .map_err(|_| BatchIdError::Sequence(seq.to_owned()))?;
        Ok(Self::new(stream, sequence))
    }

    /// The header value.
    pub fn header_value(&self) -> String {
        format!("{}/{}", self.stream, self.sequence)
    }
}

/// Whether a stream name is acceptable.
pub fn valid_stream(stream: &str) -> bool {
    !stream.is_empty()
        && stream.len() <= 64
        && stream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The collector's answer to a batch it took (`200`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Events stored from this batch (absent for a duplicate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<u64>,
    /// True when the batch had already been stored: nothing was stored again.
    pub duplicate: bool,
    /// Line numbers (1-based) that were not JSON objects and went to the dead-letter store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_lines: Vec<usize>,
}

/// A `400` answer for a batch with bad lines also carries the offending line
/// numbers; the other lines were stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The `error` object of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_id_round_trip() {
        let id = BatchId::parse("main/42").unwrap();
        assert_eq!(id, BatchId::new("main", 42));
        assert_eq!(id.header_value(), "main/42");
    }

    #[test]
    fn batch_id_errors_say_what_is_wrong() {
        assert!(matches!(
            BatchId::parse("main"),
            Err(BatchIdError::Shape(_))
        ));
        assert!(matches!(
            BatchId::parse("ma in/1"),
            Err(BatchIdError::Stream(_))
        ));
        assert!(matches!(BatchId::parse("/1"), Err(BatchIdError::Stream(_))));
        assert!(matches!(
            BatchId::parse("main/-1"),
            Err(BatchIdError::Sequence(_))
        ));
        assert!(matches!(
            BatchId::parse("main/x"),
            Err(BatchIdError::Sequence(_))
        ));
    }

    #[test]
    fn ack_shapes_match_the_contract() {
        let a = Ack {
            accepted: Some(3),
            duplicate: false,
            rejected_lines: vec![],
        };
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"accepted":3,"duplicate":false}"#
        );
        let d = Ack {
            accepted: None,
            duplicate: true,
            rejected_lines: vec![],
        };
        assert_eq!(serde_json::to_string(&d).unwrap(), r#"{"duplicate":true}"#);
    }
}

//! vigie-wire: the contract between agent and collector.
//!
//! Batch envelope and acknowledgements, capped gzip, enrollment messages, and
//! the PKI / mTLS helpers both sides use.

pub mod batch;
pub mod compress;
pub mod config;
pub mod enroll;
pub mod pki;
pub mod rulepack;
pub mod stats;

pub use batch::{Ack, BatchId, BatchIdError, ErrorBody, ErrorDetail, BATCH_HEADER};
pub use compress::{gunzip_capped, gzip, DecompressError, Gzipper};
pub use config::{config_version, CentralConfig, CONFIG_PATH, MAX_CONFIG_BYTES};
pub use enroll::{EnrollRequest, EnrollResponse, RenewRequest, RenewResponse, RENEW_PATH};
pub use rulepack::{NamedText, Rulepack, MAX_RULEPACK_BYTES, RULEPACK_PATH};
pub use stats::{AgentStats, DetectStats, Drops, SourceStats, STATS_PATH};

//! Central source configuration (`GET /v1/config`).
//!
//! The collector can hold `[[sources]]` for an agent group (`[fleet.sources]`
//! in collector.toml). An agent with `[collector] central_sources = true`
//! pulls its group's document with `If-None-Match`, checks it with its own
//! configuration rules, keeps the last good one on disk and restarts its
//! pipeline on the new sources; a document it cannot use is refused and the
//! refusal reported (`AgentStats::config_error`). `404` means the group has
//! none (the agent runs its local sources only).

use serde::{Deserialize, Serialize};

/// Where an agent pulls its group's sources (mTLS).
pub const CONFIG_PATH: &str = "/v1/config";

/// Largest document an agent reads.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CentralConfig {
    /// Content hash, also the `ETag`.
    pub version: String,
    /// TOML text made of `[[sources]]` tables only, as in agent.toml.
    pub sources_toml: String,
}

/// The version of a document text: `sha256-` and 16 hex digits of its SHA-256.
pub fn config_version(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!("sha256-{}", &hex::encode(digest)[..16])
}

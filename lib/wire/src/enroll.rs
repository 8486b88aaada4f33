//! Enrollment messages (`POST /v1/enroll`) and certificate renewal
//! (`POST /v1/renew`).
//!
//! The agent generates its key locally and sends only a CSR with the
//! enrollment token; the collector answers with the certificate it signed,
//! whose identity is the agent id the collector assigned, and the CA chain.
//! Renewal is the same exchange over the agent's current mTLS identity, with
//! a new key and no token: the identity stays the agent's.

use serde::{Deserialize, Serialize};

/// The agent's enrollment request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The enrollment token printed by `vigie-collector token create`.
    pub token: String,
    /// A PEM certificate signing request for the agent's locally generated key.
    pub csr_pem: String,
    /// The endpoint's hostname, for display.
    pub hostname: String,
    /// The agent's version.
    #[serde(default)]
    pub version: Option<String>,
}

/// The collector's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The identity assigned to this agent (the certificate's CN and URI SAN).
    pub agent_id: String,
    /// The signed client certificate (PEM).
    pub cert_pem: String,
    /// The CA certificate that signed it (PEM).
    pub ca_pem: String,
    /// The certificate's end of validity (RFC 3339).
    pub not_after: String,
    /// The agent group the token placed it in.
    pub group: String,
}

/// Where an agent renews its certificate (mTLS, its current certificate).
pub const RENEW_PATH: &str = "/v1/renew";

/// An agent's renewal request: a CSR for a key generated for the occasion.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// A PEM certificate signing request for the new key.
    pub csr_pem: String,
}

/// The collector's answer to a renewal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewResponse {
    /// The new client certificate (PEM), same agent id.
    pub cert_pem: String,
    /// Its end of validity (RFC 3339).
    pub not_after: String,
}

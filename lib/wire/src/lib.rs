//! vigie-wire: the contract between agent and collector.
//!
//! Batch envelope and acknowledgements, capped gzip, enrollment messages, and
//! the PKI / mTLS helpers both sides use.

pub mod pki;

//! vigie-collector: the central side of Vigie.
//!
//! Enrolls agents, ingests their batches over mTLS, stores events in per-day
//! tantivy indexes and control data in SQLite, and serves the HTTP API.

pub mod db;
pub mod store;

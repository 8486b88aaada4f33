//! vigie-collector: the central side of Vigie.
//!
//! Enrolls agents, ingests their batches over mTLS, stores events in per-day
//! tantivy indexes and control data in SQLite, and serves the HTTP API.

pub mod alert_filters;
pub mod alerts;
pub mod api;
pub mod central;
pub mod config;
pub mod connectors;
pub mod db;
pub mod fleet;
pub mod hunts;
pub mod ingest;
pub mod init;
pub mod intake;
pub mod listener;
pub mod metrics;
pub mod novelty;
pub mod quickstart;
pub mod quota;
pub mod revoke;
pub mod server;
pub mod store;

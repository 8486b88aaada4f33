//! End-to-end tests of the connectors against mock APIs on loopback: Okta's
//! System Log semantics, generic JSON APIs (time windows, next tokens, Link
//! pagination), retries, rate limits, sink failures and restarts.

// Test fixtures panic on unexpected input by design.
#![allow(clippy::unwrap_used)]

mod failures;
mod generic;
mod mock;
mod okta;

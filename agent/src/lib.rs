//! vigie-agent: the endpoint side of Vigie.
//!
//! Sources (file tailer, journald) produce raw records; the pipeline parses
//! them into ECS events, batches them, and the shipper gzips and sends them
//! to the collector over mTLS. Checkpoints advance only after the collector
//! acknowledged the batch that carried the lines.

pub mod checkpoint;
pub mod client;
pub mod config;
pub mod enroll;
pub mod pipeline;
pub mod run;
pub mod shipper;
pub mod sources;

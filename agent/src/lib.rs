//! vigie-agent: the endpoint side of Vigie.
//!
//! Sources (file tailer, journald) produce raw records; the pipeline parses
//! them into ECS events, batches and gzips them, and the shipper sends them to
//! the collector over mTLS. Checkpoints advance only after the collector
//! acknowledged the batch that carried the lines.

pub mod checkpoint;
pub mod sources;

//! vigie-agent: the endpoint side of Vigie.
//!
//! Sources (file tailer, journald) produce raw records; the pipeline parses
//! them into ECS events, runs the edge rules on them (tag, or drop noise;
//! the rules come from files or from the collector, see `rulepack`) and
//! batches them; the spooler gzips each batch into
//! the on-disk spool and ships it from there to the collector over mTLS.
//! Source checkpoints advance once the batch carrying the lines is durable in
//! the spool (without a spool: once the collector acknowledged it); a
//! spooled batch leaves the spool once the collector acknowledged it.

pub mod central_config;
pub mod checkpoint;
pub mod client;
pub mod config;
pub mod detect;
pub mod enroll;
pub mod loss;
pub mod pipeline;
pub mod ratelimit;
pub mod recycle;
pub mod renew;
pub mod rulepack;
pub mod rules_cli;
pub mod run;
pub mod sd_notify;
pub mod shipper;
pub mod sources;
pub mod spool;
pub mod spooler;
pub mod stats;

//! Agent sources: where raw log records come from.

pub mod file;
pub mod journald;

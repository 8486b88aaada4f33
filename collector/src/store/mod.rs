//! Event store (being written).

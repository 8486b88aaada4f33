//! journald source (being written).

//! File tailer (being written).

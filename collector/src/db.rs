//! Control data in SQLite (being written).

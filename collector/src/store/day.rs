//! Day indexes: naming, time bounds, opening and creating them.
//!
//! A day is a UTC calendar date; its index lives in `DIR/YYYY-MM-DD/` and
//! holds exactly the events whose time falls in `[00:00, 24:00)` UTC of
//! that date, so a time range only needs the days it overlaps, and a day
//! fully inside the range needs no time filter. Days are numbered from the
//! Unix epoch (day 0 = 1970-01-01).

use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use tantivy::schema::Schema;
use tantivy::{Index, IndexReader, ReloadPolicy};

use super::StoreError;

/// Microseconds in a day.
pub(crate) const DAY_US: i64 = 86_400_000_000;

/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01.
const UNIX_EPOCH_FROM_CE: i32 = 719_163;

/// The day number holding the time `us` (microseconds since the epoch).
pub(crate) fn day_of(us: i64) -> i64 {
    us.div_euclid(DAY_US)
}

/// `YYYY-MM-DD` of a day number, or `None` past chrono's calendar.
pub(crate) fn day_name(day: i64) -> Option<String> {
    let ce = i32::try_from(day).ok()?.checked_add(UNIX_EPOCH_FROM_CE)?;
    let d = NaiveDate::from_num_days_from_ce_opt(ce)?;
    if !(0..=9999).contains(&d.year()) {
        return None;
    }
    Some(d.format("%Y-%m-%d").to_string())
}

/// The day number of a `YYYY-MM-DD` name (strict: the name must be canonical).
pub(crate) fn parse_day_name(name: &str) -> Option<i64> {
    let d = NaiveDate::parse_from_str(name, "%Y-%m-%d").ok()?;
    let day = i64::from(d.num_days_from_ce() - UNIX_EPOCH_FROM_CE);
    (day_name(day).as_deref() == Some(name)).then_some(day)
}

/// One open day index and its reader (reloaded only by the store's commit).
pub(crate) struct DayIndex {
    pub day: i64,
    pub name: String,
    pub path: PathBuf,
    pub index: Index,
    pub reader: IndexReader,
}

impl DayIndex {
    /// Opens the index in `path`, creating it when the directory has none.
    pub(crate) fn open_or_create(
        root: &Path,
        day: i64,
        name: &str,
        schema: &Schema,
    ) -> Result<DayIndex, StoreError> {
        let path = root.join(name);
        let index_err = |source| StoreError::Index {
            day: name.to_owned(),
            source,
        };
        let index = if path.join("meta.json").exists() {
            let index = Index::open_in_dir(&path).map_err(index_err)?;
            if index.schema() != *schema {
                return Err(StoreError::Incompatible {
                    day: name.to_owned(),
                });
            }
            index
        } else {
            std::fs::create_dir_all(&path).map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
            Index::create_in_dir(&path, schema.clone()).map_err(index_err)?
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(index_err)?;
        Ok(DayIndex {
            day,
            name: name.to_owned(),
            path,
            index,
            reader,
        })
    }

    /// First microsecond of the day.
    pub(crate) fn start_us(&self) -> i64 {
        self.day.saturating_mul(DAY_US)
    }

    /// First microsecond after the day.
    pub(crate) fn end_us(&self) -> i64 {
        self.day.saturating_add(1).saturating_mul(DAY_US)
    }

    /// Bytes of the files in the index directory.
    pub(crate) fn disk_bytes(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_numbers_and_names_round_trip() {
        assert_eq!(day_name(0).as_deref(), Some("1970-01-01"));
        assert_eq!(parse_day_name("1970-01-01"), Some(0));
        assert_eq!(parse_day_name("2024-02-29"), Some(19_782));
        assert_eq!(day_name(19_782).as_deref(), Some("2024-02-29"));
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_of(DAY_US), 1);
        assert_eq!(parse_day_name("2024-2-29"), None);
        assert_eq!(parse_day_name("lost+found"), None);
        assert_eq!(parse_day_name("2024-02-30"), None);
    }
}

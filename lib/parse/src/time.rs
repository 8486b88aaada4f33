//! Timestamp readers shared by the codecs, written by hand for speed.
//!
//! Formats read here:
//! - RFC 3339 (`2026-11-26T10:00:00.123456+01:00`), leniently: `T`, `t` or a space between date
//!   and time, 1–9 fraction digits (more are read and ignored), offset `Z`, `±HH:MM`, `±HHMM` or
//!   `±HH`, or no offset at all (the caller then applies its local offset);
//! - BSD syslog (RFC 3164) `Mmm dd HH:MM:SS` with the day space-padded or not, an optional year
//!   before the time (`Mmm dd YYYY HH:MM:SS`) and optional fractional seconds;
//! - epoch numbers, whose unit (seconds, milliseconds, microseconds, nanoseconds) is inferred
//!   from their magnitude.
//!
//! Invariant: every reader returns `None` instead of failing loudly; nothing here panics on any
//! input, whatever its length or content.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// A wall-clock time read from a line, with the offset the line gave (if any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineTime {
    pub naive: NaiveDateTime,
    pub offset: Option<FixedOffset>,
}

impl LineTime {
    /// The instant, using `local` when the line gave no offset.
    pub fn to_utc(self, local: FixedOffset) -> Option<DateTime<Utc>> {
        let tz = self.offset.unwrap_or(local);
        tz.from_local_datetime(&self.naive)
            .single()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// A BSD syslog time: no year unless the line gave one, never an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BsdTime {
    pub year: Option<i32>,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub nanos: u32,
}

const MONTHS: [&[u8; 3]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

fn digit(b: u8) -> Option<u32> {
    b.is_ascii_digit().then(|| u32::from(b - b'0'))
}

/// Reads exactly `n` ASCII digits at `pos`.
fn digits(s: &[u8], pos: usize, n: usize) -> Option<u32> {
    let chunk = s.get(pos..pos + n)?;
    chunk
        .iter()
        .try_fold(0u32, |acc, &b| Some(acc * 10 + digit(b)?))
}

/// Reads `HH:MM:SS` at `pos`. Second 60 (a leap second) is accepted.
fn hms(s: &[u8], pos: usize) -> Option<(u32, u32, u32)> {
    let h = digits(s, pos, 2)?;
    let m = digits(s, pos + 3, 2)?;
    let sec = digits(s, pos + 6, 2)?;
    if s.get(pos + 2) != Some(&b':') || s.get(pos + 5) != Some(&b':') {
        return None;
    }
    (h < 24 && m < 60 && sec <= 60).then_some((h, m, sec))
}

/// Reads an optional `.fraction` (or `,fraction`) at `pos`; returns nanoseconds and the new position.
fn fraction(s: &[u8], pos: usize) -> (u32, usize) {
    if !matches!(s.get(pos), Some(b'.') | Some(b',')) {
        return (0, pos);
    }
    let mut end = pos + 1;
    let mut nanos = 0u32;
    let mut scale = 100_000_000u32;
    while let Some(d) = s.get(end).copied().and_then(digit) {
        nanos += d * scale;
        scale /= 10;
        end += 1;
    }
    if end == pos + 1 {
        // A lone dot is not a fraction; leave it to the caller.
        return (0, pos);
    }
    (nanos, end)
}

fn naive(
    year: i32,
    month: u32,
    day: u32,
    h: u32,
    m: u32,
    sec: u32,
    nanos: u32,
) -> Option<NaiveDateTime> {
    // chrono represents a leap second as second 59 with nanoseconds >= 1e9.
    let (sec, nanos) = if sec == 60 {
        (59, nanos + 1_000_000_000)
    } else {
        (sec, nanos)
    };
    NaiveDate::from_ymd_opt(year, month, day)?.and_hms_nano_opt(h, m, sec, nanos)
}

/// Reads an RFC 3339 timestamp at the start of `s`; returns it and the number of bytes read.
pub(crate) fn rfc3339_prefix(s: &str) -> Option<(LineTime, usize)> {
    let b = s.as_bytes();
    let year = digits(b, 0, 4)? as i32;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !matches!(b.get(10), Some(b'T') | Some(b't') | Some(b' ')) {
        return None;
    }
    let (h, m, sec) = hms(b, 11)?;
    let (nanos, mut pos) = fraction(b, 19);
    let offset = match b.get(pos) {
        Some(b'Z') | Some(b'z') => {
            pos += 1;
            FixedOffset::east_opt(0)
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, pos + 1, 2)?;
            pos += 3;
            let om = if b.get(pos) == Some(&b':') {
                let om = digits(b, pos + 1, 2)?;
                pos += 3;
                om
            } else if let Some(om) = digits(b, pos, 2) {
                pos += 2;
                om
            } else {
                0
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let secs = (oh * 3600 + om * 60) as i32;
            FixedOffset::east_opt(if sign == b'-' { -secs } else { secs })
        }
        _ => None,
    };
    let naive = naive(year, month, day, h, m, sec, nanos)?;
    Some((LineTime { naive, offset }, pos))
}

/// Reads a whole string as an RFC 3339 timestamp (surrounding spaces allowed).
pub(crate) fn rfc3339_exact(s: &str) -> Option<LineTime> {
    let s = s.trim();
    match rfc3339_prefix(s)? {
        (t, n) if n == s.len() => Some(t),
        _ => None,
    }
}

/// Reads a BSD syslog timestamp at the start of `s`; returns it and the number of bytes read.
/// The timestamp must be followed by a space or the end of `s`.
pub(crate) fn bsd_prefix(s: &str) -> Option<(BsdTime, usize)> {
    let b = s.as_bytes();
    let name: [u8; 3] = b.get(0..3)?.try_into().ok()?;
    let name = name.map(|c| c.to_ascii_lowercase());
    let month = MONTHS.iter().position(|m| **m == name)? as u32 + 1;
    if b.get(3) != Some(&b' ') {
        return None;
    }
    let mut pos = 4;
    if b.get(pos) == Some(&b' ') {
        pos += 1; // space-padded day: "Jul  7"
    }
    let day = match (
        b.get(pos).copied().and_then(digit),
        b.get(pos + 1).copied().and_then(digit),
    ) {
        (Some(d1), Some(d2)) => {
            pos += 2;
            d1 * 10 + d2
        }
        (Some(d), None) => {
            pos += 1;
            d
        }
        _ => return None,
    };
    if b.get(pos) != Some(&b' ') || day == 0 || day > 31 {
        return None;
    }
    pos += 1;
    // Optional year before the time: "Nov 26 2026 10:00:00".
    let year = match (digits(b, pos, 4), b.get(pos + 4)) {
        (Some(y), Some(b' ')) => {
            pos += 5;
            Some(y as i32)
        }
        _ => None,
    };
    let (hour, minute, second) = hms(b, pos)?;
    let (nanos, end) = fraction(b, pos + 8);
    match b.get(end) {
        None | Some(b' ') => {}
        _ => return None,
    }
    let t = BsdTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        nanos,
    };
    Some((t, end))
}

/// Turns a BSD time into an instant. The zone is `local`. Without a year, the year is the one of
/// `now` (in `local`), or the year before when that would put the time more than a day after
/// `now` (December lines read in January); a date that does not exist in that year (29 February)
/// moves further back to the nearest year where it exists.
pub(crate) fn resolve_bsd(
    t: BsdTime,
    now: DateTime<Utc>,
    local: FixedOffset,
) -> Option<DateTime<Utc>> {
    let at = |year: i32| {
        let n = naive(year, t.month, t.day, t.hour, t.minute, t.second, t.nanos)?;
        LineTime {
            naive: n,
            offset: None,
        }
        .to_utc(local)
    };
    if let Some(year) = t.year {
        return at(year);
    }
    let this_year = now.with_timezone(&local).year();
    let limit = now + Duration::days(1);
    (this_year - 8..=this_year)
        .rev()
        .filter_map(at)
        .find(|ts| *ts <= limit)
}

/// Epoch seconds below this magnitude are seconds (up to year 5138); above, milliseconds, and so
/// on by factors of a thousand.
const SECONDS_LIMIT: f64 = 1e11;

/// Reads an epoch number whose unit is inferred from its magnitude.
pub(crate) fn from_epoch(value: f64) -> Option<DateTime<Utc>> {
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let secs = if value < SECONDS_LIMIT {
        value
    } else if value < SECONDS_LIMIT * 1e3 {
        value / 1e3
    } else if value < SECONDS_LIMIT * 1e6 {
        value / 1e6
    } else {
        value / 1e9
    };
    let whole = secs.trunc();
    let nanos = ((secs - whole) * 1e9).round().min(999_999_999.0) as u32;
    DateTime::<Utc>::from_timestamp(whole as i64, nanos)
}

/// Reads an integer epoch exactly (no float rounding for milliseconds and below).
pub(crate) fn from_epoch_int(value: i64) -> Option<DateTime<Utc>> {
    if value < 0 {
        return None;
    }
    let limit = SECONDS_LIMIT as i64;
    if value < limit {
        DateTime::<Utc>::from_timestamp(value, 0)
    } else if value < limit * 1_000 {
        DateTime::<Utc>::from_timestamp_millis(value)
    } else if value < limit * 1_000_000 {
        DateTime::<Utc>::from_timestamp_micros(value)
    } else {
        Some(DateTime::<Utc>::from_timestamp_nanos(value))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn bsd(s: &str) -> BsdTime {
        bsd_prefix(s).unwrap().0
    }

    #[test]
    fn rfc3339_forms() {
        let (t, n) = rfc3339_prefix("2026-11-26T10:00:00.123456+01:00 host").unwrap();
        assert_eq!(n, 32);
        assert_eq!(
            t.to_utc(FixedOffset::east_opt(0).unwrap()),
            Some(utc("2026-11-26T09:00:00.123456Z"))
        );
        let t = rfc3339_exact("2026-11-26 10:00:00Z").unwrap();
        assert_eq!(t.offset, FixedOffset::east_opt(0));
        let t = rfc3339_exact("2026-11-26T10:00:00-0530").unwrap();
        assert_eq!(t.offset, FixedOffset::west_opt(5 * 3600 + 30 * 60));
        // No offset: the caller's local offset applies.
        let t = rfc3339_exact("2026-11-26T10:00:00").unwrap();
        assert_eq!(t.offset, None);
        let plus2 = FixedOffset::east_opt(7200).unwrap();
        assert_eq!(t.to_utc(plus2), Some(utc("2026-11-26T08:00:00Z")));
        // Nanoseconds and beyond.
        let t = rfc3339_exact("2026-11-26T10:00:00.1234567891Z").unwrap();
        assert_eq!(t.naive.and_utc().timestamp_subsec_nanos(), 123_456_789);
    }

    #[test]
    fn rfc3339_rejects_garbage() {
        for s in [
            "",
            "2026",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26X10:00:00Z",
            "2026-11-26T10:00:00+25:00",
            "2026-11-26T10:00Z",
        ] {
            assert_eq!(rfc3339_prefix(s), None, "{s:?}");
        }
        assert_eq!(rfc3339_exact("2026-11-26T10:00:00Z trailing"), None);
    }

    #[test]
    fn bsd_forms() {
        let (t, n) = bsd_prefix("Jul  7 08:06:15 combo").unwrap();
        assert_eq!(
            (t.month, t.day, t.hour, t.minute, t.second, n),
            (7, 7, 8, 6, 15, 15)
        );
        assert_eq!(bsd("Jul 7 08:06:15").day, 7);
        let t = bsd("Nov 26 2025 10:00:00 host");
        assert_eq!((t.year, t.hour), (Some(2025), 10));
        assert_eq!(bsd("Nov 26 10:00:00.250 host").nanos, 250_000_000);
        assert_eq!(bsd("NOV 26 10:00:00").month, 11);
        for s in [
            "Foo 26 10:00:00",
            "Nov 26 10:00",
            "Nov 32 10:00:00",
            "Nov 26 10:00:00x",
            "Nov",
        ] {
            assert_eq!(bsd_prefix(s), None, "{s:?}");
        }
    }

    #[test]
    fn year_inference() {
        let now = utc("2026-11-26T12:00:00Z");
        let z = FixedOffset::east_opt(0).unwrap();
        // Same year when in the past.
        assert_eq!(
            resolve_bsd(bsd("Jun 14 15:16:01"), now, z),
            Some(utc("2026-06-14T15:16:01Z"))
        );
        // Up to a day ahead (clock skew) stays in this year.
        assert_eq!(
            resolve_bsd(bsd("Nov 27 11:00:00"), now, z),
            Some(utc("2026-11-27T11:00:00Z"))
        );
        // More than a day ahead: last year.
        assert_eq!(
            resolve_bsd(bsd("Dec 10 06:55:46"), now, z),
            Some(utc("2025-12-10T06:55:46Z"))
        );
        // December read in January.
        let jan = utc("2027-01-02T00:30:00Z");
        assert_eq!(
            resolve_bsd(bsd("Dec 31 23:59:59"), jan, z),
            Some(utc("2026-12-31T23:59:59Z"))
        );
        // The year of `now` is taken in the local zone: 31 Dec 23:30 in UTC is already 2027 in +02.
        let late = utc("2026-12-31T23:30:00Z");
        let plus2 = FixedOffset::east_opt(7200).unwrap();
        assert_eq!(
            resolve_bsd(bsd("Jan  1 01:15:00"), late, plus2),
            Some(utc("2026-12-31T23:15:00Z"))
        );
        // 29 February goes back to the last leap year.
        assert_eq!(
            resolve_bsd(bsd("Feb 29 10:00:00"), now, z),
            Some(utc("2024-02-29T10:00:00Z"))
        );
        // An explicit year is kept even in the future.
        assert_eq!(
            resolve_bsd(bsd("Dec 10 2026 06:55:46"), now, z),
            Some(utc("2026-12-10T06:55:46Z"))
        );
    }

    #[test]
    fn epochs() {
        assert_eq!(
            from_epoch_int(1_700_000_000),
            Some(utc("2023-11-14T22:13:20Z"))
        );
        assert_eq!(
            from_epoch_int(1_700_000_000_123),
            Some(utc("2023-11-14T22:13:20.123Z"))
        );
        assert_eq!(
            from_epoch_int(1_700_000_000_123_456),
            Some(utc("2023-11-14T22:13:20.123456Z"))
        );
        assert_eq!(
            from_epoch_int(1_700_000_000_123_456_789),
            Some(utc("2023-11-14T22:13:20.123456789Z"))
        );
        assert_eq!(
            from_epoch(1_700_000_000.25),
            Some(utc("2023-11-14T22:13:20.25Z"))
        );
        assert_eq!(from_epoch(f64::NAN), None);
        assert_eq!(from_epoch(-1.0), None);
        assert_eq!(from_epoch_int(-1), None);
    }
}

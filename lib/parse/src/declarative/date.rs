//! Time zones and date formats of the `syslog` and `date` stages.
//!
//! Time zones (`timezone:`), applied to times written without an offset:
//! - `local` (the default): the reader's zone ([`crate::Context::local_offset`]);
//! - `UTC`, `Z`, or a fixed offset `+01:00`, `-0530`, `+02`;
//! - a template such as `"{{event.timezone}}"`, read per event (a value that is not an offset
//!   falls back to `local`).
//!
//! Named zones (`Europe/Paris`) are not supported: there is no zone database in the crate.
//!
//! Date formats (`formats:`, tried in order, the first that reads the whole value wins):
//! - `rfc3339` (also `iso8601`): `2026-11-26T10:00:00.123+01:00`, leniently (see
//!   [`crate::time`]);
//! - `syslog`: `Nov 26 10:00:00`, with an optional year and fraction;
//! - `epoch`: a number or a string of digits, in seconds, milliseconds, microseconds or
//!   nanoseconds (told apart by magnitude);
//! - any other string is a chrono `strftime` pattern (`%d/%b/%Y:%H:%M:%S %z`).
//!
//! A date read without a year (`syslog`, or a pattern without `%Y`) takes the year that puts it
//! at most a day after the read time, as the syslog codec does.

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, Datelike, FixedOffset, Offset, Utc};
use serde_json::Value;

use super::record::Record;
use super::template::Template;
use crate::{time, Context};

/// Where the zone of times without an offset comes from.
#[derive(Debug, Clone)]
pub(crate) enum Zone {
    Local,
    Fixed(FixedOffset),
    Field(Template),
}

impl Zone {
    /// Reads a `timezone:` setting.
    pub fn parse(s: &str) -> Result<Zone, String> {
        if s.contains("{{") {
            let t = Template::parse(s)?;
            return Ok(Zone::Field(t));
        }
        if s.eq_ignore_ascii_case("local") {
            return Ok(Zone::Local);
        }
        parse_offset(s).map(Zone::Fixed).ok_or_else(|| {
            format!(
                "unknown time zone {s:?}: expected local, UTC, an offset such as +01:00, or a \
                 template such as \"{{{{event.timezone}}}}\" (named zones are not supported)"
            )
        })
    }

    /// The fields the zone reads.
    pub fn refs(&self) -> impl Iterator<Item = &str> {
        match self {
            Zone::Field(t) => Some(t.refs()),
            _ => None,
        }
        .into_iter()
        .flatten()
    }

    /// The offset for `rec`.
    pub fn offset(&self, rec: &Record, ctx: &Context) -> FixedOffset {
        match self {
            Zone::Local => ctx.local_offset,
            Zone::Fixed(o) => *o,
            Zone::Field(t) => match t.render(rec) {
                Some(Value::String(s)) => parse_offset(&s).unwrap_or(ctx.local_offset),
                _ => ctx.local_offset,
            },
        }
    }
}

/// Reads `UTC`, `Z`, `±HH:MM`, `±HHMM` or `±HH`.
pub(crate) fn parse_offset(s: &str) -> Option<FixedOffset> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("utc") || s.eq_ignore_ascii_case("z") || s == "GMT" {
        return Some(Utc.fix());
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !matches!(digits.len(), 2 | 4) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits
        .get(2..)
        .filter(|m| !m.is_empty())
        .map_or(Ok(0), str::parse)
        .ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// One entry of `formats:`.
#[derive(Debug, Clone)]
pub(crate) enum Format {
    Rfc3339,
    Syslog,
    Epoch,
    Strftime { pattern: String, has_year: bool },
}

impl Format {
    /// Reads a format name or pattern.
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "rfc3339" | "iso8601" => return Ok(Format::Rfc3339),
            "syslog" => return Ok(Format::Syslog),
            "epoch" => return Ok(Format::Epoch),
            _ => {}
        }
        if !s.contains('%') {
            return Err(format!(
                "unknown date format {s:?}: expected rfc3339, syslog, epoch or a strftime \
                 pattern such as \"%Y-%m-%d %H:%M:%S\""
            ));
        }
        if StrftimeItems::new(s).any(|i| matches!(i, Item::Error)) {
            return Err(format!("invalid strftime pattern {s:?}"));
        }
        let has_year = [
            "%Y", "%y", "%C", "%G", "%g", "%s", "%c", "%D", "%F", "%x", "%+",
        ]
        .iter()
        .any(|spec| s.contains(spec));
        Ok(Format::Strftime {
            pattern: s.to_owned(),
            has_year,
        })
    }

    /// Reads `v` with this format; `offset` is the zone of times written without one.
    pub fn read(&self, v: &Value, offset: FixedOffset, ctx: &Context) -> Option<DateTime<Utc>> {
        match (self, v) {
            (Format::Epoch, Value::Number(n)) => match n.as_i64() {
                Some(i) => time::from_epoch_int(i),
                None => time::from_epoch(n.as_f64()?),
            },
            (Format::Epoch, Value::String(s)) => {
                let s = s.trim();
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                    time::from_epoch_int(s.parse().ok()?)
                } else {
                    time::from_epoch(s.parse().ok()?)
                }
            }
            (Format::Rfc3339, Value::String(s)) => time::rfc3339_exact(s)?.to_utc(offset),
            (Format::Syslog, Value::String(s)) => {
                let s = s.trim();
                match time::bsd_prefix(s)? {
                    (t, n) if n == s.len() => time::resolve_bsd(t, ctx.now, offset),
                    _ => None,
                }
            }
            (Format::Strftime { pattern, has_year }, Value::String(s)) => {
                strftime(s.trim(), pattern, *has_year, offset, ctx)
            }
            _ => None,
        }
    }
}

fn strftime(
    s: &str,
    pattern: &str,
    has_year: bool,
    offset: FixedOffset,
    ctx: &Context,
) -> Option<DateTime<Utc>> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, s, StrftimeItems::new(pattern)).ok()?;
    if parsed.timestamp().is_some() {
        return parsed.to_datetime_with_timezone(&Utc).ok();
    }
    let at = |p: &Parsed| -> Option<DateTime<Utc>> {
        match p.offset() {
            Some(_) => p.to_datetime().ok().map(|t| t.to_utc()),
            None => p
                .to_naive_datetime_with_offset(0)
                .ok()?
                .and_local_timezone(offset)
                .single()
                .map(|t| t.to_utc()),
        }
    };
    if has_year || parsed.year().is_some() {
        return at(&parsed);
    }
    // No year: the latest year that does not put the time more than a day ahead.
    let this_year = i64::from(ctx.now.with_timezone(&offset).year());
    let limit = ctx.now + chrono::Duration::days(1);
    (this_year - 8..=this_year).rev().find_map(|year| {
        let mut p = parsed.clone();
        p.set_year(year).ok()?;
        at(&p).filter(|t| *t <= limit)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        Context::new(
            DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
                .unwrap()
                .to_utc(),
        )
    }

    fn read(format: &str, v: Value, zone: &str) -> Option<String> {
        let offset = parse_offset(zone).unwrap();
        Format::parse(format)
            .unwrap()
            .read(&v, offset, &ctx())
            .map(vigie_event::format_timestamp)
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("+01:00"), FixedOffset::east_opt(3600));
        assert_eq!(parse_offset("-0530"), FixedOffset::west_opt(19800));
        assert_eq!(parse_offset("+02"), FixedOffset::east_opt(7200));
        assert_eq!(parse_offset("utc"), FixedOffset::east_opt(0));
        for bad in ["", "+1", "+25:00", "Europe/Paris", "+01:60"] {
            assert_eq!(parse_offset(bad), None, "{bad:?}");
        }
        assert!(Zone::parse("Europe/Paris")
            .unwrap_err()
            .contains("named zones"));
    }

    #[test]
    fn formats() {
        let r = |f, v, z| read(f, v, z).unwrap();
        assert_eq!(
            r(
                "%d/%b/%Y:%H:%M:%S %z",
                json!("26/Nov/2026:10:00:00 +0100"),
                "UTC"
            ),
            "2026-11-26T09:00:00.000000Z"
        );
        assert_eq!(
            r("%Y-%m-%d %H:%M:%S", json!("2026-11-26 10:00:00"), "+02:00"),
            "2026-11-26T08:00:00.000000Z"
        );
        // No year: last year when this year would be in the future.
        assert_eq!(
            r("%b %d %H:%M:%S", json!("Dec 10 06:55:46"), "UTC"),
            "2025-12-10T06:55:46.000000Z"
        );
        assert_eq!(
            r("syslog", json!("Jun  2 19:08:43"), "+01:00"),
            "2026-06-02T18:08:43.000000Z"
        );
        assert_eq!(
            r("epoch", json!(1_700_000_000_123i64), "UTC"),
            "2023-11-14T22:13:20.123000Z"
        );
        assert_eq!(
            r("epoch", json!("1700000000"), "UTC"),
            "2023-11-14T22:13:20.000000Z"
        );
        assert_eq!(
            r("rfc3339", json!("2026-11-26T10:00:00"), "+01:00"),
            "2026-11-26T09:00:00.000000Z"
        );
        assert_eq!(read("rfc3339", json!("yesterday"), "UTC"), None);
        assert_eq!(
            read("syslog", json!("Jun  2 19:08:43 trailing"), "UTC"),
            None
        );
        assert!(Format::parse("dd/MM/yyyy")
            .unwrap_err()
            .contains("unknown date format"));
        assert!(Format::parse("%Q")
            .unwrap_err()
            .contains("invalid strftime"));
    }
}

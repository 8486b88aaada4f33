//! The `syslog` codec: RFC 3164 (BSD) and RFC 5424 lines, told apart per line.
//!
//! Accepted shapes (everything is scanned by hand, no regex):
//! - RFC 5424: `<PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]`, with `-` as
//!   NILVALUE in any header field and for SD; `<PRI>` may be left out when the line starts with
//!   `1 ` followed by a timestamp or `-`. A BOM at the start of MSG is dropped.
//! - RFC 3164: `[<PRI>]TIMESTAMP [HOSTNAME] [TAG[:]] MSG` where TIMESTAMP is `Mmm dd HH:MM:SS`
//!   (with an optional year and fraction, see [`crate::time`]) or RFC 3339 (rsyslog's
//!   high-precision format), and TAG is `app[pid]:` or `app:`. Without `<PRI>` a timestamp is
//!   required; with it, a missing timestamp only sets `timestamp_missing`.
//!
//! The hostname is skipped when the word after the timestamp is clearly a tag (it ends with `:`
//! or holds `[`), as in lines written to `/dev/log` by local programs.
//!
//! Fields written: `log.syslog.{priority,facility.code,facility.name,severity.code,
//! severity.name,version,hostname,appname,procid,msgid,structured_data}`, `log.level`,
//! `host.name`, `process.name`, `process.pid`, `@timestamp`, `message`.

use serde_json::{Map, Value};
use vigie_event::{fields, flags, Event};

use crate::time;
use crate::{Context, NotParsed};

/// `log.syslog.procid`, for a PROCID that is not a number (no constant for it in `fields`).
const LOG_SYSLOG_PROCID: &str = "log.syslog.procid";
const LOG_SYSLOG_FACILITY_NAME: &str = "log.syslog.facility.name";
const LOG_SYSLOG_SEVERITY_NAME: &str = "log.syslog.severity.name";

/// Longest TAG (program name) looked for, in bytes.
const MAX_TAG_BYTES: usize = 128;
/// Longest `[pid]` content looked for, in bytes.
const MAX_PROCID_BYTES: usize = 128;

/// Facility names as `syslog.conf` spells them, by code.
const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// Severity names as `syslog.conf` spells them, by code.
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// The facility name of a facility code (0–23).
pub fn facility_name(code: u8) -> Option<&'static str> {
    FACILITIES.get(usize::from(code)).copied()
}

/// The severity name of a severity code (0–7).
pub fn severity_name(code: u8) -> Option<&'static str> {
    SEVERITIES.get(usize::from(code)).copied()
}

/// Decodes one syslog line.
pub(crate) fn decode(text: &str, ctx: &Context) -> Result<Event, NotParsed> {
    let (pri, rest) = priority(text)?;
    let mut ev = Event::new();
    if let Some(pri) = pri {
        set_priority(&mut ev, pri);
    }
    match version(rest) {
        Some((version, body)) => rfc5424(&mut ev, version, body, ctx)?,
        None => rfc3164(&mut ev, pri.is_some(), rest, ctx)?,
    }
    Ok(ev)
}

/// Reads an optional `<PRI>` (0–191, 1 to 3 digits); a `<` that does not open one is an error.
pub(crate) fn priority(s: &str) -> Result<(Option<u8>, &str), NotParsed> {
    let b = s.as_bytes();
    if b.first() != Some(&b'<') {
        return Ok((None, s));
    }
    let mut i = 1;
    let mut value = 0u32;
    while i < 4 {
        match b.get(i) {
            Some(d) if d.is_ascii_digit() => value = value * 10 + u32::from(d - b'0'),
            _ => break,
        }
        i += 1;
    }
    if i == 1 || b.get(i) != Some(&b'>') || value > 191 {
        return Err(NotParsed);
    }
    // The bound check above makes the conversion lossless.
    let pri = u8::try_from(value).map_err(|_| NotParsed)?;
    Ok((Some(pri), &s[i + 1..]))
}

fn set_priority(ev: &mut Event, pri: u8) {
    let (facility, severity) = (pri / 8, pri % 8);
    ev.set(fields::LOG_SYSLOG_PRIORITY, pri);
    ev.set(fields::LOG_SYSLOG_FACILITY_CODE, facility);
    if let Some(name) = facility_name(facility) {
        ev.set(LOG_SYSLOG_FACILITY_NAME, name);
    }
    ev.set(fields::LOG_SYSLOG_SEVERITY_CODE, severity);
    if let Some(name) = severity_name(severity) {
        ev.set(LOG_SYSLOG_SEVERITY_NAME, name);
        ev.set(fields::LOG_LEVEL, name);
    }
}

/// Reads an RFC 5424 VERSION (`1`–`999`, no leading zero) followed by a space and the start of a
/// timestamp or NILVALUE; returns it and what follows the space.
fn version(s: &str) -> Option<(u16, &str)> {
    let b = s.as_bytes();
    let len = b.iter().take(4).take_while(|c| c.is_ascii_digit()).count();
    if len == 0 || len > 3 || b[0] == b'0' || b.get(len) != Some(&b' ') {
        return None;
    }
    if !matches!(b.get(len + 1), Some(c) if c.is_ascii_digit() || *c == b'-') {
        return None;
    }
    let version = s[..len].parse().ok()?;
    Some((version, &s[len + 1..]))
}

fn set_timestamp(ev: &mut Event, ts: Option<chrono::DateTime<chrono::Utc>>, ctx: &Context) {
    match ts {
        Some(ts) => ev.set_timestamp(ts),
        None => {
            ev.set_timestamp(ctx.now);
            ev.add_flag(flags::TIMESTAMP_MISSING);
        }
    }
}

fn set_hostname(ev: &mut Event, host: &str) {
    ev.set(fields::HOST_NAME, host);
    ev.set(fields::LOG_SYSLOG_HOSTNAME, host);
}

fn set_app(ev: &mut Event, app: &str) {
    ev.set(fields::PROCESS_NAME, app);
    ev.set(fields::LOG_SYSLOG_APPNAME, app);
}

/// A numeric PROCID becomes `process.pid`; anything else is kept as `log.syslog.procid`.
fn set_procid(ev: &mut Event, procid: &str) {
    match procid.parse::<u32>() {
        Ok(pid) if procid.bytes().all(|b| b.is_ascii_digit()) => ev.set(fields::PROCESS_PID, pid),
        _ => ev.set(LOG_SYSLOG_PROCID, procid),
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 3164

fn rfc3164(ev: &mut Event, has_pri: bool, s: &str, ctx: &Context) -> Result<(), NotParsed> {
    let (ts, rest, had_time) = if let Some((t, n)) = time::bsd_prefix(s) {
        (
            time::resolve_bsd(t, ctx.now, ctx.local_offset),
            &s[n..],
            true,
        )
    } else if let Some((t, n)) = time::rfc3339_prefix(s).filter(|(_, n)| followed_by_space(s, *n)) {
        (t.to_utc(ctx.local_offset), &s[n..], true)
    } else if has_pri {
        (None, s, false)
    } else {
        return Err(NotParsed);
    };
    set_timestamp(ev, ts, ctx);
    let mut rest = rest.trim_start_matches(' ');
    if had_time {
        let (word, after) = split_word(rest);
        if is_hostname(word) {
            set_hostname(ev, word);
            rest = after;
        }
    }
    let message = match tag(rest) {
        Some(tag) => {
            set_app(ev, tag.name);
            if let Some(procid) = tag.procid {
                set_procid(ev, procid);
            }
            tag.message
        }
        None => rest.trim_start_matches(' '),
    };
    ev.set(fields::MESSAGE, message);
    Ok(())
}

fn followed_by_space(s: &str, n: usize) -> bool {
    matches!(s.as_bytes().get(n), None | Some(b' '))
}

/// Takes the next RFC 5424 header field off `rest`: `None` for NILVALUE, an error when empty.
fn next_field<'a>(rest: &mut &'a str) -> Result<Option<&'a str>, NotParsed> {
    let (word, after) = split_word(rest);
    *rest = after;
    match word {
        "" => Err(NotParsed),
        "-" => Ok(None),
        w => Ok(Some(w)),
    }
}

/// The first space-separated word and what follows its space.
fn split_word(s: &str) -> (&str, &str) {
    match s.find(' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

/// Whether a word can be a HOSTNAME: a name or an address, not a tag (`app:` or `app[1]:`).
fn is_hostname(word: &str) -> bool {
    let b = word.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last))
            if (first.is_ascii_alphanumeric() || *first == b':') && *last != b':' =>
        {
            b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':' | b'%'))
        }
        _ => false,
    }
}

/// An RFC 3164 TAG and the message after it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Tag<'a> {
    pub name: &'a str,
    pub procid: Option<&'a str>,
    pub message: &'a str,
}

/// Reads `app[pid]: msg` or `app: msg`; the colon must be followed by a space or the end.
pub(crate) fn tag(s: &str) -> Option<Tag<'_>> {
    let b = s.as_bytes();
    let end = b
        .iter()
        .take(MAX_TAG_BYTES + 1)
        .position(|c| matches!(c, b' ' | b'\t' | b'[' | b':'))?;
    if end == 0 {
        return None;
    }
    let name = &s[..end];
    let (procid, colon) = if b[end] == b'[' {
        let len = b[end + 1..]
            .iter()
            .take(MAX_PROCID_BYTES + 1)
            .position(|c| matches!(c, b']' | b' '))?;
        if b[end + 1 + len] != b']' || len == 0 {
            return None;
        }
        (Some(&s[end + 1..end + 1 + len]), end + len + 2)
    } else {
        (None, end)
    };
    if b.get(colon) != Some(&b':') || !matches!(b.get(colon + 1), None | Some(b' ') | Some(b'\t')) {
        return None;
    }
    let message = s[colon + 1..].trim_start_matches([' ', '\t']);
    Some(Tag {
        name,
        procid,
        message,
    })
}

// ---------------------------------------------------------------------------------------------
// RFC 5424

fn rfc5424(ev: &mut Event, version: u16, s: &str, ctx: &Context) -> Result<(), NotParsed> {
    ev.set(fields::LOG_SYSLOG_VERSION, version);
    let mut rest = s;
    let ts = match next_field(&mut rest)? {
        Some(w) => Some(
            time::rfc3339_exact(w)
                .and_then(|t| t.to_utc(ctx.local_offset))
                .ok_or(NotParsed)?,
        ),
        None => None,
    };
    let host = next_field(&mut rest)?;
    let app = next_field(&mut rest)?;
    // Some senders stop after APP-NAME or PROCID; the missing fields are then NILVALUE.
    let procid = if rest.is_empty() {
        None
    } else {
        next_field(&mut rest)?
    };
    let msgid = if rest.is_empty() {
        None
    } else {
        next_field(&mut rest)?
    };
    set_timestamp(ev, ts, ctx);
    if let Some(host) = host {
        set_hostname(ev, host);
    }
    if let Some(app) = app {
        set_app(ev, app);
    }
    if let Some(procid) = procid {
        set_procid(ev, procid);
    }
    if let Some(msgid) = msgid {
        ev.set(fields::LOG_SYSLOG_MSGID, msgid);
    }
    let msg = if rest.starts_with('[') {
        let (sd, after) = structured_data(rest)?;
        ev.set(fields::LOG_SYSLOG_STRUCTURED_DATA, Value::Object(sd));
        after
    } else if rest == "-" {
        ""
    } else if let Some(after) = rest.strip_prefix("- ") {
        after
    } else {
        // No SD at all (a sender bug): take the rest as the message rather than lose the line.
        rest
    };
    let msg = msg.strip_prefix(' ').unwrap_or(msg);
    let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
    ev.set(fields::MESSAGE, msg);
    Ok(())
}

/// Parses STRUCTURED-DATA (one or more `[id k="v" …]`) at the start of `s` into
/// `{id: {k: v}}`; returns it and what follows. A parameter given several times in one element
/// becomes an array of its values; an SD-ID given twice has its parameters merged.
pub(crate) fn structured_data(s: &str) -> Result<(Map<String, Value>, &str), NotParsed> {
    let b = s.as_bytes();
    let mut sd = Map::new();
    let mut i = 0;
    while b.get(i) == Some(&b'[') {
        i += 1;
        let id_len = name_len(&b[i..]);
        if id_len == 0 {
            return Err(NotParsed);
        }
        let id = &s[i..i + id_len];
        i += id_len;
        let mut params = match sd.remove(id) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        loop {
            match b.get(i) {
                Some(b']') => {
                    i += 1;
                    break;
                }
                Some(b' ') => {
                    while b.get(i) == Some(&b' ') {
                        i += 1;
                    }
                    if b.get(i) == Some(&b']') {
                        continue;
                    }
                    let name_len = name_len(&b[i..]);
                    if name_len == 0
                        || b.get(i + name_len) != Some(&b'=')
                        || b.get(i + name_len + 1) != Some(&b'"')
                    {
                        return Err(NotParsed);
                    }
                    let name = &s[i..i + name_len];
                    let (value, len) = param_value(&s[i + name_len + 2..])?;
                    i += name_len + 2 + len;
                    add_param(&mut params, name, value);
                }
                _ => return Err(NotParsed),
            }
        }
        sd.insert(id.to_owned(), Value::Object(params));
    }
    Ok((sd, &s[i..]))
}

/// Length of an SD-NAME at the start of `b`: printable ASCII except `=`, space, `]` and `"`.
fn name_len(b: &[u8]) -> usize {
    b.iter()
        .take_while(|c| c.is_ascii_graphic() && !matches!(c, b'=' | b']' | b'"'))
        .count()
}

/// Reads a PARAM-VALUE up to its closing quote (excluded from `s`'s start, included in the
/// returned length), undoing the `\"`, `\\` and `\]` escapes. Another backslash is kept as is.
fn param_value(s: &str) -> Result<(String, usize), NotParsed> {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if matches!(b.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                out.push_str(&s[start..i]);
                start = i + 1; // the escaped character starts the next run
                i += 2;
            }
            b'"' => {
                out.push_str(&s[start..i]);
                return Ok((out, i + 1));
            }
            _ => i += 1,
        }
    }
    Err(NotParsed)
}

fn add_param(params: &mut Map<String, Value>, name: &str, value: String) {
    match params.get_mut(name) {
        None => {
            params.insert(name.to_owned(), Value::String(value));
        }
        Some(Value::Array(values)) => values.push(Value::String(value)),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, Value::String(value)]);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "syslog_tests.rs"]
mod tests;

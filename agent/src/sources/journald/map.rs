//! Mapping of one journal entry (journalctl's JSON form) to an ECS event.
//!
//! | journal field | ECS field |
//! | --- | --- |
//! | `__REALTIME_TIMESTAMP` (µs since the epoch) | `@timestamp` (read time and flag `timestamp_missing` when absent) |
//! | `MESSAGE` | `message` and `event.original` |
//! | `_HOSTNAME` | `host.name` (else the agent's host name) |
//! | `SYSLOG_IDENTIFIER` | `process.name`, `log.syslog.appname` |
//! | `_COMM` | `process.name` when there is no `SYSLOG_IDENTIFIER` |
//! | `_PID` (else `SYSLOG_PID`) | `process.pid` (integer) |
//! | `_EXE` | `process.executable` |
//! | `_CMDLINE` | `process.command_line` |
//! | `_UID` / `_GID` | `user.id` / `group.id` (strings, as in ECS) |
//! | `PRIORITY` | `log.syslog.severity.code` (integer), `.name`, and `log.level` |
//! | `SYSLOG_FACILITY` | `log.syslog.facility.code` (integer) and `.name` |
//! | `PRIORITY` and `SYSLOG_FACILITY` | `log.syslog.priority` (facility × 8 + severity) |
//! | `_SYSTEMD_UNIT` | `systemd.unit`; `service.name` is the unit without `.service` |
//! | `_SYSTEMD_SLICE` | `journald.systemd_slice` |
//! | `_TRANSPORT` | `journald.transport` |
//! | `_BOOT_ID` | `host.boot.id` |
//! | `_MACHINE_ID` | `host.id` |
//!
//! Always set: `event.dataset` = `journald`, `event.kind` = `event`,
//! `vigie.logsource.product` = `linux`, and `vigie.logsource.service` =
//! `auth` for the auth and authpriv facilities (4, 10) or the identifiers
//! in [`AUTH_IDENTIFIERS`], `syslog` otherwise. Other journal fields are not
//! kept.
//!
//! Values: journalctl writes text as a JSON string, binary or non-UTF-8
//! data as an array of byte values (decoded lossily here, flagging
//! `invalid_utf8` when the bytes were not UTF-8), and a field repeated in one
//! entry as an array of values (the first one is used).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use vigie_event::{fields, flags, Event};

/// The journal fields the agent asks journalctl for: the ones mapped here.
/// (`__CURSOR`, `__REALTIME_TIMESTAMP` and `_BOOT_ID` always come along.)
pub const OUTPUT_FIELDS: &[&str] = &[
    "MESSAGE",
    "PRIORITY",
    "SYSLOG_FACILITY",
    "SYSLOG_IDENTIFIER",
    "SYSLOG_PID",
    "_PID",
    "_UID",
    "_GID",
    "_COMM",
    "_EXE",
    "_CMDLINE",
    "_HOSTNAME",
    "_SYSTEMD_UNIT",
    "_SYSTEMD_SLICE",
    "_TRANSPORT",
    "_BOOT_ID",
    "_MACHINE_ID",
];

/// Identifiers whose entries are routed to Sigma's `linux/auth` rules even
/// when their facility is not auth/authpriv.
pub const AUTH_IDENTIFIERS: &[&str] = &[
    "sshd",
    "sshd-session",
    "sshd-auth",
    "sudo",
    "su",
    "login",
    "systemd-logind",
];

/// Dataset of journald events.
const DATASET: &str = "journald";

/// A field's value as text.
struct Text {
    text: String,
    /// The bytes were not UTF-8 and were replaced by U+FFFD.
    invalid_utf8: bool,
}

/// Maps one journald JSON entry to ECS (see the module documentation for the
/// fields). `host_name` fills `host.name` when the entry has no `_HOSTNAME`.
pub fn map_entry(entry: &Map<String, Value>, host_name: Option<&str>) -> Event {
    let mut event = Event::new();
    let mut invalid_utf8 = false;
    let mut text = |key: &str| -> Option<String> {
        let t = entry.get(key).and_then(field_text)?;
        invalid_utf8 |= t.invalid_utf8;
        Some(t.text)
    };

    let timestamp = text("__REALTIME_TIMESTAMP")
        .and_then(|t| t.trim().parse::<i64>().ok())
        .and_then(DateTime::<Utc>::from_timestamp_micros);
    if let Some(message) = text("MESSAGE") {
        event.set(fields::MESSAGE, message.clone());
        event.set(fields::EVENT_ORIGINAL, message);
    }
    if let Some(host) = text("_HOSTNAME").or_else(|| host_name.map(str::to_owned)) {
        event.set(fields::HOST_NAME, host);
    }
    let identifier = text("SYSLOG_IDENTIFIER");
    if let Some(ident) = &identifier {
        event.set(fields::LOG_SYSLOG_APPNAME, ident.clone());
    }
    if let Some(process) = identifier.clone().or_else(|| text("_COMM")) {
        event.set(fields::PROCESS_NAME, process);
    }
    if let Some(pid) = integer(text("_PID")).or_else(|| integer(text("SYSLOG_PID"))) {
        event.set(fields::PROCESS_PID, pid);
    }
    if let Some(exe) = text("_EXE") {
        event.set("process.executable", exe);
    }
    if let Some(cmdline) = text("_CMDLINE") {
        event.set("process.command_line", cmdline);
    }
    if let Some(uid) = text("_UID") {
        event.set(fields::USER_ID, uid);
    }
    if let Some(gid) = text("_GID") {
        event.set("group.id", gid);
    }
    let named = |code: Option<i64>, name: fn(u8) -> Option<&'static str>| {
        code.and_then(|c| u8::try_from(c).ok())
            .and_then(|c| name(c).map(|n| (i64::from(c), n)))
    };
    let severity = named(integer(text("PRIORITY")), vigie_parse::severity_name);
    if let Some((sev, name)) = severity {
        event.set(fields::LOG_SYSLOG_SEVERITY_CODE, sev);
        event.set("log.syslog.severity.name", name);
        event.set(fields::LOG_LEVEL, name);
    }
    let facility = named(integer(text("SYSLOG_FACILITY")), vigie_parse::facility_name);
    if let Some((fac, name)) = facility {
        event.set(fields::LOG_SYSLOG_FACILITY_CODE, fac);
        event.set("log.syslog.facility.name", name);
    }
    let (severity, facility) = (severity.map(|s| s.0), facility.map(|f| f.0));
    if let (Some(fac), Some(sev)) = (facility, severity) {
        event.set(fields::LOG_SYSLOG_PRIORITY, fac * 8 + sev);
    }
    if let Some(unit) = text("_SYSTEMD_UNIT") {
        let service = unit.strip_suffix(".service").unwrap_or(&unit).to_owned();
        event.set(fields::SERVICE_NAME, service);
        event.set(fields::SYSTEMD_UNIT, unit);
    }
    if let Some(slice) = text("_SYSTEMD_SLICE") {
        event.set("journald.systemd_slice", slice);
    }
    if let Some(transport) = text("_TRANSPORT") {
        event.set("journald.transport", transport);
    }
    if let Some(boot) = text("_BOOT_ID") {
        event.set("host.boot.id", boot);
    }
    if let Some(machine) = text("_MACHINE_ID") {
        event.set("host.id", machine);
    }

    set_common(&mut event);
    let auth = matches!(facility, Some(4 | 10))
        || identifier
            .as_deref()
            .is_some_and(|i| AUTH_IDENTIFIERS.contains(&i));
    event.set(
        fields::LOGSOURCE_SERVICE,
        if auth { "auth" } else { "syslog" },
    );
    match timestamp {
        Some(ts) => event.set_timestamp(ts),
        None => {
            event.set_timestamp(Utc::now());
            event.add_flag(flags::TIMESTAMP_MISSING);
        }
    }
    if invalid_utf8 {
        event.add_flag(flags::INVALID_UTF8);
    }
    event
}

/// An event for an output line that is not a journal entry at all: the line
/// as the message, the read time as `@timestamp`, flagged `parse_failure`.
pub(crate) fn unparsed_event(line: &[u8], host_name: Option<&str>) -> Event {
    let mut event = Event::new();
    let text = String::from_utf8_lossy(line);
    if matches!(text, std::borrow::Cow::Owned(_)) {
        event.add_flag(flags::INVALID_UTF8);
    }
    event.set(fields::MESSAGE, text.as_ref());
    event.set(fields::EVENT_ORIGINAL, text.as_ref());
    if let Some(host) = host_name {
        event.set(fields::HOST_NAME, host);
    }
    set_common(&mut event);
    event.set(fields::LOGSOURCE_SERVICE, "syslog");
    event.set_timestamp(Utc::now());
    event.add_flag(flags::PARSE_FAILURE);
    event
}

fn set_common(event: &mut Event) {
    event.set(fields::EVENT_DATASET, DATASET);
    event.set(fields::EVENT_KIND, "event");
    event.set(fields::LOGSOURCE_PRODUCT, "linux");
}

/// A journald value as text: a string as is, an array of byte values
/// decoded (lossily), a repeated field by its first value.
fn field_text(value: &Value) -> Option<Text> {
    match value {
        Value::String(s) => Some(Text {
            text: s.clone(),
            invalid_utf8: false,
        }),
        Value::Number(n) => Some(Text {
            text: n.to_string(),
            invalid_utf8: false,
        }),
        Value::Array(items) => match items.first()? {
            Value::String(_) | Value::Array(_) => field_text(&items[0]),
            _ => {
                let bytes = items
                    .iter()
                    .map(|v| v.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect::<Option<Vec<u8>>>()?;
                Some(match String::from_utf8(bytes) {
                    Ok(text) => Text {
                        text,
                        invalid_utf8: false,
                    },
                    Err(err) => Text {
                        text: String::from_utf8_lossy(err.as_bytes()).into_owned(),
                        invalid_utf8: true,
                    },
                })
            }
        },
        Value::Null | Value::Bool(_) | Value::Object(_) => None,
    }
}

fn integer(text: Option<String>) -> Option<i64> {
    text?.trim().parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "map_tests.rs"]
mod tests;

//! Vigie's codecs: one raw line in, one ECS-shaped [`Event`] out.
//!
//! A codec is picked per source in the agent's configuration ([`Codec`]: `json`, `syslog`,
//! `plain`) and applied by [`decode`] to each line the reader hands over, without its newline.
//!
//! Invariants of [`decode`], whatever the bytes given:
//! - it never fails and never panics: bytes that are not UTF-8 are replaced by U+FFFD (flag
//!   `invalid_utf8`), and a line the codec cannot read is kept as a plain message (flag
//!   `parse_failure`);
//! - every event has `@timestamp` (from the line when the codec finds one there, else the read
//!   time; the `syslog` codec then adds the flag `timestamp_missing`), `message`,
//!   `event.kind` (`event` unless the line set it), `event.original` (the raw line, unless
//!   [`Context::keep_original`] is off), `host.name` when the line or [`Context::host_name`]
//!   gives one, and `event.dataset` when the line or [`Context::dataset`] gives one;
//! - a line cut by the reader keeps the flag `truncated`.
//!
//! ```
//! use vigie_parse::{decode, Codec, Context};
//!
//! let now = chrono::DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z").unwrap().to_utc();
//! let line = b"Nov 26 10:00:00 web-1 sshd[812]: Accepted publickey for alice from 192.0.2.7";
//! let ev = decode(Codec::Syslog, line, false, &Context::new(now));
//! assert_eq!(ev.get_str("process.name"), Some("sshd"));
//! assert_eq!(ev.get_i64("process.pid"), Some(812));
//! assert_eq!(ev.get_str("host.name"), Some("web-1"));
//! assert_eq!(ev.get_str("@timestamp"), Some("2026-11-26T10:00:00.000000Z"));
//! ```

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, Offset, Utc};
use serde::{Deserialize, Serialize};
use vigie_event::{fields, flags, Event};

pub mod auditd;
pub mod declarative;
mod json;
mod syslog;
mod time;

pub use auditd::{AuditAssembler, AuditOptions};
pub use declarative::{Parser, ParserError, Registry};
pub use syslog::{facility_name, severity_name};

/// How the lines of a source are read. Written in configurations as `"json"`, `"syslog"` or
/// `"plain"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// One JSON object per line, kept as the event.
    Json,
    /// Syslog lines, RFC 3164 (BSD, as in `/var/log/auth.log`) or RFC 5424, told apart per line.
    Syslog,
    /// The line is the message; nothing is parsed.
    Plain,
}

impl Codec {
    /// Every codec, in the order error messages list them.
    pub const ALL: [Codec; 3] = [Codec::Json, Codec::Syslog, Codec::Plain];

    /// The name used in configurations.
    pub fn name(&self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::Syslog => "syslog",
            Codec::Plain => "plain",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A codec name that is not one of [`Codec::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown codec {name:?}: expected one of \"json\", \"syslog\", \"plain\"")]
pub struct UnknownCodec {
    /// The name that was given.
    pub name: String,
}

impl FromStr for Codec {
    type Err = UnknownCodec;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Codec::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| UnknownCodec { name: s.to_owned() })
    }
}

/// What the caller knows about where a line came from.
#[derive(Debug, Clone)]
pub struct Context {
    /// `host.name` when the line does not say (the agent's hostname).
    pub host_name: Option<String>,
    /// When the line was read: `@timestamp` when the line has none, and the reference for the
    /// year of syslog timestamps that have none.
    pub now: DateTime<Utc>,
    /// The time zone assumed for timestamps written without one (RFC 3164 lines).
    pub local_offset: FixedOffset,
    /// `event.dataset` to set when the line does not set one (e.g. `system.auth`).
    pub dataset: Option<String>,
    /// Whether to store the raw line in `event.original`.
    pub keep_original: bool,
}

impl Context {
    /// A context read at `now`, in UTC, without host name or dataset, keeping the original line.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            host_name: None,
            now,
            local_offset: Utc.fix(),
            dataset: None,
            keep_original: true,
        }
    }
}

/// A codec could not read the line; [`decode`] then keeps it as a plain message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotParsed;

/// Decodes one line (without its trailing newline; a trailing `\r` is dropped too) into an
/// event. `truncated` says the reader cut the line at its length limit. See the crate
/// documentation for what every event holds.
pub fn decode(codec: Codec, line: &[u8], truncated: bool, ctx: &Context) -> Event {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (text, invalid_utf8) = lossy_utf8(line);
    let parsed = match codec {
        Codec::Json => json::decode(&text, ctx),
        Codec::Syslog => syslog::decode(&text, ctx),
        Codec::Plain => Ok(plain(&text, ctx)),
    };
    let mut ev = parsed.unwrap_or_else(|NotParsed| {
        let mut ev = plain(&text, ctx);
        ev.add_flag(flags::PARSE_FAILURE);
        ev
    });
    if !ev.contains(fields::TIMESTAMP) {
        ev.set_timestamp(ctx.now);
    }
    if ctx.keep_original {
        ev.set_default(fields::EVENT_ORIGINAL, text.as_ref());
    }
    ev.set_default(fields::EVENT_KIND, "event");
    if let Some(host) = &ctx.host_name {
        ev.set_default(fields::HOST_NAME, host.as_str());
    }
    if let Some(dataset) = &ctx.dataset {
        ev.set_default(fields::EVENT_DATASET, dataset.as_str());
    }
    if truncated {
        ev.add_flag(flags::TRUNCATED);
    }
    if invalid_utf8 {
        ev.add_flag(flags::INVALID_UTF8);
    }
    ev
}

/// The line as the message, read now.
fn plain(text: &str, ctx: &Context) -> Event {
    let mut ev = Event::new();
    ev.set_timestamp(ctx.now);
    ev.set(fields::MESSAGE, text);
    ev
}

/// The bytes as text, with every invalid UTF-8 sequence replaced by U+FFFD; the flag says
/// whether any was. Valid input is borrowed, not copied.
pub fn lossy_utf8(bytes: &[u8]) -> (Cow<'_, str>, bool) {
    // `from_utf8` validates many bytes per step; `from_utf8_lossy` walks the text in chunks
    // even when it is all valid, which is the case of nearly every line.
    if let Ok(text) = std::str::from_utf8(bytes) {
        return (Cow::Borrowed(text), false);
    }
    let text = String::from_utf8_lossy(bytes);
    let invalid = matches!(text, Cow::Owned(_));
    (text, invalid)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context::new(
            DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
                .unwrap()
                .to_utc(),
        )
    }

    #[test]
    fn codec_names_round_trip() {
        for c in Codec::ALL {
            assert_eq!(c.name().parse::<Codec>(), Ok(c));
            assert_eq!(c.to_string(), c.name());
        }
        let err = "JSON".parse::<Codec>().unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown codec "JSON": expected one of "json", "syslog", "plain""#
        );
    }

    #[test]
    fn codec_deserializes_from_config_names() {
        let c: Codec = serde_json::from_str("\"syslog\"").unwrap();
        assert_eq!(c, Codec::Syslog);
        assert!(serde_json::from_str::<Codec>("\"xml\"").is_err());
    }

    #[test]
    fn lossy_utf8_borrows_valid_text() {
        let (t, bad) = lossy_utf8("héllo".as_bytes());
        assert!(matches!(t, Cow::Borrowed("héllo")));
        assert!(!bad);
        let (t, bad) = lossy_utf8(b"a\xffb");
        assert_eq!(t, "a\u{fffd}b");
        assert!(bad);
    }

    #[test]
    fn line_endings_are_dropped() {
        let ev = decode(Codec::Plain, b"hello\r\n", false, &ctx());
        assert_eq!(ev.get_str("message"), Some("hello"));
        assert_eq!(ev.get_str("event.original"), Some("hello"));
    }

    #[test]
    fn context_fields_fill_gaps_only() {
        let mut c = ctx();
        c.host_name = Some("agent-host".into());
        c.dataset = Some("system.auth".into());
        c.keep_original = false;
        let ev = decode(Codec::Syslog, b"Nov 26 10:00:00 web-1 app: x", false, &c);
        assert_eq!(ev.get_str("host.name"), Some("web-1"));
        assert_eq!(ev.get_str("event.dataset"), Some("system.auth"));
        assert!(!ev.contains("event.original"));
        let line = br#"{"event":{"dataset":"teleport.audit","kind":"alert"}}"#;
        let ev = decode(Codec::Json, line, false, &c);
        assert_eq!(ev.get_str("host.name"), Some("agent-host"));
        assert_eq!(ev.get_str("event.dataset"), Some("teleport.audit"));
        assert_eq!(ev.get_str("event.kind"), Some("alert"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix of lines built from tricky pieces.
        let pieces: [&[u8]; 12] = [
            b"<",
            b"13>",
            b"1 ",
            b"Nov 26 ",
            b"10:00:00 ",
            b"2026-11-26T10:00:00Z ",
            b"[",
            b"]",
            b"a=\"\\",
            b"\xff\xfe",
            b"app[",
            b": ",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..1_000 {
            let mut line = Vec::new();
            for _ in 0..8 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                line.extend_from_slice(pieces[(state % pieces.len() as u64) as usize]);
            }
            for end in 0..=line.len() {
                for codec in Codec::ALL {
                    let ev = decode(codec, &line[..end], false, &ctx());
                    assert!(ev.contains("@timestamp") && ev.contains("message"));
                }
            }
        }
    }
}

//! One line of `audit.log`: its header and its `key=value` fields.
//!
//! A record line is `[node=NAME ]type=TYPE msg=audit(SECS.MILLIS:SERIAL): BODY`. Every record
//! of one event shares `SECS.MILLIS:SERIAL`. The body is a list of `key=value` fields separated
//! by spaces; a value is written
//! - in double quotes (`exe="/usr/bin/id"`): a string that needed no encoding, taken as is;
//! - in upper-case hexadecimal, unquoted (`a1=2D6E20...`): a string that holds a space, a quote,
//!   a control character or a byte above 0x7e; it is decoded (see [`decode`]);
//! - bare (`pid=4242`, `arch=c000003e`): a number or a word;
//! - `?`, `(null)` or empty: no value, the field is dropped.
//!
//! User-space records (`USER_LOGIN`, `ADD_USER`...) carry a second list inside
//! `msg='op=login acct="alice" ... res=success'`; its fields are read as if they were at the top
//! level. Logs written with `log_format = ENRICHED` end with `\x1d` (group separator) and
//! upper-case fields that translate ids (`UID="root"`, `SYSCALL=execve`); the separator counts
//! as a space. Words without `=` (`user`, `avc:  denied  { read } for`) are skipped, except the
//! `old`/`new` that prefix a key in old `LOGIN` records (`old auid=700 new auid=700` reads as
//! `old_auid`, `new_auid`).

use std::borrow::Cow;

/// The header of a record line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    /// `node=` (the host that wrote the record, in aggregated logs).
    pub node: Option<&'a str>,
    /// The record type as written (`SYSCALL`, `UNKNOWN[1334]`).
    pub rtype: &'a str,
    /// Seconds since the epoch.
    pub secs: i64,
    /// Milliseconds within the second.
    pub millis: u32,
    /// The event serial.
    pub serial: u64,
    /// Everything after `msg=audit(...):`.
    pub body: &'a str,
}

impl Header<'_> {
    /// The event time in milliseconds since the epoch.
    pub fn time_ms(&self) -> i64 {
        self.secs
            .saturating_mul(1000)
            .saturating_add(i64::from(self.millis))
    }
}

/// Reads the header of a record line; `None` when the line is not an audit record.
pub(crate) fn parse_header(line: &str) -> Option<Header<'_>> {
    let mut rest = line.trim_start();
    let mut node = None;
    if let Some(after) = rest.strip_prefix("node=") {
        let end = after.find(' ')?;
        node = Some(&after[..end]).filter(|n| !n.is_empty());
        rest = after[end..].trim_start();
    }
    let after = rest.strip_prefix("type=")?;
    let end = after.find(' ')?;
    let rtype = &after[..end];
    if rtype.is_empty() {
        return None;
    }
    let after = after[end..].trim_start().strip_prefix("msg=audit(")?;
    let close = after.find(')')?;
    let stamp = &after[..close];
    let (time, serial) = stamp.split_once(':')?;
    let (secs, millis) = time.split_once('.').unwrap_or((time, "0"));
    let secs = parse_digits(secs)?;
    let millis = parse_millis(millis)?;
    let serial = parse_digits(serial)?;
    let body = after[close + 1..].strip_prefix(':')?.trim_start();
    Some(Header {
        node,
        rtype,
        secs: i64::try_from(secs).ok()?,
        millis,
        serial,
        body,
    })
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The fraction of a second as milliseconds (`123` -> 123, `5` -> 500, `123456` -> 123).
fn parse_millis(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ms = 0u32;
    for i in 0..3 {
        let digit = s.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
        ms = ms * 10 + digit;
    }
    Some(ms)
}

/// How a value was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quote {
    /// Bare: a number, a word, or hexadecimal.
    Bare,
    /// In double quotes.
    Double,
    /// In single quotes (the `msg='...'` of user-space records, read as fields).
    Single,
}

/// One `key=value` field of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field<'a> {
    /// The key (`old_auid` for `old auid=`).
    pub key: Cow<'a, str>,
    /// The value as written, without its quotes.
    pub raw: &'a str,
    /// How the value was written.
    pub quote: Quote,
}

/// The fields of a record body, in order, the `msg='...'` of user-space records flattened in
/// place.
pub(crate) fn fields(body: &str) -> Vec<Field<'_>> {
    let mut out = Vec::with_capacity(24);
    scan(body, &mut out, true);
    out
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == 0x1d || b == b'\t'
}

fn scan<'a>(body: &'a str, out: &mut Vec<Field<'a>>, top: bool) {
    let bytes = body.as_bytes();
    let mut i = 0;
    let mut prefix: Option<&'a str> = None;
    while i < bytes.len() {
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && !is_space(bytes[i]) && bytes[i] != b'=' {
            i += 1;
        }
        if start == i && i < bytes.len() && bytes[i] == b'=' {
            // `=value` without a key: skip the value.
            while i < bytes.len() && !is_space(bytes[i]) {
                i += 1;
            }
            continue;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            // A bare word.
            let word = &body[start..i];
            prefix = matches!(word, "old" | "new").then_some(word);
            continue;
        }
        let key = &body[start..i];
        i += 1;
        let (raw, quote) = match bytes.get(i) {
            Some(&q @ (b'"' | b'\'')) => {
                let open = i + 1;
                let close = body[open..]
                    .find(char::from(q))
                    .map_or(body.len(), |p| open + p);
                i = (close + 1).min(body.len());
                let quote = if q == b'"' {
                    Quote::Double
                } else {
                    Quote::Single
                };
                (&body[open..close], quote)
            }
            _ => {
                let open = i;
                while i < bytes.len() && !is_space(bytes[i]) {
                    i += 1;
                }
                (&body[open..i], Quote::Bare)
            }
        };
        let key = match prefix.take() {
            Some(p) => Cow::Owned(format!("{p}_{key}")),
            None => Cow::Borrowed(key),
        };
        if top && quote == Quote::Single && key == "msg" {
            scan(raw, out, false);
            continue;
        }
        out.push(Field { key, raw, quote });
    }
}

/// Whether a bare value of this key may be hex-encoded text. The kernel and the audit library
/// encode "untrusted strings": names, paths, commands, keys (the list Elastic's pipeline uses,
/// plus the audit rule key). `EXECVE` arguments are handled by their record.
pub(crate) fn may_be_hex(key: &str) -> bool {
    matches!(
        key,
        "exe"
            | "cmd"
            | "data"
            | "path"
            | "comm"
            | "file"
            | "name"
            | "watch"
            | "cwd"
            | "acct"
            | "dir"
            | "vm"
            | "device"
            | "cgroup"
            | "apparmor"
            | "operation"
            | "denied_mask"
            | "info"
            | "profile"
            | "requested_mask"
            | "ocomm"
            | "grp"
            | "new_group"
            | "invalid_context"
            | "sw"
            | "root_dir"
            | "proctitle"
            | "key"
    ) || key.starts_with("old-")
        || key.starts_with("new-")
}

/// The text of a value, or `None` for "no value" (`?`, `(null)`, empty). A bare value is
/// decoded from hexadecimal when `hex` allows it and it is valid upper-case hex whose bytes
/// needed encoding (a space, a quote, a control byte or a byte above 0x7e, which is when the
/// kernel encodes); otherwise it is taken as written.
pub(crate) fn decode(raw: &str, quote: Quote, hex: bool) -> Option<Cow<'_, str>> {
    if quote != Quote::Bare {
        return Some(Cow::Borrowed(raw));
    }
    if raw.is_empty() || raw == "?" || raw == "(null)" {
        return None;
    }
    if hex {
        if let Some(text) = decode_hex(raw) {
            return Some(Cow::Owned(text));
        }
    }
    Some(Cow::Borrowed(raw))
}

/// Upper-case hex that decodes to bytes the kernel would have encoded, as text (invalid UTF-8
/// replaced); `None` otherwise.
pub(crate) fn decode_hex(raw: &str) -> Option<String> {
    let bytes = hex_bytes(raw)?;
    let needed = bytes
        .iter()
        .any(|&b| b == b'"' || !(0x21..=0x7e).contains(&b));
    if !needed {
        return None;
    }
    Some(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// The bytes of an even-length string of upper-case hex digits.
pub(crate) fn hex_bytes(raw: &str) -> Option<Vec<u8>> {
    let b = raw.as_bytes();
    if b.is_empty() || !b.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(b.len() / 2);
    for pair in b.chunks_exact(2) {
        out.push(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?);
    }
    Some(out)
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(body: &str) -> Vec<(String, String, Quote)> {
        fields(body)
            .into_iter()
            .map(|f| (f.key.into_owned(), f.raw.to_owned(), f.quote))
            .collect()
    }

    #[test]
    fn header_with_and_without_node() {
        let h =
            parse_header("type=SYSCALL msg=audit(1364481363.243:24287): arch=c000003e").unwrap();
        assert_eq!(
            (h.node, h.rtype, h.secs, h.millis, h.serial),
            (None, "SYSCALL", 1364481363, 243, 24287)
        );
        assert_eq!(h.body, "arch=c000003e");
        let h = parse_header("node=web-1 type=EOE msg=audit(1.5:7): ").unwrap();
        assert_eq!(
            (h.node, h.rtype, h.millis, h.serial, h.body),
            (Some("web-1"), "EOE", 500, 7, "")
        );
        assert_eq!(h.time_ms(), 1500);
        for bad in [
            "",
            "type=UNKNOWN[1329] msg=g",
            "type=X msg=audit(1.2): a=b",
            "type=X msg=audit(a.2:3): a=b",
            "hello world",
            "node=x",
            "type=X msg=audit(99999999999999999999.1:2): x=y",
        ] {
            assert_eq!(parse_header(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn quoted_bare_and_user_msg_fields() {
        let f =
            kv(r#"user pid=1 uid=0 msg='op=login acct="bob" exe="/usr/sbin/sshd" res=success'"#);
        let keys: Vec<&str> = f.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(keys, ["pid", "uid", "op", "acct", "exe", "res"]);
        assert_eq!(f[3], ("acct".into(), "bob".into(), Quote::Double));
        let f = kv("pid=1 uid=0 old auid=700 new auid=701 old ses=1 new ses=2");
        let keys: Vec<&str> = f.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["pid", "uid", "old_auid", "new_auid", "old_ses", "new_ses"]
        );
        let f = kv("key=(null)\u{1d}ARCH=x86_64 SYSCALL=execve UID=\"root\"");
        assert_eq!(f[1].0, "ARCH");
        assert_eq!(f[3], ("UID".into(), "root".into(), Quote::Double));
        // An unterminated quote takes the rest of the line.
        assert_eq!(kv("a=\"open")[0].1, "open");
    }

    #[test]
    fn hex_values_decode_only_when_the_kernel_would_have_encoded() {
        assert_eq!(
            decode("2F746D702F6120622E7368", Quote::Bare, true).unwrap(),
            "/tmp/a b.sh"
        );
        // Valid hex that needed no encoding is a plain word.
        assert_eq!(decode("414243", Quote::Bare, true).unwrap(), "414243");
        assert_eq!(decode("2F746D70", Quote::Double, true).unwrap(), "2F746D70");
        assert_eq!(
            decode("2F746D7020", Quote::Bare, false).unwrap(),
            "2F746D7020"
        );
        assert_eq!(decode("?", Quote::Bare, true), None);
        assert_eq!(decode("(null)", Quote::Bare, true), None);
        assert_eq!(decode("", Quote::Double, true).unwrap(), "");
        assert_eq!(decode("FF20", Quote::Bare, true).unwrap(), "\u{fffd} ");
    }
}

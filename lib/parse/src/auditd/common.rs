//! What every auditd event has, whatever its records: the common fields, the `message`
//! summary, and the event of a line that is not an audit record.
//!
//! `message` is built from the normalized fields, so that keyword rules (which search
//! `message` and `event.original`) see decoded arguments: `event.original` keeps the records
//! as written, hex included.

use vigie_event::{fields as f, flags, Event};

use crate::Context;

/// Longest command line copied into `message` (bytes; cut at a character boundary).
const MESSAGE_MAX_BYTES: usize = 4096;

/// An event for a line that is not an audit record: the line as message, read now.
pub(crate) fn garbled(text: &str, invalid_utf8: bool, ctx: &Context) -> Event {
    let mut ev = Event::new();
    ev.set_timestamp(ctx.now);
    ev.set(f::MESSAGE, text);
    common(&mut ev, text, None, ctx);
    ev.add_flag(flags::PARSE_FAILURE);
    ev.add_flag(flags::TIMESTAMP_MISSING);
    if invalid_utf8 {
        ev.add_flag(flags::INVALID_UTF8);
    }
    ev
}

/// The fields every auditd event has.
pub(super) fn common(ev: &mut Event, original: &str, node: Option<&str>, ctx: &Context) {
    ev.set(f::EVENT_KIND, "event");
    ev.set(f::EVENT_MODULE, "auditd");
    ev.set(
        f::EVENT_DATASET,
        ctx.dataset.as_deref().unwrap_or("auditd.log"),
    );
    if ctx.keep_original {
        ev.set(f::EVENT_ORIGINAL, original);
    }
    if let Some(host) = node.or(ctx.host_name.as_deref()) {
        ev.set(f::HOST_NAME, host);
    }
    ev.set(f::LOGSOURCE_PRODUCT, "linux");
    ev.set(f::LOGSOURCE_SERVICE, "auditd");
}

/// `message`: what happened, in a few words (`executed chattr -i /etc/passwd`,
/// `opened-file /etc/shadow by vim`, `logged-in admin from 203.0.113.5 (failure)`).
pub(super) fn summary(ev: &Event, action: &str, execve: bool) -> String {
    let mut out = String::from(action);
    let object = if execve {
        ev.get_str("process.command_line")
    } else {
        [
            "file.path",
            "auditd.log.unit",
            "user.target.name",
            "user.target.id",
            "group.name",
            "group.id",
            "auditd.log.acct",
            "auditd.log.id",
            "process.command_line",
        ]
        .iter()
        .find_map(|p| ev.get_str(p))
        .or_else(|| {
            (action == "syscall")
                .then(|| ev.get_str("auditd.log.syscall"))
                .flatten()
        })
    };
    if let Some(object) = object.filter(|o| !o.is_empty()) {
        out.push(' ');
        let mut end = object.len().min(MESSAGE_MAX_BYTES);
        while !object.is_char_boundary(end) {
            end -= 1;
        }
        out.push_str(&object[..end]);
    }
    if !execve {
        if let Some(by) = ev
            .get_str(f::PROCESS_NAME)
            .or_else(|| ev.get_str("process.executable"))
        {
            out.push_str(" by ");
            out.push_str(by);
        }
    }
    if let Some(addr) = ev.get_str("source.address") {
        out.push_str(" from ");
        out.push_str(addr);
    }
    if ev.get_str(f::EVENT_OUTCOME) == Some("failure") {
        out.push_str(" (failure)");
    }
    out
}

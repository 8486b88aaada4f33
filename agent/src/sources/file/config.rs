//! Configuration of a file source: the file-specific keys of a `[[sources]]`
//! entry in `agent.toml` (the agent configuration flattens them in).
//!
//! Doc comments on the fields are the user documentation. Defaults are named
//! functions; units are in the key names. [`FileSourceOptions::validate`]
//! checks what serde cannot (non-zero sizes, non-empty include).

use serde::Deserialize;

use super::FileSourceError;

/// Options of a file source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceOptions {
    /// Glob patterns of the files to read, e.g. `["/var/log/auth.log", "/var/log/app/*.log"]`.
    /// `**` matches any number of directories. New files are picked up at every glob scan.
    pub include: Vec<String>,
    /// Glob patterns of files never to read. Each is matched against the full path and
    /// against the file name, so `"*.gz"` excludes `/var/log/auth.log.2.gz`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Where to start in files found at the agent's very first start that have no
    /// checkpoint: `"beginning"` or `"end"`. Files that appear later are always read from
    /// their beginning, so a newly rotated-in file never loses lines.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// Longest line kept, in bytes. Longer lines are cut at this length, flagged as
    /// truncated, and the rest of the line is skipped.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// Files are identified by a hash of their first line, or of their first
    /// `fingerprint_bytes` bytes when the first line is longer. A file whose first line is
    /// shorter than this and not yet complete is not read until it is.
    #[serde(default = "default_fingerprint_bytes")]
    pub fingerprint_bytes: usize,
    /// How often the include patterns are expanded to find new, renamed and deleted files,
    /// in milliseconds.
    #[serde(default = "default_glob_interval_ms")]
    pub glob_interval_ms: u64,
    /// How often files are checked for new data when no change notification arrives
    /// (always active, as a fallback to inotify), in milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// After a change notification, files are read at most once per this many
    /// milliseconds, so that a burst of small writes (a syslog daemon writes each line on
    /// its own) is read in one pass rather than one wake-up per write. Adds at most this
    /// much latency; 0 reads at every notification.
    #[serde(default = "default_min_read_interval_ms")]
    pub min_read_interval_ms: u64,
    /// Files not modified for this many seconds are not read when found; if they are
    /// written to again, reading starts where they ended when found. A file with a
    /// checkpoint always resumes from it.
    #[serde(default)]
    pub ignore_older_secs: Option<u64>,
    /// Joins continuation lines (stack traces…) into one event.
    #[serde(default)]
    pub multiline: Option<MultilineOptions>,
    /// Use inotify to wake up as soon as files change. Polling runs in any case.
    #[serde(default = "default_use_inotify")]
    pub use_inotify: bool,
    /// Most files kept open at once; past it the least recently read files are closed
    /// (they are reopened, at their position, when they grow).
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
}

/// Where to start reading files found at the very first start.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// From the first byte.
    #[default]
    Beginning,
    /// After the last complete line present when the file is found.
    End,
}

/// Multiline event assembly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineOptions {
    /// Regular expression matching the first line of an event. A matching line starts a
    /// new event; any other line is appended to the current event (joined with `\n`).
    pub start_pattern: String,
    /// An event is complete when no new line arrived for this long, in milliseconds.
    #[serde(default = "default_multiline_timeout_ms")]
    pub timeout_ms: u64,
    /// Most lines in one event; the event is emitted when it reaches this many lines.
    #[serde(default = "default_multiline_max_lines")]
    pub max_lines: usize,
}

fn default_max_line_bytes() -> usize {
    102_400
}
fn default_fingerprint_bytes() -> usize {
    1024
}
fn default_glob_interval_ms() -> u64 {
    1000
}
fn default_poll_interval_ms() -> u64 {
    250
}
fn default_min_read_interval_ms() -> u64 {
    250
}
fn default_use_inotify() -> bool {
    true
}
fn default_max_open_files() -> usize {
    1024
}
fn default_multiline_timeout_ms() -> u64 {
    1000
}
fn default_multiline_max_lines() -> usize {
    500
}

/// Largest accepted `fingerprint_bytes`: the fingerprint is read at every glob scan.
const MAX_FINGERPRINT_BYTES: usize = 64 * 1024;

impl FileSourceOptions {
    /// Options with every default and the given include patterns.
    pub fn new(include: Vec<String>) -> FileSourceOptions {
        FileSourceOptions {
            include,
            exclude: Vec::new(),
            read_from: ReadFrom::default(),
            max_line_bytes: default_max_line_bytes(),
            fingerprint_bytes: default_fingerprint_bytes(),
            glob_interval_ms: default_glob_interval_ms(),
            poll_interval_ms: default_poll_interval_ms(),
            min_read_interval_ms: default_min_read_interval_ms(),
            ignore_older_secs: None,
            multiline: None,
            use_inotify: default_use_inotify(),
            max_open_files: default_max_open_files(),
        }
    }

    /// Checks the values serde accepts but the tailer cannot use. Glob and regex syntax
    /// are checked when the tailer is built.
    pub fn validate(&self) -> Result<(), FileSourceError> {
        let invalid = |key: &'static str, message: String| {
            Err(FileSourceError::InvalidOption { key, message })
        };
        if self.include.is_empty() {
            return invalid("include", "at least one glob pattern is required".into());
        }
        if self.max_line_bytes == 0 {
            return invalid("max_line_bytes", "must be at least 1".into());
        }
        if self.fingerprint_bytes == 0 || self.fingerprint_bytes > MAX_FINGERPRINT_BYTES {
            return invalid(
                "fingerprint_bytes",
                format!("must be between 1 and {MAX_FINGERPRINT_BYTES}"),
            );
        }
        if self.max_open_files == 0 {
            return invalid("max_open_files", "must be at least 1".into());
        }
        if let Some(m) = &self.multiline {
            if m.max_lines == 0 {
                return invalid("multiline.max_lines", "must be at least 1".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_unknown_keys_are_rejected() {
        let o: FileSourceOptions = toml::from_str(r#"include = ["/var/log/*.log"]"#).unwrap();
        assert_eq!(o.read_from, ReadFrom::Beginning);
        assert_eq!(o.max_line_bytes, 102_400);
        assert_eq!(o.fingerprint_bytes, 1024);
        assert_eq!(o.glob_interval_ms, 1000);
        assert_eq!(o.poll_interval_ms, 250);
        assert_eq!(o.min_read_interval_ms, 250);
        assert!(o.use_inotify);
        assert!(o.exclude.is_empty() && o.multiline.is_none() && o.ignore_older_secs.is_none());
        o.validate().unwrap();

        let err = toml::from_str::<FileSourceOptions>("include = [\"a\"]\nmax_line = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_line"), "{err}");
    }

    #[test]
    fn read_from_and_multiline_parse() {
        let o: FileSourceOptions = toml::from_str(
            r#"
            include = ["/a"]
            read_from = "end"
            multiline = { start_pattern = '^\d' }
            "#,
        )
        .unwrap();
        assert_eq!(o.read_from, ReadFrom::End);
        let m = o.multiline.unwrap();
        assert_eq!((m.timeout_ms, m.max_lines), (1000, 500));
        assert!(
            toml::from_str::<FileSourceOptions>("include=[\"a\"]\nread_from=\"middle\"").is_err()
        );
    }

    #[test]
    fn validate_names_the_key() {
        let mut o = FileSourceOptions::new(vec![]);
        assert!(o.validate().unwrap_err().to_string().contains("include"));
        o.include = vec!["/a".into()];
        o.max_line_bytes = 0;
        assert!(o
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_line_bytes"));
    }
}

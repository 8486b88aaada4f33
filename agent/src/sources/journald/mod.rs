//! journald source: follows the systemd journal through `journalctl`.
//!
//! The source runs `journalctl --output=json --follow` as a child process and
//! reads its stdout line by line. Each line is one journal entry: a flat JSON
//! object whose values are strings, arrays of byte values (binary or non-UTF-8
//! data), arrays of those (a field repeated in the entry), or null. Entries are
//! mapped to ECS by [`map_entry`] and sent downstream as [`JournalRecord`]s,
//! each carrying the entry's `__CURSOR`.
//!
//! Invariants:
//! - **Position.** A run starts right after the cursor it is given
//!   (`--after-cursor`: the entry at the cursor is not repeated) or, without a
//!   cursor, at the end or the beginning of the journal (`read_from`). When
//!   journalctl exits, it is restarted with backoff after the cursor of the
//!   last entry this task read. The agent persists only cursors the collector
//!   acknowledged, so a restart of the whole agent resumes from there.
//! - **Backpressure.** Records leave in small batches on a bounded channel;
//!   while the channel is full the task stops reading stdout, the pipe fills
//!   and journalctl blocks. Nothing is dropped to keep up.
//! - **Bounded memory.** A line longer than `max_line_bytes` is cut: the
//!   fields that fit are kept (module `salvage`), the event is flagged
//!   `truncated`, and the rest of the line is read and thrown away.
//! - A line that is not a journal entry at all is kept as a plain message
//!   flagged `parse_failure`, carrying the previous cursor.
//! - journalctl missing or not executable ends the task with an error (the
//!   other sources keep running); every other failure is logged and retried.
//!
//! journalctl is asked for the fields [`OUTPUT_FIELDS`] only (`--output-fields`,
//! systemd 236 or later) and with `--all`, so long messages are kept whole
//! instead of being replaced by null, while big binary fields that Vigie does
//! not map (core dumps) never reach the agent.

mod map;
mod salvage;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};
use vigie_event::{flags, Event};

pub use map::{map_entry, OUTPUT_FIELDS};

/// Most records sent in one batch.
const MAX_BATCH_RECORDS: usize = 128;
/// Buffer between journalctl's stdout and the line reader.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// First wait before restarting journalctl; doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between two restarts of journalctl.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Longest stderr line kept from journalctl.
const MAX_STDERR_LINE_BYTES: usize = 4096;
/// stderr lines logged per journalctl run (the rest are only counted).
const MAX_STDERR_LINES_LOGGED: usize = 20;
/// stderr lines kept to explain why journalctl exited.
const STDERR_TAIL_LINES: usize = 5;
/// How long to wait for journalctl's stderr to close after it exited.
const STDERR_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Smallest accepted `max_line_bytes`: a cursor alone is ~130 bytes and an
/// entry with its metadata is several hundred.
const MIN_MAX_LINE_BYTES: usize = 1024;

/// Where a journald source starts when it has no saved cursor yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JournaldReadFrom {
    /// Every entry the journal still holds.
    Beginning,
    /// Only entries written from now on.
    #[default]
    End,
}

/// The journald-specific keys of a `[[sources]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournaldOptions {
    /// Only entries of these systemd units (`journalctl -u`, repeated), e.g.
    /// `["ssh.service", "cron.service"]`. Empty (the default) means every entry.
    #[serde(default)]
    pub units: Vec<String>,
    /// The journalctl program; a bare name is looked up in `PATH`.
    #[serde(default = "default_journalctl_path")]
    pub journalctl_path: PathBuf,
    /// Where to start when no cursor was saved yet: `"end"` (default, only new
    /// entries) or `"beginning"` (everything the journal still holds).
    #[serde(default)]
    pub read_from: JournaldReadFrom,
    /// Only entries of the current boot (`journalctl -b`).
    #[serde(default)]
    pub current_boot_only: bool,
    /// Longest journal entry read, as one line of journalctl's JSON output. A
    /// longer entry keeps the fields that fit and is flagged `truncated`.
    /// At least 1024.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

/// One journal entry, mapped to ECS, with the cursor to resume after it.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRecord {
    /// The entry's `__CURSOR`. For a line whose cursor could not be read (not
    /// JSON at all), the cursor of the entry before it, or the empty string
    /// when there was none: an empty cursor is no position and must not be
    /// saved.
    pub cursor: String,
    /// The entry as an ECS event.
    pub event: Event,
}

/// Why a journald source stopped for good.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournaldError {
    /// journalctl is not installed where the configuration says.
    #[error(
        "journald source '{name}': journalctl not found at {}; install systemd or remove this source",
        .path.display()
    )]
    JournalctlNotFound {
        /// The source name.
        name: String,
        /// The configured `journalctl_path`.
        path: PathBuf,
    },
    /// journalctl exists but cannot be run (not executable, a directory, …).
    #[error(
        "journald source '{name}': cannot run {}: {source}; check the path and its permissions",
        .path.display()
    )]
    Spawn {
        /// The source name.
        name: String,
        /// The configured `journalctl_path`.
        path: PathBuf,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },
    /// A key of the source has a value that cannot work.
    #[error("journald source '{name}': {message}")]
    InvalidOptions {
        /// The source name.
        name: String,
        /// What is wrong and what would be valid.
        message: String,
    },
}

fn default_journalctl_path() -> PathBuf {
    PathBuf::from("journalctl")
}

fn default_max_line_bytes() -> usize {
    102_400
}

impl Default for JournaldOptions {
    fn default() -> Self {
        Self {
            units: Vec::new(),
            journalctl_path: default_journalctl_path(),
            read_from: JournaldReadFrom::default(),
            current_boot_only: false,
            max_line_bytes: default_max_line_bytes(),
        }
    }
}

impl JournaldOptions {
    /// Checks the values that serde cannot: `max_line_bytes` is at least
    /// 1024, unit names are not empty. `name` is the source name, for the
    /// message.
    pub fn validate(&self, name: &str) -> Result<(), JournaldError> {
        let invalid = |message: String| JournaldError::InvalidOptions {
            name: name.to_owned(),
            message,
        };
        if self.max_line_bytes < MIN_MAX_LINE_BYTES {
            return Err(invalid(format!(
                "max_line_bytes = {} is too small; use at least {MIN_MAX_LINE_BYTES}",
                self.max_line_bytes
            )));
        }
        if self.units.iter().any(|u| u.trim().is_empty()) {
            return Err(invalid(
                "units holds an empty name; list unit names such as \"ssh.service\"".to_owned(),
            ));
        }
        if self.journalctl_path.as_os_str().is_empty() {
            return Err(invalid(
                "journalctl_path is empty; leave it out to use \"journalctl\" from PATH".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Follows the journal until `shutdown` turns true (or its sender is dropped)
/// or `tx` is closed, sending records in small batches.
///
/// Spawns journalctl with `--output=json --follow --no-pager`, starting after
/// `cursor` when given (`--after-cursor`), else at the end (`--lines=0`) or
/// the beginning (`--no-tail`) per `read_from`; `-u UNIT` for each unit and
/// `-b` when `current_boot_only`. When journalctl exits it is restarted with
/// backoff (1 s doubling to 60 s, back to 1 s after a run that delivered
/// entries), after the last cursor read. If journalctl rejects the cursor
/// (it names the cursor on stderr and exits before printing anything), the
/// cursor is dropped and the source starts over per `read_from`, with an
/// error log since entries may be missed.
///
/// `host_name` fills `host.name` for entries without `_HOSTNAME`.
///
/// Returns an error only when journalctl cannot be run at all (missing, not
/// executable) or the options are invalid.
pub async fn run(
    name: String,
    opts: JournaldOptions,
    cursor: Option<String>,
    host_name: Option<String>,
    tx: mpsc::Sender<Vec<JournalRecord>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), JournaldError> {
    opts.validate(&name)?;
    let mut follower = Follower {
        cursor: cursor.filter(|c| !c.is_empty()),
        telemetry: Telemetry::default(),
        name,
        opts,
        host_name,
    };
    let mut backoff = INITIAL_BACKOFF;
    info!(source = %follower.name, cursor = ?follower.cursor, "journald source starting");
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let delay = match follower.run_once(&tx, &mut shutdown).await? {
            RunEnd::Stopped => return Ok(()),
            RunEnd::SpawnFailed(err) => {
                warn!(
                    source = %follower.name,
                    path = %follower.opts.journalctl_path.display(),
                    error = %err,
                    retry_in_secs = backoff.as_secs(),
                    "journald source: cannot start journalctl, will retry"
                );
                next_delay(&mut backoff, false)
            }
            RunEnd::Exited {
                status,
                records,
                stderr_tail,
            } => follower.after_exit(status, records, &stderr_tail, &mut backoff),
        };
        tokio::select! {
            biased;
            () = stop_requested(&mut shutdown) => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// How one run of journalctl ended.
enum RunEnd {
    /// Shutdown was requested or the receiver is gone: the source stops.
    Stopped,
    /// journalctl could not be started for a reason that may pass.
    SpawnFailed(io::Error),
    /// journalctl exited (or closed its stdout).
    Exited {
        status: Option<ExitStatus>,
        records: u64,
        stderr_tail: Vec<String>,
    },
}

/// What one line of journalctl's output turned into.
enum Line {
    /// A whole line is in the buffer; `truncated` when it was longer than the cap.
    Complete { truncated: bool },
    /// End of output, nothing pending (an unterminated last line is dropped:
    /// journalctl ends every entry with a newline, so it was cut by a crash
    /// and is read again after the restart).
    Eof,
}

/// State kept across journalctl restarts.
struct Follower {
    name: String,
    opts: JournaldOptions,
    host_name: Option<String>,
    /// Cursor of the last entry read; where the next run starts.
    cursor: Option<String>,
    telemetry: Telemetry,
}

impl Follower {
    /// Spawns journalctl once and forwards its entries until it exits or the
    /// source is stopped.
    async fn run_once(
        &mut self,
        tx: &mpsc::Sender<Vec<JournalRecord>>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<RunEnd, JournaldError> {
        let args = journalctl_args(&self.opts, self.cursor.as_deref());
        debug!(source = %self.name, ?args, "spawning journalctl");
        let mut child = match Command::new(&self.opts.journalctl_path)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                return Err(JournaldError::JournalctlNotFound {
                    name: self.name.clone(),
                    path: self.opts.journalctl_path.clone(),
                })
            }
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                return Err(JournaldError::Spawn {
                    name: self.name.clone(),
                    path: self.opts.journalctl_path.clone(),
                    source: err,
                })
            }
            Err(err) => return Ok(RunEnd::SpawnFailed(err)),
        };
        let stderr_task = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(drain_stderr(self.name.clone(), stderr)));
        let mut records = 0u64;
        let stopped = match child.stdout.take() {
            Some(stdout) => self.forward(stdout, tx, shutdown, &mut records).await,
            None => false,
        };
        if stopped {
            stop_child(&mut child).await;
            if let Some(task) = stderr_task {
                task.abort();
            }
            return Ok(RunEnd::Stopped);
        }
        let status = tokio::select! {
            biased;
            () = stop_requested(shutdown) => {
                stop_child(&mut child).await;
                return Ok(RunEnd::Stopped);
            }
            status = child.wait() => status.ok(),
        };
        let stderr_tail = match stderr_task {
            Some(task) => match tokio::time::timeout(STDERR_DRAIN_TIMEOUT, task).await {
                Ok(Ok(tail)) => tail,
                _ => Vec::new(),
            },
            None => Vec::new(),
        };
        Ok(RunEnd::Exited {
            status,
            records,
            stderr_tail,
        })
    }

    /// Reads entries from journalctl's stdout and sends them until end of
    /// output. Returns true when the source must stop (shutdown, or the
    /// receiver is gone).
    async fn forward<R: AsyncRead + Unpin>(
        &mut self,
        stdout: R,
        tx: &mpsc::Sender<Vec<JournalRecord>>,
        shutdown: &mut watch::Receiver<bool>,
        records: &mut u64,
    ) -> bool {
        let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, stdout);
        let mut line = Vec::new();
        loop {
            let batch = tokio::select! {
                biased;
                () = stop_requested(shutdown) => return true,
                batch = self.read_batch(&mut reader, &mut line) => batch,
            };
            let batch = match batch {
                Ok(Some(batch)) => batch,
                Ok(None) => return false,
                Err(err) => {
                    warn!(source = %self.name, error = %err, "journald source: reading journalctl output failed");
                    return false;
                }
            };
            let count = batch.len() as u64;
            tokio::select! {
                biased;
                () = stop_requested(shutdown) => return true,
                sent = tx.send(batch) => if sent.is_err() {
                    debug!(source = %self.name, "journald source: receiver closed, stopping");
                    return true;
                },
            }
            *records += count;
        }
    }

    /// Reads at least one record, then more while whole lines are already
    /// buffered (never waiting while holding records). `None` at end of output.
    async fn read_batch<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut BufReader<R>,
        line: &mut Vec<u8>,
    ) -> io::Result<Option<Vec<JournalRecord>>> {
        let mut batch = Vec::new();
        loop {
            match read_bounded_line(reader, line, self.opts.max_line_bytes).await? {
                Line::Eof => return Ok((!batch.is_empty()).then_some(batch)),
                Line::Complete { truncated } => {
                    if let Some(record) = self.decode(line, truncated) {
                        batch.push(record);
                    }
                }
            }
            if !batch.is_empty()
                && (batch.len() >= MAX_BATCH_RECORDS || !reader.buffer().contains(&b'\n'))
            {
                return Ok(Some(batch));
            }
        }
    }

    /// Turns one output line into a record and remembers its cursor.
    fn decode(&mut self, line: &[u8], truncated: bool) -> Option<JournalRecord> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let parsed = if truncated {
            None
        } else {
            serde_json::from_slice::<Map<String, Value>>(line).ok()
        };
        let (entry, damaged) = match parsed {
            Some(entry) => (entry, false),
            None => (salvage::salvage(line), true),
        };
        let event = if entry.is_empty() {
            self.telemetry.unparsed(&self.name);
            let mut event = map::unparsed_event(line, self.host_name.as_deref());
            if truncated {
                event.add_flag(flags::TRUNCATED);
            }
            event
        } else {
            let mut event = map_entry(&entry, self.host_name.as_deref());
            if truncated {
                self.telemetry
                    .truncated(&self.name, self.opts.max_line_bytes);
                event.add_flag(flags::TRUNCATED);
            } else if damaged {
                self.telemetry.unparsed(&self.name);
                event.add_flag(flags::PARSE_FAILURE);
            }
            event
        };
        let cursor = match entry.get("__CURSOR").and_then(Value::as_str) {
            Some(c) if !c.is_empty() => {
                self.cursor = Some(c.to_owned());
                c.to_owned()
            }
            _ => self.cursor.clone().unwrap_or_default(),
        };
        Some(JournalRecord { cursor, event })
    }

    /// Logs why journalctl exited and picks the wait before the next run.
    fn after_exit(
        &mut self,
        status: Option<ExitStatus>,
        records: u64,
        stderr_tail: &[String],
        backoff: &mut Duration,
    ) -> Duration {
        let status_text = status.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
        let failed = status.is_some_and(|s| !s.success());
        let cursor_rejected = records == 0
            && failed
            && self.cursor.is_some()
            && stderr_tail
                .iter()
                .any(|l| l.to_ascii_lowercase().contains("cursor"));
        if cursor_rejected {
            error!(
                source = %self.name,
                cursor = ?self.cursor,
                read_from = ?self.opts.read_from,
                stderr = %stderr_tail.join(" | "),
                "journald source: journalctl rejected the saved cursor; starting over from read_from, entries may be missed"
            );
            self.cursor = None;
            *backoff = INITIAL_BACKOFF;
            return Duration::ZERO;
        }
        let delay = next_delay(backoff, records > 0);
        warn!(
            source = %self.name,
            status = %status_text,
            entries = records,
            stderr = %stderr_tail.join(" | "),
            restart_in_secs = delay.as_secs(),
            "journald source: journalctl exited, restarting"
        );
        delay
    }
}

/// Rate-limited logging of damaged lines (the first ten, then every 1000th).
#[derive(Default)]
struct Telemetry {
    truncated: u64,
    unparsed: u64,
}

impl Telemetry {
    fn truncated(&mut self, name: &str, max_line_bytes: usize) {
        self.truncated += 1;
        if worth_logging(self.truncated) {
            warn!(
                source = %name,
                max_line_bytes,
                total = self.truncated,
                "journald source: entry longer than max_line_bytes was truncated"
            );
        }
    }

    fn unparsed(&mut self, name: &str) {
        self.unparsed += 1;
        if worth_logging(self.unparsed) {
            warn!(
                source = %name,
                total = self.unparsed,
                "journald source: journalctl printed a line that is not a whole journal entry; kept as a plain message"
            );
        }
    }
}

fn worth_logging(count: u64) -> bool {
    count <= 10 || count.rem_euclid(1000) == 0
}

/// The wait before the next restart; `progressed` (the run delivered entries)
/// resets the backoff.
fn next_delay(backoff: &mut Duration, progressed: bool) -> Duration {
    if progressed {
        *backoff = INITIAL_BACKOFF;
    }
    let delay = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    delay
}

/// The journalctl command line for a run starting after `cursor`.
fn journalctl_args(opts: &JournaldOptions, cursor: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "--output=json".to_owned(),
        "--follow".to_owned(),
        "--no-pager".to_owned(),
        "--all".to_owned(),
        format!("--output-fields={}", OUTPUT_FIELDS.join(",")),
    ];
    match (cursor, opts.read_from) {
        (Some(cursor), _) => {
            args.push(format!("--after-cursor={cursor}"));
            // --follow alone would limit the catch-up to the last 10 lines.
            args.push("--no-tail".to_owned());
        }
        (None, JournaldReadFrom::Beginning) => args.push("--no-tail".to_owned()),
        (None, JournaldReadFrom::End) => args.push("--lines=0".to_owned()),
    }
    for unit in &opts.units {
        args.push("-u".to_owned());
        args.push(unit.clone());
    }
    // Last, so that journalctl cannot take the next argument for a boot id.
    if opts.current_boot_only {
        args.push("-b".to_owned());
    }
    args
}

/// Reads one line into `line` (without the newline), keeping at most `max`
/// bytes and discarding the rest of a longer line.
async fn read_bounded_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Line> {
    line.clear();
    let mut truncated = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            if !line.is_empty() || truncated {
                debug!(bytes = line.len(), "dropping an unterminated last line");
            }
            line.clear();
            return Ok(Line::Eof);
        }
        let (chunk, used, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = max.saturating_sub(line.len());
        if chunk.len() > room {
            truncated = true;
            line.extend_from_slice(&chunk[..room]);
        } else {
            line.extend_from_slice(chunk);
        }
        reader.consume(used);
        if done {
            return Ok(Line::Complete { truncated });
        }
    }
}

/// Logs journalctl's stderr (a bounded number of lines per run) and returns
/// its last lines, to explain an exit.
async fn drain_stderr<R: AsyncRead + Unpin>(name: String, stderr: R) -> Vec<String> {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    let mut seen = 0usize;
    while let Ok(Line::Complete { .. }) =
        read_bounded_line(&mut reader, &mut line, MAX_STDERR_LINE_BYTES).await
    {
        let text = String::from_utf8_lossy(&line).trim().to_owned();
        if text.is_empty() {
            continue;
        }
        seen += 1;
        if seen <= MAX_STDERR_LINES_LOGGED {
            warn!(source = %name, stderr = %text, "journalctl says");
        }
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(text);
    }
    tail.into()
}

/// Kills journalctl and reaps it.
async fn stop_child(child: &mut Child) {
    if let Err(err) = child.start_kill() {
        debug!(error = %err, "journalctl already gone");
    }
    let _ = child.wait().await;
}

/// Resolves once shutdown is requested or its sender is dropped.
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

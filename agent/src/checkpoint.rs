//! Checkpoints: the durable record of what the collector has acknowledged.
//!
//! The agent advances a checkpoint only after the collector acknowledged the
//! batch that carried the lines (or journald entries) it covers, so after a
//! crash or restart the sources resume at the first unacknowledged record:
//! nothing is lost, and at most the unacknowledged tail is sent again (the
//! collector recognises retried batches).
//!
//! Format: `DATA_DIR/checkpoints.json`, a versioned JSON object
//! (`{"version":1,"files":{…},"journald":{…}}`). File checkpoints are keyed by
//! `"<source name>/<fingerprint as 16 lowercase hex digits>"`, so two sources
//! reading the same file keep separate positions and a file is found again
//! whatever its path (rotation while the agent was down). The value records
//! the last path the file was seen at (informational) and the byte offset just
//! after the last acknowledged line.
//!
//! Durability: [`CheckpointStore::save`] writes a temporary file (mode 0600) in
//! the same directory, fsyncs it, renames it over `checkpoints.json` and fsyncs
//! the directory, so the file on disk is always either the old or the new
//! version, never a mix. A file that cannot be parsed is an error naming the
//! path: resetting silently would make every source start over.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The checkpoint format version this agent reads and writes.
pub const CHECKPOINTS_VERSION: u32 = 1;

/// Name of the checkpoint file inside the agent data directory.
pub const CHECKPOINTS_FILE_NAME: &str = "checkpoints.json";

const TEMP_SUFFIX: &str = ".tmp";

/// Everything the collector has acknowledged, per source.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Checkpoints {
    /// Format version ([`CHECKPOINTS_VERSION`]).
    pub version: u32,
    /// File positions, keyed by [`Checkpoints::file_key`].
    #[serde(default)]
    pub files: BTreeMap<String, FileCheckpoint>,
    /// Journald cursors, keyed by source name.
    #[serde(default)]
    pub journald: BTreeMap<String, String>,
    /// With the spool: the positions after the batch being appended as spool
    /// record `spool_seq`, in effect once that record exists (see
    /// [`Checkpoints::resolve_pending`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingCheckpoint>,
}

/// Positions saved just before their batch is appended to the spool.
///
/// Saving positions after the append would leave a window (a crash between
/// the two) where the lines are in the spool and read again from the source;
/// saving them before, as plain positions, one where they are read by
/// nobody. Saved as pending, they take effect at the next start only if the
/// spool holds the complete record ([`crate::spool::OpenReport::written_end`]
/// past `spool_seq`; a record torn by a kill does not count).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PendingCheckpoint {
    /// The seq the spool gives the batch carrying these positions.
    pub spool_seq: u64,
    #[serde(default)]
    pub files: BTreeMap<String, FileCheckpoint>,
    #[serde(default)]
    pub journald: BTreeMap<String, String>,
}

/// The acknowledged position in one file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileCheckpoint {
    /// Path the file was last read from (informational: files are matched by fingerprint).
    pub path: PathBuf,
    /// Byte offset just after the last acknowledged line.
    pub offset: u64,
    /// When this checkpoint last moved (Unix seconds).
    pub updated_unix_secs: i64,
}

impl Checkpoints {
    /// An empty set of checkpoints in the current format version.
    pub fn new() -> Checkpoints {
        Checkpoints {
            version: CHECKPOINTS_VERSION,
            ..Checkpoints::default()
        }
    }

    /// Makes pending positions current if their spool record was completely
    /// written (`written_end` is past it), else drops them; returns whether
    /// they took effect.
    pub fn resolve_pending(&mut self, written_end: u64) -> bool {
        match self.pending.take() {
            Some(p) if written_end > p.spool_seq => {
                self.files = p.files;
                self.journald = p.journald;
                true
            }
            _ => false,
        }
    }

    /// The key of a file checkpoint: `"<source>/<fingerprint as 16 hex digits>"`.
    pub fn file_key(source: &str, fingerprint: u64) -> String {
        format!("{source}/{fingerprint:016x}")
    }

    /// The acknowledged offset of a file for a source, if any.
    pub fn file_offset(&self, source: &str, fingerprint: u64) -> Option<u64> {
        self.files
            .get(&Checkpoints::file_key(source, fingerprint))
            .map(|c| c.offset)
    }

    /// Records an acknowledged position (the `end_offset` of the last acknowledged line).
    pub fn record_file(
        &mut self,
        source: &str,
        fingerprint: u64,
        path: &Path,
        offset: u64,
        now_unix_secs: i64,
    ) {
        self.files.insert(
            Checkpoints::file_key(source, fingerprint),
            FileCheckpoint {
                path: path.to_path_buf(),
                offset,
                updated_unix_secs: now_unix_secs,
            },
        );
    }
}

/// Errors of the checkpoint store. Each names the file involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        /// The data directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The checkpoint file exists but could not be read.
    #[error("cannot read checkpoint file {path}: {source}")]
    Read {
        /// The checkpoint file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The checkpoint file is not valid JSON of the expected shape.
    #[error(
        "checkpoint file {path} is corrupt: {source}; repair it, or move it away to make \
         every source start over from its configured position"
    )]
    Corrupt {
        /// The checkpoint file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The checkpoint file was written by an incompatible agent version.
    #[error(
        "checkpoint file {path} has format version {found}; this agent reads version {supported}"
    )]
    Version {
        /// The checkpoint file.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
        /// The version this agent supports.
        supported: u32,
    },
    /// Writing, syncing or renaming the checkpoint file failed.
    #[error("cannot write checkpoint file {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Reads and atomically rewrites `DATA_DIR/checkpoints.json`.
#[derive(Debug)]
pub struct CheckpointStore {
    path: PathBuf,
    /// Serialises saves: they share one temporary file name.
    write_lock: Mutex<()>,
}

/// Borrowed view used to serialise with the current version whatever `version` says.
#[derive(Serialize)]
struct CheckpointsOut<'a> {
    version: u32,
    files: &'a BTreeMap<String, FileCheckpoint>,
    journald: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<&'a PendingCheckpoint>,
}

impl CheckpointStore {
    /// Opens the store in `data_dir` (created if missing) and loads the checkpoints.
    ///
    /// Returns the store, the checkpoints (empty, in the current version, when no file
    /// exists) and whether a checkpoint file existed. A corrupt file is an error.
    pub fn open(data_dir: &Path) -> Result<(CheckpointStore, Checkpoints, bool), CheckpointError> {
        fs::create_dir_all(data_dir).map_err(|source| CheckpointError::CreateDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(CHECKPOINTS_FILE_NAME);
        // A leftover temporary file is a save interrupted before its rename: the real
        // file still holds the previous complete version.
        let _ = fs::remove_file(temp_path_of(&path));
        let store = CheckpointStore {
            path,
            write_lock: Mutex::new(()),
        };
        let (checkpoints, existed) = match fs::read(&store.path) {
            Ok(bytes) => (store.parse(&bytes)?, true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Checkpoints::new(), false),
            Err(source) => {
                return Err(CheckpointError::Read {
                    path: store.path.clone(),
                    source,
                })
            }
        };
        Ok((store, checkpoints, existed))
    }

    /// Path of the checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn parse(&self, bytes: &[u8]) -> Result<Checkpoints, CheckpointError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let corrupt = |source| CheckpointError::Corrupt {
            path: self.path.clone(),
            source,
        };
        // Check the version first so a future format is reported as such, not as corrupt.
        let v: VersionOnly = serde_json::from_slice(bytes).map_err(corrupt)?;
        if v.version != CHECKPOINTS_VERSION {
            return Err(CheckpointError::Version {
                path: self.path.clone(),
                found: v.version,
                supported: CHECKPOINTS_VERSION,
            });
        }
        serde_json::from_slice(bytes).map_err(corrupt)
    }

    /// Durably replaces the checkpoint file with `cp` (written in the current version).
    ///
    /// Temp file (mode 0600) → write → fsync → rename → fsync of the directory.
    pub fn save(&self, cp: &Checkpoints) -> Result<(), CheckpointError> {
        let out = CheckpointsOut {
            version: CHECKPOINTS_VERSION,
            files: &cp.files,
            journald: &cp.journald,
            pending: cp.pending.as_ref(),
        };
        let mut json = serde_json::to_vec_pretty(&out).map_err(|e| CheckpointError::Write {
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        json.push(b'\n');

        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        write_file_atomic(&self.path, &json, 0o600).map_err(|source| CheckpointError::Write {
            path: self.path.clone(),
            source,
        })?;
        Ok(())
    }
}

/// The temporary file a durable write of `path` goes through.
fn temp_path_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TEMP_SUFFIX);
    PathBuf::from(name)
}

/// Replaces `path` durably: a fresh temporary file created with `mode`,
/// written, fsynced, renamed over `path`, then the directory fsynced. A crash
/// leaves either the old or the new contents, never a mix.
pub fn write_file_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let temp = temp_path_of(path);
    // Remove a stale temp file so `mode` applies to a freshly created one.
    match fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn pending_positions_apply_only_if_their_spool_record_exists() {
        let dir = tempfile::tempdir().unwrap();
        let (store, mut cp, _) = CheckpointStore::open(dir.path()).unwrap();
        cp.record_file("auth", 1, Path::new("/var/log/auth.log"), 100, 0);
        let mut after = cp.clone();
        after.record_file("auth", 1, Path::new("/var/log/auth.log"), 250, 0);
        cp.pending = Some(PendingCheckpoint {
            spool_seq: 7,
            files: after.files.clone(),
            journald: after.journald.clone(),
        });
        store.save(&cp).unwrap();

        // The agent died before record 7 reached the spool: lines 100..250 are read again.
        let (_, mut crashed_before, _) = CheckpointStore::open(dir.path()).unwrap();
        assert!(!crashed_before.resolve_pending(7));
        assert_eq!(crashed_before.file_offset("auth", 1), Some(100));
        assert!(crashed_before.pending.is_none());

        // Record 7 is in the spool: the lines are not read again.
        let (_, mut crashed_after, _) = CheckpointStore::open(dir.path()).unwrap();
        assert!(crashed_after.resolve_pending(8));
        assert_eq!(crashed_after.file_offset("auth", 1), Some(250));
    }

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> Checkpoints {
        let mut cp = Checkpoints::new();
        cp.record_file(
            "auth",
            0xabc,
            Path::new("/var/log/auth.log"),
            42,
            1_700_000_000,
        );
        cp.journald.insert("journal".into(), "s=abc;i=1".into());
        cp
    }

    #[test]
    fn file_key_is_source_and_16_hex_digits() {
        assert_eq!(
            Checkpoints::file_key("auth", 0xabc),
            "auth/0000000000000abc"
        );
        assert_ne!(Checkpoints::file_key("a", 1), Checkpoints::file_key("b", 1));
    }

    #[test]
    fn missing_file_opens_empty_and_not_existed() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, cp, existed) = CheckpointStore::open(dir.path()).unwrap();
        assert!(!existed);
        assert_eq!(cp, Checkpoints::new());
        assert_eq!(cp.version, CHECKPOINTS_VERSION);
    }

    #[test]
    fn save_then_open_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, _) = CheckpointStore::open(dir.path()).unwrap();
        let cp = sample();
        store.save(&cp).unwrap();
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("checkpoints.json.tmp").exists());

        let (_store, loaded, existed) = CheckpointStore::open(dir.path()).unwrap();
        assert!(existed);
        assert_eq!(loaded, cp);
        assert_eq!(loaded.file_offset("auth", 0xabc), Some(42));
        assert_eq!(loaded.file_offset("other", 0xabc), None);
    }

    #[test]
    fn save_overwrites_and_default_version_is_written_as_current() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, _) = CheckpointStore::open(dir.path()).unwrap();
        store.save(&sample()).unwrap();
        let mut cp = Checkpoints::default();
        cp.journald.insert("j".into(), "c2".into());
        store.save(&cp).unwrap();
        let (_s, loaded, _) = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(loaded.version, CHECKPOINTS_VERSION);
        assert!(loaded.files.is_empty());
        assert_eq!(loaded.journald.get("j").map(String::as_str), Some("c2"));
    }

    #[test]
    fn corrupt_file_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.json");
        fs::write(&path, b"{\"version\":1,\"files\":{").unwrap();
        let err = CheckpointStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        // The corrupt file is left in place for inspection.
        assert!(path.exists());
    }

    #[test]
    fn unknown_version_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("checkpoints.json"), b"{\"version\":7}").unwrap();
        let err = CheckpointStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, CheckpointError::Version { found: 7, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn leftover_temp_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, _) = CheckpointStore::open(dir.path()).unwrap();
        store.save(&sample()).unwrap();
        fs::write(dir.path().join("checkpoints.json.tmp"), b"garbage").unwrap();
        let (store, loaded, existed) = CheckpointStore::open(dir.path()).unwrap();
        assert!(existed);
        assert_eq!(loaded, sample());
        store.save(&loaded).unwrap();
    }
}

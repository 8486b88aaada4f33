//! The spool's `acked` state file: the acknowledgement watermark and the
//! next seq to assign.
//!
//! Format: a versioned JSON object, `{"version":1,"acked_seq":N,"next_seq":M}`.
//! `acked_seq` is the highest seq such that every record up to it was
//! acknowledged or dropped (0: none); `next_seq` is a floor for the next seq
//! to assign, so a seq is never reused even after every segment holding it
//! was deleted. Written atomically (temp file 0600, fsync, rename, fsync of
//! the directory) by [`crate::checkpoint::write_file_atomic`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SpoolError;
use crate::checkpoint::write_file_atomic;

/// Name of the state file inside the spool directory.
pub(super) const STATE_FILE_NAME: &str = "acked";
const STATE_VERSION: u32 = 1;

/// The persisted watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct State {
    pub acked_seq: u64,
    pub next_seq: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            acked_seq: 0,
            next_seq: 1,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    acked_seq: u64,
    next_seq: u64,
}

pub(super) fn path_in(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE_NAME)
}

/// Reads the state file; `None` when there is none yet.
pub(super) fn load(dir: &Path) -> Result<Option<State>, SpoolError> {
    let path = path_in(dir);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SpoolError::Read { path, source }),
    };
    let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| SpoolError::State {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if file.version != STATE_VERSION {
        return Err(SpoolError::State {
            path,
            reason: format!(
                "format version {} (this agent reads version {STATE_VERSION})",
                file.version
            ),
        });
    }
    Ok(Some(State {
        acked_seq: file.acked_seq,
        next_seq: file.next_seq.max(file.acked_seq.saturating_add(1)),
    }))
}

/// Durably replaces the state file.
pub(super) fn save(dir: &Path, state: State) -> Result<(), SpoolError> {
    let path = path_in(dir);
    let file = StateFile {
        version: STATE_VERSION,
        acked_seq: state.acked_seq,
        next_seq: state.next_seq,
    };
    let mut json = serde_json::to_vec(&file).map_err(|e| SpoolError::Write {
        path: path.clone(),
        source: io::Error::other(e),
    })?;
    json.push(b'\n');
    write_file_atomic(&path, &json, 0o600).map_err(|source| SpoolError::Write { path, source })
}

//! `[detect] source = "collector"`: the rule pack the collector serves (`GET /v1/rulepack`).
//!
//! The agent asks for the pack at start, then every `reload_interval_secs`, with
//! `If-None-Match: "<version>"` of the pack it has, so an unchanged pack costs a `304`. With
//! `reload_interval_secs = 0` it asks only until the collector has answered once.
//!
//! A served pack is validated before it is used: the body is at most [`MAX_RULEPACK_BYTES`],
//! it parses as a [`Rulepack`], every mapping parses, and loading its texts (in the served
//! order, with the served placeholders and disabled ids, and the agent's own `drop_rules`,
//! which are not part of the version) gives exactly the served version, so the collector can
//! trust the events stamped with it. A valid pack is saved to `<data_dir>/rulepack.json` (the
//! JSON as served; mode 0600, temp file → fsync → rename) and handed to the pipeline, which
//! swaps it in between two events. At start the saved pack is loaded and validated the same
//! way, so an agent that restarts while the collector is unreachable keeps its rules.
//!
//! A refused pack (too large, not JSON, a mapping that does not parse, another version than
//! served) keeps the previous one, is logged with the reason and counts in
//! `reload_failures`; its `ETag` is sent in `If-None-Match` afterwards, so the same bad
//! version is neither downloaded nor counted again. A network error or another status is
//! logged (at its first occurrence) and retried at the next interval.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, StatusCode};
use tokio::sync::{mpsc, watch};
use vigie_detect::{LoadOptions, LoadReport, RuleSet};
use vigie_wire::{DetectStats, Rulepack, MAX_RULEPACK_BYTES, RULEPACK_PATH};

use crate::client::{Answer, ClientError, CollectorClient};

/// The saved pack's file name in the data directory.
pub const SAVED_FILE: &str = "rulepack.json";

/// How often the pack is asked for while the collector has not answered, when
/// `reload_interval_secs = 0`.
const FIRST_ANSWER_RETRY: Duration = Duration::from_secs(10);

/// Why a pack is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// The body is over the cap.
    #[error("the rule pack is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The body is not a rule pack.
    #[error("the rule pack is not valid JSON: {0}")]
    Json(String),
    /// A mapping does not parse.
    #[error("mapping {name:?} does not parse: {reason}")]
    Mapping { name: String, reason: String },
    /// The texts do not load as the version they were served as.
    #[error("inconsistent rule pack: served as version {served}, its texts load as {loaded}")]
    Version { served: String, loaded: String },
    /// The saved pack cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A validated pack, ready to be swapped in.
#[derive(Debug)]
pub struct ServedPack {
    pub set: RuleSet,
    pub report: LoadReport,
    /// The collector's revision number of this version.
    pub revision: i64,
}

/// Where the pack is saved.
pub fn saved_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SAVED_FILE)
}

/// Checks a served body and loads its pack (see the module docs).
pub fn validate(body: &[u8], drop_rules: &BTreeSet<String>) -> Result<ServedPack, PackError> {
    validate_capped(body, drop_rules, MAX_RULEPACK_BYTES)
}

fn validate_capped(
    body: &[u8],
    drop_rules: &BTreeSet<String>,
    limit: usize,
) -> Result<ServedPack, PackError> {
    if body.len() > limit {
        return Err(PackError::TooLarge { limit });
    }
    let pack: Rulepack =
        serde_json::from_slice(body).map_err(|e| PackError::Json(e.to_string()))?;
    let mut mappings = Vec::with_capacity(pack.mappings.len());
    for m in &pack.mappings {
        let pipeline =
            vigie_detect::parse_mapping(&m.text).map_err(|reason| PackError::Mapping {
                name: m.name.clone(),
                reason,
            })?;
        mappings.push(pipeline);
    }
    let sources: Vec<(String, String)> = pack.rules.into_iter().map(|r| (r.name, r.text)).collect();
    let opts = LoadOptions {
        mappings,
        placeholders: pack.placeholders,
        drop_rules: drop_rules.clone(),
        disabled: pack.disabled.into_iter().collect(),
        only_central: false,
    };
    let (set, report) = RuleSet::load_sources(&sources, &opts);
    if set.version() != pack.version {
        return Err(PackError::Version {
            served: pack.version,
            loaded: set.version().to_owned(),
        });
    }
    Ok(ServedPack {
        set,
        report,
        revision: pack.revision,
    })
}

/// The pack saved by the last run (`None`: there is none), validated like a served one.
pub fn load_saved(
    path: &Path,
    drop_rules: &BTreeSet<String>,
) -> Result<Option<ServedPack>, PackError> {
    let read_error = |source| PackError::Read {
        path: path.to_owned(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    let mut body = Vec::new();
    file.take(MAX_RULEPACK_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(read_error)?;
    validate(&body, drop_rules).map(Some)
}

/// Saves a served body durably (mode 0600).
pub fn save(path: &Path, body: &[u8]) -> std::io::Result<()> {
    crate::checkpoint::write_file_atomic(path, body, 0o600)
}

/// The polling state: the pack the agent has, the one it refused, and how the last request
/// went.
pub struct Poller {
    path: PathBuf,
    drop_rules: BTreeSet<String>,
    stats: Arc<Mutex<DetectStats>>,
    /// The version in use.
    current: Option<String>,
    /// The `ETag` of the last pack refused.
    refused: Option<String>,
    /// Why the last request failed (logged when it changes).
    failing: Option<String>,
    /// Whether the collector answered at least once.
    answered: bool,
}

impl Poller {
    /// A poller saving packs in `data_dir`, starting from the pack `current` (its version).
    pub fn new(
        data_dir: &Path,
        drop_rules: BTreeSet<String>,
        current: Option<String>,
        stats: Arc<Mutex<DetectStats>>,
    ) -> Self {
        Poller {
            path: saved_path(data_dir),
            drop_rules,
            stats,
            current,
            refused: None,
            failing: None,
            answered: false,
        }
    }

    /// The headers of the next request: `If-None-Match` with the version in use and the one
    /// refused, if any.
    pub fn request_headers(&self) -> Vec<(&'static str, String)> {
        let mut tags: Vec<String> = self.current.iter().map(|v| format!("\"{v}\"")).collect();
        tags.extend(self.refused.iter().cloned());
        if tags.is_empty() {
            return Vec::new();
        }
        vec![("if-none-match", tags.join(", "))]
    }

    /// Handles the answer to a request: the new pack to swap in, if any. Blocking (loads the
    /// pack and writes it to disk).
    pub fn on_answer(&mut self, answer: Result<Answer, ClientError>) -> Option<ServedPack> {
        let answer = match answer {
            Ok(a) => a,
            Err(ClientError::TooLarge(limit)) => {
                self.reachable();
                self.refuse(None, PackError::TooLarge { limit });
                return None;
            }
            Err(e) => {
                self.unreachable(e.to_string());
                return None;
            }
        };
        match answer.status {
            StatusCode::NOT_MODIFIED => {
                self.reachable();
                None
            }
            StatusCode::OK => {
                self.reachable();
                let etag = answer
                    .headers
                    .get(header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                match validate(&answer.body, &self.drop_rules) {
                    Ok(pack) => self.accept(pack, &answer.body),
                    Err(e) => {
                        self.refuse(etag, e);
                        None
                    }
                }
            }
            status => {
                let message = String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
                    .into_owned();
                self.unreachable(format!("status {status}: {message}"));
                None
            }
        }
    }

    /// Whether the collector answered at least once.
    pub fn answered(&self) -> bool {
        self.answered
    }

    fn accept(&mut self, pack: ServedPack, body: &[u8]) -> Option<ServedPack> {
        self.refused = None;
        let version = pack.set.version();
        if self.current.as_deref() == Some(version) {
            return None;
        }
        if let Err(e) = save(&self.path, body) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot save the rule pack; a restart without the collector would start with an older one");
        }
        self.current = Some(version.to_owned());
        Some(pack)
    }

    fn refuse(&mut self, etag: Option<String>, e: PackError) {
        tracing::error!(reason = %e, version = self.current.as_deref().unwrap_or("none"), "rule pack from the collector refused; the previous one stays in use");
        self.refused = etag;
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reload_failures += 1;
    }

    fn reachable(&mut self) {
        self.answered = true;
        if self.failing.take().is_some() {
            tracing::info!("the collector serves the rule pack again");
        }
    }

    fn unreachable(&mut self, reason: String) {
        if self.failing.as_deref() != Some(reason.as_str()) {
            tracing::warn!(error = %reason, version = self.current.as_deref().unwrap_or("none"), "cannot get the rule pack from the collector; will retry");
        } else {
            tracing::debug!(error = %reason, "cannot get the rule pack from the collector");
        }
        self.failing = Some(reason);
    }
}

/// Asks the collector for its pack at start, then every `interval` (`None`: only until it
/// answered once), and sends each new valid pack to `packs`. Ends when `stop` changes or
/// `packs` closes.
pub async fn poll(
    mut poller: Poller,
    client: CollectorClient,
    interval: Option<Duration>,
    packs: mpsc::Sender<ServedPack>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let headers = poller.request_headers();
        let answer = tokio::select! {
            a = client.send_limited(Method::GET, RULEPACK_PATH, &headers, Bytes::new(), MAX_RULEPACK_BYTES) => a,
            _ = stop.changed() => return,
        };
        // Validation loads the whole pack: off the async threads.
        let handled = tokio::task::spawn_blocking(move || {
            let pack = poller.on_answer(answer);
            (poller, pack)
        })
        .await;
        let Ok((p, pack)) = handled else {
            return;
        };
        poller = p;
        if let Some(pack) = pack {
            if packs.send(pack).await.is_err() {
                return;
            }
        }
        let wait = match interval {
            Some(d) => d,
            None if poller.answered() => return,
            None => FIRST_ANSWER_RETRY,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
#[path = "rulepack_tests.rs"]
pub(crate) mod tests;

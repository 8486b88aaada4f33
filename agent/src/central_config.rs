//! Central sources: the `[[sources]]` the collector holds for this agent's
//! group (`GET /v1/config`, see `vigie_wire::config`), with
//! `[collector] central_sources = true`.
//!
//! The poller asks every `config_interval_secs` with `If-None-Match`. A new
//! document is checked with the agent's own configuration rules (and may not
//! reuse a local source's name); a good one is saved (`central-sources.json`,
//! 0600) and the pipeline restarts on it (sources stop, the open batch is
//! sealed into the spool, checkpoints are saved, then everything starts
//! again: nothing is lost or read twice). A document that fails the checks
//! is refused: logged once, reported in the statistics (`config_error`, which
//! shows the agent as degraded), and the agent keeps the sources it runs. At
//! start, the saved document is used, so an agent that cannot reach the
//! collector still runs its last good central sources.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::sync::watch;
use vigie_wire::{CentralConfig, CONFIG_PATH, MAX_CONFIG_BYTES};

use crate::client::CollectorClient;
use crate::config::{check_central_names, parse_sources_text, SourceConfig};
use crate::run::Reloader;

/// The last good document, in the data directory.
pub const SAVED_FILE: &str = "central-sources.json";

/// What the statistics report about central sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigStatus {
    /// The version in use (empty: none).
    pub version: String,
    /// Why the latest document was refused (empty: it was not).
    pub error: String,
}

/// Checks a document against the agent's rules and its local source names.
pub fn check(doc: &CentralConfig, local: &[String]) -> Result<Vec<SourceConfig>, String> {
    let sources = parse_sources_text(
        &doc.sources_toml,
        Path::new(&format!("central configuration {}", doc.version)),
    )
    .map_err(|e| e.to_string())?;
    check_central_names(local, &sources)?;
    Ok(sources)
}

fn saved_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SAVED_FILE)
}

/// The saved document, if there is a readable one.
pub fn load_saved(data_dir: &Path) -> Option<CentralConfig> {
    let path = saved_path(data_dir);
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(doc) => Some(doc),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "saved central sources unreadable; ignored");
            None
        }
    }
}

fn save(data_dir: &Path, doc: &CentralConfig) -> Result<()> {
    let path = saved_path(data_dir);
    crate::checkpoint::write_file_atomic(&path, &serde_json::to_vec(doc)?, 0o600)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn forget(data_dir: &Path) -> Result<()> {
    let path = saved_path(data_dir);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// What [`poll`] works with.
pub struct Poller {
    pub client: CollectorClient,
    pub data_dir: PathBuf,
    /// The local sources' names (central ones may not take them).
    pub local: Vec<String>,
    /// The version running now.
    pub current: Option<String>,
    pub interval: Duration,
    pub status: Arc<Mutex<ConfigStatus>>,
}

/// Polls until a new good document is saved (then asks for a restart and
/// returns) or `stop` turns true.
pub async fn poll(p: Poller, reloader: Reloader, mut stop: watch::Receiver<bool>) {
    let mut refused: Option<String> = None;
    loop {
        match fetch(&p).await {
            Ok(Fetched::Unchanged) => {}
            Ok(Fetched::Gone) if p.current.is_some() => match forget(&p.data_dir) {
                Ok(()) => {
                    tracing::info!("the collector holds no central sources for this group any more: restarting on the local sources");
                    reloader.reload();
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot drop the central sources")
                }
            },
            Ok(Fetched::Gone) => {}
            Ok(Fetched::New(doc)) => match check(&doc, &p.local) {
                Ok(sources) => match save(&p.data_dir, &doc) {
                    Ok(()) => {
                        tracing::info!(version = %doc.version, sources = sources.len(), "new central sources: restarting the pipeline on them");
                        reloader.reload();
                        return;
                    }
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "cannot save the central sources; keeping the current ones")
                    }
                },
                Err(why) => refuse(&p, &mut refused, &doc.version, &why),
            },
            Ok(Fetched::Unreadable(why)) => refuse(&p, &mut refused, "unreadable", &why),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot fetch the central sources; will retry")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(p.interval) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

fn refuse(p: &Poller, refused: &mut Option<String>, version: &str, why: &str) {
    if refused.as_deref() != Some(version) {
        tracing::error!(version, error = %why, running = p.current.as_deref().unwrap_or("none"), "central configuration refused; the agent keeps the sources it runs");
        *refused = Some(version.to_owned());
    }
    let mut s = p.status.lock().unwrap_or_else(|e| e.into_inner());
    s.error = format!("{version}: {why}");
}

enum Fetched {
    Unchanged,
    /// `404`: the group has no central sources.
    Gone,
    New(CentralConfig),
    Unreadable(String),
}

async fn fetch(p: &Poller) -> Result<Fetched> {
    let mut headers = Vec::new();
    if let Some(v) = &p.current {
        headers.push(("if-none-match", format!("\"{v}\"")));
    }
    let a = p
        .client
        .send_limited(
            Method::GET,
            CONFIG_PATH,
            &headers,
            Bytes::new(),
            MAX_CONFIG_BYTES,
        )
        .await?;
    Ok(match a.status {
        StatusCode::NOT_MODIFIED => Fetched::Unchanged,
        StatusCode::NOT_FOUND => Fetched::Gone,
        StatusCode::OK => match serde_json::from_slice::<CentralConfig>(&a.body) {
            Ok(doc) if p.current.as_deref() == Some(doc.version.as_str()) => Fetched::Unchanged,
            Ok(doc) => Fetched::New(doc),
            Err(e) => Fetched::Unreadable(format!("not a central configuration: {e}")),
        },
        other => anyhow::bail!(
            "the collector answered {other}: {}",
            String::from_utf8_lossy(&a.body)
        ),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn doc(text: &str) -> CentralConfig {
        CentralConfig {
            version: vigie_wire::config_version(text),
            sources_toml: text.to_owned(),
        }
    }

    #[test]
    fn documents_are_checked_like_agent_toml() {
        let good = "[[sources]]\nname = \"app\"\ntype = \"file\"\ninclude = [\"/var/log/app.log\"]\nformat = \"plain\"\n";
        let sources = check(&doc(good), &["auth".into()]).unwrap();
        assert_eq!(sources[0].name, "app");
        // Another section than [[sources]]: refused.
        let err = check(&doc("[collector]\nurl = \"https://x\"\n"), &[]).unwrap_err();
        assert!(err.contains("unknown field `collector`"), "{err}");
        // A bad source, with where and why.
        let err = check(
            &doc("[[sources]]\nname = \"x\"\ntype = \"bogus\"\nformat = \"plain\"\n"),
            &[],
        )
        .unwrap_err();
        assert!(err.contains("unknown source type \"bogus\""), "{err}");
        // A local name taken.
        let err = check(&doc(good), &["app".into()]).unwrap_err();
        assert!(err.contains("name of a local source"), "{err}");
    }

    #[test]
    fn the_last_good_document_is_saved_privately_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_saved(dir.path()).is_none());
        let d = doc("[[sources]]\nname = \"j\"\ntype = \"journald\"\n");
        save(dir.path(), &d).unwrap();
        assert_eq!(load_saved(dir.path()), Some(d));
        let mode = std::fs::metadata(dir.path().join(SAVED_FILE))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        forget(dir.path()).unwrap();
        assert!(load_saved(dir.path()).is_none());
    }
}

//! `vigie-agent enroll`: obtain a client certificate from the collector.
//!
//! The key is generated here and never leaves the machine: only a CSR and
//! the enrollment token are sent. The answer's certificate carries the agent
//! id the collector assigned. Files written to the data directory:
//! `agent.key` (0600), `agent.pem`, `identity.json`. Renewal (see
//! [`crate::renew`]) replaces the first two through `*.next` files.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::Method;
use serde::{Deserialize, Serialize};
use vigie_wire::{pki, EnrollRequest, EnrollResponse, ErrorBody};

use crate::client::CollectorClient;

/// What enrollment leaves behind, read by `run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub agent_id: String,
    pub collector_url: String,
    pub group: String,
    pub not_after: String,
}

/// Paths of the enrollment files in a data directory.
pub struct IdentityFiles {
    pub key: PathBuf,
    pub cert: PathBuf,
    pub identity: PathBuf,
}

impl IdentityFiles {
    pub fn in_dir(data_dir: &Path) -> Self {
        Self {
            key: data_dir.join("agent.key"),
            cert: data_dir.join("agent.pem"),
            identity: data_dir.join("identity.json"),
        }
    }

    /// Where a renewed key or certificate is staged before it replaces the
    /// current one (see [`IdentityFiles::save_renewed`]).
    fn staged(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".next");
        PathBuf::from(name)
    }

    /// Replaces key and certificate with renewed ones. Both are staged
    /// (`*.next`, complete and synced) before the key, then the certificate,
    /// are renamed over the current ones; a crash in between is finished by
    /// the next [`IdentityFiles::load`], so key and certificate always match.
    pub fn save_renewed(&self, key_pem: &str, cert_pem: &str, not_after: &str) -> Result<()> {
        let (key_next, cert_next) = (Self::staged(&self.key), Self::staged(&self.cert));
        write_atomic(&key_next, key_pem.as_bytes(), 0o600)?;
        write_atomic(&cert_next, cert_pem.as_bytes(), 0o644)?;
        self.finish_swap()?;
        let mut identity: Identity = serde_json::from_slice(
            &std::fs::read(&self.identity)
                .with_context(|| format!("cannot read {}", self.identity.display()))?,
        )
        .with_context(|| format!("{} is corrupt", self.identity.display()))?;
        identity.not_after = not_after.to_owned();
        write_atomic(
            &self.identity,
            &serde_json::to_vec_pretty(&identity)?,
            0o644,
        )
    }

    /// Completes a renewal cut short: a staged certificate means both staged
    /// files were complete, so whatever is still staged is moved in place; a
    /// staged key alone was never matched by a certificate and is removed.
    fn finish_swap(&self) -> Result<()> {
        let (key_next, cert_next) = (Self::staged(&self.key), Self::staged(&self.cert));
        let rename = |from: &Path, to: &Path| {
            std::fs::rename(from, to)
                .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))
        };
        if cert_next.exists() {
            if key_next.exists() {
                rename(&key_next, &self.key)?;
            }
            rename(&cert_next, &self.cert)?;
        } else if key_next.exists() {
            std::fs::remove_file(&key_next)
                .with_context(|| format!("cannot remove {}", key_next.display()))?;
        }
        if let Some(dir) = self.cert.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("cannot sync {}", dir.display()))?;
        }
        Ok(())
    }

    /// Reads the identity, key and certificate, or says how to enroll.
    pub fn load(&self) -> Result<(Identity, String, String)> {
        if self.identity.exists() {
            self.finish_swap()?;
        }
        let identity = std::fs::read(&self.identity).with_context(|| {
            format!(
                "this agent is not enrolled ({} is missing): run `vigie-agent enroll` first",
                self.identity.display()
            )
        })?;
        let identity: Identity = serde_json::from_slice(&identity)
            .with_context(|| format!("{} is corrupt", self.identity.display()))?;
        let key = std::fs::read_to_string(&self.key)
            .with_context(|| format!("cannot read {}", self.key.display()))?;
        let cert = std::fs::read_to_string(&self.cert)
            .with_context(|| format!("cannot read {}", self.cert.display()))?;
        Ok((identity, cert, key))
    }
}

/// Writes `contents` to `path` atomically with `mode`, naming the file on error.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    crate::checkpoint::write_file_atomic(path, contents, mode)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Enrolls this agent.
pub async fn enroll(
    collector_url: &str,
    ca_file: &Path,
    token: &str,
    data_dir: &Path,
    hostname: &str,
) -> Result<Identity> {
    let files = IdentityFiles::in_dir(data_dir);
    if files.identity.exists() {
        bail!(
            "{} already holds an enrollment; remove identity.json, agent.key and agent.pem to enroll again",
            data_dir.display()
        );
    }
    let ca_pem = std::fs::read_to_string(ca_file)
        .with_context(|| format!("cannot read the CA file {}", ca_file.display()))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let (csr_pem, key_pem) = pki::generate_csr().context("generating the agent key")?;
    let client = CollectorClient::new(collector_url, &ca_pem, None, Duration::from_secs(30))?;
    let req = EnrollRequest {
        token: token.trim().to_owned(),
        csr_pem,
        hostname: hostname.to_owned(),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
    };
    let body = serde_json::to_vec(&req)?;
    let answer = client
        .send(
            Method::POST,
            "/v1/enroll",
            &[("content-type", "application/json".to_owned())],
            Bytes::from(body),
        )
        .await
        .with_context(|| format!("cannot reach the collector at {collector_url}"))?;
    if !answer.status.is_success() {
        let why = serde_json::from_slice::<ErrorBody>(&answer.body)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&answer.body).into_owned());
        bail!(
            "enrollment refused by the collector ({}): {why}",
            answer.status
        );
    }
    let resp: EnrollResponse = serde_json::from_slice(&answer.body)
        .context("the collector's answer is not an enrollment")?;
    write_atomic(&files.key, key_pem.as_bytes(), 0o600)?;
    write_atomic(&files.cert, resp.cert_pem.as_bytes(), 0o644)?;
    let identity = Identity {
        agent_id: resp.agent_id,
        collector_url: collector_url.to_owned(),
        group: resp.group,
        not_after: resp.not_after,
    };
    write_atomic(
        &files.identity,
        &serde_json::to_vec_pretty(&identity)?,
        0o644,
    )?;
    Ok(identity)
}

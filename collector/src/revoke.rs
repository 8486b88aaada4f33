//! Revoking agents and publishing the CRL.
//!
//! Revoking an agent marks every certificate issued to it as revoked in the
//! database. Batches, statistics, rule-pack pulls and renewals check that on
//! every request, so the agent's connections are refused at once, even those
//! kept alive. The CRL beside the CA certificate (`pki/crl.pem`) is then
//! rewritten to list every revoked certificate not yet expired, for whatever
//! else checks this CA's certificates (a reverse proxy, an audit). It is also
//! rewritten at every start, so its `nextUpdate` stays ahead.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use vigie_wire::pki::{self, CertifiedKey};

use crate::config::CollectorConfig;
use crate::db::{Db, DbError};

/// Days a CRL stays valid (`nextUpdate`); it is rewritten well before.
pub const CRL_VALID_DAYS: u32 = 30;

/// Why a revocation or the CRL failed.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("no agent {0} is enrolled here")]
    UnknownAgent(String),
    #[error("database: {0}")]
    Db(#[from] DbError),
    #[error("cannot sign the CRL: {0}")]
    Sign(#[from] pki::PkiError),
    #[error("cannot write the CRL {path}: {source:#}")]
    Write {
        path: PathBuf,
        source: anyhow::Error,
    },
}

/// Where the CRL lives: `crl.pem` beside the CA certificate.
pub fn crl_path(cfg: &CollectorConfig) -> PathBuf {
    cfg.tls.ca_file.with_file_name("crl.pem")
}

/// Revokes agent `id` and rewrites the CRL; returns the CRL's path. The
/// revocation stands even if the CRL cannot be written (the error says so).
pub fn revoke(
    cfg: &CollectorConfig,
    db: &Db,
    ca: &CertifiedKey,
    id: &str,
    now: DateTime<Utc>,
) -> Result<PathBuf, RevokeError> {
    db.revoke_agent(id, now).map_err(|e| match e {
        DbError::AgentUnknown(id) => RevokeError::UnknownAgent(id),
        other => RevokeError::Db(other),
    })?;
    tracing::warn!(agent = %id, "agent revoked: its certificates are refused from now on");
    write_crl(cfg, db, ca, now)
}

/// Writes the CRL (every revoked certificate not yet expired), atomically,
/// mode 0644 (a CRL is public). Returns its path.
pub fn write_crl(
    cfg: &CollectorConfig,
    db: &Db,
    ca: &CertifiedKey,
    now: DateTime<Utc>,
) -> Result<PathBuf, RevokeError> {
    let revoked = db.revoked_serials(now)?;
    // Seconds since the epoch: grows with every CRL, as RFC 5280 wants.
    let number = u64::try_from(now.timestamp()).unwrap_or(0);
    let pem = pki::create_crl(ca, &revoked, number, CRL_VALID_DAYS)?;
    let path = crl_path(cfg);
    crate::init::write_replace(&path, pem.as_bytes(), 0o644).map_err(|source| {
        RevokeError::Write {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn revoking_marks_the_agent_and_lists_its_serials_in_the_crl() {
        let dir = tempfile::tempdir().unwrap();
        let out = crate::init::init(&crate::init::InitOptions {
            data_dir: dir.path().join("c"),
            listen: "127.0.0.1:0".parse().unwrap(),
            hostnames: vec!["localhost".into()],
            server_cert_days: 30,
        })
        .unwrap();
        let cfg = CollectorConfig::load(&out.config_path).unwrap();
        let db = Db::open(&cfg.db_path()).unwrap();
        let ca = CertifiedKey {
            cert_pem: std::fs::read_to_string(&cfg.tls.ca_file).unwrap(),
            key_pem: std::fs::read_to_string(&cfg.tls.ca_key_file).unwrap(),
        };
        let now = Utc::now();
        let (csr, _) = pki::generate_csr().unwrap();
        let first = pki::sign_csr(&ca, &csr, "agt_a", 30).unwrap();
        db.register_agent(
            "agt_a",
            "host-a",
            "default",
            &first.serial_hex,
            first.not_after,
            now,
        )
        .unwrap();
        let renewed = pki::sign_csr(&ca, &csr, "agt_a", 30).unwrap();
        db.renew_agent_cert("agt_a", &renewed.serial_hex, renewed.not_after, now)
            .unwrap();
        assert!(!db.is_serial_revoked(&first.serial_hex).unwrap());

        assert!(matches!(
            revoke(&cfg, &db, &ca, "agt_nobody", now),
            Err(RevokeError::UnknownAgent(_))
        ));
        let path = revoke(&cfg, &db, &ca, "agt_a", now).unwrap();
        assert_eq!(path, dir.path().join("c/pki/crl.pem"));
        // Both the renewed certificate and the one it replaced.
        assert!(db.is_serial_revoked(&first.serial_hex).unwrap());
        assert!(db.is_serial_revoked(&renewed.serial_hex).unwrap());
        assert!(db.agent("agt_a").unwrap().unwrap().revoked);
        let listed: Vec<String> = db
            .revoked_serials(now)
            .unwrap()
            .into_iter()
            .map(|r| r.serial_hex)
            .collect();
        assert_eq!(listed.len(), 2);
        assert!(listed.contains(&first.serial_hex) && listed.contains(&renewed.serial_hex));
        let crl = std::fs::read_to_string(&path).unwrap();
        assert!(crl.starts_with("-----BEGIN X509 CRL-----"), "{crl}");
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o644
        );
    }
}

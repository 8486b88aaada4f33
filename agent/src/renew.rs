//! Client-certificate renewal.
//!
//! The running agent renews its certificate at two thirds of its lifetime
//! (or `renew_before_secs` before it ends, when configured and shorter than
//! the lifetime): it generates a
//! new key, sends a CSR to `POST /v1/renew` over its current mTLS identity,
//! stores the new key and certificate (see
//! [`crate::enroll::IdentityFiles::save_renewed`]) and switches every
//! connection to them. A failed attempt is logged and retried, from one
//! minute up to an hour apart. An expired certificate cannot renew itself:
//! the log says to enroll again.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::Method;
use tokio::sync::watch;
use vigie_wire::{pki, ErrorBody, RenewRequest, RenewResponse, RENEW_PATH};

use crate::client::CollectorClient;
use crate::enroll::IdentityFiles;

/// First retry delay after a failed renewal (doubles up to [`MAX_RETRY`]).
const FIRST_RETRY: Duration = Duration::from_secs(60);
const MAX_RETRY: Duration = Duration::from_secs(3600);
/// Longest single sleep, so a clock change is noticed within the hour.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// When a certificate valid from `not_before` to `not_after` is renewed:
/// `renew_before` ahead of its end when given and shorter than its lifetime,
/// else at two thirds of its lifetime (a `renew_before` as long as the
/// certificates would renew each new one at once, forever). The flag says
/// whether `renew_before` was set aside.
pub fn renew_at(
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    renew_before: Option<Duration>,
) -> (DateTime<Utc>, bool) {
    let lifetime = not_after - not_before;
    let two_thirds = not_before + lifetime * 2 / 3;
    match renew_before.map(chrono::Duration::from_std) {
        None => (two_thirds, false),
        Some(Ok(before)) if before < lifetime => (not_after - before, false),
        Some(_) => (two_thirds, true),
    }
}

/// Renews once: new key, CSR, `POST /v1/renew`, files replaced, `client`
/// switched. Returns the new certificate's end of validity.
pub async fn renew_once(
    client: &CollectorClient,
    files: &IdentityFiles,
    agent_id: &str,
) -> Result<DateTime<Utc>> {
    let (csr_pem, key_pem) = pki::generate_csr().context("generating the new key")?;
    let body = serde_json::to_vec(&RenewRequest { csr_pem })?;
    let answer = client
        .send(
            Method::POST,
            RENEW_PATH,
            &[("content-type", "application/json".to_owned())],
            Bytes::from(body),
        )
        .await?;
    if !answer.status.is_success() {
        let why = serde_json::from_slice::<ErrorBody>(&answer.body)
            .map(|e| e.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&answer.body).into_owned());
        bail!(
            "the collector refused the renewal ({}): {why}",
            answer.status
        );
    }
    let resp: RenewResponse =
        serde_json::from_slice(&answer.body).context("the collector's answer is not a renewal")?;
    let certs =
        pki::parse_cert_pem(&resp.cert_pem).context("the renewed certificate cannot be read")?;
    let leaf = certs.first().context("the collector sent no certificate")?;
    let (id, _) =
        pki::agent_identity(leaf.as_ref()).context("the renewed certificate names no agent")?;
    if id != agent_id {
        bail!("the renewed certificate names agent {id}, not {agent_id}: not used");
    }
    let not_after = pki::cert_not_after(&resp.cert_pem)?;
    // A certificate that does not go with the new key fails here, before any file changes.
    client.set_identity(&resp.cert_pem, &key_pem)?;
    files.save_renewed(&key_pem, &resp.cert_pem, &resp.not_after)?;
    Ok(not_after)
}

/// Renews the certificate whenever it is due, until `stop` turns true.
pub async fn run(
    client: CollectorClient,
    files: IdentityFiles,
    agent_id: String,
    renew_before: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) {
    let mut retry = FIRST_RETRY;
    let mut warned = false;
    loop {
        let wait = match current_validity(&files) {
            Ok((not_before, not_after)) => {
                let now = Utc::now();
                let (due, set_aside) = renew_at(not_before, not_after, renew_before);
                if set_aside && !warned {
                    tracing::warn!(renew_before_secs = renew_before.map_or(0, |d| d.as_secs()), lifetime_secs = (not_after - not_before).num_seconds(), "renew_before_secs is not shorter than the certificate's lifetime: renewing at two thirds of it instead");
                    warned = true;
                }
                if now >= not_after {
                    tracing::error!(not_after = %not_after.to_rfc3339(), "the agent's certificate has expired and cannot be renewed: enroll the agent again (vigie-agent enroll)");
                    MAX_RETRY
                } else if now < due {
                    (due - now).to_std().unwrap_or_default().min(MAX_SLEEP)
                } else {
                    match renew_once(&client, &files, &agent_id).await {
                        Ok(new_end) => {
                            tracing::info!(agent = %agent_id, not_after = %new_end.to_rfc3339(), "client certificate renewed");
                            retry = FIRST_RETRY;
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), retry_in_secs = retry.as_secs(), not_after = %not_after.to_rfc3339(), "certificate renewal failed");
                            let wait = retry;
                            retry = (retry * 2).min(MAX_RETRY);
                            wait
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot read the agent's certificate for renewal");
                MAX_RETRY
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

fn current_validity(files: &IdentityFiles) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let pem = std::fs::read_to_string(&files.cert)
        .with_context(|| format!("cannot read {}", files.cert.display()))?;
    Ok(pki::cert_validity(&pem)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::TimeZone;

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_lifetime_or_renew_before_its_end() {
        let nb = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let na = nb + chrono::Duration::days(30);
        let two_thirds = nb + chrono::Duration::days(20);
        assert_eq!(renew_at(nb, na, None), (two_thirds, false));
        let week = Duration::from_secs(7 * 86_400);
        assert_eq!(
            renew_at(nb, na, Some(week)),
            (na - chrono::Duration::days(7), false)
        );
        // As long as the lifetime: every new certificate would be due at once.
        let month = Duration::from_secs(30 * 86_400);
        assert_eq!(renew_at(nb, na, Some(month)), (two_thirds, true));
    }

    #[test]
    fn a_renewal_cut_short_is_finished_at_load_and_a_lone_staged_key_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let files = IdentityFiles::in_dir(dir.path());
        std::fs::write(
            &files.identity,
            r#"{"agent_id":"agt_1","collector_url":"https://c:8443","group":"default","not_after":"old"}"#,
        )
        .unwrap();
        std::fs::write(&files.key, "old key").unwrap();
        std::fs::write(&files.cert, "old cert").unwrap();

        // Crash after the key moved, before the certificate did.
        std::fs::write(&files.key, "new key").unwrap();
        std::fs::write(dir.path().join("agent.pem.next"), "new cert").unwrap();
        let (_, cert, key) = files.load().unwrap();
        assert_eq!((cert.as_str(), key.as_str()), ("new cert", "new key"));
        assert!(!dir.path().join("agent.pem.next").exists());

        // Crash while the certificate was being staged: the old pair stays.
        std::fs::write(dir.path().join("agent.key.next"), "newer key").unwrap();
        let (_, cert, key) = files.load().unwrap();
        assert_eq!((cert.as_str(), key.as_str()), ("new cert", "new key"));
        assert!(!dir.path().join("agent.key.next").exists());

        // A full renewal.
        files
            .save_renewed("k3", "c3", "2030-01-01T00:00:00+00:00")
            .unwrap();
        let (identity, cert, key) = files.load().unwrap();
        assert_eq!((cert.as_str(), key.as_str()), ("c3", "k3"));
        assert_eq!(identity.not_after, "2030-01-01T00:00:00+00:00");
        let mode = std::fs::metadata(&files.key).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }
}

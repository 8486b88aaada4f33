//! PKI and mTLS tests: real TLS handshakes (tokio-rustls over an in-memory
//! duplex pipe) between configurations built by `vigie_wire::pki`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateSigningRequestDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use vigie_wire::pki::{
    agent_identity, cert_not_after, client_tls_config, create_ca, generate_csr, issue_server_cert,
    parse_cert_pem, server_tls_config, sign_csr, CertifiedKey, PkiError,
};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Bounds every handshake so a hang fails the test instead of blocking it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

struct Setup {
    ca: CertifiedKey,
    server: CertifiedKey,
}

fn setup() -> Setup {
    let ca = create_ca("test").unwrap();
    let server =
        issue_server_cert(&ca, &["localhost".to_string(), "127.0.0.1".to_string()], 30).unwrap();
    Setup { ca, server }
}

/// An agent certificate and key for `agent_id`, enrolled through a CSR.
fn enroll(ca: &CertifiedKey, agent_id: &str) -> (CertifiedKey, String) {
    let (csr, key_pem) = generate_csr().unwrap();
    let signed = sign_csr(ca, &csr, agent_id, 7).unwrap();
    (
        CertifiedKey {
            cert_pem: signed.cert_pem,
            key_pem,
        },
        signed.serial_hex,
    )
}

/// What the server side saw of a connection.
#[derive(Debug)]
struct ServerView {
    peer: Option<(String, String)>,
    alpn: Option<Vec<u8>>,
}

/// Runs one handshake plus a one-byte echo; returns the server's and the
/// client's outcome.
async fn handshake(
    server_cfg: rustls::ServerConfig,
    client_cfg: rustls::ClientConfig,
    server_name: &str,
) -> (Result<ServerView, String>, Result<(), String>) {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(Arc::new(server_cfg));
    let connector = TlsConnector::from(Arc::new(client_cfg));
    let name = ServerName::try_from(server_name.to_string()).unwrap();

    let server = async move {
        let mut tls = acceptor
            .accept(server_io)
            .await
            .map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        let peer = match conn.peer_certificates() {
            Some(certs) => Some(agent_identity(certs[0].as_ref()).map_err(|e| e.to_string())?),
            None => None,
        };
        let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        tls.write_all(&byte).await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        Ok(ServerView { peer, alpn })
    };
    let client = async move {
        let mut tls = connector
            .connect(name, client_io)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"x").await.map_err(|e| e.to_string())?;
        tls.flush().await.map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        assert_eq!(&byte, b"x");
        Ok(())
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async { tokio::join!(server, client) })
        .await
        .expect("handshake did not finish")
}

#[tokio::test]
async fn agent_with_ca_signed_cert_is_identified_by_server() {
    let s = setup();
    let (agent, serial) = enroll(&s.ca, "agent-42");
    let server_cfg =
        server_tls_config(&s.server.cert_pem, &s.server.key_pem, &s.ca.cert_pem).unwrap();
    let client_cfg =
        client_tls_config(&s.ca.cert_pem, Some((&agent.cert_pem, &agent.key_pem))).unwrap();

    let (server, client) = handshake(server_cfg, client_cfg, "localhost").await;
    client.unwrap();
    let view = server.unwrap();
    assert_eq!(view.peer, Some(("agent-42".to_string(), serial)));
    assert_eq!(view.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn client_without_cert_connects_and_server_sees_no_peer() {
    let s = setup();
    let server_cfg =
        server_tls_config(&s.server.cert_pem, &s.server.key_pem, &s.ca.cert_pem).unwrap();
    let client_cfg = client_tls_config(&s.ca.cert_pem, None).unwrap();

    let (server, client) = handshake(server_cfg, client_cfg, "127.0.0.1").await;
    client.unwrap();
    assert_eq!(server.unwrap().peer, None);
}

#[tokio::test]
async fn client_cert_from_another_ca_fails_the_handshake() {
    let s = setup();
    let rogue_ca = create_ca("rogue").unwrap();
    let (rogue_agent, _) = enroll(&rogue_ca, "agent-42");
    let server_cfg =
        server_tls_config(&s.server.cert_pem, &s.server.key_pem, &s.ca.cert_pem).unwrap();
    let client_cfg = client_tls_config(
        &s.ca.cert_pem,
        Some((&rogue_agent.cert_pem, &rogue_agent.key_pem)),
    )
    .unwrap();

    let (server, client) = handshake(server_cfg, client_cfg, "localhost").await;
    let err = server.expect_err("server accepted a foreign client certificate");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(
        client.is_err(),
        "client exchanged data with a server that rejected it"
    );
}

#[tokio::test]
async fn client_trusting_another_ca_refuses_the_server() {
    let s = setup();
    let other_ca = create_ca("other").unwrap();
    let server_cfg =
        server_tls_config(&s.server.cert_pem, &s.server.key_pem, &s.ca.cert_pem).unwrap();
    let client_cfg = client_tls_config(&other_ca.cert_pem, None).unwrap();

    let (server, client) = handshake(server_cfg, client_cfg, "localhost").await;
    let err = client.expect_err("client accepted a server from an untrusted CA");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(server.is_err());
}

#[tokio::test]
async fn client_refuses_server_cert_for_another_name() {
    let s = setup();
    let server_cfg =
        server_tls_config(&s.server.cert_pem, &s.server.key_pem, &s.ca.cert_pem).unwrap();
    let client_cfg = client_tls_config(&s.ca.cert_pem, None).unwrap();

    let (_, client) = handshake(server_cfg, client_cfg, "collector.example.com").await;
    assert!(client.is_err());
}

#[test]
fn sign_csr_ignores_the_requested_identity() {
    let ca = create_ca("test").unwrap();
    // A CSR asking to be someone else, with a DNS SAN and another agent URI.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example.com".to_string()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "admin");
    params.subject_alt_names.push(rcgen::SanType::URI(
        "vigie://agent/victim".try_into().unwrap(),
    ));
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();

    let signed = sign_csr(&ca, &csr, "agent-7", 7).unwrap();
    let der = &parse_cert_pem(&signed.cert_pem).unwrap()[0];
    let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
    let cns: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|cn| cn.as_str().unwrap().to_string())
        .collect();
    assert_eq!(cns, ["agent-7"]);
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::URI(u) => format!("uri:{u}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(sans, ["uri:vigie://agent/agent-7"]);
    assert!(!cert.is_ca());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    // The certificate still carries the CSR's key.
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    assert_eq!(
        agent_identity(der.as_ref()).unwrap(),
        ("agent-7".to_string(), signed.serial_hex)
    );
}

#[test]
fn tampered_csr_is_rejected() {
    let ca = create_ca("test").unwrap();
    let (csr, _) = generate_csr().unwrap();
    let mut der = CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec();
    // Rewrite the subject CN "vigie-agent" into "vigie-admin": still a
    // well-formed request, but no longer the one that was signed.
    let at = der
        .windows(b"vigie-agent".len())
        .position(|w| w == b"vigie-agent")
        .unwrap();
    der[at..at + 11].copy_from_slice(b"vigie-admin");
    let tampered = to_pem("CERTIFICATE REQUEST", &der);

    let err = sign_csr(&ca, &tampered, "agent-1", 7).unwrap_err();
    assert!(matches!(err, PkiError::CsrSignature), "{err:?}");
    assert_eq!(err.to_string(), "CSR signature is invalid");
    // The untouched request is fine.
    sign_csr(&ca, &csr, "agent-1", 7).unwrap();
}

#[test]
fn identity_round_trip() {
    let ca = create_ca("test").unwrap();
    let (csr, _) = generate_csr().unwrap();
    let signed = sign_csr(&ca, &csr, "host-01.example_a", 30).unwrap();
    let der = &parse_cert_pem(&signed.cert_pem).unwrap()[0];
    let (id, serial) = agent_identity(der.as_ref()).unwrap();
    assert_eq!(id, "host-01.example_a");
    assert_eq!(serial, signed.serial_hex);
    assert_eq!(serial.len(), 32);
    assert_eq!(cert_not_after(&signed.cert_pem).unwrap(), signed.not_after);
    let days = (signed.not_after - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((29.9..=30.1).contains(&days), "{days}");
    // Two certificates never share a serial.
    let again = sign_csr(&ca, &csr, "host-01.example_a", 30).unwrap();
    assert_ne!(again.serial_hex, signed.serial_hex);
}

#[test]
fn identity_falls_back_to_cn() {
    // The server certificate has no vigie:// URI; its CN is the first name.
    let s = setup();
    let der = &parse_cert_pem(&s.server.cert_pem).unwrap()[0];
    let (id, _) = agent_identity(der.as_ref()).unwrap();
    assert_eq!(id, "localhost");
}

#[test]
fn ca_is_a_long_lived_constrained_ca() {
    let ca = create_ca("prod").unwrap();
    let der = &parse_cert_pem(&ca.cert_pem).unwrap()[0];
    let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
    let cn = cert.subject().iter_common_name().next().unwrap();
    assert_eq!(cn.as_str().unwrap(), "Vigie CA prod");
    assert!(cert.is_ca());
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    let days = (cert_not_after(&ca.cert_pem).unwrap() - chrono::Utc::now()).num_days();
    assert!((3650..=3653).contains(&days), "{days}");
}

#[test]
fn bad_inputs_are_explained() {
    let ca = create_ca("test").unwrap();
    let other = create_ca("other").unwrap();
    let (csr, _) = generate_csr().unwrap();

    let no_key = CertifiedKey {
        cert_pem: ca.cert_pem.clone(),
        key_pem: "not a key".to_string(),
    };
    let err = sign_csr(&no_key, &csr, "a", 1).unwrap_err();
    assert_eq!(err.to_string(), "CA key is not a PEM private key");

    let mismatched = CertifiedKey {
        cert_pem: ca.cert_pem.clone(),
        key_pem: other.key_pem.clone(),
    };
    assert!(matches!(
        sign_csr(&mismatched, &csr, "a", 1),
        Err(PkiError::CaKeyMismatch)
    ));

    assert!(matches!(
        sign_csr(&ca, "garbage", "a", 1),
        Err(PkiError::CsrNotPem)
    ));
    assert!(matches!(
        sign_csr(&ca, &csr, "a/../b", 1),
        Err(PkiError::InvalidAgentId(_))
    ));
    assert!(matches!(
        sign_csr(&ca, &csr, "", 1),
        Err(PkiError::InvalidAgentId(_))
    ));
    assert!(matches!(
        sign_csr(&ca, &csr, "a", 0),
        Err(PkiError::InvalidValidity(0))
    ));
    assert!(matches!(
        issue_server_cert(&ca, &[], 1),
        Err(PkiError::NoHostnames)
    ));
    assert!(matches!(
        issue_server_cert(&ca, &["bad name!".to_string()], 1),
        Err(PkiError::InvalidHostname(_))
    ));
    assert!(matches!(
        parse_cert_pem("nothing here"),
        Err(PkiError::CertNotPem { .. })
    ));
    let err = server_tls_config(&ca.cert_pem, "nope", &ca.cert_pem).unwrap_err();
    assert_eq!(err.to_string(), "server key is not a PEM private key");
    // A key that does not belong to the certificate is refused up front.
    let s = setup();
    assert!(server_tls_config(&s.server.cert_pem, &other.key_pem, &s.ca.cert_pem).is_err());
}

/// Minimal PEM encoder (standard base64, 64-column lines) for the tamper test.
fn to_pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The CRL is valid for rustls: a verifier loaded with it refuses the
/// revoked agent's certificate and still accepts another agent's.
#[test]
fn crl_lists_revoked_serials_and_rustls_refuses_them() {
    use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
    use vigie_wire::pki::{create_crl, RevokedSerial};

    let Setup { ca, .. } = setup();
    let (revoked, revoked_serial) = enroll(&ca, "agt_revoked");
    let (kept, _) = enroll(&ca, "agt_kept");
    let crl_pem = create_crl(
        &ca,
        &[RevokedSerial {
            serial_hex: revoked_serial,
            revoked_at: chrono::Utc::now(),
        }],
        1,
        7,
    )
    .unwrap();
    assert!(crl_pem.starts_with("-----BEGIN X509 CRL-----"));
    let crl = CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for der in parse_cert_pem(&ca.cert_pem).unwrap() {
        roots.add(der).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .with_crls([crl])
    .build()
    .unwrap();
    let leaf = |c: &CertifiedKey| -> CertificateDer<'static> {
        parse_cert_pem(&c.cert_pem).unwrap().remove(0)
    };
    let now = UnixTime::now();
    let refused = verifier.verify_client_cert(&leaf(&revoked), &[], now);
    assert!(
        matches!(
            refused,
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked
            ))
        ),
        "{refused:?}"
    );
    verifier.verify_client_cert(&leaf(&kept), &[], now).unwrap();
}

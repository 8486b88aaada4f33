//! PKI and TLS configuration for agent mTLS.
//!
//! The collector owns a small private CA (ECDSA P-256, path length 0: it signs
//! leaf certificates only). It issues its own server certificate from it and,
//! at enrollment, signs the CSR an agent sends. The identity written into an
//! agent certificate is chosen by the collector, never by the agent: the CSR is
//! only a proof of possession of the public key, and its subject, SANs and
//! extensions are ignored. An agent certificate carries `CN = <agent id>` and a
//! URI SAN `vigie://agent/<agent id>`, EKU clientAuth, and a random positive
//! 128-bit serial whose lowercase hex (no leading zero bytes) is the serial
//! string used everywhere else (revocation table, logs).
//!
//! Everything is PEM text in and out. TLS configurations use rustls with the
//! *ring* provider passed explicitly, so no process-wide default provider has
//! to be installed. The server accepts connections without a client
//! certificate (enrollment and bearer-token API calls), but a presented client
//! certificate must chain to the agent CA or the handshake fails. Clients trust
//! only the given CA, never the system roots.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, SubjectPublicKeyInfo,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

/// Prefix of the URI SAN that carries an agent's identity.
pub const AGENT_URI_PREFIX: &str = "vigie://agent/";

/// Longest agent id accepted by [`sign_csr`].
pub const MAX_AGENT_ID_LEN: usize = 128;

/// Validity of a CA created by [`create_ca`], in days (10 years, leap days included).
pub const CA_VALIDITY_DAYS: u32 = 3653;

/// How far back `not_before` is set on new certificates, so that a peer whose
/// clock is a little behind still accepts them.
const BACKDATE_SECS: i64 = 3600;

/// Subject CN placed in agent CSRs; the collector ignores it.
const CSR_PLACEHOLDER_CN: &str = "vigie-agent";

/// The only ALPN protocol spoken by Vigie's listener.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// What went wrong while creating, signing or loading certificates and keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The text given as a private key holds no PEM private key block.
    #[error("{what} is not a PEM private key")]
    KeyNotPem {
        /// Which key ("CA key", "server key", "client key").
        what: &'static str,
    },
    /// The private key parsed as PEM but is not a key type Vigie can use.
    #[error("{what} is not a usable private key: {reason}")]
    KeyUnusable {
        /// Which key.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The CA private key does not belong to the CA certificate.
    #[error("the CA key does not match the CA certificate (wrong key file?)")]
    CaKeyMismatch,
    /// The text given as a certificate holds no PEM certificate block.
    #[error("{what} contains no PEM certificate")]
    CertNotPem {
        /// Which certificate ("CA certificate", "server certificate", ...).
        what: &'static str,
    },
    /// A certificate could not be parsed as X.509.
    #[error("{what} is not a valid X.509 certificate: {reason}")]
    CertInvalid {
        /// Which certificate.
        what: &'static str,
        /// Parser message.
        reason: String,
    },
    /// The CSR text holds no PEM `CERTIFICATE REQUEST` block.
    #[error("CSR is not a PEM certificate request")]
    CsrNotPem,
    /// The CSR is not a well-formed PKCS#10 request.
    #[error("CSR is not a valid PKCS#10 certificate request: {0}")]
    CsrInvalid(String),
    /// The CSR's self-signature does not verify: it was altered, or its
    /// sender does not hold the private key.
    #[error("CSR signature is invalid")]
    CsrSignature,
    /// The CSR's public key is of a type that cannot be certified.
    #[error("CSR public key type is not supported (use ECDSA P-256)")]
    CsrKeyUnsupported,
    /// A server hostname is neither an IP address nor a valid DNS name.
    #[error("`{0}` is neither an IP address nor a valid DNS name")]
    InvalidHostname(String),
    /// A server certificate needs at least one name.
    #[error("a server certificate needs at least one hostname or IP address")]
    NoHostnames,
    /// The agent id cannot be put in a certificate.
    #[error("invalid agent id `{0}`: use 1 to 128 characters among A-Z a-z 0-9 . _ -")]
    InvalidAgentId(String),
    /// Zero or absurd validity.
    #[error("invalid certificate validity of {0} days (must be between 1 and 36500)")]
    InvalidValidity(u32),
    /// The client certificate names no agent (no `vigie://agent/` URI, no CN).
    #[error("client certificate carries no Vigie agent identity")]
    NoAgentIdentity,
    /// Key generation or certificate signing failed.
    #[error("could not generate the key or certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificates or keys for a TLS configuration.
    #[error("invalid TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The client certificate verifier could not be built (e.g. empty CA).
    #[error("invalid client CA for TLS: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CertifiedKey {
    /// The certificate, PEM (`-----BEGIN CERTIFICATE-----`).
    pub cert_pem: String,
    /// The PKCS#8 private key, PEM (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("CertifiedKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// An agent certificate signed by [`sign_csr`].
#[derive(Debug, Clone)]
pub struct SignedCert {
    /// The agent certificate, PEM (leaf only; the CA is distributed separately).
    pub cert_pem: String,
    /// The certificate serial, lowercase hex without leading zero bytes.
    pub serial_hex: String,
    /// End of validity (whole seconds, as written in the certificate).
    pub not_after: DateTime<Utc>,
}

/// Creates a new self-signed CA (ECDSA P-256), `CN = "Vigie CA <name>"`,
/// valid 10 years, key usages certificate and CRL signing, basic constraints
/// CA with path length 0.
pub fn create_ca(name: &str) -> Result<CertifiedKey, PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let cn = format!("Vigie CA {}", name.trim());
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, cn.trim_end());
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Vigie");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial().0);
    set_validity(&mut params, CA_VALIDITY_DAYS)?;
    let cert = params.self_signed(&key)?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a server certificate signed by `ca` for `hostnames` (each entry that
/// parses as an IP address becomes an IP SAN, any other a DNS SAN; the first
/// one is also the CN), valid `validity_days`, EKU serverAuth.
pub fn issue_server_cert(
    ca: &CertifiedKey,
    hostnames: &[String],
    validity_days: u32,
) -> Result<CertifiedKey, PkiError> {
    let first = hostnames.first().ok_or(PkiError::NoHostnames)?;
    let mut sans = Vec::with_capacity(hostnames.len());
    for name in hostnames {
        let name = name.trim();
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                if rustls_pki_types::DnsName::try_from(name).is_err() {
                    return Err(PkiError::InvalidHostname(name.to_string()));
                }
                let ia5 = name
                    .try_into()
                    .map_err(|_| PkiError::InvalidHostname(name.to_string()))?;
                SanType::DnsName(ia5)
            }
        };
        sans.push(san);
    }
    let issuer = load_issuer(ca)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = leaf_params(first.trim(), validity_days)?;
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Agent side: generates a fresh ECDSA P-256 key pair and a PEM CSR for it.
/// The subject is a placeholder; the collector assigns the identity.
/// Returns `(csr_pem, key_pem)`.
pub fn generate_csr() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CSR_PLACEHOLDER_CN);
    let csr = params.serialize_request(&key)?;
    Ok((csr.pem()?, key.serialize_pem()))
}

/// Collector side: verifies the CSR's signature and signs its public key,
/// IGNORING the subject, SANs and extensions it asks for. The certificate gets
/// `CN = agent_id`, URI SAN `vigie://agent/<agent_id>`, EKU clientAuth, a
/// random serial and `validity_days` of validity.
pub fn sign_csr(
    ca: &CertifiedKey,
    csr_pem: &str,
    agent_id: &str,
    validity_days: u32,
) -> Result<SignedCert, PkiError> {
    validate_agent_id(agent_id)?;
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|_| PkiError::CsrNotPem)?;
    let (rest, csr) = X509CertificationRequest::from_der(der.as_ref())
        .map_err(|e| PkiError::CsrInvalid(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PkiError::CsrInvalid(
            "trailing bytes after the request".to_string(),
        ));
    }
    csr.verify_signature().map_err(|_| PkiError::CsrSignature)?;
    let public_key = SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|_| PkiError::CsrKeyUnsupported)?;

    let issuer = load_issuer(ca)?;
    let mut params = leaf_params(agent_id, validity_days)?;
    let uri = format!("{AGENT_URI_PREFIX}{agent_id}");
    let uri = uri
        .try_into()
        .map_err(|_| PkiError::InvalidAgentId(agent_id.to_string()))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let (serial, serial_hex) = random_serial();
    params.serial_number = Some(serial);
    let not_after = set_validity(&mut params, validity_days)?;
    let cert = params.signed_by(&public_key, &issuer)?;
    Ok(SignedCert {
        cert_pem: cert.pem(),
        serial_hex,
        not_after,
    })
}

/// Reads the agent id (from the `vigie://agent/` URI SAN, else the CN) and the
/// serial (lowercase hex, no leading zero bytes) of a DER client certificate.
pub fn agent_identity(cert_der: &[u8]) -> Result<(String, String), PkiError> {
    let cert = parse_x509(cert_der, "client certificate")?;
    let serial_hex = serial_hex_of(&cert);
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if let Some(id) = uri.strip_prefix(AGENT_URI_PREFIX) {
                    if !id.is_empty() {
                        return Ok((id.to_string(), serial_hex));
                    }
                }
            }
        }
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .ok_or(PkiError::NoAgentIdentity)?;
    Ok((cn.to_string(), serial_hex))
}

/// Server TLS configuration: `cert_pem` (leaf first, optionally followed by
/// its chain) and `key_pem`; client certificates are optional, but one that is
/// presented must chain to `client_ca_pem` or the handshake fails. ALPN
/// `http/1.1`; ring provider, safe default protocol versions (TLS 1.2, 1.3).
pub fn server_tls_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<rustls::ServerConfig, PkiError> {
    let provider = ring_provider();
    let certs = parse_certs(cert_pem, "server certificate")?;
    let key = parse_private_key(key_pem, "server key")?;
    let roots = root_store(client_ca_pem, "client CA certificate")?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(config)
}

/// Client TLS configuration trusting ONLY `ca_pem` (no system roots), with an
/// optional client certificate `(cert_pem, key_pem)`. ALPN `http/1.1`.
pub fn client_tls_config(
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> Result<rustls::ClientConfig, PkiError> {
    let provider = ring_provider();
    let roots = root_store(ca_pem, "CA certificate")?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match client {
        Some((cert_pem, key_pem)) => {
            let certs = parse_certs(cert_pem, "client certificate")?;
            let key = parse_private_key(key_pem, "client key")?;
            builder.with_client_auth_cert(certs, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(config)
}

/// Parses every certificate of a PEM text (other PEM blocks are skipped).
/// Fails when there is none.
pub fn parse_cert_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    parse_certs(pem, "certificate")
}

/// The end of validity of the first certificate in `cert_pem`.
pub fn cert_not_after(cert_pem: &str) -> Result<DateTime<Utc>, PkiError> {
    Ok(cert_validity(cert_pem)?.1)
}

/// The validity (`not_before`, `not_after`) of the first certificate in `cert_pem`.
pub fn cert_validity(cert_pem: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), PkiError> {
    let certs = parse_certs(cert_pem, "certificate")?;
    let der = certs.first().ok_or(PkiError::CertNotPem {
        what: "certificate",
    })?;
    let cert = parse_x509(der.as_ref(), "certificate")?;
    let time = |ts: i64| {
        Utc.timestamp_opt(ts, 0)
            .single()
            .ok_or_else(|| PkiError::CertInvalid {
                what: "certificate",
                reason: "validity out of range".to_string(),
            })
    };
    Ok((
        time(cert.validity().not_before.timestamp())?,
        time(cert.validity().not_after.timestamp())?,
    ))
}

/// A revoked certificate for [`create_crl`]: its serial (hex, as everywhere
/// else) and when it was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSerial {
    pub serial_hex: String,
    pub revoked_at: DateTime<Utc>,
}

/// A CRL (PEM) signed by `ca`, listing `revoked`, numbered `number` (which
/// must grow with every new CRL), valid `next_update_days`.
pub fn create_crl(
    ca: &CertifiedKey,
    revoked: &[RevokedSerial],
    number: u64,
    next_update_days: u32,
) -> Result<String, PkiError> {
    let issuer = load_issuer(ca)?;
    let asn1 = |t: i64| {
        ASN1Time::from_timestamp(t)
            .map(|t| t.to_datetime())
            .map_err(|_| PkiError::InvalidValidity(next_update_days))
    };
    let mut revoked_certs = Vec::with_capacity(revoked.len());
    for r in revoked {
        let bytes = hex::decode(&r.serial_hex).map_err(|_| PkiError::CertInvalid {
            what: "revoked serial",
            reason: format!("{:?} is not hexadecimal", r.serial_hex),
        })?;
        revoked_certs.push(rcgen::RevokedCertParams {
            serial_number: SerialNumber::from_slice(&bytes),
            revocation_time: asn1(r.revoked_at.timestamp())?,
            reason_code: None,
            invalidity_date: None,
        });
    }
    let now = Utc::now().timestamp();
    let params = rcgen::CertificateRevocationListParams {
        this_update: asn1(now - BACKDATE_SECS)?,
        next_update: asn1(now + Duration::days(i64::from(next_update_days.max(1))).num_seconds())?,
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(&issuer)?.pem()?)
}

/// The ring crypto provider, passed explicitly to every rustls builder.
fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn parse_certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::CertInvalid {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::CertNotPem { what });
    }
    for der in &certs {
        parse_x509(der.as_ref(), what)?;
    }
    Ok(certs)
}

fn parse_private_key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| PkiError::KeyNotPem { what })
}

fn root_store(pem: &str, what: &'static str) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    for der in parse_certs(pem, what)? {
        roots.add(der)?;
    }
    Ok(roots)
}

fn parse_x509<'a>(der: &'a [u8], what: &'static str) -> Result<X509Certificate<'a>, PkiError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| PkiError::CertInvalid {
        what,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(PkiError::CertInvalid {
            what,
            reason: "trailing bytes after the certificate".to_string(),
        });
    }
    Ok(cert)
}

/// Loads the CA as an rcgen issuer, checking that key and certificate match.
fn load_issuer(ca: &CertifiedKey) -> Result<Issuer<'static, KeyPair>, PkiError> {
    const WHAT_KEY: &str = "CA key";
    const WHAT_CERT: &str = "CA certificate";
    parse_private_key(&ca.key_pem, WHAT_KEY)?;
    let key = KeyPair::from_pem(&ca.key_pem).map_err(|e| PkiError::KeyUnusable {
        what: WHAT_KEY,
        reason: e.to_string(),
    })?;
    let certs = parse_certs(&ca.cert_pem, WHAT_CERT)?;
    let der = certs
        .first()
        .ok_or(PkiError::CertNotPem { what: WHAT_CERT })?;
    let cert = parse_x509(der.as_ref(), WHAT_CERT)?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(PkiError::CaKeyMismatch);
    }
    Issuer::from_ca_cert_der(der, key).map_err(|e| PkiError::CertInvalid {
        what: WHAT_CERT,
        reason: e.to_string(),
    })
}

/// Parameters shared by leaf certificates: CN, digital signature key usage,
/// authority key identifier, random serial and validity.
fn leaf_params(cn: &str, validity_days: u32) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial().0);
    set_validity(&mut params, validity_days)?;
    Ok(params)
}

/// Sets `not_before` (now minus one hour) and `not_after` (now plus
/// `validity_days`), both in whole seconds; returns `not_after`.
fn set_validity(
    params: &mut CertificateParams,
    validity_days: u32,
) -> Result<DateTime<Utc>, PkiError> {
    if validity_days == 0 || validity_days > 36_500 {
        return Err(PkiError::InvalidValidity(validity_days));
    }
    let now = Utc::now().timestamp();
    let not_before = now - BACKDATE_SECS;
    let not_after = now + Duration::days(i64::from(validity_days)).num_seconds();
    let invalid = |_| PkiError::InvalidValidity(validity_days);
    params.not_before = ASN1Time::from_timestamp(not_before)
        .map_err(invalid)?
        .to_datetime();
    params.not_after = ASN1Time::from_timestamp(not_after)
        .map_err(invalid)?
        .to_datetime();
    Utc.timestamp_opt(not_after, 0)
        .single()
        .ok_or(PkiError::InvalidValidity(validity_days))
}

/// A random positive 128-bit serial and its hex form. The first byte is kept
/// in 0x40..=0x7f so DER encodes exactly these 16 bytes (no sign padding, no
/// leading zero), and the hex form matches what [`agent_identity`] reads back.
fn random_serial() -> (SerialNumber, String) {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    (SerialNumber::from_slice(&bytes), hex::encode(bytes))
}

fn serial_hex_of(cert: &X509Certificate<'_>) -> String {
    let raw = cert.raw_serial();
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[start..])
}

fn validate_agent_id(agent_id: &str) -> Result<(), PkiError> {
    let ok = !agent_id.is_empty()
        && agent_id.len() <= MAX_AGENT_ID_LEN
        && agent_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PkiError::InvalidAgentId(agent_id.to_string()))
    }
}

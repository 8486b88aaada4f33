//! The agent's HTTPS client: hyper over rustls, keep-alive, trusting only the
//! collector's CA, with the agent's client certificate once enrolled.
//! Response bodies are read with a cap.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use vigie_wire::pki;

/// Largest response body the agent reads.
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Why a request failed before an HTTP answer came back.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("TLS setup: {0}")]
    Tls(#[from] pki::PkiError),
    #[error("bad collector URL {0:?}")]
    Url(String),
    #[error("request to the collector failed: {0}")]
    Request(String),
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
    #[error("reading the answer failed: {0}")]
    Body(String),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type Hyper = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client bound to one collector. Clones share one connection pool, and
/// [`CollectorClient::set_identity`] switches all of them to a new client
/// certificate (after a renewal).
#[derive(Clone)]
pub struct CollectorClient {
    base: String,
    ca_pem: Arc<str>,
    client: Arc<RwLock<Hyper>>,
    timeout: Duration,
}

impl CollectorClient {
    /// A client for `base_url` trusting only `ca_pem`, presenting `identity`
    /// (cert PEM, key PEM) when given.
    pub fn new(
        base_url: &str,
        ca_pem: &str,
        identity: Option<(&str, &str)>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        base.parse::<Uri>()
            .map_err(|_| ClientError::Url(base_url.to_owned()))?;
        Ok(Self {
            base,
            ca_pem: Arc::from(ca_pem),
            client: Arc::new(RwLock::new(hyper_client(ca_pem, identity)?)),
            timeout,
        })
    }

    /// Presents `cert_pem` / `key_pem` from the next request on, in every
    /// clone of this client (connections made with the old identity are
    /// dropped with the old pool).
    pub fn set_identity(&self, cert_pem: &str, key_pem: &str) -> Result<(), ClientError> {
        let fresh = hyper_client(&self.ca_pem, Some((cert_pem, key_pem)))?;
        *self.client.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// Sends a request to `path` (e.g. `/v1/batches`).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, ClientError> {
        self.send_limited(method, path, headers, body, MAX_RESPONSE_BYTES)
            .await
    }

    /// [`CollectorClient::send`], reading at most `max_body_bytes` of the answer
    /// ([`ClientError::TooLarge`] beyond).
    pub async fn send_limited(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Bytes,
        max_body_bytes: usize,
    ) -> Result<Answer, ClientError> {
        let uri = format!("{}{}", self.base, path);
        let mut req = Request::builder().method(method).uri(&uri);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let client = self
            .client
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let fut = async {
            let resp = client
                .request(req)
                .await
                .map_err(|e| ClientError::Request(error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, max_body_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<LengthLimitError>() {
                        ClientError::TooLarge(max_body_bytes)
                    } else {
                        ClientError::Body(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }
}

/// A hyper client trusting only `ca_pem`, presenting `identity` when given.
fn hyper_client(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<Hyper, ClientError> {
    let mut tls = pki::client_tls_config(ca_pem, identity)?;
    // hyper-rustls sets ALPN itself (http/1.1) and refuses a preset list.
    tls.alpn_protocols.clear();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(16)
        .build(connector))
}

/// The error with its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

//! The HTTP side of a poll: one shared hyper client (rustls with Mozilla's
//! roots; plain http allowed for tests), and [`Fetcher::fetch`], which sends
//! one GET under the connector's rate limit and retry policy.
//!
//! Retries: network errors, timeouts and 5xx are retried with exponential
//! backoff and jitter; 429 waits as the server asks (`Retry-After` in
//! seconds or as an HTTP date, or Okta's `X-Rate-Limit-Reset` epoch
//! seconds) when that fits in `max_retry_after`, otherwise the poll ends
//! and the scheduler waits. Other statuses fail at once with a short,
//! secret-scrubbed excerpt of the body. Bodies are read with a size cap.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use governor::DefaultDirectRateLimiter;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::secret::scrub;
use crate::spec::Connector;
use crate::stats::StatsHandle;

/// The client shared by every connector.
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the shared client.
pub(crate) fn build_client() -> Result<HttpClient, rustls::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

/// A successful (2xx) answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("request failed after {attempts} attempt(s): {last}")]
    GaveUp { attempts: u32, last: String },
    #[error("rate limited (HTTP 429); waiting {0:?} before the next poll")]
    RateLimited(Duration),
    #[error("HTTP {status}: {excerpt}")]
    Status { status: StatusCode, excerpt: String },
    #[error("shutting down")]
    Cancelled,
}

/// Sends requests for one connector.
pub(crate) struct Fetcher<'a> {
    pub client: &'a HttpClient,
    pub limiter: &'a DefaultDirectRateLimiter,
    pub connector: &'a Connector,
    pub stats: &'a StatsHandle,
}

impl Fetcher<'_> {
    /// GETs `uri`, retrying as the policy allows; returns only 2xx answers.
    pub async fn fetch(&self, uri: &Uri, cancel: &CancellationToken) -> Result<Answer, FetchError> {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(FetchError::Cancelled),
            r = self.fetch_with_retries(uri) => r,
        }
    }

    async fn fetch_with_retries(&self, uri: &Uri) -> Result<Answer, FetchError> {
        let policy = &self.connector.retry;
        let secrets = &self.connector.endpoint.secrets;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.limiter.until_ready().await;
            let (message, wait) = match self.send_once(uri).await {
                Ok((status, answer)) if status.is_success() => return Ok(answer),
                Ok((status, answer)) if status == StatusCode::TOO_MANY_REQUESTS => {
                    self.stats.update(|s| s.rate_limited += 1);
                    let hint = retry_after(&answer.headers, Utc::now());
                    let wait = hint.unwrap_or_else(|| backoff(policy, attempt));
                    if wait > policy.max_retry_after || attempt >= policy.max_attempts {
                        let e = FetchError::RateLimited(wait);
                        self.stats.error(&e.to_string());
                        return Err(e);
                    }
                    (format!("HTTP 429, retrying after {wait:?}"), wait)
                }
                Ok((status, answer)) if status.is_server_error() => (
                    format!("HTTP {status}: {}", excerpt(&answer.body, secrets)),
                    backoff(policy, attempt),
                ),
                Ok((status, answer)) => {
                    let e = FetchError::Status {
                        status,
                        excerpt: excerpt(&answer.body, secrets),
                    };
                    self.stats.error(&e.to_string());
                    return Err(e);
                }
                Err(message) => (scrub(&message, secrets), backoff(policy, attempt)),
            };
            self.stats.error(&message);
            if attempt >= policy.max_attempts {
                return Err(FetchError::GaveUp {
                    attempts: attempt,
                    last: message,
                });
            }
            self.stats.update(|s| s.retries += 1);
            tracing::warn!(
                connector = %self.connector.name,
                attempt,
                retry_in_ms = wait.as_millis() as u64,
                error = %message,
                "request failed, retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt; `Err` is a network error, a timeout or a body problem.
    async fn send_once(&self, uri: &Uri) -> Result<(StatusCode, Answer), String> {
        let limits = &self.connector.limits;
        let mut req = Request::builder()
            .method(http::Method::GET)
            .uri(uri.clone());
        req = req.header(http::header::ACCEPT, "application/json");
        req = req.header(
            http::header::USER_AGENT,
            concat!("vigie-connect/", env!("CARGO_PKG_VERSION")),
        );
        for (name, value) in &self.connector.endpoint.headers {
            let mut v = http::HeaderValue::from_str(value.expose())
                .map_err(|_| format!("header {name} has an invalid value"))?;
            v.set_sensitive(true);
            req = req.header(name, v);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let attempt = async {
            let resp = self.client.request(req).await.map_err(|e| {
                format!(
                    "request to {} failed: {}",
                    redacted_uri(uri),
                    error_chain(&e)
                )
            })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, limits.max_response_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        format!(
                            "answer body is larger than max_response_bytes ({})",
                            limits.max_response_bytes
                        )
                    } else {
                        format!("reading the answer failed: {e}")
                    }
                })?
                .to_bytes();
            Ok((
                parts.status,
                Answer {
                    headers: parts.headers,
                    body,
                },
            ))
        };
        tokio::time::timeout(limits.timeout, attempt)
            .await
            .map_err(|_| format!("request timed out after {:?}", limits.timeout))?
    }
}

/// The URI without its query (which may carry cursors or keys), for messages.
fn redacted_uri(uri: &Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or(""),
        uri.authority().map(|a| a.as_str()).unwrap_or(""),
        uri.path()
    )
}

/// Exponential backoff for `attempt` (1-based), jittered in [base/2, base].
pub(crate) fn backoff(policy: &crate::spec::RetryPolicy, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    let base = policy
        .initial_backoff
        .saturating_mul(factor)
        .min(policy.max_backoff);
    let ms = base.as_millis() as u64;
    if ms < 2 {
        return base;
    }
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

/// The wait a 429 answer asks for: `Retry-After` (seconds or HTTP date),
/// else `X-Rate-Limit-Reset` (epoch seconds, Okta).
pub(crate) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let until = |t: DateTime<Utc>| (t - now).to_std().unwrap_or(Duration::ZERO);
    if let Some(v) = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(t) = DateTime::parse_from_rfc2822(v) {
            return Some(until(t.with_timezone(&Utc)));
        }
    }
    let reset = headers
        .get("x-rate-limit-reset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())?;
    Some(until(DateTime::from_timestamp(reset, 0)?))
}

/// The start of a body, one line, printable, secrets scrubbed.
pub(crate) fn excerpt(body: &[u8], secrets: &[crate::secret::Secret]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > MAX {
        line.push('…');
    }
    if line.trim().is_empty() {
        return "(empty body)".to_owned();
    }
    scrub(line.trim(), secrets)
}

/// An error with its sources, on one line.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::spec::RetryPolicy;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn retry_after_seconds_date_and_okta_reset() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "120")]), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")]),
                now
            ),
            Some(Duration::from_secs(30))
        );
        // A date in the past means "now".
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Wed, 21 Oct 2015 07:00:00 GMT")]),
                now
            ),
            Some(Duration::ZERO)
        );
        let reset = (now.timestamp() + 42).to_string();
        assert_eq!(
            retry_after(&headers(&[("x-rate-limit-reset", &reset)]), now),
            Some(Duration::from_secs(42))
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(1),
            error_backoff_max: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let d1 = backoff(&p, 1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = backoff(&p, 3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            assert!(backoff(&p, 40) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn excerpt_is_short_one_line_and_scrubbed() {
        let body = format!(
            "{{\"error\":\"bad token sekret-tok\"}}\n{}",
            "x".repeat(1000)
        );
        let e = excerpt(body.as_bytes(), &[Secret::new("sekret-tok")]);
        assert!(!e.contains("sekret-tok"));
        assert!(!e.contains('\n'));
        assert!(e.chars().count() <= 301);
        assert_eq!(excerpt(b"", &[]), "(empty body)");
    }
}

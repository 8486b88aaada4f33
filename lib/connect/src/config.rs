//! The `[[connectors]]` configuration, as written in TOML, and its
//! validation into [`Connector`]s.
//!
//! One flat table per connector; keys that only make sense for one `type`
//! are rejected for the other, naming the key. Secrets come from `token`
//! or from an environment variable (`token_env`, header `value_env`), are
//! resolved at validation and never appear in `Debug` output or errors.

use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroU32;
use std::time::Duration;

use http::{HeaderName, Uri};
use serde::Deserialize;

use crate::secret::Secret;
use crate::spec::{
    Connector, Endpoint, JsonPath, Limits, Method, Pagination, RetryPolicy, TimeFormat,
};
use crate::stats::StatsHandle;

/// A configuration mistake, naming the connector and the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key has a value that is not valid.
    #[error("connector {connector:?}: `{key}` {message}")]
    Invalid {
        connector: String,
        key: &'static str,
        message: String,
    },
    /// Two connectors share a name.
    #[error("connector name {0:?} is used more than once; names must be unique")]
    DuplicateName(String),
    /// A secret's environment variable is not set.
    #[error(
        "connector {connector:?}: `{key}` names the environment variable {var:?}, which is not set"
    )]
    MissingEnv {
        connector: String,
        key: &'static str,
        var: String,
    },
}

/// Which API a connector polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorType {
    /// Okta System Log (`GET /api/v1/logs`), authenticated with an API token.
    Okta,
    /// Any HTTP API answering JSON, described by `url`, `records`,
    /// `time_field`, `pagination` and friends.
    HttpJson,
}

/// HTTP method of the requests (only `GET` for now).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MethodConfig {
    /// `GET`
    #[serde(rename = "GET")]
    Get,
}

/// How the token is sent (http_json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// `Authorization: Bearer <token>` (the default when a token is set).
    Bearer,
    /// The token as the value of the header named by `auth_header`.
    Header,
    /// No token.
    None,
}

/// How times are written in `since_param`/`until_param`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormatConfig {
    /// RFC 3339, UTC, milliseconds (`2024-05-01T12:00:00.000Z`).
    Rfc3339,
    /// Seconds since the Unix epoch.
    EpochSecs,
    /// Milliseconds since the Unix epoch.
    EpochMs,
}

/// How the next page is found (http_json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaginationKind {
    /// One page per poll.
    None,
    /// The `Link` response header, `rel="next"` (RFC 8288).
    Link,
    /// A value in the body at `next_field`: a URL to follow, or a token sent
    /// back as the query parameter `cursor_param`.
    NextField,
}

/// An extra request header (http_json).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderConfig {
    /// Header name, e.g. `X-Api-Key`.
    pub name: String,
    /// The value, written in the configuration (treated as a secret).
    #[serde(default)]
    pub value: Option<Secret>,
    /// Name of an environment variable holding the value.
    #[serde(default)]
    pub value_env: Option<String>,
}

/// One `[[connectors]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Unique name of the connector; its cursor and stats are kept under it.
    pub name: String,
    /// `okta` or `http_json`.
    #[serde(rename = "type")]
    pub kind: ConnectorType,
    /// Seconds between the end of a poll and the start of the next.
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// The vigie parser that normalizes the records (default `okta` for
    /// okta, `json` for http_json).
    #[serde(default)]
    pub format: Option<String>,
    /// API token. Prefer `token_env`, which keeps it out of the file.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Name of an environment variable holding the API token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Requests per minute, at most (local rate limit).
    #[serde(default = "default_max_requests_per_minute")]
    pub max_requests_per_minute: u32,
    /// Pages fetched at most in one poll.
    #[serde(default = "default_max_pages_per_poll")]
    pub max_pages_per_poll: u32,
    /// Timeout of one request, in seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// First run only: how far back, in seconds, to start reading.
    #[serde(default = "default_start_lookback_secs")]
    pub start_lookback_secs: u64,
    /// Largest answer body read, in bytes.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// Largest number of records accepted in one page.
    #[serde(default = "default_max_records_per_page")]
    pub max_records_per_page: usize,
    /// Attempts per request on network errors, 5xx and 429.
    #[serde(default = "default_retry_max_attempts")]
    pub retry_max_attempts: u32,
    /// First retry delay in milliseconds (doubles, with jitter).
    #[serde(default = "default_retry_initial_backoff_ms")]
    pub retry_initial_backoff_ms: u64,
    /// Largest retry delay in milliseconds.
    #[serde(default = "default_retry_max_backoff_ms")]
    pub retry_max_backoff_ms: u64,
    /// Largest server-requested wait (429) slept within a poll, in seconds;
    /// beyond it the poll ends and the next one waits as asked.
    #[serde(default = "default_max_retry_after_secs")]
    pub max_retry_after_secs: u64,
    /// Largest delay between polls after repeated failures, in seconds.
    #[serde(default = "default_error_backoff_max_secs")]
    pub error_backoff_max_secs: u64,

    /// okta: the organisation URL, e.g. `https://example.okta.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// okta: events per page (`limit`, 1 to 1000).
    #[serde(default)]
    pub page_size: Option<u32>,

    /// http_json: URL of the first page, static query parameters allowed.
    #[serde(default)]
    pub url: Option<String>,
    /// http_json: HTTP method (`GET`).
    #[serde(default)]
    pub method: Option<MethodConfig>,
    /// http_json: extra headers, e.g. `{ name = "X-Api-Key", value_env = "FOO" }`.
    #[serde(default)]
    pub headers: Vec<HeaderConfig>,
    /// http_json: extra query parameters added to the first page's URL.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// http_json: how the token is sent: `bearer` (default), `header`, `none`.
    #[serde(default)]
    pub auth: Option<AuthKind>,
    /// http_json: header carrying the token when `auth = "header"`.
    #[serde(default)]
    pub auth_header: Option<String>,
    /// http_json: dotted path to the array of records in the answer; empty
    /// (the default) means the body itself is the array.
    #[serde(default)]
    pub records: Option<String>,
    /// http_json: dotted path, in each record, of the time that advances the
    /// cursor (RFC 3339 string or epoch number).
    #[serde(default)]
    pub time_field: Option<String>,
    /// http_json: dotted path of a record's unique id, used to drop records
    /// seen again at the cursor time (default: a hash of the whole record).
    #[serde(default)]
    pub id_field: Option<String>,
    /// http_json: query parameter carrying the window start (needs `time_field`).
    #[serde(default)]
    pub since_param: Option<String>,
    /// http_json: query parameter carrying the window end (needs `time_field`).
    #[serde(default)]
    pub until_param: Option<String>,
    /// http_json: `rfc3339` (default), `epoch_secs` or `epoch_ms`.
    #[serde(default)]
    pub time_format: Option<TimeFormatConfig>,
    /// http_json: `link`, `next_field` or `none` (default).
    #[serde(default)]
    pub pagination: Option<PaginationKind>,
    /// http_json: dotted path of the next URL or token (`pagination = "next_field"`).
    #[serde(default)]
    pub next_field: Option<String>,
    /// http_json: query parameter that sends a next token back.
    #[serde(default)]
    pub cursor_param: Option<String>,
}

fn default_interval_secs() -> u64 {
    60
}
fn default_max_requests_per_minute() -> u32 {
    60
}
fn default_max_pages_per_poll() -> u32 {
    100
}
fn default_timeout_secs() -> u64 {
    30
}
fn default_start_lookback_secs() -> u64 {
    3600
}
fn default_max_response_bytes() -> usize {
    16 << 20
}
fn default_max_records_per_page() -> usize {
    10_000
}
fn default_retry_max_attempts() -> u32 {
    5
}
fn default_retry_initial_backoff_ms() -> u64 {
    500
}
fn default_retry_max_backoff_ms() -> u64 {
    30_000
}
fn default_max_retry_after_secs() -> u64 {
    120
}
fn default_error_backoff_max_secs() -> u64 {
    900
}
fn default_okta_page_size() -> u32 {
    1000
}

/// Validates every entry (unique names included), reading secrets from the
/// process environment.
pub fn validate_connectors(configs: &[ConnectorConfig]) -> Result<Vec<Connector>, ConfigError> {
    validate_connectors_with(configs, &|var| std::env::var(var).ok())
}

/// Like [`validate_connectors`], with `env` looking up environment variables.
pub fn validate_connectors_with(
    configs: &[ConnectorConfig],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Connector>, ConfigError> {
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(configs.len());
    for c in configs {
        if !names.insert(c.name.as_str()) {
            return Err(ConfigError::DuplicateName(c.name.clone()));
        }
        out.push(c.validate_with(env)?);
    }
    Ok(out)
}

impl ConnectorConfig {
    /// Validates this entry, reading secrets from the process environment.
    pub fn validate(&self) -> Result<Connector, ConfigError> {
        self.validate_with(&|var| std::env::var(var).ok())
    }

    /// Validates this entry, with `env` looking up environment variables.
    pub fn validate_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Connector, ConfigError> {
        let err = |key: &'static str, message: &str| ConfigError::Invalid {
            connector: self.name.clone(),
            key,
            message: message.to_owned(),
        };
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(err(
                "name",
                "must be non-empty ASCII letters, digits, '-', '_' or '.'",
            ));
        }
        if self.interval_secs == 0 {
            return Err(err("interval_secs", "must be at least 1"));
        }
        let max_rpm = NonZeroU32::new(self.max_requests_per_minute)
            .ok_or_else(|| err("max_requests_per_minute", "must be at least 1"))?;
        if self.max_pages_per_poll == 0 {
            return Err(err("max_pages_per_poll", "must be at least 1"));
        }
        if self.timeout_secs == 0 {
            return Err(err("timeout_secs", "must be at least 1"));
        }
        if self.max_response_bytes < 1024 {
            return Err(err("max_response_bytes", "must be at least 1024"));
        }
        if self.max_records_per_page == 0 {
            return Err(err("max_records_per_page", "must be at least 1"));
        }
        if self.retry_max_attempts == 0 {
            return Err(err("retry_max_attempts", "must be at least 1"));
        }
        if self.retry_max_backoff_ms < self.retry_initial_backoff_ms {
            return Err(err(
                "retry_max_backoff_ms",
                "must not be smaller than retry_initial_backoff_ms",
            ));
        }
        if let Some(f) = &self.format {
            if f.trim().is_empty() {
                return Err(err("format", "must not be empty"));
            }
        }
        let token = match (&self.token, &self.token_env) {
            (Some(_), Some(_)) => {
                return Err(err("token_env", "cannot be set together with `token`"));
            }
            (Some(t), None) => Some(t.clone()),
            (None, Some(var)) => Some(Secret::new(env(var).ok_or_else(|| {
                ConfigError::MissingEnv {
                    connector: self.name.clone(),
                    key: "token_env",
                    var: var.clone(),
                }
            })?)),
            (None, None) => None,
        };
        if token.as_ref().is_some_and(|t| t.expose().is_empty()) {
            return Err(err("token", "is empty"));
        }
        let (endpoint, default_format) = match self.kind {
            ConnectorType::Okta => (self.okta_endpoint(token)?, "okta"),
            ConnectorType::HttpJson => (self.http_json_endpoint(token, env)?, "json"),
        };
        Ok(Connector {
            name: self.name.clone(),
            format: self
                .format
                .clone()
                .unwrap_or_else(|| default_format.to_owned()),
            interval: Duration::from_secs(self.interval_secs),
            start_lookback: Duration::from_secs(self.start_lookback_secs),
            limits: Limits {
                max_requests_per_minute: max_rpm,
                max_pages_per_poll: self.max_pages_per_poll,
                timeout: Duration::from_secs(self.timeout_secs),
                max_response_bytes: self.max_response_bytes,
                max_records_per_page: self.max_records_per_page,
            },
            retry: RetryPolicy {
                max_attempts: self.retry_max_attempts,
                initial_backoff: Duration::from_millis(self.retry_initial_backoff_ms),
                max_backoff: Duration::from_millis(self.retry_max_backoff_ms),
                max_retry_after: Duration::from_secs(self.max_retry_after_secs),
                error_backoff_max: Duration::from_secs(self.error_backoff_max_secs),
            },
            endpoint,
            stats: StatsHandle::default(),
        })
    }

    fn invalid(&self, key: &'static str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            connector: self.name.clone(),
            key,
            message: message.into(),
        }
    }

    /// Rejects keys of the other connector type.
    fn reject_foreign_keys(&self, keys: &[(&'static str, bool)]) -> Result<(), ConfigError> {
        let kind = match self.kind {
            ConnectorType::Okta => "okta",
            ConnectorType::HttpJson => "http_json",
        };
        for (key, set) in keys {
            if *set {
                return Err(self.invalid(key, format!("is not valid for type = \"{kind}\"")));
            }
        }
        Ok(())
    }

    fn okta_endpoint(&self, token: Option<Secret>) -> Result<Endpoint, ConfigError> {
        self.reject_foreign_keys(&[
            ("url", self.url.is_some()),
            ("method", self.method.is_some()),
            ("headers", !self.headers.is_empty()),
            ("query", !self.query.is_empty()),
            ("auth", self.auth.is_some()),
            ("auth_header", self.auth_header.is_some()),
            ("records", self.records.is_some()),
            ("time_field", self.time_field.is_some()),
            ("id_field", self.id_field.is_some()),
            ("since_param", self.since_param.is_some()),
            ("until_param", self.until_param.is_some()),
            ("time_format", self.time_format.is_some()),
            ("pagination", self.pagination.is_some()),
            ("next_field", self.next_field.is_some()),
            ("cursor_param", self.cursor_param.is_some()),
        ])?;
        let base = self
            .base_url
            .as_deref()
            .ok_or_else(|| self.invalid("base_url", "is required for type = \"okta\""))?;
        let token =
            token.ok_or_else(|| self.invalid("token", "or `token_env` is required for okta"))?;
        let page_size = self.page_size.unwrap_or_else(default_okta_page_size);
        if !(1..=1000).contains(&page_size) {
            return Err(self.invalid("page_size", "must be between 1 and 1000"));
        }
        let base = base.trim_end_matches('/');
        let url = self.parse_url(
            "base_url",
            &format!("{base}/api/v1/logs?sortOrder=ASCENDING&limit={page_size}"),
        )?;
        if url.path() != "/api/v1/logs" {
            return Err(self.invalid("base_url", "must be the organisation URL, without a path"));
        }
        let value = Secret::new(format!("SSWS {}", token.expose()));
        Ok(Endpoint {
            url,
            method: Method::Get,
            headers: vec![(http::header::AUTHORIZATION, value)],
            records: JsonPath::default(),
            time_field: Some(JsonPath::parse("published")),
            id_field: Some(JsonPath::parse("uuid")),
            since_param: Some("since".to_owned()),
            until_param: None,
            time_format: TimeFormat::Rfc3339,
            pagination: Pagination::Link,
            secrets: vec![token],
        })
    }

    fn http_json_endpoint(
        &self,
        token: Option<Secret>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Endpoint, ConfigError> {
        self.reject_foreign_keys(&[
            ("base_url", self.base_url.is_some()),
            ("page_size", self.page_size.is_some()),
        ])?;
        let raw_url = self
            .url
            .as_deref()
            .ok_or_else(|| self.invalid("url", "is required for type = \"http_json\""))?;
        let mut url_text = raw_url.to_owned();
        for (k, v) in &self.query {
            url_text.push(if url_text.contains('?') { '&' } else { '?' });
            url_text.push_str(&crate::url::encode(k));
            url_text.push('=');
            url_text.push_str(&crate::url::encode(v));
        }
        let url = self.parse_url("url", &url_text)?;

        let mut secrets = Vec::new();
        let mut headers = Vec::new();
        for h in &self.headers {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                self.invalid("headers", format!("{:?} is not a header name", h.name))
            })?;
            let value = match (&h.value, &h.value_env) {
                (Some(v), None) => v.clone(),
                (None, Some(var)) => {
                    Secret::new(env(var).ok_or_else(|| ConfigError::MissingEnv {
                        connector: self.name.clone(),
                        key: "headers.value_env",
                        var: var.clone(),
                    })?)
                }
                _ => {
                    return Err(self.invalid(
                        "headers",
                        format!("{:?} needs exactly one of `value` or `value_env`", h.name),
                    ))
                }
            };
            check_header_value(&value)
                .map_err(|m| self.invalid("headers", format!("{:?}: {m}", h.name)))?;
            headers.push((name, value.clone()));
            secrets.push(value);
        }
        let auth = self.auth.unwrap_or(if token.is_some() {
            AuthKind::Bearer
        } else {
            AuthKind::None
        });
        match (auth, token) {
            (AuthKind::None, Some(_)) => {
                return Err(self.invalid("auth", "is \"none\" but a token is configured"));
            }
            (AuthKind::None, None) => {}
            (_, None) => return Err(self.invalid("token", "or `token_env` is required by `auth`")),
            (AuthKind::Bearer, Some(t)) => {
                if self.auth_header.is_some() {
                    return Err(self.invalid("auth_header", "is only valid with auth = \"header\""));
                }
                let v = Secret::new(format!("Bearer {}", t.expose()));
                check_header_value(&v).map_err(|m| self.invalid("token", m))?;
                headers.push((http::header::AUTHORIZATION, v));
                secrets.push(t);
            }
            (AuthKind::Header, Some(t)) => {
                let hn = self.auth_header.as_deref().ok_or_else(|| {
                    self.invalid("auth_header", "is required with auth = \"header\"")
                })?;
                let name = HeaderName::from_bytes(hn.as_bytes())
                    .map_err(|_| self.invalid("auth_header", "is not a header name"))?;
                check_header_value(&t).map_err(|m| self.invalid("token", m))?;
                headers.push((name, t.clone()));
                secrets.push(t);
            }
        }

        let path = |key: &'static str,
                    v: &Option<String>|
         -> Result<Option<JsonPath>, ConfigError> {
            match v {
                None => Ok(None),
                Some(s) if s.split('.').any(str::is_empty) && !s.is_empty() => {
                    Err(self.invalid(key, "has an empty segment"))
                }
                Some(s) if s.is_empty() && key != "records" => Err(self.invalid(key, "is empty")),
                Some(s) => Ok(Some(JsonPath::parse(s))),
            }
        };
        let records = path("records", &self.records)?.unwrap_or_default();
        let time_field = path("time_field", &self.time_field)?;
        let id_field = path("id_field", &self.id_field)?;
        let next_field = path("next_field", &self.next_field)?;
        for (key, p) in [
            ("since_param", &self.since_param),
            ("until_param", &self.until_param),
        ] {
            if p.is_some() && time_field.is_none() {
                return Err(self.invalid(key, "needs `time_field` to advance the window"));
            }
            if p.as_deref().is_some_and(str::is_empty) {
                return Err(self.invalid(key, "is empty"));
            }
        }
        let pagination = match self.pagination.unwrap_or(PaginationKind::None) {
            PaginationKind::None | PaginationKind::Link => {
                if self.next_field.is_some() {
                    return Err(self.invalid("next_field", "needs pagination = \"next_field\""));
                }
                if self.cursor_param.is_some() {
                    return Err(self.invalid("cursor_param", "needs pagination = \"next_field\""));
                }
                if self.pagination == Some(PaginationKind::Link) {
                    Pagination::Link
                } else {
                    Pagination::None
                }
            }
            PaginationKind::NextField => Pagination::NextField {
                path: next_field.ok_or_else(|| {
                    self.invalid("next_field", "is required with pagination = \"next_field\"")
                })?,
                cursor_param: self.cursor_param.clone().filter(|p| !p.is_empty()),
            },
        };
        Ok(Endpoint {
            url,
            method: match self.method.unwrap_or(MethodConfig::Get) {
                MethodConfig::Get => Method::Get,
            },
            headers,
            records,
            time_field,
            id_field,
            since_param: self.since_param.clone(),
            until_param: self.until_param.clone(),
            time_format: match self.time_format.unwrap_or(TimeFormatConfig::Rfc3339) {
                TimeFormatConfig::Rfc3339 => TimeFormat::Rfc3339,
                TimeFormatConfig::EpochSecs => TimeFormat::EpochSecs,
                TimeFormatConfig::EpochMs => TimeFormat::EpochMs,
            },
            pagination,
            secrets,
        })
    }

    fn parse_url(&self, key: &'static str, text: &str) -> Result<Uri, ConfigError> {
        let uri: Uri = text
            .parse()
            .map_err(|_| self.invalid(key, format!("{text:?} is not a valid URL")))?;
        match uri.scheme_str() {
            Some("https") => {}
            Some("http") => tracing::warn!(
                connector = %self.name,
                key,
                "plain http:// URL: the token and the events travel unencrypted (meant for tests)"
            ),
            _ => return Err(self.invalid(key, "must start with https:// (or http://)")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(self.invalid(key, "has no host"));
        }
        Ok(uri)
    }
}

fn check_header_value(v: &Secret) -> Result<(), &'static str> {
    http::HeaderValue::from_str(v.expose())
        .map(|_| ())
        .map_err(|_| "contains characters not allowed in an HTTP header value")
}

#[cfg(test)]
mod tests;

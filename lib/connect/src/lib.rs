//! Pull connectors: poll SaaS APIs (Okta System Log, or any HTTP API that
//! answers JSON) and hand their records to the collector, with nothing lost
//! and nothing doubled across restarts.
//!
//! # The model
//! - **Configuration**: each `[[connectors]]` entry ([`ConnectorConfig`]) is
//!   validated into a [`Connector`] by [`validate_connectors`]. Secrets
//!   (`token`, `token_env`, header values) never appear in `Debug` output,
//!   logs or error messages.
//! - **Schedule**: [`run`] starts one task per connector. A poll fetches pages
//!   until the API has nothing more (an empty page, or no next link) or
//!   `max_pages_per_poll` is reached; the next poll starts `interval_secs`
//!   after the end of the previous one. Failed polls back off exponentially.
//!   Every request goes through a per-connector rate limiter
//!   (`max_requests_per_minute`); network errors and 5xx are retried with
//!   jittered exponential backoff; 429 waits as `Retry-After` or Okta's
//!   `X-Rate-Limit-Reset` say.
//! - **Cursor**: where a connector resumes is a small JSON string kept in a
//!   [`CursorStore`] under the connector's name: the latest record time
//!   delivered plus the ids of the records at exactly that time, and, while a
//!   window of pages is in progress, the next page's URL (format in
//!   [`cursor`]). The first run starts `start_lookback_secs` in the past.
//! - **Ack, then save**: each page's new records go to the [`Sink`] as a
//!   [`Page`]. The cursor is saved only after the sink answered `Ok` (durably
//!   stored). A sink error fails the poll: the cursor stays, and the same
//!   records are fetched again next time. A restart resumes from the saved
//!   cursor, so there is no gap.
//! - **Dedup**: APIs whose `since` is inclusive (Okta) return the records at
//!   the cursor time again; those whose id is in the cursor are dropped, as
//!   are records older than the window start. So a record is delivered once,
//!   except when a cursor save fails and the process restarts before the
//!   next save (at-least-once, never a gap).
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use vigie_connect::{run, validate_connectors, ConnectorConfig, MemoryCursorStore, channel_sink};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! #[derive(serde::Deserialize)]
//! struct File { connectors: Vec<ConnectorConfig> }
//! let file: File = toml::from_str(r#"
//!     [[connectors]]
//!     name = "okta"
//!     type = "okta"
//!     base_url = "https://example.okta.com"
//!     token_env = "OKTA_TOKEN"
//! "#)?;
//! let connectors = validate_connectors(&file.connectors)?;
//! let (sink, mut pages) = channel_sink(4);
//! tokio::spawn(async move {
//!     while let Some(delivery) = pages.recv().await {
//!         // store delivery.page.records durably, then:
//!         delivery.ack();
//!     }
//! });
//! let store = Arc::new(MemoryCursorStore::new());
//! run(connectors, store, Arc::new(sink), async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod config;
pub mod cursor;
mod http;
mod poll;
mod run;
mod secret;
mod sink;
mod spec;
mod stats;
mod url;

pub use config::{
    validate_connectors, validate_connectors_with, AuthKind, ConfigError, ConnectorConfig,
    ConnectorType, HeaderConfig, MethodConfig, PaginationKind, TimeFormatConfig,
};
pub use cursor::{CursorStore, MemoryCursorStore, StoreError};
pub use run::{run, RunError};
pub use secret::Secret;
pub use sink::{channel_sink, ChannelSink, Delivery, Page, Sink, SinkError};
pub use spec::{
    Connector, Endpoint, JsonPath, Limits, Method, Pagination, RetryPolicy, TimeFormat,
};
pub use stats::{ConnectorStats, StatsHandle};

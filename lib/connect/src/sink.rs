//! Where pages of records go. A [`Sink`] answers `Ok` only once the records
//! are durably stored; only then does the connector save its cursor. An
//! error makes the poll fail: the cursor stays, and the same records are
//! fetched again on the next poll.
//!
//! [`channel_sink`] adapts the trait to a channel of [`Delivery`] values for
//! an embedder that prefers to receive pages in its own task.

use std::future::Future;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// One page of new records from one connector.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The connector's name.
    pub connector: String,
    /// The vigie parser meant to normalize these records.
    pub format: String,
    /// The records, in the order the API returned them, duplicates removed.
    pub records: Vec<Value>,
}

/// The sink refused or failed to store a page.
#[derive(Debug, Clone, thiserror::Error)]
#[error("sink: {0}")]
pub struct SinkError(pub String);

/// Receives pages of records and stores them durably.
pub trait Sink: Send + Sync + 'static {
    /// Stores `page`; `Ok` means durable.
    fn store(&self, page: Page) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// A page handed over a channel, with the means to acknowledge it.
#[derive(Debug)]
pub struct Delivery {
    /// The records.
    pub page: Page,
    ack: oneshot::Sender<Result<(), SinkError>>,
}

impl Delivery {
    /// The page is durably stored: the connector may advance its cursor.
    pub fn ack(self) {
        let _ = self.ack.send(Ok(()));
    }

    /// The page could not be stored: the connector will fetch it again.
    pub fn fail(self, reason: impl Into<String>) {
        let _ = self.ack.send(Err(SinkError(reason.into())));
    }
}

/// A [`Sink`] that forwards every page to a channel and waits for its
/// [`Delivery`] to be acknowledged. A `Delivery` dropped without an answer
/// counts as a failure.
#[derive(Debug, Clone)]
pub struct ChannelSink {
    tx: mpsc::Sender<Delivery>,
}

/// A channel-backed sink and the receiving end, holding at most `capacity`
/// pages in flight.
pub fn channel_sink(capacity: usize) -> (ChannelSink, mpsc::Receiver<Delivery>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (ChannelSink { tx }, rx)
}

impl Sink for ChannelSink {
    async fn store(&self, page: Page) -> Result<(), SinkError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Delivery { page, ack })
            .await
            .map_err(|_| SinkError("the receiving side is closed".to_owned()))?;
        done.await
            .map_err(|_| SinkError("the page was dropped without an answer".to_owned()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn channel_sink_waits_for_the_answer() {
        let (sink, mut rx) = channel_sink(1);
        let page = Page {
            connector: "c".into(),
            format: "json".into(),
            records: vec![serde_json::json!({"a": 1})],
        };
        let consumer = tokio::spawn(async move {
            let d = rx.recv().await.unwrap();
            assert_eq!(d.page.records.len(), 1);
            d.fail("disk full");
            let d = rx.recv().await.unwrap();
            d.ack();
            let d = rx.recv().await.unwrap();
            drop(d);
        });
        let e = sink.store(page.clone()).await.unwrap_err();
        assert_eq!(e.0, "disk full");
        sink.store(page.clone()).await.unwrap();
        assert!(sink.store(page).await.is_err());
        consumer.await.unwrap();
    }
}

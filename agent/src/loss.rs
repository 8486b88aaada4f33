//! Data-loss events: every drop the agent makes is also shipped to the
//! collector as an event, so the SOC sees it where it looks for everything
//! else (`event.action:data-loss`).
//!
//! Parts of the agent that drop events (the spool in `drop_oldest` mode, a
//! batch the collector refuses for good, a rate limit in drop mode) call
//! [`LossSender::report`]; the pipeline turns each report into an event with
//! [`loss_event`] and batches it like any other. The channel is unbounded:
//! reports are rare and must never block the part that drops.

use tokio::sync::mpsc;
use vigie_event::{fields, format_timestamp, Event};

/// The spool was full (`when_full = "drop_oldest"`) or a batch could never fit.
pub const SPOOL_FULL: &str = "spool_full";
/// The collector refused a batch for good (`413`, malformed).
pub const REFUSED: &str = "refused";
/// A source's rate limit in drop mode.
pub const RATE_LIMIT: &str = "rate_limit";

/// One drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    /// One of the reason constants of this module.
    pub reason: &'static str,
    /// Events lost.
    pub events: u64,
    /// A sentence for the SOC.
    pub detail: String,
}

/// Where drops are reported.
#[derive(Debug, Clone)]
pub struct LossSender(mpsc::UnboundedSender<Loss>);

impl LossSender {
    pub fn channel() -> (LossSender, mpsc::UnboundedReceiver<Loss>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (LossSender(tx), rx)
    }

    /// Reports a drop (ignored once the pipeline has stopped; the drop is
    /// still in the counters and the log).
    pub fn report(&self, loss: Loss) {
        let _ = self.0.send(loss);
    }
}

/// The event shipped for a drop.
pub fn loss_event(loss: &Loss, now: chrono::DateTime<chrono::Utc>) -> Event {
    let mut ev = Event::new();
    ev.set(fields::TIMESTAMP, format_timestamp(now));
    ev.set(fields::EVENT_KIND, "event");
    ev.set("event.category", vec!["host"]);
    ev.set("event.type", vec!["info"]);
    ev.set("event.action", "data-loss");
    ev.set(fields::EVENT_DATASET, "vigie.agent");
    ev.set("event.reason", loss.reason);
    ev.set("vigie.loss.events", loss.events);
    ev.set(
        fields::MESSAGE,
        format!("data loss: {} events dropped: {}", loss.events, loss.detail),
    );
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_becomes_a_searchable_event() {
        let (tx, mut rx) = LossSender::channel();
        tx.report(Loss {
            reason: SPOOL_FULL,
            events: 1234,
            detail: "spool full".into(),
        });
        let loss = rx.try_recv().expect("reported");
        let ev = loss_event(&loss, chrono::Utc::now());
        assert_eq!(ev.get_str("event.action"), Some("data-loss"));
        assert_eq!(ev.get_str("event.reason"), Some("spool_full"));
        assert_eq!(
            ev.get("vigie.loss.events").and_then(|v| v.as_u64()),
            Some(1234)
        );
        assert!(ev
            .get_str("message")
            .is_some_and(|m| m.contains("1234 events dropped")));
    }
}

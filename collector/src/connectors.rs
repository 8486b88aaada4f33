//! Pull connectors (`[[connectors]]` in collector.toml, see `vigie-connect`) wired into the
//! collector: cursors kept in SQLite (`connector_cursors`), pages normalized with the
//! connector's format and stored like intake events (central detection, durable store,
//! alerts), and the stats at `GET /api/v1/connectors`.
//!
//! A page is acknowledged to the connector only once its events are durably stored, and the
//! connector saves its cursor only then: a collector stopped between the two fetches the page
//! again, and the store's edge/duplicate protections keep detections from being raised twice.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{json, Value};
use vigie_connect::{Connector, CursorStore, Page, Sink, SinkError, StoreError};

use crate::api::AppState;
use crate::db::Db;
use crate::intake::{normalize, Format, MAX_RECORDS};
use crate::metrics::add;

/// Cursors in the control database.
pub struct DbCursors(pub Arc<Db>);

impl CursorStore for DbCursors {
    fn load(&self, connector: &str) -> Result<Option<String>, StoreError> {
        self.0
            .connector_cursor(connector)
            .map_err(|e| StoreError(e.to_string()))
    }

    fn save(&self, connector: &str, cursor: &str) -> Result<(), StoreError> {
        self.0
            .save_connector_cursor(connector, cursor, Utc::now())
            .map_err(|e| StoreError(e.to_string()))
    }
}

/// Stores connector pages.
pub struct StoreSink(pub Arc<AppState>);

impl Sink for StoreSink {
    async fn store(&self, page: Page) -> Result<(), SinkError> {
        let st = self.0.clone();
        let format = Format::resolve(&page.format).map_err(SinkError)?;
        let source = format!("connector:{}", page.connector);
        let records: Vec<_> = page
            .records
            .into_iter()
            .take(MAX_RECORDS)
            .filter_map(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        let src = source.clone();
        let events =
            tokio::task::spawn_blocking(move || normalize(records, format, &src, Utc::now()))
                .await
                .map_err(|e| SinkError(e.to_string()))?;
        let stored = crate::intake::store(&st, &source, events)
            .await
            .map_err(|e| SinkError(e.to_string()))?;
        add(&st.metrics.connector_events, stored);
        Ok(())
    }
}

/// Validates the configured connectors (formats included).
pub fn validate(cfg: &[vigie_connect::ConnectorConfig]) -> anyhow::Result<Vec<Connector>> {
    let connectors = vigie_connect::validate_connectors(cfg)?;
    for c in &connectors {
        if let Err(reason) = Format::resolve(&c.format) {
            anyhow::bail!("connector {:?}: format: {reason}", c.name);
        }
    }
    Ok(connectors)
}

/// The stats of every connector, for the API.
pub fn stats_json(connectors: &[(String, String, vigie_connect::StatsHandle)]) -> Value {
    let items: Vec<Value> = connectors
        .iter()
        .map(|(name, format, stats)| {
            json!({"name": name, "format": format, "stats": stats.snapshot()})
        })
        .collect();
    json!({ "items": items })
}

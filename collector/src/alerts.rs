//! Alerts from what the collector stores: each edge detection (`vigie.detections` on an
//! event) and each external alert (`event.kind: alert`, from a third-party tool) becomes, or
//! joins, an alert.
//!
//! - Grouping key: the rule and the entities `host.name`, `user.name`, `source.ip`,
//!   `destination.ip` (absent ones count as absent); see [`crate::db::NewDetection`].
//! - Urgency (0-100) from the rule level: informational 10, low 25, medium 50, high 75,
//!   critical 100 (asset criticality will weigh in once assets exist).
//! - A detection is identified by its agent, its `event.id` (set by the agent from the line's
//!   position, so both copies of a detection agree) or else a digest of the event, and its rule.
//!
//! Alerts are raised after the batch carrying the events is durable. A collector that stops
//! between the two raises nothing for that batch (the events are stored and searchable).

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::db::NewDetection;

/// The entity fields that group similar detections and show on an alert.
pub const ENTITY_FIELDS: [&str; 4] = ["host.name", "user.name", "source.ip", "destination.ip"];

/// Urgency of a rule level.
pub fn urgency(level: &str) -> i64 {
    match level {
        "critical" => 100,
        "high" => 75,
        "medium" => 50,
        "low" => 25,
        _ => 10,
    }
}

use vigie_event::get_path as get;

fn get_str<'a>(ev: &'a Map<String, Value>, path: &str) -> Option<&'a str> {
    get(ev, path).and_then(Value::as_str)
}

/// The detections in `events` (an agent's batch, as stored), each with its event's index.
pub fn detections(agent_id: &str, events: &[Map<String, Value>]) -> Vec<(usize, NewDetection)> {
    detections_grouped(agent_id, events, &|_| None)
}

/// [`detections`], with the grouping fields of rules that set their own
/// (`vigie: {group_by: [...]}`): `group_by(rule_id)` gives them, `None` for the default
/// ([`ENTITY_FIELDS`]).
pub fn detections_grouped(
    agent_id: &str,
    events: &[Map<String, Value>],
    group_by: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Vec<(usize, NewDetection)> {
    let mut out = Vec::new();
    for (index, ev) in events.iter().enumerate() {
        let dets = get(ev, "vigie.detections").and_then(Value::as_array);
        let external = get_str(ev, "event.kind") == Some("alert");
        if dets.is_none_or(|d| d.is_empty()) && !external {
            continue;
        }
        let mut entities = Map::new();
        let mut key = Vec::new();
        for f in ENTITY_FIELDS {
            let v = get(ev, f).filter(|v| !v.is_null()).cloned();
            key.push(v.clone().unwrap_or(Value::Null));
            if let Some(v) = v {
                entities.insert(f.to_owned(), v);
            }
        }
        let group_key = Value::Array(key).to_string();
        let entities = Value::Object(entities).to_string();
        let event_id = match get_str(ev, "event.id") {
            Some(id) => id.to_owned(),
            None => {
                let digest = Sha256::digest(Value::Object(ev.clone()).to_string().as_bytes());
                format!("sha256-{}", &hex::encode(digest)[..32])
            }
        };
        let at = get_str(ev, "@timestamp")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc));
        let mut push = |rule_id: String, title: String, level: String, origin: &'static str| {
            // A rule with its own grouping fields: the key is their values, and they are the
            // alert's entities (the first event's other fields would mislead: the alert
            // spans several users or hosts); none present: the usual entities.
            let (group_key, entities) = match group_by(&rule_id) {
                Some(fields) => {
                    let mut shown = Map::new();
                    let key: Vec<Value> = fields
                        .iter()
                        .map(|f| {
                            let v = get(ev, f).filter(|v| !v.is_null()).cloned();
                            if let Some(v) = &v {
                                shown.insert(f.clone(), v.clone());
                            }
                            v.unwrap_or(Value::Null)
                        })
                        .collect();
                    let shown = if shown.is_empty() {
                        entities.clone()
                    } else {
                        Value::Object(shown).to_string()
                    };
                    (Value::Array(key).to_string(), shown)
                }
                None => (group_key.clone(), entities.clone()),
            };
            out.push((
                index,
                NewDetection {
                    agent_id: agent_id.to_owned(),
                    event_id: event_id.clone(),
                    urgency: urgency(&level),
                    rule_id,
                    rule_title: title,
                    rule_level: level,
                    group_key,
                    entities,
                    origin,
                    at,
                },
            ));
        };
        for d in dets.into_iter().flatten() {
            let Some(rule_id) = d.get("rule_id").and_then(Value::as_str) else {
                continue;
            };
            let title = d.get("title").and_then(Value::as_str).unwrap_or(rule_id);
            let level = d.get("level").and_then(Value::as_str).unwrap_or("medium");
            let origin = match d.get("origin").and_then(Value::as_str) {
                Some("central") => "central",
                _ => "edge",
            };
            push(rule_id.into(), title.into(), level.into(), origin);
        }
        if external {
            let source = get_str(ev, "event.dataset")
                .or_else(|| get_str(ev, "event.module"))
                .unwrap_or("external");
            let title = get_str(ev, "rule.name")
                .or_else(|| get_str(ev, "message"))
                .unwrap_or("external alert");
            let rule_id = get_str(ev, "rule.id").map_or_else(
                || format!("{source}:{title}"),
                |id| format!("{source}:{id}"),
            );
            let level = external_level(ev);
            push(
                rule_id,
                title.chars().take(200).collect(),
                level.into(),
                "external",
            );
        }
    }
    out
}

/// The event an alert filter sees for a detection without one (a correlation): its entities
/// as fields (`{"source": {"ip": "203.0.113.9"}}`) and `rule.id` / `rule.name`.
pub fn entity_event(d: &NewDetection) -> Map<String, Value> {
    let mut ev = vigie_event::Event::new();
    if let Ok(Value::Object(entities)) = serde_json::from_str::<Value>(&d.entities) {
        for (k, v) in entities {
            ev.set(&k, v);
        }
    }
    ev.set("rule.id", d.rule_id.clone());
    ev.set("rule.name", d.rule_title.clone());
    ev.into_map()
}

/// The detections (as [`with_events`] returned them, `positions` being their events'
/// positions in the batch) whose events were not left out as duplicates (`dropped`).
pub fn without_positions(
    detections: Vec<(usize, NewDetection)>,
    positions: &[usize],
    dropped: &[usize],
) -> Vec<(usize, NewDetection)> {
    if dropped.is_empty() {
        return detections;
    }
    detections
        .into_iter()
        .zip(positions)
        .filter(|(_, p)| !dropped.contains(p))
        .map(|(d, _)| d)
        .collect()
}

/// Copies the events that `detections` point at, and points them at the copies.
#[allow(clippy::type_complexity)]
pub fn with_events(
    detections: Vec<(usize, NewDetection)>,
    events: &[Map<String, Value>],
) -> (Vec<(usize, NewDetection)>, Vec<Map<String, Value>>) {
    let mut copies: Vec<Map<String, Value>> = Vec::new();
    let mut at: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(detections.len());
    for (i, d) in detections {
        let j = *at.entry(i).or_insert_with(|| {
            copies.push(events.get(i).cloned().unwrap_or_default());
            copies.len() - 1
        });
        out.push((j, d));
    }
    (out, copies)
}

/// The level of a third-party alert, from `event.severity` (ECS: 0-100, or the tool's 1-10
/// scale) or a textual `severity`.
fn external_level(ev: &Map<String, Value>) -> &'static str {
    if let Some(s) = get(ev, "event.severity").and_then(Value::as_f64) {
        let s = if s <= 10.0 { s * 10.0 } else { s };
        return match s {
            s if s >= 90.0 => "critical",
            s if s >= 70.0 => "high",
            s if s >= 40.0 => "medium",
            s if s >= 20.0 => "low",
            _ => "informational",
        };
    }
    let text = get_str(ev, "severity")
        .or_else(|| get_str(ev, "log.level"))
        .unwrap_or("")
        .to_ascii_lowercase();
    match text.as_str() {
        "critical" => "critical",
        "high" | "error" => "high",
        "low" => "low",
        "informational" | "info" => "informational",
        _ => "medium",
    }
}

/// The API form of an alert.
pub fn alert_json(a: &crate::db::AlertRow, event_ids: &[(String, String)]) -> Value {
    let entities: Value = serde_json::from_str(&a.entities).unwrap_or_else(|_| json!({}));
    json!({
        "id": a.id,
        "rule": {"id": a.rule_id, "title": a.rule_title, "level": a.rule_level},
        "status": a.status,
        "verdict": a.verdict,
        "urgency": a.urgency,
        "first_seen": vigie_event::format_timestamp(a.first_seen),
        "last_seen": vigie_event::format_timestamp(a.last_seen),
        "occurrences": a.occurrences,
        "entities": entities,
        "event_ids": event_ids.iter().map(|(_, e)| e).collect::<Vec<_>>(),
        "origin": a.origin,
        "similar_to": a.similar_to,
        "created_at": vigie_event::format_timestamp(a.created_at),
        "updated_at": vigie_event::format_timestamp(a.updated_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn edge_and_external_detections_are_read() {
        let events = vec![
            ev(
                json!({"@timestamp": "2026-11-26T10:00:00Z", "event": {"id": "e1"},
                "host": {"name": "bastion"}, "user": {"name": "alice"},
                "vigie": {"detections": [{"rule_id": "r1", "title": "Sudo shell", "level": "high"}]}}),
            ),
            ev(json!({"message": "nothing here"})),
            ev(
                json!({"event": {"kind": "alert", "dataset": "crowdstrike.falcon", "severity": 9},
                "rule": {"name": "Credential dumping"}, "host": {"name": "ws-7"}}),
            ),
        ];
        let d: Vec<NewDetection> = detections("agt_1", &events)
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].rule_id, "r1");
        assert_eq!(d[0].event_id, "e1");
        assert_eq!(d[0].urgency, 75);
        assert_eq!(d[0].origin, "edge");
        assert_eq!(d[0].group_key, r#"["bastion","alice",null,null]"#);
        assert_eq!(d[1].origin, "external");
        assert_eq!(d[1].rule_level, "critical");
        assert_eq!(d[1].rule_id, "crowdstrike.falcon:Credential dumping");
        assert!(d[1].event_id.starts_with("sha256-"));
    }
}

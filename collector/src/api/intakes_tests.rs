//! Push intakes through the routes: created with a parser, fed a JSON object, an array,
//! NDJSON and gzip; unknown keys, unreadable and oversize bodies refused with nothing stored;
//! intake events evaluated centrally and raising alerts.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};

use super::tests::{harness, Harness};
use crate::config::IngestConfig;

impl Harness {
    async fn push(&self, key: &str, body: impl Into<Body>, gzip: bool) -> (StatusCode, Value) {
        let mut req = Request::post(format!("/api/v1/intake/{key}"))
            .header(header::CONTENT_TYPE, "application/json");
        if gzip {
            req = req.header(header::CONTENT_ENCODING, "gzip");
        }
        let (status, _, body) = self.call(req.body(body.into()).unwrap()).await;
        (status, body)
    }
}

fn okta_event(i: usize, outcome: &str) -> Value {
    json!({
        "uuid": format!("b1f5c5a0-0000-4000-8000-00000000000{i}"),
        "published": "2026-11-26T09:15:0{i}.000Z",
        "eventType": "user.session.start",
        "displayMessage": "User login to Okta",
        "severity": "INFO",
        "outcome": {"result": outcome, "reason": if outcome == "FAILURE" { "INVALID_CREDENTIALS" } else { "" }},
        "actor": {"id": "00u1", "type": "User", "alternateId": "alice@example.com", "displayName": "Alice"},
        "client": {"ipAddress": "203.0.113.50", "userAgent": {"rawUserAgent": "curl/8"}},
        "target": []
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intake_takes_json_arrays_ndjson_and_gzip() {
    let h = harness(IngestConfig::default());
    let (status, body) = h
        .send_json(
            "POST",
            "/api/v1/intakes",
            json!({"name": "okta-prod", "format": "okta"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("vgi_"));
    let (status, body) = h
        .send_json(
            "POST",
            "/api/v1/intakes",
            json!({"name": "okta-prod", "format": "okta"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = h
        .send_json(
            "POST",
            "/api/v1/intakes",
            json!({"name": "x", "format": "nosuch"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("okta"),
        "{body}"
    );

    // One object, an array, NDJSON, gzip.
    let (status, body) = h
        .push(&key, okta_event(1, "SUCCESS").to_string(), false)
        .await;
    assert_eq!(
        (status, body["accepted"].clone()),
        (StatusCode::OK, json!(1)),
        "{body}"
    );
    let arr = json!([okta_event(2, "SUCCESS"), okta_event(3, "FAILURE")]).to_string();
    let (status, body) = h.push(&key, arr, false).await;
    assert_eq!(
        (status, body["accepted"].clone()),
        (StatusCode::OK, json!(2)),
        "{body}"
    );
    let nd = format!(
        "{}\n{}\n",
        okta_event(4, "SUCCESS"),
        okta_event(5, "SUCCESS")
    );
    let (status, body) = h.push(&key, nd.clone(), false).await;
    assert_eq!(
        (status, body["accepted"].clone()),
        (StatusCode::OK, json!(2)),
        "{body}"
    );
    let gz = vigie_wire::gzip(nd.as_bytes(), 1);
    let (status, body) = h.push(&key, gz, true).await;
    assert_eq!(
        (status, body["accepted"].clone()),
        (StatusCode::OK, json!(2)),
        "{body}"
    );

    // Normalized by the okta parser, with the source and the original record.
    let found = h
        .get("/api/v1/events?q=vigie.source:%22intake:okta-prod%22&limit=100")
        .await;
    assert_eq!(found["total"], 7, "{found}");
    let ev = &found["events"][0];
    assert_eq!(ev["event"]["dataset"], "okta.system", "{ev}");
    assert!(ev["event"]["original"]
        .as_str()
        .unwrap()
        .contains("user.session.start"));
    let list = h.get("/api/v1/intakes").await;
    assert_eq!(list["items"][0]["events"], 7, "{list}");
    assert!(
        list["items"][0].get("key").is_none(),
        "keys are never listed"
    );

    // Refusals: nothing stored.
    let (status, body) = h
        .push("vgi_nosuchkey", okta_event(6, "SUCCESS").to_string(), false)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = h.push(&key, "{\"uuid\": ", false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{body}"
    );
    let (status, body) = h.push(&key, "[1, 2]", false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = h.push(&key, vec![0x1f, 0x8b, 0, 1, 2, 3], true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A gzip bomb: small on the wire, over the decompression cap once inflated.
    let cap = h.state.cfg.ingest.max_decompressed_bytes;
    let bomb = vigie_wire::gzip(&vec![b' '; cap + 1], 6);
    let (status, body) = h.push(&key, bomb, true).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let found = h
        .get("/api/v1/events?q=vigie.source:%22intake:okta-prod%22")
        .await;
    assert_eq!(found["total"], 7);
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("vigie_intake_refused_total 5\n"),
        "{metrics}"
    );

    // Deleted: the key stops working.
    let id = list["items"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = h
        .send_json("DELETE", &format!("/api/v1/intakes/{id}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h
        .push(&key, okta_event(7, "SUCCESS").to_string(), false)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_events_are_evaluated_centrally_and_external_alerts_raised() {
    let h = harness(IngestConfig::default());
    let rule = "title: Okta login failure
id: vigie-test-okta-failure
logsource: {product: okta, service: okta}
detection:
  sel: {okta.event_type: user.session.start, okta.outcome.result: FAILURE}
  condition: sel
level: medium
";
    let req = Request::post("/api/v1/rules")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", super::tests::TOKEN),
        )
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(Body::from(rule))
        .unwrap();
    let (status, _, body) = h.call(req).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, okta) = h
        .send_json(
            "POST",
            "/api/v1/intakes",
            json!({"name": "okta", "format": "okta"}),
        )
        .await;
    let (_, json_intake) = h
        .send_json(
            "POST",
            "/api/v1/intakes",
            json!({"name": "edr", "format": "json"}),
        )
        .await;
    let arr = json!([
        okta_event(1, "FAILURE"),
        okta_event(2, "FAILURE"),
        okta_event(3, "SUCCESS")
    ]);
    let (status, body) = h
        .push(okta["key"].as_str().unwrap(), arr.to_string(), false)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A third-party alert pushed as plain JSON.
    let alert = json!({"event": {"kind": "alert", "dataset": "edr.alerts", "severity": 8},
        "rule": {"name": "Credential dumping", "id": "edr-42"}, "host": {"name": "ws-7"}});
    let (status, body) = h
        .push(
            json_intake["key"].as_str().unwrap(),
            alert.to_string(),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let alerts = h.get("/api/v1/alerts?sort=first_seen").await;
    assert_eq!(alerts["total"], 2, "{alerts}");
    let items = alerts["items"].as_array().unwrap();
    let central = items.iter().find(|a| a["origin"] == "central").unwrap();
    assert_eq!(central["rule"]["id"], "vigie-test-okta-failure");
    assert_eq!(central["occurrences"], 2);
    let external = items.iter().find(|a| a["origin"] == "external").unwrap();
    assert_eq!(external["rule"]["level"], "high", "{external}");
}

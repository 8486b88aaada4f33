//! Enrollment and mTLS, with the real binaries: only a valid token enrolls,
//! only this CA's certificates ship, the API wants its bearer token.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use vigie_e2e::{body_text, https_client, Agent, Collector};

fn enroll(collector: &Collector, token: &str, dir: &std::path::Path) -> std::process::Output {
    Agent::enroll_with(collector, token, dir)
}

#[test]
fn tokens_are_checked_and_consumed() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(tmp.path()).unwrap();

    let out = enroll(&collector, "vgt_not_a_real_token", &tmp.path().join("a1"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown enrollment token"), "{err}");
    assert!(
        !tmp.path().join("a1/agent.key").exists(),
        "nothing written on refusal"
    );

    let once = collector.token(&[]).unwrap();
    assert!(enroll(&collector, &once, &tmp.path().join("a2"))
        .status
        .success());
    let out = enroll(&collector, &once, &tmp.path().join("a3"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no uses left"));

    let short = collector.token(&["--ttl", "1s"]).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let out = enroll(&collector, &short, &tmp.path().join("a4"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expired"));

    let twice = collector
        .token(&["--uses", "2", "--group", "bastions"])
        .unwrap();
    assert!(enroll(&collector, &twice, &tmp.path().join("a5"))
        .status
        .success());
    assert!(enroll(&collector, &twice, &tmp.path().join("a6"))
        .status
        .success());
    assert!(!enroll(&collector, &twice, &tmp.path().join("a7"))
        .status
        .success());

    let (_, agents) = collector.get("/api/v1/agents").unwrap();
    let items = agents["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items.iter().filter(|a| a["group"] == "bastions").count(), 2);
    // The key never left the agent; it is private on disk.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tmp.path().join("a2/agent.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn batches_need_a_certificate_from_this_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(&tmp.path().join("c1")).unwrap();
    let other = Collector::start(&tmp.path().join("c2")).unwrap();
    let good = Agent::enroll(tmp.path(), "good", &collector).unwrap();
    let foreign = Agent::enroll(tmp.path(), "foreign", &other).unwrap();
    let ca = std::fs::read_to_string(collector.ca_path()).unwrap();
    let body = vigie_wire::gzip(b"{\"message\":\"hi\"}\n", 1);
    let post = |client: &reqwest::blocking::Client| {
        client
            .post(collector.url("/v1/batches"))
            .header("Vigie-Batch", "t/1")
            .header("Content-Encoding", "gzip")
            .body(body.clone())
            .send()
    };

    // A certificate from another CA fails the TLS handshake.
    let (cert, key) = foreign.identity().unwrap();
    let client = https_client(&ca, Some((&cert, &key))).unwrap();
    assert!(
        post(&client).is_err(),
        "a foreign client certificate must be refused"
    );

    // No certificate: TLS is fine (enrollment needs that) but batches are refused.
    let anon = https_client(&ca, None).unwrap();
    let r = post(&anon).unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(body_text(r).contains("client_certificate_required"));

    // The enrolled agent's certificate ships; a retry of the same id is a duplicate.
    let (cert, key) = good.identity().unwrap();
    let client = https_client(&ca, Some((&cert, &key))).unwrap();
    let r = post(&client).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(body_text(r), r#"{"accepted":1,"duplicate":false}"#);
    let r = post(&client).unwrap();
    assert_eq!(body_text(r), r#"{"duplicate":true}"#);
    assert_eq!(collector.count("").unwrap(), 1);

    // The agent trusts only its CA: a collector with another CA is refused.
    let wrong_ca = https_client(
        &std::fs::read_to_string(other.ca_path()).unwrap(),
        Some((&cert, &key)),
    )
    .unwrap();
    assert!(post(&wrong_ca).is_err());
}

#[test]
fn api_requires_the_bearer_token() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(tmp.path()).unwrap();
    let r = collector
        .http()
        .get(collector.url("/api/v1/events"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = collector
        .http()
        .get(collector.url("/api/v1/agents"))
        .bearer_auth("vga_wrong")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (status, _) = collector.get("/api/v1/events").unwrap();
    assert_eq!(status, 200);
    let r = collector
        .http()
        .get(collector.url("/metrics"))
        .send()
        .unwrap();
    assert!(body_text(r).contains("vigie_events_stored_total"));
    let (status, v) = collector.get("/api/v1/events?q=(unclosed").unwrap();
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "bad_query");
    let (status, _) = collector.get("/api/v1/events?limit=10001").unwrap();
    assert_eq!(status, 400);
}

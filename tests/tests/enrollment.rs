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

/// Reads the agent id from an enrolled agent's identity.json.
fn agent_id(agent: &Agent) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(agent.dir.join("identity.json")).unwrap()).unwrap();
    v["agent_id"].as_str().unwrap().to_owned()
}

/// Waits until the log of `proc` (`whose`: for the message) satisfies `seen`; the log is
/// shown on timeout. The log is read from the process's output by another thread, so a line
/// the process wrote before answering may arrive a moment after the answer.
fn wait_for_proc_log(
    proc: Option<&vigie_e2e::Proc>,
    whose: &str,
    what: &str,
    seen: impl Fn(&str) -> bool,
    timeout: Duration,
) {
    let log = || proc.map(vigie_e2e::Proc::log_text).unwrap_or_default();
    let start = std::time::Instant::now();
    while !seen(&log()) {
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what} in the {whose}'s log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `agent`'s log contains `text`.
fn wait_for_log(agent: &Agent, text: &str, timeout: Duration) {
    let what = format!("{text:?}");
    wait_for_proc_log(
        agent.proc.as_ref(),
        "agent",
        &what,
        |log| log.contains(text),
        timeout,
    );
}

/// Waits until the collector's log satisfies `seen`.
fn wait_for_collector_log(collector: &Collector, what: &str, seen: impl Fn(&str) -> bool) {
    let timeout = Duration::from_secs(10);
    wait_for_proc_log(collector.proc.as_ref(), "collector", what, seen, timeout);
}

fn set_cert_days(collector: &mut Collector, days: u32) {
    let path = collector.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("cert_validity_days") {
            out.push_str(&format!("cert_validity_days = {days}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(out.contains(&format!("cert_validity_days = {days}")));
    std::fs::write(&path, out).unwrap();
    collector.restart().unwrap();
}

/// A running agent renews its certificate (new key, same identity) and goes on
/// shipping with it; once revoked, its batches are refused at once, both sides
/// say so, and the CRL lists it.
#[test]
fn a_running_agent_renews_its_certificate_and_a_revoked_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut collector = Collector::start(tmp.path()).unwrap();
    // Enrolled with a one-day certificate, renewed under a 30-day policy.
    set_cert_days(&mut collector, 1);
    let mut agent = Agent::enroll(tmp.path(), "agent", &collector).unwrap();
    let id = agent_id(&agent);
    set_cert_days(&mut collector, 30);
    let (old_cert, old_key) = agent.identity().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let app = logs.join("app.log");
    agent
        .configure_via(
            &collector,
            &collector.base_url(),
            // The one-day certificate (backdated one hour: 25 h of life) is
            // due at once; a 30-day one is not.
            "renew_before_secs = 89000",
            "max_events = 100\ntimeout_ms = 100",
            &format!(
                "[[sources]]\nname = \"app\"\ntype = \"file\"\ninclude = [\"{}\"]\nformat = \"plain\"\nread_from = \"beginning\"\n",
                app.display()
            ),
        )
        .unwrap();
    let line = |i: usize| format!("renewal line {i:04}");
    vigie_e2e::append_lines(&app, 0, 50, line);
    agent.start().unwrap();
    wait_for_log(
        &agent,
        "client certificate renewed",
        Duration::from_secs(60),
    );
    let (new_cert, new_key) = agent.identity().unwrap();
    assert_ne!(new_cert, old_cert);
    assert_ne!(new_key, old_key, "a renewal brings a new key");
    let old_serial = vigie_wire::pki::agent_identity(
        vigie_wire::pki::parse_cert_pem(&old_cert).unwrap()[0].as_ref(),
    )
    .unwrap();
    let new_serial = vigie_wire::pki::agent_identity(
        vigie_wire::pki::parse_cert_pem(&new_cert).unwrap()[0].as_ref(),
    )
    .unwrap();
    assert_eq!(new_serial.0, id, "same identity");
    assert_ne!(new_serial.1, old_serial.1);
    let (_, a) = collector.get(&format!("/api/v1/agents/{id}")).unwrap();
    let not_after = chrono::DateTime::parse_from_rfc3339(a["cert_not_after"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert!(
        not_after > chrono::Utc::now() + chrono::Duration::days(29),
        "the collector knows the 30-day certificate: {a}"
    );
    // Shipping goes on with the new certificate.
    vigie_e2e::append_lines(&app, 50, 100, line);
    assert_eq!(
        collector
            .wait_count("renewal", 100, Duration::from_secs(60))
            .unwrap(),
        100
    );
    let (_, a) = collector.get(&format!("/api/v1/agents/{id}")).unwrap();
    assert_eq!(a["status"], "online", "{a}");

    // Revoked through the API: refused at once, on connections kept alive too.
    let (code, body) = collector
        .post(
            &format!("/api/v1/agents/{id}/revoke"),
            &serde_json::json!({}),
        )
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "revoked", "{body}");
    vigie_e2e::append_lines(&app, 100, 150, line);
    wait_for_log(
        &agent,
        "this agent has been revoked",
        Duration::from_secs(30),
    );
    wait_for_collector_log(&collector, "the refused request", |log| {
        log.contains("request with a revoked certificate refused")
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(collector.count("renewal").unwrap(), 100, "nothing stored");
    let crl = std::fs::read_to_string(collector.dir.join("pki/crl.pem")).unwrap();
    assert!(crl.starts_with("-----BEGIN X509 CRL-----"));
    let (code, _) = collector
        .post("/api/v1/agents/agt_nobody/revoke", &serde_json::json!({}))
        .unwrap();
    assert_eq!(code, 404);

    // The command line does the same on the collector's data directory.
    let other = Agent::enroll(tmp.path(), "other", &collector).unwrap();
    let other_id = agent_id(&other);
    let cfg = collector.config_path();
    let revoke = |id: &str| {
        vigie_e2e::run(
            "vigie-collector",
            &["agent", "revoke", "--config", &cfg.to_string_lossy(), id],
        )
    };
    let out = revoke(&other_id);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, a) = collector
        .get(&format!("/api/v1/agents/{other_id}"))
        .unwrap();
    assert_eq!(a["status"], "revoked");
    let out = revoke("agt_nobody");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no agent agt_nobody"));

    // A new server certificate from the same CA: agents trust it unchanged.
    let server_pem = collector.dir.join("pki/server.pem");
    let before = std::fs::read_to_string(&server_pem).unwrap();
    let out = vigie_e2e::run(
        "vigie-collector",
        &[
            "server-cert",
            "--config",
            &cfg.to_string_lossy(),
            "--hostname",
            "127.0.0.1",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(std::fs::read_to_string(&server_pem).unwrap(), before);
    collector.restart().unwrap();
    Agent::enroll(tmp.path(), "third", &collector).unwrap();
}

/// A certificate from this CA, for an enrolled agent, but expired: the handshake is refused,
/// the collector says why, and the agent says to enroll again.
#[test]
fn an_expired_certificate_is_refused_and_both_sides_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(tmp.path()).unwrap();
    let mut agent = Agent::enroll(tmp.path(), "agent", &collector).unwrap();
    let id = agent_id(&agent);
    // Signed with the collector's own CA key, valid for a day that ended a day ago.
    let ca_pem = std::fs::read_to_string(collector.ca_path()).unwrap();
    let ca_key = std::fs::read_to_string(collector.dir.join("pki/ca.key")).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&ca_pem, rcgen::KeyPair::from_pem(&ca_key).unwrap())
            .unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, id.clone());
    params.subject_alt_names = vec![rcgen::SanType::URI(
        format!("vigie://agent/{id}").try_into().unwrap(),
    )];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = std::time::SystemTime::now();
    params.not_before = (now - Duration::from_secs(2 * 86_400)).into();
    params.not_after = (now - Duration::from_secs(86_400)).into();
    let cert = params.signed_by(&key, &issuer).unwrap();

    let client = https_client(&ca_pem, Some((&cert.pem(), &key.serialize_pem()))).unwrap();
    let sent = client
        .post(collector.url("/v1/batches"))
        .header("Vigie-Batch", "t/1")
        .body("{\"message\":\"hi\"}\n")
        .send();
    assert!(sent.is_err(), "an expired certificate must be refused");
    wait_for_collector_log(&collector, "the refused handshake, saying why", |log| {
        log.contains("TLS handshake refused") && log.to_lowercase().contains("expired")
    });

    // The agent itself, on that certificate: it says what to do.
    std::fs::write(agent.dir.join("agent.pem"), cert.pem()).unwrap();
    std::fs::write(agent.dir.join("agent.key"), key.serialize_pem()).unwrap();
    agent
        .configure(&collector, "max_events = 10\ntimeout_ms = 100", "")
        .unwrap();
    agent.start().unwrap();
    wait_for_log(&agent, "enroll the agent again", Duration::from_secs(30));
}

//! Bad input gets a clear answer and loses nothing else: gzip bombs, lines
//! that are not JSON, broken gzip, bad batch ids, bad configs.

#![allow(clippy::unwrap_used)]

use vigie_e2e::{body_text, https_client, run, Agent, Collector};

fn agent_client(collector: &Collector, agent: &Agent) -> reqwest::blocking::Client {
    let ca = std::fs::read_to_string(collector.ca_path()).unwrap();
    let (cert, key) = agent.identity().unwrap();
    https_client(&ca, Some((&cert, &key))).unwrap()
}

#[test]
fn bombs_broken_batches_and_bad_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let collector = Collector::start(tmp.path()).unwrap();
    let agent = Agent::enroll(tmp.path(), "agent", &collector).unwrap();
    let client = agent_client(&collector, &agent);
    let post = |id: &str, body: Vec<u8>| {
        client
            .post(collector.url("/v1/batches"))
            .header("Vigie-Batch", id)
            .header("Content-Encoding", "gzip")
            .body(body)
            .send()
            .unwrap()
    };

    // 200 MiB of zeros in a small gzip: refused at the cap with 413.
    let bomb = vigie_wire::gzip(&vec![b' '; 200 << 20], 9);
    let r = post("s/1", bomb);
    assert_eq!(r.status().as_u16(), 413);

    let r = post("s/2", b"definitely not gzip".to_vec());
    assert_eq!(r.status().as_u16(), 400);

    let r = post("no-sequence", vigie_wire::gzip(b"{}\n", 1));
    assert_eq!(r.status().as_u16(), 400);
    assert!(body_text(r).contains("Vigie-Batch"));

    // Lines that are not JSON objects are named; the others are stored.
    let body = b"{\"message\":\"kept 1\"}\nnot json\n{\"message\":\"kept 2\"}\n42\n";
    let r = post("s/3", vigie_wire::gzip(body, 1));
    assert_eq!(r.status().as_u16(), 400);
    let v: serde_json::Value = serde_json::from_str(&body_text(r)).unwrap();
    assert_eq!(v["rejected_lines"], serde_json::json!([2, 4]));
    assert_eq!(v["accepted"], 2);
    assert_eq!(collector.count("kept").unwrap(), 2);
    let (_, dl) = collector.get("/api/v1/dead-letters").unwrap();
    assert_eq!(dl["items"].as_array().unwrap().len(), 2, "{dl}");
}

#[test]
fn bad_configs_name_the_key_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("agent.toml");
    std::fs::write(
        &cfg,
        "data_dir = \"/tmp/x\"\n[collector]\nurl = \"https://c:8443\"\nca_file = \"ca.pem\"\n\n[[sources]]\nname = \"auth\"\ntype = \"file\"\ninclude = [\"/var/log/auth.log\"]\nformat = \"syslog\"\nread_form = \"end\"\n",
    )
    .unwrap();
    let out = run(
        "vigie-agent",
        &["check", "--config", &cfg.to_string_lossy()],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("agent.toml:11:") && err.contains("read_form"),
        "{err}"
    );

    std::fs::write(
        &cfg,
        "data_dir = \"/tmp/x\"\n[collector]\nurl = \"https://c:8443\"\nca_file = \"ca.pem\"\n",
    )
    .unwrap();
    let out = run(
        "vigie-agent",
        &["check", "--config", &cfg.to_string_lossy()],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("not enrolled yet"));

    let out = run(
        "vigie-collector",
        &["serve", "--config", "/nonexistent/collector.toml"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/collector.toml"));
}

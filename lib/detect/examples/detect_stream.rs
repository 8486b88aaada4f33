//! Evaluates a mixed Linux stream REPEAT times against rule paths, for instruction counts
//! under `valgrind --tool=callgrind` (repeatable where wall time on a busy machine is not):
//! `REPEAT=1 valgrind --tool=callgrind target/release/examples/detect_stream RULES...`
use std::path::PathBuf;

fn main() {
    let paths: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let repeat: usize = std::env::var("REPEAT")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let mut opts = vigie_detect::LoadOptions::default();
    if let Ok(dir) = std::env::var("MAPPINGS") {
        opts.mappings = vigie_detect::load_mapping_dir(dir.as_ref()).expect("mappings");
    }
    let (set, _) = vigie_detect::RuleSet::load(&paths, &opts).expect("load");
    let kinds = [
        r#"{"process":{"executable":"/usr/bin/curl","command_line":"curl -s https://updates.example.com/x N","pid":1,"parent":{"pid":2,"executable":"/bin/bash"}},"user":{"name":"alice"},"vigie":{"logsource":{"product":"linux","category":"process_creation"}}}"#,
        r#"{"process":{"executable":"/usr/bin/ls","command_line":"ls -la /var/log N","pid":1,"parent":{"pid":2,"executable":"/bin/bash"}},"user":{"name":"alice"},"vigie":{"logsource":{"product":"linux","category":"process_creation"}}}"#,
        r#"{"type":"SYSCALL","syscall":"59","exe":"/usr/sbin/sshd","comm":"sshd","key":"exec","vigie":{"logsource":{"product":"linux","service":"auditd"}}}"#,
        r#"{"message":"Accepted publickey for alice from 198.51.100.7 port 40000 ssh2 N","process":{"name":"sshd"},"vigie":{"logsource":{"product":"linux","service":"sshd"}}}"#,
        r#"{"message":"pam_unix(cron:session): session opened for user root(uid=0) by (uid=0) N","process":{"name":"CRON"},"vigie":{"logsource":{"product":"linux","service":"cron"}}}"#,
    ];
    let events: Vec<vigie_event::Event> = (0..2000)
        .map(|i| {
            let line = kinds[i % kinds.len()].replace(" N", &format!(" {i}"));
            let mut ev = vigie_event::Event::from_value(serde_json::from_str(&line).expect("json"))
                .expect("object");
            // As normalized events have them: the raw line, and a message.
            ev.set(
                "event.original",
                format!("Nov 26 10:00:00 web-1 proc[{i}]: {line}"),
            );
            if !ev.contains("message") {
                ev.set("message", format!("record {i} of the mixed stream"));
            }
            ev
        })
        .collect();
    let mut hits = 0;
    for _ in 0..repeat {
        for e in &events {
            hits += set.evaluate(e).len();
        }
    }
    println!(
        "{} rules, {} events x {repeat}, {hits} matches",
        set.len(),
        events.len()
    );
}

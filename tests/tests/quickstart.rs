//! The README's first command: the quickstart replays the bundled samples
//! through a real agent and collector and says how many arrived.

#![allow(clippy::unwrap_used)]

use vigie_e2e::run;

#[test]
fn quickstart_replays_every_sample_and_can_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("qs");
    let dir_s = dir.to_string_lossy().into_owned();
    let out = run(
        "vigie-collector",
        &["quickstart", "--dir", &dir_s, "--exit-after-replay"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("412 events arrived"), "{stdout}");
    assert!(stdout.contains("auth      (syslog): 202"), "{stdout}");
    assert!(
        stdout.contains("SSH failed passwords in auth.log: 60"),
        "{stdout}"
    );
    assert!(stdout.contains("curl -s --cacert"), "{stdout}");

    // Same directory again: nothing is shipped twice.
    let out = run(
        "vigie-collector",
        &["quickstart", "--dir", &dir_s, "--exit-after-replay"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stored in total: 412"), "{stdout}");
}

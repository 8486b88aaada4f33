//! The README's first command: the quickstart replays the bundled samples
//! through a real agent and collector, says how many arrived and which alerts the agent's
//! edge rules raised.

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
    assert!(stdout.contains("auth      (linux_auth): 202"), "{stdout}");
    assert!(
        stdout.contains("SSH failed passwords in auth.log: 60"),
        "{stdout}"
    );
    assert!(stdout.contains("curl -s --cacert"), "{stdout}");
    // The agent runs Vigie's rules at the edge: the sample's root shell and Teleport denials
    // are alerts, the 11 denials grouped into one.
    assert!(stdout.contains("3 alert(s) raised"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("Teleport Access Denied") && l.contains("x11")),
        "{stdout}"
    );
    assert!(
        stdout.contains("Sudo Used to Open a Root Shell"),
        "{stdout}"
    );

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
    assert!(
        stdout.contains("3 alert(s) raised"),
        "no alert twice: {stdout}"
    );
}

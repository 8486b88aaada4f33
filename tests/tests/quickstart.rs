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
    // The collector's rules run at the edge (the sample's root shell, Teleport denials) and
    // its correlations at the collector: the SSH brute force is one alert, its 56 firings
    // (the 5th to the 60th failure) grouped, and the success that followed it another.
    let alerts_line = stdout
        .lines()
        .find(|l| l.contains("alert(s) raised"))
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("correlation SSH Brute Force ") && l.contains("x56")),
        "{stdout}"
    );
    assert!(
        stdout.contains("SSH Brute Force Followed By A Successful Login"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("edge") && l.contains("Sudo Used to Open a Root Shell")),
        "{stdout}"
    );
    assert!(stdout.contains("Teleport Access Denied"), "{stdout}");

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
    assert!(stdout.contains(&alerts_line), "no alert twice: {stdout}");
}

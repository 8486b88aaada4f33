//! systemd's notification protocol (`sd_notify`), without libsystemd: readiness
//! (`READY=1`), stopping (`STOPPING=1`) and watchdog pings (`WATCHDOG=1`), sent as datagrams
//! to the socket named by `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
//! Outside systemd (no `NOTIFY_SOCKET`) every call does nothing. Used by both binaries, whose
//! units say `Type=notify` and `WatchdogSec=`.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

/// Sends `state` to systemd, if it asked for notifications; whether it was sent.
pub fn notify(state: &str) -> bool {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(socket) => notify_to(Path::new(&socket), state),
        None => false,
    }
}

/// Sends `state` to the notification socket at `socket`.
pub fn notify_to(socket: &Path, state: &str) -> bool {
    let Ok(sock) = UnixDatagram::unbound() else {
        return false;
    };
    let name = socket.as_os_str().as_encoded_bytes();
    if let Some(abstract_name) = name.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        return std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
            .is_ok();
    }
    sock.send_to(state.as_bytes(), socket).is_ok()
}

/// Half the watchdog timeout systemd set for this process (`WATCHDOG_USEC`, when
/// `WATCHDOG_PID` is unset or ours): how often to ping.
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Pings the watchdog every [`watchdog_interval`] while the runtime lives (a hung runtime
/// stops pinging and systemd restarts the service); does nothing outside systemd.
pub fn spawn_watchdog() {
    // Once per process: the pipeline restarts on new central sources.
    static SPAWNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SPAWNED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let Some(every) = watchdog_interval() else {
        return;
    };
    tokio::spawn(async move {
        loop {
            notify("WATCHDOG=1");
            tokio::time::sleep(every).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_reach_a_notification_socket() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(notify_to(&path, "READY=1"));
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&buf[..n], b"READY=1");
        // A socket that is not there: nothing sent, no error raised.
        assert!(!notify_to(&dir.path().join("gone.sock"), "READY=1"));
    }
}

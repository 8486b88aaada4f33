//! `tls-sink`: a TLS listener on loopback that counts lines.
//!
//! It stands in for a log server receiving rsyslog's `omfwd` over TLS
//! (RFC 5425-style, newline-framed TCP). Every connection is served by a
//! thread that reads through rustls and counts `\n` bytes into a shared
//! counter; when `lines` newlines have arrived the sink prints one line and
//! exits:
//!
//! `tls-sink: lines=N bytes=B connections=K start_unix_ns=S first_byte_unix_ns=F last_line_unix_ns=L`
//!
//! Times are Unix nanoseconds, so a script can compare them with the start
//! time of the sender it launched (`date +%s%N`). The certificates come from
//! `vigie_wire::pki` (a CA and a server certificate for 127.0.0.1 and
//! localhost), written to `--pki-dir` as `ca.pem`, `server.pem`,
//! `server.key` unless already there, so the sender can trust `ca.pem`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

/// What `tls-sink` needs.
#[derive(Debug, Clone)]
pub struct SinkOpts {
    pub lines: u64,
    pub port: u16,
    pub pki_dir: PathBuf,
    pub port_file: Option<PathBuf>,
    pub timeout: Duration,
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Creates the CA and server certificate in `dir` if absent.
pub fn ensure_pki(dir: &Path) -> Result<()> {
    let (ca_p, cert_p, key_p) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    if ca_p.exists() && cert_p.exists() && key_p.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let ca = vigie_wire::pki::create_ca("bench")?;
    let server = vigie_wire::pki::issue_server_cert(
        &ca,
        &["127.0.0.1".to_owned(), "localhost".to_owned()],
        30,
    )?;
    std::fs::write(&ca_p, &ca.cert_pem)?;
    std::fs::write(&cert_p, &server.cert_pem)?;
    std::fs::write(&key_p, &server.key_pem)?;
    Ok(())
}

struct Shared {
    target: u64,
    lines: AtomicU64,
    bytes: AtomicU64,
    connections: AtomicU64,
    first_byte_ns: AtomicU64,
    done: Mutex<Option<u64>>,
    cv: Condvar,
}

fn serve(tcp: TcpStream, cfg: Arc<rustls::ServerConfig>, shared: Arc<Shared>) -> Result<()> {
    let conn = rustls::ServerConnection::new(cfg)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match tls.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            // A peer closing without close_notify is the normal end of a forwarder.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let _ =
            shared
                .first_byte_ns
                .compare_exchange(0, unix_ns(), Ordering::SeqCst, Ordering::SeqCst);
        shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let newlines = buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
        let total = shared.lines.fetch_add(newlines, Ordering::SeqCst) + newlines;
        if newlines > 0 && total >= shared.target {
            let now = unix_ns();
            if let Ok(mut d) = shared.done.lock() {
                d.get_or_insert(now);
                shared.cv.notify_all();
            }
        }
    }
}

/// Runs the sink until `lines` lines arrived (prints the result line) or the timeout.
pub fn run(opts: &SinkOpts) -> Result<()> {
    ensure_pki(&opts.pki_dir)?;
    let read = |name: &str| {
        std::fs::read_to_string(opts.pki_dir.join(name)).with_context(|| format!("reading {name}"))
    };
    let cfg = Arc::new(vigie_wire::pki::server_tls_config(
        &read("server.pem")?,
        &read("server.key")?,
        &read("ca.pem")?,
    )?);
    let listener = TcpListener::bind(("127.0.0.1", opts.port)).context("binding the sink")?;
    let port = listener.local_addr()?.port();
    if let Some(pf) = &opts.port_file {
        let tmp = pf.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{port}")?;
        drop(f);
        std::fs::rename(&tmp, pf)?;
    }
    eprintln!(
        "tls-sink: listening on 127.0.0.1:{port}, waiting for {} lines",
        opts.lines
    );
    let start_ns = unix_ns();
    let shared = Arc::new(Shared {
        target: opts.lines,
        lines: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        connections: AtomicU64::new(0),
        first_byte_ns: AtomicU64::new(0),
        done: Mutex::new(None),
        cv: Condvar::new(),
    });
    let acc = shared.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            acc.connections.fetch_add(1, Ordering::Relaxed);
            let (cfg, sh) = (cfg.clone(), acc.clone());
            std::thread::spawn(move || {
                if let Err(e) = serve(tcp, cfg, sh) {
                    eprintln!("tls-sink: connection ended: {e}");
                }
            });
        }
    });
    let guard = shared
        .done
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let (guard, _) = shared
        .cv
        .wait_timeout_while(guard, opts.timeout, |d| d.is_none())
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    let Some(last) = *guard else {
        bail!(
            "tls-sink: only {} of {} lines after {} s",
            shared.lines.load(Ordering::SeqCst),
            opts.lines,
            opts.timeout.as_secs()
        );
    };
    println!(
        "tls-sink: lines={} bytes={} connections={} start_unix_ns={start_ns} first_byte_unix_ns={} last_line_unix_ns={last}",
        shared.lines.load(Ordering::SeqCst),
        shared.bytes.load(Ordering::SeqCst),
        shared.connections.load(Ordering::SeqCst),
        shared.first_byte_ns.load(Ordering::SeqCst),
    );
    std::io::stdout().flush()?;
    Ok(())
}

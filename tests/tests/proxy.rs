//! Tests of the fault-injection proxy itself, against a plain tokio TCP echo
//! server (no Vigie binaries). Timing assertions are lower bounds only; the
//! black-hole checks wait a short read timeout for bytes that must not come.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigie_e2e::proxy::{FaultProxy, Mode};

/// Bounds waits that must succeed; never reached when things work.
const GENEROUS: Duration = Duration::from_secs(10);
/// How long a black-holed read waits for bytes that must not come.
const SILENCE: Duration = Duration::from_millis(300);

/// A tokio echo server on its own runtime; stops when dropped.
struct EchoServer {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl EchoServer {
    fn start() -> EchoServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind echo server");
        let addr = listener.local_addr().expect("echo addr");
        let accepted = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let (acc, rec) = (Arc::clone(&accepted), Arc::clone(&received));
        runtime.spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                acc.fetch_add(1, Ordering::SeqCst);
                let rec = Arc::clone(&rec);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        rec.fetch_add(n as u64, Ordering::SeqCst);
                        if stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        EchoServer {
            addr,
            accepted,
            received,
            _runtime: runtime,
        }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }
}

fn setup() -> (EchoServer, FaultProxy) {
    let echo = EchoServer::start();
    let proxy = FaultProxy::start(echo.addr).expect("start proxy");
    (echo, proxy)
}

fn connect(proxy: &FaultProxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).expect("connect to proxy");
    stream
        .set_read_timeout(Some(GENEROUS))
        .expect("read timeout");
    stream
}

/// Sends `msg` and expects it echoed back.
fn round_trip(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).expect("write");
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back).expect("echo comes back");
    assert_eq!(back, msg);
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Asserts that a read sees silence: no byte, no close, for [`SILENCE`].
fn assert_silent(stream: &mut TcpStream) {
    stream
        .set_read_timeout(Some(SILENCE))
        .expect("read timeout");
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Err(e) if is_timeout(&e) => {}
        other => panic!("expected a read timeout (silence), got {other:?}"),
    }
    stream
        .set_read_timeout(Some(GENEROUS))
        .expect("read timeout");
}

/// Asserts that the connection is closed: a read returns end of stream or a
/// reset, not a timeout.
fn assert_closed(stream: &mut TcpStream) {
    stream
        .set_read_timeout(Some(GENEROUS))
        .expect("read timeout");
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if !is_timeout(&e) => {}
        other => panic!("expected the connection closed, got {other:?}"),
    }
}

#[test]
fn pass_through_round_trip_counts_bytes_and_forwards_end_of_stream() {
    let (echo, proxy) = setup();
    let mut stream = connect(&proxy);
    // Several 64 KiB chunks, written from another thread so neither side
    // waits on a full socket buffer.
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut writer = stream.try_clone().expect("clone");
    let sent = payload.clone();
    let writing = std::thread::spawn(move || {
        writer.write_all(&sent).expect("write payload");
        writer
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
    });
    let mut back = Vec::new();
    // read_to_end returns once the echo server's close, forwarded by the
    // proxy after our half-close, arrives.
    stream.read_to_end(&mut back).expect("read echo to end");
    writing.join().expect("writer thread");
    assert!(back == payload, "echoed bytes differ from sent bytes");

    let n = payload.len() as u64;
    assert_eq!(proxy.connections_accepted(), 1);
    assert_eq!(proxy.bytes_up(), n);
    assert_eq!(proxy.bytes_down(), n);
    assert_eq!(echo.received(), n);
    assert_eq!(echo.accepted(), 1);
}

#[test]
fn delay_holds_chunks_in_both_directions_on_existing_connections() {
    let (_echo, proxy) = setup();
    let mut stream = connect(&proxy);
    round_trip(&mut stream, b"warm-up");

    let delay = Duration::from_millis(150);
    proxy.set_mode(Mode::Delay(delay));
    let started = Instant::now();
    round_trip(&mut stream, b"ping");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= 2 * delay,
        "round trip took {elapsed:?}, less than twice the delay {delay:?}"
    );

    // A new connection is delayed too.
    let mut fresh = connect(&proxy);
    let started = Instant::now();
    round_trip(&mut fresh, b"pong");
    assert!(started.elapsed() >= 2 * delay);

    proxy.set_mode(Mode::Pass);
    round_trip(&mut stream, b"after");
}

#[test]
fn black_hole_swallows_bytes_and_only_new_connections_recover() {
    let (echo, proxy) = setup();
    let mut old = connect(&proxy);
    round_trip(&mut old, b"before");
    let received_before = echo.received();
    let up_before = proxy.bytes_up();

    proxy.set_mode(Mode::BlackHole);
    // The existing connection stops forwarding without closing.
    old.write_all(b"lost").expect("write is accepted");
    assert_silent(&mut old);
    // A new connection is accepted but never reaches the upstream.
    let mut new = connect(&proxy);
    new.write_all(b"hello").expect("write is accepted");
    assert_silent(&mut new);
    assert_eq!(echo.received(), received_before, "upstream got bytes");
    assert_eq!(proxy.bytes_up(), up_before);
    assert_eq!(
        echo.accepted(),
        1,
        "a black-holed connection reached upstream"
    );
    assert_eq!(proxy.connections_accepted(), 2);

    proxy.set_mode(Mode::Pass);
    // A new connection forwards again...
    let mut recovered = connect(&proxy);
    round_trip(&mut recovered, b"back");
    // ...but black-holed connections stay dead (their stream is broken).
    old.write_all(b"still lost").expect("write is accepted");
    assert_silent(&mut old);
    new.write_all(b"still lost").expect("write is accepted");
    assert_silent(&mut new);
}

#[test]
fn refuse_closes_existing_and_new_connections_until_pass() {
    let (_echo, proxy) = setup();
    let mut old = connect(&proxy);
    round_trip(&mut old, b"before");

    proxy.set_mode(Mode::Refuse);
    assert_closed(&mut old);
    match TcpStream::connect(proxy.addr()) {
        Ok(mut refused) => assert_closed(&mut refused),
        Err(e) => assert!(!is_timeout(&e), "connect timed out: {e}"),
    }

    proxy.set_mode(Mode::Pass);
    let mut fresh = connect(&proxy);
    round_trip(&mut fresh, b"up again");
    assert_eq!(proxy.connections_accepted(), 3);
}

#[test]
fn cut_all_closes_active_connections_and_new_ones_still_work() {
    let (_echo, proxy) = setup();
    let mut first = connect(&proxy);
    let mut second = connect(&proxy);
    round_trip(&mut first, b"one");
    round_trip(&mut second, b"two");

    proxy.cut_all();
    assert_closed(&mut first);
    assert_closed(&mut second);

    let mut fresh = connect(&proxy);
    round_trip(&mut fresh, b"three");
}

#[test]
fn cut_all_closes_black_holed_connections_even_just_opened() {
    let (_echo, proxy) = setup();
    proxy.set_mode(Mode::BlackHole);
    // Opened back to back and cut at once: some are likely still in the
    // listen backlog, not yet taken by the proxy; they must be cut too.
    let mut streams: Vec<TcpStream> = (0..20).map(|_| connect(&proxy)).collect();
    for stream in &mut streams {
        stream.write_all(b"void").expect("write is accepted");
    }
    proxy.cut_all();
    for stream in &mut streams {
        assert_closed(stream);
    }
    assert_eq!(proxy.connections_accepted(), 20);
}

#[test]
fn unreachable_upstream_closes_the_client() {
    // A port nobody listens on: bind, note the address, release it.
    let dead = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let proxy = FaultProxy::start(dead).expect("start proxy");
    let mut stream = connect(&proxy);
    assert_closed(&mut stream);
    assert_eq!(proxy.bytes_up(), 0);
}

#[test]
fn drop_closes_connections_and_the_listener() {
    let (_echo, proxy) = setup();
    let addr = proxy.addr();
    let mut stream = connect(&proxy);
    round_trip(&mut stream, b"alive");
    drop(proxy);
    assert_closed(&mut stream);
    assert!(TcpStream::connect(addr).is_err(), "listener still open");
}

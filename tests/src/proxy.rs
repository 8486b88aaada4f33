//! Fault-injection TCP proxy for end-to-end tests.
//!
//! [`FaultProxy`] listens on `127.0.0.1:0` and forwards raw bytes to one
//! upstream address (TLS passes through untouched), so a test can put it
//! between `vigie-agent` and `vigie-collector` and simulate network faults
//! with [`FaultProxy::set_mode`] and [`FaultProxy::cut_all`].
//!
//! The proxy runs on its own thread with its own single-threaded tokio
//! runtime, so the (synchronous) tests drive it with plain method calls.
//! Every control call is synchronous: when [`FaultProxy::set_mode`] or
//! [`FaultProxy::cut_all`] returns, the proxy thread has applied it, so a
//! connection accepted afterwards sees the new mode, and a cut (or a switch to
//! [`Mode::Refuse`]) has already closed the connections it applies to.
//!
//! Invariants:
//! - Each direction of a connection is a reader and a writer joined by a
//!   bounded queue of chunks (at most [`QUEUE_CHUNKS`] chunks of up to
//!   [`BUF_BYTES`] bytes); nothing busy-loops, a slow peer back-pressures.
//! - End of stream is forwarded as a half-close (`FIN`); a read or write error
//!   on either side resets (`RST`) both sides.
//! - A cut, a switch to [`Mode::Refuse`] and dropping the proxy reset (`RST`)
//!   both sides of every connection.
//! - A connection that was black-holed stays black-holed for the rest of its
//!   life, whatever the mode becomes later: bytes were already lost, so its
//!   stream is broken; it is closed by [`FaultProxy::cut_all`],
//!   [`Mode::Refuse`], dropping the proxy, or once both its peers have closed.
//!   Only connections accepted after a switch back to [`Mode::Pass`] forward
//!   again.
//! - Errors never panic the proxy thread: they close the connection concerned.
//!
//! A cut also resets the connections still waiting in the listen backlog
//! (established by the kernel, not yet taken by the proxy): from the client's
//! side they are current connections too.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout, Instant};

/// Size of the read buffer of each direction of a connection.
pub const BUF_BYTES: usize = 64 * 1024;
/// Chunks queued per direction between reader and writer (relevant in
/// [`Mode::Delay`], where chunks wait out their delay in this queue).
pub const QUEUE_CHUNKS: usize = 16;
/// How long the proxy waits for the upstream to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a control call waits for the proxy thread to apply it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a cut waits for the connections to close before aborting them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What the proxy does with the traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Forward bytes both ways as they come.
    #[default]
    Pass,
    /// Hold every chunk this long (counted from when the proxy read it)
    /// before forwarding it, in both directions. Applies to chunks read after
    /// the switch, on existing and new connections.
    Delay(Duration),
    /// A dead network: connections are accepted (no upstream connection is
    /// made for new ones), bytes from both peers are read and discarded,
    /// nothing is forwarded and nothing is closed, so the peers see silence
    /// and their own timeouts must fire. Existing connections stop forwarding
    /// at once and stay black-holed even after the mode changes back.
    BlackHole,
    /// A peer that is down: new connections are accepted and reset at once;
    /// existing connections are reset when this mode is set.
    Refuse,
}

/// State shared with the connection tasks through a watch channel.
#[derive(Clone, Copy, Debug)]
struct Control {
    mode: Mode,
    /// Bumped by every cut: a connection whose epoch differs is closed.
    epoch: u64,
}

/// A control call; the proxy thread answers on `done` once applied.
enum Command {
    SetMode(Mode, std_mpsc::SyncSender<()>),
    Cut(std_mpsc::SyncSender<()>),
}

#[derive(Debug, Default)]
struct Stats {
    accepted: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
}

/// A TCP proxy on loopback that forwards to one upstream and injects faults.
///
/// Dropping it resets every connection, closes the listener and joins its
/// thread.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    stats: Arc<Stats>,
    commands: Option<mpsc::UnboundedSender<Command>>,
    thread: Option<JoinHandle<()>>,
}

/// How the forwarding part of a connection ended.
enum Outcome {
    /// Both directions reached end of stream and were half-closed.
    Done,
    /// A read or write failed.
    Failed,
    /// Cut, refused or proxy shut down.
    Cut,
    /// The mode became [`Mode::BlackHole`].
    BlackHole,
}

impl FaultProxy {
    /// Starts a proxy listening on `127.0.0.1:0` that forwards to `upstream`,
    /// in [`Mode::Pass`].
    pub fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let std_listener = StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        // A second handle on the same (non-blocking) socket, to empty the
        // backlog synchronously during a cut.
        let backlog = std_listener.try_clone()?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        let stats = Arc::new(Stats::default());
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let loop_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(accept_loop(
                    Listeners { listener, backlog },
                    upstream,
                    commands_rx,
                    loop_stats,
                ));
                // Dropping the runtime drops whatever the final drain left.
            })?;
        Ok(FaultProxy {
            addr,
            stats,
            commands: Some(commands),
            thread: Some(thread),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the mode for existing and new connections; blocks until the
    /// proxy thread has applied it (for [`Mode::Refuse`]: until the existing
    /// connections are reset).
    pub fn set_mode(&self, mode: Mode) {
        self.command(|done| Command::SetMode(mode, done));
    }

    /// Resets both sides of every current connection and blocks until they
    /// are closed. New connections are still accepted according to the mode.
    pub fn cut_all(&self) {
        self.command(Command::Cut);
    }

    /// Connections accepted since start, whatever happened to them (refused
    /// and black-holed ones included).
    pub fn connections_accepted(&self) -> u64 {
        self.stats.accepted.load(Ordering::SeqCst)
    }

    /// Bytes written to the upstream (client to upstream), all connections.
    pub fn bytes_up(&self) -> u64 {
        self.stats.up.load(Ordering::SeqCst)
    }

    /// Bytes written to clients (upstream to client), all connections.
    pub fn bytes_down(&self) -> u64 {
        self.stats.down.load(Ordering::SeqCst)
    }

    /// Sends a command and waits (bounded) for the proxy thread to apply it.
    /// A dead proxy thread makes this a no-op rather than a panic.
    fn command(&self, make: impl FnOnce(std_mpsc::SyncSender<()>) -> Command) {
        let Some(commands) = &self.commands else {
            return;
        };
        let (done, applied) = std_mpsc::sync_channel(1);
        if commands.send(make(done)).is_ok() {
            let _ = applied.recv_timeout(COMMAND_TIMEOUT);
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Closing the command channel makes the accept loop cut everything
        // and return.
        drop(self.commands.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The listening socket, twice: the tokio handle accepts, the std handle
/// (same socket) empties the backlog without waiting during a cut.
struct Listeners {
    listener: TcpListener,
    backlog: StdTcpListener,
}

/// Accepts connections and applies commands until the command channel
/// closes, then cuts every connection.
async fn accept_loop(
    listeners: Listeners,
    upstream: SocketAddr,
    mut commands: mpsc::UnboundedReceiver<Command>,
    stats: Arc<Stats>,
) {
    let Listeners { listener, backlog } = listeners;
    let (control, _) = watch::channel(Control {
        mode: Mode::Pass,
        epoch: 0,
    });
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                None => break,
                Some(Command::SetMode(mode, done)) => {
                    control.send_modify(|c| c.mode = mode);
                    if mode == Mode::Refuse {
                        cut(&control, &backlog, &stats, &mut connections).await;
                    }
                    let _ = done.try_send(());
                }
                Some(Command::Cut(done)) => {
                    cut(&control, &backlog, &stats, &mut connections).await;
                    let _ = done.try_send(());
                }
            },
            // Reap finished connections (the result of a task that panicked
            // is ignored like any other).
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((client, _peer)) => {
                    stats.accepted.fetch_add(1, Ordering::SeqCst);
                    let state = *control.borrow();
                    connections.spawn(serve(
                        client,
                        upstream,
                        state,
                        control.subscribe(),
                        Arc::clone(&stats),
                    ));
                }
                Err(_) => sleep(ACCEPT_BACKOFF).await,
            },
        }
    }
    drop(listener);
    cut(&control, &backlog, &stats, &mut connections).await;
    // Closing the last handle makes the kernel refuse new connections.
    drop(backlog);
}

/// Resets the connections waiting in the backlog, bumps the epoch so every
/// current connection resets itself, and waits for them to finish (aborting
/// stragglers after [`DRAIN_TIMEOUT`]).
async fn cut(
    control: &watch::Sender<Control>,
    backlog: &StdTcpListener,
    stats: &Stats,
    connections: &mut JoinSet<()>,
) {
    // Non-blocking: stops at `WouldBlock` once the backlog is empty.
    while let Ok((pending, _peer)) = backlog.accept() {
        stats.accepted.fetch_add(1, Ordering::SeqCst);
        if pending.set_nonblocking(true).is_ok() {
            if let Ok(pending) = TcpStream::from_std(pending) {
                arm_reset(&pending);
            }
        }
    }
    control.send_modify(|c| c.epoch += 1);
    let drained = timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// Handles one accepted client connection from start to close.
async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    state: Control,
    mut control: watch::Receiver<Control>,
    stats: Arc<Stats>,
) {
    let epoch = state.epoch;
    match state.mode {
        Mode::Refuse => return arm_reset(&client),
        Mode::BlackHole => return black_hole(client, None, control, epoch).await,
        Mode::Pass | Mode::Delay(_) => {}
    }
    let connected = tokio::select! {
        connected = timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)) => connected,
        () = wait_cut(&mut control, epoch) => return arm_reset(&client),
    };
    let Ok(Ok(up)) = connected else {
        // The upstream is down or unreachable: close the client.
        return arm_reset(&client);
    };
    let _ = client.set_nodelay(true);
    let _ = up.set_nodelay(true);
    relay(client, up, control, epoch, &stats).await;
}

/// Forwards both directions until they end, the connection is cut, or the
/// mode turns to black hole.
async fn relay(
    mut client: TcpStream,
    mut up: TcpStream,
    mut control: watch::Receiver<Control>,
    epoch: u64,
    stats: &Stats,
) {
    let outcome = {
        let (client_read, client_write) = client.split();
        let (up_read, up_write) = up.split();
        let (control_up, control_down) = (control.clone(), control.clone());
        let forward = async {
            let both = tokio::try_join!(
                pump(client_read, up_write, control_up, &stats.up),
                pump(up_read, client_write, control_down, &stats.down),
            );
            match both {
                Ok(_) => Outcome::Done,
                Err(_) => Outcome::Failed,
            }
        };
        tokio::select! {
            outcome = forward => outcome,
            outcome = wait_event(&mut control, epoch) => outcome,
        }
    };
    match outcome {
        Outcome::Done => {}
        Outcome::Failed | Outcome::Cut => {
            arm_reset(&client);
            arm_reset(&up);
        }
        Outcome::BlackHole => black_hole(client, Some(up), control, epoch).await,
    }
}

/// Copies `from` to `to`, holding each chunk for the delay in force when it
/// was read; on end of stream, half-closes `to` once the queue is flushed.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    control: watch::Receiver<Control>,
    forwarded: &AtomicU64,
) -> io::Result<()> {
    let (queue, mut queued) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE_CHUNKS);
    let read_side = async move {
        let mut buf = vec![0u8; BUF_BYTES];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                // Dropping `queue` lets the writer flush and half-close.
                return Ok(());
            }
            let mode = control.borrow().mode;
            let due = match mode {
                Mode::Delay(delay) => due_after(delay),
                _ => Instant::now(),
            };
            if queue.send((due, buf[..n].to_vec())).await.is_err() {
                // The writer is gone; it failed and reports why.
                return Ok(());
            }
        }
    };
    let write_side = async {
        while let Some((due, chunk)) = queued.recv().await {
            sleep_until(due).await;
            to.write_all(&chunk).await?;
            forwarded.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        to.shutdown().await
    };
    tokio::try_join!(read_side, write_side).map(|_| ())
}

/// `now + delay`, saturating instead of overflowing on absurd delays.
fn due_after(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

/// Reads and discards from both peers without closing anything, until the
/// connection is cut (then resets both) or both peers have closed.
async fn black_hole(
    mut client: TcpStream,
    mut up: Option<TcpStream>,
    mut control: watch::Receiver<Control>,
    epoch: u64,
) {
    let was_cut = {
        let discard_both = async {
            let up_side = async {
                if let Some(up) = up.as_mut() {
                    discard(up).await;
                }
            };
            tokio::join!(discard(&mut client), up_side);
        };
        tokio::select! {
            () = discard_both => false,
            () = wait_cut(&mut control, epoch) => true,
        }
    };
    if was_cut {
        arm_reset(&client);
        if let Some(up) = &up {
            arm_reset(up);
        }
    }
}

/// Reads until end of stream or error, dropping the bytes.
async fn discard(stream: &mut TcpStream) {
    let mut buf = vec![0u8; BUF_BYTES];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// True when a connection of `epoch` must be reset.
fn is_cut(control: &Control, epoch: u64) -> bool {
    control.epoch != epoch || control.mode == Mode::Refuse
}

/// Waits until the connection must be reset or black-holed (checking the
/// current state first).
async fn wait_event(control: &mut watch::Receiver<Control>, epoch: u64) -> Outcome {
    loop {
        let state = *control.borrow_and_update();
        if is_cut(&state, epoch) {
            return Outcome::Cut;
        }
        if state.mode == Mode::BlackHole {
            return Outcome::BlackHole;
        }
        if control.changed().await.is_err() {
            return Outcome::Cut;
        }
    }
}

/// Waits until the connection must be reset (checking the current state
/// first); returns too when the proxy is shutting down.
async fn wait_cut(control: &mut watch::Receiver<Control>, epoch: u64) {
    loop {
        if is_cut(&control.borrow_and_update(), epoch) {
            return;
        }
        if control.changed().await.is_err() {
            return;
        }
    }
}

/// Makes the coming close of `stream` a reset (`RST`) rather than a `FIN`.
/// If the option cannot be set, the close is a plain `FIN`.
fn arm_reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

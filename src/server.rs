//! Start-up, the acceptor and the end [C][E][L]: bind, say "hawkey listening on",
//! start the event loops (`workers` of them, one per CPU by default), then poll the
//! listeners and the signal socket: accept connections and hand each to a loop in
//! turn (a 503 past `maxConnections`), reload the config on SIGHUP, reopen the log on
//! SIGUSR1, and shut down gracefully on SIGTERM/SIGINT. The poll wakes every
//! `POOL_SWEEP` too, to close idle backend connections past their time [R5].
//!
//! The acceptor is one blocking thread, as the design has it: accepting in each loop
//! (with `SO_REUSEPORT` or a shared listener) would save a wake-up per connection,
//! but this way no loop is ever woken for a connection another loop takes, and
//! `maxConnections` is counted in one place.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::access_log::{AccessLog, Entry};
use crate::config::{Config, Env};
use crate::event::{EventLoop, Inbox};
use crate::front::conn::Conn;
use crate::headers::local_response;
use crate::shared::{Runtime, Shared};
use crate::signals::{Signal, Signals};
use crate::sys::{self, POLLIN};

/// Descriptors kept aside for listeners, files and the like [K].
const SPARE_FDS: u64 = 64;
/// How often idle backend connections past their time are closed [R5].
const POOL_SWEEP: Duration = Duration::from_millis(500);

/// A listening socket and where its connections go.
struct Listener {
    socket: TcpListener,
    /// For the redirect listener: the TLS listener's address.
    redirect_to: Option<SocketAddr>,
}

/// Binds, starts the loops and serves until a signal ends it.
pub fn run(config: Config, config_path: &Path) -> Result<(), String> {
    crate::log::set_debug(config.env == Env::Development);
    let tls = config
        .pems
        .as_ref()
        .map(|pems| crate::tls::server_config(&pems.key, &pems.cert))
        .transpose()?;
    let max_connections = fit_connections(config.max_connections);
    let (main, main_addr) = bind(SocketAddr::new(config.host.0, config.port))?;
    let redirect = match config.http_port {
        Some(port) => Some(bind(SocketAddr::new(config.host.0, port))?),
        None => None,
    };
    let signals = Signals::install().map_err(|e| format!("cannot catch signals: {e}"))?;
    let log = AccessLog::start(config.access_log.as_deref())?;
    let shared = Arc::new(Shared::new(&config, log, tls));
    let inboxes = start_loops(&shared, config.workers).map_err(|e| format!("cannot start: {e}"))?;

    let scheme = if shared.tls.is_some() {
        "https"
    } else {
        "http"
    };
    eprintln!("hawkey listening on {scheme}://{main_addr}");
    let mut listeners = vec![Listener {
        socket: main,
        redirect_to: None,
    }];
    if let Some((socket, addr)) = redirect {
        eprintln!("hawkey listening on http://{addr}");
        listeners.push(Listener {
            socket,
            redirect_to: Some(main_addr),
        });
    }
    let mut acceptor = Acceptor {
        shared: &shared,
        inboxes: &inboxes,
        next: 0,
        max_connections,
    };
    acceptor.serve(&listeners, &signals, config, config_path);
    drop(listeners); // stop accepting
    shut_down(&shared, &inboxes, &signals)
}

/// The event loops, each on its thread; what feeds each.
fn start_loops(shared: &Arc<Shared>, count: usize) -> io::Result<Vec<Arc<Inbox<Conn>>>> {
    let mut inboxes = Vec::new();
    for i in 0..count.max(1) {
        let (mut event_loop, inbox) = EventLoop::<Conn>::new()?;
        let shared = Arc::clone(shared);
        std::thread::Builder::new()
            .name(format!("loop-{i}"))
            .spawn(move || {
                let (mut stopped, mut closed) = (false, false);
                loop {
                    if let Err(e) = event_loop.turn(None) {
                        crate::error!("event loop: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    // A stop is told to every connection once, and again at the end.
                    if (shared.is_stopping() && !stopped) || (shared.is_closing() && !closed) {
                        (stopped, closed) = (shared.is_stopping(), shared.is_closing());
                        event_loop.wake_all(Instant::now());
                    }
                }
            })?;
        inboxes.push(inbox);
    }
    Ok(inboxes)
}

/// A listening socket, non-blocking, and the address it is bound to; a port in use
/// is an error.
fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), String> {
    let fail = |e: io::Error| format!("cannot listen on {addr}: {e}");
    let listener = TcpListener::bind(addr).map_err(fail)?;
    sys::set_backlog(listener.as_raw_fd(), 1024);
    listener.set_nonblocking(true).map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?;
    Ok((listener, bound))
}

/// [K]: raise the open-files limit and lower `maxConnections` if it still cannot
/// hold a backend connection per client connection.
fn fit_connections(wanted: usize) -> usize {
    let limit = match sys::raise_open_files_limit() {
        Ok(limit) => limit,
        Err(e) => {
            crate::warn!("cannot read the open-files limit ({e}); keeping maxConnections {wanted}");
            return wanted;
        }
    };
    let needed = (wanted as u64).saturating_mul(2).saturating_add(SPARE_FDS);
    if needed <= limit {
        return wanted;
    }
    let fits = (limit.saturating_sub(SPARE_FDS) / 2).max(1);
    let fits = usize::try_from(fits).unwrap_or(usize::MAX).min(wanted);
    crate::warn!(
        "the open-files limit is {limit}, too low for maxConnections {wanted} (needs {needed}); using maxConnections {fits}"
    );
    fits
}

struct Acceptor<'a> {
    shared: &'a Arc<Shared>,
    inboxes: &'a [Arc<Inbox<Conn>>],
    /// The loop the next connection goes to.
    next: usize,
    max_connections: usize,
}

impl Acceptor<'_> {
    /// Polls the listeners and the signal socket until SIGTERM or SIGINT.
    fn serve(
        &mut self,
        listeners: &[Listener],
        signals: &Signals,
        mut config: Config,
        path: &Path,
    ) {
        let mut fds: Vec<sys::PollFd> = vec![sys::poll_fd(signals.fd(), POLLIN)];
        fds.extend(
            listeners
                .iter()
                .map(|l| sys::poll_fd(l.socket.as_raw_fd(), POLLIN)),
        );
        let mut swept = Instant::now();
        loop {
            if let Err(e) = sys::poll(&mut fds, Some(POOL_SWEEP)) {
                crate::error!("acceptor: poll failed: {e}");
            }
            let signalled = match fds[0].revents {
                0 => Vec::new(),
                _ => signals.take(),
            };
            for signal in signalled {
                match signal {
                    Signal::Stop => return,
                    Signal::Reopen => self.shared.log.reopen(config.access_log.clone()),
                    Signal::Reload => reload(self.shared, path, &mut config),
                }
            }
            for (listener, fd) in listeners.iter().zip(&fds[1..]) {
                if fd.revents != 0 {
                    self.accept_all(listener);
                }
            }
            if swept.elapsed() >= POOL_SWEEP {
                swept = Instant::now();
                self.shared.runtime().pools.sweep(swept);
            }
        }
    }

    /// Accepts every connection waiting on `listener`.
    fn accept_all(&mut self, listener: &Listener) {
        loop {
            let (stream, peer) = match listener.socket.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // Out of descriptors or memory: wait a moment rather than spin.
                    crate::warn!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    return;
                }
            };
            if self.shared.open_connections() >= self.max_connections {
                self.refuse(stream, peer.ip());
                continue;
            }
            let slot = self.shared.slot();
            let shared = Arc::clone(self.shared);
            let now = Instant::now();
            let home = self.next % self.inboxes.len();
            self.next = self.next.wrapping_add(1);
            let place = (slot, home);
            if let Some(conn) =
                Conn::new(shared, stream, peer.ip(), listener.redirect_to, place, now)
            {
                self.inboxes[home].send(conn);
            }
        }
    }

    /// [E]: past `maxConnections`, a 503 written at accept without reading the
    /// request. Non-blocking, so a client that does not read cannot stall the acceptor.
    fn refuse(&self, stream: TcpStream, ip: IpAddr) {
        crate::debug!("refusing a connection from {ip}: maxConnections reached");
        let response = local_response(503, &[], false, 1, false);
        let _ = stream.set_nonblocking(true);
        let _ = (&stream).write(&response);
        let body_bytes = crate::headers::local_body(503).len() as u64;
        let now = SystemTime::now();
        let entry = Entry {
            client: ip,
            started: now,
            request_line: None,
            status: 503,
            body_bytes,
            referer: None,
            user_agent: None,
            elapsed: Duration::ZERO,
            upstream: None,
        };
        self.shared.log.write(&entry);
    }
}

/// SIGHUP [L]: load and check the file again; if it is good, new requests use its
/// routes, pools and timeouts while requests in flight finish on the old ones (whose
/// pools close when the last of them ends). A bad file changes nothing.
fn reload(shared: &Shared, path: &Path, running: &mut Config) {
    let new = match Config::load(path) {
        Ok(new) => new,
        Err(e) => return crate::error!("reload: {e}; still serving with the previous config"),
    };
    let pems = |c: &Config| c.pems.as_ref().map(|p| (p.key.clone(), p.cert.clone()));
    let fixed = [
        ("host", running.host.0 != new.host.0),
        ("port", running.port != new.port),
        ("pems", pems(running) != pems(&new)),
        ("httpPort", running.http_port != new.http_port),
        ("workers", running.workers != new.workers),
        (
            "maxConnections",
            running.max_connections != new.max_connections,
        ),
    ];
    for (key, _) in fixed.iter().filter(|(_, changed)| *changed) {
        crate::warn!(
            "reload: {key} changed in {}; that takes a restart, the running value stays",
            path.display()
        );
    }
    crate::log::set_debug(new.env == Env::Development);
    if new.access_log != running.access_log {
        shared.log.reopen(new.access_log.clone());
    }
    shared.set_runtime(Runtime::new(&new));
    crate::debug!("reload: {} loaded", path.display());
    // Keep what cannot change without a restart, so the next comparison is true.
    let pems = running.pems.take();
    *running = Config {
        host: running.host,
        port: running.port,
        pems,
        http_port: running.http_port,
        workers: running.workers,
        max_connections: running.max_connections,
        ..new
    };
}

/// SIGTERM/SIGINT [L]: the listeners are closed already; idle connections close at
/// once, requests in flight and tunnels have `shutdownMs` to finish, then every
/// connection is closed (a tunnel's log line written), the pools closed and the log
/// flushed. A second signal exits at once.
fn shut_down(
    shared: &Shared,
    inboxes: &[Arc<Inbox<Conn>>],
    signals: &Signals,
) -> Result<(), String> {
    shared.stop();
    inboxes.iter().for_each(|inbox| inbox.wake());
    let rt = shared.runtime();
    let deadline = Instant::now() + Duration::from_millis(rt.timeouts.shutdown_ms);
    let mut fds = [sys::poll_fd(signals.fd(), POLLIN)];
    while shared.open_connections() > 0 && Instant::now() < deadline {
        let _ = sys::poll(&mut fds, Some(Duration::from_millis(20)));
        if signals.take().contains(&Signal::Stop) {
            crate::warn!("a second stop signal: exiting without waiting");
            shared.log.flush();
            std::process::exit(1);
        }
    }
    shared.close_all();
    inboxes.iter().for_each(|inbox| inbox.wake());
    let closed = Instant::now() + Duration::from_millis(500);
    while shared.open_connections() > 0 && Instant::now() < closed {
        std::thread::sleep(Duration::from_millis(5)); // the loops' turn
    }
    rt.pools.close_all();
    shared.log.flush();
    Ok(())
}

//! Start-up, accepting and the end [C][E][L]: bind, say "hawkey listening on",
//! start the event loops (`workers` of them, one per CPU by default), each of which
//! accepts on the listeners itself (a 503 past `maxConnections`); then the main
//! thread waits on the signal socket: it reloads the config on SIGHUP, reopens the
//! log on SIGUSR1, and shuts down gracefully on SIGTERM/SIGINT. It wakes every
//! `POOL_SWEEP` too, to close idle backend connections past their time [R5].
//!
//! Accepting in the loops, rather than on one acceptor thread that hands each
//! connection over, saves two thread wake-ups per connection (the acceptor's and
//! the loop's): with a new connection per request, 7 % more requests a second and
//! 11 % less CPU per request on two cores (README, Design). Each listener is watched by every loop with
//! `EPOLLEXCLUSIVE`, so a new connection wakes one loop that was sleeping, not all.
//! `maxConnections` is one shared count.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::access_log::{AccessLog, Entry};
use crate::config::{Config, Env};
use crate::event::{EventLoop, Inbox, LISTENERS};
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
    let mut listeners = vec![Listener {
        socket: main,
        redirect_to: None,
    }];
    let redirect_addr = redirect.map(|(socket, addr)| {
        listeners.push(Listener {
            socket,
            redirect_to: Some(main_addr),
        });
        addr
    });
    let inboxes = start_loops(&shared, listeners, max_connections, config.workers)
        .map_err(|e| format!("cannot start: {e}"))?;

    let scheme = if shared.tls.is_some() {
        "https"
    } else {
        "http"
    };
    eprintln!("hawkey listening on {scheme}://{main_addr}");
    if let Some(addr) = redirect_addr {
        eprintln!("hawkey listening on http://{addr}");
    }
    serve_signals(&shared, &signals, config, config_path);
    shut_down(&shared, &inboxes, &signals)
}

/// The event loops, each on its thread, accepting on the listeners; how to reach each.
fn start_loops(
    shared: &Arc<Shared>,
    listeners: Vec<Listener>,
    max_connections: usize,
    count: usize,
) -> io::Result<Arc<Vec<Arc<Inbox<Conn>>>>> {
    let mut loops = Vec::new();
    for _ in 0..count.max(1) {
        let (mut event_loop, inbox) = EventLoop::<Conn>::new()?;
        for (index, listener) in listeners.iter().enumerate() {
            event_loop.listen(listener.socket.as_raw_fd(), index)?;
        }
        loops.push((event_loop, inbox));
    }
    let inboxes: Arc<Vec<_>> = Arc::new(loops.iter().map(|(_, i)| Arc::clone(i)).collect());
    let accepting = Accepting {
        listeners: Arc::new(listeners),
        max_connections,
        inboxes: Arc::clone(&inboxes),
        loads: Arc::new(loops.iter().map(|_| AtomicUsize::new(0)).collect()),
        paused_until: None,
    };
    for (home, (mut event_loop, _)) in loops.into_iter().enumerate() {
        let shared = Arc::clone(shared);
        let mut accepting = Some(accepting.clone());
        std::thread::Builder::new()
            .name(format!("loop-{home}"))
            .spawn(move || {
                let (mut stopped, mut closed) = (false, false);
                loop {
                    let paused = accepting.as_mut().and_then(|a| a.resume(&mut event_loop));
                    let ready = match event_loop.turn(paused) {
                        Ok(ready) => ready,
                        Err(e) => {
                            crate::error!("event loop: {e}");
                            std::thread::sleep(Duration::from_millis(10));
                            0
                        }
                    };
                    if let Some(accepting) = &mut accepting {
                        accepting.accept(ready, &shared, home, &mut event_loop);
                    }
                    // A stop is told to every connection once, and again at the end.
                    if (shared.is_stopping() && !stopped) || (shared.is_closing() && !closed) {
                        (stopped, closed) = (shared.is_stopping(), shared.is_closing());
                        event_loop.stop_listening();
                        accepting = None; // the last loop to let go closes the listeners
                        event_loop.wake_all(Instant::now());
                    }
                }
            })?;
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
    sys::set_nodelay(listener.as_raw_fd()).map_err(fail)?;
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

/// Waits on the signal socket until SIGTERM or SIGINT, sweeping the pools on the way.
fn serve_signals(shared: &Shared, signals: &Signals, mut config: Config, path: &Path) {
    let mut fds = [sys::poll_fd(signals.fd(), POLLIN)];
    let mut swept = Instant::now();
    loop {
        if let Err(e) = sys::poll(&mut fds, Some(POOL_SWEEP)) {
            crate::error!("poll failed: {e}");
        }
        let signalled = match fds[0].revents {
            0 => Vec::new(),
            _ => signals.take(),
        };
        for signal in signalled {
            match signal {
                Signal::Stop => return,
                Signal::Reopen => shared.log.reopen(config.access_log.clone()),
                Signal::Reload => reload(shared, path, &mut config),
            }
        }
        if swept.elapsed() >= POOL_SWEEP {
            swept = Instant::now();
            shared.runtime().pools.sweep(swept);
        }
    }
}

/// What every loop accepts on, the limit they share, and how to even them out.
#[derive(Clone)]
struct Accepting {
    listeners: Arc<Vec<Listener>>,
    max_connections: usize,
    inboxes: Arc<Vec<Arc<Inbox<Conn>>>>,
    /// The connections each loop holds, as of its last turn.
    loads: Arc<Vec<AtomicUsize>>,
    /// This loop stopped watching the listeners after an accept failed (out of
    /// descriptors), until then.
    paused_until: Option<Instant>,
}

/// How long a loop leaves the listeners alone after an accept failed (out of
/// descriptors or memory), rather than be woken for it again and again; nginx waits
/// 500 ms.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Connections taken per listener per turn, so that a flood of them leaves the
/// loop time for the ones it has (the rest wait for the next turn).
const ACCEPTS_PER_TURN: usize = 16;

impl Accepting {
    /// Watches the listeners again once a pause is over; how long it still lasts.
    fn resume(&mut self, to: &mut EventLoop<Conn>) -> Option<Duration> {
        let until = self.paused_until?;
        let left = until.saturating_duration_since(Instant::now());
        if !left.is_zero() {
            return Some(left);
        }
        self.paused_until = None;
        for (index, listener) in self.listeners.iter().enumerate() {
            if let Err(e) = to.listen(listener.socket.as_raw_fd(), index) {
                crate::error!("event loop: cannot watch a listener: {e}");
            }
        }
        None
    }

    /// Accepts on the listeners whose bits are set in `ready`, for loop `home`.
    fn accept(&mut self, ready: u32, shared: &Arc<Shared>, home: usize, to: &mut EventLoop<Conn>) {
        self.loads[home].store(to.len(), Ordering::Relaxed);
        for (index, listener) in self.listeners.iter().enumerate().take(LISTENERS) {
            if ready & (1 << index) != 0 && !self.accept_some(listener, shared, home, to) {
                to.stop_listening();
                self.paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                return;
            }
        }
    }

    /// Accepts what waits on `listener`, up to `ACCEPTS_PER_TURN`; false when an
    /// accept failed for want of descriptors or memory.
    fn accept_some(
        &self,
        listener: &Listener,
        shared: &Arc<Shared>,
        home: usize,
        to: &mut EventLoop<Conn>,
    ) -> bool {
        for _ in 0..ACCEPTS_PER_TURN {
            let (stream, peer) = match sys::accept_nonblocking(listener.socket.as_raw_fd()) {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    crate::warn!("accept failed: {e}; accepting again in {ACCEPT_PAUSE:?}");
                    return false;
                }
            };
            if shared.open_connections() >= self.max_connections {
                refuse(shared, stream, peer.ip());
                continue;
            }
            let owner = self.owner(home);
            let place = (shared.slot(), owner);
            let now = Instant::now();
            let shared = Arc::clone(shared);
            let Some(conn) = Conn::new(shared, stream, peer.ip(), listener.redirect_to, place, now)
            else {
                continue;
            };
            if owner == home {
                to.add(conn, now);
                self.loads[home].store(to.len(), Ordering::Relaxed);
            } else {
                self.loads[owner].fetch_add(1, Ordering::Relaxed);
                self.inboxes[owner].send(conn);
            }
        }
        true
    }

    /// The loop that takes a connection `home` accepted: `home`, unless it holds an
    /// eighth more than the least loaded one (and two more at least). The loop that
    /// sleeps is the one woken for a new connection, so a burst of them (a browser's
    /// six, a benchmark's fifty) lands on one loop; long-lived connections then
    /// stay where they landed.
    fn owner(&self, home: usize) -> usize {
        let load = |i: usize| self.loads[i].load(Ordering::Relaxed);
        let least = (0..self.loads.len())
            .min_by_key(|&i| load(i))
            .unwrap_or(home);
        let (own, low) = (load(home), load(least));
        if own >= low + 2 + low / 8 {
            least
        } else {
            home
        }
    }
}

/// [E]: past `maxConnections`, a 503 written at accept without reading the request.
/// Non-blocking, so a client that does not read cannot stall the loop.
fn refuse(shared: &Shared, stream: TcpStream, ip: IpAddr) {
    crate::debug!("refusing a connection from {ip}: maxConnections reached");
    let response = local_response(503, &[], false, 1, false);
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
    shared.log.write(&entry);
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

/// SIGTERM/SIGINT [L]: the loops stop accepting and close the listeners; idle
/// connections close at once, requests in flight and tunnels have `shutdownMs` to finish, then every
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

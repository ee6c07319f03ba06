//! Start-up, the acceptor and the end [C][E][L]: bind, say "hawkey listening on", then
//! poll the listeners and the signal socket: accept connections and queue them for the
//! workers (a 503 past `maxConnections`), reload the config on SIGHUP, reopen the log
//! on SIGUSR1, and shut down gracefully on SIGTERM/SIGINT. Also the `Runtime`: the
//! parts of the config the data path reads, taken once per request so a reload never
//! changes a request halfway through.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::access_log::{AccessLog, Entry};
use crate::signals::{Signal, Signals};
use crate::sys::{self, POLLIN};

use crate::backend::pool::Pools;
use crate::config::{Cidr, Config, Env, Timeouts};
use crate::conn::{Client, Slot};
use crate::headers::local_response;
use crate::park::{self, Parker};
use crate::route::Route;
use crate::stream::ClientStream;
use crate::tunnel::{self, Tunnels};
use crate::workers::{self, Crew, Queue};
use rustls::{ServerConnection, StreamOwned};

/// Descriptors kept aside for listeners, files and the like [K].
const SPARE_FDS: u64 = 64;

/// What the data path needs from the config.
pub struct Runtime {
    pub routes: Vec<Route>,
    pub pools: Pools,
    pub timeouts: Timeouts,
    pub max_header_bytes: usize,
    pub trusted_proxies: Vec<Cidr>,
    /// `/<staticDir>/` when static files are on.
    pub static_prefix: Option<String>,
    /// `serverRoot/staticDir`, canonical.
    pub static_root: Option<PathBuf>,
}

impl Runtime {
    pub fn new(config: &Config) -> Runtime {
        let routes: Vec<Route> = config.proxy.iter().map(Route::new).collect();
        let pool = &config.upstream_pool;
        let pools = Pools::new(
            routes
                .iter()
                .flat_map(|r| r.authorities.iter().map(|a| &**a)),
            pool.max_idle_per_authority,
            std::time::Duration::from_millis(pool.idle_timeout_ms),
        );
        Runtime {
            routes,
            pools,
            timeouts: config.timeouts.clone(),
            max_header_bytes: config.max_header_bytes,
            trusted_proxies: config.trusted_proxies.clone(),
            static_prefix: config.static_dir.as_ref().map(|d| format!("/{}/", d.0)),
            // Canonical, so that resolved files can be checked to lie inside it [S].
            static_root: config.static_root().and_then(|p| p.canonicalize().ok()),
        }
    }
}

/// What the acceptor, the workers, the parking and the tunnel threads share.
pub struct Shared {
    pub queue: Queue,
    pub parker: Parker,
    pub tunnels: Tunnels,
    pub log: AccessLog,
    runtime: Mutex<Arc<Runtime>>, // swapped whole on reload
    /// The TLS config when `pems` is set; fixed for the life of the process.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Set at SIGTERM/SIGINT: answer with `Connection: close`, park nothing.
    stopping: AtomicBool,
    /// Workers serving a connection right now.
    pub busy: AtomicUsize,
    pub crew: Crew,
}

impl Shared {
    /// The runtime in force now; a request keeps the one it started with.
    pub fn runtime(&self) -> Arc<Runtime> {
        Arc::clone(&self.runtime.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Parks `client` (`Parker::park`), unless shutting down.
    pub fn park(&self, client: Client, deadline: Instant) -> Option<Client> {
        if self.is_stopping() {
            return None; // closing idle connections at once is part of shutting down
        }
        self.parker.park(client, deadline)
    }
}

/// A listening socket and where its connections go.
struct Listener {
    socket: TcpListener,
    /// For the redirect listener: the TLS listener's address.
    redirect_to: Option<SocketAddr>,
}

/// Binds, starts the threads and serves until a signal ends it.
pub fn run(config: Config, config_path: &Path) -> Result<(), String> {
    crate::log::set_debug(config.env == Env::Development);
    let tls = config
        .pems
        .as_ref()
        .map(|pems| crate::front::tls::server_config(&pems.key, &pems.cert))
        .transpose()?;
    let max_connections = fit_connections(config.max_connections);
    let (main, main_addr) = bind(SocketAddr::new(config.host.0, config.port))?;
    let redirect = match config.http_port {
        Some(port) => Some(bind(SocketAddr::new(config.host.0, port))?),
        None => None,
    };
    let signals = Signals::install().map_err(|e| format!("cannot catch signals: {e}"))?;
    let log = AccessLog::start(config.access_log.as_deref())?;

    let started = |e: io::Error| format!("cannot start: {e}");
    let queue = Queue::new().map_err(started)?;
    let (parker, park_wake) = Parker::new(&queue).map_err(started)?;
    let (tunnels, tunnel_wake) = Tunnels::new().map_err(started)?;
    let shared = Arc::new(Shared {
        queue,
        parker,
        tunnels,
        log,
        runtime: Mutex::new(Arc::new(Runtime::new(&config))),
        tls,
        stopping: AtomicBool::new(false),
        busy: AtomicUsize::new(0),
        crew: Crew::new(config.workers),
    });
    workers::spawn(&shared, config.workers).map_err(started)?;
    let spawn = |name: &str| std::thread::Builder::new().name(name.into());
    let parking = Arc::clone(&shared);
    spawn("park")
        .spawn(move || park::run(parking, park_wake))
        .map_err(started)?;
    let tunnelling = Arc::clone(&shared);
    spawn("tunnels")
        .spawn(move || tunnel::run(&tunnelling, tunnel_wake))
        .map_err(started)?;

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
        open: Arc::new(AtomicUsize::new(0)),
        max_connections,
    };
    acceptor.serve(&listeners, &signals, config, config_path);
    drop(listeners); // stop accepting
    shut_down(&shared, &signals)
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
    shared: &'a Shared,
    /// Open client connections; each holds a `Slot` of it.
    open: Arc<AtomicUsize>,
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
        loop {
            if let Err(e) = sys::poll(&mut fds, None) {
                crate::error!("acceptor: poll failed: {e}");
            }
            for signal in signals.take() {
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
            // Blocking, as workers expect: accept(2) on Linux does not pass the
            // listener's O_NONBLOCK on to the new socket.
            if self.open.load(Ordering::Relaxed) >= self.max_connections {
                self.refuse(stream, peer.ip());
                continue;
            }
            self.open.fetch_add(1, Ordering::Relaxed);
            let slot = Slot(Arc::clone(&self.open));
            let at = Instant::now();
            if let Some(client) = self.client(stream, peer.ip(), slot, at, listener.redirect_to) {
                // Parked at once: a worker takes it when its first bytes arrive [R8].
                let deadline = at + self.shared.runtime().timeouts.header();
                // A new socket is registered: never handed back.
                let _ = self.shared.parker.park(client, deadline);
            }
        }
    }

    /// A new client connection, with TLS when `pems` is set (not on the redirect
    /// listener).
    fn client(
        &self,
        stream: TcpStream,
        ip: IpAddr,
        slot: Slot,
        at: Instant,
        redirect_to: Option<SocketAddr>,
    ) -> Option<Client> {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(self.shared.runtime().timeouts.upstream()));
        let stream = match (&self.shared.tls, redirect_to) {
            (Some(config), None) => match ServerConnection::new(Arc::clone(config)) {
                Ok(tls) => ClientStream::Tls(Box::new(StreamOwned::new(tls, stream))),
                Err(e) => {
                    crate::error!("TLS: cannot start a connection: {e}");
                    return None;
                }
            },
            _ => ClientStream::Plain(stream),
        };
        let mut client = Client::new(stream, ip, slot, at);
        client.redirect_to = redirect_to;
        Some(client)
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
    *shared
        .runtime
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Arc::new(Runtime::new(&new));
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

/// SIGTERM/SIGINT [L]: the listeners are closed already; close idle connections at
/// once, let requests in flight finish within `shutdownMs` (tunnels are closed then),
/// close the pools, flush the log. A second signal exits at once.
fn shut_down(shared: &Shared, signals: &Signals) -> Result<(), String> {
    shared.stopping.store(true, Ordering::SeqCst);
    shared.parker.wake(); // it sees `stopping` and closes every parked connection
    let rt = shared.runtime();
    let deadline = Instant::now() + Duration::from_millis(rt.timeouts.shutdown_ms);
    let mut fds = [sys::poll_fd(signals.fd(), POLLIN)];
    let in_flight = || {
        shared.busy.load(Ordering::SeqCst)
            + shared.queue.waiting()
            + shared.parker.exchanges()
            + shared.tunnels.open_count()
    };
    while in_flight() > 0 && Instant::now() < deadline {
        let _ = sys::poll(&mut fds, Some(Duration::from_millis(20)));
        if signals.take().contains(&Signal::Stop) {
            crate::warn!("a second stop signal: exiting without waiting");
            shared.log.flush();
            std::process::exit(1);
        }
    }
    shared.tunnels.close_all(Duration::from_millis(500));
    rt.pools.close_all();
    shared.log.flush();
    Ok(())
}

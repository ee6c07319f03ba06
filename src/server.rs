//! Start-up and the acceptor [C][E]: bind, say "hawkey listening on", then accept
//! connections and queue them for the workers, refusing those past `maxConnections`
//! with a 503. Also the `Runtime`: the parts of the config the data path reads, taken
//! once per request so a config reload never changes a request halfway through.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::config::{Cidr, Config, Env, Timeouts};
use crate::conn::{Client, Slot};
use crate::headers::local_response;
use crate::park::{self, Parker};
use crate::route::Route;
use crate::tunnel::{self, Tunnels};
use crate::upstream::Pools;
use crate::workers::{self, Job, Queue};

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
            routes.iter().flat_map(|r| &r.authorities),
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

/// What the acceptor, the workers and the parking thread share.
pub struct Shared {
    pub queue: Queue,
    pub parker: Parker,
    pub tunnels: Tunnels,
    runtime: Mutex<Arc<Runtime>>, // swapped whole on reload
    /// The TLS config when `pems` is set; fixed for the life of the process.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Shared {
    /// The runtime in force now; a request keeps the one it started with.
    pub fn runtime(&self) -> Arc<Runtime> {
        Arc::clone(&self.runtime.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn park(&self, client: Client, deadline: Instant) {
        self.parker.park(client, deadline);
    }
}

/// Binds, starts the threads and accepts until the process ends.
pub fn run(config: Config) -> Result<(), String> {
    crate::log::set_debug(config.env == Env::Development);
    let tls = config
        .pems
        .as_ref()
        .map(crate::tls::server_config)
        .transpose()?;
    let max_connections = fit_connections(config.max_connections);
    let main = bind(SocketAddr::new(config.host.0, config.port))?;
    let redirect = match config.http_port {
        Some(port) => Some(bind(SocketAddr::new(config.host.0, port))?),
        None => None,
    };

    let started = |e: std::io::Error| format!("cannot start: {e}");
    let (parker, park_wake) = Parker::new().map_err(started)?;
    let (tunnels, tunnel_wake) = Tunnels::new().map_err(started)?;
    let runtime = Mutex::new(Arc::new(Runtime::new(&config)));
    let shared = Arc::new(Shared {
        queue: Queue::default(),
        parker,
        tunnels,
        runtime,
        tls,
    });
    workers::spawn(&shared, config.workers).map_err(started)?;
    let parking = Arc::clone(&shared);
    let spawn = |name: &str| std::thread::Builder::new().name(name.into());
    spawn("park")
        .spawn(move || park::run(parking, park_wake))
        .map_err(started)?;
    let tunnelling = Arc::clone(&shared);
    spawn("tunnels")
        .spawn(move || tunnel::run(&tunnelling.tunnels, tunnel_wake))
        .map_err(started)?;

    let (main, main_addr) = main;
    let scheme = if shared.tls.is_some() {
        "https"
    } else {
        "http"
    };
    eprintln!("hawkey listening on {scheme}://{main_addr}");
    let open = Arc::new(AtomicUsize::new(0));
    if let Some((listener, addr)) = redirect {
        eprintln!("hawkey listening on http://{addr}");
        let (shared, open) = (Arc::clone(&shared), Arc::clone(&open));
        spawn("redirect")
            .spawn(move || accept(&listener, &shared, &open, max_connections, Some(main_addr)))
            .map_err(started)?;
    }
    accept(&main, &shared, &open, max_connections, None);
    Ok(())
}

/// A listening socket and the address it is bound to; a port in use is an error.
fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), String> {
    let fail = |e: std::io::Error| format!("cannot listen on {addr}: {e}");
    let listener = TcpListener::bind(addr).map_err(fail)?;
    crate::sys::set_backlog(listener.as_raw_fd(), 1024);
    let bound = listener.local_addr().map_err(fail)?;
    Ok((listener, bound))
}

/// [K]: raise the open-files limit and lower `maxConnections` if it still cannot
/// hold a backend connection per client connection.
fn fit_connections(wanted: usize) -> usize {
    let limit = match crate::sys::raise_open_files_limit() {
        Ok(limit) => limit,
        Err(e) => {
            crate::warn!("cannot read the open-files limit ({e}); keeping maxConnections {wanted}");
            return wanted;
        }
    };
    let needed = 2 * wanted as u64 + SPARE_FDS;
    if needed <= limit {
        return wanted;
    }
    let fits = (limit.saturating_sub(SPARE_FDS) / 2).max(1) as usize;
    crate::warn!(
        "the open-files limit is {limit}, too low for maxConnections {wanted} (needs {needed}); using maxConnections {fits}"
    );
    fits
}

/// Accepts until the process ends. Connections of the redirect listener carry the
/// TLS listener's address, `redirect_to`.
fn accept(
    listener: &TcpListener,
    shared: &Shared,
    open: &Arc<AtomicUsize>,
    max_connections: usize,
    redirect_to: Option<SocketAddr>,
) {
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or memory: wait a moment rather than spin.
                crate::warn!("accept failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= max_connections {
            refuse(stream);
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(Arc::clone(open));
        shared.queue.push(Job::Accepted {
            stream,
            peer,
            slot,
            at: Instant::now(),
            redirect_to,
        });
    }
}

/// [E]: past `maxConnections`, a 503 written at accept without reading the request.
/// Non-blocking, so a client that does not read cannot stall the acceptor.
fn refuse(stream: TcpStream) {
    crate::debug!("refusing a connection: maxConnections reached");
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write(&local_response(503, &[], false, 1, false));
}

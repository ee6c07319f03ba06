//! What the loops and the main thread share: the `Runtime` (the parts of the config the
//! data path reads, taken once per request so a reload never changes a request
//! halfway through), the access log, the TLS config, and the stop flags.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::access_log::AccessLog;
use crate::backend::pool::Pools;
use crate::config::{Cidr, Config, Timeouts};
use crate::route::Route;

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
        let pool = &config.upstream_pool;
        let mut pools = Pools::new(
            pool.max_idle_per_authority,
            std::time::Duration::from_millis(pool.idle_timeout_ms),
        );
        let routes = (config.proxy.iter())
            .map(|c| Route::new(c, &mut pools))
            .collect();
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

/// Shared by the main thread and every loop.
pub struct Shared {
    runtime: Mutex<Arc<Runtime>>, // swapped whole on reload
    /// Counts the reloads, so that a connection sees one without taking the lock.
    generation: AtomicU64,
    pub log: AccessLog,
    /// The TLS config when `pems` is set; fixed for the life of the process.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Set at SIGTERM/SIGINT: idle connections close, answers say `Connection: close`.
    stopping: AtomicBool,
    /// Set when `shutdownMs` is over: every connection closes now.
    closing: AtomicBool,
    /// Open client connections; each holds a `Slot` of it.
    pub open: Arc<AtomicUsize>,
}

impl Shared {
    pub fn new(config: &Config, log: AccessLog, tls: Option<Arc<rustls::ServerConfig>>) -> Shared {
        Shared {
            runtime: Mutex::new(Arc::new(Runtime::new(config))),
            generation: AtomicU64::new(0),
            log,
            tls,
            stopping: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The runtime in force now; a request keeps the one it started with.
    pub fn runtime(&self) -> Arc<Runtime> {
        Arc::clone(&self.runtime.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The runtime in force now if a reload happened since `generation` (which
    /// becomes the current one); `None`, and no lock taken, if none did.
    pub fn newer_runtime(&self, generation: &mut u64) -> Option<Arc<Runtime>> {
        let now = self.generation.load(Ordering::Acquire);
        if now == *generation {
            return None;
        }
        *generation = now;
        Some(self.runtime())
    }

    /// A reload: new requests use `runtime`.
    pub fn set_runtime(&self, runtime: Runtime) {
        *self.runtime.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(runtime);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The generation of the runtime `runtime` gives now (or an older one's).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    pub fn close_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// A place in `maxConnections`, held until the `Slot` drops.
    pub fn slot(&self) -> Slot {
        self.open.fetch_add(1, Ordering::Relaxed);
        Slot(Arc::clone(&self.open))
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// Holds one place in `maxConnections` until dropped.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

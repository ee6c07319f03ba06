//! The per-authority `Pool` of idle keep-alive backend connections [R5], which also
//! remembers when a connect to its authority last failed [R6]. The round-robin turn
//! over a route's authorities lives with the route.
//!
//! The pool lock is held only to push or pop one entry; connecting, probing and
//! closing all happen outside it. Each idle connection remembers the event loop
//! that returned it (where it is still registered), and a loop borrows its own
//! first, so that a reuse costs no system call to move the socket between loops.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::backend::authority::Authority;
use crate::event::SocketOf;

/// How long an authority whose connect failed is skipped by round robin [R6].
pub const DOWN_FOR: Duration = Duration::from_secs(10);

/// Locks a pool list. Surviving a poisoned lock is safe: each critical section pushes
/// or pops one entry, so the list is valid at every step.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An idle connection, with the serial its event loop knows it by, and until when
/// it may be reused.
struct Idle {
    conn: SocketOf,
    reuse_until: Instant,
}

/// The idle connections of one authority, one list per event loop that returned
/// them, each with the most recently returned last, so we reuse the warmest.
#[derive(Default)]
struct Lists {
    by_loop: Vec<Vec<Idle>>,
    count: usize,
}

impl Lists {
    /// The newest of `home`'s, else the newest of another loop's.
    fn pop(&mut self, home: usize) -> Option<Idle> {
        let own = self.by_loop.get_mut(home).and_then(Vec::pop);
        let idle = own.or_else(|| self.by_loop.iter_mut().find_map(Vec::pop))?;
        self.count -= 1;
        Some(idle)
    }

    fn push(&mut self, home: usize, idle: Idle) {
        if home >= self.by_loop.len() {
            self.by_loop.resize_with(home + 1, Vec::new);
        }
        self.by_loop[home].push(idle);
        self.count += 1;
    }

    fn take(&mut self, expired: impl Fn(&Idle) -> bool) -> Vec<Idle> {
        let taken: Vec<Idle> = (self.by_loop.iter_mut())
            .flat_map(|list| list.extract_if(.., |idle| expired(idle)))
            .collect();
        self.count -= taken.len();
        taken
    }
}

/// Idle keep-alive connections to one backend [R5].
pub struct Pool {
    idle: Mutex<Lists>,
    max_idle: usize,        // upstreamPool.maxIdlePerAuthority
    idle_timeout: Duration, // upstreamPool.idleTimeoutMs
    /// Skipped by round robin until this many ms after `made` (0: not down) [R6];
    /// an atomic, so that every request reading it leaves the cache line shared.
    down_until_ms: AtomicU64,
    made: Instant,
}

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            idle: Mutex::new(Lists::default()),
            max_idle,
            idle_timeout,
            down_until_ms: AtomicU64::new(0),
            made: Instant::now(),
        }
    }

    /// An idle connection that is still fit for reuse, if there is one, for the
    /// event loop `home` (its own returns first).
    pub fn checkout(&self, now: Instant, home: usize) -> Option<SocketOf> {
        loop {
            let idle = lock(&self.idle).pop(home)?; // lock released at the end of this line
            // Too old, closed by the backend, or holding stray bytes: never reuse it.
            if now < idle.reuse_until && crate::sys::is_quiet(idle.conn.0.as_raw_fd()) {
                return Some(idle.conn);
            }
        }
    }

    /// Returns a connection after a complete exchange. `hint` is the backend's
    /// `Keep-Alive: timeout=N`; the connection is kept for at most N − 1 s, so that
    /// we never reuse it just as the backend closes it.
    pub fn checkin(&self, conn: SocketOf, home: usize, hint: Option<Duration>, now: Instant) {
        let mut keep = self.idle_timeout;
        if let Some(hint) = hint {
            keep = keep.min(hint.saturating_sub(Duration::from_secs(1)));
        }
        if keep.is_zero() {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.count < self.max_idle {
            let reuse_until = now + keep;
            idle.push(home, Idle { conn, reuse_until });
        }
        // lock released here; a connection over the limit is closed by its drop
    }

    /// Closes the idle connections whose time is up, so that a quiet backend is not
    /// left holding them (a checkout would also pass them over).
    pub fn sweep(&self, now: Instant) {
        let expired = lock(&self.idle).take(|idle| now >= idle.reuse_until);
        drop(expired); // closed outside the lock
    }

    /// A connect failed: skip this authority for `DOWN_FOR` [R6].
    pub fn mark_down(&self, now: Instant) {
        let until = self.ms_since_made(now + DOWN_FOR);
        self.down_until_ms.store(until.max(1), Ordering::Relaxed);
    }

    pub fn is_down(&self, now: Instant) -> bool {
        let until = self.down_until_ms.load(Ordering::Relaxed);
        until != 0 && self.ms_since_made(now) < until
    }

    fn ms_since_made(&self, at: Instant) -> u64 {
        let ms = at.saturating_duration_since(self.made).as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    pub fn idle_count(&self) -> usize {
        lock(&self.idle).count
    }

    /// Closes every idle connection (shutdown, the original's `Client.close()`).
    pub fn close(&self) {
        let drained = lock(&self.idle).take(|_| true);
        drop(drained); // closed outside the lock
    }
}

/// One pool per authority, made with a config and never changed after; each route
/// keeps the pools of its authorities beside them, so a request looks none up.
pub struct Pools {
    by_authority: HashMap<Authority, Arc<Pool>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pools {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Pools {
        Pools {
            by_authority: HashMap::new(),
            max_idle,
            idle_timeout,
        }
    }

    /// The pool of `authority`, made the first time it is asked for (routes that
    /// name the same authority share its pool).
    pub fn pool_for(&mut self, authority: &Authority) -> Arc<Pool> {
        let (max_idle, idle_timeout) = (self.max_idle, self.idle_timeout);
        let pool = (self.by_authority.entry(authority.clone()))
            .or_insert_with(|| Arc::new(Pool::new(max_idle, idle_timeout)));
        Arc::clone(pool)
    }

    pub fn close_all(&self) {
        self.by_authority.values().for_each(|pool| pool.close());
    }

    /// `Pool::sweep` for every pool.
    pub fn sweep(&self, now: Instant) {
        self.by_authority.values().for_each(|pool| pool.sweep(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn down_mark_lasts_ten_seconds() {
        let pool = Pool::new(1, Duration::from_secs(4));
        let t0 = Instant::now();
        assert!(!pool.is_down(t0));
        pool.mark_down(t0);
        assert!(pool.is_down(t0 + Duration::from_secs(9)));
        assert!(!pool.is_down(t0 + Duration::from_secs(10)));
    }

    fn pooled(conn: TcpStream) -> SocketOf {
        (conn, 0)
    }

    /// A connected pair over loopback: (our side, the backend's side).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (ours, listener.accept().unwrap().0)
    }

    #[test]
    fn pool_reuses_the_newest_and_expires_by_clock() {
        let pool = Pool::new(2, Duration::from_secs(4));
        let t0 = Instant::now();
        let (a, _ka) = pair();
        let (b, _kb) = pair();
        let (c, _kc) = pair();
        let b_port = b.local_addr().unwrap();
        pool.checkin(pooled(a), 0, None, t0);
        pool.checkin(pooled(b), 0, None, t0);
        pool.checkin(pooled(c), 0, None, t0); // over maxIdlePerAuthority: closed
        assert_eq!(pool.idle_count(), 2);
        assert_eq!(
            pool.checkout(t0, 0).unwrap().0.local_addr().unwrap(),
            b_port
        );
        assert!(
            pool.checkout(t0 + Duration::from_secs(5), 0).is_none(),
            "expired"
        );
        assert_eq!(pool.idle_count(), 0);
    }

    #[test]
    fn sweep_closes_only_the_expired() {
        let pool = Pool::new(4, Duration::from_secs(4));
        let t0 = Instant::now();
        let (a, _ka) = pair();
        let (b, _kb) = pair();
        pool.checkin(pooled(a), 0, None, t0);
        pool.checkin(pooled(b), 0, Some(Duration::from_secs(3)), t0); // kept for 2 s
        pool.sweep(t0 + Duration::from_secs(1));
        assert_eq!(pool.idle_count(), 2);
        pool.sweep(t0 + Duration::from_secs(2));
        assert_eq!(pool.idle_count(), 1);
        pool.sweep(t0 + Duration::from_secs(4));
        assert_eq!(pool.idle_count(), 0);
    }

    #[test]
    fn backend_hint_shortens_the_idle_time_and_one_second_means_never() {
        let pool = Pool::new(4, Duration::from_secs(4));
        let t0 = Instant::now();
        let (a, _ka) = pair();
        pool.checkin(pooled(a), 0, Some(Duration::from_secs(1)), t0);
        assert_eq!(pool.idle_count(), 0);
        let (b, _kb) = pair();
        pool.checkin(pooled(b), 0, Some(Duration::from_secs(2)), t0);
        assert!(pool.checkout(t0 + Duration::from_millis(1500), 0).is_none());
    }

    #[test]
    fn closed_or_chatty_connections_are_not_reused() {
        let pool = Pool::new(4, Duration::from_secs(4));
        let (a, ka) = pair();
        let (b, mut kb) = pair();
        drop(ka); // the backend closed a
        kb.write_all(b"stray").unwrap(); // and wrote unasked on b
        for s in [&a, &b] {
            assert!(crate::sys::wait_readable(
                s.as_raw_fd(),
                Duration::from_secs(5)
            ));
        }
        let t0 = Instant::now();
        pool.checkin(pooled(a), 0, None, t0);
        pool.checkin(pooled(b), 0, None, t0);
        assert!(pool.checkout(t0, 0).is_none());
        assert_eq!(pool.idle_count(), 0);
    }

    /// A loop gets back what it returned, before what another loop returned, and
    /// the serial it knows the socket by.
    #[test]
    fn a_loop_borrows_its_own_first() {
        let pool = Pool::new(4, Duration::from_secs(4));
        let t0 = Instant::now();
        let (a, _ka) = pair();
        let (b, _kb) = pair();
        let a_port = a.local_addr().unwrap();
        pool.checkin((a, 7), 0, None, t0);
        pool.checkin((b, 8), 1, None, t0);
        let own = pool.checkout(t0, 0).unwrap();
        assert_eq!((own.0.local_addr().unwrap(), own.1), (a_port, 7));
        assert_eq!(pool.checkout(t0, 0).unwrap().1, 8, "then another loop's");
        assert_eq!(pool.idle_count(), 0);
    }
}

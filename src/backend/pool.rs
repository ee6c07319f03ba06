//! The per-authority `Pool` of idle keep-alive backend connections [R5], which also
//! remembers when a connect to its authority last failed [R6]. The round-robin turn
//! over a route's authorities lives with the route.
//!
//! The pool lock is held only to push or pop one entry; connecting, probing and
//! closing all happen outside it.

use std::collections::HashMap;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::backend::authority::Authority;

/// How long an authority whose connect failed is skipped by round robin [R6].
pub const DOWN_FOR: Duration = Duration::from_secs(10);

/// Locks a pool list. Surviving a poisoned lock is safe: each critical section pushes
/// or pops one entry, so the list is valid at every step.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An idle connection, with its buffers (kept, so a reuse allocates nothing), and
/// until when it may be reused.
struct Idle {
    conn: TcpStream,
    reuse_until: Instant,
}

/// Idle keep-alive connections to one backend [R5].
pub struct Pool {
    idle: Mutex<Vec<Idle>>, // most recently returned last, so we reuse the warmest
    max_idle: usize,        // upstreamPool.maxIdlePerAuthority
    idle_timeout: Duration, // upstreamPool.idleTimeoutMs
    down_until: Mutex<Option<Instant>>, // skipped by round robin until then [R6]
}

impl Pool {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
            down_until: Mutex::new(None),
        }
    }

    /// An idle connection that is still fit for reuse, if there is one.
    pub fn checkout(&self, now: Instant) -> Option<TcpStream> {
        loop {
            let idle = lock(&self.idle).pop()?; // lock released at the end of this line
            // Too old, closed by the backend, or holding stray bytes: never reuse it.
            if now < idle.reuse_until && crate::sys::is_quiet(idle.conn.as_raw_fd()) {
                return Some(idle.conn);
            }
        }
    }

    /// Returns a connection after a complete exchange. `hint` is the backend's
    /// `Keep-Alive: timeout=N`; the connection is kept for at most N − 1 s, so that
    /// we never reuse it just as the backend closes it.
    pub fn checkin(&self, conn: TcpStream, hint: Option<Duration>, now: Instant) {
        let mut keep = self.idle_timeout;
        if let Some(hint) = hint {
            keep = keep.min(hint.saturating_sub(Duration::from_secs(1)));
        }
        if keep.is_zero() {
            return;
        }
        let mut idle = lock(&self.idle);
        if idle.len() < self.max_idle {
            idle.push(Idle {
                conn,
                reuse_until: now + keep,
            });
        }
        // lock released here; a connection over the limit is closed by its drop
    }

    /// Closes the idle connections whose time is up, so that a quiet backend is not
    /// left holding them (a checkout would also pass them over).
    pub fn sweep(&self, now: Instant) {
        let expired: Vec<Idle> = lock(&self.idle)
            .extract_if(.., |idle| now >= idle.reuse_until)
            .collect();
        drop(expired); // closed outside the lock
    }

    /// A connect failed: skip this authority for `DOWN_FOR` [R6].
    pub fn mark_down(&self, now: Instant) {
        *lock(&self.down_until) = Some(now + DOWN_FOR);
    }

    pub fn is_down(&self, now: Instant) -> bool {
        lock(&self.down_until).is_some_and(|until| now < until)
    }

    pub fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }

    /// Closes every idle connection (shutdown, the original's `Client.close()`).
    pub fn close(&self) {
        let drained = std::mem::take(&mut *lock(&self.idle));
        drop(drained); // closed outside the lock
    }
}

/// One pool per authority, made once for a config and never changed after.
pub struct Pools(HashMap<Authority, Pool>);

impl Pools {
    pub fn new<'a>(
        authorities: impl Iterator<Item = &'a Authority>,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Pools {
        Pools(
            authorities
                .map(|a| (a.clone(), Pool::new(max_idle, idle_timeout)))
                .collect(),
        )
    }

    pub fn get(&self, authority: &Authority) -> &Pool {
        // Every authority of every route was given a pool in `new`.
        &self.0[authority]
    }

    pub fn close_all(&self) {
        self.0.values().for_each(Pool::close);
    }

    /// `Pool::sweep` for every pool.
    pub fn sweep(&self, now: Instant) {
        self.0.values().for_each(|pool| pool.sweep(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn down_mark_lasts_ten_seconds() {
        let pool = Pool::new(1, Duration::from_secs(4));
        let t0 = Instant::now();
        assert!(!pool.is_down(t0));
        pool.mark_down(t0);
        assert!(pool.is_down(t0 + Duration::from_secs(9)));
        assert!(!pool.is_down(t0 + Duration::from_secs(10)));
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
        pool.checkin(a, None, t0);
        pool.checkin(b, None, t0);
        pool.checkin(c, None, t0); // over maxIdlePerAuthority: closed
        assert_eq!(pool.idle_count(), 2);
        assert_eq!(pool.checkout(t0).unwrap().local_addr().unwrap(), b_port);
        assert!(
            pool.checkout(t0 + Duration::from_secs(5)).is_none(),
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
        pool.checkin(a, None, t0);
        pool.checkin(b, Some(Duration::from_secs(3)), t0); // kept for 2 s
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
        pool.checkin(a, Some(Duration::from_secs(1)), t0);
        assert_eq!(pool.idle_count(), 0);
        let (b, _kb) = pair();
        pool.checkin(b, Some(Duration::from_secs(2)), t0);
        assert!(pool.checkout(t0 + Duration::from_millis(1500)).is_none());
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
        pool.checkin(a, None, t0);
        pool.checkin(b, None, t0);
        assert!(pool.checkout(t0).is_none());
        assert_eq!(pool.idle_count(), 0);
    }
}

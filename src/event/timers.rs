//! Deadlines of the connections one event loop owns [R8]: each connection has at most
//! one, the nearest of its waits (a head's `headerMs`, `keepAliveMs`, a backend's
//! `upstreamMs`, …), which its machines report. The loop sleeps in `epoll_wait` until
//! `nearest`, then takes what `expired` gives. Pure: `now` is passed in.
//!
//! A heap of (deadline, connection, version): setting a new deadline pushes a new
//! entry and bumps the version, and entries of an older version are skipped when they
//! come up, so changing a deadline costs O(log n) and no search.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

/// A connection's place in its loop.
pub type Token = usize;

#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Token, u64)>>,
    /// The version and deadline in force for each token that has one.
    current: HashMap<Token, (u64, Instant)>,
    next_version: u64,
}

impl Timers {
    /// Sets (or, with `None`, clears) the deadline of `token`.
    pub fn set(&mut self, token: Token, deadline: Option<Instant>) {
        match deadline {
            None => {
                self.current.remove(&token);
            }
            Some(at) if self.current.get(&token).is_some_and(|&(_, d)| d == at) => {}
            Some(at) => {
                self.next_version += 1;
                self.current.insert(token, (self.next_version, at));
                self.heap.push(Reverse((at, token, self.next_version)));
            }
        }
        // Stale entries are dropped as they surface; if they pile up (deadlines
        // pushed back again and again), the heap is rebuilt from what is current.
        if self.heap.len() > 2 * self.current.len() + 64 {
            self.heap = self
                .current
                .iter()
                .map(|(&token, &(version, at))| Reverse((at, token, version)))
                .collect();
        }
    }

    /// The nearest deadline, if any.
    pub fn nearest(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, token, version))) = self.heap.peek() {
            if self.current.get(&token).is_some_and(|&(v, _)| v == version) {
                return Some(at);
            }
            self.heap.pop(); // stale
        }
        None
    }

    /// Takes out every token whose deadline is at or before `now`, nearest first.
    pub fn expired(&mut self, now: Instant) -> Vec<Token> {
        let mut out = Vec::new();
        while let Some(at) = self.nearest() {
            if at > now {
                break;
            }
            if let Some(Reverse((_, token, _))) = self.heap.pop() {
                self.current.remove(&token);
                out.push(token);
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn nearest_first_and_a_changed_deadline_replaces_the_old_one() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers = Timers::default();
        timers.set(1, Some(ms(30)));
        timers.set(2, Some(ms(10)));
        timers.set(3, Some(ms(20)));
        timers.set(2, Some(ms(40))); // pushed back
        timers.set(3, None); // cleared
        assert_eq!(timers.nearest(), Some(ms(30)));
        assert_eq!(timers.expired(ms(29)), Vec::<Token>::new());
        assert_eq!(timers.expired(ms(40)), [1, 2]);
        assert!(timers.is_empty() && timers.nearest().is_none());
    }

    #[test]
    fn stale_entries_do_not_pile_up() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        for i in 0..10_000u64 {
            timers.set(7, Some(t0 + Duration::from_millis(i)));
        }
        assert!(
            timers.heap.len() <= 2 * timers.len() + 65,
            "{}",
            timers.heap.len()
        );
        assert_eq!(timers.expired(t0 + Duration::from_secs(60)), [7]);
    }
}

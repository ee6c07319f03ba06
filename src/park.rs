//! Whatever waits on a socket waits here instead of holding a worker [R8]: new and
//! idle client connections until their next request arrives, requests sent to a
//! backend until its answer arrives, and connections being closed while their last
//! bytes are read off. The socket goes into one epoll set (one system call) with a
//! one-shot event; idle workers wait in that set, and the worker that gets the event
//! serves it (`workers.rs`; the pattern of Apache's event MPM, without its hand-off
//! thread). A sweep thread enforces deadlines: a client connection is closed at its
//! deadline (`keepAliveMs` between requests, `headerMs` from accept) or, with part of
//! a head, goes back to a worker for its 408; a request whose backend said nothing
//! within `upstreamMs` goes back for its 504.
//!
//! Deadlines are checked every `SWEEP` rather than kept in a timer structure: at the
//! connection counts hawkey is sized for, scanning the table a few times a second
//! costs less than keeping it sorted.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::conn::{Client, Waiting};
use crate::server::Shared;
use crate::sys::{self, Epoll, EpollEvent};
use crate::workers::{Job, Queue};

/// How often deadlines are checked; a connection closes at most this late.
const SWEEP: Duration = Duration::from_millis(50);
/// The token of the job queue's wake-up socket (no connection has it: see `Table`).
const QUEUE: u64 = u64::MAX;
/// The table is split in this many shards, each with its own lock, so that workers
/// parking and waking connections at once seldom wait for each other.
const SHARDS: usize = 16;
/// Where a token keeps its shard number.
const SHARD_SHIFT: u32 = 24;

/// Parked things (connections) by token, each with its deadline: a slot index in the
/// low 24 bits (a shard holds fewer connections than the open-files limit allows),
/// the shard number in the next 8, and the slot's generation in the high 32, so an
/// event for a connection that is gone matches nothing.
struct Table<T> {
    slots: Vec<(u32, Option<(T, Instant)>)>, // (generation, entry and deadline)
    free: Vec<u32>,                          // empty slot indexes
}

impl<T> Table<T> {
    fn new() -> Self {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }

    fn insert(&mut self, item: T, deadline: Instant) -> u64 {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push((0, None));
            (self.slots.len() - 1) as u32
        });
        let slot = &mut self.slots[index as usize];
        slot.0 = slot.0.wrapping_add(1);
        slot.1 = Some((item, deadline));
        u64::from(slot.0) << 32 | u64::from(index)
    }

    fn remove(&mut self, token: u64) -> Option<T> {
        let index = (token & ((1 << SHARD_SHIFT) - 1)) as u32;
        let slot = self.slots.get_mut(index as usize)?;
        if u64::from(slot.0) != token >> 32 {
            return None;
        }
        let (item, _) = slot.1.take()?;
        self.free.push(index);
        Some(item)
    }

    /// Takes out every entry for which `pick(item, deadline)` holds.
    fn take_where(&mut self, mut pick: impl FnMut(&T, Instant) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if slot
                .1
                .as_ref()
                .is_some_and(|(item, deadline)| pick(item, *deadline))
            {
                out.extend(slot.1.take().map(|(item, _)| item));
                self.free.push(index as u32);
            }
        }
        out
    }
}

/// What waits in the epoll set.
enum Parked {
    /// A client connection, for its next bytes.
    Client(Client),
    /// A request, for its backend's answer.
    Exchange(Box<Waiting>),
    /// A connection being closed, whose bytes are read off until it closes too or
    /// its time is up (`conn.rs` `close`).
    Closing(Client, Instant),
}

/// Where workers park connections.
pub struct Parker {
    epoll: Epoll,
    tables: Vec<Mutex<Table<Parked>>>, // the shards
    wake: UnixStream,                  // a byte here wakes the sweep thread (shutdown)
    /// Requests waiting for a backend: in flight, for a graceful shutdown.
    exchanges: AtomicUsize,
}

impl Parker {
    /// The parker, and the other end of its wake-up socket for `run`. `queue`'s
    /// notifications join the epoll set, so workers waiting there see queued jobs.
    pub fn new(queue: &Queue) -> std::io::Result<(Parker, UnixStream)> {
        let (wake, wake_rx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let epoll = Epoll::new()?;
        epoll.watch_once(queue.notified.as_raw_fd(), QUEUE, true)?;
        let tables = (0..SHARDS).map(|_| Mutex::new(Table::new())).collect();
        Ok((
            Parker {
                epoll,
                tables,
                wake,
                exchanges: AtomicUsize::new(0),
            },
            wake_rx,
        ))
    }

    /// Waits for ready sockets and appends their jobs to `jobs`, at most `max`. Adds
    /// nothing when the wake-up was for the queue (or spurious): the caller looks at
    /// the queue again.
    pub fn next_jobs(&self, queue: &Queue, jobs: &mut Vec<Job>, max: usize) {
        let mut events: Vec<EpollEvent> = Vec::with_capacity(max);
        if let Err(e) = self.epoll.wait(&mut events, None) {
            crate::error!("parking: epoll_wait failed: {e}");
            std::thread::sleep(SWEEP); // rather than spin on a broken epoll set
        }
        for event in &events {
            if event.u64 == QUEUE {
                queue.drain_notifications();
                let _ = self
                    .epoll
                    .watch_once(queue.notified.as_raw_fd(), QUEUE, false);
                continue;
            }
            let shard = (event.u64 >> SHARD_SHIFT) as usize % SHARDS;
            let parked = self.table(shard).remove(event.u64); // lock released here
            jobs.extend(parked.and_then(|p| self.wake_up(p, false)));
        }
    }

    /// A poisoned lock only means a thread panicked between two statements that each
    /// leave the table valid.
    fn table(&self, shard: usize) -> MutexGuard<'_, Table<Parked>> {
        self.tables[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Parks `client` until its next bytes arrive or `deadline` passes. `new`: a
    /// connection just accepted, never parked before.
    pub fn park(&self, client: Client, deadline: Instant, new: bool) {
        let fd = client.io.stream.tcp().as_raw_fd();
        self.watch(fd, Parked::Client(client), deadline, new);
    }

    /// Parks a connection we are closing until it sends more (to be read off) or
    /// `until`, when it is closed.
    pub fn park_closing(&self, client: Client, until: Instant) {
        let fd = client.io.stream.tcp().as_raw_fd();
        self.watch(fd, Parked::Closing(client, until), until, false);
    }

    /// Parks a request until its backend answers or `upstreamMs` passes.
    pub fn park_exchange(&self, waiting: Box<Waiting>) {
        self.exchanges.fetch_add(1, Ordering::SeqCst);
        let pending = &waiting.pending;
        let (fd, deadline, new) = (pending.backend_fd(), pending.deadline, !pending.reused());
        self.watch(fd, Parked::Exchange(waiting), deadline, new);
    }

    fn watch(&self, fd: RawFd, parked: Parked, deadline: Instant, new: bool) {
        let shard = fd as usize % SHARDS;
        let mut table = self.table(shard);
        let token = table.insert(parked, deadline) | (shard as u64) << SHARD_SHIFT;
        // Registered while the table is locked, so the sweep cannot take the entry
        // before its event is set up.
        if let Err(e) = self.epoll.watch_once(fd, token, new) {
            crate::error!("parking a connection failed: {e}");
            let failed = table.remove(token);
            drop(table);
            // Dropped, which closes the connection (and counts an exchange out).
            drop(failed.and_then(|parked| self.wake_up(parked, true)));
        }
    }

    pub fn exchanges(&self) -> usize {
        self.exchanges.load(Ordering::SeqCst)
    }

    /// Wakes the sweep thread, to look at `Shared::is_stopping`.
    pub fn wake(&self) {
        let _ = (&self.wake).write(&[1]);
    }

    /// What a parked thing turns into when its socket is ready or its time is up
    /// (`late`): a job, or (an idle connection past its deadline) nothing.
    fn wake_up(&self, parked: Parked, late: bool) -> Option<Job> {
        match parked {
            Parked::Exchange(waiting) => {
                self.exchanges.fetch_sub(1, Ordering::SeqCst);
                Some(Job::Resume(waiting, late))
            }
            Parked::Client(mut client) if !late => {
                client.readable = true;
                Some(Job::Ready(client))
            }
            // A head cut short by its deadline goes back to a worker for its 408; so
            // do bytes that came in time but found every worker busy [R8].
            Parked::Client(client)
                if !client.io.data().is_empty()
                    || sys::peek(client.io.stream.tcp().as_raw_fd()) == sys::Peek::Data =>
            {
                Some(Job::Ready(client))
            }
            Parked::Client(client) => {
                crate::debug!("client {}: idle connection closed", client.ip);
                None
            }
            Parked::Closing(client, until) if !late => Some(Job::Closing(client, until)),
            Parked::Closing(..) => None, // closed: its time to linger is over
        }
    }
}

/// The sweep thread: deadlines every `SWEEP`, and at shutdown, idle connections.
pub fn run(shared: Arc<Shared>, mut wake_rx: UnixStream) {
    let parker = &shared.parker;
    loop {
        if sys::wait_readable(wake_rx.as_raw_fd(), SWEEP) {
            let mut drain = [0u8; 64];
            let _ = wake_rx.read(&mut drain);
        }
        shared.crew.rescue(&shared.queue);
        for shard in 0..SHARDS {
            if shared.is_stopping() {
                // Shutting down: idle connections close at once; requests in flight stay.
                let idle = parker
                    .table(shard)
                    .take_where(|p, _| matches!(p, Parked::Client(_) | Parked::Closing(..)));
                drop(idle);
            }
            let now = Instant::now();
            let expired = parker
                .table(shard)
                .take_where(|_, deadline| deadline <= now); // closed outside the lock
            for job in expired.into_iter().filter_map(|p| parker.wake_up(p, true)) {
                shared.queue.push(job);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_tokens_match_nothing() {
        let mut table = Table::new();
        let (a, b) = (Instant::now(), Instant::now() + Duration::from_secs(1));
        let t1 = table.insert("first", a);
        assert_eq!(table.remove(t1), Some("first"));
        let t2 = table.insert("second", b); // the same slot, a new generation
        assert_eq!(t1 & 0xffff_ffff, t2 & 0xffff_ffff);
        assert_eq!(table.remove(t1), None);
        assert!(table.take_where(|_, d| d <= a).is_empty());
        assert_eq!(table.take_where(|_, d| d <= b), vec!["second"]);
        assert_eq!(table.remove(t2), None);
    }
}

//! Whatever waits on a socket waits here instead of holding a worker [R8]: new and
//! idle client connections until their next request arrives, requests sent to a
//! backend until its answer arrives, and connections being closed while their last
//! bytes are read off. Each socket joins one epoll set once, edge-triggered, and a
//! table says what waits on it; idle workers wait in that set, and the worker that
//! gets an event serves what was parked (`workers.rs`; the pattern of Apache's event
//! MPM, without its hand-off thread). Parking again costs no system call. A sweep
//! thread enforces deadlines: a client connection is closed at its deadline
//! (`keepAliveMs` between requests, `headerMs` from accept) or, with part of a head,
//! goes back to a worker for its 408; a request whose backend said nothing within
//! `upstreamMs` goes back for its 504.
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
/// How often idle backend connections past their time are closed [R5].
const POOL_SWEEP: Duration = Duration::from_millis(500);
/// The token of the job queue's wake-up socket (no socket has it: see `Table`).
const QUEUE: u64 = u64::MAX;
/// The table is split in this many shards, each with its own lock, so that workers
/// parking and waking connections at once seldom wait for each other.
const SHARDS: usize = 16;

/// The place of every registered socket, by descriptor (shard `fd % SHARDS`, index
/// `fd / SHARDS`). A socket is registered once, edge-triggered, with the token
/// `generation << 32 | fd`; a new socket on the same descriptor number gets the next
/// generation, so an event for one that is gone matches nothing.
struct Table<T> {
    slots: Vec<Slot<T>>,
}

struct Slot<T> {
    generation: u32,
    state: State<T>,
}

enum State<T> {
    /// A worker has the socket (or nobody: it is closed). `missed`: an event came
    /// meanwhile, which edge-triggered epoll will not report again.
    Held { missed: bool },
    /// Waiting for its next event, or for its deadline.
    Parked(T, Instant),
}

impl<T> Table<T> {
    fn new() -> Self {
        Table { slots: Vec::new() }
    }

    fn slot(&mut self, fd: RawFd) -> &mut Slot<T> {
        let index = fd_index(fd) / SHARDS;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || Slot {
                generation: 0,
                state: State::Held { missed: false },
            });
        }
        &mut self.slots[index]
    }

    /// What an event for `token` wakes: the parked thing and its deadline, taken out
    /// (`None` when the socket is held, which notes the event, or gone).
    fn take(&mut self, token: u64) -> Option<(T, Instant)> {
        let slot = self.slot(token_fd(token));
        if u64::from(slot.generation) != token >> 32 {
            return None;
        }
        match std::mem::replace(&mut slot.state, State::Held { missed: false }) {
            State::Parked(parked, deadline) => Some((parked, deadline)),
            State::Held { .. } => {
                slot.state = State::Held { missed: true };
                None
            }
        }
    }

    /// Takes out every parked thing (with its deadline) for which `pick(parked,
    /// deadline)` holds.
    fn take_where(&mut self, mut pick: impl FnMut(&T, Instant) -> bool) -> Vec<(T, Instant)> {
        let mut out = Vec::new();
        for slot in &mut self.slots {
            if matches!(&slot.state, State::Parked(p, deadline) if pick(p, *deadline)) {
                let held = State::Held { missed: false };
                if let State::Parked(parked, deadline) = std::mem::replace(&mut slot.state, held) {
                    out.push((parked, deadline));
                }
            }
        }
        out
    }
}

/// A descriptor as an index (descriptors are never negative).
fn fd_index(fd: RawFd) -> usize {
    usize::try_from(fd).unwrap_or(0)
}

/// The descriptor in the low 32 bits of a token (see `Table`).
fn token_fd(token: u64) -> RawFd {
    RawFd::try_from(token & u64::from(u32::MAX)).unwrap_or(-1)
}

/// What waits in the epoll set.
enum Parked {
    /// A client connection, for its next bytes.
    Client(Client),
    /// A request, for its backend's answer.
    Exchange(Box<Waiting>),
    /// A connection being closed, whose bytes are read off until it closes too or
    /// its deadline passes (`conn.rs` `close`).
    Closing(Client),
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
        epoll.watch(queue.notified.as_raw_fd(), QUEUE)?;
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
                continue;
            }
            let shard = fd_index(token_fd(event.u64)) % SHARDS;
            let parked = self.table(shard).take(event.u64); // lock released here
            jobs.extend(parked.and_then(|(p, deadline)| self.wake_up(p, deadline, false)));
        }
    }

    /// A poisoned lock only means a thread panicked between two statements that each
    /// leave the table valid.
    fn table(&self, shard: usize) -> MutexGuard<'_, Table<Parked>> {
        self.tables[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Parks `client` until its next bytes arrive or `deadline` passes. Returns it
    /// when bytes (or the end) came while it was held: serve it now.
    pub fn park(&self, mut client: Client, deadline: Instant) -> Option<Client> {
        let fd = client.io.stream.tcp().as_raw_fd();
        let new = !std::mem::replace(&mut client.io.watched, true);
        self.park_socket(fd, new, client, deadline, Parked::Client)
    }

    /// Parks a connection we are closing until it sends more (to be read off) or
    /// `until`, when it is closed. Returns it when it already sent more.
    pub fn park_closing(&self, client: Client, until: Instant) -> Option<Client> {
        let fd = client.io.stream.tcp().as_raw_fd();
        self.park_socket(fd, false, client, until, Parked::Closing)
    }

    /// Parks a request until its backend answers or `upstreamMs` passes. Returns it
    /// when the answer has begun already.
    pub fn park_exchange(&self, mut waiting: Box<Waiting>) -> Option<Box<Waiting>> {
        let (fd, deadline) = (waiting.pending.backend_fd(), waiting.pending.deadline);
        let new = !std::mem::replace(waiting.pending.watched(), true);
        self.exchanges.fetch_add(1, Ordering::SeqCst);
        let answered = self.park_socket(fd, new, waiting, deadline, Parked::Exchange);
        if answered.is_some() {
            self.exchanges.fetch_sub(1, Ordering::SeqCst);
        }
        answered
    }

    /// Stops watching a socket that leaves for the tunnel thread, which polls it
    /// itself.
    pub fn forget(&self, fd: RawFd) {
        let _ = self.epoll.unwatch(fd);
        self.table(fd_index(fd) % SHARDS).slot(fd).state = State::Held { missed: false };
    }

    /// Parks `item` (as `as_parked(item)`) on socket `fd` (`new`: registers it first).
    /// Returns it when an event came while a worker held the socket and the socket
    /// has bytes (or its end) now.
    fn park_socket<T>(
        &self,
        fd: RawFd,
        new: bool,
        item: T,
        deadline: Instant,
        as_parked: fn(T) -> Parked,
    ) -> Option<T> {
        let shard = fd_index(fd) % SHARDS;
        let mut table = self.table(shard);
        if new {
            let slot = table.slot(fd);
            slot.generation = slot.generation.wrapping_add(1);
            let token = u64::from(slot.generation) << 32 | u64::from(fd.unsigned_abs());
            slot.state = State::Parked(as_parked(item), deadline);
            // Registered while the table is locked, so no event or sweep can take
            // the entry (and close the socket) before the registration is made.
            if let Err(e) = self.epoll.watch(fd, token) {
                crate::error!("parking a connection failed: {e}");
                let held = State::Held { missed: false };
                let failed = match std::mem::replace(&mut slot.state, held) {
                    State::Parked(parked, _) => Some(parked),
                    State::Held { .. } => None,
                };
                drop(table);
                // Dropped, which closes the connection (and counts an exchange out).
                drop(failed.and_then(|parked| self.wake_up(parked, deadline, true)));
            }
            return None;
        }
        // Edge-triggered: an event that came while a worker held the socket is not
        // reported again, so look at the socket before parking it.
        loop {
            let slot = table.slot(fd);
            if !matches!(slot.state, State::Held { missed: true }) {
                slot.state = State::Parked(as_parked(item), deadline);
                return None;
            }
            slot.state = State::Held { missed: false };
            drop(table);
            if sys::peek(fd) != sys::Peek::Quiet {
                return Some(item);
            }
            table = self.table(shard);
        }
    }

    pub fn exchanges(&self) -> usize {
        self.exchanges.load(Ordering::SeqCst)
    }

    /// Wakes the sweep thread, to look at `Shared::is_stopping`.
    pub fn wake(&self) {
        let _ = (&self.wake).write(&[1]);
    }

    /// What a parked thing turns into when its socket is ready or its `deadline` has
    /// passed (`late`): a job, or (an idle connection past its deadline) nothing.
    fn wake_up(&self, parked: Parked, deadline: Instant, late: bool) -> Option<Job> {
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
            Parked::Closing(client) if !late => Some(Job::Closing(client, deadline)),
            Parked::Closing(_) => None, // closed: its time to linger is over
        }
    }
}

/// The sweep thread: deadlines every `SWEEP`, and at shutdown, idle connections;
/// expired idle backend connections every `POOL_SWEEP`.
pub fn run(shared: Arc<Shared>, mut wake_rx: UnixStream) {
    let parker = &shared.parker;
    let mut pools_swept = Instant::now();
    loop {
        if sys::wait_readable(wake_rx.as_raw_fd(), SWEEP) {
            let mut drain = [0u8; 64];
            let _ = wake_rx.read(&mut drain);
        }
        shared.crew.rescue(&shared.queue);
        if pools_swept.elapsed() >= POOL_SWEEP {
            pools_swept = Instant::now();
            shared.runtime().pools.sweep(pools_swept);
        }
        for shard in 0..SHARDS {
            if shared.is_stopping() {
                // Shutting down: idle connections close at once; requests in flight stay.
                let idle = parker
                    .table(shard)
                    .take_where(|p, _| matches!(p, Parked::Client(_) | Parked::Closing(_)));
                drop(idle);
            }
            let now = Instant::now();
            let expired = parker
                .table(shard)
                .take_where(|_, deadline| deadline <= now); // closed outside the lock
            let jobs = expired
                .into_iter()
                .filter_map(|(p, d)| parker.wake_up(p, d, true));
            for job in jobs {
                shared.queue.push(job);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn park<T>(table: &mut Table<T>, fd: RawFd, item: T, deadline: Instant) {
        table.slot(fd).state = State::Parked(item, deadline);
    }

    #[test]
    fn stale_tokens_match_nothing_and_events_on_held_sockets_are_noted() {
        let mut table = Table::new();
        let (a, b) = (Instant::now(), Instant::now() + Duration::from_secs(1));
        let fd = 37;
        table.slot(fd).generation = 1;
        let t1 = 1 << 32 | u64::from(fd.unsigned_abs());
        park(&mut table, fd, "first", a);
        assert_eq!(table.take(t1), Some(("first", a)));
        // An event while a worker holds the socket is noted, not lost.
        assert_eq!(table.take(t1), None);
        assert!(matches!(table.slot(fd).state, State::Held { missed: true }));
        // A new socket on the same descriptor: the old token matches nothing.
        table.slot(fd).generation = 2;
        park(&mut table, fd, "second", b);
        assert_eq!(table.take(t1), None);
        assert!(table.take_where(|_, d| d <= a).is_empty());
        assert_eq!(table.take_where(|_, d| d <= b), vec![("second", b)]);
        assert_eq!(table.take(2 << 32 | u64::from(fd.unsigned_abs())), None);
    }
}

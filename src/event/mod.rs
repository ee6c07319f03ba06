//! The event loops [R8]: one per CPU, each owning the connections it serves from
//! accept to close, with the backend connections they borrow. A loop waits in its
//! own epoll set until a socket it watches is ready or the nearest deadline
//! (`timers.rs`) passes, wakes the connection concerned, and then registers what that
//! connection has now (a new backend socket, a dropped one) and its next deadline. A
//! connection is a `Connection`: machines that do bounded work when woken and never
//! block (`front/h1.rs`, `backend/answer.rs`); the loop does no protocol work itself.
//!
//! Each socket is registered once, edge-triggered, for both directions, so a change
//! of interest costs no system call: a connection remembers that a socket is readable
//! or writable until a call would block. A socket stays registered while it is
//! open, also while it waits in a pool: the loop that returned it and borrows it
//! again spends no system call on it. Every loop watches the listening sockets and
//! its thread accepts what `turn` says is waiting (`server.rs`); through an `Inbox`
//! another thread hands a loop connections, or wakes it. A panic inside one
//! connection drops that connection only.

pub mod timers;

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::sys::{Epoll, EpollEvent, Readiness, event_parts};
use timers::Timers;

/// Which socket of a connection an event is for: the client's, or a backend's, by
/// a number the connection gives it (an HTTP/2 stream has one backend each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    Client,
    Backend(u32),
}

/// What woke a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// It was just handed to the loop.
    Arrived,
    /// A socket of it is ready (it may also have hung up: a read says so).
    Socket(Side, Readiness),
    /// Its deadline passed.
    Deadline,
}

/// A socket as a connection reports it: its descriptor, and a number that changes
/// whenever the socket does (a descriptor number is reused once it is closed).
pub type SocketId = (RawFd, u64);

/// A socket with the serial its loop knows it by (kept when it changes hands).
pub type SocketOf = (std::net::TcpStream, u64);

/// A new number for `SocketId`.
pub fn next_serial() -> u64 {
    static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A connection a loop drives.
pub trait Connection {
    /// Gives each socket it has now to `each`, in the order of `Side`.
    fn sockets(&self, each: &mut dyn FnMut(Side, SocketId));
    /// Does the work `woke` allows: bounded, never blocking.
    fn run(&mut self, woke: Woke, now: Instant);
    /// When to wake it if nothing else does.
    fn deadline(&self) -> Option<Instant>;
    /// Nothing more to do: the loop drops it, closing its sockets.
    fn is_done(&self) -> bool;
}

/// Where another thread hands a loop connections (one its loop accepted while this
/// one had fewer), or wakes it (a stop: it then looks at every connection).
pub struct Inbox<C> {
    queue: Mutex<Vec<C>>,
    wake: UnixStream,
}

// A wake-up byte is written only when the queue was empty: the loop takes the whole
// queue at once, so one byte per batch is enough.

impl<C> Inbox<C> {
    /// Queues `conn` for the loop and wakes it.
    pub fn send(&self, conn: C) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.push(conn);
        let first = queue.len() == 1;
        drop(queue);
        if first {
            self.wake();
        }
    }

    pub fn wake(&self) {
        // A full wake-up socket already holds a wake-up: the write may fail.
        let _ = (&self.wake).write(&[0]);
    }

    fn take(&self) -> Vec<C> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The token of the wake-up socket; listeners' are just below (no socket's token
/// is this large: a descriptor fits in 31 bits).
const WAKE: u64 = u64::MAX;
/// Most listeners a loop accepts on (the bits of `turn`'s answer).
pub const LISTENERS: usize = 8;
/// Most events taken from one `epoll_wait`.
const EVENTS: usize = 64;

/// A place for one connection, and what is registered for it (in `Side` order).
struct Slot<C> {
    conn: Option<C>,
    registered: Vec<(Side, SocketId)>,
}

/// A socket registered in this loop's epoll set, and whom its events are for: none
/// while it waits in a pool, so that a reuse on this loop costs no system call.
#[derive(Clone, Copy)]
struct Registered {
    serial: u64,
    owner: Option<(usize, Side)>,
}

/// One event loop and the connections it owns.
pub struct EventLoop<C> {
    epoll: Epoll,
    slots: Vec<Slot<C>>,
    free: Vec<usize>,
    /// By descriptor: what is registered (a descriptor is registered once, and a
    /// closed one leaves the set by itself; its entry is stale, and the next socket
    /// with the number has another serial).
    registered: Vec<Option<Registered>>,
    timers: Timers,
    listening: Vec<RawFd>,
    inbox: Arc<Inbox<C>>,
    wake_rx: UnixStream,
    events: Vec<EpollEvent>,
    /// The sockets a connection has now, while they are compared with the slot's.
    scratch: Vec<(Side, SocketId)>,
}

/// `serial << 32 | descriptor`, the serial cut to 32 bits: an event for a socket
/// closed since (whose number a new one took) matches nothing.
fn token((fd, serial): SocketId) -> u64 {
    (serial & u64::from(u32::MAX)) << 32 | u64::from(fd.cast_unsigned())
}

fn token_parts(token: u64) -> (usize, u64) {
    let fd = usize::try_from(token & u64::from(u32::MAX)).unwrap_or(usize::MAX);
    (fd, token >> 32)
}

impl<C: Connection> EventLoop<C> {
    /// A loop and the inbox that feeds it.
    pub fn new() -> io::Result<(EventLoop<C>, Arc<Inbox<C>>)> {
        let (wake, wake_rx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let epoll = Epoll::new()?;
        epoll.watch(wake_rx.as_raw_fd(), WAKE)?;
        let inbox = Arc::new(Inbox {
            queue: Mutex::new(Vec::new()),
            wake,
        });
        let event_loop = EventLoop {
            epoll,
            slots: Vec::new(),
            free: Vec::new(),
            registered: Vec::new(),
            timers: Timers::default(),
            listening: Vec::new(),
            inbox: Arc::clone(&inbox),
            wake_rx,
            events: Vec::with_capacity(EVENTS),
            scratch: Vec::new(),
        };
        Ok((event_loop, inbox))
    }

    /// Watches listening socket `fd`; `turn` reports it ready as bit `index`. Every
    /// loop watches the same listeners, each woken alone for a new connection
    /// (`EPOLLEXCLUSIVE`): the one that sleeps takes it, not one that is busy.
    pub fn listen(&mut self, fd: RawFd, index: usize) -> io::Result<()> {
        if index >= LISTENERS {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        self.epoll.watch_exclusive(fd, WAKE - 1 - index as u64)?;
        self.listening.push(fd);
        Ok(())
    }

    /// Stops watching the listeners (a stop), before they are closed.
    pub fn stop_listening(&mut self) {
        for fd in self.listening.drain(..) {
            let _ = self.epoll.unwatch(fd);
        }
    }

    /// Takes a connection just accepted and runs it.
    pub fn add(&mut self, conn: C, now: Instant) {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    conn: None,
                    registered: Vec::new(),
                });
                self.slots.len() - 1
            }
        };
        self.slots[slot].conn = Some(conn);
        self.wake(slot, Woke::Arrived, now);
    }

    /// Connections owned now.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs every connection (a stop: each decides what that means for it).
    pub fn wake_all(&mut self, now: Instant) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].conn.is_some() {
                self.wake(slot, Woke::Deadline, now);
            }
        }
    }

    /// One turn: waits for events, the nearest deadline or `max_wait` (`None`: no
    /// limit of its own), and wakes the connections concerned. Returns the listeners
    /// with a connection waiting, as bits by their `listen` index.
    pub fn turn(&mut self, max_wait: Option<Duration>) -> io::Result<u32> {
        let now = Instant::now();
        let until_deadline = self
            .timers
            .nearest()
            .map(|at| at.saturating_duration_since(now));
        let wait = match (until_deadline, max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.epoll.wait(&mut self.events, wait)?;
        let now = Instant::now();
        let mut listeners = 0;
        for i in 0..self.events.len() {
            let (token, readiness) = event_parts(&self.events[i]); // a copy: `wake` needs self
            if token == WAKE {
                let mut drain = [0u8; 64];
                while matches!((&self.wake_rx).read(&mut drain), Ok(64)) {}
                for conn in self.inbox.take() {
                    self.add(conn, now);
                }
                continue;
            }
            if token >= WAKE - LISTENERS as u64 {
                listeners |= 1 << (WAKE - 1 - token);
                continue;
            }
            let (fd, serial) = token_parts(token);
            let Some(Some(reg)) = self.registered.get(fd).copied() else {
                continue;
            };
            if reg.serial & u64::from(u32::MAX) != serial {
                continue; // a socket closed since
            }
            match reg.owner {
                Some((slot, side)) => self.wake(slot, Woke::Socket(side, readiness), now),
                None => {
                    // A pooled socket that hung up or sent stray bytes (its next
                    // borrower's peek finds out), or one another loop took: stop
                    // watching it here; a reuse here registers it again.
                    self.registered[fd] = None;
                    let _ = self.epoll.unwatch(fd.try_into().unwrap_or(-1));
                }
            }
        }
        for slot in self.timers.expired(Instant::now()) {
            self.wake(slot, Woke::Deadline, now);
        }
        Ok(listeners)
    }

    /// Runs one connection, then registers what it has now, or drops it.
    fn wake(&mut self, slot: usize, woke: Woke, now: Instant) {
        let Some(conn) = self.slots[slot].conn.as_mut() else {
            return;
        };
        let ran = catch_unwind(AssertUnwindSafe(|| conn.run(woke, now)));
        if ran.is_err() {
            crate::error!("a connection panicked; it is closed, the others go on");
        }
        let done = ran.is_err() || conn.is_done();
        self.settle(slot, done);
    }

    fn settle(&mut self, slot: usize, done: bool) {
        let mut now = std::mem::take(&mut self.scratch);
        now.clear();
        if let Some(conn) = self.slots[slot].conn.as_ref() {
            conn.sockets(&mut |side, id| now.push((side, id)));
            now.sort_unstable_by_key(|&(side, _)| side);
        }
        let before = std::mem::take(&mut self.slots[slot].registered);
        if done {
            for &(side, id) in &before {
                if now.contains(&(side, id)) {
                    // Closed with the connection, which takes it off the set: an
                    // event of this turn still to come for it is for nobody.
                    forget(&mut self.registered, id);
                } else {
                    disown(&mut self.registered, id); // back in a pool
                }
            }
            self.slots[slot].conn = None;
            self.slots[slot].registered = before;
            self.slots[slot].registered.clear();
            self.timers.set(slot, None);
            self.free.push(slot);
            self.scratch = now;
            return;
        }
        if before != now {
            for &(side, id) in &before {
                if !now.contains(&(side, id)) {
                    disown(&mut self.registered, id); // closed, or back in a pool
                }
            }
            let mut kept = before;
            kept.clear();
            for &(side, id) in &now {
                match self.own(id, (slot, side)) {
                    Ok(()) => kept.push((side, id)),
                    Err(e) => crate::error!("event loop: cannot watch a socket: {e}"),
                }
            }
            self.slots[slot].registered = kept;
        } else {
            self.slots[slot].registered = before;
        }
        self.scratch = now;
        let deadline = self.slots[slot].conn.as_ref().and_then(C::deadline);
        self.timers.set(slot, deadline);
    }

    /// Sends the events of `id` to `owner`; registers it unless it already is (a
    /// socket back from a pool this loop put it in).
    fn own(&mut self, id: SocketId, owner: (usize, Side)) -> io::Result<()> {
        let fd = usize::try_from(id.0).map_err(|_| io::ErrorKind::InvalidInput)?;
        if fd >= self.registered.len() {
            self.registered.resize(fd + 1, None);
        }
        let known = self.registered[fd].is_some_and(|r| r.serial == id.1);
        if !known {
            self.epoll.watch_both(id.0, token(id))?;
        }
        self.registered[fd] = Some(Registered {
            serial: id.1,
            owner: Some(owner),
        });
        Ok(())
    }
}

/// `id` has no owner on this loop any more; it stays registered while it is open.
fn disown(registered: &mut [Option<Registered>], id: SocketId) {
    if let Some(reg) = entry(registered, id) {
        reg.owner = None;
    }
}

/// `id` is about to be closed, which takes it off the set by itself.
fn forget(registered: &mut [Option<Registered>], id: SocketId) {
    if let Some(fd) = usize::try_from(id.0).ok()
        && entry(registered, id).is_some()
    {
        registered[fd] = None;
    }
}

/// What is registered for `id`, if that socket (not an earlier one with its number).
fn entry(registered: &mut [Option<Registered>], id: SocketId) -> Option<&mut Registered> {
    let fd = usize::try_from(id.0).ok()?;
    registered
        .get_mut(fd)?
        .as_mut()
        .filter(|reg| reg.serial == id.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// Echoes what its client sends until the client closes; closes itself at its
    /// deadline, when it has one.
    struct Echo {
        stream: TcpStream,
        serial: u64,
        deadline: Option<Instant>,
        done: bool,
        woken: Vec<Woke>,
    }

    impl Connection for Echo {
        fn sockets(&self, each: &mut dyn FnMut(Side, SocketId)) {
            each(Side::Client, (self.stream.as_raw_fd(), self.serial));
        }
        fn run(&mut self, woke: Woke, _now: Instant) {
            self.woken.push(woke);
            if woke == Woke::Deadline {
                self.done = true;
                return;
            }
            let mut buf = [0u8; 1024];
            loop {
                match self.stream.read(&mut buf) {
                    Ok(0) => return self.done = true,
                    Ok(n) => {
                        let _ = self.stream.write_all(&buf[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(_) => return self.done = true,
                }
            }
        }
        fn deadline(&self) -> Option<Instant> {
            self.deadline
        }
        fn is_done(&self) -> bool {
            self.done
        }
    }

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (ours, client)
    }

    fn echo(stream: TcpStream, deadline: Option<Instant>) -> Echo {
        Echo {
            stream,
            serial: 1,
            deadline,
            done: false,
            woken: Vec::new(),
        }
    }

    #[test]
    fn connections_accepted_are_served_and_dropped_when_done() {
        let (mut event_loop, _waker) = EventLoop::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        event_loop.listen(listener.as_raw_fd(), 1).unwrap();
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
        }
        let started = Instant::now();
        while event_loop.len() < 3 && started.elapsed() < Duration::from_secs(5) {
            let ready = event_loop.turn(Some(Duration::from_secs(1))).unwrap();
            assert_eq!(ready, 0b10, "listener 1 is ready");
            while let Ok((ours, _)) = listener.accept() {
                ours.set_nonblocking(true).unwrap();
                event_loop.add(echo(ours, None), Instant::now());
            }
        }
        assert_eq!(event_loop.len(), 3);
        for (i, client) in clients.iter_mut().enumerate() {
            client.write_all(format!("hello {i}").as_bytes()).unwrap();
        }
        let echoed = |c: &TcpStream| {
            c.set_nonblocking(true).unwrap();
            let seen = c.peek(&mut [0u8; 7]).is_ok_and(|n| n == 7);
            c.set_nonblocking(false).unwrap();
            seen
        };
        let started = Instant::now();
        while !clients.iter().all(echoed) && started.elapsed() < Duration::from_secs(5) {
            event_loop.turn(Some(Duration::from_millis(100))).unwrap();
        }
        let mut answers = Vec::new();
        for client in &mut clients {
            let mut buf = [0u8; 7];
            client.read_exact(&mut buf).unwrap();
            answers.push(String::from_utf8_lossy(&buf).into_owned());
        }
        assert_eq!(answers, ["hello 0", "hello 1", "hello 2"]);
        drop(clients);
        let started = Instant::now();
        while !event_loop.is_empty() && started.elapsed() < Duration::from_secs(5) {
            event_loop.turn(Some(Duration::from_millis(100))).unwrap();
        }
        assert!(event_loop.is_empty(), "{} left", event_loop.len());
    }

    #[test]
    fn a_deadline_wakes_its_connection() {
        let (mut event_loop, _waker) = EventLoop::new().unwrap();
        let (ours, _client) = pair();
        let at = Instant::now() + Duration::from_millis(50);
        event_loop.add(echo(ours, Some(at)), Instant::now());
        let started = Instant::now();
        while !event_loop.is_empty() && started.elapsed() < Duration::from_secs(5) {
            event_loop.turn(None).unwrap(); // no limit: the deadline ends the wait
        }
        assert!(event_loop.is_empty());
        assert!(Instant::now() >= at);
    }

    /// A wake-up from another thread ends a wait without limit; a connection sent
    /// through the inbox is the loop's after it.
    #[test]
    fn the_inbox_ends_the_wait() {
        let (mut event_loop, inbox) = EventLoop::new().unwrap();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            inbox.wake();
            let (ours, client) = pair();
            inbox.send(echo(ours, None));
            client
        });
        assert_eq!(event_loop.turn(None).unwrap(), 0);
        assert!(started.elapsed() >= Duration::from_millis(50));
        let _client = thread.join().unwrap();
        while event_loop.is_empty() && started.elapsed() < Duration::from_secs(5) {
            event_loop.turn(Some(Duration::from_millis(100))).unwrap();
        }
        assert_eq!(event_loop.len(), 1);
    }

    /// A connection that is done takes its sockets out of the table (their close
    /// takes them off the set), so a later event for one of them is for nobody.
    #[test]
    fn a_done_connection_leaves_no_entry() {
        let (mut event_loop, _waker) = EventLoop::new().unwrap();
        let (ours, client) = pair();
        let fd = usize::try_from(ours.as_raw_fd()).unwrap();
        event_loop.add(echo(ours, None), Instant::now());
        assert!(event_loop.registered[fd].is_some_and(|r| r.owner.is_some()));
        drop(client);
        let started = Instant::now();
        while !event_loop.is_empty() && started.elapsed() < Duration::from_secs(5) {
            event_loop.turn(Some(Duration::from_millis(100))).unwrap();
        }
        assert!(event_loop.is_empty());
        assert!(event_loop.registered[fd].is_none());
    }

    #[test]
    fn tokens_round_trip() {
        for (fd, serial) in [(0, 1), (12345, 7), (3, u64::from(u32::MAX) + 9)] {
            let (got_fd, got_serial) = token_parts(token((fd, serial)));
            assert_eq!(got_fd, usize::try_from(fd).unwrap());
            assert_eq!(got_serial, serial & u64::from(u32::MAX));
        }
        assert_ne!(token((i32::MAX, u64::MAX)), WAKE);
    }
}

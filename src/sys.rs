//! The only `unsafe` in hawkey: the system calls std has no safe wrapper for
//! (poll(2), epoll(7), a non-blocking connect and accept, a non-blocking peek, the open-files
//! limit, the listen backlog, and catching signals with sigaction(2)).
//! Each block says why its pointers and lengths are valid.
#![allow(unsafe_code)] // this module is where the unsafe calls are kept

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

pub use libc::{POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT};

/// One entry of a poll(2) set.
pub type PollFd = libc::pollfd;

pub fn poll_fd(fd: RawFd, events: i16) -> PollFd {
    PollFd {
        fd,
        events,
        revents: 0,
    }
}

/// poll(2) on `fds`; `None` waits without limit. Returns how many have events;
/// an interrupted call counts as none.
pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = timeout_ms(timeout);
    // SAFETY: `fds` is a valid, exclusively borrowed slice of `pollfd`s, and its
    // length is passed alongside it, so the kernel reads and writes only inside it.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(0)
        } else {
            Err(err)
        };
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// A wait in milliseconds for poll(2) and epoll_wait(2): -1 for none, a longer one
/// cut to the longest they take (24.8 days).
fn timeout_ms(timeout: Option<Duration>) -> i32 {
    timeout.map_or(-1, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX))
}

/// Whether `fd` becomes readable (or hung up) within `timeout`.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut fds = [poll_fd(fd, POLLIN)];
    matches!(poll(&mut fds, Some(timeout)), Ok(n) if n > 0)
}

/// What a non-blocking peek at a socket finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// Open, nothing to read.
    Quiet,
    /// Bytes are waiting.
    Data,
    /// The peer closed (or reset) and nothing is left to read.
    Closed,
}

/// One recv(2) with MSG_PEEK | MSG_DONTWAIT: the test before an idle backend
/// connection is reused [R5], and before a client connection is closed.
pub fn peek(fd: RawFd) -> Peek {
    let mut byte = 0u8;
    // SAFETY: the buffer is one byte on our stack and we pass length 1; MSG_PEEK
    // leaves the socket's data in place.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        1.. => Peek::Data,
        0 => Peek::Closed,
        _ if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock => Peek::Quiet,
        _ => Peek::Closed,
    }
}

/// True when a socket has nothing to read and is not closed.
pub fn is_quiet(fd: RawFd) -> bool {
    peek(fd) == Peek::Quiet
}

/// Raises the soft open-files limit to the hard one; returns the limit in force.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit on our stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit on our stack, only read by the kernel.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(lim.rlim_cur)
}

/// Asks for a longer accept queue than std's default on a listening socket (calling
/// listen(2) again on it only changes the backlog).
pub fn set_backlog(fd: RawFd, backlog: i32) {
    // SAFETY: plain integer arguments; a bad fd only makes the call fail, which we
    // ignore since the default backlog still works.
    unsafe { libc::listen(fd, backlog) };
}

/// Sets `TCP_NODELAY` on a listening socket: the sockets it accepts inherit it
/// (Linux), so that costs no system call per connection.
pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(0);
    // SAFETY: `on` is a c_int that lives across the call, and `len` is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw const on).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A TCP socket, non-blocking, whose connect to `addr` is under way (or done): the
/// event loop learns the outcome when it becomes writable (`TcpStream::take_error`).
pub fn connect_nonblocking(addr: std::net::SocketAddr) -> io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    let (family, storage, len) = sockaddr(addr);
    let kind = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: plain integer arguments; the result is checked before it is owned.
    let fd = unsafe { libc::socket(family, kind, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket that nothing else owns; the stream closes it.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    // SAFETY: `storage` holds a sockaddr of `len` bytes for the family of `fd`.
    let rc = unsafe { libc::connect(fd, (&raw const storage).cast(), len) };
    if rc == 0 {
        return Ok(stream);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINPROGRESS) => Ok(stream),
        _ => Err(err),
    }
}

/// Accepts a connection on listening socket `fd`, non-blocking from the start
/// (accept4(2) with `SOCK_NONBLOCK`: std's accept needs one more call to set it).
pub fn accept_nonblocking(fd: RawFd) -> io::Result<(std::net::TcpStream, std::net::SocketAddr)> {
    use std::os::fd::FromRawFd;
    // SAFETY: an all-zero sockaddr_storage is a valid value for the kernel to fill in.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len =
        libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_storage>()).unwrap_or(0);
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: `storage` is writable for `len` bytes, and `len` is a valid socklen_t
    // the kernel sets to the address's length.
    let new = unsafe { libc::accept4(fd, (&raw mut storage).cast(), &mut len, flags) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a socket just accepted that nothing else owns; the stream
    // closes it.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(new) };
    let peer = socket_addr(&storage).ok_or(io::ErrorKind::InvalidData)?;
    Ok((stream, peer))
}

/// The address in a sockaddr_storage the kernel filled in, if IPv4 or IPv6.
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<std::net::SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is
            // large enough and aligned for.
            let sin: libc::sockaddr_in = unsafe { std::ptr::read((&raw const *storage).cast()) };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some((ip, u16::from_be(sin.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read((&raw const *storage).cast()) };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(
                std::net::SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id)
                    .into(),
            )
        }
        _ => None,
    }
}

/// `addr` as a sockaddr_storage, with its family and length.
fn sockaddr(addr: std::net::SocketAddr) -> (libc::c_int, libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is a valid value to fill in.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        std::net::SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::sa_family_t::try_from(libc::AF_INET).unwrap_or_default(),
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::sa_family_t::try_from(libc::AF_INET6).unwrap_or_default(),
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6 and suitably aligned.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    let family = match addr {
        std::net::SocketAddr::V4(_) => libc::AF_INET,
        std::net::SocketAddr::V6(_) => libc::AF_INET6,
    };
    (family, storage, libc::socklen_t::try_from(len).unwrap_or(0))
}

/// The write end of the signal pipe, for the handler; -1 until installed.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);
/// One bit per signal number received and not yet taken.
static PENDING: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    // Only async-signal-safe work here: an atomic OR and a write(2).
    PENDING.fetch_or(1 << signal, Ordering::SeqCst);
    let fd = SIGNAL_PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: `byte` lives on this stack frame for the call and the length is 1;
        // a full pipe just makes the write fail, which is fine (a wake-up is pending).
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

/// Routes `signals` to a handler that records them and writes a byte to `wake_fd`
/// (a non-blocking socket whose other end someone polls).
pub fn catch_signals(signals: &[libc::c_int], wake_fd: RawFd) -> io::Result<()> {
    SIGNAL_PIPE.store(wake_fd, Ordering::SeqCst);
    for &signal in signals {
        // SAFETY: an all-zero sigaction is a valid value to fill in; sa_mask is
        // initialised by sigemptyset before use.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: `action.sa_mask` is a valid, writable sigset_t inside `action`.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: `action` is fully initialised and the handler above only does
        // async-signal-safe work; the old action is not asked for (null).
        if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The signals received since the last call, as a bit set by signal number.
pub fn take_signals() -> u64 {
    PENDING.swap(0, Ordering::SeqCst)
}

pub use libc::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

/// An epoll(7) instance: the set an event loop waits in (`event/`).
pub struct Epoll(std::os::fd::OwnedFd);

/// One readiness event: the token given at registration, and what happened.
pub type EpollEvent = libc::epoll_event;

/// What an event says of its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness {
    /// Bytes (or the peer's end) can be read.
    pub readable: bool,
    /// There is room to write.
    pub writable: bool,
    /// The peer has closed its side (or the socket failed): a read that takes less
    /// than it could does not mean that all was taken, the end is still to come.
    pub hup: bool,
}

/// The token and readiness of an event.
pub fn event_parts(event: &EpollEvent) -> (u64, Readiness) {
    let (token, events) = (event.u64, event.events);
    let has = |flag: libc::c_int| events & flag.cast_unsigned() != 0;
    let ended = has(libc::EPOLLHUP) || has(libc::EPOLLERR);
    let readiness = Readiness {
        readable: has(libc::EPOLLIN) || has(libc::EPOLLRDHUP) || ended,
        writable: has(libc::EPOLLOUT) || ended,
        hup: has(libc::EPOLLRDHUP) || ended,
    };
    (token, readiness)
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: no pointers; the returned descriptor is checked before it is owned.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        Ok(Epoll(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }))
    }

    /// Registers `fd`, edge-triggered, for readable (or hung-up) events reported with
    /// `token`: each new arrival is reported once, for as long as the socket is open.
    pub fn watch(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.add(fd, token, libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET)
    }

    /// Registers listening socket `fd`, level-triggered, woken alone among the sets
    /// that watch it (`EPOLLEXCLUSIVE`, Linux 4.5).
    pub fn watch_exclusive(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.add(fd, token, libc::EPOLLIN | libc::EPOLLEXCLUSIVE)
    }

    /// Registers `fd`, edge-triggered, for readable and writable (and hung-up)
    /// events: an event loop registers each socket once so, and remembers itself
    /// whether the socket is readable or writable until a call would block.
    /// A descriptor already in the set gets the new `token`.
    pub fn watch_both(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let flags = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        match self.ctl(libc::EPOLL_CTL_ADD, fd, token, flags) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.ctl(libc::EPOLL_CTL_MOD, fd, token, flags)
            }
            done => done,
        }
    }

    fn add(&self, fd: RawFd, token: u64, flags: libc::c_int) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, flags)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, flags: libc::c_int) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: flags.cast_unsigned(),
            u64: token,
        };
        let epfd = std::os::fd::AsRawFd::as_raw_fd(&self.0);
        // SAFETY: `event` is a valid epoll_event on our stack, read by the kernel.
        if unsafe { libc::epoll_ctl(epfd, op, fd, &mut event) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Stops watching `fd`.
    pub fn unwatch(&self, fd: RawFd) -> io::Result<()> {
        let epfd = std::os::fd::AsRawFd::as_raw_fd(&self.0);
        // SAFETY: no event is passed (allowed for EPOLL_CTL_DEL since Linux 2.6.9).
        let done = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
        if done == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Waits for events into `events` (its capacity is the most taken at once);
    /// `None` waits without limit. An interrupted wait returns no events.
    pub fn wait(&self, events: &mut Vec<EpollEvent>, timeout: Option<Duration>) -> io::Result<()> {
        events.clear();
        let ms = timeout_ms(timeout);
        let max = i32::try_from(events.capacity()).unwrap_or(i32::MAX);
        // SAFETY: the kernel writes at most `max` events into the vector's spare
        // capacity, and we set the length to the count it reports, no more.
        let n = unsafe {
            libc::epoll_wait(
                std::os::fd::AsRawFd::as_raw_fd(&self.0),
                events.as_mut_ptr(),
                max,
                ms,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if err.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(err)
            };
        }
        // SAFETY: the first `n` entries were written by epoll_wait just now.
        unsafe { events.set_len(usize::try_from(n).unwrap_or(0)) };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    /// The accepted socket is non-blocking, has `TCP_NODELAY` from its listener, and
    /// the peer address is the client's, for IPv4 and IPv6.
    #[test]
    fn accept_nonblocking_gives_a_nonblocking_socket_and_the_peer() {
        for host in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(listener) = TcpListener::bind(host) else {
                continue; // no IPv6 on this host
            };
            set_nodelay(listener.as_raw_fd()).unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (mut ours, peer) = accept_nonblocking(listener.as_raw_fd()).unwrap();
            assert_eq!(peer, client.local_addr().unwrap());
            let err = ours.read(&mut [0u8; 8]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
            assert!(ours.nodelay().unwrap());
        }
    }

    #[test]
    fn accept_nonblocking_on_an_empty_queue_would_block() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let err = accept_nonblocking(listener.as_raw_fd()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
}

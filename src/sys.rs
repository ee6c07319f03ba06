//! The only `unsafe` in hawkey: the system calls std has no safe wrapper for
//! (poll(2), a non-blocking peek, the open-files limit, the listen backlog).
//! Each block says why its pointers and lengths are valid.
#![allow(unsafe_code)] // this module is where the unsafe calls are kept

use std::io;
use std::os::fd::RawFd;
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
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
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
    Ok(n as usize)
}

/// Whether `fd` becomes readable (or hung up) within `timeout`.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut fds = [poll_fd(fd, POLLIN)];
    matches!(poll(&mut fds, Some(timeout)), Ok(n) if n > 0)
}

/// True when a socket has nothing to read and is not closed: the test before an idle
/// backend connection is reused [R5]. One recv(2) with MSG_PEEK | MSG_DONTWAIT.
pub fn is_quiet(fd: RawFd) -> bool {
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
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
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

/// Waits until `a` or `b` is readable (or hung up); returns which, `a` first when
/// both are, or `None` when `timeout` passed.
pub fn wait_either(a: RawFd, b: RawFd, timeout: Duration) -> Option<RawFd> {
    let mut fds = [poll_fd(a, POLLIN), poll_fd(b, POLLIN)];
    match poll(&mut fds, Some(timeout)) {
        Ok(n) if n > 0 => Some(if fds[0].revents != 0 { a } else { b }),
        _ => None,
    }
}

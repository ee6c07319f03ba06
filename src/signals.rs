//! SIGTERM, SIGINT, SIGHUP and SIGUSR1 → events the main thread's poll reads [L].
//! The handler (in `sys.rs`) only records the signal and writes a byte to a socket
//! that the main thread polls; everything else happens there.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use crate::sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: shut down gracefully (a second one: at once).
    Stop,
    /// SIGHUP: reload the config file.
    Reload,
    /// SIGUSR1: reopen the access log.
    Reopen,
}

/// The read end of the signal wake-up socket.
pub struct Signals {
    wake_rx: UnixStream,
    _wake_tx: UnixStream, // kept open: the handler writes to its descriptor
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        sys::catch_signals(
            &[sys::SIGTERM, sys::SIGINT, sys::SIGHUP, sys::SIGUSR1],
            wake_tx.as_raw_fd(),
        )?;
        Ok(Signals {
            wake_rx,
            _wake_tx: wake_tx,
        })
    }

    /// The descriptor to poll for readability.
    pub fn fd(&self) -> RawFd {
        self.wake_rx.as_raw_fd()
    }

    /// The signals that arrived since the last call, in a fixed order.
    pub fn take(&self) -> Vec<Signal> {
        let mut drain = [0u8; 64];
        while matches!((&self.wake_rx).read(&mut drain), Ok(n) if n > 0) {}
        let bits = sys::take_signals();
        let has = |s: i32| bits & (1 << s) != 0;
        let mut out = Vec::new();
        if has(sys::SIGUSR1) {
            out.push(Signal::Reopen);
        }
        if has(sys::SIGHUP) {
            out.push(Signal::Reload);
        }
        if has(sys::SIGTERM) || has(sys::SIGINT) {
            out.push(Signal::Stop);
        }
        out
    }
}

//! Idle keep-alive client connections wait here, in one thread, instead of each
//! holding a worker [R8]. The thread polls all parked sockets; a connection whose
//! next request starts to arrive goes back to the worker queue, one that stays idle
//! past `keepAliveMs` (or hangs up) is closed.
//!
//! This is the pattern of Apache's event MPM. poll(2) over every parked socket costs
//! O(n) per wake-up, which stays small next to the request work at the connection
//! counts hawkey is sized for (`maxConnections`, 10 000 by default).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::conn::Client;
use crate::server::Shared;
use crate::sys::{self, POLLERR, POLLHUP, POLLIN, POLLNVAL};
use crate::workers::Job;

/// The hand-over point between workers and the parking thread.
pub struct Parker {
    incoming: Mutex<Vec<(Client, Instant)>>, // parked since the thread's last look
    wake: UnixStream,                        // a byte here wakes the thread's poll
}

impl Parker {
    /// The parker, and the other end of its wake-up socket for `run`.
    pub fn new() -> std::io::Result<(Parker, UnixStream)> {
        let (wake, wake_rx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?; // a full wake socket means a wake-up is pending already
        wake_rx.set_nonblocking(true)?;
        Ok((
            Parker {
                incoming: Mutex::new(Vec::new()),
                wake,
            },
            wake_rx,
        ))
    }

    /// Parks `client` until its next request starts or `deadline` passes.
    pub fn park(&self, client: Client, deadline: Instant) {
        // A poisoned lock only means another worker panicked while pushing; the list
        // is still a valid list.
        self.incoming
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((client, deadline));
        let _ = (&self.wake).write(&[1]);
    }

    /// Wakes the parking thread, to look at `Shared::is_stopping`.
    pub fn wake(&self) {
        let _ = (&self.wake).write(&[1]);
    }

    fn take_incoming(&self) -> Vec<(Client, Instant)> {
        std::mem::take(&mut *self.incoming.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The parking thread's loop.
pub fn run(shared: Arc<Shared>, mut wake_rx: UnixStream) {
    let mut parked: Vec<(Client, Instant)> = Vec::new();
    let mut fds = Vec::new();
    loop {
        fds.clear();
        fds.push(sys::poll_fd(wake_rx.as_raw_fd(), POLLIN));
        fds.extend(
            parked
                .iter()
                .map(|(c, _)| sys::poll_fd(c.io.stream.tcp().as_raw_fd(), POLLIN)),
        );
        let now = Instant::now();
        let timeout = parked
            .iter()
            .map(|(_, deadline)| deadline.saturating_duration_since(now))
            .min();
        if let Err(e) = sys::poll(&mut fds, timeout) {
            crate::error!("parking: poll failed: {e}");
        }
        if fds[0].revents != 0 {
            let mut drain = [0u8; 256];
            while matches!(wake_rx.read(&mut drain), Ok(n) if n > 0) {}
        }
        let now = Instant::now();
        // Backwards, so that swap_remove only moves entries already looked at.
        for i in (0..parked.len()).rev() {
            let revents = fds[i + 1].revents;
            let (client, deadline) = &parked[i];
            // A head cut short by its deadline goes back to a worker for its 408.
            let late_head = *deadline <= now && !client.io.data().is_empty();
            if revents & POLLIN != 0 || late_head {
                let (client, _) = parked.swap_remove(i);
                shared.queue.push(Job::Ready(client));
            } else if revents & (POLLHUP | POLLERR | POLLNVAL) != 0 || *deadline <= now {
                let (client, _) = parked.swap_remove(i);
                crate::debug!("client {}: idle connection closed", client.ip);
            }
        }
        parked.extend(shared.parker.take_incoming());
        if shared.is_stopping() {
            parked.clear(); // shutting down: idle connections close at once
        }
    }
}

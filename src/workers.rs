//! The fixed set of worker threads and the queue that feeds them. A job is a new
//! connection from the acceptor or a parked one whose next request has begun.
//! A panic while serving one connection is caught here and logged; the worker goes on.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

use crate::conn::{self, Client, Slot, Waiting};
use crate::server::Shared;
use crate::stream::ClientStream;
use rustls::{ServerConnection, StreamOwned};

pub enum Job {
    /// A connection just accepted, and when. `redirect_to`: it came to the redirect
    /// listener, whose answers point to the TLS listener at that address.
    Accepted {
        stream: TcpStream,
        peer: SocketAddr,
        slot: Slot,
        at: Instant,
        redirect_to: Option<SocketAddr>,
    },
    /// A parked connection with bytes to read.
    Ready(Client),
    /// A request whose backend answered, or (`true`) stayed silent past `upstreamMs`.
    Resume(Box<Waiting>, bool),
}

#[derive(Default)]
pub struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

impl Queue {
    pub fn push(&self, job: Job) {
        // Each critical section pushes or pops one job: a poisoned queue is still valid.
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(job);
        self.ready.notify_one();
    }

    /// Jobs waiting for a worker.
    pub fn waiting(&self) -> usize {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn pop(&self) -> Job {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(job) = jobs.pop_front() {
                return job;
            }
            jobs = self
                .ready
                .wait(jobs)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Starts `n` workers on `shared.queue`.
pub fn spawn(shared: &Arc<Shared>, n: usize) -> std::io::Result<()> {
    for i in 0..n {
        let shared = Arc::clone(shared);
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .stack_size(256 * 1024)
            .spawn(move || work(&shared))?;
    }
    Ok(())
}

fn work(shared: &Shared) {
    loop {
        let job = shared.queue.pop();
        shared.busy.fetch_add(1, Ordering::SeqCst);
        let served = catch_unwind(AssertUnwindSafe(|| match job {
            Job::Accepted {
                stream,
                peer,
                slot,
                at,
                redirect_to,
            } => {
                let _ = stream.set_nodelay(true);
                let _ = stream.set_write_timeout(Some(shared.runtime().timeouts.upstream()));
                let stream = match (&shared.tls, redirect_to) {
                    (Some(config), None) => match ServerConnection::new(Arc::clone(config)) {
                        Ok(tls) => ClientStream::Tls(Box::new(StreamOwned::new(tls, stream))),
                        Err(e) => return crate::error!("TLS: cannot start a connection: {e}"),
                    },
                    _ => ClientStream::Plain(stream),
                };
                let mut client = Client::new(stream, peer.ip(), slot, at);
                client.redirect_to = redirect_to;
                conn::serve(shared, client);
            }
            Job::Ready(client) => conn::serve(shared, client),
            Job::Resume(waiting, timed_out) => conn::resume(shared, waiting, timed_out),
        }));
        shared.busy.fetch_sub(1, Ordering::SeqCst);
        if served.is_err() {
            crate::error!("a connection's handler panicked; the connection was closed");
        }
    }
}

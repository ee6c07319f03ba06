//! The fixed set of worker threads. Each waits in the parker's epoll set for the next
//! ready socket (a connection whose request has begun, a backend whose answer has)
//! and serves it with ordinary blocking code, which does not block since the socket
//! is ready; a few jobs come through a queue instead. A panic while serving one
//! connection is caught here and logged; the worker goes on.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::conn::{self, Client, Waiting};
use crate::server::Shared;

pub enum Job {
    /// A parked connection with bytes to read.
    Ready(Client),
    /// A request whose backend answered, or (`true`) stayed silent past `upstreamMs`.
    Resume(Box<Waiting>, bool),
}

/// Jobs that do not come from a socket event: a connection handed on with bytes
/// already buffered, and what the deadline sweep finds. A push also writes a byte to
/// `notify`, which is in the parker's epoll set, so that a worker waiting there wakes.
pub struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    notify: UnixStream,       // written on every push
    pub notified: UnixStream, // its other end, in the epoll set
}

impl Queue {
    pub fn new() -> std::io::Result<Queue> {
        let (notify, notified) = UnixStream::pair()?;
        notify.set_nonblocking(true)?; // a full socket means a wake-up is pending already
        notified.set_nonblocking(true)?;
        Ok(Queue {
            jobs: Mutex::new(VecDeque::new()),
            notify,
            notified,
        })
    }

    fn jobs(&self) -> MutexGuard<'_, VecDeque<Job>> {
        // Each critical section pushes or pops one job: a poisoned queue is still valid.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn push(&self, job: Job) {
        self.jobs().push_back(job);
        let _ = (&self.notify).write(&[1]);
    }

    /// Jobs waiting for a worker.
    pub fn waiting(&self) -> usize {
        self.jobs().len()
    }

    fn pop(&self) -> Option<Job> {
        self.jobs().pop_front()
    }

    /// Reads off the wake-up bytes (the jobs stay queued).
    pub fn drain_notifications(&self) {
        let mut drain = [0u8; 256];
        while matches!((&self.notified).read(&mut drain), Ok(n) if n > 0) {}
    }
}

/// How many workers may wait in the epoll set at once: two per core, so that one
/// busy with a long job seldom leaves nobody waiting. The others wait in reserve:
/// epoll wakes its waiters in turn, so with every worker waiting there each event
/// would go to a different, cold thread.
fn max_pollers() -> usize {
    2 * std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The workers' count of epoll waiters, and the reserve's waiting place.
#[derive(Default)]
pub struct Crew {
    pollers: AtomicUsize, // workers in `Parker::next_job` now
    reserve: Mutex<()>,
    needed: Condvar, // signalled when no worker is left waiting for events
}

impl Crew {
    /// Waits in reserve while enough workers wait for events.
    fn wait_turn(&self, max: usize) {
        if self.pollers.load(Ordering::SeqCst) < max {
            return; // the common case, without the lock
        }
        let mut guard = self.reserve.lock().unwrap_or_else(PoisonError::into_inner);
        while self.pollers.load(Ordering::SeqCst) >= max {
            guard = self
                .needed
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Called before serving a job: if that leaves nobody waiting for events, a
    /// reserve worker takes the place (under the lock, so the signal is not lost).
    fn keep_one_polling(&self) {
        if self.pollers.load(Ordering::SeqCst) == 0 {
            let _guard = self.reserve.lock().unwrap_or_else(PoisonError::into_inner);
            self.needed.notify_one();
        }
    }
}

/// Starts `n` workers.
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

/// A worker takes queued jobs first, else waits in the parker's epoll set for the
/// next socket that is ready; no thread stands between the event and its worker.
fn work(shared: &Shared) {
    let (crew, max) = (&shared.crew, max_pollers());
    loop {
        crew.wait_turn(max);
        let job = match shared.queue.pop() {
            Some(job) => job,
            None => {
                crew.pollers.fetch_add(1, Ordering::SeqCst);
                let job = shared.parker.next_job(&shared.queue);
                crew.pollers.fetch_sub(1, Ordering::SeqCst);
                match job {
                    Some(job) => job,
                    None => continue,
                }
            }
        };
        crew.keep_one_polling();
        shared.busy.fetch_add(1, Ordering::SeqCst);
        let served = catch_unwind(AssertUnwindSafe(|| match job {
            Job::Ready(client) => conn::serve(shared, client),
            Job::Resume(waiting, timed_out) => conn::resume(shared, waiting, timed_out),
        }));
        shared.busy.fetch_sub(1, Ordering::SeqCst);
        if served.is_err() {
            crate::error!("a connection's handler panicked; the connection was closed");
        }
    }
}

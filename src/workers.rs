//! The fixed set of worker threads. Each waits in the parker's epoll set for ready
//! sockets (a connection whose request has begun, a backend whose answer has), takes
//! a batch of them and serves them in turn with ordinary blocking code, which does
//! not block since the socket is ready; a few jobs come through a queue instead. A
//! panic while serving one connection is caught here and logged; the worker goes on.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::conn::{self, Client, Waiting};
use crate::server::Shared;

/// Each critical section on a job list pushes or pops jobs: a poisoned list is still
/// valid.
fn lock(jobs: &Mutex<VecDeque<Job>>) -> MutexGuard<'_, VecDeque<Job>> {
    jobs.lock().unwrap_or_else(PoisonError::into_inner)
}

pub enum Job {
    /// A parked connection with bytes to read.
    Ready(Client),
    /// A request whose backend answered, or (`true`) stayed silent past `upstreamMs`.
    Resume(Box<Waiting>, bool),
    /// A connection being closed sent more bytes; it lingers until the given time.
    Closing(Client, Instant),
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
        lock(&self.jobs)
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

/// The workers' count of epoll waiters, the reserve's waiting place, and each
/// worker's batch.
pub struct Crew {
    pollers: AtomicUsize, // workers in `Parker::next_jobs` now
    reserve: Mutex<()>,
    needed: Condvar, // signalled when no worker is left waiting for events
    batches: Vec<Batch>,
    epoch: Instant,
}

/// The jobs a worker took from one epoll_wait and has not begun yet, and since when
/// it has been serving the current one.
#[derive(Default)]
struct Batch {
    jobs: Mutex<VecDeque<Job>>,
    busy_since: AtomicU64, // µs since `Crew::epoch`, plus one; 0 while not serving
}

impl Crew {
    pub fn new(workers: usize) -> Crew {
        Crew {
            pollers: AtomicUsize::new(0),
            reserve: Mutex::new(()),
            needed: Condvar::new(),
            batches: (0..workers).map(|_| Batch::default()).collect(),
            epoch: Instant::now(),
        }
    }

    fn micros(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Takes the next job of worker `i`'s batch and notes that serving it begins.
    fn next_in_batch(&self, i: usize) -> Option<Job> {
        let batch = &self.batches[i];
        let job = lock(&batch.jobs).pop_front()?;
        batch.busy_since.store(self.micros(), Ordering::Relaxed);
        Some(job)
    }

    /// Called by the sweep thread: the rest of a batch whose worker has been on one
    /// job for longer than `STUCK` (a slow client, a stream that goes on) goes to
    /// the queue, for other workers.
    pub fn rescue(&self, queue: &Queue) {
        let now = self.micros();
        for batch in &self.batches {
            let since = batch.busy_since.load(Ordering::Relaxed);
            if since != 0 && u128::from(now - since.min(now)) > STUCK.as_micros() {
                let jobs = std::mem::take(&mut *lock(&batch.jobs));
                for job in jobs {
                    queue.push(job);
                }
            }
        }
    }

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
            .spawn(move || work(&shared, i))?;
    }
    Ok(())
}

/// Most ready sockets a worker takes from one epoll_wait; see `work`.
const BATCH: usize = 16;
/// After serving for this long, a worker hands the rest of its batch to the queue, so
/// a job that blocks (a slow client, a large body) delays the others at most this.
const HANDOFF: Duration = Duration::from_millis(5);
/// A worker on one job for longer than this loses the rest of its batch to others.
const STUCK: Duration = Duration::from_millis(20);

/// A worker takes queued jobs first, else waits in the parker's epoll set for the
/// sockets that are ready, several at a time, and serves them in turn: under load a
/// worker goes from one ready socket to the next without sleeping in between. What
/// it has not begun when `HANDOFF` has passed goes to the queue for other workers.
fn work(shared: &Shared, i: usize) {
    let (crew, max) = (&shared.crew, max_pollers());
    let mut jobs: Vec<Job> = Vec::with_capacity(BATCH);
    loop {
        crew.wait_turn(max);
        match shared.queue.pop() {
            Some(job) => jobs.push(job),
            None => {
                crew.pollers.fetch_add(1, Ordering::SeqCst);
                shared.parker.next_jobs(&shared.queue, &mut jobs, BATCH);
                crew.pollers.fetch_sub(1, Ordering::SeqCst);
            }
        }
        if jobs.is_empty() {
            continue;
        }
        crew.keep_one_polling();
        let began = Instant::now();
        lock(&crew.batches[i].jobs).extend(jobs.drain(..));
        while let Some(job) = crew.next_in_batch(i) {
            serve(shared, job);
            crew.batches[i].busy_since.store(0, Ordering::Relaxed);
            if began.elapsed() >= HANDOFF {
                for job in std::mem::take(&mut *lock(&crew.batches[i].jobs)) {
                    shared.queue.push(job);
                }
            }
        }
    }
}

fn serve(shared: &Shared, job: Job) {
    shared.busy.fetch_add(1, Ordering::SeqCst);
    let served = catch_unwind(AssertUnwindSafe(|| match job {
        Job::Ready(client) => conn::serve(shared, client),
        Job::Resume(waiting, timed_out) => conn::resume(shared, waiting, timed_out),
        Job::Closing(client, until) => conn::linger(shared, client, until),
    }));
    shared.busy.fetch_sub(1, Ordering::SeqCst);
    if served.is_err() {
        crate::error!("a connection's handler panicked; the connection was closed");
    }
}

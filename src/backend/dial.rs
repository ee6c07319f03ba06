//! Connecting to a backend without waiting [R8]: an address is connected to with a
//! non-blocking connect whose outcome the event loop learns when the socket becomes
//! writable; a host name is looked up on the lookup thread, never on a loop. The
//! thread answers through a socket pair whose reading end the loop watches like any
//! backend socket, so a lookup is one more thing a connection waits for.
//!
//! The lookup thread starts with the first name to look up; a config with addresses
//! only never starts it.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::backend::authority::Authority;

type Answer = Arc<Mutex<Option<io::Result<Vec<SocketAddr>>>>>;

/// One lookup asked of the thread.
struct Job {
    host: String,
    port: u16,
    answer: Answer,
    done: UnixStream,
}

/// A lookup under way: `socket` becomes readable when its answer is in.
pub struct Lookup {
    pub socket: UnixStream,
    answer: Answer,
}

impl Lookup {
    /// The addresses, once the answer is in (`None` before).
    pub fn answer(&mut self) -> Option<io::Result<Vec<SocketAddr>>> {
        let mut byte = [0u8; 1];
        let _ = self.socket.read(&mut byte);
        self.answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Where the addresses of `authority` come from: at once for an address, from the
/// lookup thread for a name.
pub enum Addresses {
    Ready(Vec<SocketAddr>),
    Pending(Lookup),
}

pub fn addresses(authority: &Authority) -> io::Result<Addresses> {
    if let Ok(ip) = authority.host.parse::<IpAddr>() {
        return Ok(Addresses::Ready(vec![SocketAddr::new(ip, authority.port)]));
    }
    let (done, socket) = UnixStream::pair()?;
    socket.set_nonblocking(true)?;
    let answer: Answer = Arc::default();
    let job = Job {
        host: authority.host.clone(),
        port: authority.port,
        answer: Arc::clone(&answer),
        done,
    };
    lookups()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .send(job)
        .map_err(|_| io::Error::other("the lookup thread is gone"))?;
    Ok(Addresses::Pending(Lookup { socket, answer }))
}

/// The queue of the lookup thread, started on first use.
fn lookups() -> &'static Mutex<Sender<Job>> {
    static LOOKUPS: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    LOOKUPS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("lookups".into())
            .spawn(move || {
                for mut job in rx {
                    let found = (job.host.as_str(), job.port)
                        .to_socket_addrs()
                        .map(Iterator::collect);
                    *job.answer.lock().unwrap_or_else(PoisonError::into_inner) = Some(found);
                    let _ = job.done.write(&[1]); // the asker may have given up
                }
            });
        if let Err(e) = spawned {
            crate::error!("cannot start the lookup thread: {e}");
        }
        Mutex::new(tx)
    })
}

/// Starts connecting to `addr`.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = crate::sys::connect_nonblocking(addr)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Whether a connect under way has ended, once its socket is writable: `Ok(true)`
/// connected, `Ok(false)` not yet, `Err` failed.
pub fn connected(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

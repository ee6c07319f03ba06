//! An HTTP/2 connection's streams as exchanges [H2]: each request the machine
//! (`conn.rs`) reads becomes an `Exchange` — the same routes, static files, pools
//! and header rules as HTTP/1 — and what the exchange answers goes back through
//! `StreamSink` as that stream's frames. `front/conn.rs` owns the socket and calls
//! `work` after each read; the exchanges' backend sockets are the connection's, by
//! stream id (`event::Side::Backend`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::conn::{Event, H2, Limits, is_tunnel};
use super::tunnel::StreamTunnel;
use crate::body::BodyLength;
use crate::event::{Side, SocketId};
use crate::exchange::{self, Exchange, Respond};
use crate::front::transport::Wire;
use crate::front::tunnel::Pumped;
use crate::head::{FieldList, ResponseHead};
use crate::headers::{announced_length, end_to_end, local_body};
use crate::shared::{Runtime, Shared};
use crate::sys::Readiness;

/// A stream's exchange, and what its log line needs.
struct Running {
    x: Exchange,
    /// After a 101: the stream is a WebSocket tunnel to the backend.
    tunnel: Option<StreamTunnel>,
    head_only: bool,
    started: Instant,
}

pub struct Session {
    pub h2: H2,
    running: BTreeMap<u32, Running>,
    shared: Arc<Shared>,
    /// The runtime new streams start with, and its generation (see `Shared`).
    rt: Arc<Runtime>,
    generation: u64,
    client: exchange::Client,
    /// The streams' ids while each takes its turn (kept to spare an allocation).
    ids: Vec<u32>,
}

impl Wire for H2 {
    fn wants_read(&self) -> bool {
        H2::wants_read(self)
    }
    fn input_space(&mut self) -> &mut [u8] {
        H2::input_space(self)
    }
    fn received(&mut self, n: usize, now: Instant) {
        H2::received(self, n);
        if n > 0 {
            self.touch(now);
        }
    }
    fn received_eof(&mut self) {
        H2::received_eof(self);
    }
    fn output(&mut self) -> &[u8] {
        H2::output(self)
    }
    fn wrote(&mut self, n: usize) {
        H2::wrote(self, n);
    }
    fn wants_write(&self) -> bool {
        H2::wants_write(self)
    }
}

impl Session {
    /// A session for a connection that speaks HTTP/2: `input` is what was read of it
    /// already (the preface, on the plain listener).
    pub fn new(
        shared: Arc<Shared>,
        (rt, generation): (Arc<Runtime>, u64),
        client: exchange::Client,
        input: Vec<u8>,
        now: Instant,
    ) -> Session {
        let limits = Limits {
            max_header_bytes: rt.max_header_bytes,
            header: rt.timeouts.header(),
            keep_alive: rt.timeouts.keep_alive(),
            send: rt.timeouts.upstream(),
        };
        Session {
            h2: H2::new(limits, input, now),
            running: BTreeMap::new(),
            shared,
            rt,
            generation,
            client,
            ids: Vec::new(),
        }
    }

    /// Takes the frames read, starts the exchanges they ask for, feeds them their
    /// bodies and lets them answer: whether anything moved.
    pub fn work(&mut self, now: Instant) -> bool {
        let mut moved = self.h2.process(now);
        moved |= self.take_events(now);
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        ids.extend(self.running.keys().copied());
        for &id in &ids {
            moved |= self.run_stream(id, now);
        }
        self.ids = ids;
        moved |= self.take_events(now);
        moved
    }

    fn take_events(&mut self, now: Instant) -> bool {
        let events = self.h2.take_events();
        let moved = !events.is_empty();
        for event in events {
            match event {
                Event::Request { stream, head, body } => {
                    if let Some(newer) = self.shared.newer_runtime(&mut self.generation) {
                        self.rt = newer;
                    }
                    let head_only = head.method == "HEAD";
                    let rt = Arc::clone(&self.rt);
                    let x = Exchange::start(rt, head, body, self.client, now);
                    let running = Running {
                        x,
                        tunnel: None,
                        head_only,
                        started: now,
                    };
                    self.running.insert(stream, running);
                }
                Event::Reset { stream } => {
                    if let Some(mut r) = self.running.remove(&stream) {
                        r.x.client_gone(None);
                        self.log(&r);
                    }
                }
            }
        }
        moved
    }

    /// Feeds one stream's exchange its body and lets it answer.
    fn run_stream(&mut self, id: u32, now: Instant) -> bool {
        let Some(r) = self.running.get_mut(&id) else {
            return false;
        };
        if let Some(t) = &mut r.tunnel {
            let pumped = match self.h2.has_stream(id) {
                true => t.pump(&mut self.h2, id, now),
                false => Pumped::Over,
            };
            return match pumped {
                Pumped::Wait => false,
                Pumped::More => true,
                Pumped::Over => {
                    let clean = t.is_done();
                    self.end_tunnel(id, clean);
                    true
                }
            };
        }
        let mut moved = false;
        // An extended CONNECT's DATA is for its tunnel, not a body.
        let websocket = is_tunnel(&r.x.req);
        let body = self.h2.body(id);
        if !body.is_empty() && !websocket {
            let n = body.len().min(r.x.body_room());
            if n > 0 {
                r.x.client_data(&body[..n]);
                self.h2.consume(id, n);
                moved = true;
            }
        }
        if let Some(trailers) = self.h2.body_ended(id)
            && !r.x.body_done()
            && !websocket
        {
            r.x.client_end(trailers);
            moved = true;
        }
        let mut sink = StreamSink {
            h2: &mut self.h2,
            id,
            head_only: r.head_only,
        };
        moved |= r.x.run(&mut sink, now);
        if let Some((backend, early)) = r.x.take_tunnel() {
            let idle = self.rt.timeouts.tunnel_idle();
            r.tunnel = Some(StreamTunnel::new(backend, early, idle, now));
            r.x.outcome.status = 200; // what the client was sent for the 101
            self.h2.make_tunnel(id);
            return true;
        }
        if r.x.is_finished() {
            if let Some(r) = self.running.remove(&id) {
                self.log(&r);
            }
            moved = true;
        }
        moved
    }

    /// A tunnel is over: the stream is reset unless it ended `clean`ly (both sides
    /// closed, the END_STREAM queued), and the line is logged.
    fn end_tunnel(&mut self, id: u32, clean: bool) {
        let Some(mut r) = self.running.remove(&id) else {
            return;
        };
        if !clean && self.h2.has_stream(id) {
            self.h2.abort(id);
        }
        if let Some(t) = &r.tunnel {
            r.x.outcome.body_bytes = t.to_client;
        }
        self.log(&r);
    }

    fn log(&self, r: &Running) {
        let x = &r.x;
        crate::debug!(
            "client {}: {} {} (HTTP/2) -> {} via {}",
            self.client.ip,
            x.req.method,
            x.req.target,
            x.outcome.status,
            x.upstream().map_or("-", |a| a.text.as_str())
        );
        if self.shared.log.is_on() {
            let entry = x.log_entry(self.client.ip, "HTTP/2.0", r.started);
            self.shared.log.write(&entry);
        }
    }

    /// The backend sockets of the streams, by stream id.
    pub fn sockets(&self, each: &mut dyn FnMut(Side, SocketId)) {
        for (&id, r) in &self.running {
            let socket = match &r.tunnel {
                Some(t) => Some(t.socket()),
                None => r.x.backend_socket(),
            };
            if let Some(socket) = socket {
                each(Side::Backend(id), socket);
            }
        }
    }

    pub fn backend_ready(&mut self, id: u32, readiness: Readiness) {
        match self.running.get_mut(&id) {
            Some(Running {
                tunnel: Some(t), ..
            }) => t.ready(readiness),
            Some(r) => r.x.backend_ready(readiness),
            None => {}
        }
    }

    /// The nearest deadline: the connection's own, or a stream's exchange's.
    pub fn deadline(&self) -> Option<Instant> {
        let streams = (self.running.values())
            .filter_map(|r| {
                r.tunnel
                    .as_ref()
                    .map_or(r.x.deadline(), |t| Some(t.deadline()))
            })
            .min();
        match (self.h2.deadline(), streams) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn expire(&mut self, now: Instant) {
        self.h2.expire(now);
        let ids: Vec<u32> = self.running.keys().copied().collect();
        for id in ids {
            let Some(r) = self.running.get_mut(&id) else {
                continue;
            };
            if r.tunnel.as_ref().is_some_and(|t| t.deadline() <= now) {
                crate::debug!("HTTP/2 tunnel on stream {id}: idle for tunnelIdleMs");
                self.end_tunnel(id, false);
                continue;
            }
            if r.tunnel.is_none() && r.x.deadline().is_some_and(|at| at <= now) {
                let mut sink = StreamSink {
                    h2: &mut self.h2,
                    id,
                    head_only: r.head_only,
                };
                r.x.expire(&mut sink, now);
            }
        }
        self.take_events(now);
    }

    /// The client is gone (or the server closes): every exchange ends.
    pub fn close(&mut self) {
        for (_, mut r) in std::mem::take(&mut self.running) {
            r.x.client_gone(None);
            self.log(&r);
        }
    }

    pub fn is_finished(&self) -> bool {
        self.h2.is_finished() && self.running.is_empty()
    }
}

/// An exchange's answer, as the frames of its stream.
struct StreamSink<'a> {
    h2: &'a mut H2,
    id: u32,
    head_only: bool,
}

impl StreamSink<'_> {
    fn send(&mut self, status: u16, fields: &FieldList, end: bool) {
        let fields: Vec<(&[u8], &[u8])> = fields.iter().collect();
        self.h2.send_head(self.id, status, &fields, end);
    }
}

/// The fields of `res` as an HTTP/2 head has them: names in lower case.
fn h2_fields(res: &ResponseHead, content_length: Option<&[u8]>) -> FieldList {
    let mut fields = FieldList::default();
    for (name, value) in end_to_end(res) {
        fields.push_lower(name, value);
    }
    if let Some(length) = content_length {
        fields.push(b"content-length", length);
    }
    fields
}

impl Respond for StreamSink<'_> {
    fn room(&self) -> usize {
        self.h2.room(self.id)
    }

    fn interim(&mut self, head: &ResponseHead) {
        let fields = h2_fields(head, None);
        self.send(head.status, &fields, false);
    }

    fn head(&mut self, head: &ResponseHead, length: BodyLength, _keep_alive: bool) {
        if head.status == 101 {
            // RFC 8441 §5: the backend's 101 is a 200 on the stream, which stays open.
            let mut fields = FieldList::default();
            for (name, value) in end_to_end(head) {
                if !name.eq_ignore_ascii_case(b"sec-websocket-accept") {
                    fields.push_lower(name, value);
                }
            }
            return self.send(200, &fields, false);
        }
        let exact;
        let (content_length, end) = match length {
            BodyLength::Empty => (announced_length(head), true),
            BodyLength::Exact(n) => {
                exact = n.to_string();
                (Some(exact.as_bytes()), self.head_only)
            }
            BodyLength::Chunked | BodyLength::UntilClose => (None, self.head_only),
        };
        let fields = h2_fields(head, content_length);
        self.send(head.status, &fields, end);
    }

    fn local(&mut self, status: u16, extra: &[(&str, &str)]) {
        let text = local_body(status);
        let length = text.len().to_string();
        let mut fields = FieldList::default();
        fields.push(b"content-type", b"text/plain; charset=utf-8");
        fields.push(b"content-length", length.as_bytes());
        for (name, value) in extra {
            fields.push_lower(name.as_bytes(), value.as_bytes());
        }
        self.send(status, &fields, self.head_only);
        if !self.head_only {
            self.h2.send_data(self.id, text.as_bytes());
            self.h2.send_end(self.id, &[]);
        }
    }

    fn data(&mut self, bytes: &[u8]) {
        if !self.head_only {
            self.h2.send_data(self.id, bytes);
        }
    }

    fn end(&mut self, trailers: &[u8]) {
        self.h2.send_end(self.id, trailers);
    }

    fn abort(&mut self) {
        self.h2.abort(self.id);
    }
}

//! One HTTP/2 connection, sans-I/O [H2]: the bytes a client sends become frames,
//! streams and request events; the answers given per stream become frames to send.
//! Like the HTTP/1 machine it never touches a socket or reads the clock: its driver
//! (`session.rs`) reads into `input_space`, writes out `output`, and passes `now`.
//!
//! Streams: a client's HEADERS opens one (odd ids, each above the last); its request
//! head becomes `Event::Request`, its DATA waits in the stream (`body`, `consume`)
//! within the window hawkey granted, so a stream's request body takes at most
//! `STREAM_WINDOW` bytes here and all of a connection's at most `CONN_WINDOW`. An
//! answer is queued per stream (`room`, at most `STREAM_OUT` bytes) and leaves in
//! DATA frames within the client's windows, the streams taking turns, so one stream
//! whose client grants nothing holds back only itself.
//!
//! RFC 9113 §5.4: an error that concerns one stream ends that stream (RST_STREAM);
//! one that leaves the connection's state unknown (HPACK, framing, flow control of
//! the connection) ends the connection with GOAWAY. The limits of SPEC [H2] end it
//! with `ENHANCE_YOUR_CALM`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::frame::{
    self, Code, FrameError, HEADER_LEN, Header, MAX_FRAME, connection_error, continuation,
    data::Data, goaway, headers::Headers, kind, ping, priority, rst_stream, settings,
    window_update,
};
use super::hpack::{Decoder, Encoder, HpackError};
use crate::body::BodyLength;
use crate::head::{FieldList, Fields as _, RequestHead};

/// What a client sends first (§3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// SETTINGS_MAX_CONCURRENT_STREAMS [H2].
pub const MAX_STREAMS: u32 = 128;
/// Most fields in a header block [H2].
const MAX_FIELDS: usize = 128;
/// The window hawkey grants each stream's request body, and the connection's.
pub const STREAM_WINDOW: u32 = 64 * 1024;
pub const CONN_WINDOW: u32 = 1024 * 1024;
/// Most answer bytes queued per stream before its exchange waits.
pub const STREAM_OUT: usize = 64 * 1024;
/// Frames are written out until this many bytes wait for the socket.
const OUT_CAP: usize = 64 * 1024;
/// Frames taken per `process` call, so one connection cannot hold its loop.
const FRAMES_PER_STEP: usize = 64;
/// Streams a client may reset before their answer, beyond those answered [H2].
const RESET_BUDGET: u32 = 100;
/// Frames that carry no request work (PING, SETTINGS, empty DATA, WINDOW_UPDATE,
/// empty CONTINUATION, PRIORITY, refused streams) a client may send; the budget
/// fills again by one for each request answered [H2].
const ANOMALY_BUDGET: u32 = 1000;
/// Streams answered while their request still comes, read on to its end (§8.1: a
/// complete answer may come first); past this many, the request is cut short with
/// RST_STREAM NO_ERROR.
const MAX_DRAINING: usize = 32;
/// A WINDOW_UPDATE smaller than this counts against the anomaly budget.
const SMALL_UPDATE: u32 = 1024;
/// The most a window may be (§6.9.1).
const WINDOW_MAX: i64 = 0x7fff_ffff;

/// The limits a connection is read with.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header_bytes: usize,
    /// `headerMs`: for the preface and first SETTINGS, and for a header block to end.
    pub header: Duration,
    /// `keepAliveMs`: a connection with no stream open closes after it.
    pub keep_alive: Duration,
    /// `upstreamMs`: how long an answer may wait for the client's window.
    pub send: Duration,
}

/// What the client's frames say, for the driver.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A stream's request; its body (if any) follows in `body`, `consume`, `ended`.
    Request {
        stream: u32,
        head: RequestHead,
        body: BodyLength,
    },
    /// The stream ended without a clean end: the client reset it, or hawkey did
    /// (a malformed request, a body longer than its `content-length`).
    Reset { stream: u32 },
}

/// One stream, from hawkey's side.
#[derive(Debug, Default)]
struct Stream {
    /// Request body bytes received, not yet consumed.
    recv: Vec<u8>,
    /// Consumed bytes not yet given back in a WINDOW_UPDATE.
    recv_unacked: u32,
    /// What the client may still send on this stream.
    recv_window: i64,
    /// The client sent END_STREAM; the trailers it sent, re-serialised.
    remote_ended: bool,
    trailers: Vec<u8>,
    /// `content-length` of the request, and the body bytes received.
    content_length: Option<u64>,
    received: u64,
    /// What hawkey may still send on this stream.
    send_window: i64,
    /// Answer body bytes queued.
    out: Vec<u8>,
    /// The answer's head went out; its end is queued (after `out`), with trailers.
    head_sent: bool,
    end_queued: bool,
    end_trailers: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    /// END_STREAM (or RST_STREAM) went out.
    local_ended: bool,
    /// Since when answer bytes wait for a window the client does not open.
    blocked_since: Option<Instant>,
    /// A WebSocket tunnel: its DATA is taken both ways until both sides end.
    tunnel: bool,
}

impl Stream {
    fn is_closed(&self) -> bool {
        self.remote_ended && self.local_ended
    }
}

/// A header block being read (HEADERS, then CONTINUATION until END_HEADERS).
#[derive(Debug)]
struct Block {
    stream: u32,
    bytes: Vec<u8>,
    end_stream: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the preface, then for the client's first SETTINGS.
    Preface,
    Settings,
    Open,
    /// GOAWAY sent: no new stream; the connection closes once the streams are done
    /// (`graceful`) or at once after the output.
    Away {
        graceful: bool,
    },
}

pub struct H2 {
    limits: Limits,
    state: State,
    /// Bytes received in `input[..end]`, of which `taken` are handled.
    input: Vec<u8>,
    end: usize,
    taken: usize,
    output: Vec<u8>,
    written: usize,
    decoder: Decoder,
    encoder: Encoder,
    streams: BTreeMap<u32, Stream>,
    /// The highest stream id the client opened.
    last_stream: u32,
    block: Option<Block>,
    /// Streams hawkey reset lately: frames the client sent before it saw the reset
    /// are dropped, not answered with another (§5.4.2).
    reset_lately: VecDeque<u32>,
    /// The client's SETTINGS_INITIAL_WINDOW_SIZE, and the connection's windows.
    initial_window: i64,
    send_window: i64,
    recv_window: i64,
    recv_unacked: u32,
    /// The stream whose turn it is to send (round robin), and the streams' ids
    /// while they take their turns (kept to spare an allocation a write).
    turn: u32,
    order: Vec<u32>,
    resets: u32,
    anomalies: u32,
    events: Vec<Event>,
    /// When the connection began to wait for the preface, a header block, or (no
    /// stream open) its next request.
    since: Instant,
    client_closed: bool,
    /// The time of the last `process`, for what `output` does.
    clock: Instant,
    /// The reason of the GOAWAY hawkey sent, for the log.
    pub goaway: Option<(Code, &'static str)>,
}

impl H2 {
    /// A connection whose first bytes are to come (or are in `input` already: the
    /// plain listener read them to find the preface).
    pub fn new(limits: Limits, input: Vec<u8>, now: Instant) -> H2 {
        let mut h2 = H2 {
            limits,
            state: State::Preface,
            end: input.len(),
            input,
            taken: 0,
            output: Vec::new(),
            written: 0,
            decoder: Decoder::default(),
            encoder: Encoder::default(),
            streams: BTreeMap::new(),
            last_stream: 0,
            block: None,
            reset_lately: VecDeque::new(),
            initial_window: 65_535,
            send_window: 65_535,
            recv_window: i64::from(CONN_WINDOW),
            recv_unacked: 0,
            turn: 0,
            order: Vec::new(),
            resets: 0,
            anomalies: 0,
            events: Vec::new(),
            since: now,
            client_closed: false,
            clock: now,
            goaway: None,
        };
        let max_list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
        settings::write(
            &[
                (settings::MAX_CONCURRENT_STREAMS, MAX_STREAMS),
                (settings::INITIAL_WINDOW_SIZE, STREAM_WINDOW),
                (settings::MAX_HEADER_LIST_SIZE, max_list),
                (settings::ENABLE_PUSH, 0),
                (settings::ENABLE_CONNECT_PROTOCOL, 1),
            ],
            &mut h2.output,
        );
        window_update::write(0, CONN_WINDOW - 65_535, &mut h2.output);
        h2
    }

    // ------------------------------------------------------------- input side

    /// Room to read into (the bytes read are passed to `received`).
    pub fn input_space(&mut self) -> &mut [u8] {
        if self.taken > 0 {
            self.input.copy_within(self.taken..self.end, 0);
            (self.end, self.taken) = (self.end - self.taken, 0);
        }
        let want = self.end + HEADER_LEN + MAX_FRAME;
        if self.input.len() < want {
            self.input.resize(want, 0);
        }
        &mut self.input[self.end..]
    }

    pub fn received(&mut self, n: usize) {
        self.end = (self.end + n).min(self.input.len());
    }

    pub fn received_eof(&mut self) {
        self.client_closed = true;
    }

    pub fn client_closed(&self) -> bool {
        self.client_closed
    }

    /// Reading goes on while the connection is open and its output is written.
    pub fn wants_read(&self) -> bool {
        !self.client_closed
            && !matches!(self.state, State::Away { graceful: false })
            && self.output.len() - self.written < OUT_CAP
    }

    /// Takes the frames received, at most `FRAMES_PER_STEP`; whether any were taken.
    pub fn process(&mut self, now: Instant) -> bool {
        self.clock = now;
        let mut moved = false;
        for _ in 0..FRAMES_PER_STEP {
            match self.next_frame(now) {
                Ok(true) => moved = true,
                Ok(false) => break,
                Err(e) => {
                    self.fail(e);
                    return true;
                }
            }
        }
        moved
    }

    /// The events since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn next_frame(&mut self, now: Instant) -> Result<bool, FrameError> {
        if matches!(self.state, State::Away { graceful: false }) {
            return Ok(false);
        }
        let input = &self.input[self.taken..self.end];
        if self.state == State::Preface {
            let n = input.len().min(PREFACE.len());
            if input[..n] != PREFACE[..n] {
                return Err(connection_error(Code::Protocol, "not the HTTP/2 preface"));
            }
            if n < PREFACE.len() {
                return Ok(false);
            }
            self.taken += PREFACE.len();
            self.state = State::Settings;
            return Ok(true);
        }
        let Some(header) = Header::parse(input) else {
            return Ok(false);
        };
        if header.len > MAX_FRAME {
            return Err(connection_error(
                Code::FrameSize,
                "a frame larger than 16 384 bytes",
            ));
        }
        if input.len() < HEADER_LEN + header.len {
            return Ok(false);
        }
        let start = self.taken + HEADER_LEN;
        self.taken = start + header.len;
        // The payload is taken out of `input` while the frame is handled.
        let input = std::mem::take(&mut self.input);
        let result = self.frame(&header, &input[start..start + header.len], now);
        self.input = input;
        match result {
            Err(FrameError {
                stream: Some(id),
                code,
                why,
            }) => {
                crate::debug!("HTTP/2 stream {id}: {why}");
                self.reset(id, code);
                Ok(true)
            }
            other => other.map(|()| true),
        }
    }

    fn frame(&mut self, h: &Header, payload: &[u8], now: Instant) -> Result<(), FrameError> {
        if self.state == State::Settings && (h.kind != kind::SETTINGS || h.has(frame::flag::ACK)) {
            return Err(connection_error(
                Code::Protocol,
                "the first frame is not SETTINGS",
            ));
        }
        if let Some(block) = &self.block
            && (h.kind != kind::CONTINUATION || h.stream != block.stream)
        {
            return Err(connection_error(
                Code::Protocol,
                "a header block cut by another frame",
            ));
        }
        match h.kind {
            kind::DATA => self.on_data(Data::decode(h, payload)?),
            kind::HEADERS => self.on_headers(Headers::decode(h, payload)?, now),
            kind::CONTINUATION => {
                self.on_continuation(continuation::Continuation::decode(h, payload)?, now)
            }
            kind::PRIORITY => {
                if priority::decode(h, payload)? == h.stream {
                    return Err(stream_error(
                        h.stream,
                        Code::Protocol,
                        "a stream depends on itself",
                    ));
                }
                self.anomaly()
            }
            kind::RST_STREAM => self.on_rst(h.stream, rst_stream::decode(h, payload)?),
            kind::SETTINGS => self.on_settings(settings::decode(h, payload)?),
            kind::PING => {
                let (data, ack) = ping::decode(h, payload)?;
                if !ack {
                    ping::write(data, true, &mut self.output);
                }
                self.anomaly()
            }
            kind::GOAWAY => {
                // The client opens no more streams; the open ones are answered, and
                // the connection closes when the client closes it, or at keepAliveMs.
                goaway::decode(h, payload)?;
                Ok(())
            }
            kind::WINDOW_UPDATE => {
                self.on_window_update(h.stream, window_update::decode(h, payload)?)
            }
            kind::PUSH_PROMISE => Err(connection_error(
                Code::Protocol,
                "PUSH_PROMISE from a client",
            )),
            _ => Ok(()), // §5.5: unknown frame types are ignored
        }
    }

    /// A frame that carries no work for a request: within the budget, or calm.
    fn anomaly(&mut self) -> Result<(), FrameError> {
        self.anomalies += 1;
        if self.anomalies > ANOMALY_BUDGET {
            return Err(connection_error(
                Code::EnhanceYourCalm,
                "too many frames with no request work",
            ));
        }
        Ok(())
    }

    fn on_settings(&mut self, s: settings::Settings) -> Result<(), FrameError> {
        let values = match s {
            settings::Settings::Ack => return self.anomaly(),
            settings::Settings::Values(values) => values,
        };
        if self.state == State::Settings {
            self.state = State::Open;
        } else {
            self.anomaly()?;
        }
        for (id, value) in values {
            match id {
                settings::HEADER_TABLE_SIZE => self.encoder.set_max(value as usize),
                settings::INITIAL_WINDOW_SIZE => {
                    let delta = i64::from(value) - self.initial_window;
                    self.initial_window = i64::from(value);
                    for stream in self.streams.values_mut() {
                        stream.send_window += delta;
                        if stream.send_window > WINDOW_MAX {
                            return Err(connection_error(
                                Code::FlowControl,
                                "a stream window past 2^31-1",
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        settings::write_ack(&mut self.output);
        Ok(())
    }

    fn on_window_update(&mut self, id: u32, increment: u32) -> Result<(), FrameError> {
        // Tiny increments make for tiny DATA frames: a flood of them is an anomaly.
        if increment < SMALL_UPDATE {
            self.anomaly()?;
        }
        if id == 0 {
            self.send_window += i64::from(increment);
            if self.send_window > WINDOW_MAX {
                return Err(connection_error(
                    Code::FlowControl,
                    "the connection window past 2^31-1",
                ));
            }
            return Ok(());
        }
        if id > self.last_stream {
            return Err(connection_error(
                Code::Protocol,
                "WINDOW_UPDATE on an idle stream",
            ));
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(()); // closed: ignored
        };
        stream.send_window += i64::from(increment);
        if stream.send_window > WINDOW_MAX {
            return Err(stream_error(
                id,
                Code::FlowControl,
                "a stream window past 2^31-1",
            ));
        }
        Ok(())
    }

    fn on_rst(&mut self, id: u32, _code: u32) -> Result<(), FrameError> {
        if id > self.last_stream {
            return Err(connection_error(
                Code::Protocol,
                "RST_STREAM on an idle stream",
            ));
        }
        let Some(stream) = self.streams.remove(&id) else {
            return Ok(());
        };
        // CVE-2023-44487: a stream reset before its answer cost us work for nothing.
        if !stream.local_ended {
            self.resets += 1;
            if self.resets > RESET_BUDGET {
                return Err(connection_error(
                    Code::EnhanceYourCalm,
                    "too many streams reset",
                ));
            }
        }
        self.give_back_conn(stream.recv.len());
        self.events.push(Event::Reset { stream: id });
        Ok(())
    }

    fn on_data(&mut self, d: Data<'_>) -> Result<(), FrameError> {
        let flow = i64::try_from(d.flow_len).unwrap_or(i64::MAX); // at most 16 384
        // The connection's window counts every DATA frame, whatever its stream.
        self.recv_window -= flow;
        if self.recv_window < 0 {
            return Err(connection_error(
                Code::FlowControl,
                "DATA past the connection window",
            ));
        }
        if d.bytes.is_empty() && !d.end_stream {
            self.anomaly()?;
        }
        if d.stream > self.last_stream {
            return Err(connection_error(Code::Protocol, "DATA on an idle stream"));
        }
        let Some(stream) = self.streams.get_mut(&d.stream).filter(|s| !s.remote_ended) else {
            self.give_back_conn(d.flow_len);
            if self.reset_lately.contains(&d.stream) {
                return Ok(());
            }
            return Err(stream_error(
                d.stream,
                Code::StreamClosed,
                "DATA on a closed stream",
            ));
        };
        stream.recv_window -= flow;
        if stream.recv_window < 0 {
            self.give_back_conn(d.flow_len);
            return Err(stream_error(
                d.stream,
                Code::FlowControl,
                "DATA past the stream window",
            ));
        }
        stream.received += d.bytes.len() as u64;
        let too_long = stream.content_length.is_some_and(|cl| stream.received > cl);
        let too_short =
            d.end_stream && stream.content_length.is_some_and(|cl| stream.received < cl);
        if too_long || too_short {
            self.give_back_conn(d.flow_len);
            return Err(stream_error(
                d.stream,
                Code::Protocol,
                "DATA not as long as content-length",
            ));
        }
        if stream.local_ended && !stream.tunnel {
            // Answered already: the bytes are dropped and their window given back.
            stream.recv_window += flow;
            let flow_len = d.flow_len;
            if d.end_stream {
                self.streams.remove(&d.stream);
            }
            self.give_back_conn(flow_len);
            return Ok(());
        }
        stream.recv.extend_from_slice(d.bytes);
        // Padding is consumed at once.
        let padding = d.flow_len - d.bytes.len();
        stream.recv_unacked += u32::try_from(padding).unwrap_or(0);
        self.recv_unacked += u32::try_from(padding).unwrap_or(0);
        stream.remote_ended |= d.end_stream;
        Ok(())
    }

    fn on_headers(&mut self, h: Headers<'_>, now: Instant) -> Result<(), FrameError> {
        if h.stream.is_multiple_of(2) {
            return Err(connection_error(
                Code::Protocol,
                "a client stream with an even id",
            ));
        }
        if h.depends_on == Some(h.stream) {
            return Err(stream_error(
                h.stream,
                Code::Protocol,
                "a stream depends on itself",
            ));
        }
        if h.fragment.is_empty() {
            self.anomaly()?;
        }
        self.check_block_size(h.fragment.len())?;
        if h.end_headers {
            return self.on_block(h.stream, h.fragment, h.end_stream);
        }
        self.block = Some(Block {
            stream: h.stream,
            bytes: h.fragment.to_vec(),
            end_stream: h.end_stream,
        });
        self.since = now;
        Ok(())
    }

    fn on_continuation(
        &mut self,
        c: continuation::Continuation<'_>,
        now: Instant,
    ) -> Result<(), FrameError> {
        let Some(mut block) = self.block.take() else {
            return Err(connection_error(
                Code::Protocol,
                "CONTINUATION without a header block",
            ));
        };
        if c.fragment.is_empty() && !c.end_headers {
            self.anomaly()?;
        }
        block.bytes.extend_from_slice(c.fragment);
        self.check_block_size(block.bytes.len())?;
        if c.end_headers {
            return self.on_block(block.stream, &block.bytes, block.end_stream);
        }
        self.block = Some(block);
        self.since = self.since.min(now);
        Ok(())
    }

    /// A header block may take at most `maxHeaderBytes` encoded (it decodes to more).
    fn check_block_size(&self, len: usize) -> Result<(), FrameError> {
        if len > self.limits.max_header_bytes {
            return Err(connection_error(
                Code::EnhanceYourCalm,
                "a header block over maxHeaderBytes",
            ));
        }
        Ok(())
    }

    /// A whole header block: a new stream's request, or a stream's trailers.
    fn on_block(&mut self, id: u32, bytes: &[u8], end_stream: bool) -> Result<(), FrameError> {
        let mut fields = Fields::default();
        let decoded = self.decoder.decode(
            bytes,
            self.limits.max_header_bytes,
            MAX_FIELDS,
            &mut |name, value| fields.take(name, value),
        );
        match decoded {
            Ok(()) => {}
            Err(HpackError::Compression(why)) => {
                return Err(connection_error(Code::Compression, why));
            }
            Err(HpackError::TooLarge) => {
                return Err(connection_error(
                    Code::EnhanceYourCalm,
                    "a header list over maxHeaderBytes",
                ));
            }
        }
        if id <= self.last_stream {
            return self.on_trailers(id, end_stream, fields);
        }
        self.last_stream = id;
        if matches!(self.state, State::Away { .. }) {
            return Ok(()); // §6.8: streams after a GOAWAY are ignored
        }
        let open = self.streams.values().filter(|s| !s.local_ended).count();
        if open >= MAX_STREAMS as usize {
            self.anomaly()?;
            return Err(stream_error(
                id,
                Code::RefusedStream,
                "more streams than MAX_CONCURRENT_STREAMS",
            ));
        }
        let mut stream = Stream {
            recv_window: i64::from(STREAM_WINDOW),
            send_window: self.initial_window,
            remote_ended: end_stream,
            ..Stream::default()
        };
        let (head, content_length) = match fields.request() {
            Ok(request) => request,
            Err(why) => {
                stream.remote_ended = true;
                self.streams.insert(id, stream);
                return Err(stream_error(id, Code::Protocol, why));
            }
        };
        stream.content_length = content_length;
        let body = match (end_stream, content_length) {
            (true, Some(n)) if n > 0 => {
                self.streams.insert(id, stream);
                return Err(stream_error(
                    id,
                    Code::Protocol,
                    "no DATA for a content-length",
                ));
            }
            (true, _) => BodyLength::Empty,
            // A WebSocket's DATA is the tunnel's, not a body of the upgrade request.
            _ if is_tunnel(&head) => BodyLength::Empty,
            (false, Some(n)) => BodyLength::Exact(n),
            (false, None) => BodyLength::Chunked,
        };
        self.streams.insert(id, stream);
        self.events.push(Event::Request {
            stream: id,
            head,
            body,
        });
        Ok(())
    }

    fn on_trailers(&mut self, id: u32, end_stream: bool, fields: Fields) -> Result<(), FrameError> {
        if !self.streams.contains_key(&id) && self.reset_lately.contains(&id) {
            return Ok(());
        }
        let Some(stream) = self.streams.get_mut(&id).filter(|s| !s.remote_ended) else {
            // The latest stream was closed; an older id never opened went backwards.
            return Err(match id == self.last_stream {
                true => connection_error(Code::StreamClosed, "HEADERS on a closed stream"),
                false => connection_error(Code::Protocol, "a stream id going backwards"),
            });
        };
        if !end_stream {
            return Err(stream_error(
                id,
                Code::Protocol,
                "trailers without END_STREAM",
            ));
        }
        stream.trailers = fields
            .trailers()
            .map_err(|why| stream_error(id, Code::Protocol, why))?;
        if stream
            .content_length
            .is_some_and(|cl| stream.received != cl)
        {
            return Err(stream_error(
                id,
                Code::Protocol,
                "DATA not as long as content-length",
            ));
        }
        stream.remote_ended = true;
        if stream.local_ended {
            self.streams.remove(&id);
        }
        Ok(())
    }

    // --------------------------------------------------- request bodies

    /// Request body bytes of `id` waiting to be taken.
    pub fn body(&self, id: u32) -> &[u8] {
        self.streams.get(&id).map_or(&[], |s| &s.recv)
    }

    /// `n` bytes of `body(id)` were taken: the window they took is given back once
    /// half of it is used.
    pub fn consume(&mut self, id: u32, n: usize) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.recv.drain(..n.min(stream.recv.len()));
        if stream.is_closed() && stream.recv.is_empty() {
            self.streams.remove(&id); // a tunnel whose last bytes are taken
            self.give_back_conn(n);
            return;
        }
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        stream.recv_unacked = stream.recv_unacked.saturating_add(n32);
        if stream.recv_unacked >= STREAM_WINDOW / 2 && !stream.remote_ended {
            window_update::write(id, stream.recv_unacked, &mut self.output);
            stream.recv_window += i64::from(stream.recv_unacked);
            stream.recv_unacked = 0;
        }
        self.give_back_conn(n);
    }

    fn give_back_conn(&mut self, n: usize) {
        self.recv_unacked = self
            .recv_unacked
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        if self.recv_unacked >= CONN_WINDOW / 2 {
            window_update::write(0, self.recv_unacked, &mut self.output);
            self.recv_window += i64::from(self.recv_unacked);
            self.recv_unacked = 0;
        }
    }

    /// The request body of `id` is all here and taken: its trailers (re-serialised
    /// as `Name: value` lines).
    pub fn body_ended(&self, id: u32) -> Option<&[u8]> {
        let s = self.streams.get(&id)?;
        (s.remote_ended && s.recv.is_empty()).then_some(&s.trailers[..])
    }

    // --------------------------------------------------- answers

    /// Answer body bytes `id` may queue now.
    pub fn room(&self, id: u32) -> usize {
        self.streams
            .get(&id)
            .filter(|s| !s.local_ended && !s.end_queued)
            .map_or(0, |s| STREAM_OUT.saturating_sub(s.out.len()))
    }

    /// Sends a head (interim or final) for `id`; `end`: no body follows.
    pub fn send_head(&mut self, id: u32, status: u16, fields: &[(&[u8], &[u8])], end: bool) {
        let Some(stream) = self.streams.get_mut(&id).filter(|s| !s.local_ended) else {
            return;
        };
        if status >= 200 {
            stream.head_sent = true;
        }
        let status = status.to_string();
        let mut block = Vec::new();
        let all =
            std::iter::once((&b":status"[..], status.as_bytes())).chain(fields.iter().copied());
        self.encoder.encode(all, &mut block);
        frame::headers::Headers::write(id, &block, end, &mut self.output);
        if end {
            stream.local_ended = true;
            self.finish_stream(id);
        }
    }

    pub fn send_data(&mut self, id: u32, bytes: &[u8]) {
        if let Some(stream) = self.streams.get_mut(&id).filter(|s| !s.local_ended) {
            stream.out.extend_from_slice(bytes);
        }
    }

    /// The answer's end, after the bytes queued; `trailers` as `Name: value` lines.
    pub fn send_end(&mut self, id: u32, trailers: &[u8]) {
        if let Some(stream) = self.streams.get_mut(&id).filter(|s| !s.local_ended) {
            stream.end_queued = true;
            let fields = trailer_fields(trailers);
            stream.end_trailers = (!fields.is_empty()).then_some(fields);
        }
    }

    /// The answer cannot be completed: the stream is reset.
    pub fn abort(&mut self, id: u32) {
        self.reset(id, Code::Internal);
    }

    fn reset(&mut self, id: u32, code: Code) {
        rst_stream::write(id, code, &mut self.output);
        self.remember_reset(id);
        if let Some(stream) = self.streams.remove(&id) {
            self.give_back_conn(stream.recv.len());
            self.events.push(Event::Reset { stream: id });
        }
    }

    /// A stream whose answer is sent and whose request is read is forgotten; one
    /// whose client is still sending is told to stop (§8.1: RST_STREAM NO_ERROR).
    fn finish_stream(&mut self, id: u32) {
        let Some(stream) = self.streams.get(&id) else {
            return;
        };
        if !stream.local_ended {
            return;
        }
        self.resets = self.resets.saturating_sub(1);
        self.anomalies = self.anomalies.saturating_sub(1);
        if stream.tunnel && !stream.is_closed() {
            return; // the client's side of the tunnel goes on
        }
        let draining = self
            .streams
            .values()
            .filter(|s| s.local_ended && !s.remote_ended)
            .count();
        if !stream.is_closed() && draining <= MAX_DRAINING {
            // The rest of the request is read and dropped, its frames still checked.
            let left = self
                .streams
                .get_mut(&id)
                .map(|s| std::mem::take(&mut s.recv));
            self.give_back_conn(left.map_or(0, |l| l.len()));
            return;
        }
        if !stream.is_closed() {
            rst_stream::write(id, Code::NoError, &mut self.output);
            self.remember_reset(id);
        }
        if let Some(stream) = self.streams.remove(&id) {
            self.give_back_conn(stream.recv.len());
        }
    }

    fn remember_reset(&mut self, id: u32) {
        if self.reset_lately.len() == 32 {
            self.reset_lately.pop_front();
        }
        self.reset_lately.push_back(id);
    }

    /// Moves queued answer bytes into DATA frames, the streams taking turns, within
    /// the windows, until `OUT_CAP` bytes wait.
    fn fill(&mut self) {
        let mut ids = std::mem::take(&mut self.order);
        ids.clear();
        ids.extend(self.streams.keys().copied());
        let first = ids.iter().position(|&id| id > self.turn).unwrap_or(0);
        let mut idle_rounds = 0;
        let mut i = first;
        while self.output.len() - self.written < OUT_CAP && idle_rounds < ids.len() {
            let id = ids[i % ids.len()];
            i += 1;
            if self.send_some(id) {
                idle_rounds = 0;
                self.turn = id;
            } else {
                idle_rounds += 1;
            }
        }
        self.order = ids;
    }

    /// One DATA frame (or the end) of stream `id`; whether anything was written.
    fn send_some(&mut self, id: u32) -> bool {
        let (conn_window, clock) = (self.send_window, self.clock);
        let Some(stream) = self
            .streams
            .get_mut(&id)
            .filter(|s| !s.local_ended && s.head_sent)
        else {
            return false;
        };
        if !stream.out.is_empty() {
            let window = stream.send_window.min(conn_window);
            let n = stream
                .out
                .len()
                .min(MAX_FRAME)
                .min(usize::try_from(window.max(0)).unwrap_or(0));
            if n == 0 {
                stream.blocked_since.get_or_insert(clock);
                return false;
            }
            stream.blocked_since = None;
            let last = n == stream.out.len() && stream.end_queued && stream.end_trailers.is_none();
            Data::write_header(id, n, last, &mut self.output);
            self.output.extend_from_slice(&stream.out[..n]);
            stream.out.drain(..n);
            let sent = i64::try_from(n).unwrap_or(i64::MAX); // at most 16 384
            stream.send_window -= sent;
            self.send_window -= sent;
            if last {
                stream.local_ended = true;
                self.finish_stream(id);
            }
            return true;
        }
        if !stream.end_queued {
            return false;
        }
        match stream.end_trailers.take() {
            Some(trailers) => {
                let mut block = Vec::new();
                let fields = trailers.iter().map(|(n, v)| (&n[..], &v[..]));
                self.encoder.encode(fields, &mut block);
                frame::headers::Headers::write(id, &block, true, &mut self.output);
            }
            None => Data::write_header(id, 0, true, &mut self.output),
        }
        stream.local_ended = true;
        self.finish_stream(id);
        true
    }

    // --------------------------------------------------- output and state

    /// Bytes to write to the client.
    pub fn output(&mut self) -> &[u8] {
        if self.output.len() - self.written < OUT_CAP {
            self.fill();
        }
        &self.output[self.written..]
    }

    pub fn wrote(&mut self, n: usize) {
        self.written += n;
        if self.written == self.output.len() {
            self.output.clear();
            self.written = 0;
        } else if self.written > OUT_CAP {
            self.output.drain(..self.written);
            self.written = 0;
        }
    }

    pub fn wants_write(&self) -> bool {
        self.written < self.output.len()
    }

    /// A connection error: GOAWAY with the last stream taken, then the close.
    fn fail(&mut self, e: FrameError) {
        crate::debug!("HTTP/2 connection error {:?}: {}", e.code, e.why);
        goaway::write(self.last_stream, e.code, e.why.as_bytes(), &mut self.output);
        self.goaway = Some((e.code, e.why));
        self.state = State::Away { graceful: false };
        self.block = None;
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            self.streams.remove(&id);
            self.events.push(Event::Reset { stream: id });
        }
    }

    /// SIGTERM: GOAWAY; the streams open are answered, no new one is taken.
    pub fn stop(&mut self) {
        if matches!(self.state, State::Away { .. }) {
            return;
        }
        goaway::write(self.last_stream, Code::NoError, b"", &mut self.output);
        self.state = State::Away { graceful: true };
    }

    /// Nothing more will happen: the driver closes once the output is written.
    pub fn is_finished(&self) -> bool {
        match self.state {
            State::Away { graceful: false } => true,
            State::Away { graceful: true } => !self.busy(),
            _ => self.client_closed && !self.busy(),
        }
    }

    /// Whether a stream is still open on hawkey's side.
    pub fn is_open(&self, id: u32) -> bool {
        self.streams.get(&id).is_some_and(|s| !s.local_ended)
    }

    /// A stream is being answered (or tunnels).
    fn busy(&self) -> bool {
        self.streams.values().any(|s| !s.local_ended || s.tunnel)
    }

    /// Stream `id` carries a WebSocket from now on (its backend sent a 101).
    pub fn make_tunnel(&mut self, id: u32) {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.tunnel = true;
        }
    }

    /// Whether stream `id` is still open one way or the other.
    pub fn has_stream(&self, id: u32) -> bool {
        self.streams.contains_key(&id)
    }

    pub fn is_idle(&self) -> bool {
        self.streams.is_empty() && self.block.is_none()
    }

    /// When a wait of the connection's own ends: the preface and SETTINGS, a header
    /// block, or (no stream open) the next request.
    pub fn deadline(&self) -> Option<Instant> {
        let blocked = self.streams.values().filter_map(|s| s.blocked_since).min();
        let own = self.own_deadline();
        match (own, blocked.map(|at| at + self.limits.send)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn own_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Preface | State::Settings => Some(self.since + self.limits.header),
            _ if self.block.is_some() => Some(self.since + self.limits.header),
            State::Open if !self.busy() => Some(self.since + self.limits.keep_alive),
            _ => None,
        }
    }

    /// The deadline passed: the connection ends (GOAWAY, NO_ERROR when idle).
    pub fn expire(&mut self, now: Instant) {
        // An answer that waited `upstreamMs` for the client's window: the stream is
        // cancelled, or the connection ends when its own window is the one shut.
        let send = self.limits.send;
        let blocked: Vec<u32> = (self.streams.iter())
            .filter(|(_, s)| s.blocked_since.is_some_and(|at| at + send <= now))
            .map(|(&id, _)| id)
            .collect();
        if !blocked.is_empty() && self.send_window <= 0 {
            let e = connection_error(Code::EnhanceYourCalm, "no window opened for upstreamMs");
            return self.fail(e);
        }
        for id in blocked {
            crate::debug!("HTTP/2 stream {id}: no window opened for upstreamMs");
            self.reset(id, Code::Cancel);
        }
        if self.own_deadline().is_some_and(|at| at <= now) {
            let idle = self.state == State::Open && self.block.is_none();
            let (code, why) = match idle {
                true => (Code::NoError, "idle for keepAliveMs"),
                false => (Code::Protocol, "headerMs passed"),
            };
            self.fail(connection_error(code, why));
        }
    }

    /// Something happened on the connection: an idle one's wait starts again.
    pub fn touch(&mut self, now: Instant) {
        if !self.busy() && self.block.is_none() && self.state == State::Open {
            self.since = now;
        }
    }

    /// Frees what an idle connection does not need.
    pub fn shrink_idle(&mut self) {
        if self.taken == self.end {
            self.input = Vec::new();
            (self.taken, self.end) = (0, 0);
        }
        if self.output.is_empty() {
            self.output = Vec::new();
        }
    }
}

fn stream_error(stream: u32, code: Code, why: &'static str) -> FrameError {
    FrameError {
        code,
        why,
        stream: Some(stream),
    }
}

/// `Name: value` lines (trailers as the HTTP/1 side has them) as lower-case fields.
fn trailer_fields(lines: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    lines
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            let name = line[..colon].to_ascii_lowercase();
            let value = line[colon + 1..].trim_ascii().to_vec();
            (!name.is_empty()).then_some((name, value))
        })
        .collect()
}

// ------------------------------------------------------- fields to requests

/// The fields of one header block as they are decoded, checked as RFC 9113 §8.2
/// and §8.3 say; what is wrong makes the stream malformed.
#[derive(Default)]
struct Fields {
    method: Option<String>,
    scheme: Option<Vec<u8>>,
    authority: Option<Vec<u8>>,
    path: Option<String>,
    protocol: Option<Vec<u8>>,
    regular: FieldList,
    cookies: Vec<u8>,
    host: Option<Vec<u8>>,
    content_length: Option<Vec<u8>>,
    /// The first thing wrong.
    bad: Option<&'static str>,
}

impl Fields {
    fn take(&mut self, name: &[u8], value: &[u8]) {
        if self.bad.is_none()
            && let Err(why) = self.check(name, value)
        {
            self.bad = Some(why);
        }
    }

    fn check(&mut self, name: &[u8], value: &[u8]) -> Result<(), &'static str> {
        if value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n')
            || value.first().is_some_and(|b| b" \t".contains(b))
            || value.last().is_some_and(|b| b" \t".contains(b))
        {
            return Err("a field value with NUL, CR, LF or surrounding space");
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if !self.regular.is_empty() || self.host.is_some() || !self.cookies.is_empty() {
                return Err("a pseudo-header after a regular field");
            }
            let text =
                || String::from_utf8(value.to_vec()).map_err(|_| "a pseudo-header not UTF-8");
            let slot_taken = match pseudo {
                b"method" => self.method.replace(text()?).is_some(),
                b"path" => self.path.replace(text()?).is_some(),
                b"scheme" => self.scheme.replace(value.to_vec()).is_some(),
                b"authority" => self.authority.replace(value.to_vec()).is_some(),
                b"protocol" => self.protocol.replace(value.to_vec()).is_some(),
                _ => return Err("an unknown pseudo-header"),
            };
            if slot_taken {
                return Err("a pseudo-header twice");
            }
            return Ok(());
        }
        if name.is_empty() || !name.iter().all(|&b| is_name_byte(b)) {
            return Err("a field name with upper case or a byte not allowed");
        }
        match name {
            b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding"
            | b"upgrade" => {
                return Err("a connection-specific field");
            }
            b"te" if value != b"trailers" => return Err("TE other than trailers"),
            b"cookie" => {
                if !self.cookies.is_empty() {
                    self.cookies.extend_from_slice(b"; ");
                }
                self.cookies.extend_from_slice(value);
                return Ok(());
            }
            b"host" => self.host = Some(value.to_vec()),
            b"content-length" => {
                if self.content_length.as_deref().is_some_and(|cl| cl != value) {
                    return Err("two different content-length values");
                }
                self.content_length = Some(value.to_vec());
            }
            _ => {}
        }
        self.regular.push(name, value);
        Ok(())
    }

    /// The request head and its `content-length`, or why the stream is malformed.
    fn request(self) -> Result<(RequestHead, Option<u64>), &'static str> {
        if let Some(why) = self.bad {
            return Err(why);
        }
        let mut method = self.method.ok_or("no :method")?;
        // RFC 8441: an extended CONNECT (`:protocol websocket`) is the HTTP/1.1
        // upgrade request a backend knows, with a key of our own (HTTP/2 has none).
        let websocket = match self.protocol.as_deref() {
            None => false,
            Some(_) if method != "CONNECT" => return Err(":protocol without CONNECT"),
            Some(p) if p.eq_ignore_ascii_case(b"websocket") => true,
            Some(_) => return Err("a :protocol other than websocket"),
        };
        if websocket {
            method = "GET".to_string();
        }
        let target = if method == "CONNECT" {
            if self.scheme.is_some() || self.path.is_some() {
                return Err("CONNECT with :scheme or :path");
            }
            let authority = self
                .authority
                .as_deref()
                .ok_or("CONNECT without :authority")?;
            String::from_utf8(authority.to_vec()).map_err(|_| ":authority not UTF-8")?
        } else {
            if self.scheme.is_none() {
                return Err("no :scheme");
            }
            let path = self.path.ok_or("no :path")?;
            if path.is_empty() {
                return Err("an empty :path");
            }
            path
        };
        let content_length = match &self.content_length {
            None => None,
            Some(v) if !v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit) => {
                std::str::from_utf8(v).ok().and_then(|v| v.parse().ok())
            }
            Some(_) => return Err("a content-length that is not a number"),
        };
        if let (Some(authority), Some(host)) = (&self.authority, self.host.as_deref())
            && authority[..] != *host
        {
            return Err("host and :authority differ");
        }
        let mut fields = FieldList::default();
        // [H2]: `:authority` is the Host (RFC 9113 §8.3.1), in front of the rest.
        match &self.authority {
            Some(authority) => fields.push(b"host", authority),
            None if self.host.is_none() => return Err("neither :authority nor host"),
            None => {}
        }
        for (name, value) in self.regular.iter() {
            if !(name == b"host" && self.authority.is_some()) {
                fields.push(name, value);
            }
        }
        if !self.cookies.is_empty() {
            fields.push(b"cookie", &self.cookies);
        }
        if websocket {
            fields.push(b"connection", b"upgrade");
            fields.push(b"upgrade", b"websocket");
            fields.push(b"sec-websocket-key", &websocket_key());
        }
        let head = RequestHead {
            method,
            target,
            minor: 1,
            fields,
        };
        Ok((head, content_length))
    }

    /// Trailers as `Name: value` lines.
    fn trailers(self) -> Result<Vec<u8>, &'static str> {
        if let Some(why) = self.bad {
            return Err(why);
        }
        if self.method.is_some()
            || self.path.is_some()
            || self.scheme.is_some()
            || self.authority.is_some()
        {
            return Err("a pseudo-header in trailers");
        }
        let mut lines = Vec::new();
        for (name, value) in self.regular.iter() {
            if crate::head::allowed_in_trailer(name) {
                lines.extend_from_slice(name);
                lines.extend_from_slice(b": ");
                lines.extend_from_slice(value);
                lines.extend_from_slice(b"\r\n");
            }
        }
        Ok(lines)
    }
}

/// Whether `head` came from an extended CONNECT: HTTP/2 requests carry no `Upgrade`
/// field of their own, so one there is ours.
pub fn is_tunnel(head: &RequestHead) -> bool {
    head.first("upgrade").is_some()
}

/// A fresh `Sec-WebSocket-Key` (RFC 6455 §4.1): 16 random bytes in base64.
fn websocket_key() -> Vec<u8> {
    let mut nonce = [0u8; 16];
    let random = rustls::crypto::ring::default_provider().secure_random;
    if random.fill(&mut nonce).is_err() {
        // No randomness: the key only has to be well formed for the backend.
        nonce = *b"hawkey-websocket";
    }
    base64(&nonce)
}

fn base64(bytes: &[u8]) -> Vec<u8> {
    const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            let digit = (n >> (18 - 6 * i)) & 63;
            out.push(if i <= group.len() {
                DIGITS[digit as usize]
            } else {
                b'='
            });
        }
    }
    out
}

/// A byte of a field name as HTTP/2 has it: a token character, not upper case.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::front::h2::frame::flag;

    const LIMITS: Limits = Limits {
        max_header_bytes: 16 * 1024,
        header: Duration::from_secs(10),
        keep_alive: Duration::from_secs(60),
        send: Duration::from_secs(30),
    };

    /// A client: frames written with the codec and an HPACK encoder of its own.
    #[derive(Default)]
    struct Client {
        hpack: Encoder,
        wire: Vec<u8>,
    }

    impl Client {
        fn start() -> Client {
            let mut c = Client::default();
            c.wire.extend_from_slice(PREFACE);
            settings::write(&[], &mut c.wire);
            c
        }

        fn headers(
            &mut self,
            stream: u32,
            fields: &[(&str, &str)],
            end_stream: bool,
        ) -> &mut Client {
            let mut block = Vec::new();
            self.hpack.encode(
                fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
                &mut block,
            );
            Headers::write(stream, &block, end_stream, &mut self.wire);
            self
        }

        fn get(&mut self, stream: u32, path: &str) -> &mut Client {
            let fields = [
                (":method", "GET"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "h"),
            ];
            self.headers(stream, &fields, true)
        }

        fn data(&mut self, stream: u32, bytes: &[u8], end: bool) -> &mut Client {
            Data::write_header(stream, bytes.len(), end, &mut self.wire);
            self.wire.extend_from_slice(bytes);
            self
        }

        fn raw(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> &mut Client {
            Header::write(kind, flags, stream, payload.len(), &mut self.wire);
            self.wire.extend_from_slice(payload);
            self
        }
    }

    /// A frame as the tests read it back.
    #[derive(Debug)]
    struct Seen {
        kind: u8,
        flags: u8,
        stream: u32,
        payload: Vec<u8>,
    }

    fn feed(h2: &mut H2, bytes: &[u8], now: Instant) {
        let mut at = 0;
        while at < bytes.len() {
            let space = h2.input_space();
            let n = space.len().min(bytes.len() - at);
            space[..n].copy_from_slice(&bytes[at..at + n]);
            h2.received(n);
            at += n;
            while h2.process(now) {}
        }
    }

    fn drain(h2: &mut H2) -> Vec<Seen> {
        let mut bytes = Vec::new();
        loop {
            let out = h2.output().to_vec();
            if out.is_empty() {
                break;
            }
            h2.wrote(out.len());
            bytes.extend_from_slice(&out);
        }
        let mut seen = Vec::new();
        let mut at = 0;
        while let Some(h) = Header::parse(&bytes[at..]) {
            seen.push(Seen {
                kind: h.kind,
                flags: h.flags,
                stream: h.stream,
                payload: bytes[at + HEADER_LEN..at + HEADER_LEN + h.len].to_vec(),
            });
            at += HEADER_LEN + h.len;
        }
        assert_eq!(at, bytes.len(), "whole frames only");
        seen
    }

    fn goaway_code(seen: &[Seen]) -> Option<u32> {
        let g = seen.iter().find(|f| f.kind == kind::GOAWAY)?;
        Some(u32::from_be_bytes(g.payload[4..8].try_into().unwrap()))
    }

    fn rst_codes(seen: &[Seen]) -> Vec<(u32, u32)> {
        seen.iter()
            .filter(|f| f.kind == kind::RST_STREAM)
            .map(|f| {
                (
                    f.stream,
                    u32::from_be_bytes(f.payload[..4].try_into().unwrap()),
                )
            })
            .collect()
    }

    fn requests(events: &[Event]) -> Vec<(u32, String, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Request { stream, head, .. } => {
                    Some((*stream, head.method.clone(), head.target.clone()))
                }
                Event::Reset { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_request_cut_at_every_offset_gives_the_same_events() {
        let mut c = Client::start();
        c.headers(
            1,
            &[
                (":method", "POST"),
                (":scheme", "https"),
                (":path", "/up?x"),
                (":authority", "example.com"),
                ("cookie", "a=1"),
                ("content-length", "5"),
                ("cookie", "b=2"),
            ],
            false,
        )
        .data(1, b"hello", true);
        let wire = c.wire.clone();
        let t0 = Instant::now();
        for cut in 0..=wire.len() {
            let mut h2 = H2::new(LIMITS, Vec::new(), t0);
            feed(&mut h2, &wire[..cut], t0);
            feed(&mut h2, &wire[cut..], t0);
            let events = h2.take_events();
            let [
                Event::Request {
                    stream: 1,
                    head,
                    body,
                },
            ] = &events[..]
            else {
                panic!("cut at {cut}: {events:?}");
            };
            assert_eq!(
                (head.method.as_str(), head.target.as_str()),
                ("POST", "/up?x")
            );
            assert_eq!(head.first("host"), Some(&b"example.com"[..]));
            assert_eq!(head.first("cookie"), Some(&b"a=1; b=2"[..]));
            assert_eq!(*body, BodyLength::Exact(5));
            assert_eq!(h2.body(1), b"hello");
            h2.consume(1, 5);
            assert_eq!(h2.body_ended(1), Some(&[][..]));
        }
    }

    #[test]
    fn an_answer_goes_out_as_headers_data_and_end() {
        let t0 = Instant::now();
        let mut h2 = H2::new(LIMITS, Vec::new(), t0);
        feed(&mut h2, &Client::start().get(1, "/").wire, t0);
        let first = drain(&mut h2);
        assert_eq!(first[0].kind, kind::SETTINGS);
        assert!(
            first
                .iter()
                .any(|f| f.kind == kind::SETTINGS && f.flags == flag::ACK)
        );
        assert_eq!(requests(&h2.take_events()), [(1, "GET".into(), "/".into())]);
        h2.send_head(1, 200, &[(b"content-type", b"text/plain")], false);
        assert_eq!(h2.room(1), STREAM_OUT);
        h2.send_data(1, &[b'x'; 20_000]);
        h2.send_end(1, b"x-sum: 7\r\n");
        let seen = drain(&mut h2);
        let kinds: Vec<(u8, u8, usize)> = seen
            .iter()
            .map(|f| (f.kind, f.flags, f.payload.len()))
            .collect();
        assert_eq!(
            kinds,
            [
                (kind::HEADERS, flag::END_HEADERS, kinds[0].2),
                (kind::DATA, 0, MAX_FRAME),
                (kind::DATA, 0, 20_000 - MAX_FRAME),
                (
                    kind::HEADERS,
                    flag::END_HEADERS | flag::END_STREAM,
                    kinds[3].2
                ),
            ]
        );
        let mut d = Decoder::default();
        let mut fields = Vec::new();
        d.decode(&seen[0].payload, 1 << 16, 100, &mut |n, v| {
            fields.push((n.to_vec(), v.to_vec()))
        })
        .unwrap();
        assert_eq!(fields[0], (b":status".to_vec(), b"200".to_vec()));
        assert!(h2.is_idle(), "the stream is done and forgotten");
    }

    #[test]
    fn data_waits_for_the_window_and_streams_take_turns() {
        let t0 = Instant::now();
        let mut h2 = H2::new(LIMITS, Vec::new(), t0);
        let mut c = Client::start();
        // The client grants 10 bytes per stream.
        settings::write(&[(settings::INITIAL_WINDOW_SIZE, 10)], &mut c.wire);
        c.get(1, "/a").get(3, "/b");
        feed(&mut h2, &c.wire, t0);
        drain(&mut h2);
        for id in [1, 3] {
            h2.send_head(id, 200, &[], false);
            h2.send_data(id, &[b'a'; 25]);
            h2.send_end(id, b"");
        }
        let data: Vec<(u32, usize)> = drain(&mut h2)
            .iter()
            .filter(|f| f.kind == kind::DATA)
            .map(|f| (f.stream, f.payload.len()))
            .collect();
        assert_eq!(data, [(1, 10), (3, 10)]);
        let mut more = Vec::new();
        window_update::write(3, 100, &mut more);
        feed(&mut h2, &more, t0);
        let data: Vec<(u32, usize, u8)> = drain(&mut h2)
            .iter()
            .filter(|f| f.kind == kind::DATA)
            .map(|f| (f.stream, f.payload.len(), f.flags))
            .collect();
        assert_eq!(
            data,
            [(3, 15, flag::END_STREAM)],
            "stream 1 waits for its window"
        );
        assert!(h2.is_open(1));
    }

    #[test]
    fn malformed_requests_are_stream_errors() {
        let t0 = Instant::now();
        let bad: [&[(&str, &str)]; 6] = [
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "h"),
                ("Upper", "x"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("connection", "close"),
                (":authority", "h"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "h"),
                ("te", "gzip"),
            ],
            &[(":method", "GET"), (":path", "/"), (":authority", "h")],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "h"),
                ("x", "a\r\nb: c"),
            ],
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("x", "1"),
                (":authority", "h"),
            ],
        ];
        for fields in bad {
            let mut h2 = H2::new(LIMITS, Vec::new(), t0);
            let mut c = Client::start();
            c.headers(1, fields, true).get(3, "/fine");
            feed(&mut h2, &c.wire, t0);
            assert_eq!(
                rst_codes(&drain(&mut h2)),
                [(1, Code::Protocol.value())],
                "{fields:?}"
            );
            assert_eq!(
                requests(&h2.take_events()),
                [(3, "GET".into(), "/fine".into())]
            );
        }
    }

    #[test]
    fn a_body_longer_than_its_content_length_resets_the_stream() {
        let t0 = Instant::now();
        let mut h2 = H2::new(LIMITS, Vec::new(), t0);
        let mut c = Client::start();
        let fields = [
            (":method", "PUT"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "h"),
            ("content-length", "2"),
        ];
        c.headers(1, &fields, false).data(1, b"abc", true);
        feed(&mut h2, &c.wire, t0);
        assert_eq!(rst_codes(&drain(&mut h2)), [(1, Code::Protocol.value())]);
        let events = h2.take_events();
        assert!(
            matches!(
                events[..],
                [Event::Request { .. }, Event::Reset { stream: 1 }]
            ),
            "{events:?}"
        );
    }

    fn calm(wire: &[u8]) -> Option<u32> {
        let t0 = Instant::now();
        let mut h2 = H2::new(LIMITS, Vec::new(), t0);
        feed(&mut h2, wire, t0);
        goaway_code(&drain(&mut h2))
    }

    #[test]
    fn floods_end_the_connection_calmly() {
        let calm_code = Some(Code::EnhanceYourCalm.value());
        // Rapid reset: streams opened and reset before their answer.
        let mut c = Client::start();
        for i in 0..=RESET_BUDGET {
            let id = 2 * i + 1;
            c.get(id, "/")
                .raw(kind::RST_STREAM, 0, id, &8u32.to_be_bytes());
        }
        assert_eq!(calm(&c.wire), calm_code, "rapid reset");
        // PING, SETTINGS, empty DATA and PRIORITY floods.
        let floods: [(u8, &[u8]); 3] = [
            (kind::PING, &[0; 8]),
            (kind::SETTINGS, &[]),
            (kind::PRIORITY, &[0, 0, 0, 0, 1]),
        ];
        for (k, payload) in floods {
            let mut c = Client::start();
            let stream = if k == kind::PRIORITY { 1 } else { 0 };
            for _ in 0..=ANOMALY_BUDGET {
                c.raw(k, 0, stream, payload);
            }
            assert_eq!(calm(&c.wire), calm_code, "flood of {k}");
        }
        let mut c = Client::start();
        c.headers(
            1,
            &[
                (":method", "POST"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "h"),
            ],
            false,
        );
        for _ in 0..=ANOMALY_BUDGET {
            c.data(1, b"", false);
        }
        assert_eq!(calm(&c.wire), calm_code, "empty DATA");
        let mut c = Client::start();
        for _ in 0..=ANOMALY_BUDGET {
            c.raw(kind::WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes());
        }
        assert_eq!(
            calm(&c.wire),
            calm_code,
            "WINDOW_UPDATE of a byte at a time"
        );
        // A header block that never ends: CONTINUATION after CONTINUATION.
        let mut c = Client::start();
        c.raw(kind::HEADERS, 0, 1, &[0x82]);
        for _ in 0..200 {
            c.raw(kind::CONTINUATION, 0, 1, &[0x82; 100]);
        }
        assert_eq!(calm(&c.wire), calm_code, "CONTINUATION flood");
        let mut c = Client::start();
        c.raw(kind::HEADERS, 0, 1, &[0x82]);
        for _ in 0..=ANOMALY_BUDGET {
            c.raw(kind::CONTINUATION, 0, 1, &[]);
        }
        assert_eq!(calm(&c.wire), calm_code, "empty CONTINUATION flood");
    }

    #[test]
    fn protocol_errors_end_the_connection() {
        let protocol = Some(Code::Protocol.value());
        assert_eq!(
            calm(b"GET / HTTP/1.1\r\n\r\n0123456789"),
            protocol,
            "not the preface"
        );
        let mut c = Client::start();
        c.get(5, "/").get(3, "/");
        assert_eq!(calm(&c.wire), protocol, "a stream id going backwards");
        let mut c = Client::start();
        c.get(2, "/");
        assert_eq!(calm(&c.wire), protocol, "an even stream id");
        let mut c = Client::start();
        c.raw(kind::HEADERS, 0, 1, &[0x82]).get(3, "/");
        assert_eq!(calm(&c.wire), protocol, "a header block cut by another");
        let mut c = Client::start();
        c.raw(kind::PUSH_PROMISE, flag::END_HEADERS, 1, &[0, 0, 0, 2]);
        assert_eq!(calm(&c.wire), protocol, "PUSH_PROMISE");
        let mut c = Client::start();
        c.raw(kind::HEADERS, flag::END_HEADERS, 1, &[0xff, 0xff, 0x7f]);
        assert_eq!(calm(&c.wire), Some(Code::Compression.value()), "HPACK");
        let mut c = Client::start();
        c.headers(
            1,
            &[
                (":method", "POST"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "h"),
            ],
            false,
        );
        for _ in 0..80 {
            c.data(1, &[0; 16_384], false); // past the stream's 64 KiB window
        }
        let t0 = Instant::now();
        let mut h2 = H2::new(LIMITS, Vec::new(), t0);
        feed(&mut h2, &c.wire, t0);
        let seen = drain(&mut h2);
        assert_eq!(rst_codes(&seen), [(1, Code::FlowControl.value())]);
    }

    #[test]
    fn the_deadlines_are_header_ms_then_keep_alive_ms() {
        let t0 = Instant::now();
        let mut h2 = H2::new(LIMITS, Vec::new(), t0);
        assert_eq!(h2.deadline(), Some(t0 + LIMITS.header));
        feed(&mut h2, &Client::start().wire, t0);
        assert_eq!(h2.deadline(), Some(t0 + LIMITS.keep_alive));
        let t1 = t0 + Duration::from_secs(1);
        feed(&mut h2, &Client::default().get(1, "/").wire, t1);
        assert_eq!(h2.deadline(), None, "a stream is open");
        h2.send_head(1, 204, &[], true);
        h2.touch(t1);
        assert_eq!(h2.deadline(), Some(t1 + LIMITS.keep_alive));
        h2.expire(t1 + LIMITS.keep_alive);
        assert_eq!(goaway_code(&drain(&mut h2)), Some(Code::NoError.value()));
        assert!(h2.is_finished());
    }

    #[test]
    fn a_window_held_shut_ends_the_stream_then_the_connection() {
        let t0 = Instant::now();
        let mut c = Client::start();
        settings::write(&[(settings::INITIAL_WINDOW_SIZE, 0)], &mut c.wire);
        c.get(1, "/a");
        let mut h2 = H2::new(LIMITS, Vec::new(), t0);
        feed(&mut h2, &c.wire, t0);
        drain(&mut h2);
        h2.send_head(1, 200, &[], false);
        h2.send_data(1, b"waits");
        drain(&mut h2);
        assert_eq!(h2.deadline(), Some(t0 + LIMITS.send));
        h2.expire(t0 + LIMITS.send);
        assert_eq!(rst_codes(&drain(&mut h2)), [(1, Code::Cancel.value())]);
        // The connection's own window shut: the connection ends.
        let mut c = Client::start();
        c.get(1, "/big");
        let mut h2 = H2::new(LIMITS, Vec::new(), t0);
        feed(&mut h2, &c.wire, t0);
        h2.send_head(1, 200, &[], false);
        h2.send_data(1, &[0; 65_535]);
        drain(&mut h2);
        h2.send_data(1, b"more");
        drain(&mut h2);
        h2.expire(t0 + LIMITS.send);
        assert_eq!(
            goaway_code(&drain(&mut h2)),
            Some(Code::EnhanceYourCalm.value())
        );
    }

    #[test]
    fn an_extended_connect_is_a_websocket_upgrade() {
        let t0 = Instant::now();
        let mut h2 = H2::new(LIMITS, Vec::new(), t0);
        let mut c = Client::start();
        let fields = [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "https"),
            (":path", "/chat"),
            (":authority", "h"),
            ("sec-websocket-version", "13"),
        ];
        c.headers(1, &fields, false);
        feed(&mut h2, &c.wire, t0);
        let events = h2.take_events();
        let [Event::Request { head, body, .. }] = &events[..] else {
            panic!("{events:?}");
        };
        assert_eq!(
            (head.method.as_str(), head.target.as_str()),
            ("GET", "/chat")
        );
        assert!(head.has_token("connection", "upgrade"));
        assert_eq!(head.first("upgrade"), Some(&b"websocket"[..]));
        assert_eq!(head.first("sec-websocket-key").map(<[u8]>::len), Some(24));
        assert_eq!(*body, BodyLength::Empty, "the DATA is the tunnel's");
        assert!(is_tunnel(head));
        assert_eq!(base64(b"hello"), b"aGVsbG8=");
        assert_eq!(base64(b"hi!"), b"aGkh");
    }

    #[test]
    fn a_stop_answers_the_open_streams_first() {
        let t0 = Instant::now();
        let mut h2 = H2::new(LIMITS, Vec::new(), t0);
        feed(&mut h2, &Client::start().get(1, "/").wire, t0);
        drain(&mut h2);
        h2.stop();
        assert_eq!(goaway_code(&drain(&mut h2)), Some(0));
        assert!(!h2.is_finished());
        feed(&mut h2, &Client::default().get(3, "/late").wire, t0);
        assert_eq!(
            requests(&h2.take_events()),
            [(1, "GET".into(), "/".into())],
            "stream 3 comes after the GOAWAY"
        );
        h2.send_head(1, 204, &[], true);
        assert!(h2.is_finished());
    }
}

//! The fast lane's way to a plain-HTTP origin: keep-alive HTTP/1.1 connections
//! kept in a pool, a request head written as one piece, and the answer passed
//! back as it comes, parsed only enough to know where it ends (its
//! `Content-Length`, its chunks, or the origin closing) and to take out
//! hop-by-hop headers, `waitroom-command` and trailers.
//!
//! A connection is used again only when nothing about its last answer is in
//! doubt: never after an answer without a body (to a HEAD, a 204 or a 304: an
//! origin may send a body anyway, late), nor after one that came with more bytes
//! than its framing said; and an idle connection that has anything to read when
//! it is taken (late bytes, or the origin's close) is dropped, as hyper's pool
//! drops an idle connection that becomes readable. Late or extra bytes are the
//! origin's misbehaviour: counted (`waitroom_origin_misbehaviour_total`), never a
//! failure held against the origin by the breaker, and never anybody's answer —
//! but for bytes past a `Content-Length` that come late, after the connection
//! carried the next request, which HTTP/1.1 cannot tell from its answer
//! (docs/security.md, "Another visitor's answer").

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::respond::{chunk_size, has_body, header, header_u64, status_line};
use super::Client;
use crate::metrics::Metrics;
use crate::public::command::{self, Command};

/// Idle connections kept at most; more are closed.
const MAX_IDLE: usize = 1024;
/// The most headers an origin's answer has.
const MAX_HEADERS: usize = 128;
/// The longest answer head read.
const MAX_HEAD: usize = 64 * 1024;
/// Read at once from the origin.
const READ: usize = 16 * 1024;
/// How long an idle connection is kept (as the hyper client's pool does).
const IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Headers that concern one connection only (RFC 9110 §7.6.1), never passed on.
pub(crate) const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Keep-alive connections to one origin.
pub struct Pool {
    authority: String,
    /// Oldest first: the newest is taken, the stale are dropped from the front.
    idle: Mutex<Vec<Upstream>>,
    metrics: Metrics,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

/// A connection to the origin with its buffers, kept together between requests
/// so that a request allocates nothing of its own.
#[derive(Debug)]
struct Upstream {
    stream: TcpStream,
    /// Read from the origin; what is not yet passed on starts at `at`.
    read: Vec<u8>,
    at: usize,
    /// The request head going out, then the answer's head coming back.
    head: Vec<u8>,
    /// The deadline of the exchange under way, kept with the connection: pushed
    /// back for the next exchange it is a store, not a new registration with the
    /// runtime's timer.
    timer: Option<Pin<Box<Sleep>>>,
    /// Since when it has been idle in the pool.
    idle_since: Instant,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum Failure {
    /// No connection: nothing reached the origin.
    Refused(io::Error),
    /// The connection broke, or the answer was not HTTP.
    Broken(io::Error),
    /// No answer's head within the time allowed.
    TimedOut,
    /// The origin broke the protocol (switched protocols unasked, used a
    /// transfer coding other than chunked): the origin's misbehaviour, named.
    Misbehaved(&'static str),
}

/// How an answer's body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Framing {
    /// It has none.
    Empty,
    /// After so many bytes.
    Length(u64),
    /// At its last chunk.
    Chunked,
    /// When the origin closes the connection.
    Close,
}

/// An origin's answer whose head has been read: what it said, and its body still
/// to pass on.
pub struct Answered<'a> {
    /// Its status.
    pub status: StatusCode,
    /// The strongest `waitroom-command` it carried (taken out).
    pub command: Option<Command>,
    /// Its `Content-Length`, said again to a HEAD.
    length: Option<u64>,
    framing: Framing,
    /// Whether the connection may carry another request once the body is through.
    reusable: bool,
    /// When the request was sent.
    started: Instant,
    /// The connection: its `head` holds the status line and the headers passed
    /// on (without framing ones), its `read` what came after them.
    up: Upstream,
    pool: &'a Pool,
}

impl Pool {
    /// A pool for the origin at `authority` (`host:port`), counting the origin's
    /// misbehaviour in `metrics`.
    pub fn new(authority: String, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            authority,
            idle: Mutex::new(Vec::new()),
            metrics,
        })
    }

    /// The origin's `host:port`, as the `Host` of requests to it.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// An idle connection that is sure to be clean at `now`: not idle for longer
    /// than [`IDLE_FOR`], with nothing to read (checked without a system call
    /// while the runtime has heard of nothing on it).
    fn take(&self, now: Instant) -> Option<Upstream> {
        loop {
            let up = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
            if now.saturating_duration_since(up.idle_since) > IDLE_FOR {
                continue;
            }
            let mut byte = [0u8; 1];
            match up.stream.try_read(&mut byte) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(up),
                Ok(n) if n > 0 => {
                    self.misbehaved("unsolicited_bytes");
                    tracing::info!(origin = self.authority, "the origin sent bytes on an idle connection, after its answer had ended: connection dropped");
                }
                // Closed by the origin while idle, or broken: nothing to say.
                _ => {}
            }
        }
    }

    fn put(&self, mut up: Upstream, now: Instant) {
        up.idle_since = now;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // The oldest first: those past their time go (a few at a time).
        let stale = idle
            .iter()
            .take(8)
            .take_while(|u| now.saturating_duration_since(u.idle_since) > IDLE_FOR)
            .count();
        idle.drain(..stale);
        if idle.len() < MAX_IDLE {
            idle.push(up);
        }
    }

    /// Counts the origin's misbehaviour of `kind`.
    fn misbehaved(&self, kind: &str) {
        self.metrics.origin_misbehaved(kind);
    }

    async fn connect(&self) -> Result<Upstream, Failure> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(Failure::Refused)?;
        let _ = stream.set_nodelay(true);
        Ok(Upstream {
            stream,
            read: Vec::with_capacity(READ),
            at: 0,
            head: Vec::with_capacity(1024),
            timer: None,
            idle_since: Instant::now(),
        })
    }

    /// Sends the request head `write_head` writes (a whole request, without a
    /// body) at `now` and reads the answer's head, by `deadline`; `head_only`:
    /// the request is a HEAD. A pooled connection the origin closed meanwhile is
    /// given up for a new one, once, without a word (the request is a GET or a
    /// HEAD: the same sent twice).
    pub async fn exchange(
        &self,
        write_head: impl Fn(&mut Vec<u8>),
        head_only: bool,
        now: Instant,
        deadline: Instant,
    ) -> Result<Answered<'_>, Failure> {
        let mut pooled = self.take(now);
        loop {
            let was_pooled = pooled.is_some();
            let mut up = match pooled.take() {
                Some(up) => up,
                None => match tokio::time::timeout_at(deadline, self.connect()).await {
                    Ok(up) => up?,
                    Err(_) => return Err(Failure::TimedOut),
                },
            };
            let mut timer = match up.timer.take() {
                Some(mut timer) => {
                    timer.as_mut().reset(deadline);
                    timer
                }
                None => Box::pin(tokio::time::sleep_until(deadline)),
            };
            let sent = tokio::select! {
                biased;
                sent = send(&mut up, &write_head, head_only) => sent,
                _ = timer.as_mut() => return Err(Failure::TimedOut),
            };
            up.timer = Some(timer);
            match sent {
                Ok((parsed, used)) => {
                    up.at = used;
                    return Ok(Answered {
                        status: parsed.status,
                        command: parsed.command,
                        length: parsed.length,
                        framing: parsed.framing,
                        reusable: parsed.reusable,
                        started: now,
                        up,
                        pool: self,
                    });
                }
                Err(Read::Nothing(_)) if was_pooled => continue,
                Err(Read::Nothing(e) | Read::Broken(e)) => return Err(Failure::Broken(e)),
                Err(Read::Misbehaved(kind)) => return Err(Failure::Misbehaved(kind)),
            }
        }
    }
}

/// Writes the request head `write_head` writes on `up` and reads the answer's
/// head; a connection that takes nothing or answers nothing is [`Read::Nothing`].
async fn send(
    up: &mut Upstream,
    write_head: impl Fn(&mut Vec<u8>),
    head_only: bool,
) -> Result<(Parsed, usize), Read> {
    up.head.clear();
    up.read.clear();
    up.at = 0;
    write_head(&mut up.head);
    up.stream.write_all(&up.head).await.map_err(Read::Nothing)?;
    up.head.clear();
    read_head(up, head_only).await
}

/// Why an answer's head could not be read.
enum Read {
    /// Not a byte came.
    Nothing(io::Error),
    /// It broke off, or was not HTTP.
    Broken(io::Error),
    /// It broke the protocol in the way named.
    Misbehaved(&'static str),
}

/// What is wrong with an answer's head.
#[derive(Debug)]
pub(super) enum Bad {
    /// It is not HTTP.
    Malformed(io::Error),
    /// It is HTTP that no request of ours asks for, named.
    Protocol(&'static str),
}

impl From<Bad> for Read {
    fn from(bad: Bad) -> Self {
        match bad {
            Bad::Malformed(e) => Read::Broken(e),
            Bad::Protocol(kind) => Read::Misbehaved(kind),
        }
    }
}

/// What an answer's head says (the head itself, as it will be passed on, is
/// written to a buffer).
#[derive(Debug)]
pub(super) struct Parsed {
    pub(super) status: StatusCode,
    pub(super) command: Option<Command>,
    pub(super) length: Option<u64>,
    pub(super) framing: Framing,
    pub(super) reusable: bool,
}

/// Reads the answer's head into `up.read` (skipping `1xx` interim answers) and
/// writes it, as passed on, to `up.head`; returns what it says and how many bytes
/// of `up.read` it took.
async fn read_head(up: &mut Upstream, head_only: bool) -> Result<(Parsed, usize), Read> {
    let mut skipped = 0;
    loop {
        if up.read.len() > skipped {
            match parse(&up.read[skipped..], head_only, &mut up.head)? {
                Some((None, used)) => {
                    skipped += used;
                    continue;
                }
                Some((Some(parsed), used)) => return Ok((parsed, skipped + used)),
                None if up.read.len() - skipped >= MAX_HEAD => {
                    return Err(Read::Broken(io::Error::other("answer head too long")))
                }
                None => {}
            }
        }
        if up.read.capacity() - up.read.len() < 1024 {
            up.read.reserve(READ);
        }
        match up.stream.read_buf(&mut up.read).await {
            Ok(0) if up.read.is_empty() => {
                return Err(Read::Nothing(io::ErrorKind::UnexpectedEof.into()))
            }
            Ok(0) => return Err(Read::Broken(io::ErrorKind::UnexpectedEof.into())),
            Err(e) if up.read.is_empty() => return Err(Read::Nothing(e)),
            Err(e) => return Err(Read::Broken(e)),
            Ok(_) => {}
        }
    }
}

/// The answer head at the start of `buf`, written to `head` as it will be passed
/// on: `None` when it is not all there yet; `Some((None, len))` for an interim
/// (`1xx`) answer to skip.
#[allow(clippy::type_complexity)]
pub(super) fn parse(
    buf: &[u8],
    head_only: bool,
    head: &mut Vec<u8>,
) -> Result<Option<(Option<Parsed>, usize)>, Bad> {
    let malformed = |e: &'static str| Bad::Malformed(io::Error::other(e));
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut headers);
    let used = match answer
        .parse(buf)
        .map_err(|e| Bad::Malformed(io::Error::other(e)))?
    {
        httparse::Status::Complete(used) => used,
        httparse::Status::Partial => return Ok(None),
    };
    let status = answer
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| malformed("no status"))?;
    if status.is_informational() {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            // No request of ours asks to switch (`Upgrade` is not passed on).
            return Err(Bad::Protocol("unasked_upgrade"));
        }
        return Ok(Some((None, used)));
    }
    // Headers the `Connection` header names are hop-by-hop too.
    let mut listed: Vec<&[u8]> = Vec::new();
    let mut closes = answer.version != Some(1);
    for h in answer.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                closes |= token.eq_ignore_ascii_case(b"close");
                listed.push(token);
            }
        }
    }
    head.clear();
    status_line(head, status, answer.reason.filter(|r| !r.is_empty()));
    let (mut length, mut chunked) = (None, false);
    let mut commands = HeaderMap::new();
    for h in answer.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            // No request of ours offers a coding (`TE` is not passed on): any
            // but chunked could not be passed on as the origin meant it.
            if !only_chunked(h.value) {
                return Err(Bad::Protocol("transfer_coding"));
            }
            chunked = true;
            continue;
        }
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| malformed("bad content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(malformed("two content-lengths"));
            }
            length = Some(n);
            continue;
        }
        if HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop))
            || listed
                .iter()
                .any(|l| name.as_bytes().eq_ignore_ascii_case(l))
        {
            continue;
        }
        if name.eq_ignore_ascii_case(command::HEADER.as_str()) {
            if let Ok(v) = HeaderValue::from_bytes(h.value) {
                commands.append(command::HEADER.clone(), v);
            }
            continue;
        }
        header(head, name.as_bytes(), h.value);
    }
    let framing = if head_only || !has_body(status) {
        Framing::Empty
    } else if chunked {
        // A length beside a coding is not believed (RFC 9112 §6.3).
        length = None;
        Framing::Chunked
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    // Nothing says where a bodiless answer ends for an origin that sends a body
    // anyway: its connection is not used again.
    let reusable = !closes && !matches!(framing, Framing::Close | Framing::Empty);
    Ok(Some((
        Some(Parsed {
            status,
            command: command::take(&mut commands),
            length,
            framing,
            reusable,
        }),
        used,
    )))
}

/// Whether a `Transfer-Encoding` value is `chunked` alone.
fn only_chunked(value: &[u8]) -> bool {
    let mut codings = value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    codings
        .next()
        .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
        && codings.next().is_none()
}

impl Answered<'_> {
    /// Passes the answer on to `client` with the `extra` headers; the origin's
    /// connection goes back to the pool when the whole answer came through.
    /// Returns whether `client` may carry another request.
    pub async fn relay<'a>(
        mut self,
        client: &mut Client,
        extra: impl IntoIterator<Item = (&'a HeaderName, &'a HeaderValue)>,
    ) -> bool {
        let head = &mut self.up.head;
        for (name, value) in extra {
            header(head, name.as_str().as_bytes(), value.as_bytes());
        }
        match self.framing {
            Framing::Length(n) => header_u64(head, b"content-length", n),
            Framing::Chunked | Framing::Close => {
                head.extend_from_slice(b"transfer-encoding: chunked\r\n");
            }
            Framing::Empty => {
                if let Some(n) = self.length.filter(|_| has_body(self.status)) {
                    header_u64(head, b"content-length", n);
                }
            }
        }
        if client.closing {
            head.extend_from_slice(b"connection: close\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let passed = match self.framing {
            Framing::Empty => client.send(head, &[]).await.map_err(Side::Client),
            Framing::Length(n) => self.pass_length(client, n).await,
            Framing::Chunked => self.pass_chunks(client).await,
            Framing::Close => self.rechunk(client).await,
        };
        match passed {
            Ok(()) => {
                let extra = self.up.at != self.up.read.len();
                if extra {
                    self.pool.misbehaved("extra_bytes");
                    tracing::info!(
                        origin = self.pool.authority,
                        "the origin sent more than its answer's framing said: connection dropped"
                    );
                }
                if self.reusable && !extra {
                    self.pool.put(self.up, self.started);
                }
                true
            }
            Err(Side::Client(e)) => {
                tracing::debug!(error = %e, "the client went away during an answer");
                false
            }
            Err(Side::Origin(e)) => {
                tracing::warn!(error = %e, "the origin's answer broke off");
                false
            }
        }
    }

    /// Reads more of the body; the origin closing is an error here.
    async fn more(&mut self) -> Result<(), Side> {
        self.up.read.clear();
        self.up.at = 0;
        match self.up.stream.read_buf(&mut self.up.read).await {
            Ok(0) => Err(Side::Origin(io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => Ok(()),
            Err(e) => Err(Side::Origin(e)),
        }
    }

    /// Writes the head, then the body's `n` bytes as they come.
    async fn pass_length(&mut self, client: &mut Client, n: u64) -> Result<(), Side> {
        let mut left = n;
        let mut head: &[u8] = &self.up.head;
        loop {
            let unsent = &self.up.read[self.up.at..];
            let take = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(unsent.len());
            client
                .send(head, &unsent[..take])
                .await
                .map_err(Side::Client)?;
            head = &[];
            self.up.at += take;
            left -= take as u64;
            if left == 0 {
                return Ok(());
            }
            self.more().await?;
        }
    }

    /// Writes the head, then the chunks as they come, up to the last one; the
    /// trailer fields are left out (like fields of a head, they could carry what
    /// only waitroom may set, and no browser reads them).
    async fn pass_chunks(&mut self, client: &mut Client) -> Result<(), Side> {
        let mut scan = Chunks::default();
        let mut head: &[u8] = &self.up.head;
        loop {
            let unsent = &self.up.read[self.up.at..];
            let Scan { pass, end } = scan.feed(unsent).map_err(Side::Origin)?;
            // Without trailers, all that follows the last chunk is its line end.
            let whole = end.filter(|&end| end == pass + 2 && pass >= 3);
            client
                .send(head, &unsent[..whole.unwrap_or(pass)])
                .await
                .map_err(Side::Client)?;
            head = &[];
            if let Some(end) = end {
                self.up.at += end;
                if whole.is_some() {
                    return Ok(());
                }
                return client.send(b"\r\n", &[]).await.map_err(Side::Client);
            }
            self.up.at += unsent.len();
            self.more().await?;
        }
    }

    /// A body that ends when the origin closes, passed on in chunks so that the
    /// client's connection lives on.
    async fn rechunk(&mut self, client: &mut Client) -> Result<(), Side> {
        let mut out = std::mem::take(&mut self.up.head);
        loop {
            let unsent = &self.up.read[self.up.at..];
            if !unsent.is_empty() {
                chunk_size(&mut out, unsent.len());
                out.extend_from_slice(unsent);
                out.extend_from_slice(b"\r\n");
            }
            self.up.read.clear();
            self.up.at = 0;
            if !out.is_empty() {
                client.send(&out, &[]).await.map_err(Side::Client)?;
                out.clear();
            }
            self.up.read.reserve(READ);
            match self.up.stream.read_buf(&mut self.up.read).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(Side::Origin(e)),
            }
        }
        client.send(b"0\r\n\r\n", &[]).await.map_err(Side::Client)
    }
}

/// Which side of a relay failed.
enum Side {
    Client(io::Error),
    Origin(io::Error),
}

/// Where a chunked body ends, found as its bytes go by (RFC 9112 §7.1).
#[derive(Debug, Default)]
pub(super) struct Chunks {
    state: State,
}

#[derive(Debug)]
enum State {
    /// In a chunk's size line: the size so far, past the digits (in an extension),
    /// and whether its `\r` came (only its `\n` may follow).
    Size {
        size: u64,
        digits: bool,
        past: bool,
        cr: bool,
    },
    /// In a chunk's data: so many bytes left.
    Data(u64),
    /// After a chunk's data, its line end (`\r\n`, or a bare `\n`); whether the
    /// `\r` came.
    DataEnd { cr: bool },
    /// In a trailer line (after the last chunk); whether it is empty so far, and
    /// whether its `\r` came.
    Trailer { empty: bool, cr: bool },
}

impl Default for State {
    fn default() -> Self {
        Self::Size {
            size: 0,
            digits: false,
            past: false,
            cr: false,
        }
    }
}

/// What [`Chunks::feed`] found in the bytes it was given.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Scan {
    /// How many of them, from the first, to pass on: all but the trailer section
    /// (which starts after the last chunk's size line, and ends with an empty line).
    pub(super) pass: usize,
    /// Where in them the message ends, if it does.
    pub(super) end: Option<usize>,
}

impl Chunks {
    /// Takes in `bytes`; says which to pass on and where the body ends, if it does.
    pub(super) fn feed(&mut self, bytes: &[u8]) -> io::Result<Scan> {
        let bad = || io::Error::other("malformed chunked body");
        // Bytes of the trailer section are not passed on.
        let mut pass = match self.state {
            State::Trailer { .. } => Some(0),
            _ => None,
        };
        let mut i = 0;
        while i < bytes.len() {
            match &mut self.state {
                State::Data(left) => {
                    let skip = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len() - i);
                    *left -= skip as u64;
                    i += skip;
                    if *left == 0 {
                        self.state = State::DataEnd { cr: false };
                    }
                    continue;
                }
                State::Size {
                    size,
                    digits,
                    past,
                    cr,
                } => {
                    let b = bytes[i];
                    match b {
                        // A `\r` is the line's end: nothing but its `\n` after it.
                        _ if *cr && b != b'\n' => return Err(bad()),
                        b'\n' => {
                            if !*digits {
                                return Err(bad());
                            }
                            self.state = if *size == 0 {
                                pass = Some(i + 1);
                                State::Trailer {
                                    empty: true,
                                    cr: false,
                                }
                            } else {
                                State::Data(*size)
                            };
                        }
                        b'\r' => *cr = true,
                        _ if !*past && b.is_ascii_hexdigit() => {
                            let d = u64::from((b as char).to_digit(16).unwrap_or(0));
                            *size = size
                                .checked_mul(16)
                                .and_then(|s| s.checked_add(d))
                                .ok_or_else(bad)?;
                            *digits = true;
                        }
                        b';' | b' ' | b'\t' => *past = true,
                        // An extension's text: no control characters in it.
                        _ if *past && b >= 0x20 && b != 0x7f => {}
                        _ => return Err(bad()),
                    }
                }
                State::DataEnd { cr } => match bytes[i] {
                    b'\n' => self.state = State::default(),
                    b'\r' if !*cr => *cr = true,
                    _ => return Err(bad()),
                },
                State::Trailer { empty, cr } => match bytes[i] {
                    b'\n' if *empty => {
                        return Ok(Scan {
                            pass: pass.unwrap_or(0),
                            end: Some(i + 1),
                        })
                    }
                    b'\n' => {
                        *empty = true;
                        *cr = false;
                    }
                    // A `\r` ends a line: nothing but its `\n` after it.
                    _ if *cr => return Err(bad()),
                    b'\r' => *cr = true,
                    _ => *empty = false,
                },
            }
            i += 1;
        }
        Ok(Scan {
            pass: pass.unwrap_or(bytes.len()),
            end: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_of_chunks_however_they_are_cut_and_leaves_the_trailers_out() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nwaitroom-command: revoke\r\nset-cookie: a=1\r\n\r\nNEXT";
        let end = body.len() - 4;
        let passed_on = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\n";
        for cut in 0..body.len() {
            let mut scan = Chunks::default();
            let first = scan.feed(&body[..cut]).unwrap();
            let mut passed = body[..first.pass].to_vec();
            let found = match first.end {
                Some(at) => at,
                None => {
                    let second = scan.feed(&body[cut..]).unwrap();
                    passed.extend_from_slice(&body[cut..cut + second.pass]);
                    cut + second.end.unwrap()
                }
            };
            assert_eq!(found, end, "cut at {cut}");
            assert_eq!(passed, passed_on, "cut at {cut}");
        }
        assert_eq!(
            Chunks::default().feed(b"0\r\n\r\n").unwrap(),
            Scan {
                pass: 3,
                end: Some(5)
            }
        );
        assert!(Chunks::default().feed(b"zz\r\n").is_err());
    }

    #[test]
    fn takes_hop_by_hop_headers_and_commands_out_of_an_answer() {
        let answer = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, x-private\r\nX-Private: 1\r\nKeep-Alive: timeout=5\r\nWaitroom-Command: release\r\nContent-Length: 2\r\nSet-Cookie: a=1\r\n\r\nhi";
        let mut head = Vec::new();
        let (parsed, used) = parse(answer, false, &mut head).unwrap().unwrap();
        let parsed = parsed.unwrap();
        assert_eq!(used, answer.len() - 2);
        assert_eq!(parsed.framing, Framing::Length(2));
        assert_eq!(parsed.command, Some(Command::Release));
        assert!(parsed.reusable);
        let head = String::from_utf8(head).unwrap();
        assert_eq!(head, "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\n");

        let chunked =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n";
        let parsed = parse(chunked, false, &mut Vec::new())
            .unwrap()
            .unwrap()
            .0
            .unwrap();
        assert_eq!((parsed.framing, parsed.length), (Framing::Chunked, None));
        let closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
        let parsed = parse(closing, false, &mut Vec::new())
            .unwrap()
            .unwrap()
            .0
            .unwrap();
        assert_eq!(parsed.framing, Framing::Close);
        assert!(!parsed.reusable);
        let interim = parse(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            false,
            &mut Vec::new(),
        )
        .unwrap();
        assert!(matches!(interim, Some((None, 40))));
        let to_head = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n",
            true,
            &mut Vec::new(),
        )
        .unwrap();
        let parsed = to_head.unwrap().0.unwrap();
        assert_eq!((parsed.framing, parsed.length), (Framing::Empty, Some(7)));
        assert!(!parsed.reusable, "an origin may send a HEAD's body anyway");
    }

    #[test]
    fn answers_without_a_body_or_against_the_protocol_are_not_trusted() {
        let head = |answer: &[u8], head_only| parse(answer, head_only, &mut Vec::new());
        for bodiless in [
            &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
        ] {
            let parsed = head(bodiless, false).unwrap().unwrap().0.unwrap();
            assert_eq!(parsed.framing, Framing::Empty);
            assert!(!parsed.reusable);
        }
        for (answer, kind) in [
            (
                &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"[..],
                "unasked_upgrade",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                "transfer_coding",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                "transfer_coding",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
                "transfer_coding",
            ),
        ] {
            match head(answer, false) {
                Err(Bad::Protocol(k)) => assert_eq!(k, kind),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(answer)),
            }
        }
        assert!(only_chunked(b" Chunked "));
    }
}

//! The fast lane: a lean HTTP/1.1 server for plain-TCP connections.
//!
//! Nearly every request a waiting room sees is a GET (or HEAD) without a body: an
//! admitted visitor's page, a waiting visitor's status poll, a newcomer. This
//! reads such a request's head with `httparse`, hands it to a [`Lane`] and writes
//! the answer itself; an admitted visitor's request may be relayed to the origin
//! over a pooled keep-alive connection without hyper on either side
//! ([`upstream`]). Anything else (a body, HTTP/1.0, an upgrade, `Expect`, a head
//! that does not parse, the HTTP/2 preface) goes to hyper, with what was read put
//! back in front ([`rewind`]); from then on hyper serves that connection.
//! Measured in docs/benchmarks.md: this is what brings forwarding level with
//! nginx's `proxy_pass`.

mod respond;
pub(crate) use respond::{has_body, header};
#[doc(hidden)]
pub mod fuzz;
pub mod rewind;
pub mod upstream;

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::Empty;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::Body;
use crate::server::{Cap, Conn};
use crate::shutdown::Shutdown;

/// The longest request head read here; a longer one goes to hyper, which refuses it.
const MAX_HEAD: usize = 64 * 1024;
/// The most headers a request read here has; one with more goes to hyper.
const MAX_HEADERS: usize = 64;
/// How long a client has to send a whole request head, and how long an idle
/// keep-alive connection stays open (hyper's `header_read_timeout` is the same).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Room for reading a connection's requests.
const READ: usize = 4096;

/// A request the fast lane serves: a head, without a body.
pub type Head = Request<Empty<Bytes>>;

/// What became of a request.
pub enum Sent {
    /// An answer for the connection to write.
    Response(Response<Body>),
    /// The origin's answer with `status`, relayed already; `kept`: the connection
    /// may carry another request.
    Relayed {
        /// The origin's status.
        status: StatusCode,
        /// Whether the connection is still good.
        kept: bool,
    },
}

impl Sent {
    /// The answer, for a connection that cannot be relayed to (hyper's): never
    /// [`Sent::Relayed`], since only a [`Client`] is relayed to.
    pub fn into_response(self) -> Response<Body> {
        match self {
            Self::Response(r) => r,
            Self::Relayed { .. } => {
                tracing::error!("an answer was relayed without a connection to relay it to");
                crate::http::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }

    /// The answer's status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Response(r) => r.status(),
            Self::Relayed { status, .. } => *status,
        }
    }
}

/// Who answers the fast lane's requests.
pub trait Lane: Send + Sync + 'static {
    /// Answers `req` from `conn`: an answer to write, or the origin's answer
    /// relayed straight to `client`.
    fn answer(
        &self,
        req: Head,
        conn: Conn,
        client: &mut Client,
    ) -> impl Future<Output = Sent> + Send;
}

/// A lane for a listener that has none: every connection goes to hyper.
pub enum NoLane {}

impl Lane for NoLane {
    async fn answer(&self, _: Head, _: Conn, _: &mut Client) -> Sent {
        match *self {}
    }
}

/// A client's connection, as the fast lane serves it.
pub struct Client {
    stream: TcpStream,
    /// Read from the connection, not yet taken as a request; a request's head is
    /// cut from it, and its path and header values point into that cut.
    read: BytesMut,
    /// The request being answered is a HEAD: its answer has no body.
    head_only: bool,
    /// The connection closes after this answer.
    closing: bool,
    /// A client that takes nothing of an answer for this long is cut.
    write_timeout: Duration,
    /// It was cut for that.
    cut: bool,
}

/// What the next bytes on a connection are (moved once per request: boxing the
/// head would cost an allocation for nothing).
#[allow(clippy::large_enum_variant)]
enum Next {
    /// A request for the fast lane.
    Fit(Head),
    /// Something for hyper.
    Unfit,
    /// Nothing more: the client closed, or the connection broke.
    Closed,
}

/// Serves requests on `stream` while they are the fast lane's; returns the
/// connection with what was read of the next request when it is not, for hyper
/// to serve, or `None` when the connection is done. Between requests it stops at
/// `shutdown`.
pub async fn serve<L: Lane>(
    lane: &L,
    stream: TcpStream,
    conn: Conn,
    cap: &Cap,
    shutdown: Shutdown,
) -> Option<(TcpStream, Vec<u8>)> {
    let mut client = Client {
        stream,
        read: BytesMut::with_capacity(READ),
        head_only: false,
        closing: false,
        write_timeout: cap.write_timeout,
        cut: false,
    };
    let served = serve_client(lane, &mut client, conn, shutdown).await;
    if client.cut {
        if let Some(m) = &cap.metrics {
            m.client_cut("write_timeout");
        }
        tracing::debug!(peer = %conn.addr, "a client took nothing of an answer for limits.write_timeout: cut");
    }
    served.then(|| (client.stream, client.read.into()))
}

/// [`serve`] on `client`: `true` when the connection is for hyper from now on.
async fn serve_client<L: Lane>(
    lane: &L,
    client: &mut Client,
    conn: Conn,
    mut shutdown: Shutdown,
) -> bool {
    // One timer for the connection's life, pushed back for each request: a
    // later deadline is a store, not a new registration with the runtime's timer.
    let deadline = tokio::time::sleep(HEAD_TIMEOUT);
    tokio::pin!(deadline);
    // Waited for across requests, not made anew for each: each new wait would
    // join and leave the list of waiters every connection shares, under its lock.
    let stopping = shutdown.wait();
    tokio::pin!(stopping);
    // The process began to stop while a request was on its way: it is answered,
    // and the connection closed after it (and `stopping`, done, is not polled again).
    let mut draining = false;
    loop {
        let idle = client.read.is_empty();
        deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + HEAD_TIMEOUT);
        let next = tokio::select! {
            biased;
            next = client.next_head() => next,
            _ = &mut deadline => return false,
            _ = &mut stopping, if idle && !draining => {
                if !client.has_arrived() {
                    return false;
                }
                draining = true;
                continue;
            }
        };
        let req = match next {
            Next::Fit(req) => req,
            Next::Unfit => return true,
            Next::Closed => return false,
        };
        client.head_only = req.method() == Method::HEAD;
        client.closing = draining || asks_to_close(req.headers());
        match lane.answer(req, conn, client).await {
            Sent::Response(r) => {
                if client.write_response(r).await.is_err() {
                    return false;
                }
            }
            Sent::Relayed { kept, .. } => {
                if !kept {
                    return false;
                }
            }
        }
        if client.closing {
            let _ = client.stream.shutdown().await;
            return false;
        }
    }
}

impl Client {
    /// Writes `a` then `b` (in one call when the connection takes both), cutting
    /// a client that takes nothing of them for its write timeout. A write the
    /// connection takes at once (nearly every one) starts no timer.
    pub(super) async fn send(&mut self, mut a: &[u8], mut b: &[u8]) -> io::Result<()> {
        loop {
            let written = match (a.is_empty(), b.is_empty()) {
                (true, true) => return Ok(()),
                (false, true) => self.stream.try_write(a),
                (true, false) => self.stream.try_write(b),
                (false, false) => self
                    .stream
                    .try_write_vectored(&[io::IoSlice::new(a), io::IoSlice::new(b)]),
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) if n < a.len() => a = &a[n..],
                Ok(n) => {
                    b = &b[n - a.len()..];
                    a = &[];
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match tokio::time::timeout(self.write_timeout, self.stream.writable()).await {
                        Ok(ready) => ready?,
                        Err(_) => {
                            self.cut = true;
                            return Err(io::ErrorKind::TimedOut.into());
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the client has sent something the connection has not read yet,
    /// asked of the socket itself (the runtime may not have heard of it yet).
    fn has_arrived(&self) -> bool {
        let mut byte = [0u8; 1];
        let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
        matches!(rustix::net::recv(&self.stream, &mut byte[..], flags), Ok((_, n)) if n > 0)
    }

    /// Reads until the buffer starts with a whole request head (or shows it is
    /// not one for the fast lane), and takes that head out of the buffer.
    async fn next_head(&mut self) -> Next {
        loop {
            if !self.read.is_empty() {
                match parse(&mut self.read) {
                    Some(Some(fit)) => return Next::Fit(fit),
                    None => return Next::Unfit,
                    Some(None) if self.read.len() >= MAX_HEAD => return Next::Unfit,
                    Some(None) => {}
                }
            }
            if self.read.capacity() - self.read.len() < 1024 {
                // Takes the buffer's room back once the heads cut from it are
                // gone, so a connection reads into the same memory all its life.
                self.read.reserve(READ);
            }
            match self.stream.read_buf(&mut self.read).await {
                Ok(0) | Err(_) => return Next::Closed,
                Ok(_) => {}
            }
        }
    }
}

/// Whether the client said it closes the connection after this request.
fn asks_to_close(headers: &HeaderMap) -> bool {
    crate::http::connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(b"close"))
}

/// The request at the start of `buf`, taken out of it: `Some(Some(head))` for the
/// fast lane, `Some(None)` when it is not all there yet (`buf` is left as it
/// was), `None` when it is hyper's. The path and the header values are slices of
/// the bytes read, not copies.
fn parse(buf: &mut BytesMut) -> Option<Option<Head>> {
    // Left uninitialised until httparse fills them: 64 empty headers were 2 KB
    // written for each request before a byte of it was read.
    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut headers).ok()? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Some(None),
    };
    if parsed.version != Some(1) {
        return None;
    }
    let method = match parsed.method? {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        _ => return None,
    };
    let path = parsed.path?;
    if !path.starts_with('/') {
        return None;
    }
    // Where each piece lies in `buf`, to be cut from it once parsing is done.
    let start = buf.as_ptr() as usize;
    let span = |piece: &[u8]| {
        let at = piece.as_ptr() as usize - start;
        at..at + piece.len()
    };
    let path = span(path.as_bytes());
    let mut spans = [const { (0..0, 0..0) }; MAX_HEADERS];
    let count = parsed.headers.len();
    for (at, header) in spans.iter_mut().zip(parsed.headers.iter()) {
        let name = header.name.as_bytes();
        if [TRANSFER_ENCODING, UPGRADE, EXPECT]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_str().as_bytes()))
        {
            return None;
        }
        if name.eq_ignore_ascii_case(CONTENT_LENGTH.as_str().as_bytes())
            && header.value.trim_ascii() != b"0"
        {
            return None;
        }
        *at = (span(name), span(header.value));
    }
    let head = buf.split_to(len).freeze();
    let built = (|| {
        let uri = Uri::from_maybe_shared(head.slice(path)).ok()?;
        let mut map = HeaderMap::with_capacity(count);
        for (name, value) in spans.into_iter().take(count) {
            let name = HeaderName::from_bytes(&head[name]).ok()?;
            map.append(
                name,
                HeaderValue::from_maybe_shared(head.slice(value)).ok()?,
            );
        }
        Some((uri, map))
    })();
    let Some((uri, map)) = built else {
        // A path, a name or a value hyper's types refuse: the head goes back in front,
        // for hyper to answer.
        let mut whole = BytesMut::with_capacity(head.len() + buf.len());
        whole.extend_from_slice(&head);
        whole.extend_from_slice(buf);
        *buf = whole;
        return None;
    };
    let mut req = Request::new(Empty::new());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = map;
    Some(Some(req))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parse` of `bytes`, and what is left of them after it.
    fn parsed(bytes: &[u8]) -> (Option<Option<Head>>, BytesMut) {
        let mut buf = BytesMut::from(bytes);
        (parse(&mut buf), buf)
    }

    #[tokio::test]
    async fn sees_a_request_the_runtime_has_not_read_yet() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut visitor = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let mut client = Client {
            stream,
            read: BytesMut::new(),
            head_only: false,
            closing: false,
            write_timeout: Duration::from_secs(30),
            cut: false,
        };
        assert!(!client.has_arrived(), "nothing sent yet");
        visitor.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        // On loopback the bytes are in the connection's buffer once written.
        assert!(client.has_arrived());
        assert!(client.has_arrived(), "looking takes nothing out");
        assert!(matches!(client.next_head().await, Next::Fit(_)));
        assert!(!client.has_arrived(), "read");
    }

    #[test]
    fn takes_plain_gets_and_leaves_the_rest_to_hyper() {
        let (req, rest) = parsed(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nCookie: c=1\r\n\r\nGET");
        let req = req.unwrap().unwrap();
        assert_eq!(
            &rest[..],
            b"GET",
            "the head is taken out, the next request left"
        );
        assert_eq!(req.uri(), "/a?b=1");
        assert_eq!(req.headers()["cookie"], "c=1");
        assert_eq!(req.headers()["host"], "x");
        assert!(parsed(b"HEAD / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            .0
            .unwrap()
            .is_some());
        let partial = b"GET / HTTP/1.1\r\nHost: x\r\n";
        let (req, rest) = parsed(partial);
        assert!(req.unwrap().is_none(), "partial");
        assert_eq!(&rest[..], partial, "a partial head stays where it was");
        for unfit in [
            &b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"[..],
            b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"GET http://x/ HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-A: 1\x7f2\r\n\r\n",
            // A path httparse takes and `Uri` does not: cut, then put back.
            b"GET /a<b> HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ] {
            let (req, rest) = parsed(unfit);
            assert!(req.is_none(), "{}", String::from_utf8_lossy(unfit));
            assert_eq!(&rest[..], unfit, "hyper is given every byte read");
        }
        assert!(asks_to_close(
            parsed(b"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n")
                .0
                .unwrap()
                .unwrap()
                .headers()
        ));
    }
}

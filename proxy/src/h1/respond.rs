//! Writing an answer of ours (or one hyper's client brought from the origin) on
//! a fast-lane connection: the length when it is known, chunks when not, no
//! body to a HEAD, and `Date` as hyper would add it.

use std::cell::RefCell;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Body as _;

use super::Client;
use crate::http::Body;

/// Bodies gathered into one write up to this size; beyond, written as they come.
const GATHER: usize = 64 * 1024;

impl Client {
    /// Writes `r`; an error means the connection is done.
    pub(super) async fn write_response(&mut self, r: Response<Body>) -> io::Result<()> {
        let (parts, mut body) = r.into_parts();
        if super::asks_to_close(&parts.headers) {
            self.closing = true;
        }
        let status = parts.status;
        let mut out = Vec::with_capacity(1024);
        status_line(&mut out, status, None);
        let declared = write_headers(&mut out, &parts.headers);
        let length = declared.or_else(|| body.size_hint().exact());
        if self.closing {
            out.extend_from_slice(b"connection: close\r\n");
        }
        if !has_body(status) {
            out.extend_from_slice(b"\r\n");
            return self.send(&out, &[]).await;
        }
        if let Some(n) = length {
            header_u64(&mut out, b"content-length", n);
            out.extend_from_slice(b"\r\n");
            if self.head_only {
                return self.send(&out, &[]).await;
            }
            let mut sent = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(io::Error::other)?;
                if let Ok(data) = frame.into_data() {
                    sent += data.len() as u64;
                    out.extend_from_slice(&data);
                    if out.len() >= GATHER {
                        self.send(&out, &[]).await?;
                        out.clear();
                    }
                }
            }
            self.send(&out, &[]).await?;
            if sent != n {
                return Err(io::Error::other("the body was not as long as it said"));
            }
            return Ok(());
        }
        if self.head_only {
            out.extend_from_slice(b"\r\n");
            return self.send(&out, &[]).await;
        }
        out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(io::Error::other)?;
            if let Ok(data) = frame.into_data() {
                if data.is_empty() {
                    continue;
                }
                chunk_size(&mut out, data.len());
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
                self.send(&out, &[]).await?;
                out.clear();
            }
        }
        out.extend_from_slice(b"0\r\n\r\n");
        self.send(&out, &[]).await
    }
}

/// Whether an answer with `status` may have a body (RFC 9112 §6.3).
pub(crate) fn has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// `HTTP/1.1 200 OK\r\n`, with `reason` or the standard one.
pub(super) fn status_line(out: &mut Vec<u8>, status: StatusCode, reason: Option<&str>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    let reason = reason.or(status.canonical_reason()).unwrap_or("");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes `headers` but the framing and connection ones (written by the caller),
/// adding `Date` when absent; returns the declared `Content-Length`.
fn write_headers(out: &mut Vec<u8>, headers: &HeaderMap) -> Option<u64> {
    let mut length = None;
    let mut dated = false;
    for (name, value) in headers {
        if name == CONTENT_LENGTH {
            length = std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(|v| v.trim().parse().ok());
            continue;
        }
        if name == CONNECTION || name == TRANSFER_ENCODING || name.as_str() == "keep-alive" {
            continue;
        }
        dated |= name == DATE;
        header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !dated {
        date(out);
    }
    length
}

/// `name: value\r\n`.
pub(crate) fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `name: n\r\n`.
pub(super) fn header_u64(out: &mut Vec<u8>, name: &[u8], n: u64) {
    header(out, name, itoa::Buffer::new().format(n).as_bytes());
}

/// A chunk's size line.
pub(super) fn chunk_size(out: &mut Vec<u8>, n: usize) {
    use std::io::Write;
    let _ = write!(out, "{n:x}\r\n");
}

/// `date: …\r\n`, now (formatted once a second per thread, as hyper does).
fn date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs || c.1.is_empty() {
            *c = (secs, httpdate::fmt_http_date(now));
        }
        header(out, b"date", c.1.as_bytes());
    });
}

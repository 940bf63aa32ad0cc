//! The fast lane's parsers, opened to `tests/fuzz.rs` (not an API): the request
//! head a client sends, and the answer head and chunks an origin sends. Each
//! entry says what the parser made of the bytes, for the fuzz target to check
//! the parser's promises against.

use bytes::BytesMut;

use super::upstream::{self, Bad, Chunks, Framing, Scan};

/// What the fast lane made of a request head.
#[derive(Debug)]
pub enum RequestSeen {
    /// A request for the fast lane: its method, path and header names.
    Fit {
        /// `GET` or `HEAD`.
        method: String,
        /// The path and query.
        target: String,
        /// The header names, lower case.
        names: Vec<String>,
        /// What was left after its head.
        rest: Vec<u8>,
    },
    /// Not all there yet; the bytes left as they were.
    Partial(Vec<u8>),
    /// For hyper, with these bytes (which must be every byte given).
    Unfit(Vec<u8>),
}

/// The fast lane's reading of `bytes` from a client.
pub fn request_head(bytes: &[u8]) -> RequestSeen {
    let mut buf = BytesMut::from(bytes);
    match super::parse(&mut buf) {
        Some(Some(head)) => RequestSeen::Fit {
            method: head.method().as_str().to_owned(),
            target: head.uri().to_string(),
            names: head
                .headers()
                .keys()
                .map(|k| k.as_str().to_owned())
                .collect(),
            rest: buf.to_vec(),
        },
        Some(None) => RequestSeen::Partial(buf.to_vec()),
        None => RequestSeen::Unfit(buf.to_vec()),
    }
}

/// What the fast lane made of an answer head from the origin.
#[derive(Debug)]
pub enum AnswerSeen {
    /// Not all there yet.
    Partial,
    /// An interim (`1xx`) answer of so many bytes, skipped.
    Interim(usize),
    /// A final answer of so many bytes.
    Final {
        /// Its status.
        status: u16,
        /// How its body ends: `empty`, `length`, `chunked` or `close`.
        framing: &'static str,
        /// Whether its connection may be used again.
        reusable: bool,
        /// Whether it carried a `waitroom-command`.
        command: bool,
        /// The head as it is passed on.
        passed: Vec<u8>,
        /// Its length.
        used: usize,
    },
    /// Not HTTP.
    Malformed,
    /// Against the protocol, named.
    Protocol(&'static str),
}

/// The fast lane's reading of `bytes` from the origin (`head_only`: the request
/// was a HEAD).
pub fn answer_head(bytes: &[u8], head_only: bool) -> AnswerSeen {
    let mut passed = Vec::new();
    match upstream::parse(bytes, head_only, &mut passed) {
        Ok(None) => AnswerSeen::Partial,
        Ok(Some((None, used))) => AnswerSeen::Interim(used),
        Ok(Some((Some(p), used))) => AnswerSeen::Final {
            status: p.status.as_u16(),
            framing: match p.framing {
                Framing::Empty => "empty",
                Framing::Length(_) => "length",
                Framing::Chunked => "chunked",
                Framing::Close => "close",
            },
            reusable: p.reusable,
            command: p.command.is_some(),
            passed,
            used,
        },
        Err(Bad::Malformed(_)) => AnswerSeen::Malformed,
        Err(Bad::Protocol(kind)) => AnswerSeen::Protocol(kind),
    }
}

/// A chunked body fed to the fast lane's scanner in pieces cut at `cuts`: the
/// bytes it passes on and where it found the end, or why it refused them.
pub fn chunked_body(bytes: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, Option<usize>), String> {
    let mut scan = Chunks::default();
    let mut passed = Vec::new();
    let mut at = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
    bounds.sort_unstable();
    bounds.push(bytes.len());
    for bound in bounds {
        if bound < at {
            continue;
        }
        let piece = &bytes[at..bound];
        let Scan { pass, end } = scan.feed(piece).map_err(|e| e.to_string())?;
        passed.extend_from_slice(&piece[..pass]);
        if let Some(end) = end {
            return Ok((passed, Some(at + end)));
        }
        at = bound;
    }
    Ok((passed, None))
}

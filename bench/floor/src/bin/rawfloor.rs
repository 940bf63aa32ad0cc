//! The least an HTTP/1 relay does: `rawfloor LISTEN ORIGIN` gives each client
//! connection one keep-alive connection to ORIGIN and passes each request head on
//! as it came (GET without a body) and each response (framed by `Content-Length`)
//! back, parsing only enough to find where each ends. Not a usable proxy: the floor
//! a hand-written relay would stand on.
#![forbid(unsafe_code)]

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads into `buf` until it holds a whole head; returns the head's length and
/// the body's length (`Content-Length`, 0 when absent).
async fn read_head(
    buf: &mut Vec<u8>,
    from: &mut TcpStream,
    response: bool,
) -> Option<(usize, usize)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let found = if response {
            let mut head = httparse::Response::new(&mut headers);
            match head.parse(buf).ok()? {
                httparse::Status::Complete(n) => Some((n, content_length(head.headers))),
                httparse::Status::Partial => None,
            }
        } else {
            let mut head = httparse::Request::new(&mut headers);
            match head.parse(buf).ok()? {
                httparse::Status::Complete(n) => Some((n, 0)),
                httparse::Status::Partial => None,
            }
        };
        if found.is_some() {
            return found;
        }
        if read_more(buf, from).await? == 0 {
            return None;
        }
    }
}

fn content_length(headers: &[httparse::Header<'_>]) -> usize {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

async fn read_more(buf: &mut Vec<u8>, from: &mut TcpStream) -> Option<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let n = from.read(&mut chunk).await.ok()?;
    buf.extend_from_slice(&chunk[..n]);
    Some(n)
}

async fn relay(mut client: TcpStream, origin: &str) -> Option<()> {
    let mut upstream = TcpStream::connect(origin).await.ok()?;
    upstream.set_nodelay(true).ok()?;
    let (mut asked, mut answered) = (Vec::with_capacity(8192), Vec::with_capacity(8192));
    loop {
        let (head, _) = read_head(&mut asked, &mut client, false).await?;
        upstream.write_all(&asked[..head]).await.ok()?;
        asked.drain(..head);
        let (head, body) = read_head(&mut answered, &mut upstream, true).await?;
        while answered.len() < head + body {
            if read_more(&mut answered, &mut upstream).await? == 0 {
                return None;
            }
        }
        client.write_all(&answered[..head + body]).await.ok()?;
        answered.drain(..head + body);
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (listen, origin) = (args.next().expect("LISTEN"), args.next().expect("ORIGIN"));
    let origin: &'static str = origin.leak();
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(relay(stream, origin));
    }
}

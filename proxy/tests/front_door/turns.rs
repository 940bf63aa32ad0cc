//! No one visitor holds the site (issue 26, findings 4, 5 and 6): a visitor who
//! asks for many large answers and reads none holds only their own share of
//! `origin.max_in_flight`, and is cut after `limits.write_timeout`; slow request
//! bodies are answered 408 as the client's doing, never the origin's; and a
//! client's `Idempotency-Key` never makes waitroom send a POST twice unless the
//! operator says the site honours it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::framing::next_request;
use crate::support::{raw_status, wait_until, Http, Proxy, ProxyBuilder};

/// The size of `/big`: far more than the read-ahead and the sockets' buffers.
const BIG: usize = 32 * 1024 * 1024;

/// An origin answering `/big` with [`BIG`] bytes, anything else with `ok`; it
/// counts the requests it read whole, and closes without an answer on `/break`.
async fn origin() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut read = Vec::new();
                while let Some((_, path, length)) = next_request(&mut stream, &mut read).await {
                    read.drain(..length.min(read.len()));
                    counted.fetch_add(1, Ordering::SeqCst);
                    let written = match path.as_str() {
                        "/big" => {
                            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
                            stream.write_all(head.as_bytes()).await.is_ok()
                                && stream.write_all(&vec![b'x'; BIG]).await.is_ok()
                        }
                        "/break" => return,
                        _ => stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await
                            .is_ok(),
                    };
                    if !written {
                        return;
                    }
                }
            });
        }
    });
    (addr, requests)
}

/// A proxy before `origin` with `origin_extra` in `[origin]` and `limits` in
/// `[limits]`, and `n` admitted visitors' cookies.
async fn admitted(
    origin: std::net::SocketAddr,
    origin_extra: &str,
    limits: &str,
    n: usize,
) -> (Proxy, Vec<String>) {
    let proxy = ProxyBuilder::to(origin)
        .origin_toml(&format!("url = \"http://{origin}\"\n{origin_extra}"))
        .admission(6000, 1000, "10m")
        .toml(&format!(
            "[limits]\nsession_requests_per_second = 0\n{limits}"
        ))
        .start()
        .await;
    let http = Http::new();
    let mut cookies = Vec::new();
    for _ in 0..n {
        let mut v = proxy.visitor(&http);
        assert_eq!(v.get("/register").await.unwrap().text(), "ok");
        cookies.push(format!("waitroom={}", v.cookie.unwrap()));
    }
    (proxy, cookies)
}

/// `GET /register` with `cookie`.
async fn register(proxy: &Proxy, cookie: &str) -> crate::support::Reply {
    Http::new()
        .send(
            http::Method::GET,
            &proxy.url("/register"),
            None,
            &[("cookie", cookie)],
        )
        .await
        .expect("an answer")
}

/// Sends `request` on a new connection and never reads from it.
async fn unread(proxy: &Proxy, request: String) -> TcpStream {
    let mut stream = TcpStream::connect(proxy.public).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Sends `head` and then `body` on a new connection, then sends nothing more
/// (keeping it open) and reads the answer.
async fn stalled(proxy: &Proxy, head: String, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy.public).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    // Until the head of an answer has come whole (the connection stays open).
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_visitor_reading_nothing_holds_only_their_share_and_is_cut() {
    let (origin, _) = origin().await;
    let (proxy, cookies) =
        admitted(origin, "max_in_flight = 8\n", "write_timeout = \"3s\"\n", 6).await;
    let greedy = &cookies[0];
    // 4 × max_in_flight requests for a large answer, none of them read.
    let mut held = Vec::new();
    for _ in 0..32 {
        let request = format!("GET /big HTTP/1.1\r\nHost: x\r\nCookie: {greedy}\r\n\r\n");
        held.push(unread(&proxy, request).await);
    }
    wait_until(
        "the greedy visitor holds their share",
        Duration::from_secs(20),
        || async { proxy.metric("waitroom_origin_turns_held").await >= 2.0 },
    )
    .await;
    assert!(
        proxy.metric("waitroom_origin_turns_held").await <= 2.0,
        "a quarter of max_in_flight (rounded up) at most"
    );
    // Everybody else is served meanwhile.
    for cookie in &cookies[1..] {
        let answer = register(&proxy, cookie).await;
        assert_eq!(
            (answer.status.as_u16(), answer.text().as_str()),
            (200, "ok")
        );
    }
    // The greedy visitor, reading nothing, is cut.
    wait_until(
        "a client cut for limits.write_timeout",
        Duration::from_secs(60),
        || async {
            proxy
                .metric("waitroom_clients_cut_total{reason=\"write_timeout\"}")
                .await
                >= 1.0
        },
    )
    .await;
    drop(held);
}

#[tokio::test]
async fn slow_bodies_are_the_clients_doing_not_the_origins() {
    let (origin, requests) = origin().await;
    let (proxy, cookies) = admitted(
        origin,
        "max_in_flight = 8\ntimeout = \"1s\"\n",
        "body_timeout = \"2s\"\n",
        1,
    )
    .await;
    let cookie = &cookies[0];
    let before = requests.load(Ordering::SeqCst);
    let post = |extra: &str| {
        format!("POST /register HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n{extra}\r\n")
    };
    let mut answers = Vec::new();
    for _ in 0..3 {
        // A small form that stops short: read whole before it goes anywhere.
        answers.push(stalled(&proxy, post("Content-Length: 100\r\n"), b"name=").await);
        // Chunks that stop coming.
        answers.push(
            stalled(
                &proxy,
                post("Transfer-Encoding: chunked\r\n"),
                b"5\r\nname=\r\n",
            )
            .await,
        );
        // A large upload, streamed to the origin, that stops half-way.
        answers.push(
            stalled(
                &proxy,
                post("Content-Length: 200000\r\n"),
                &vec![b'x'; 100_000],
            )
            .await,
        );
    }
    for answer in &answers {
        assert_eq!(raw_status(answer), 408, "{answer}");
    }
    for kind in ["connect", "broken", "timeout", "status_5xx"] {
        let name = format!("waitroom_origin_errors_total{{kind=\"{kind}\"}}");
        assert_eq!(proxy.metric(&name).await, 0.0, "{name}");
    }
    assert_eq!(
        proxy.metric("waitroom_origin_breaker_opened_total").await,
        0.0
    );
    assert_eq!(proxy.metric("waitroom_origin_breaker").await, 0.0, "closed");
    assert!(
        proxy
            .metric("waitroom_clients_cut_total{reason=\"body_timeout\"}")
            .await
            >= 9.0
    );
    assert_eq!(
        requests.load(Ordering::SeqCst),
        before,
        "no stalled request reached the origin whole"
    );
    // And the site is there for the next request.
    let next = register(&proxy, cookie).await;
    assert_eq!(next.text(), "ok");
}

#[tokio::test]
async fn a_clients_idempotency_key_sends_a_post_once_unless_the_site_honours_it() {
    let (origin, requests) = origin().await;
    for (extra, reaches) in [
        ("", 1),
        ("honours_idempotency_key = true\n", 2),
        ("idempotent_paths = [\"/break\"]\n", 2),
    ] {
        let (proxy, cookies) = admitted(origin, extra, "", 1).await;
        let before = requests.load(Ordering::SeqCst);
        let answer = Http::new()
            .send(
                http::Method::POST,
                &proxy.url("/break"),
                Some("name=Anna".into()),
                &[
                    ("cookie", cookies[0].as_str()),
                    ("idempotency-key", "3f2a-registration"),
                    ("content-type", "application/x-www-form-urlencoded"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 502, "{extra:?}: {}", answer.text());
        assert_eq!(
            requests.load(Ordering::SeqCst) - before,
            reaches,
            "{extra:?}: times the POST reached the origin"
        );
    }
}

//! One path, decided once (issue 26, findings 1 and 2): behind a real nginx, which
//! resolves dot-segments and decodes escapes, no spelling of a path takes anyone
//! past a closed line, over HTTP/1.1 or HTTP/2; the bypassed files still pass.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use crate::support::nginx::{self, FAVICON, FORM, HEALTHY, STATIC};
use crate::support::{raw, raw_status, ProxyBuilder};

/// Paths that reach the registration form at nginx when sent to it as they are.
const TRICKS: [&str; 20] = [
    "/static/../register",
    "/favicon.ico/../register",
    "/health/../register",
    "/static/..%2fregister",
    "/static/..%2Fregister",
    "/static%2f..%2fregister",
    "/static/%2e%2e/register",
    "/static/%2E%2E/register",
    "/static/.%2e/register",
    "/static/%2e./register",
    "/static//../register",
    "/static/./../register",
    "/./static/../register",
    "/%73tatic/../register",
    "/static/../../register",
    "/static/..;/register",
    "/static/..%5cregister",
    "/static/%2e%2e%2fregister",
    "/favicon.ico%2f..%2fregister",
    "/static/../register?x=1",
];

/// The example's bypass list, in front of nginx, the line closed.
async fn closed_line_before_nginx() -> (nginx::Nginx, crate::support::Proxy) {
    let site = nginx::site().await;
    let proxy = ProxyBuilder::to(site.addr)
        .admission(600, 100, "10m")
        .toml("[routes]\nbypass = [\"/static/\", \"/favicon.ico\", \"/health\"]\n")
        .start()
        .await;
    let r = proxy.patch(serde_json::json!({"closed": true})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    (site, proxy)
}

/// `method path` over HTTP/1.1, as bytes (no client library normalises it).
async fn over_http1(proxy: &crate::support::Proxy, method: &str, path: &str) -> (u16, String) {
    let body = if method == "POST" { "name=Anna" } else { "" };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: register.example\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(proxy.public, request.as_bytes()).await;
    (raw_status(&answer), answer)
}

/// HTTP/2 (with prior knowledge) to the public listener.
async fn http2(
    proxy: &crate::support::Proxy,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(proxy.public).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    send
}

async fn over_http2(
    send: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
) -> Option<(u16, String)> {
    // Paths `http::Uri` refuses cannot be sent by a client built on it.
    let uri: http::Uri = format!("http://register.example{path}").parse().ok()?;
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::from_static(b"name=Anna")))
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), send.send_request(req))
        .await
        .expect("an answer")
        .expect("an answer over HTTP/2");
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn no_spelling_of_a_path_walks_around_a_closed_line() {
    let (_site, proxy) = closed_line_before_nginx().await;
    let mut send = http2(&proxy).await;
    let mut tried = 0;
    let mut walked = Vec::new();
    for path in TRICKS {
        for method in ["GET", "POST", "HEAD"] {
            let (status, answer) = over_http1(&proxy, method, path).await;
            tried += 1;
            if answer.contains(FORM)
                || (method == "HEAD" && status == 200 && !answer.contains("waitroom-page"))
            {
                walked.push(format!("HTTP/1.1 {method} {path}: {status}"));
            }
            assert!(status < 500, "HTTP/1.1 {method} {path}: {answer}");
        }
        for method in ["GET", "POST"] {
            if let Some((status, body)) = over_http2(&mut send, method, path).await {
                tried += 1;
                if body.contains(FORM) {
                    walked.push(format!("HTTP/2 {method} {path}: {status}"));
                }
                assert!(status < 500, "HTTP/2 {method} {path}: {status} {body}");
            }
        }
    }
    assert!(tried >= 15 * 3, "only {tried} requests were tried");
    assert!(
        walked.is_empty(),
        "past the closed line to the form: {walked:#?}"
    );
    // The line itself is closed: the form's own path gets the waiting room's page.
    let (_, answer) = over_http1(&proxy, "GET", "/register").await;
    assert!(
        !answer.contains(FORM) && answer.contains("waitroom-page"),
        "{answer}"
    );
}

#[tokio::test]
async fn the_bypassed_files_still_pass_however_their_path_is_spelled() {
    let (_site, proxy) = closed_line_before_nginx().await;
    let mut send = http2(&proxy).await;
    let files = [
        ("/static/app.css", STATIC),
        ("/static/sub/../app.css", STATIC),
        ("/static/%61pp.css", STATIC),
        ("/static//app.css", STATIC),
        ("/favicon.ico", FAVICON),
        ("/health", HEALTHY),
        ("/register/../static/app.css", STATIC),
    ];
    for (path, content) in files {
        let (status, answer) = over_http1(&proxy, "GET", path).await;
        assert!(
            status == 200 && answer.ends_with(content),
            "HTTP/1.1 {path}: {answer}"
        );
        let (status, body) = over_http2(&mut send, "GET", path).await.unwrap();
        assert_eq!((status, body.as_str()), (200, content), "HTTP/2 {path}");
    }
    // What cannot be read one way only is a 400, and counted.
    let (status, answer) = over_http1(&proxy, "GET", "/static/..%2fregister").await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        proxy
            .metric("waitroom_client_errors_total{kind=\"path\"}")
            .await
            >= 1.0
    );
}

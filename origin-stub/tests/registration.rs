//! The registration flow over HTTP: idempotent submits, one confirmation each.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: stub\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

fn confirmation(page: &str) -> String {
    let start = page.find("data-confirmation=\"").expect("a confirmation") + 19;
    page[start..].split('"').next().unwrap().to_owned()
}

async fn site(service_ms: u64) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Room for every request of the test to wait: this is about idempotency, not overload.
    let options = origin_stub::Options {
        capacity: 20,
        service_time: Duration::from_millis(service_ms),
        backlog: 10_000,
        queue_timeout: Duration::from_secs(60),
        collapse: 0.0,
    };
    tokio::spawn(origin_stub::run(listener, options, std::future::pending()));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicate_submits_get_one_registration_and_one_mail() {
    let addr = site(5).await;
    // 30 people, each submitting 8 times at once (double clicks, retries after timeouts).
    let mut tasks = Vec::new();
    for person in 0..30 {
        for _ in 0..8 {
            tasks.push(tokio::spawn(async move {
                let nrn = format!("19900101{person:05}");
                let body = format!("nrn={nrn}&email=p{person}%40example.org");
                let (status, page) = request(addr, "POST", "/register", &body).await;
                assert_eq!(status, 200, "{page}");
                (nrn, confirmation(&page))
            }));
        }
    }
    let mut seen = std::collections::HashMap::new();
    for t in tasks {
        let (nrn, c) = t.await.unwrap();
        let first = seen.entry(nrn.clone()).or_insert_with(|| c.clone());
        assert_eq!(*first, c, "{nrn} got two confirmations");
    }
    let (_, outbox) = request(addr, "GET", "/__outbox", "").await;
    let outbox: Vec<serde_json::Value> = serde_json::from_str(&outbox).unwrap();
    assert_eq!(
        outbox.len(),
        30,
        "exactly one confirmation e-mail per registration"
    );
    for mail in &outbox {
        let nrn = mail["nrn"].as_str().unwrap();
        assert_eq!(mail["confirmation"].as_str().unwrap(), seen[nrn]);
        assert!(mail["email"].as_str().unwrap().ends_with("@example.org"));
    }
    let (_, stats) = request(addr, "GET", "/__stats", "").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(
        (
            stats["registrations"].as_u64(),
            stats["confirmations"].as_u64(),
            stats["resubmits"].as_u64()
        ),
        (Some(30), Some(30), Some(210))
    );
    assert!(
        stats["latency_ms"]["p50"].as_f64().unwrap() >= 5.0,
        "{stats}"
    );

    // The check page finds them; a bad submit is refused with a reason, not a 5xx.
    let (status, page) = request(addr, "GET", "/check?nrn=1990010100007", "").await;
    assert_eq!(status, 200);
    assert_eq!(confirmation(&page), seen["1990010100007"]);
    let (status, page) = request(addr, "POST", "/register", "nrn=123&email=x%40y.org").await;
    assert_eq!(status, 400);
    assert!(page.contains("11 or 13 digits"), "{page}");
    for path in ["/", "/register"] {
        assert_eq!(request(addr, "GET", path, "").await.0, 200);
    }
}

#[tokio::test]
async fn capacity_can_change_at_run_time() {
    let addr = site(1).await;
    let (status, stats) = request(addr, "PUT", "/__capacity", r#"{"capacity": 80}"#).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stats).unwrap()["capacity"],
        80
    );
    assert_eq!(
        request(addr, "PUT", "/__capacity", r#"{"capacity": 0}"#)
            .await
            .0,
        400
    );
    let (status, _) = request(addr, "POST", "/__reset", "").await;
    assert_eq!(status, 200);
}

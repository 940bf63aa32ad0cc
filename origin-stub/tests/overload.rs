//! The stub behaves like an overloaded server: capacity, then queueing, then 503s.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: stub\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn serves_capacity_queues_the_backlog_and_refuses_the_rest() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = origin_stub::Options {
        capacity: 2,
        service_time: Duration::from_millis(300),
        backlog: 2,
        queue_timeout: Duration::from_secs(30),
        collapse: 0.0,
    };
    tokio::spawn(origin_stub::run(listener, options, std::future::pending()));

    let answers = futures_join(addr, 6).await;
    let ok = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 200"))
        .count();
    let refused = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 503"))
        .count();
    assert_eq!((ok, refused), (4, 2), "{answers:#?}");
    for a in &answers {
        assert!(a.to_lowercase().contains("x-served-by: origin-stub"), "{a}");
    }
    let stats = get(addr, "/__stats").await;
    let body = stats.split("\r\n\r\n").nth(1).unwrap();
    let stats: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(stats["requests"], 6);
    assert_eq!(stats["errors"], 2);
    assert_eq!(stats["in_flight"], 0);
    // Two served and two waiting were inside at once; the refused may not overlap.
    assert!(stats["max_in_flight"].as_u64().unwrap() >= 4, "{stats}");
    assert!(get(addr, "/__stats")
        .await
        .to_lowercase()
        .contains("x-served-by: origin-stub"));
}

async fn futures_join(addr: std::net::SocketAddr, n: usize) -> Vec<String> {
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(async move { get(addr, &format!("/page/{i}")).await }))
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

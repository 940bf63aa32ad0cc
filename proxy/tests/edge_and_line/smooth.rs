//! Smooth at the proxy is not enough: the origin must see the outflow smooth too.
//! A crowd that arrives in the same instant polls in step; the places called one
//! by one must still reach the origin one by one (the long version, 10,000
//! visitors at 200 a second, is scripts/bench-smooth.sh).

use std::time::{Duration, Instant};

use crate::support::{origin, proxy, visit, Behaviour, Http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_that_arrived_together_reaches_the_origin_one_by_one() {
    // Each visitor, once in, makes one request of 100 ms; 20 let in a second
    // keep about 2 at the origin at once.
    let origin = origin(100, 100).await;
    let p = proxy(&origin)
        .admission(1_200, 100_000, "10m")
        .start()
        .await;
    let http = Http::new();
    let start = Instant::now();
    let crowd: Vec<_> = (0..200)
        .map(|_| {
            let mut v = p.visitor(&http);
            tokio::spawn(async move {
                let b = Behaviour {
                    requests_after: 1,
                    leave_after_polls: None,
                    think: Duration::ZERO,
                };
                visit(&mut v, start, b).await
            })
        })
        .collect();
    for t in crowd {
        let j = t.await.unwrap();
        assert!(j.admitted.is_some() && j.server_errors == 0, "{j:?}");
    }
    // Polling in step every second, the 20 called in that second would come back
    // together (20 at once); spaced at the outflow they come a slot apart.
    let stats = origin.stats().await;
    let most = stats["max_in_flight"].as_u64().unwrap();
    eprintln!("a crowd arrived together: the origin held at most {most} at once");
    assert!(
        most <= 8,
        "the origin held {most} requests at once: {stats}"
    );
}

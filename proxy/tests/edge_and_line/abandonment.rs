//! Acceptance: visitors who walk away stop costing admissions once noticed.

use std::time::{Duration, Instant};

use crate::support::{origin, proxy, visit, Behaviour, Http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stayers_move_at_the_configured_rate_once_the_departed_are_noticed() {
    let origin = origin(200, 5).await;
    let proxy = proxy(&origin)
        .admission(1_200, 100_000, "10m")
        .start()
        .await;
    let http = Http::new();
    let start = Instant::now();
    let visitors = 1_000;
    let tasks: Vec<_> = (0..visitors)
        .map(|i| {
            let mut v = proxy.visitor(&http);
            let arrive = Duration::from_secs_f64(2.0 * i as f64 / visitors as f64);
            // 40% walk away after two polls, spread evenly through the line.
            let leaves = i % 5 < 2;
            tokio::spawn(async move {
                tokio::time::sleep_until(tokio::time::Instant::from_std(start + arrive)).await;
                let b = Behaviour {
                    requests_after: 1,
                    leave_after_polls: leaves.then_some(2),
                    think: Duration::ZERO,
                };
                (leaves, visit(&mut v, start, b).await)
            })
        })
        .collect();
    let mut stayers = Vec::new();
    for t in tasks {
        let (leaves, j) = t.await.unwrap();
        assert_eq!(j.server_errors, 0, "{j:?}");
        assert!(j.failures.is_empty(), "{j:?}");
        if !leaves {
            stayers.push(j);
        }
    }
    let mut admitted: Vec<f64> = stayers
        .iter()
        .map(|j| j.admitted.expect("every stayer is admitted"))
        .collect();
    admitted.sort_by(f64::total_cmp);
    // The departed are noticed a few poll intervals after they leave (at most
    // 3 × 2.5 s here); from 15 s on, the stayers have the whole outflow.
    let after: Vec<f64> = admitted.iter().copied().filter(|t| *t >= 15.0).collect();
    assert!(
        after.len() > 100,
        "{} stayers admitted after 15 s",
        after.len()
    );
    let rate = (after.len() - 1) as f64 / (after[after.len() - 1] - after[0]);
    assert!(
        rate >= 0.85 * 20.0,
        "stayers admitted at {rate:.1}/s of 20/s"
    );
    let state = proxy.state().await;
    assert_eq!(state["queue_length"], 0, "{state}");
}

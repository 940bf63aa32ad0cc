//! Acceptance: a spike of 900 visitors in 3 s at 1,800/min becomes an orderly line.

mod support;

use std::time::{Duration, Instant};

use support::{origin, proxy, visit, Behaviour, Http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spike_is_admitted_smoothly_in_arrival_order() {
    let origin = origin(200, 5).await;
    let proxy = proxy(&origin)
        .admission(1_800, 100_000, "10m")
        .start()
        .await;
    let http = Http::new();
    let start = Instant::now();
    let visitors = 900;
    let mut tasks = Vec::new();
    for i in 0..visitors {
        let mut v = proxy.visitor(&http);
        let arrive = Duration::from_secs_f64(3.0 * i as f64 / visitors as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(start + arrive)).await;
            let b = Behaviour {
                requests_after: 3,
                leave_after_polls: None,
                think: Duration::ZERO,
            };
            visit(&mut v, start, b).await
        }));
    }
    let mut journeys = Vec::new();
    for t in tasks {
        journeys.push(t.await.unwrap());
    }

    // Everyone got in and used the site; nobody saw a 5xx or a failed request.
    for j in &journeys {
        assert!(j.admitted.is_some(), "not admitted: {j:?}");
        assert_eq!(j.server_errors, 0, "{j:?}");
        assert!(j.failures.is_empty(), "{j:?}");
        assert_eq!(j.origin_answers, if j.direct { 4 } else { 3 }, "{j:?}");
    }
    let direct = journeys.iter().filter(|j| j.direct).count();
    assert!(
        direct < 100,
        "{direct} went straight in: the line never formed"
    );

    // After the line formed: 30/s ±10%, measured between the 10th and 90th percentile.
    let mut queued: Vec<f64> = journeys
        .iter()
        .filter(|j| !j.direct)
        .filter_map(|j| j.admitted)
        .collect();
    queued.sort_by(f64::total_cmp);
    let (lo, hi) = (queued.len() / 10, queued.len() * 9 / 10);
    let rate = (hi - lo) as f64 / (queued[hi] - queued[lo]);
    assert!(
        (27.0..=33.0).contains(&rate),
        "admitted {rate:.1}/s, want 30/s ±10%"
    );

    // Arrival order is kept: nobody who arrived a full second earlier is admitted
    // two seconds later than someone behind them.
    journeys.sort_by(|a, b| a.arrived.total_cmp(&b.arrived));
    let mut earlier_max = f64::MIN; // latest admission among those ≥ 1 s earlier
    let mut k = 0;
    for j in &journeys {
        while k < journeys.len() && journeys[k].arrived <= j.arrived - 1.0 {
            earlier_max = earlier_max.max(journeys[k].admitted.unwrap());
            k += 1;
        }
        let admitted = j.admitted.unwrap();
        assert!(
            earlier_max <= admitted + 2.0,
            "someone who arrived ≥1 s before {:.2} s was admitted at {earlier_max:.2} s, 2 s after {admitted:.2} s",
            j.arrived
        );
    }
    let stats = origin.stats().await;
    assert_eq!(stats["errors"], 0, "{stats}");
}

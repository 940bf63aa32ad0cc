//! Acceptance: with 12 sessions allowed, never more than 12 in, and everyone gets in.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{origin, proxy, visit, Behaviour, Http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_sessions_never_exceed_capacity() {
    let origin = origin(100, 20).await;
    let proxy = Arc::new(proxy(&origin).admission(60_000, 12, "4s").start().await);
    let http = Http::new();

    // Watch /admin/state while the crowd goes through.
    let done = Arc::new(AtomicBool::new(false));
    let max_active = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (proxy, done, max_active) = (proxy.clone(), done.clone(), max_active.clone());
        tokio::spawn(async move {
            let mut samples = 0;
            while !done.load(Ordering::SeqCst) {
                let state = proxy.state().await;
                max_active.fetch_max(state["active_users"].as_u64().unwrap(), Ordering::SeqCst);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            samples
        })
    };

    let start = Instant::now();
    let tasks: Vec<_> = (0..60)
        .map(|_| {
            let mut v = proxy.visitor(&http);
            tokio::spawn(async move {
                let b = Behaviour {
                    requests_after: 3,
                    leave_after_polls: None,
                    think: Duration::from_millis(100),
                };
                visit(&mut v, start, b).await
            })
        })
        .collect();
    let mut journeys = Vec::new();
    for t in tasks {
        journeys.push(t.await.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    let samples = watcher.await.unwrap();

    for j in &journeys {
        assert!(j.admitted.is_some(), "not admitted: {j:?}");
        assert_eq!(j.server_errors, 0, "{j:?}");
        assert!(j.failures.is_empty(), "{j:?}");
    }
    let max = max_active.load(Ordering::SeqCst);
    assert!(samples > 100, "only {samples} samples of /admin/state");
    assert!(max <= 12, "active_users reached {max}");
    assert!(
        max >= 10,
        "capacity was never used ({max}): the test measured nothing"
    );
    let stats = origin.stats().await;
    let in_flight = stats["max_in_flight"].as_u64().unwrap();
    assert!(in_flight <= 12, "origin saw {in_flight} in flight");
    assert_eq!(stats["errors"], 0);
    // Later waves wait for earlier sessions to lapse (4 s after their last request).
    let mut admitted: Vec<f64> = journeys.iter().filter_map(|j| j.admitted).collect();
    admitted.sort_by(f64::total_cmp);
    assert!(admitted[59] - admitted[0] > 4.0 * 4.0, "{admitted:?}");
}

#[tokio::test]
async fn passthrough_lets_everybody_in_and_queue_all_queues_everybody() {
    let origin = origin(50, 0).await;
    // Room for one, ten minutes each: nobody else gets in by the limits alone.
    let proxy = proxy(&origin).admission(6_000, 1, "10m").start().await;
    let http = Http::new();
    let mut first = proxy.visitor(&http);
    assert!(first.get("/").await.unwrap().is_from_origin());
    let mut waiting = proxy.visitor(&http);
    assert_eq!(waiting.status().await.unwrap().json()["state"], "queued");

    // The night is over: everybody through, the one waiting too.
    let reply = proxy.patch(serde_json::json!({"passthrough": true})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["passthrough"], true);
    assert!(
        waiting.admitted_within(30).await,
        "the waiting one stayed out"
    );
    for _ in 0..10 {
        let mut newcomer = proxy.visitor(&http);
        assert!(newcomer.get("/").await.unwrap().is_from_origin());
    }
    let state = proxy.state().await;
    assert_eq!(state["passthrough"], true, "{state}");
    // Still measured: every one of them is an active session.
    assert_eq!(state["active_users"], 12, "{state}");
    assert_eq!(
        proxy.metric("waitroom_setting{name=\"passthrough\"}").await,
        1.0
    );

    // An opening: room for many, yet everybody takes a place and is called in turn.
    let reply = proxy
        .patch(serde_json::json!({
            "passthrough": false, "queue_all": true, "max_active_users": 1000
        }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let mut newcomer = proxy.visitor(&http);
    let first_answer = newcomer.status().await.unwrap().json();
    assert_eq!(first_answer["state"], "queued", "{first_answer}");
    assert!(newcomer.admitted_within(30).await, "queued for good");
}

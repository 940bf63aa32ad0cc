//! Several waitroom instances on one Redis behave as one waiting room.

mod support;

use std::time::{Duration, Instant};

use support::redis::RedisServer;
use support::{origin, proxy, visit, Behaviour, Http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_line_one_rate_and_one_set_of_settings() {
    let redis = RedisServer::start();
    let origin = origin(200, 5).await;
    let a = proxy(&origin)
        .admission(1_200, 100_000, "10m")
        .redis(&redis.url(), "shared")
        .start()
        .await;
    let b = proxy(&origin)
        .admission(1_200, 100_000, "10m")
        .redis(&redis.url(), "shared")
        .start()
        .await;
    assert_eq!(a.keys.jwks(), b.keys.jwks(), "one set of keys for the room");

    // A setting changed through one instance shows on the other at once.
    assert_eq!(
        a.patch(serde_json::json!({"max_active_users": 99_999}))
            .await
            .status,
        200
    );
    assert_eq!(b.state().await["max_active_users"], 99_999);

    // 600 visitors within 2 s, alternating between the instances; each poll may go
    // to either instance (a plain load balancer), cookies carry the place.
    let http = Http::new();
    let start = Instant::now();
    let tasks: Vec<_> = (0..600)
        .map(|i| {
            let mut v = if i % 2 == 0 {
                a.visitor(&http)
            } else {
                b.visitor(&http)
            };
            let arrive = Duration::from_secs_f64(2.0 * i as f64 / 600.0);
            tokio::spawn(async move {
                tokio::time::sleep_until(tokio::time::Instant::from_std(start + arrive)).await;
                let b = Behaviour {
                    requests_after: 1,
                    leave_after_polls: None,
                    think: Duration::ZERO,
                };
                let j = visit(&mut v, start, b).await;
                (j, v.cookie)
            })
        })
        .collect();
    let mut places = std::collections::HashSet::new();
    let mut admitted = Vec::new();
    for t in tasks {
        let (j, cookie) = t.await.unwrap();
        assert!(j.admitted.is_some(), "not admitted: {j:?}");
        assert_eq!(j.server_errors, 0, "{j:?}");
        assert!(j.failures.is_empty(), "{j:?}");
        let token = cookie.unwrap();
        let payload = token.split('.').nth(1).unwrap();
        use base64::Engine;
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert!(
            places.insert(claims["n"].as_u64().unwrap()),
            "two visitors share place {}",
            claims["n"]
        );
        if !j.direct {
            admitted.push(j.admitted.unwrap());
        }
    }
    assert_eq!(places.len(), 600);
    // Together, 20 per second ±10%.
    admitted.sort_by(f64::total_cmp);
    let (lo, hi) = (admitted.len() / 10, admitted.len() * 9 / 10);
    let rate = (hi - lo) as f64 / (admitted[hi] - admitted[lo]);
    assert!(
        (18.0..=22.0).contains(&rate),
        "admitted {rate:.1}/s together, want 20/s ±10%"
    );
}

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
        .admission(2_400, 100_000, "10m")
        .redis(&redis.url(), "shared")
        .start()
        .await;
    let b = proxy(&origin)
        .admission(2_400, 100_000, "10m")
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

    let rate = share_a_line(&a, &b).await;
    assert!(
        (36.0..=44.0).contains(&rate),
        "admitted {rate:.1}/s together, want 40/s ±10%"
    );
}

/// 600 visitors within 2 s, alternating between the instances (cookies carry the
/// place); each is let in once and makes one request. Checks that every one got
/// in, with a place of their own, in order (nobody who came a second later went in
/// more than two seconds sooner); returns the rate they were let in at together
/// (the instances let in 40 a second).
async fn share_a_line(a: &support::Proxy, b: &support::Proxy) -> f64 {
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
                // At 40 a second the last is let in after about 15 s.
                let j = tokio::time::timeout(Duration::from_secs(90), visit(&mut v, start, b))
                    .await
                    .unwrap_or_default();
                (j, v.cookie)
            })
        })
        .collect();
    let mut places = std::collections::HashSet::new();
    let mut journeys = Vec::new();
    for t in tasks {
        let (j, cookie) = t.await.unwrap();
        assert!(j.admitted.is_some(), "not admitted: {j:?}");
        assert_eq!(j.server_errors, 0, "{j:?}");
        assert!(j.failures.is_empty(), "{j:?}");
        let claims = support::claims(&cookie.unwrap());
        assert!(
            places.insert(claims["n"].as_u64().unwrap()),
            "two visitors share place {}",
            claims["n"]
        );
        journeys.push(j);
    }
    assert_eq!(places.len(), 600);
    let overtaken: Vec<(f64, f64)> = journeys
        .iter()
        .flat_map(|early| {
            journeys.iter().filter_map(move |late| {
                let (e, l) = (early.admitted.unwrap(), late.admitted.unwrap());
                (late.arrived >= early.arrived + 1.0 && e > l + 2.0).then_some((early.arrived, e))
            })
        })
        .collect();
    assert!(
        overtaken.is_empty(),
        "{} overtaken by visitors who came a second later (arrived, admitted): {:?}",
        overtaken.len(),
        &overtaken[..overtaken.len().min(5)]
    );
    // Together, the rate of the line (visitors let in straight away apart).
    let mut admitted: Vec<f64> = journeys
        .iter()
        .filter(|j| !j.direct)
        .map(|j| j.admitted.unwrap())
        .collect();
    admitted.sort_by(f64::total_cmp);
    let (lo, hi) = (admitted.len() / 10, admitted.len() * 9 / 10);
    (hi - lo) as f64 / (admitted[hi] - admitted[lo])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_whose_clocks_are_two_minutes_apart_share_one_line() {
    let redis = RedisServer::start();
    let origin = origin(200, 5).await;
    let ahead = proxy(&origin)
        .admission(2_400, 100_000, "10m")
        .redis(&redis.url(), "skewed")
        .clock_skew(120_000)
        .start()
        .await;
    let behind = proxy(&origin)
        .admission(2_400, 100_000, "10m")
        .redis(&redis.url(), "skewed")
        .start()
        .await;
    let rate = share_a_line(&ahead, &behind).await;
    assert!(
        (36.0..=44.0).contains(&rate),
        "admitted {rate:.1}/s together, want 40/s ±10%"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_keeps_the_operators_settings_and_the_order_of_the_line() {
    let mut redis = RedisServer::start();
    let origin = origin(50, 1).await;
    let start = |name: &'static str| {
        proxy(&origin)
            .admission(600, 1_000, "10m")
            .toml("[queue]\npoll_min = \"200ms\"\npoll_max = \"1s\"")
            .redis(&redis.url(), name)
            .start()
    };
    let (a, b) = (start("restored").await, start("restored").await);
    let http = Http::new();
    // The operator pauses and sets other limits; 100 visitors queue.
    let patch =
        serde_json::json!({"paused": true, "new_users_per_minute": 300, "max_active_users": 40});
    assert_eq!(a.patch(patch).await.status, 200);
    let mut visitors: Vec<support::Visitor> = (0..100)
        .map(|i| {
            if i % 2 == 0 {
                a.visitor(&http)
            } else {
                b.visitor(&http)
            }
        })
        .collect();
    let mut before = Vec::new();
    for v in visitors.iter_mut() {
        v.get("/").await.unwrap();
        let s = v.status().await.unwrap().json();
        before.push(s["position"].as_u64().unwrap());
    }
    assert_eq!(before, (1..=100).collect::<Vec<_>>());
    // The views have seen everybody (they refresh every 250 ms).
    tokio::time::sleep(Duration::from_millis(600)).await;

    redis.restart();
    // A newcomer right after goes behind everybody who was there.
    let mut newcomer = b.visitor(&http);
    let r = newcomer.get("/").await.unwrap();
    assert!(!r.is_from_origin(), "a newcomer went straight in");
    let s = newcomer.status().await.unwrap().json();
    assert_eq!(
        (s["state"].as_str(), s["position"].as_u64()),
        (Some("paused"), Some(101)),
        "{s}"
    );
    // The operator's settings, and every place where it was.
    let state = b.state().await;
    assert_eq!(
        (
            &state["paused"],
            &state["new_users_per_minute"],
            &state["max_active_users"]
        ),
        (
            &serde_json::json!(true),
            &serde_json::json!(300),
            &serde_json::json!(40)
        ),
        "{state}"
    );
    for (v, was) in visitors.iter_mut().zip(&before) {
        let s = v.status().await.unwrap().json();
        assert_eq!(s["position"].as_u64(), Some(*was), "{s}");
    }
    // Resumed: the first 40 in line, and only they, go in (40 at once at most).
    assert_eq!(
        a.patch(serde_json::json!({"paused": false})).await.status,
        200
    );
    let mut admitted = std::collections::BTreeSet::new();
    for _ in 0..40 {
        for (i, v) in visitors.iter_mut().enumerate() {
            if !admitted.contains(&i) && v.status().await.unwrap().json()["state"] == "admitted" {
                admitted.insert(i);
            }
        }
        if admitted.len() == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(admitted, (0..40).collect(), "not the first 40 in line");
    assert_ne!(newcomer.status().await.unwrap().json()["state"], "admitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_hung_for_ten_seconds_lets_in_no_burst_and_hands_out_no_stray_places() {
    let redis = RedisServer::start();
    let origin = origin(200, 5).await;
    let start = || {
        proxy(&origin)
            .admission(2_400, 100_000, "10m")
            .toml("[queue]\npoll_min = \"500ms\"\npoll_max = \"2s\"")
            .redis(&redis.url(), "hung")
            .start()
    };
    let (a, b) = (start().await, start().await);
    // 600 visitors over 8 s (75 a second against 40 let in); Redis is frozen
    // (SIGSTOP) from 3 s to 13 s.
    let http = Http::new();
    let begin = Instant::now();
    let tasks: Vec<_> = (0..600)
        .map(|i| {
            let mut v = if i % 2 == 0 {
                a.visitor(&http)
            } else {
                b.visitor(&http)
            };
            let arrive = Duration::from_secs_f64(8.0 * i as f64 / 600.0);
            tokio::spawn(async move {
                tokio::time::sleep_until(tokio::time::Instant::from_std(begin + arrive)).await;
                let b = Behaviour {
                    requests_after: 1,
                    leave_after_polls: None,
                    think: Duration::ZERO,
                };
                tokio::time::timeout(Duration::from_secs(120), visit(&mut v, begin, b))
                    .await
                    .unwrap_or_default()
            })
        })
        .collect();
    tokio::time::sleep_until(tokio::time::Instant::from_std(
        begin + Duration::from_secs(3),
    ))
    .await;
    redis.stop();
    tokio::time::sleep(Duration::from_secs(10)).await;
    redis.resume();
    let resumed = begin.elapsed().as_secs_f64();
    let mut admitted = Vec::new();
    for t in tasks {
        let j = t.await.unwrap();
        assert!(j.admitted.is_some(), "not let in: {j:?}");
        assert_eq!(j.server_errors, 0, "{j:?}");
        admitted.push(j.admitted.unwrap());
    }
    // No second after Redis came back lets in more than the rate and its burst.
    admitted.sort_by(f64::total_cmp);
    let worst = admitted
        .iter()
        .filter(|t| **t >= resumed)
        .map(|t| {
            admitted
                .iter()
                .filter(|u| **u >= *t && **u < t + 1.0)
                .count()
        })
        .max()
        .unwrap_or(0);
    // 40 a second, a burst of 4 (a tenth of a second's worth). The places called
    // before the freeze keep their call through it (a silence, see
    // docs/reliability.md) and claim at slots spaced at the rate; each holder comes
    // back up to a quarter later than told, as every poll answer is spread, which
    // can shift a few claims into one second as the visitor sees it (measured
    // 44-46 here; a replay of the ten frozen seconds would be hundreds).
    assert!(
        worst <= 40 + 4 + 6,
        "{worst} let in within a second after Redis came back"
    );
    // Places handed out that nobody holds: at most 1% more places than visitors.
    let issued = a.state().await["places_issued"].as_u64().unwrap();
    eprintln!("hung Redis: at most {worst} let in within a second after it resumed; {issued} places for 600 visitors");
    assert!(issued <= 606, "{issued} places for 600 visitors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_costs_nobody_their_place() {
    let mut redis = RedisServer::start();
    let origin = origin(50, 1).await;
    let a = proxy(&origin)
        .admission(600, 2, "10m")
        .redis(&redis.url(), "fault")
        .start()
        .await;
    let b = proxy(&origin)
        .admission(600, 2, "10m")
        .redis(&redis.url(), "fault")
        .start()
        .await;
    let http = Http::new();

    // Two get in (capacity 2), twelve wait, half of them at each instance.
    let mut admitted = Vec::new();
    let mut queued = Vec::new();
    for i in 0..14 {
        let mut v = if i % 2 == 0 {
            a.visitor(&http)
        } else {
            b.visitor(&http)
        };
        let r = v.get("/").await.unwrap();
        if r.is_from_origin() {
            admitted.push(v);
        } else {
            queued.push(v);
        }
    }
    assert_eq!((admitted.len(), queued.len()), (2, 12));
    let mut before = Vec::new();
    for v in &mut queued {
        before.push(
            v.status().await.unwrap().json()["position"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(before, (1..=12).collect::<Vec<_>>());

    // Redis dies. Every request to either instance still gets an answer, never a 5xx:
    // the admitted keep using the site, the queued see the line held, newcomers wait.
    redis.kill();
    for v in &mut admitted {
        let r = v.get("/register").await.unwrap();
        assert!(
            r.is_from_origin(),
            "an admitted visitor was stopped: {}",
            r.status
        );
    }
    for v in &mut queued {
        let r = v.status().await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["state"], "paused", "{}", r.text());
        let page = v.get("/register").await.unwrap();
        assert_eq!(page.status, 200);
        assert!(!page.is_from_origin());
    }
    // A newcomer gets a provisional place, numbered when Redis answers again.
    let mut newcomer = b.visitor(&http);
    let r = newcomer.get("/").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(!r.is_from_origin());
    assert_eq!(kind(newcomer.cookie.as_deref().unwrap()), "p");
    for p in [&a, &b] {
        let r = p.get("/", &[]).await.unwrap();
        assert!(!r.status.is_server_error(), "{}", r.status);
        let health = |path: &str| {
            let url = format!("http://{}{path}", p.admin);
            async move {
                Http::new()
                    .send(http::Method::GET, &url, None, &[])
                    .await
                    .unwrap()
                    .status
            }
        };
        // Each instance still serves (hold mode): a balancer must not take them
        // all out at once. The store's own health says what is wrong.
        assert_eq!(
            health("/readyz").await,
            200,
            "readyz turned the instance away"
        );
        assert_eq!(health("/healthz/store").await, 503);
    }
    let metrics = a.metrics().await;
    assert!(metrics.contains("waitroom_store_up 0"), "{metrics}");

    // Redis comes back empty. Places are the same or better, admitted stay admitted.
    redis.restart();
    let mut recovered = false;
    for _ in 0..200 {
        if a.state_status().await == 200 && b.state_status().await == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "the instances never reconnected");
    for (v, was) in queued.iter_mut().zip(&before) {
        let s = v.status().await.unwrap().json();
        let now = s["position"].as_u64().unwrap();
        assert!(
            s["state"] == "admitted" || (s["state"] == "queued" && now <= *was),
            "was {was}, now {s}"
        );
    }
    for v in &mut admitted {
        assert!(
            v.get("/register").await.unwrap().is_from_origin(),
            "an admitted visitor lost the session"
        );
    }
    // The provisional place is numbered now, behind everybody who was there before.
    let s = newcomer.status().await.unwrap().json();
    assert!(s["state"] == "queued" || s["state"] == "admitted", "{s}");
    assert_ne!(kind(newcomer.cookie.as_deref().unwrap()), "p");
}

/// The kind claim (`q`, `a`, `p`) of a token.
fn kind(token: &str) -> String {
    support::claims(token)["k"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_lets_the_places_from_before_in_first_at_a_local_share() {
    let mut redis = RedisServer::start();
    let origin = origin(50, 1).await;
    let p = proxy(&origin)
        .admission(600, 2, "10m")
        .toml("[queue]\npoll_min = \"200ms\"\npoll_max = \"1s\"")
        .store_toml("on_failure = \"open\"\nopen_share = 0.5")
        .redis(&redis.url(), "open")
        .start()
        .await;
    let http = Http::new();
    // Two go in (capacity 2), 20 wait with places.
    let mut waiting = Vec::new();
    for _ in 0..22 {
        let mut v = p.visitor(&http);
        if !v.get("/").await.unwrap().is_from_origin() {
            waiting.push(v);
        }
    }
    assert_eq!(waiting.len(), 20);
    redis.kill();
    // 20 newcomers arrive during the outage; everybody keeps asking. At 300/min
    // here (5/s, a burst of 2) this instance lets people in on its own: the places
    // from before first, in their order, then the newcomers.
    let newcomers: Vec<_> = (0..20).map(|_| p.visitor(&http)).collect();
    let started = std::time::Instant::now();
    let mut crowd: Vec<(usize, support::Visitor)> =
        waiting.into_iter().chain(newcomers).enumerate().collect();
    let mut order = Vec::new();
    while started.elapsed() < Duration::from_secs(8) {
        let mut still = Vec::new();
        for (i, mut v) in crowd {
            let r = v.get("/register").await.unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            if r.is_from_origin() {
                assert_eq!(kind(v.cookie.as_deref().unwrap()), "a");
                order.push(i);
                // Those let in keep going while Redis is away.
                assert!(v.get("/register/form").await.unwrap().is_from_origin());
            } else {
                still.push((i, v));
            }
        }
        crowd = still;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let allowed = 2 + (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!(order.len() >= 10, "open mode let only {} in", order.len());
    assert!(
        order.len() <= allowed,
        "{} let in, at most {allowed}",
        order.len()
    );
    let (before, during): (Vec<usize>, Vec<usize>) = order.iter().partition(|i| **i < 20);
    assert_eq!(
        before,
        (0..before.len()).collect::<Vec<_>>(),
        "the places from before go first, in order: {order:?}"
    );
    assert!(
        during.is_empty() || before.len() == 20,
        "newcomers went in before the places from before: {order:?}"
    );
}

/// Writes a keyring as the room's shared keys, as a brand-new instance that found
/// Redis empty would have.
async fn store_keys(url: &str, room: &str, ring: &waitroom::token::Keyring) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{{waitroom:{room}}}:keys"))
        .arg(ring.to_json())
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// The kids an instance publishes in its JWKS.
async fn kids(p: &support::Proxy) -> Vec<String> {
    let jwks = p.get("/_waitroom/jwks.json", &[]).await.unwrap().json();
    jwks["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The visitor's place is recognised rather than taken for a newcomer's: while the
/// room is paused the same place and no new token, or, if the place was called
/// meanwhile, an admission for that very place.
async fn keeps_place(v: &mut support::Visitor, place: &serde_json::Value) {
    let before = v.cookie.clone();
    let r = v.status().await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let claims = support::claims(v.cookie.as_deref().unwrap());
    assert_eq!(&claims["n"], place, "{}", r.text());
    if r.json()["state"] == "admitted" {
        assert_eq!(claims["k"], "a", "{}", r.text());
    } else {
        assert_eq!(r.json()["state"], "paused", "{}", r.text());
        assert_eq!(v.cookie, before, "taken for a newcomer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_that_came_to_hold_different_keys_converge_and_keep_every_place() {
    let mut redis = RedisServer::start();
    let origin = origin(10, 1).await;
    let url = redis.url();
    let start = || {
        proxy(&origin)
            .admission(600, 100, "10m")
            .redis(&url, "keys")
            .start()
    };
    let a = start().await;
    let http = Http::new();
    assert_eq!(
        a.patch(serde_json::json!({"paused": true})).await.status,
        200
    );
    let mut early = a.visitor(&http);
    early.get("/register").await.unwrap();
    let early_place = support::claims(early.cookie.as_deref().unwrap())["n"].clone();

    // Redis comes back empty and, at the same moment, a brand-new instance starts:
    // it finds no line and no keys. It waits for `a` to restore the line (with its
    // id), but brings keys of its own (`a` puts its keys back only every 5 s).
    redis.restart();
    let foreign = waitroom::token::Keyring::new(waitroom::token::KeyPair::generate(), Vec::new());
    store_keys(&url, "keys", &foreign).await;
    let b = start().await;
    assert_ne!(a.keys.signing().kid(), b.keys.signing().kid());
    let mut paused = false;
    for _ in 0..100 {
        if a.patch(serde_json::json!({"paused": true})).await.status == 200 {
            paused = true;
            break;
        }
        // `a` reconnecting to Redis by itself, in real time.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(paused, "a did not reconnect to Redis");

    // Within a couple of rounds of the periodic sync, each verifies the other's keys.
    let (ka, kb) = (
        a.keys.signing().kid().to_owned(),
        b.keys.signing().kid().to_owned(),
    );
    let mut converged = false;
    for _ in 0..150 {
        let (at_a, at_b) = (kids(&a).await, kids(&b).await);
        if at_a.contains(&kb) && at_b.contains(&ka) {
            converged = true;
            break;
        }
        // Waiting on the instances' own periodic task (every 5 s), in real time.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        converged,
        "a: {:?}, b: {:?}",
        kids(&a).await,
        kids(&b).await
    );

    // The visitor who queued at `a` before all this keeps their place at `b`...
    let mut early_at_b = b.visitor(&http);
    early_at_b.cookie = early.cookie.clone();
    keeps_place(&mut early_at_b, &early_place).await;
    // ...and one who arrives at `b` now is recognised at `a`.
    let mut late = b.visitor(&http);
    late.get("/register").await.unwrap();
    let late_place = support::claims(late.cookie.as_deref().unwrap())["n"].clone();
    let mut late_at_a = a.visitor(&http);
    late_at_a.cookie = late.cookie.clone();
    keeps_place(&mut late_at_a, &late_place).await;
}

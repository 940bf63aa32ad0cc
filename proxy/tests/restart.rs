//! A proxy in memory mode stopped (SIGTERM) or killed (`kill -9`) and started
//! again continues the same line: queued visitors keep their places, admitted
//! visitors stay admitted, no place number is handed out twice, and the
//! operator's settings stay as they were set.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use http::Method;
use support::process::{kill9, sigterm, wait_ready, Setup};
use support::{claims, origin, Http, Visitor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_proxy_continues_the_same_line() {
    let origin = origin(10, 1).await;
    let setup = Setup::memory(
        origin.addr,
        "[admission]\nnew_users_per_minute = 600\nmax_active_users = 2\n",
    );
    let http = Http::new();
    let mut proxy = setup.spawn();
    wait_ready(&http, setup.admin).await;

    let mut visitors: Vec<Visitor> = (0..6).map(|_| Visitor::new(&setup.base(), &http)).collect();
    for v in visitors.iter_mut() {
        v.get("/").await.unwrap();
    }
    let mut before = Vec::new();
    for (i, v) in visitors.iter_mut().enumerate() {
        let s = v.status().await.unwrap().json();
        if i < 2 {
            assert_eq!(s["state"], "admitted", "visitor {i}: {s}");
        } else {
            assert_eq!(s["state"], "queued", "visitor {i}: {s}");
        }
        before.push(s["position"].as_u64().unwrap());
    }
    assert_eq!(before, vec![0, 0, 1, 2, 3, 4]);

    sigterm(&mut proxy);
    assert!(
        setup.state_dir().join("line.json").exists(),
        "the line was not saved"
    );
    let mut proxy = setup.spawn();
    wait_ready(&http, setup.admin).await;

    for (i, v) in visitors.iter_mut().enumerate() {
        if i < 2 {
            let r = v.get("/register").await.unwrap();
            assert!(
                r.is_from_origin(),
                "admitted visitor {i} thrown out: {}",
                r.text()
            );
        } else {
            let s = v.status().await.unwrap().json();
            assert_eq!(s["state"], "queued", "visitor {i}: {s}");
            assert_eq!(
                s["position"].as_u64().unwrap(),
                before[i],
                "visitor {i} lost their place"
            );
        }
    }
    sigterm(&mut proxy);
}

/// What a visitor of the crowd last knew before the proxy went away.
struct Seen {
    visitor: Visitor,
    /// Their last position in line, while waiting.
    position: Option<u64>,
}

/// A browser-like visitor: arrives, polls as told, and once admitted keeps using
/// the site; stops at the first request that fails (the proxy is gone).
async fn browse(mut v: Visitor, arrive_at: Instant) -> Seen {
    tokio::time::sleep_until(arrive_at.into()).await;
    let mut position = None;
    let mut r = v.get("/register").await;
    loop {
        let Ok(reply) = r else { break };
        let wait_ms = if reply.is_from_origin() {
            position = None;
            300
        } else {
            match reply.headers.get("content-type") {
                Some(t) if t == "application/json" => {
                    let s = reply.json();
                    position = s["position"].as_u64().filter(|p| *p > 0);
                    s["poll_after_ms"].as_u64().unwrap_or(500).max(100)
                }
                _ => 0,
            }
        };
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        let admitted = v.cookie.as_deref().is_some_and(|c| claims(c)["k"] == "a");
        r = if admitted {
            v.get("/register/form").await
        } else {
            v.status().await
        };
    }
    Seen {
        visitor: v,
        position,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_spike_the_line_comes_back_whole() {
    let origin = origin(200, 5).await;
    let setup = Setup::memory(
        origin.addr,
        "[admission]\nnew_users_per_minute = 1200\nmax_active_users = 100\n\
         [queue]\npoll_min = \"200ms\"\npoll_max = \"2s\"\n",
    );
    let http = Http::new();
    let mut proxy = setup.spawn();
    wait_ready(&http, setup.admin).await;

    // 400 visitors over 2 s; the operator raises the capacity at 2.5 s (after the
    // save at start, before the first periodic one); killed at 3 s.
    let start = Instant::now();
    let crowd: Vec<_> = (0..400)
        .map(|i| {
            let v = Visitor::new(&setup.base(), &http);
            let at = start + Duration::from_millis(i * 5);
            tokio::spawn(browse(v, at))
        })
        .collect();
    tokio::time::sleep_until((start + Duration::from_millis(2_500)).into()).await;
    let patched = setup
        .admin(
            Method::PATCH,
            "/admin/settings",
            Some(r#"{"max_active_users": 150}"#.into()),
        )
        .await;
    assert_eq!(patched.status, 200);
    tokio::time::sleep_until((start + Duration::from_millis(3_000)).into()).await;
    kill9(&mut proxy);
    let mut seen = Vec::new();
    for t in crowd {
        seen.push(t.await.unwrap());
    }

    let mut proxy = setup.spawn();
    wait_ready(&http, setup.admin).await;
    let state = setup.admin(Method::GET, "/admin/state", None).await.json();
    assert_eq!(
        state["max_active_users"], 150,
        "the operator's change reverted"
    );

    let mut places = HashSet::new();
    let (mut admitted, mut waiting, mut sent_back, mut worse) = (0, 0, Vec::new(), Vec::new());
    for s in seen.iter_mut() {
        let Some(cookie) = s.visitor.cookie.clone() else {
            continue;
        };
        let c = claims(&cookie);
        let n = c["n"].as_u64().unwrap();
        assert!(places.insert(n), "place {n} was handed out twice");
        match c["k"].as_str().unwrap() {
            "a" => {
                admitted += 1;
                let r = s.visitor.get("/register/form").await.unwrap();
                if !r.is_from_origin() {
                    sent_back.push(n);
                }
            }
            "q" => {
                waiting += 1;
                let now = s.visitor.status().await.unwrap().json();
                let after = now["position"].as_u64().unwrap_or(0);
                if now["state"] == "queued" && after > s.position.unwrap_or(u64::MAX) {
                    worse.push((n, s.position, after));
                }
            }
            other => panic!("unexpected token kind {other}"),
        }
    }
    assert!(
        admitted >= 50 && waiting >= 100,
        "{admitted} admitted, {waiting} waiting: not mid-spike"
    );
    assert!(
        sent_back.is_empty(),
        "admitted visitors sent back into the line: {sent_back:?}"
    );
    assert!(
        worse.is_empty(),
        "waiting visitors who lost ground (place, before, after): {worse:?}"
    );

    // Newcomers get numbers nobody had.
    let highest = *places.iter().max().unwrap();
    for _ in 0..20 {
        let mut v = Visitor::new(&setup.base(), &http);
        v.get("/register").await.unwrap();
        let n = claims(v.cookie.as_deref().unwrap())["n"].as_u64().unwrap();
        assert!(n > highest, "place {n} reused (highest before: {highest})");
    }
    sigterm(&mut proxy);
}

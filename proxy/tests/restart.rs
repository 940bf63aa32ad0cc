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

/// An origin and a memory-mode proxy for a crowd: 20 a second, 100 at once, quick polls.
async fn crowd_setup() -> (support::Origin, Setup) {
    let origin = origin(200, 5).await;
    let setup = Setup::memory(
        origin.addr,
        "[admission]\nnew_users_per_minute = 1200\nmax_active_users = 100\n\
         [queue]\npoll_min = \"200ms\"\npoll_max = \"2s\"\n",
    );
    (origin, setup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_spike_the_line_comes_back_whole() {
    let (_origin, setup) = crowd_setup().await;
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
    eprintln!(
        "killed mid-spike: {admitted} admitted and {waiting} waiting; sent back {}, worse {}",
        sent_back.len(),
        worse.len()
    );
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

/// What one visitor of a rolling restart went through.
#[derive(Default)]
struct Journey {
    /// Requests that failed even after the one retry a browser makes on a
    /// connection that closed under it; and how many such retries there were.
    failures: Vec<String>,
    retried: u32,
    /// Answers with a 5xx.
    server_errors: u32,
    /// Every token held, in order: (kind, number).
    tokens: Vec<(String, u64)>,
    /// Every position seen while waiting.
    positions: Vec<u64>,
    /// Admitted visitors who were shown the queue page again.
    sent_back: u32,
}

/// Browses like [`browse`] until `until`, through any restart: a request that
/// fails on a connection closed under it is sent once more on a new connection,
/// as browsers do.
async fn browse_through(mut v: Visitor, arrive_at: Instant, until: Instant) -> Journey {
    tokio::time::sleep_until(arrive_at.into()).await;
    let mut j = Journey::default();
    let mut first = true;
    while Instant::now() < until {
        let admitted = v.cookie.as_deref().is_some_and(|c| claims(c)["k"] == "a");
        let mut reply = None;
        for attempt in 0..2 {
            let r = if first {
                v.get("/register").await
            } else if admitted {
                v.get("/register/form").await
            } else {
                v.status().await
            };
            match r {
                Ok(r) => {
                    reply = Some(r);
                    break;
                }
                Err(e) if attempt == 0 && !e.contains("Connect") => {
                    j.retried += 1;
                    v.renew_connections();
                }
                Err(e) => j.failures.push(e),
            }
        }
        first = false;
        let Some(reply) = reply else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if reply.status.is_server_error() {
            j.server_errors += 1;
        }
        if let Some(c) = v.cookie.as_deref().map(claims) {
            let token = (
                c["k"].as_str().unwrap().to_owned(),
                c["n"].as_u64().unwrap(),
            );
            if j.tokens.last() != Some(&token) {
                j.tokens.push(token);
            }
        }
        let wait_ms = if reply.is_from_origin() {
            300
        } else if reply
            .headers
            .get("content-type")
            .is_some_and(|t| t == "application/json")
        {
            let s = reply.json();
            if s["state"] == "queued" {
                j.positions.push(s["position"].as_u64().unwrap());
            }
            s["poll_after_ms"].as_u64().unwrap_or(500).clamp(100, 1_000)
        } else {
            if admitted {
                j.sent_back += 1;
            }
            0
        };
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    }
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_takes_over_refusing_no_connection_and_keeping_every_place() {
    rolling_restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_started_while_the_old_drains_takes_over_as_well() {
    rolling_restart(true).await;
}

/// 300 visitors over 1.5 s keep browsing for 6 s; at 2.5 s a new process is
/// started with the same configuration: while the old one runs (it hands over and
/// drains), or just after the old one was told to stop (SIGTERM).
async fn rolling_restart(sigterm_first: bool) {
    let (_origin, setup) = crowd_setup().await;
    let http = Http::new();
    let mut old = setup.spawn();
    wait_ready(&http, setup.admin).await;

    let start = Instant::now();
    let until = start + Duration::from_secs(6);
    let crowd: Vec<_> = (0..300)
        .map(|i| {
            let v = Visitor::new(&setup.base(), &http);
            tokio::spawn(browse_through(
                v,
                start + Duration::from_millis(i * 5),
                until,
            ))
        })
        .collect();
    tokio::time::sleep_until((start + Duration::from_millis(2_500)).into()).await;
    if sigterm_first {
        support::process::signal(old.id(), "TERM");
    }
    let mut new = setup.spawn();
    let mut journeys = Vec::new();
    for t in crowd {
        journeys.push(t.await.unwrap());
    }
    // Handed over, the old process drains and stops by itself.
    let exit = old.wait().unwrap();
    assert!(exit.success(), "the old process stopped with {exit:?}");

    let failures: Vec<_> = journeys.iter().flat_map(|j| j.failures.clone()).collect();
    assert!(
        failures.is_empty(),
        "{} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let server_errors: u32 = journeys.iter().map(|j| j.server_errors).sum();
    assert_eq!(server_errors, 0, "answers with a 5xx");
    let sent_back: u32 = journeys.iter().map(|j| j.sent_back).sum();
    assert_eq!(sent_back, 0, "admitted visitors shown the line again");
    let mut places = HashSet::new();
    for (i, j) in journeys.iter().enumerate() {
        // One number for the whole visit: a place, then (perhaps) its admission.
        let numbers: HashSet<u64> = j.tokens.iter().map(|t| t.1).collect();
        assert_eq!(numbers.len(), 1, "visitor {i} renumbered: {:?}", j.tokens);
        let kinds: Vec<&str> = j.tokens.iter().map(|t| t.0.as_str()).collect();
        assert!(
            kinds == ["q"] || kinds == ["a"] || kinds == ["q", "a"],
            "visitor {i}: {kinds:?}"
        );
        assert!(
            places.insert(j.tokens[0].1),
            "place {} handed out twice",
            j.tokens[0].1
        );
        assert!(
            j.positions.windows(2).all(|w| w[1] <= w[0]),
            "visitor {i} lost ground: {:?}",
            j.positions
        );
    }
    let retried: u32 = journeys.iter().map(|j| j.retried).sum();
    eprintln!(
        "rolling restart: {} visitors, {retried} requests sent again on a closed connection",
        journeys.len()
    );
    sigterm(&mut new);
}

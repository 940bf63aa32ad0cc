//! The line against abuse (issue 10): places cost something per client, one
//! admission serves one person, and a flood of connections is shed instead of
//! exhausting the process. Clients are told apart by `X-Forwarded-For`, believed
//! from loopback here as from a load balancer in front.

use std::time::Instant;

use crate::support::{origin, proxy, raw, raw_status, Http, Proxy};
use http::Method;

const BEHIND_A_BALANCER: &str = "trusted_proxies = [\"127.0.0.1/32\"]";

/// A metric's value (0 when absent).
async fn metric(proxy: &Proxy, name: &str) -> f64 {
    proxy.metric(name).await
}

/// A newcomer from `address` asking for the status (JSON): the reply.
async fn newcomer(http: &Http, proxy: &Proxy, address: &str) -> crate::support::Reply {
    http.send(
        Method::GET,
        &proxy.url("/_waitroom/status"),
        None,
        &[("x-forwarded-for", address), ("accept", "application/json")],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn one_client_farming_places_gets_its_allowance_then_places_to_earn_then_429s() {
    let origin = origin(10, 1).await;
    let proxy = proxy(&origin)
        .admission(1, 1, "10m")
        .clients(&format!(
            "{BEHIND_A_BALANCER}\nplaces_per_minute = 30\nplaces_burst = 30"
        ))
        .start()
        .await;
    let http = Http::new();
    // Somebody is inside: the room is full, newcomers queue.
    assert_eq!(
        newcomer(&http, &proxy, "192.0.2.1").await.json()["state"],
        "admitted"
    );

    let started = Instant::now();
    let (mut places, mut kept, mut limited) = (0u64, 0u64, 0u64);
    for _ in 0..2_000 {
        let r = newcomer(&http, &proxy, "198.51.100.7").await;
        match r.status.as_u16() {
            200 => {
                assert!(
                    r.set_cookie("waitroom").is_some(),
                    "a place without a token"
                );
                places += 1;
            }
            // Past the allowance: a place kept in arrival order, to be earned
            // by work (issue 27), not a place.
            403 => {
                let j = r.json();
                assert_eq!(
                    (&j["error"], &j["kept"]),
                    (&"proof_of_work_required".into(), &true.into())
                );
                assert!(j["difficulty"].as_u64().unwrap() >= 12, "{j}");
                let token = r.set_cookie("waitroom").expect("the kept place's token");
                assert_eq!(crate::support::claims(&token)["k"], "w");
                kept += 1;
            }
            // Past the places it may have kept (1,000 at once): what no browser does.
            429 => {
                let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=2).contains(&retry), "Retry-After {retry}");
                assert_eq!(r.json()["error"], "too_many_requests");
                limited += 1;
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    // The burst, and one more for every 2 s the loop took.
    let allowance = 30 + started.elapsed().as_secs() / 2 + 1;
    println!("farming: {places} places, {kept} kept, {limited} refused, allowance {allowance}");
    assert!(kept >= 1_000, "{kept} kept");
    assert!(limited > 0, "past the kept places' limit");
    assert!(
        (30..=allowance).contains(&places),
        "{places} places for one client"
    );
    assert_eq!(
        metric(&proxy, "waitroom_rate_limited_total{limit=\"places\"}").await,
        limited as f64
    );

    // An honest visitor right after is behind the farmer's allowance, not 2,000.
    let honest = newcomer(&http, &proxy, "203.0.113.5").await;
    assert_eq!(honest.status, 200, "{}", honest.text());
    let position = honest.json()["position"].as_u64().unwrap();
    assert!(position <= allowance + 1, "honest visitor at {position}");
    // The farmer's browser is told why, in its language, and the page goes on by
    // itself: with a place kept to earn, or (past the kept places' limit) the 429
    // page that tries again.
    let page = http
        .send(
            Method::GET,
            &proxy.url("/register"),
            None,
            &[
                ("x-forwarded-for", "198.51.100.7"),
                ("accept", "text/html"),
                ("accept-language", "fr"),
            ],
        )
        .await
        .unwrap();
    let html = page.text();
    match page.status.as_u16() {
        200 => {
            assert_eq!(page.headers["waitroom-page"], "check");
            assert!(html.contains("Beaucoup de personnes"), "{html}");
        }
        429 => {
            assert!(page.headers.contains_key("retry-after"));
            assert!(html.contains("Trop de demandes"), "{html}");
        }
        other => panic!("{other}: {html}"),
    }
    assert!(html.contains("http-equiv=\"refresh\""), "{html}");
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_do_not_make_it_many_clients() {
    let origin = origin(10, 1).await;
    let proxy = proxy(&origin)
        .admission(1, 1, "10m")
        .clients("places_per_minute = 30\nplaces_burst = 5")
        .start()
        .await;
    let http = Http::new();
    let mut statuses = Vec::new();
    for i in 0..20 {
        statuses.push(
            newcomer(&http, &proxy, &format!("10.0.0.{i}"))
                .await
                .status
                .as_u16(),
        );
    }
    let granted = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        (5..=6).contains(&granted),
        "{granted} places from one peer claiming 20 addresses: {statuses:?}"
    );
}

#[tokio::test]
async fn one_admission_shared_by_fifty_clients_is_throttled_to_the_session_limit() {
    let origin = origin(100, 0).await;
    let proxy = proxy(&origin)
        .admission(600, 100, "10m")
        .toml("[limits]\nsession_requests_per_second = 20\nsession_burst = 60")
        .start()
        .await;
    let http = Http::new();
    let mut v = proxy.visitor(&http);
    assert!(v.get("/").await.unwrap().is_from_origin());
    let cookie = format!("waitroom={}", v.cookie.clone().unwrap());

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (http, url, cookie) = (http.clone(), proxy.url("/"), cookie.clone());
        tasks.spawn(async move {
            let (mut through, mut limited) = (0u64, 0u64);
            for _ in 0..20 {
                let r = http
                    .send(Method::GET, &url, None, &[("cookie", &cookie)])
                    .await
                    .unwrap();
                match r.status.as_u16() {
                    200 if r.is_from_origin() => through += 1,
                    429 => limited += 1,
                    other => panic!("unexpected {other}"),
                }
            }
            (through, limited)
        });
    }
    let (mut through, mut limited) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (t, l) = done.unwrap();
        through += t;
        limited += l;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowance = 60 + (20.0 * elapsed).ceil() as u64 + 1;
    println!("shared admission: {through} through, {limited} refused in {elapsed:.1} s");
    assert!(
        through <= allowance,
        "{through} through, allowance {allowance}"
    );
    assert!(limited > 0);
    assert_eq!(
        metric(&proxy, "waitroom_rate_limited_total{limit=\"session\"}").await,
        limited as f64
    );
    // Limits change live from the admin API: off, and the same cookie goes through.
    let r = proxy
        .admin_call(
            Method::PATCH,
            "/admin/protection",
            Some(r#"{"session_requests_per_second": 0}"#.into()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["session_requests_per_second"], 0);
    for _ in 0..100 {
        let r = http
            .send(Method::GET, &proxy.url("/"), None, &[("cookie", &cookie)])
            .await
            .unwrap();
        assert!(r.is_from_origin(), "{}", r.status);
    }
    let bad = proxy
        .admin_call(
            Method::PATCH,
            "/admin/protection",
            Some(r#"{"session_requests_per_second": 20, "session_burst": 1}"#.into()),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("session_burst"), "{}", bad.text());
}

#[tokio::test]
async fn connections_beyond_the_cap_are_shed_with_a_short_answer() {
    let origin = origin(10, 1).await;
    let proxy = proxy(&origin)
        .toml("[limits]\nmax_connections = 16")
        .start()
        .await;
    // Sixteen idle connections hold every slot.
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(tokio::net::TcpStream::connect(proxy.public).await.unwrap());
    }
    let answer = raw(
        proxy.public,
        b"GET / HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 503, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 5"),
        "{answer}"
    );
    assert_eq!(
        metric(&proxy, "waitroom_client_errors_total{kind=\"shed\"}").await,
        1.0
    );
    // Slots come back as connections close.
    drop(idle);
    let mut answered = 0;
    for _ in 0..200 {
        let answer = raw(
            proxy.public,
            b"GET / HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n",
        )
        .await;
        answered = raw_status(&answer);
        if answered == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(answered, 200);
}

#[tokio::test]
async fn a_hoard_of_places_presented_again_does_not_push_an_honest_visitor_back() {
    let origin = origin(10, 1).await;
    let proxy = proxy(&origin)
        .admission(600, 1_000, "10m")
        .clients(BEHIND_A_BALANCER)
        .toml(
            "[queue]\npoll_min = \"200ms\"\npoll_max = \"1s\"\nabandon_after_polls = 1\n\
             abandon_min = \"1s\"\nreturn_grace = \"2s\"",
        )
        .start()
        .await;
    proxy.pause().await;
    let http = Http::new();
    // 300 places collected from 300 addresses (within each one's allowance), never polled.
    let mut hoard = Vec::new();
    for i in 0..300 {
        let r = newcomer(&http, &proxy, &format!("198.51.{}.{}", i / 200, i % 200)).await;
        assert_eq!(r.status, 200);
        hoard.push(r.set_cookie("waitroom").unwrap());
    }
    let mut honest = proxy.visitor(&http);
    let position = |r: crate::support::Reply| r.json()["position"].as_u64().unwrap();
    assert_eq!(position(honest.status().await.unwrap()), 301);
    // The hoard departs and is passed over; the honest visitor, polling, moves up.
    let started = Instant::now();
    while position(honest.status().await.unwrap()) > 1 {
        assert!(
            started.elapsed().as_secs() < 20,
            "the hoard was never passed over"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let present = |token: String| {
        let (http, url) = (http.clone(), proxy.url("/_waitroom/status"));
        async move {
            let cookie = format!("waitroom={token}");
            http.send(
                Method::GET,
                &url,
                None,
                &[("cookie", &cookie), ("accept", "application/json")],
            )
            .await
            .unwrap()
        }
    };
    // Half the hoard presented at once within the grace: the returned lane takes
    // at most half the calls, so the honest visitor is at most second.
    for token in &hoard[..150] {
        assert_eq!(present(token.clone()).await.status, 200);
    }
    let within = position(honest.status().await.unwrap());
    assert!(
        within <= 2,
        "honest visitor at {within} behind 150 returned places"
    );
    // Past the grace, the other half is worth nothing: new places at the back.
    let past = Instant::now();
    while past.elapsed().as_millis() < 3_000 {
        honest.status().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    for token in &hoard[150..] {
        let r = present(token.clone()).await;
        let renewed = r.set_cookie("waitroom").expect("a new place");
        assert_ne!(&renewed, token);
        assert!(position(r) > 1);
    }
    let after = position(honest.status().await.unwrap());
    assert_eq!(after, 1, "the honest visitor was pushed back to {after}");
}

//! Arrival order, not address, decides the place (issue 27, finding 1): people
//! behind one carrier's NAT keep the moment they arrived, and a farm that does no
//! work still gets no more than the per-address allowance. Clients are told apart
//! by `X-Forwarded-For`, believed from loopback as from a balancer in front.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use waitroom::pow::{leading_zero_bits, work};

use crate::support::{claims, origin, proxy, Http, Proxy, Reply};

/// An opening: everybody queued, called at 60 a minute.
const OPENING: &str =
    "[admission]\nnew_users_per_minute = 60\nmax_active_users = 10\nqueue_all = true\n";

/// The address the NAT's visitors share.
const NAT: &str = "203.0.113.7";

/// What one visitor went through to get a place.
#[derive(Debug)]
struct Placed {
    /// Their place number.
    place: u64,
    /// From their first request to holding a place.
    took: Duration,
    /// Answers `429`.
    refused: u32,
    /// The place's token.
    token: String,
}

/// `GET /register` from `address` with `cookies`, as a browser asks for a page.
async fn ask(http: &Http, proxy: &Proxy, address: &str, cookies: &str) -> Reply {
    let mut headers = vec![("x-forwarded-for", address), ("accept", "text/html")];
    if !cookies.is_empty() {
        headers.push(("cookie", cookies));
    }
    http.send(Method::GET, &proxy.url("/register"), None, &headers)
        .await
        .unwrap()
}

/// The challenge and difficulty of a kept place's page (what its script reads).
fn challenge_of(page: &str) -> (String, u32) {
    let c = page.split("var C = \"").nth(1).expect("a challenge page");
    let challenge = c.split('"').next().unwrap().to_owned();
    let d = c.split("D = ").nth(1).unwrap();
    let difficulty = d.split(',').next().unwrap().trim().parse().unwrap();
    (challenge, difficulty)
}

/// A browser arriving from `address`: asks for the page, does the work a kept
/// place asks for as the page's script would, and comes back; until it holds a
/// place in line.
async fn arrive(http: Http, proxy: &Proxy, address: String) -> Placed {
    let started = Instant::now();
    let mut refused = 0;
    let mut cookies = String::new();
    loop {
        let r = ask(&http, proxy, &address, &cookies).await;
        match (r.status.as_u16(), r.headers.get("waitroom-page")) {
            (429, _) => {
                refused += 1;
                let wait = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            (200, Some(kind)) if kind == "check" => {
                let kept = r.set_cookie("waitroom").expect("a kept place's cookie");
                assert_eq!(claims(&kept)["k"], "w", "a kept place");
                let (challenge, bits) = challenge_of(&r.text());
                let counter = tokio::task::spawn_blocking(move || {
                    (0u64..)
                        .find(|c| leading_zero_bits(&work(&challenge, *c)) >= bits)
                        .map(|c| format!("{challenge}.{c}"))
                })
                .await
                .unwrap()
                .unwrap();
                cookies = format!("waitroom={kept}; waitroom_pow={counter}");
            }
            (200, Some(kind)) if kind == "queue" => {
                let token = r.set_cookie("waitroom").expect("a place");
                let c = claims(&token);
                assert_eq!(c["k"], "q", "{c}");
                return Placed {
                    place: c["n"].as_u64().unwrap(),
                    took: started.elapsed(),
                    refused,
                    token,
                };
            }
            (status, kind) => panic!("unexpected {status} {kind:?}: {}", r.text()),
        }
    }
}

/// A proxy before `origin` for an opening, behind a balancer, with the default
/// per-address allowance.
async fn opening(origin: &crate::support::Origin) -> Arc<Proxy> {
    Arc::new(
        proxy(origin)
            .toml(OPENING)
            .clients("trusted_proxies = [\"127.0.0.1/32\"]")
            .start()
            .await,
    )
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_behind_one_address_keep_the_moment_they_arrived() {
    let origin = origin(10, 1).await;
    // The defaults (30 places a minute per address, 30 at once), a balancer in
    // front, everybody queued (an opening).
    let proxy = opening(&origin).await;
    let http = Http::new();
    let start = Instant::now();
    // 150 behind the NAT and 150 on their own, interleaved over 20 s.
    let mut visits = tokio::task::JoinSet::new();
    for i in 0..300u32 {
        let due = Duration::from_millis(u64::from(i) * 20_000 / 300);
        let address = if i % 2 == 0 {
            NAT.to_owned()
        } else {
            format!("198.51.{}.{}", i / 250, i % 250)
        };
        let (http, proxy) = (http.clone(), proxy.clone());
        visits.spawn(async move {
            tokio::time::sleep(due.saturating_sub(start.elapsed())).await;
            (i % 2 == 0, arrive(http, &proxy, address).await)
        });
    }
    let (mut nat, mut own) = (Vec::new(), Vec::new());
    while let Some(done) = visits.join_next().await {
        match done.unwrap() {
            (true, p) => nat.push(p),
            (false, p) => own.push(p),
        }
    }
    let (nat_median, own_median) = (
        median(nat.iter().map(|p| p.place).collect()),
        median(own.iter().map(|p| p.place).collect()),
    );
    let slowest = nat.iter().map(|p| p.took).max().unwrap();
    let refusals: u32 = nat.iter().map(|p| p.refused).sum();
    println!(
        "NAT median place {nat_median}, own {own_median}; slowest NAT {slowest:?}; refusals {refusals}"
    );
    assert!(
        nat_median as f64 <= own_median as f64 * 1.25,
        "behind one address: median place {nat_median} against {own_median}"
    );
    assert!(
        slowest <= Duration::from_secs(15),
        "the slowest behind the NAT held a place after {slowest:?}"
    );
    assert!(refusals <= 150, "{refusals} refusals for 150 visitors");
    assert!(
        proxy
            .metric("waitroom_kept_places_total{outcome=\"kept\"}")
            .await
            >= 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farm_that_does_no_work_gets_only_the_allowance() {
    let origin = origin(10, 1).await;
    let proxy = opening(&origin).await;
    let http = Http::new();
    let started = Instant::now();
    // 10,000 asks from one address, 32 at a time, none of them doing the work.
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (http, proxy) = (http.clone(), proxy.clone());
        workers.spawn(async move {
            let (mut places, mut kept, mut refused) = (0u64, 0u64, 0u64);
            for _ in 0..10_000 / 32 + 1 {
                let r = ask(&http, &proxy, "198.51.100.66", "").await;
                let kind = r.set_cookie("waitroom").map(|t| claims(&t)["k"].clone());
                match (r.status.as_u16(), kind.as_ref().and_then(|k| k.as_str())) {
                    (200, Some("q")) => places += 1,
                    (200, Some("w")) => kept += 1,
                    (429, None) => refused += 1,
                    other => panic!("unexpected {other:?}"),
                }
            }
            (places, kept, refused)
        });
    }
    let (mut places, mut kept, mut refused) = (0, 0, 0);
    while let Some(done) = workers.join_next().await {
        let (p, k, r) = done.unwrap();
        (places, kept, refused) = (places + p, kept + k, refused + r);
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let allowance = 30 + (30.0 * minutes).ceil() as u64 + 1;
    println!("farm: {places} places, {kept} kept, {refused} refused in {minutes:.2} min");
    assert!(
        places <= allowance,
        "{places} places past the allowance {allowance}"
    );
    assert!(kept > 0);
    // What the farm never earned counts nowhere: the line is its allowance long,
    // and an honest visitor is behind that alone.
    let length = proxy.state().await["queue_length"].as_u64().unwrap();
    assert!(length <= allowance, "the line is {length} long");
    let honest = arrive(http.clone(), &proxy, "192.0.2.44".into()).await;
    assert!(honest.took < Duration::from_secs(15));
    assert_eq!(honest.refused, 0);
}

#[tokio::test]
async fn without_javascript_a_kept_place_is_earned_as_the_allowance_comes_back() {
    let origin = origin(10, 1).await;
    let proxy = proxy(&origin)
        .toml(OPENING)
        .clients("trusted_proxies = [\"127.0.0.1/32\"]\nplaces_per_minute = 60\nplaces_burst = 1")
        .start()
        .await;
    let http = Http::new();
    let first = ask(&http, &proxy, NAT, "").await;
    assert_eq!(first.headers["waitroom-page"], "queue");
    // The second from the address: a place kept, and a page that comes back by
    // itself without JavaScript.
    let page = ask(&http, &proxy, NAT, "").await;
    assert_eq!(page.headers["waitroom-page"], "check");
    let html = page.text();
    assert!(
        html.contains("<noscript><meta http-equiv=\"refresh\""),
        "{html}"
    );
    let kept = page.set_cookie("waitroom").unwrap();
    let seq = claims(&kept)["n"].as_u64().unwrap();
    // A third arrives meanwhile (kept too, after the second).
    let third = ask(&http, &proxy, NAT, "").await;
    assert_eq!(third.headers["waitroom-page"], "check");
    let third_seq = claims(&third.set_cookie("waitroom").unwrap())["n"]
        .as_u64()
        .unwrap();
    assert!(seq < third_seq);
    // Back at once: the allowance (one a second) has not come back yet.
    let again = ask(&http, &proxy, NAT, &format!("waitroom={kept}")).await;
    assert_eq!(again.headers["waitroom-page"], "check");
    assert!(
        again.set_cookie("waitroom").is_none(),
        "the same kept place"
    );
    // Back after it has: the kept place is theirs, where it stood.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let earned = ask(&http, &proxy, NAT, &format!("waitroom={kept}")).await;
    assert_eq!(
        earned.headers["waitroom-page"],
        "queue",
        "{}",
        earned.text()
    );
    let place = claims(&earned.set_cookie("waitroom").unwrap());
    assert_eq!(
        (place["k"].as_str(), place["n"].as_u64()),
        (Some("q"), Some(seq))
    );
    assert_eq!(
        proxy
            .metric("waitroom_kept_places_total{outcome=\"earned_allowance\"}")
            .await,
        1.0
    );
}

/// The status JSON of the holder of `token`, asking from `address`.
async fn status_of(http: &Http, proxy: &Proxy, address: &str, token: &str) -> serde_json::Value {
    http.send(
        Method::GET,
        &proxy.url("/_waitroom/status"),
        None,
        &[
            ("x-forwarded-for", address),
            ("accept", "application/json"),
            ("cookie", &format!("waitroom={token}")),
        ],
    )
    .await
    .unwrap()
    .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lottery_counts_people_not_tickets() {
    let origin = origin(10, 1).await;
    // One a minute: at the opening only the burst is called, so the positions
    // after it show the drawn order.
    let proxy = Arc::new(
        proxy(&origin)
            .toml(
                "[admission]\nnew_users_per_minute = 1\nmax_active_users = 10000\n\
                 [queue]\nabandon_min = \"10m\"\npoll_max = \"5s\"\n",
            )
            .clients("trusted_proxies = [\"127.0.0.1/32\"]")
            .start()
            .await,
    );
    let http = Http::new();
    let later = waitroom::clock::format_rfc3339(waitroom::clock::wall_ms() + 3_600_000);
    let r = proxy
        .patch(serde_json::json!({ "opens_at": later, "lottery": true }))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    crate::support::wait_until("the lottery seen", Duration::from_secs(10), || async {
        let l = http
            .send(Method::GET, &proxy.url("/_waitroom/lottery"), None, &[])
            .await
            .unwrap();
        l.json()["lottery"] == true
    })
    .await;

    // 40 honest visitors, each on an address of their own: a ticket each.
    let mut honest = Vec::new();
    for i in 0..40 {
        let address = format!("198.51.100.{}", i + 1);
        let p = arrive(http.clone(), &proxy, address.clone()).await;
        honest.push((address, p));
    }
    // A script from one address collects what tickets it can, doing no work.
    let mut farmed = Vec::new();
    for _ in 0..300 {
        let r = ask(&http, &proxy, "192.0.2.66", "").await;
        if let Some(token) = r.set_cookie("waitroom") {
            if claims(&token)["k"] == "q" {
                farmed.push(token);
            }
        }
    }
    assert!(
        farmed.len() <= 2,
        "{} tickets without work from one address",
        farmed.len()
    );
    // 150 honest people behind one address, each doing the page's work.
    let mut nat = tokio::task::JoinSet::new();
    for _ in 0..150 {
        let (http, proxy) = (http.clone(), proxy.clone());
        nat.spawn(async move { arrive(http, &proxy, NAT.into()).await });
    }
    let mut behind_nat = Vec::new();
    while let Some(p) = nat.join_next().await {
        behind_nat.push(p.unwrap());
    }
    assert_eq!(behind_nat.len(), 150);

    // The opening: the draw.
    let now = waitroom::clock::format_rfc3339(waitroom::clock::wall_ms());
    let r = proxy.patch(serde_json::json!({ "opens_at": now })).await;
    assert_eq!(r.status, 200, "{}", r.text());
    crate::support::wait_until("the draw", Duration::from_secs(10), || async {
        let l = http
            .send(Method::GET, &proxy.url("/_waitroom/lottery"), None, &[])
            .await
            .unwrap();
        l.json()["seed"].is_string()
    })
    .await;
    let position = |s: &serde_json::Value| s["position"].as_u64().unwrap_or(0);
    let mut last_honest = 0;
    for (address, p) in &honest {
        let s = status_of(&http, &proxy, address, &p.token).await;
        last_honest = last_honest.max(position(&s));
    }
    let mut ahead = 0;
    for token in &farmed {
        let s = status_of(&http, &proxy, "192.0.2.66", token).await;
        if position(&s) < last_honest {
            ahead += 1;
        }
    }
    assert!(
        ahead <= 5,
        "{ahead} of the script's tickets ahead of the last honest visitor"
    );
    // Everybody behind the NAT holds a ticket in the draw.
    for p in &behind_nat {
        let s = status_of(&http, &proxy, NAT, &p.token).await;
        assert!(
            s["state"] == "queued" || s["state"] == "admitted",
            "behind the NAT, no ticket: {s}"
        );
    }
}

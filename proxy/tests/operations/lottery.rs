//! A lottery opening: 1,000 visitors who arrive before the opening are called in an
//! order uncorrelated with their arrival; 200 who arrive after it come behind all
//! of them, in arrival order; and the seed published after the opening (which
//! matches the commitment published before it) reproduces the order, also through
//! `waitroom verify-lottery`.

use std::collections::HashMap;
use std::time::Duration;

use crate::support::{claims, origin, proxy, wait_until, Http, Proxy, Visitor};
use sha2::{Digest, Sha256};

/// A newcomer's first status poll: the visitor and their place number.
async fn arrive(proxy: &Proxy, http: &Http) -> (Visitor, u64) {
    let mut v = proxy.visitor(http);
    let reply = v.status().await.unwrap();
    // Before the opening the room is `closed` (with `opens_at`), after it `queued`.
    let state = reply.json()["state"].clone();
    assert!(state == "queued" || state == "closed", "{}", reply.text());
    let seq = claims(v.cookie.as_ref().unwrap())["n"].as_u64().unwrap();
    (v, seq)
}

/// `GET /_waitroom/lottery`.
async fn published(proxy: &Proxy, http: &Http) -> serde_json::Value {
    http.send(
        http::Method::GET,
        &proxy.url("/_waitroom/lottery"),
        None,
        &[],
    )
    .await
    .unwrap()
    .json()
}

/// Spearman's rank correlation of `pairs` (both sides distinct).
fn spearman(pairs: &[(u64, u64)]) -> f64 {
    let rank = |values: Vec<u64>| -> HashMap<u64, f64> {
        let mut sorted = values;
        sorted.sort_unstable();
        sorted
            .into_iter()
            .enumerate()
            .map(|(i, v)| (v, i as f64))
            .collect()
    };
    let rx = rank(pairs.iter().map(|p| p.0).collect());
    let ry = rank(pairs.iter().map(|p| p.1).collect());
    let n = pairs.len() as f64;
    let d2: f64 = pairs.iter().map(|(x, y)| (rx[x] - ry[y]).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lottery_opening_draws_the_pre_queue_and_anybody_can_check_it() {
    let origin = origin(50, 0).await;
    // One a minute: at the opening only the burst (2) is called, so everybody
    // else's position shows the order they are called in.
    let proxy = proxy(&origin)
        .admission(1, 10_000, "10m")
        .toml("[queue]\nabandon_min = \"10m\"\npoll_max = \"5s\"")
        .start()
        .await;
    let http = Http::new();
    let later = waitroom::clock::format_rfc3339(waitroom::clock::wall_ms() + 3_600_000);
    let reply = proxy
        .patch(serde_json::json!({ "opens_at": later, "lottery": true }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    let mut early = Vec::new();
    for _ in 0..1_000 {
        early.push(arrive(&proxy, &http).await);
    }
    // The pre-queue's numbers are arrival order.
    assert!(early.windows(2).all(|w| w[0].1 < w[1].1));
    // The lottery is published once a snapshot has seen the settings (every few
    // pump rounds): the arrivals above may all come within one.
    wait_until(
        "the lottery to be published",
        Duration::from_secs(1),
        || async { published(&proxy, &http).await["lottery"] == true },
    )
    .await;
    let before = published(&proxy, &http).await;
    assert_eq!(before["lottery"], true, "{before}");
    assert!(
        before.get("seed").is_none(),
        "the seed is out before the opening: {before}"
    );

    // Bring the opening forward to two seconds from now; wait for the draw.
    let soon = waitroom::clock::wall_ms() / 1000 * 1000 + 2_000;
    let reply = proxy
        .patch(serde_json::json!({ "opens_at": waitroom::clock::format_rfc3339(soon) }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // The commitment for the new time (published within a pump round or so).
    let soon_text = waitroom::clock::format_rfc3339(soon);
    let mut commitment = serde_json::Value::Null;
    for _ in 0..50 {
        let p = published(&proxy, &http).await;
        if p["opens_at"] == soon_text.as_str() {
            commitment = p["commitment"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(commitment.is_string(), "no commitment for {soon_text}");
    let mut after = serde_json::Value::Null;
    for _ in 0..150 {
        after = published(&proxy, &http).await;
        if after.get("seed").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seed_hex = after["seed"]
        .as_str()
        .expect("the seed after the opening")
        .to_owned();
    assert_eq!(after["commitment"], commitment);
    let seed: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&seed_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert_eq!(serde_json::json!(hex(&Sha256::digest(&seed))), commitment);
    let (first, last) = (
        after["first_place"].as_u64().unwrap(),
        after["last_place"].as_u64().unwrap(),
    );
    assert_eq!((first, last), (early[0].1, early[999].1));

    let mut late = Vec::new();
    for _ in 0..200 {
        late.push(arrive(&proxy, &http).await);
    }

    // The order, recomputed here from the seed alone.
    let mut keyed: Vec<([u8; 32], u64)> = (first..=last)
        .map(|place| {
            let mut h = Sha256::new();
            h.update(&seed);
            h.update(place.to_be_bytes());
            (h.finalize().into(), place)
        })
        .collect();
    keyed.sort_unstable();
    let order: Vec<u64> = keyed.into_iter().map(|(_, p)| p).collect();
    let called_at: HashMap<u64, usize> = order.iter().enumerate().map(|(i, s)| (*s, i)).collect();

    // Where each early visitor stands now: admitted (the first two drawn) or a position.
    let mut standing = Vec::new();
    for (v, seq) in early.iter_mut() {
        let s = v.status().await.unwrap().json();
        let rank = match s["state"].as_str() {
            Some("admitted") => 0,
            Some("queued") => s["position"].as_u64().unwrap(),
            other => panic!("{other:?}: {s}"),
        };
        standing.push((*seq, rank));
    }
    let admitted: Vec<u64> = standing
        .iter()
        .filter(|(_, r)| *r == 0)
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(admitted.len(), 2, "{admitted:?}");
    assert!(
        admitted.iter().all(|s| called_at[s] < 2),
        "{admitted:?} were not drawn first"
    );
    // Everybody else stands exactly where the seed puts them.
    for (seq, position) in standing.iter().filter(|(_, r)| *r > 0) {
        assert_eq!(*position as usize, called_at[seq] - 1, "place {seq}");
    }
    let rho = spearman(
        &standing
            .iter()
            .map(|(s, _)| (*s, called_at[s] as u64))
            .collect::<Vec<_>>(),
    );
    assert!(
        rho.abs() < 0.1,
        "the draw follows arrival: Spearman ρ = {rho}"
    );

    // Those who came after the opening: behind all of them, in arrival order.
    let mut previous = 0;
    for (v, _) in late.iter_mut() {
        let s = v.status().await.unwrap().json();
        let position = s["position"].as_u64().unwrap();
        assert!(position > 998 && position > previous, "{s}");
        previous = position;
    }

    // The command line tells the same order, and checks the commitment.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_waitroom"))
            .args(["verify-lottery", "--seed", &seed_hex])
            .args(["--first", &first.to_string(), "--last", &last.to_string()])
            .args(["--commitment", commitment.as_str().unwrap()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(printed, order);
}

//! Acceptance: an altered, forged or expired token is never admitted, never reaches
//! the origin and never gets a 5xx.

use crate::support::{origin, proxy, Http, Reply};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, Header};
use waitroom::clock::Clock;
use waitroom::token::{Claims, KeyPair, Kind, Tokens};

fn assert_refused(label: &str, r: Result<Reply, String>) {
    let r = r.unwrap_or_else(|e| panic!("{label}: request failed: {e}"));
    assert!(!r.status.is_server_error(), "{label}: {}", r.status);
    assert!(!r.is_from_origin(), "{label}: reached the origin");
    assert_eq!(r.status, 200, "{label}");
    let token = r
        .set_cookie("waitroom")
        .unwrap_or_else(|| panic!("{label}: no new place"));
    let payload = token.split('.').nth(1).unwrap();
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims.k, Kind::Queue, "{label}: not treated as a newcomer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_and_forged_tokens_are_never_admitted() {
    let origin = origin(50, 1).await;
    let proxy = proxy(&origin).admission(600, 1_000, "10m").start().await;
    let http = Http::new();

    // A genuine admission, then the room pauses: only alive sessions get through.
    let mut v = proxy.visitor(&http);
    assert!(v.get("/").await.unwrap().is_from_origin());
    let genuine = v.cookie.clone().unwrap();
    proxy.pause().await;
    assert!(
        v.get("/").await.unwrap().is_from_origin(),
        "genuine token refused"
    );
    let served = origin.stats().await["requests"].as_u64().unwrap();

    let send = |token: String| {
        let proxy = &proxy;
        async move {
            let cookie = format!("waitroom={token}");
            proxy.get("/register", &[("cookie", &cookie)]).await
        }
    };

    // Every byte position, replaced by characters of every class.
    let bytes = genuine.as_bytes();
    for i in 0..bytes.len() {
        for c in [b'A', b'z', b'0', b'-', b'_', b'.'] {
            if bytes[i] == c {
                continue;
            }
            let mut altered = bytes.to_vec();
            altered[i] = c;
            let altered = String::from_utf8(altered).unwrap();
            assert_refused(&format!("byte {i} -> {}", c as char), send(altered).await);
        }
    }
    // Truncated, extended.
    assert_refused(
        "truncated",
        send(genuine[..genuine.len() - 1].to_owned()).await,
    );
    assert_refused("extended", send(format!("{genuine}A")).await);

    // alg: none, with the genuine payload.
    let payload = genuine.split('.').nth(1).unwrap();
    let kid = proxy.keys.signing().kid().to_owned();
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#.to_owned(),
        format!(r#"{{"alg":"none","typ":"JWT","kid":"{kid}"}}"#),
    ] {
        let h = URL_SAFE_NO_PAD.encode(header);
        assert_refused("alg none", send(format!("{h}.{payload}.")).await);
        assert_refused("alg none + sig", send(format!("{h}.{payload}.AAAA")).await);
    }
    // HMAC keyed with the public key (the classic confusion), and another key under our kid.
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    let public = proxy.keys.jwks()["keys"][0]["x"]
        .as_str()
        .unwrap()
        .to_owned();
    let confused = jsonwebtoken::encode(
        &hs,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(public.as_bytes()),
    )
    .unwrap();
    assert_refused("hs256", send(confused).await);
    let mut ed = Header::new(Algorithm::EdDSA);
    ed.kid = Some(kid);
    let other = KeyPair::generate();
    let foreign = jsonwebtoken::encode(&ed, &claims, other.encoding()).unwrap();
    assert_refused("foreign key, our kid", send(foreign).await);
    let foreign_ring = waitroom::token::Keyring::new(other, Vec::new());
    let foreign = Tokens::new(foreign_ring, Clock::system(), 3600, 3600).issue(
        Kind::Admission,
        claims.l,
        claims.n,
    );
    assert_refused("foreign key", send(foreign).await);

    // Expired: genuinely signed by the proxy's key, two days ago.
    let two_days_ago = Clock::system().now_ms() - 2 * 86_400_000;
    let old = Tokens::new(
        proxy.keys.clone(),
        Clock::starting_at(two_days_ago),
        3600,
        3600,
    );
    assert_refused(
        "expired admission",
        send(old.issue(Kind::Admission, claims.l, claims.n)).await,
    );
    assert_refused(
        "expired place",
        send(old.issue(Kind::Queue, claims.l, 1)).await,
    );

    // Genuine and unexpired, but for another line (say, before a restart that lost
    // the line): the number would be someone else's place here.
    let now = Tokens::new(proxy.keys.clone(), Clock::system(), 3600, 3600);
    assert_refused(
        "other line",
        send(now.issue(Kind::Admission, claims.l ^ 1, claims.n)).await,
    );
    assert_refused(
        "other line place",
        send(now.issue(Kind::Queue, claims.l ^ 1, 1)).await,
    );

    // Garbage.
    for (label, token) in [
        ("empty", String::new()),
        ("5,000 bytes", "x".repeat(5_000)),
        ("dots", "...".to_owned()),
        ("base64 noise", "eyJhbGciOiJFZERTQSJ9.e30.AAAA".to_owned()),
        ("quotes", "\"abc\"".to_owned()),
    ] {
        assert_refused(label, send(token).await);
    }

    // None of it reached the origin; the refusals were counted.
    assert_eq!(origin.stats().await["requests"].as_u64().unwrap(), served);
    let metrics = proxy.metrics().await;
    for reason in ["malformed", "signature", "algorithm", "expired"] {
        assert!(
            metrics.contains(&format!(
                "waitroom_tokens_refused_total{{reason=\"{reason}\"}}"
            )),
            "no refusals counted for {reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_token_keeps_its_place_across_reloads() {
    let origin = origin(50, 1).await;
    let proxy = proxy(&origin).admission(600, 1_000, "10m").start().await;
    proxy.patch(serde_json::json!({"paused": true})).await;
    let http = Http::new();
    let mut first = proxy.visitor(&http);
    let mut second = proxy.visitor(&http);
    first.get("/").await.unwrap();
    second.get("/").await.unwrap();
    // Reloads and a "closed tab" (a fresh jar with the same cookie) keep the place.
    for _ in 0..3 {
        let s = second.status().await.unwrap().json();
        assert_eq!(
            (s["position"].as_u64(), s["state"].as_str()),
            (Some(2), Some("paused"))
        );
        second.get("/some/page").await.unwrap();
    }
    let mut reopened = proxy.visitor(&http);
    reopened.cookie = second.cookie.clone();
    assert_eq!(reopened.status().await.unwrap().json()["position"], 2);
    assert_eq!(proxy.state().await["queue_length"], 2);
    let _ = first;
}

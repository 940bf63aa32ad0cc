//! Commands from the origin (`waitroom-command` response header): `release` gives
//! the slot to the next in line at once, `revoke` also deletes the admission; the
//! header never reaches the browser. In memory and in Redis.

use crate::support::redis::RedisServer;
use crate::support::{origin, proxy, releasing_origin, Http, Origin, Proxy, Visitor};
use http::Method;

/// One session at a time, long enough that nobody gets in by its lapsing.
async fn one_at_a_time(origin: &Origin, redis: Option<&RedisServer>) -> Proxy {
    let builder = proxy(origin).admission(6_000, 1, "10m");
    match redis {
        Some(r) => builder.redis(&r.url(), "commands").start().await,
        None => builder.start().await,
    }
}

/// `first` admitted, `second` waiting behind them.
async fn one_in_one_waiting(proxy: &Proxy, http: &Http) -> (Visitor, Visitor) {
    let mut first = proxy.visitor(http);
    assert!(first.get("/").await.unwrap().is_from_origin());
    let mut second = proxy.visitor(http);
    let reply = second.status().await.unwrap();
    assert_eq!(reply.json()["state"], "queued", "{}", reply.text());
    (first, second)
}

async fn release_lets_the_next_in(redis: Option<&RedisServer>) {
    let origin = releasing_origin().await;
    let proxy = one_at_a_time(&origin, redis).await;
    let http = Http::new();
    let (first, mut second) = one_in_one_waiting(&proxy, &http).await;
    // A few polls: still waiting while the first is on the form.
    assert!(!second.admitted_within(3).await);

    // The first registers; the site answers with `release`.
    let cookie = format!("waitroom={}", first.cookie.as_ref().unwrap());
    let reply = http
        .send(
            Method::POST,
            &proxy.url("/register"),
            Some("nrn=85073003361&email=a%40example.org".into()),
            &[
                ("cookie", &cookie),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.is_from_origin());
    assert!(
        reply.headers.get("waitroom-command").is_none(),
        "the command reached the browser: {:?}",
        reply.headers
    );
    // The session would last 10 minutes: being let in now is the release's doing.
    assert!(
        second.admitted_within(30).await,
        "the next visitor was not let in after the release"
    );
    assert_eq!(
        proxy
            .metric("waitroom_sessions_ended_total{command=\"release\"}")
            .await,
        1.0
    );
    let state = proxy.state().await;
    assert_eq!(state["active_users"], 1, "{state}");
}

#[tokio::test]
async fn release_lets_the_next_visitor_in_at_once_in_memory() {
    release_lets_the_next_in(None).await;
}

#[tokio::test]
async fn release_lets_the_next_visitor_in_at_once_in_redis() {
    let redis = RedisServer::start();
    release_lets_the_next_in(Some(&redis)).await;
}

async fn revoke_ends_the_admission(redis: Option<&RedisServer>) {
    let origin = origin(50, 0).await;
    let proxy = one_at_a_time(&origin, redis).await;
    let http = Http::new();
    let (mut first, mut second) = one_in_one_waiting(&proxy, &http).await;
    let admission = first.cookie.clone().unwrap();

    let reply = first.get("/__revoke").await.unwrap();
    assert!(reply.is_from_origin());
    assert!(reply.headers.get("waitroom-command").is_none());
    let deleted = reply
        .headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("waitroom=;") && c.contains("Max-Age=0"));
    assert!(
        deleted,
        "the admission cookie is not deleted: {:?}",
        reply.headers
    );
    assert!(second.admitted_within(30).await);

    // The old admission, presented again, is no admission: the room is full
    // again, so its holder takes a place in line.
    first.cookie = Some(admission);
    let reply = first.status().await.unwrap();
    assert_eq!(reply.json()["state"], "queued", "{}", reply.text());
    assert_eq!(
        proxy
            .metric("waitroom_sessions_ended_total{command=\"revoke\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn revoke_ends_the_admission_in_memory() {
    revoke_ends_the_admission(None).await;
}

#[tokio::test]
async fn revoke_ends_the_admission_in_redis() {
    let redis = RedisServer::start();
    revoke_ends_the_admission(Some(&redis)).await;
}

#[tokio::test]
async fn a_command_on_a_route_that_bypasses_the_line_is_removed_and_ignored() {
    let origin = origin(50, 0).await;
    let proxy = proxy(&origin)
        .admission(6_000, 1, "10m")
        .toml("[routes]\nbypass = [\"/__\"]\n")
        .start()
        .await;
    let http = Http::new();
    let reply = http
        .send(Method::GET, &proxy.url("/__release"), None, &[])
        .await
        .unwrap();
    assert!(reply.is_from_origin());
    assert!(reply.headers.get("waitroom-command").is_none());
    assert_eq!(
        proxy
            .metric("waitroom_sessions_ended_total{command=\"release\"}")
            .await,
        0.0
    );
}

//! Events: a pre-queue with a countdown and the event's page text, an opening at
//! the event's own capacity, an end that closes the room; scheduled from the
//! command line, shared through the store, cancelled with the room's settings back.

use std::future::Future;
use std::time::Duration;

use http::Method;

use crate::support::{self, origin, Http, Proxy};

/// Polls `what` until it holds (the event moves on the wall clock).
async fn until<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    support::wait_until(what, Duration::from_secs(10), check).await
}

async fn event(proxy: &Proxy) -> serde_json::Value {
    proxy
        .admin_call(Method::GET, "/admin/event", None)
        .await
        .json()["event"]
        .clone()
}

/// `PUT /admin/event` with `event`.
async fn put_event(proxy: &Proxy, event: serde_json::Value) -> support::Reply {
    proxy
        .admin_call(Method::PUT, "/admin/event", Some(event.to_string()))
        .await
}

async fn cli(proxy: &Proxy, args: Vec<String>) -> (bool, String, String) {
    let url = format!("http://{}", proxy.admin);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::admin_cli::admin(&url, &args)
    })
    .await
    .unwrap()
}

/// The settings an event changes: rate, capacity, lottery, an opening scheduled.
async fn settings_of(proxy: &Proxy) -> (u64, u64, bool, bool) {
    let s = proxy.state().await;
    (
        s["new_users_per_minute"].as_u64().unwrap(),
        s["max_active_users"].as_u64().unwrap(),
        s["lottery"].as_bool().unwrap(),
        s["opens_at"].is_string(),
    )
}

fn at(from_now_ms: u64) -> String {
    waitroom::clock::format_rfc3339(waitroom::clock::wall_ms() + from_now_ms)
}

#[tokio::test]
async fn an_event_pre_queues_opens_at_its_own_capacity_and_closes_the_room_at_its_end() {
    let origin = origin(100, 1).await;
    let proxy = support::proxy(&origin)
        .admission(600, 1, "10m")
        .start()
        .await;
    let http = Http::new();
    let (ok, out, err) = cli(
        &proxy,
        [
            "event",
            "set",
            "--prequeue-at",
            &at(1_500),
            "--opens-at",
            &at(3_500),
            "--ends-at",
            &at(6_000),
            "--capacity",
            "50",
            "--message",
            "Ticket sale: 2,000 seats",
            "--then",
            "close",
        ]
        .map(str::to_owned)
        .to_vec(),
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("\"phase\": \"scheduled\""), "{out}");

    // Before the pre-queue the room runs as it did: one at a time.
    let mut early = proxy.visitor(&http);
    assert!(early.get("/register").await.unwrap().is_from_origin());
    assert!(!proxy
        .visitor(&http)
        .get("/")
        .await
        .unwrap()
        .is_from_origin());

    // The pre-queue: everybody takes a place, with a countdown and the text.
    until("the pre-queue", || async {
        event(&proxy).await["phase"] == "pre_queue"
    })
    .await;
    let mut fan = proxy.visitor(&http);
    let page = fan.get("/tickets").await.unwrap();
    assert!(!page.is_from_origin());
    let html = page.text();
    assert!(html.contains("Ticket sale: 2,000 seats"), "{html}");
    assert!(html.contains("Opens in"), "a countdown: {html}");
    let status = fan.status().await.unwrap().json();
    assert_eq!(status["state"], "closed", "{status}");
    assert!(status["opens_at"].is_string(), "{status}");
    assert_eq!(status["message"], "Ticket sale: 2,000 seats");
    assert_eq!(
        proxy.state().await["max_active_users"],
        50,
        "its own capacity"
    );

    // The opening lets the pre-queue in at the event's capacity.
    assert!(fan.admitted_within(20).await, "admitted after the opening");
    until("the opening", || async {
        event(&proxy).await["phase"] == "open"
    })
    .await;

    // The end: the room's own settings back, and closed.
    until("the end", || async {
        event(&proxy).await["phase"] == "ended"
    })
    .await;
    let state = proxy.state().await;
    assert_eq!(
        (
            state["closed"].as_bool(),
            state["max_active_users"].as_u64(),
            state["opens_at"].is_null()
        ),
        (Some(true), Some(1), true),
        "{state}"
    );
    let late = proxy.visitor(&http).status().await.unwrap().json();
    assert_eq!(late["state"], "closed");
    assert!(late.get("message").is_none(), "the event is over: {late}");
}

#[tokio::test]
async fn cancelling_an_event_under_way_gives_the_room_its_settings_back() {
    let origin = origin(100, 1).await;
    let proxy = support::proxy(&origin)
        .admission(600, 1, "10m")
        .start()
        .await;
    let scheduled = put_event(
        &proxy,
        serde_json::json!({
            "opens_at": at(3_600_000),
            "max_active_users": 500,
            "new_users_per_minute": 60,
            "lottery": true,
        }),
    )
    .await;
    assert_eq!(scheduled.status, 200, "{}", scheduled.text());
    until("the pre-queue", || async {
        event(&proxy).await["phase"] == "pre_queue"
    })
    .await;
    assert_eq!(settings_of(&proxy).await, (60, 500, true, true));
    // Another event cannot replace one under way.
    let refused = put_event(&proxy, serde_json::json!({ "opens_at": at(60_000) })).await;
    assert_eq!(refused.status, 409, "{}", refused.text());
    let bad = put_event(&proxy, serde_json::json!({ "prequeue_at": at(60_000) })).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("opens_at: missing"), "{}", bad.text());

    let cancelled = proxy.admin_call(Method::DELETE, "/admin/event", None).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text());
    assert!(event(&proxy).await.is_null());
    assert_eq!(settings_of(&proxy).await, (600, 1, false, false));
    let http = Http::new();
    assert!(
        proxy
            .visitor(&http)
            .get("/")
            .await
            .unwrap()
            .is_from_origin(),
        "open as before"
    );
}

#[tokio::test]
async fn with_redis_every_instance_runs_the_same_event_once() {
    let redis = support::redis::RedisServer::start();
    let origin = origin(100, 1).await;
    let start = || {
        support::proxy(&origin)
            .redis(&redis.url(), "events")
            .admission(600, 10, "10m")
            .start()
    };
    let (a, b) = (start().await, start().await);
    let scheduled = put_event(
        &a,
        serde_json::json!({
            "opens_at": at(3_600_000),
            "max_active_users": 7,
            "message": "Bientôt",
        }),
    )
    .await;
    assert_eq!(scheduled.status, 200, "{}", scheduled.text());
    until("the pre-queue on the other instance", || async {
        event(&b).await["phase"] == "pre_queue"
    })
    .await;
    assert_eq!(b.state().await["max_active_users"], 7);
    // Both instances show the event's text.
    let http = Http::new();
    for proxy in [&a, &b] {
        until("the text on every instance", || async {
            proxy.visitor(&http).status().await.unwrap().json()["message"] == "Bientôt"
        })
        .await;
    }
    let cancelled = b.admin_call(Method::DELETE, "/admin/event", None).await;
    assert_eq!(cancelled.status, 200);
    assert!(event(&a).await.is_null());
    assert_eq!(a.state().await["max_active_users"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_notice_goes_up_live_in_each_language_and_comes_down() {
    let origin = origin(10, 1).await;
    let p = support::proxy(&origin).start().await;
    p.pause().await;
    let http = Http::new();
    let page = |lang: &'static str| {
        let (http, url) = (http.clone(), p.url("/"));
        async move {
            http.send(
                Method::GET,
                &url,
                None,
                &[("accept", "text/html"), ("accept-language", lang)],
            )
            .await
            .unwrap()
            .text()
        }
    };
    let bad = p
        .admin_call(
            Method::PUT,
            "/admin/notice",
            Some(r#"{"notice": {"German": "x"}}"#.into()),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("not a language code"), "{}", bad.text());
    let up = p
        .admin_call(
            Method::PUT,
            "/admin/notice",
            Some(r#"{"notice": {"de": "Die Öffnung ist auf 10 Uhr verschoben.", "en": "The opening moved to 10:00."}}"#.into()),
        )
        .await;
    assert_eq!(up.status, 200, "{}", up.text());
    assert!(page("de")
        .await
        .contains("Die Öffnung ist auf 10 Uhr verschoben."));
    // A language the operator did not write in gets the English text.
    assert!(page("fr").await.contains("The opening moved to 10:00."));
    // The page's polls carry it too (in the page's language), so an open page
    // shows a change without a reload.
    let mut v = p.visitor(&http);
    v.get("/").await.unwrap();
    let status = v.status().await.unwrap().json();
    assert_eq!(status["notice"], "The opening moved to 10:00.", "{status}");
    let read = p
        .admin_call(Method::GET, "/admin/notice", None)
        .await
        .json();
    assert_eq!(
        read["notice"]["de"],
        "Die Öffnung ist auf 10 Uhr verschoben."
    );
    let down = p.admin_call(Method::DELETE, "/admin/notice", None).await;
    assert_eq!(down.status, 200);
    assert!(!page("de").await.contains("Die Öffnung"));
    assert!(v.status().await.unwrap().json().get("notice").is_none());
}

//! Several rooms in one process (`[[rooms]]`): each path prefix its own line, rate,
//! capacity, page and cookie; the admin API steers each by name.

use http::Method;

use crate::support::{self, origin, Http};

/// The tickets room's own page: nothing like the default one.
const TICKETS_PAGE: &str = "<!doctype html><html lang=\"{{ lang }}\"><title>Tickets</title>\
    <h1>Ticket sale queue</h1><p>{{ headline }}</p>\
    <script>fetch({{ status_url }})</script></html>";

#[tokio::test]
async fn two_rooms_on_different_paths_keep_separate_lines_rates_and_pages() {
    let origin = origin(100, 1).await;
    let dir = std::env::temp_dir().join(format!("waitroom-rooms-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let template = dir.join("tickets.html");
    std::fs::write(&template, TICKETS_PAGE).unwrap();
    // The default room lets many in quickly; the tickets room one a minute, one
    // at a time.
    let proxy = support::proxy(&origin)
        .admission(6000, 1000, "10m")
        .toml(&format!(
            "[[rooms]]\nname = \"tickets\"\npaths = [\"/tickets\"]\n\
             [rooms.admission]\nnew_users_per_minute = 1\nburst = 1\nmax_active_users = 1\n\
             [rooms.page]\ntemplate = \"{}\"\n",
            template.display()
        ))
        .start()
        .await;
    let http = Http::new();

    // The first buyer goes in; the second waits in the tickets line, on its page.
    let mut buyer = proxy.visitor(&http).in_room("tickets");
    let first = buyer.get("/tickets/buy").await.unwrap();
    assert!(first.is_from_origin(), "{}", first.text());
    assert!(
        first.set_cookie("waitroom_tickets").is_some() && first.set_cookie("waitroom").is_none(),
        "the room's own cookie"
    );
    let mut second = proxy.visitor(&http).in_room("tickets");
    let page = second.get("/tickets/buy").await.unwrap();
    assert!(!page.is_from_origin());
    let html = page.text();
    assert!(html.contains("<h1>Ticket sale queue</h1>"), "{html}");
    assert!(html.contains("You are number 1 in line."), "{html}");
    assert!(
        html.contains("fetch(\"/_waitroom/status?room=tickets\")"),
        "the page asks about its own line: {html}"
    );
    let status = second.status().await.unwrap().json();
    assert_eq!(
        (status["state"].as_str(), status["position"].as_u64()),
        (Some("queued"), Some(1)),
        "{status}"
    );

    // The rest of the site is another line: its own rate, capacity and page.
    for _ in 0..5 {
        let mut v = proxy.visitor(&http);
        let r = v.get("/register").await.unwrap();
        assert!(
            r.is_from_origin(),
            "the default room is not full: {}",
            r.text()
        );
        assert!(v.cookie.is_some());
    }
    // A place in one line is nothing in the other.
    let mut other = proxy.visitor(&http);
    other.cookie = second.cookie.clone();
    let r = other.get("/register").await.unwrap();
    assert!(r.is_from_origin());
    assert!(
        !second.admitted_within(3).await,
        "a minute's wait in the tickets line is not shortened by the other line"
    );

    // The admin API steers each room by name.
    let tickets = proxy
        .admin_call(Method::GET, "/admin/state?room=tickets", None)
        .await
        .json();
    let default = proxy.state().await;
    assert_eq!(
        (
            tickets["new_users_per_minute"].as_u64(),
            tickets["max_active_users"].as_u64(),
            tickets["queue_length"].as_u64(),
            tickets["active_users"].as_u64()
        ),
        (Some(1), Some(1), Some(1), Some(1)),
        "{tickets}"
    );
    assert_eq!(
        (
            default["new_users_per_minute"].as_u64(),
            default["queue_length"].as_u64(),
            default["active_users"].as_u64()
        ),
        (Some(6000), Some(0), Some(6)),
        "{default}"
    );
    let raised = proxy
        .admin_call(
            Method::PATCH,
            "/admin/settings?room=tickets",
            Some(r#"{"max_active_users": 5, "new_users_per_minute": 600}"#.into()),
        )
        .await;
    assert_eq!(raised.status, 200, "{}", raised.text());
    assert!(
        second.admitted_within(10).await,
        "the tickets room's new limits let the second buyer in"
    );
    // The command line too: `waitroom admin --room tickets pause`.
    let url = format!("http://{}", proxy.admin);
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        crate::admin_cli::admin(&url, &["--room", "tickets", "pause"])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("\"paused\": true"), "{out}");
    assert_eq!(
        proxy.state().await["paused"],
        false,
        "the other room runs on"
    );
    let mut third = proxy.visitor(&http).in_room("tickets");
    assert!(
        !third.get("/tickets").await.unwrap().is_from_origin(),
        "paused"
    );
    assert!(proxy
        .visitor(&http)
        .get("/")
        .await
        .unwrap()
        .is_from_origin());

    let unknown = proxy
        .admin_call(Method::GET, "/admin/state?room=nope", None)
        .await;
    assert_eq!(unknown.status, 404);
    let rooms = proxy
        .admin_call(Method::GET, "/admin/rooms", None)
        .await
        .json();
    let names: Vec<_> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["default", "tickets"]);
    assert_eq!(rooms["rooms"][1]["state"]["paused"], true, "{rooms}");
    // The gauges follow within a few pump rounds.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = proxy.metrics().await;
        if metrics.contains("waitroom_setting{name=\"paused\",room=\"tickets\"} 1") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        metrics.contains("waitroom_setting{name=\"paused\",room=\"tickets\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("waitroom_origin_breaker{room="),
        "the origin is the process's: {metrics}"
    );
    // The room's history charts its own line and the (one) origin's answers.
    let history = proxy
        .admin_call(Method::GET, "/admin/history?room=tickets", None)
        .await
        .json();
    let samples = history["samples"].as_array().unwrap();
    assert!(
        samples.iter().any(|s| s["origin_p50_ms"].is_number()),
        "{history}"
    );
    assert!(
        metrics.contains("waitroom_setting{name=\"paused\"} 0"),
        "{metrics}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn with_redis_each_room_is_one_line_shared_by_every_instance() {
    let redis = crate::support::redis::RedisServer::start();
    let origin = origin(100, 1).await;
    let rooms = "[[rooms]]\nname = \"tickets\"\npaths = [\"/tickets\"]\n\
                 [rooms.admission]\nmax_active_users = 1\n";
    let start = || {
        support::proxy(&origin)
            .redis(&redis.url(), "portal")
            .admission(600, 1000, "10m")
            .toml(rooms)
            .start()
    };
    let (a, b) = (start().await, start().await);
    // Each instance lists both (the console shows them).
    let mut listed = serde_json::Value::Null;
    for _ in 0..100 {
        listed = a
            .admin_call(Method::GET, "/admin/instances", None)
            .await
            .json();
        if listed["instances"].as_array().is_some_and(|l| l.len() == 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let list = listed["instances"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{listed}");
    assert_eq!(list[0]["this"], true);
    assert_eq!(list[0]["admin"], a.admin.to_string());
    assert_eq!(list[1]["admin"], b.admin.to_string(), "{listed}");
    let http = Http::new();
    let mut first = a.visitor(&http).in_room("tickets");
    assert!(first.get("/tickets").await.unwrap().is_from_origin());
    // The tickets room is full on every instance; the default room is not.
    let mut second = b.visitor(&http).in_room("tickets");
    assert!(!second.get("/tickets/x").await.unwrap().is_from_origin());
    assert!(b
        .visitor(&http)
        .get("/register")
        .await
        .unwrap()
        .is_from_origin());
    for proxy in [&a, &b] {
        let tickets = proxy
            .admin_call(Method::GET, "/admin/state?room=tickets", None)
            .await
            .json();
        assert_eq!(
            (
                tickets["queue_length"].as_u64(),
                tickets["active_users"].as_u64()
            ),
            (Some(1), Some(1)),
            "{tickets}"
        );
        assert_eq!(proxy.state().await["queue_length"], 0);
    }
    // A change on one instance is the room's on both.
    let raised = b
        .admin_call(
            Method::PATCH,
            "/admin/settings?room=tickets",
            Some(r#"{"max_active_users": 2}"#.into()),
        )
        .await;
    assert_eq!(raised.status, 200);
    let mut waiting = a.visitor(&http).in_room("tickets");
    waiting.cookie = second.cookie.clone();
    assert!(
        waiting.admitted_within(10).await,
        "let in through the other instance"
    );
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("{waitroom:portal.tickets}:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "the room's own keys");
}

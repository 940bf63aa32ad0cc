//! An admission belongs to its room (issue 26, finding 2): no path form takes one
//! room's admission into another room's pages, a token is worthless under another
//! room's cookie, and hosts route alike in any case, with a trailing dot or a port.

use http::Method;

use crate::support::nginx::{self, FORM};
use crate::support::{raw, raw_status, Http, ProxyBuilder};

/// nginx behind three rooms: the default one paused, `tickets` (on `/tickets`)
/// open, `shop` (the whole host `shop.example`) paused.
async fn three_rooms() -> (nginx::Nginx, crate::support::Proxy) {
    let site = nginx::site().await;
    let proxy = ProxyBuilder::to(site.addr)
        .admission(600, 100, "10m")
        .toml(
            "[[rooms]]\nname = \"tickets\"\npaths = [\"/tickets\"]\n\
             [[rooms]]\nname = \"shop\"\nhosts = [\"shop.example\"]\npaths = [\"/\"]\n",
        )
        .start()
        .await;
    for room in ["default", "shop"] {
        let r = proxy
            .admin_call(
                Method::PATCH,
                &format!("/admin/settings?room={room}"),
                Some(serde_json::json!({"paused": true}).to_string()),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    (site, proxy)
}

/// `GET path` with `headers` as raw bytes on its own connection.
async fn get(proxy: &crate::support::Proxy, path: &str, headers: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n");
    raw(proxy.public, request.as_bytes()).await
}

/// The name of the cookie an answer sets (the room's), if any.
fn cookie_set(answer: &str) -> Option<String> {
    answer.lines().find_map(|l| {
        let v = l
            .strip_prefix("set-cookie: ")
            .or(l.strip_prefix("Set-Cookie: "))?;
        Some(v.split('=').next()?.to_owned())
    })
}

#[tokio::test]
async fn one_rooms_admission_opens_no_other_rooms_page_by_any_path() {
    let (_site, proxy) = three_rooms().await;
    let http = Http::new();
    let mut buyer = proxy.visitor(&http).in_room("tickets");
    let first = buyer.get("/tickets/buy").await.unwrap();
    assert!(first.text().contains(FORM), "the tickets room is open");
    let token = buyer.cookie.clone().unwrap();
    let tickets = format!("Host: register.example\r\nCookie: waitroom_tickets={token}\r\n");
    let sanity = get(&proxy, "/tickets/buy", &tickets).await;
    assert!(sanity.contains(FORM), "{sanity}");
    for path in [
        "/tickets/../register",
        "/tickets/%2e%2e/register",
        "/tickets/.%2E/register",
        "/tickets//../register",
        "/tickets/./../register",
        "/tickets/..;/register",
        "/tickets/..%2fregister",
        "/tickets%2f..%2fregister",
        "/tickets/..%5cregister",
        "/%74ickets/../register",
        "/tickets/../../register",
    ] {
        let answer = get(&proxy, path, &tickets).await;
        assert!(!answer.contains(FORM), "{path}: {answer}");
        assert!(raw_status(&answer) < 500, "{path}: {answer}");
    }
    // The token under the default room's cookie, or under the shop's, is nobody's.
    for (host, cookie) in [
        ("register.example", "waitroom"),
        ("shop.example", "waitroom_shop"),
    ] {
        let headers = format!("Host: {host}\r\nCookie: {cookie}={token}\r\n");
        let answer = get(&proxy, "/register", &headers).await;
        assert!(!answer.contains(FORM), "{cookie}: {answer}");
    }
}

#[tokio::test]
async fn hosts_route_alike_in_any_case_with_a_trailing_dot_or_a_port() {
    let (_site, proxy) = three_rooms().await;
    for host in [
        "shop.example",
        "SHOP.EXAMPLE",
        "Shop.Example.",
        "shop.example:8080",
        "shop.example.:80",
    ] {
        let answer = get(&proxy, "/basket", &format!("Host: {host}\r\n")).await;
        assert_eq!(
            cookie_set(&answer).as_deref(),
            Some("waitroom_shop"),
            "Host: {host}: {answer}"
        );
    }
    for host in ["register.example", "shop.example.org", "www.shop.example"] {
        let answer = get(&proxy, "/basket", &format!("Host: {host}\r\n")).await;
        assert_eq!(
            cookie_set(&answer).as_deref(),
            Some("waitroom"),
            "Host: {host}: {answer}"
        );
    }
    // `?room=` names a room that exists, or is a 404.
    let answer = get(&proxy, "/_waitroom/status?room=nope", "Host: x\r\n").await;
    assert_eq!(raw_status(&answer), 404, "{answer}");
}

#[tokio::test]
async fn a_room_named_on_an_instance_without_rooms_is_not_found() {
    let site = nginx::site().await;
    let proxy = ProxyBuilder::to(site.addr).start().await;
    let status = |answer: &str| raw_status(answer);
    let named = get(&proxy, "/_waitroom/status?room=tickets", "Host: x\r\n").await;
    assert_eq!(status(&named), 404, "{named}");
    let default = get(&proxy, "/_waitroom/status?room=default", "Host: x\r\n").await;
    assert_eq!(status(&default), 200, "{default}");
    let plain = get(&proxy, "/_waitroom/status", "Host: x\r\n").await;
    assert_eq!(status(&plain), 200, "{plain}");
}

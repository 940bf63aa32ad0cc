//! `waitroom admin …` changes the settings of a running instance, reading the
//! admin URL and token from flags or the environment.

use std::process::Command;

use crate::support::{origin, proxy, ADMIN_TOKEN};

const BIN: &str = env!("CARGO_BIN_EXE_waitroom");

/// Runs `waitroom admin ARGS` against `url` with the token in the environment:
/// (success, standard output, standard error).
pub(crate) fn admin(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("admin")
        .args(args)
        .env("WAITROOM_ADMIN_URL", url)
        .env("WAITROOM_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_change_a_running_instance() {
    let origin = origin(50, 0).await;
    let proxy = proxy(&origin).admission(600, 200, "10m").start().await;
    let url = format!("http://{}", proxy.admin);
    let run = |args: &'static [&'static str]| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || admin(&url, args))
    };

    let (ok, out, err) = run(&["set", "rate=60", "capacity=5"]).await.unwrap();
    assert!(ok, "{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["new_users_per_minute"], 60, "{out}");
    let state = proxy.state().await;
    assert_eq!(
        (
            state["new_users_per_minute"].as_u64(),
            state["max_active_users"].as_u64()
        ),
        (Some(60), Some(5))
    );

    let (ok, _, err) = run(&["pause"]).await.unwrap();
    assert!(ok, "{err}");
    assert_eq!(proxy.state().await["paused"], true);
    let (ok, _, err) = run(&["resume"]).await.unwrap();
    assert!(ok, "{err}");
    assert_eq!(proxy.state().await["paused"], false);
    let (ok, _, err) = run(&["passthrough", "on"]).await.unwrap();
    assert!(ok, "{err}");
    assert_eq!(proxy.state().await["passthrough"], true);
    let (ok, _, err) = run(&["open-at", "2099-01-01T09:00:00Z"]).await.unwrap();
    assert!(!ok, "more than a year ahead is refused");
    assert!(err.contains("opens_at"), "{err}");

    let (ok, out, err) = run(&["state"]).await.unwrap();
    assert!(ok, "{err}");
    let state: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(state["max_active_users"], 5, "{out}");
    let (ok, out, err) = run(&["watch", "--count", "2"]).await.unwrap();
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.contains("active 0/5") && out.contains("passthrough"),
        "{out}"
    );

    // A wrong token or a typo: a clear message and a failure, nothing changed.
    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            Command::new(BIN)
                .args(["admin", "--url", &url, "--token", "wrong-token", "pause"])
                .env_remove("WAITROOM_ADMIN_TOKEN")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{out:?}"
    );
    let (ok, _, err) = run(&["set", "speed=9"]).await.unwrap();
    assert!(!ok && err.contains("speed: unknown setting"), "{err}");
    assert_eq!(proxy.state().await["paused"], false);
}

#[tokio::test]
async fn the_console_and_its_history_are_served_and_other_sites_are_refused() {
    let origin = origin(50, 0).await;
    let proxy = proxy(&origin).start().await;
    let http = crate::support::Http::new();
    let admin = format!("http://{}", proxy.admin);
    let page = http
        .send(http::Method::GET, &format!("{admin}/"), None, &[])
        .await
        .unwrap();
    assert_eq!(page.status, 200);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(page.text().contains("/console.js"));

    // The history fills a sample a second.
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let mut samples = Vec::new();
    for _ in 0..50 {
        let h = http
            .send(
                http::Method::GET,
                &format!("{admin}/admin/history"),
                None,
                &[("authorization", &bearer)],
            )
            .await
            .unwrap()
            .json();
        samples = h["samples"].as_array().cloned().unwrap_or_default();
        if samples.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(samples.len() >= 2, "{samples:?}");
    assert_eq!(samples[0]["mode"], "open");
    assert!(samples[0]["max_active"].as_u64().is_some());

    // Another site's page cannot steer the room, even with the token; the
    // console's own origin can.
    let host = proxy.admin.to_string();
    for (origin, status) in [
        ("http://evil.example", 403),
        (&*format!("http://{host}"), 200),
    ] {
        let reply = http
            .send(
                http::Method::PATCH,
                &format!("{admin}/admin/settings"),
                Some(r#"{"paused":true}"#.into()),
                &[
                    ("authorization", &bearer),
                    ("origin", origin),
                    ("content-type", "application/json"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(reply.status, status, "{origin}: {}", reply.text());
    }
}

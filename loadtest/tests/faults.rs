//! The waiting room on a rough night, measured with the loadtest's own crowd: the
//! origin is killed mid-spike and started again 10 s later.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{waitroom_with, OriginProcess, ADMIN_TOKEN};
use http::Method;
use loadtest::client::Http;
use loadtest::profile::Profile;
use loadtest::run::{self, Spike};
use loadtest::visitor::Behaviour;
use tokio::time::Instant;

/// The value of the metric `name` (a line `name value`) on waitroom's admin listener.
async fn metric(admin: SocketAddr, name: &str) -> f64 {
    let text = Http::new(Duration::from_secs(5))
        .send(Method::GET, &format!("http://{admin}/metrics"), &[], None)
        .await
        .unwrap()
        .text()
        .into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_killed_for_ten_seconds_mid_spike_loses_nobody() {
    let mut origin = OriginProcess::start(&["--capacity", "100", "--service-time-ms", "10"]);
    // origin-stub registers a number once and answers the same confirmation to
    // the same form sent again: it says so, and a registration in flight when
    // the origin dies is sent once more when it is back.
    let (public, admin) = waitroom_with(
        origin.addr,
        "idempotent_paths = [\"/register\"]",
        "[admission]\nnew_users_per_minute = 1200\nmax_active_users = 1000\nsession_duration = \"10m\"\n\
         [queue]\npoll_min = \"500ms\"\npoll_max = \"5s\"\n",
    )
    .await;
    // 600 visitors over 20 s (30 a second against 20 a second let in), who behave
    // and retry as the loadtest's visitors do by default.
    let spike = Spike {
        label: "origin-killed".into(),
        target: format!("http://{public}"),
        profile: Profile::Uniform,
        users: 600,
        over: 20.0,
        behaviour: Behaviour::default(),
        origin: Some(format!("http://{}", origin.addr)),
        admin: Some((format!("http://{admin}"), ADMIN_TOKEN.into())),
        reset_origin: true,
        request_timeout: Duration::from_secs(15),
        progress: false,
        steps: std::sync::Arc::new(loadtest::steps::Steps::origin_stub()),
        max_duration: None,
        spread_addresses: true,
    };
    let crowd = tokio::spawn(async move { run::run(&spike).await });

    tokio::time::sleep(Duration::from_secs(6)).await;
    let called_before = metric(admin, "waitroom_called_total").await;
    origin.kill();
    let killed = Instant::now();
    // While it is down the line is held, and says why.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let newcomer = Http::new(Duration::from_secs(5))
        .send(
            Method::GET,
            &format!("http://{public}/register"),
            &[("accept", "application/json")],
            None,
        )
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&newcomer.body).unwrap();
    assert_eq!(
        (status["state"].as_str(), status["reason"].as_str()),
        (Some("paused"), Some("origin")),
        "{status}"
    );
    assert_eq!(metric(admin, "waitroom_origin_breaker").await, 1.0, "open");
    tokio::time::sleep_until(killed + Duration::from_secs(10)).await;
    let called_while_down = metric(admin, "waitroom_called_total").await - called_before;
    origin.restart();

    let outcome = crowd.await.unwrap().unwrap();
    let s = &outcome.summary;
    eprintln!(
        "origin killed for 10 s: {} arrivals, {} lost, {} registered, {called_while_down} called while it was down",
        s.arrivals, s.lost, s.registrations_completed
    );
    assert_eq!(s.arrivals, 600, "{s:?}");
    assert_eq!(
        (
            s.lost,
            s.registrations_completed,
            s.duplicated_confirmations
        ),
        (0, 600, 0),
        "nobody lost, nobody registered twice: {s:?}"
    );
    // The default burst at 1,200/min is 2.
    assert!(
        called_while_down <= 2.0,
        "{called_while_down} called into a dead origin"
    );
    assert!(metric(admin, "waitroom_origin_breaker_opened_total").await >= 1.0);
    assert_eq!(
        metric(admin, "waitroom_origin_breaker").await,
        0.0,
        "closed again"
    );
}

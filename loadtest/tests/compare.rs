//! loadtest end to end: the same crowd straight at a small origin and through
//! waitroom, a trace replay, and the HTML report in headless Chromium.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use loadtest::profile::Profile;
use loadtest::run::{self, Spike};
use loadtest::visitor::Behaviour;
use tokio::net::TcpListener;

mod common;

async fn origin(capacity: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = origin_stub::Options {
        capacity,
        service_time: Duration::from_millis(50),
        backlog: capacity / 2,
        queue_timeout: Duration::from_secs(2),
        collapse: 1.0,
    };
    tokio::spawn(origin_stub::run(listener, options, std::future::pending()));
    addr
}

async fn waitroom(origin: SocketAddr, max_active: u32) -> (SocketAddr, SocketAddr) {
    common::waitroom(
        origin,
        &format!(
            "[admission]\nnew_users_per_minute = 6000\nmax_active_users = {max_active}\nsession_duration = \"1s\"\n\
             [queue]\npoll_min = \"250ms\"\n"
        ),
    )
    .await
}

fn spike(
    label: &str,
    target: SocketAddr,
    origin: SocketAddr,
    profile: Profile,
    users: usize,
) -> Spike {
    Spike {
        label: label.into(),
        target: format!("http://{target}"),
        profile,
        users,
        over: 1.0,
        behaviour: Behaviour {
            think: (Duration::from_millis(20), Duration::from_millis(60)),
            retries: 2,
            ..Behaviour::default()
        },
        origin: Some(format!("http://{origin}")),
        admin: None,
        reset_origin: true,
        request_timeout: Duration::from_secs(5),
        progress: false,
        steps: std::sync::Arc::new(loadtest::steps::Steps::origin_stub()),
        max_duration: None,
        spread_addresses: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crowd_collapses_the_origin_but_not_the_waiting_room() {
    let origin = origin(20).await;
    let (proxy, admin) = waitroom(origin, 20).await;

    let direct = run::run(&spike("direct", origin, origin, Profile::Uniform, 200))
        .await
        .unwrap();
    let d = &direct.summary;
    assert_eq!(d.arrivals, 200);
    assert!(d.errors.server_5xx > 0, "the origin never refused: {d:?}");
    assert!(
        d.lost > 0,
        "nobody lost a registration straight at the origin: {d:?}"
    );

    let mut through = spike("waitroom", proxy, origin, Profile::Uniform, 200);
    through.admin = Some((format!("http://{admin}"), "loadtest-token".into()));
    let through = run::run(&through).await.unwrap();
    let w = &through.summary;
    assert_eq!(
        (w.arrivals, w.admitted, w.registrations_completed),
        (200, 200, 200),
        "{w:?}"
    );
    assert_eq!(
        (w.lost, w.duplicated_confirmations, w.errors.server_5xx),
        (0, 0, 0),
        "{w:?}"
    );
    assert!(w.queued > 100, "{w:?}");
    assert!(w.origin.max_in_flight.unwrap() <= 20, "{w:?}");
    assert_eq!(w.origin.registrations, Some(200));
    assert_eq!(w.origin.confirmations, Some(200));
    assert_eq!(w.configured_rate_per_s, Some(100.0));
    assert!(
        w.eta_relative_error.count > 100 && w.queue_wait_s.p50.is_some(),
        "{w:?}"
    );

    // The report: written, self-contained, and rendered by a real browser.
    let dir = std::env::temp_dir().join(format!("loadtest-report-{}", std::process::id()));
    run::write_report(&dir, "compare", &[&direct, &through]).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["waitroom"]["lost"], 0);
    assert_eq!(summary["direct"]["arrivals"], 200);
    let dom = chromium(&dir.join("report.html"), &dir.join("report.png"));
    // Straight at the origin nobody waited and no waiting room was asked: no queue,
    // active-users or wait charts there (3), and all six through waitroom.
    let charts: Vec<&str> = dom
        .split("<figure class=\"chart\">")
        .skip(1)
        .map(|c| c.split("</figure>").next().unwrap())
        .collect();
    assert_eq!(
        charts.len(),
        9,
        "3 charts straight at the origin, 6 through waitroom"
    );
    assert!(!dom.contains("no data"), "a chart without data");
    // The same chart in both runs is drawn on the same axes: the same tick labels.
    let ticks = |chart: &str| -> Vec<String> {
        chart
            .split("<text")
            .skip(1)
            .filter_map(|t| t.split('>').nth(1)?.split('<').next())
            .filter(|t| t.trim().parse::<f64>().is_ok())
            .map(str::to_owned)
            .collect()
    };
    // (A row per kind: arrivals 0 and 1; the waitroom run's queue 2 and active users
    // 3 alone; the origin's in flight 4 and 5; latency 6 and 7; waits 8 alone.)
    for (direct, through) in [(0, 1), (4, 5), (6, 7)] {
        assert_eq!(
            ticks(charts[direct]),
            ticks(charts[through]),
            "charts {direct} and {through} are on different scales"
        );
    }
    // Every figure has its meaning beside it; figures about a line are `-` for the
    // run that had none.
    assert_eq!(
        dom.matches("<td class=\"meaning\">").count(),
        loadtest::report::rows(&through.summary).len()
    );
    assert!(dom.contains("<td>FIFO inversions</td><td>-</td>"), "{dom}");
    for (i, chart) in charts.iter().enumerate() {
        let drawn = chart.split("<polyline").skip(1).any(|l| {
            l.split("points=\"")
                .nth(1)
                .is_some_and(|p| p.split('"').next().unwrap().split(' ').count() > 2)
        }) || chart.matches("<rect").count() > 40;
        assert!(
            drawn,
            "chart {i} is empty: {}",
            &chart[..chart.len().min(300)]
        );
    }
    assert!(std::fs::metadata(dir.join("report.png")).unwrap().len() > 10_000);
    // The picture in docs/loadtest.md is this one (kept when asked to).
    if let Some(to) = std::env::var_os("LOADTEST_SCREENSHOT_TO") {
        std::fs::copy(dir.join("report.png"), to).unwrap();
    }
}

/// Opens `page` in headless Chromium: returns the rendered DOM, writes a screenshot.
fn chromium(page: &Path, screenshot: &Path) -> String {
    let browser = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("headless Chromium is needed: run scripts/test.sh, which installs it");
    let profile = std::env::temp_dir().join(format!("loadtest-chromium-{}", std::process::id()));
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ];
    let url = format!("file://{}", page.display());
    let dom = Command::new(browser)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let shot = Command::new(browser)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .args(["--window-size=1280,2400", &url])
        .output()
        .unwrap();
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    String::from_utf8(dom.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_replays_on_time() {
    let origin = origin(100).await;
    // Bursts and gaps: 400 arrivals in 2 s, a quarter of them in the same 10 ms.
    let mut text = String::from("arrival_s\n");
    for i in 0..300 {
        text.push_str(&format!("{:.4}\n", 0.5 + i as f64 * 0.005));
    }
    for i in 0..100 {
        text.push_str(&format!("{:.4}\n", 2.0 + i as f64 * 0.0001));
    }
    let profile = Profile::parse_trace(&text, "trace.csv").unwrap();
    let mut s = spike("trace", origin, origin, profile.clone(), 0);
    s.behaviour.think = (Duration::ZERO, Duration::ZERO);
    let outcome = run::run(&s).await.unwrap();
    let expected = profile.schedule(0, 0.0);
    assert_eq!(outcome.journeys.len(), 400);
    for (j, t) in outcome.journeys.iter().zip(&expected) {
        assert_eq!(j.scheduled, *t, "visitor {} scheduled off the trace", j.id);
    }
    let lag = outcome.summary.arrival_lag_ms.p99.unwrap();
    assert!(lag < 50.0, "arrivals {lag:.1} ms late (p99)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_from_one_host_is_told_why_and_spread_it_is_not() {
    let origin = origin(20).await;
    let (proxy, _) = waitroom(origin, 20).await;
    // From one host: past the per-address allowance (30 at once), places are
    // kept and earned by the page's work, which the visitors do as browsers do.
    let mut one_host = spike("one host", proxy, origin, Profile::Uniform, 80);
    one_host.spread_addresses = false;
    let one = run::run(&one_host).await.unwrap();
    let s = &one.summary;
    assert!(s.limited.challenged_visitors > 0, "{s:?}");
    assert_eq!((s.lost, s.completed), (0, 80), "nobody lost: {s:?}");
    assert_eq!(
        s.errors.client_4xx, 0,
        "the waiting room's pages are not the site's errors: {s:?}"
    );
    let notes = loadtest::report::notes(s).join("\n");
    assert!(
        notes.contains("per-address allowance") && notes.contains("--spread-addresses"),
        "{notes}"
    );
    let table = loadtest::report::table(&[s]);
    assert!(table.contains("challenged (proof of work)"), "{table}");
    assert!(table.contains("note: one host:"), "{table}");

    // Each visitor from an address of its own, which waitroom trusts the
    // loadtest's host to say: nobody limited, nobody lost.
    let (proxy, _) = waitroom(origin, 20).await;
    let spread = run::run(&spike("spread", proxy, origin, Profile::Uniform, 80))
        .await
        .unwrap();
    let s = &spread.summary;
    assert_eq!(
        (
            s.limited.answers,
            s.limited.challenged_visitors,
            s.lost,
            s.completed
        ),
        (0, 0, 0, 80),
        "{s:?}"
    );
    assert!(loadtest::report::notes(s).is_empty());
}

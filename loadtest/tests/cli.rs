//! The `loadtest` binary from outside.

#[test]
fn help_exits_zero() {
    for args in [&["--help"][..], &["spike", "--help"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["spike", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--target", "--users", "--over", "--report"] {
        assert!(text.contains(flag), "{flag} missing from {text}");
    }
}

/// A plain site that is not origin-stub: `/` and `/about` pages, a `/contact`
/// form answered with 201, and `/slow`, which answers after a minute.
async fn plain_site() -> std::net::SocketAddr {
    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::{Request, Response};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let (status, text) = match (parts.method.as_str(), parts.uri.path()) {
                        ("GET", "/") => (200, "<h1>Welcome to the plain site</h1>".to_owned()),
                        ("GET", "/about") => (200, "<p>About us</p>".to_owned()),
                        ("POST", "/contact") => (
                            201,
                            format!("<p>Thanks, {}</p>", String::from_utf8_lossy(&body)),
                        ),
                        ("GET", "/slow") => {
                            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                            (200, "late".to_owned())
                        }
                        _ => (404, "no such page".to_owned()),
                    };
                    let mut r = Response::new(Full::new(Bytes::from(text)));
                    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Runs the loadtest binary with `args`; its exit status, standard output and
/// standard error.
async fn loadtest(args: Vec<String>) -> (bool, String, String) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `summary.json` a run wrote into `report`.
fn summary(report: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(report.join("summary.json")).unwrap()).unwrap()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("loadtest-{name}-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journey_file_drives_a_plain_site_and_reports_each_step() {
    let site = plain_site().await;
    let dir = scratch("journey");
    let journey = dir.join("journey.toml");
    std::fs::write(
        &journey,
        "[[steps]]\nname = \"home\"\npath = \"/\"\nexpect_text = \"Welcome\"\n\n\
         [[steps]]\nname = \"about\"\npath = \"/about\"\nexpect_text = \"About us\"\n\n\
         [[steps]]\nname = \"contact\"\nmethod = \"POST\"\npath = \"/contact\"\n\
         form = { email = \"visitor{id}@example.org\" }\nexpect_status = 201\n\
         expect_text = \"Thanks, email=visitor\"\n\n\
         [[steps]]\nname = \"missing\"\npath = \"/nowhere\"\nexpect_status = 404\n",
    )
    .unwrap();
    let report = dir.join("report");
    let args = [
        "spike",
        "--target",
        &format!("http://{site}"),
        "--users",
        "20",
        "--over",
        "1",
        "--think-min-ms",
        "0",
        "--think-max-ms",
        "20",
        "--journey",
        journey.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ];
    let (ok, stdout, stderr) = loadtest(args.iter().map(|a| a.to_string()).collect()).await;
    assert!(ok, "{stdout}\n{stderr}");
    let summary = summary(&report);
    assert_eq!(summary["completed"], 20, "{summary:#}");
    assert_eq!(summary["lost"], 0, "{summary:#}");
    let steps = summary["steps"].as_array().unwrap();
    let names: Vec<_> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["home", "about", "contact", "missing"]);
    for step in steps {
        assert_eq!(step["requests"], 20, "{step}");
        assert_eq!(step["failures"], 0, "{step}");
        assert_eq!(step["visitors_done"], 20, "{step}");
        assert!(step["latency_s"]["p99"].as_f64().is_some(), "{step}");
    }
    assert_eq!(summary["run"]["journey"], journey.to_str().unwrap());
    assert_eq!(summary["run"]["users"], 20);
    // The terminal's per-step table and the report's.
    assert!(stdout.contains("POST /contact"), "{stdout}");
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(
        html.contains("<td>contact</td>") && html.contains("POST /contact"),
        "{html}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_duration_ends_a_run_with_a_partial_report() {
    let site = plain_site().await;
    let dir = scratch("cut");
    let journey = dir.join("journey.toml");
    std::fs::write(
        &journey,
        "[[steps]]\nname = \"home\"\npath = \"/\"\n\n[[steps]]\nname = \"slow\"\npath = \"/slow\"\n",
    )
    .unwrap();
    let report = dir.join("report");
    let args = [
        "spike",
        "--target",
        &format!("http://{site}"),
        "--users",
        "10",
        "--over",
        "1",
        "--think-min-ms",
        "0",
        "--think-max-ms",
        "0",
        "--request-timeout",
        "120",
        "--journey",
        journey.to_str().unwrap(),
        "--max-duration",
        "2",
        "--report",
        report.to_str().unwrap(),
    ];
    // The slow page answers after a minute and the request waits two: only the
    // run's end stops the visitors.
    let (ok, stdout, stderr) = loadtest(args.iter().map(|a| a.to_string()).collect()).await;
    assert!(ok, "{stdout}\n{stderr}");
    let summary = summary(&report);
    assert_eq!(summary["run"]["max_duration_s"], 2.0, "{summary:#}");
    assert_eq!(summary["run"]["cut"], true, "{summary:#}");
    assert_eq!(summary["unfinished"], 10, "{summary:#}");
    assert_eq!(summary["lost"], 0, "cut short is not lost: {summary:#}");
    assert_eq!(summary["steps"][0]["visitors_done"], 10, "{summary:#}");
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("partial report"), "{html}");
    let _ = std::fs::remove_dir_all(dir);
}

//! Reloading the configuration of a running proxy (SIGHUP, or the file changed):
//! a new rate applies under load without a connection or a place lost, a changed
//! page template shows at once, a broken file is refused and what was in force
//! stays, and SIGHUP no longer ends the process.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::process::{signal, sigterm, spawn_logging, wait_ready, Setup};
use crate::support::{origin, Http, Visitor};

/// What one visitor under load saw.
#[derive(Debug, Default)]
struct Seen {
    /// Failed requests and 5xx answers.
    errors: Vec<String>,
    /// Positions while queued, in order.
    positions: Vec<u64>,
    admitted: bool,
}

/// A visitor who arrives, polls every 200 ms while waiting, then keeps using the
/// site, until `stop`.
async fn keep_visiting(mut v: Visitor, stop: Arc<AtomicBool>, inside: Arc<AtomicUsize>) -> Seen {
    let mut seen = Seen::default();
    while !stop.load(Ordering::SeqCst) {
        let path = if seen.admitted {
            "/register"
        } else {
            "/_waitroom/status"
        };
        let reply = if seen.admitted {
            v.get(path).await
        } else {
            v.status().await
        };
        match reply {
            Err(e) => seen.errors.push(e),
            Ok(r) if r.status.is_server_error() => {
                seen.errors.push(format!("{path}: {}", r.status))
            }
            Ok(r) if !seen.admitted => {
                let s = r.json();
                match s["state"].as_str() {
                    Some("admitted") => {
                        seen.admitted = true;
                        inside.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => seen.positions.push(s["position"].as_u64().unwrap_or(0)),
                }
            }
            Ok(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    seen
}

/// `/admin/state` of the proxy of `setup`.
async fn state(setup: &Setup) -> serde_json::Value {
    setup
        .admin(http::Method::GET, "/admin/state", None)
        .await
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_under_load_and_a_broken_file_changes_nothing() {
    let origin = origin(50, 1).await;
    let template =
        std::env::temp_dir().join(format!("waitroom-page-{}.html", rand::random::<u64>()));
    let builtin = include_str!("../../src/queue_page/page.html");
    std::fs::write(&template, builtin).unwrap();
    let sections = |rate: &str| {
        format!(
            "[admission]\nnew_users_per_minute = {rate}\nmax_active_users = 1000\n\
             [page]\ntemplate = \"{}\"\n",
            template.display()
        )
    };
    // Six a minute: 30 visitors would take minutes.
    let setup = Setup::memory(origin.addr, &sections("6"));
    let log = setup.dir.join("waitroom.log");
    let mut proxy = spawn_logging(&setup.config, &log);
    let http = Http::new();
    wait_ready(&http, setup.admin).await;

    let stop = Arc::new(AtomicBool::new(false));
    let inside = Arc::new(AtomicUsize::new(0));
    let crowd: Vec<_> = (0..30)
        .map(|_| {
            let v = Visitor::new(&setup.base(), &http);
            tokio::spawn(keep_visiting(v, stop.clone(), inside.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = state(&setup).await;
    assert!(before["queue_length"].as_u64().unwrap() >= 20, "{before}");

    // The new rate and a new edition of the page, then SIGHUP.
    let marked = builtin.replace("</body>", "<p id=\"edition\">second edition</p></body>");
    std::fs::write(&template, marked).unwrap();
    setup.rewrite(&sections("6000"));
    signal(proxy.id(), "HUP");
    let mut applied = false;
    for _ in 0..200 {
        if state(&setup).await["new_users_per_minute"] == 6000 {
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        applied,
        "the new rate was not applied:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    // At the old rate the rest of the crowd would take 4 minutes; now seconds.
    for _ in 0..300 {
        if inside.load(Ordering::SeqCst) == 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(inside.load(Ordering::SeqCst), 30, "{}", state(&setup).await);

    // The page shows the new edition at once (a newcomer to a paused room).
    let reply = setup
        .admin(
            http::Method::PATCH,
            "/admin/settings",
            Some(r#"{"paused":true}"#.into()),
        )
        .await;
    assert_eq!(reply.status, 200);
    let mut newcomer = Visitor::new(&setup.base(), &http);
    let page = newcomer.get("/").await.unwrap().text();
    assert!(page.contains("second edition"), "{page}");

    // A broken file: refused with the key and the reason; nothing changes, and a
    // reload does not undo the pause (it is not the file's).
    setup.rewrite("[admission]\nnew_users_per_minute = \"fast\"\n");
    signal(proxy.id(), "HUP");
    let mut refused = String::new();
    for _ in 0..200 {
        let text = std::fs::read_to_string(&log).unwrap();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("configuration not reloaded"))
        {
            refused = line.to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        refused.contains("admission.new_users_per_minute"),
        "{refused:?}"
    );
    let after = state(&setup).await;
    assert_eq!(after["new_users_per_minute"], 6000, "{after}");
    assert_eq!(after["paused"], true, "{after}");

    stop.store(true, Ordering::SeqCst);
    for (i, task) in crowd.into_iter().enumerate() {
        let seen = task.await.unwrap();
        assert!(seen.errors.is_empty(), "visitor {i}: {seen:?}");
        assert!(seen.admitted, "visitor {i} never got in: {seen:?}");
        // Nobody's place was lost or moved back.
        assert!(
            seen.positions.windows(2).all(|w| w[1] <= w[0]),
            "visitor {i}: {seen:?}"
        );
    }
    // Still running after two SIGHUPs, and stops cleanly.
    assert!(
        proxy.try_wait().unwrap().is_none(),
        "SIGHUP ended the process"
    );
    sigterm(&mut proxy);
    let _ = std::fs::remove_file(&template);
}

/// The answer at `path` for a browser, with `cookie` sent.
async fn page(http: &Http, setup: &Setup, path: &str, cookie: &str) -> crate::support::Reply {
    let url = format!("{}{path}", setup.base());
    let mut headers = vec![("accept", "text/html")];
    if !cookie.is_empty() {
        headers.push(("cookie", cookie));
    }
    http.send(http::Method::GET, &url, None, &headers)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalogue_dropped_into_the_folder_adds_a_language_without_a_rebuild() {
    let origin = origin(10, 1).await;
    let dir = std::env::temp_dir().join(format!("waitroom-catalogues-{}", rand::random::<u64>()));
    let catalogues = dir.join("locales");
    std::fs::create_dir_all(&catalogues).unwrap();
    let logo = dir.join("logo.svg");
    std::fs::write(
        &logo,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"/>",
    )
    .unwrap();
    let setup = Setup::memory(
        origin.addr,
        &format!(
            "[admission]\nnew_users_per_minute = 60\nmax_active_users = 1\n\
             [page]\ncatalogues = \"{}\"\nsite_name = \"Impfen Registration\"\nlogo = \"{}\"\n",
            catalogues.display(),
            logo.display()
        ),
    );
    let log = setup.dir.join("waitroom.log");
    let mut proxy = spawn_logging(&setup.config, &log);
    let http = Http::new();
    wait_ready(&http, setup.admin).await;
    let paused = setup
        .admin(
            http::Method::PATCH,
            "/admin/settings",
            Some(r#"{"paused":true}"#.into()),
        )
        .await;
    assert_eq!(paused.status, 200);

    // Polish is not offered yet: English, and no choice to keep.
    let before = page(&http, &setup, "/?lang=pl", "").await;
    assert!(
        before.text().contains("<html lang=\"en\""),
        "{}",
        before.text()
    );
    assert_eq!(before.set_cookie("waitroom_lang"), None);
    // The site's name and logo are on the page, the place in the tab's title.
    let text = before.text();
    assert!(text.contains("Impfen Registration"), "{text}");
    assert!(
        text.contains("<title>#1 · Impfen Registration</title>"),
        "{text}"
    );
    assert!(text.contains("src=\"/_waitroom/logo\""), "{text}");
    let served = page(&http, &setup, "/_waitroom/logo", "").await;
    assert_eq!(served.status, 200);
    assert_eq!(served.headers["content-type"], "image/svg+xml");
    assert!(served.text().starts_with("<svg"));

    // A translator drops `pl.toml` into the folder; the file is read again.
    let polish = include_str!("../../locales/en.toml")
        .replace("language_name = \"English\"", "language_name = \"Polski\"")
        .replace("Thank you for waiting", "Dziękujemy za cierpliwość");
    std::fs::write(catalogues.join("pl.toml"), polish).unwrap();
    signal(proxy.id(), "HUP");
    let mut chosen = None;
    for _ in 0..200 {
        let r = page(&http, &setup, "/?lang=pl", "").await;
        if r.text().contains("<html lang=\"pl\"") {
            chosen = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let chosen = chosen.unwrap_or_else(|| {
        panic!(
            "no Polish page:\n{}",
            std::fs::read_to_string(&log).unwrap()
        )
    });
    let text = chosen.text();
    assert!(text.contains("Dziękujemy za cierpliwość"), "{text}");
    assert!(
        text.contains("hreflang=\"pl\""),
        "the switcher offers it: {text}"
    );
    // The choice is kept: the next page without `?lang=` is Polish too, even for
    // a browser that asks for German.
    let kept = chosen
        .set_cookie("waitroom_lang")
        .expect("the choice is kept");
    assert_eq!(kept, "pl");
    let later = http
        .send(
            http::Method::GET,
            &format!("{}/", setup.base()),
            None,
            &[
                ("accept", "text/html"),
                ("accept-language", "de"),
                ("cookie", "waitroom_lang=pl"),
            ],
        )
        .await
        .unwrap();
    assert!(
        later.text().contains("<html lang=\"pl\""),
        "{}",
        later.text()
    );
    assert_eq!(
        later.set_cookie("waitroom_lang"),
        None,
        "set once, not on every page"
    );
    sigterm(&mut proxy);
    let _ = std::fs::remove_dir_all(dir);
}

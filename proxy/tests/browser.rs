//! The queue page in a real headless Chromium (driven through chromedriver): in each
//! language the place counts down without a reload and the visitor lands on the page
//! they asked for; without JavaScript the page refreshes itself to the same end. A
//! site that does not answer shows a page in the visitor's language that tries
//! again by itself.

mod support;

use http::Method;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use support::{free_port, origin, proxy, wait_until, Http, Proxy};

struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chromedriver() -> Driver {
    let port = free_port();
    // Owned by the guard at once, so that it is stopped on every path.
    let driver = Driver {
        child: Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is needed: run scripts/test.sh, which installs chromium-driver"),
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = Http::new();
    let status = format!("{}/status", driver.url);
    for _ in 0..200 {
        if http
            .send(http::Method::GET, &status, None, &[])
            .await
            .is_ok()
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("chromedriver did not start");
}

async fn browser(driver: &Driver, lang: &str, javascript: bool) -> Client {
    let profile = std::env::temp_dir().join(format!("waitroom-chromium-{}", rand::random::<u64>()));
    let mut args = vec![
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        format!("--lang={lang}"),
        format!("--user-data-dir={}", profile.display()),
        "--window-size=360,800".to_owned(),
    ];
    if !javascript {
        args.push("--blink-settings=scriptEnabled=false".to_owned());
    }
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": args,
            "prefs": { "intl.accept_languages": lang },
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

async fn text(c: &Client, id: &str) -> String {
    match c.find(Locator::Id(id)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Whether the browser shows a page of the origin (every origin-stub page has one).
async fn at_origin(c: &Client) -> bool {
    c.source()
        .await
        .unwrap_or_default()
        .contains("id=\"origin\"")
}

/// Two visitors wait ahead (they keep their places: abandon_min is long).
async fn queue_two(p: &Proxy) {
    let http = Http::new();
    for _ in 0..2 {
        let mut v = p.visitor(&http);
        v.get("/").await.unwrap();
    }
}

/// A proxy admitting 30 a minute, `max_active` at once, whose visitors poll every
/// 0.5 to 1 s (up to a quarter later: within the 2 s between two calls, so a place
/// is seen at every step) and keep their places however long they are away.
fn start_proxy(
    origin: &support::Origin,
    max_active: u32,
) -> impl std::future::Future<Output = Proxy> + '_ {
    proxy(origin)
        .admission(30, max_active, "10m")
        .toml("[queue]\npoll_min = \"500ms\"\npoll_max = \"1s\"\nabandon_min = \"10m\"")
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_each_language_the_place_counts_down_and_the_visitor_arrives() {
    let origin = origin(10, 1).await;
    let p = start_proxy(&origin, 1_000).await;
    let driver = chromedriver().await;
    // (language, paused, place 3 while paused, place 1 once moving)
    let expected = [
        (
            "de",
            "Einlass ist kurz angehalten",
            "Sie sind Nummer 3",
            "Nummer 1",
        ),
        (
            "fr",
            "L'entrée est suspendue",
            "Vous êtes numéro 3",
            "numéro 1",
        ),
        (
            "lb",
            "D'Entrée ass fir e Moment gestoppt",
            "Dir sidd Nummer 3",
            "Nummer 1",
        ),
        ("en", "Entry is paused", "You are number 3", "number 1"),
        ("pt", "A entrada está suspensa", "É o número 3", "número 1"),
    ];
    for (lang, paused, first, last) in expected {
        // Paused while two join and then the browser: it is third.
        p.patch(serde_json::json!({"paused": true})).await;
        queue_two(&p).await;
        let c = browser(&driver, lang, true).await;
        c.goto(&p.url("/register?step=1")).await.unwrap();
        let html_lang = c
            .execute("return document.documentElement.lang", vec![])
            .await
            .unwrap();
        assert_eq!(html_lang, lang);
        assert!(
            text(&c, "headline").await.contains(paused),
            "{lang}: {}",
            text(&c, "headline").await
        );
        assert!(
            text(&c, "ahead").await.contains(first),
            "{lang}: {}",
            text(&c, "ahead").await
        );
        // Since when it is paused (a time), and no countdown (issue 27).
        let since = text(&c, "eta").await;
        assert!(since.contains(':'), "{lang}: paused since: {since:?}");
        assert!(
            text(&c, "countdown").await.is_empty(),
            "{lang}: a countdown"
        );
        // Times: 24-hour, local, the zone named, in every language (Luxembourgish
        // included, which browsers would otherwise show in 12-hour time).
        let updated = text(&c, "updated").await;
        assert!(clock_24h_with_zone(&updated), "{lang}: {updated}");
        // A marker that a reload would wipe out.
        c.execute("window.__notReloaded = true", vec![])
            .await
            .unwrap();
        p.patch(serde_json::json!({"paused": false})).await;
        wait_until(
            &format!("{lang}: the place counting down"),
            Duration::from_secs(20),
            || async { text(&c, "headline").await.contains(last) },
        )
        .await;
        let marker = c
            .execute("return window.__notReloaded === true", vec![])
            .await
            .unwrap();
        assert_eq!(
            marker, true,
            "{lang}: the page reloaded to update the place"
        );
        // A new place is read out to screen readers (by the page's own live
        // region: the panel itself is not one), at most once a minute: the place
        // read is the one the line had then (issue 27).
        let announced = c
            .execute(
                "return document.getElementById('announce').textContent",
                vec![],
            )
            .await
            .unwrap();
        let announced = announced.as_str().unwrap_or_default();
        let place_words = last.trim_end_matches(char::is_numeric);
        assert!(
            announced.contains(place_words),
            "{lang}: announced {announced:?}"
        );
        // The tab's title carries the place too, updated with it.
        let title = c.title().await.unwrap();
        assert!(title.starts_with("#1 · "), "{lang}: {title}");
        wait_until(
            &format!("{lang}: the origin's page"),
            Duration::from_secs(20),
            || at_origin(&c),
        )
        .await;
        let url = c.current_url().await.unwrap();
        assert_eq!(url.path(), "/register");
        assert_eq!(url.query(), Some("step=1"));
        c.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_javascript_the_page_refreshes_itself_to_the_origin() {
    let origin = origin(10, 1).await;
    let p = start_proxy(&origin, 1_000).await;
    let driver = chromedriver().await;
    p.patch(serde_json::json!({"paused": true})).await;
    queue_two(&p).await;
    let c = browser(&driver, "fr", false).await;
    c.goto(&p.url("/register")).await.unwrap();
    assert!(
        text(&c, "ahead").await.contains("Vous êtes numéro 3"),
        "{}",
        text(&c, "ahead").await
    );
    p.patch(serde_json::json!({"paused": false})).await;
    wait_until(
        "the refresh to reach the origin",
        Duration::from_secs(30),
        || at_origin(&c),
    )
    .await;
    assert_eq!(c.current_url().await.unwrap().path(), "/register");
    c.close().await.unwrap();
}

/// The workspace's `target` directory (or `CARGO_TARGET_DIR`).
fn target_dir() -> std::path::PathBuf {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir), // an absolute path replaces the base
        None => workspace.join("target"),
    }
}

/// axe-core from the npm registry, as `scripts/test.sh` installs it.
fn axe_source() -> String {
    let path = std::env::var_os("WAITROOM_AXE_JS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| target_dir().join("npm/node_modules/axe-core/axe.min.js"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core is needed at {} ({e}): run scripts/test.sh, which installs it with npm",
            path.display()
        )
    })
}

/// Runs axe-core on the page: the serious and critical violations, and how many
/// rules passed (so that a run that checked nothing cannot pass).
async fn axe(c: &Client, source: &str) -> (Vec<String>, u64) {
    c.execute(source, vec![]).await.expect("axe-core loads");
    let r = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document).then(r => done({
               passes: r.passes.length,
               bad: r.violations
                 .filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' at '
                   + v.nodes.map(n => n.target.join(' ')).join(', '))
             })).catch(e => done({ error: String(e) }));",
            vec![],
        )
        .await
        .expect("axe-core runs");
    assert!(r.get("error").is_none(), "axe-core failed: {r}");
    let bad = r["bad"]
        .as_array()
        .expect("a list of violations")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    (bad, r["passes"].as_u64().unwrap_or(0))
}

/// The page `c` shows in `state` fits a 320 px phone without sideways scrolling,
/// has no serious or critical axe-core violation at 360 and 1280 px, and is
/// photographed there into `shots`.
async fn inspect(c: &Client, source: &str, shots: &std::path::Path, state: &str) {
    for width in [320, 360, 1280] {
        c.set_window_size(width, 900).await.unwrap();
        let overflow = c
            .execute(
                "return document.documentElement.scrollWidth > window.innerWidth",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(overflow, false, "{state} at {width} px scrolls sideways");
        if width == 320 {
            continue; // the narrowest phone: it fits; screenshots at 360 and 1280
        }
        let (bad, passes) = axe(c, source).await;
        assert!(bad.is_empty(), "{state} at {width} px: {bad:#?}");
        assert!(
            passes >= 10,
            "{state}: axe-core checked only {passes} rules"
        );
        let png = c.screenshot().await.unwrap();
        let path = shots.join(format!("queue-page-{state}-{width}.png"));
        std::fs::write(&path, &png).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_passes_axe_and_is_photographed_at_phone_and_desktop_width() {
    let source = axe_source();
    let shots = target_dir().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let origin = origin(10, 1).await;
    // One admitted at a time, and the called place holds its slot (abandon_min is
    // long): once two are ahead the browser's place stays where it is.
    let p = start_proxy(&origin, 1).await;
    let driver = chromedriver().await;
    p.patch(serde_json::json!({"paused": true})).await;
    queue_two(&p).await;
    let c = browser(&driver, "en", true).await;
    c.goto(&p.url("/register")).await.unwrap();
    let in_an_hour = waitroom::clock::format_rfc3339(waitroom::clock::wall_ms() + 3_600_000);
    // (state, the change that leads to it, what the headline then says)
    let states = [
        ("paused", serde_json::json!({}), "Entry is paused"),
        (
            "queued",
            serde_json::json!({"paused": false}),
            "You are number 2",
        ),
        (
            "scheduled",
            serde_json::json!({"opens_at": in_an_hour}),
            "Entry opens at",
        ),
        (
            "closed",
            serde_json::json!({"closed": true}),
            "Entry is closed",
        ),
    ];
    for (state, change, headline) in states {
        p.patch(change).await;
        wait_until(
            &format!("the {state} page"),
            Duration::from_secs(20),
            || async { text(&c, "headline").await.contains(headline) },
        )
        .await;
        if state == "scheduled" {
            let countdown = text(&c, "countdown").await;
            assert!(
                countdown.starts_with("Opens in 59:") || countdown.starts_with("Opens in 1:00:"),
                "{countdown}"
            );
        }
        inspect(&c, &source, &shots, state).await;
    }
    c.close().await.unwrap();
    eprintln!("screenshots in {}", shots.display());
}

/// Whether `text` has a time `HH:MM:SS` followed by a time zone's name, and no
/// 12-hour marker.
fn clock_24h_with_zone(text: &str) -> bool {
    let b = text.as_bytes();
    let at = (0..b.len().saturating_sub(7)).find(|&i| {
        let d = |k: usize| b[i + k].is_ascii_digit();
        d(0) && d(1) && b[i + 2] == b':' && d(3) && d(4) && b[i + 5] == b':' && d(6) && d(7)
    });
    let zone = at.is_some_and(|i| {
        text[i + 8..]
            .trim_start()
            .starts_with(|c: char| c.is_ascii_uppercase())
    });
    let twelve = ["AM", "PM", "a.m.", "p.m."]
        .iter()
        .any(|m| text.contains(m));
    zone && !twelve
}

/// Fills origin-stub's registration form as a citizen does.
async fn fill_the_form(c: &Client) {
    for (field, value) in [("nrn", "85071512345"), ("email", "citizen@example.org")] {
        c.find(Locator::Css(&format!("input[name={field}]")))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
}

/// Presses Tab `n` times, then Enter when asked.
async fn keys(c: &Client, tabs: usize, enter: bool) {
    let press = |k: Key, a: KeyActions| {
        a.then(KeyAction::Down { value: k.into() })
            .then(KeyAction::Up { value: k.into() })
    };
    let mut a = KeyActions::new("keyboard".into());
    for _ in 0..tabs {
        a = press(Key::Tab, a);
    }
    if enter {
        a = press(Key::Enter, a);
    }
    c.perform_actions(a).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_language_switcher_works_from_the_keyboard_with_a_visible_focus() {
    let origin = origin(10, 1).await;
    let p = start_proxy(&origin, 1_000).await;
    let driver = chromedriver().await;
    p.patch(serde_json::json!({"paused": true})).await;
    let c = browser(&driver, "en", true).await;
    c.goto(&p.url("/register?step=2")).await.unwrap();
    // The switcher comes first: a menu that Enter opens, then Deutsch, Français.
    keys(&c, 1, true).await;
    keys(&c, 2, false).await;
    let focused = c.active_element().await.unwrap();
    assert_eq!(focused.text().await.unwrap(), "Français");
    let outline = c
        .execute(
            "const s = getComputedStyle(document.activeElement);
             return s.outlineStyle + ' ' + s.outlineWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(outline, "solid 3px", "the focus must be visible");
    keys(&c, 0, true).await;
    wait_until("the French page", Duration::from_secs(10), || async {
        c.execute("return document.documentElement.lang", vec![])
            .await
            .is_ok_and(|l| l == "fr")
    })
    .await;
    assert!(
        text(&c, "headline")
            .await
            .contains("L'entrée est suspendue"),
        "{}",
        text(&c, "headline").await
    );
    // The page the visitor asked for is kept.
    let url = c.current_url().await.unwrap();
    assert_eq!(
        (url.path(), url.query()),
        ("/register", Some("step=2&lang=fr"))
    );
    // The choice is kept: a later page without `?lang=` is French too.
    c.goto(&p.url("/register")).await.unwrap();
    let lang = c
        .execute("return document.documentElement.lang", vec![])
        .await
        .unwrap();
    assert_eq!(lang, "fr", "the choice of language was forgotten");
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_opening_counts_down_and_then_lets_the_visitor_in() {
    let origin = origin(10, 1).await;
    let p = start_proxy(&origin, 1_000).await;
    let driver = chromedriver().await;
    let c = browser(&driver, "lb", true).await;
    // To the second, so seven to eight seconds from now.
    let opens_at = waitroom::clock::format_rfc3339(waitroom::clock::wall_ms() + 8_000);
    p.patch(serde_json::json!({ "opens_at": opens_at })).await;
    c.goto(&p.url("/register")).await.unwrap();
    assert!(
        text(&c, "headline").await.contains("D'Entrée mécht um"),
        "{}",
        text(&c, "headline").await
    );
    let first = text(&c, "countdown").await;
    assert!(first.starts_with("Mécht op an 0:0"), "{first}");
    // It counts down by itself, second by second...
    wait_until("the countdown to tick", Duration::from_secs(5), || async {
        let now = text(&c, "countdown").await;
        !now.is_empty() && now != first
    })
    .await;
    // ...and at the opening the visitor goes through to the page they asked for.
    wait_until("the origin's page", Duration::from_secs(30), || {
        at_origin(&c)
    })
    .await;
    assert_eq!(c.current_url().await.unwrap().path(), "/register");
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_that_does_not_answer_gets_a_page_that_tries_again_by_itself() {
    // Nothing listens where the origin should be, yet.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let p = support::ProxyBuilder::to(addr)
        .admission(600, 100, "10m")
        .toml("[breaker]\nhold_requests = \"300ms\"\nopen_for = \"500ms\"")
        .start()
        .await;
    let driver = chromedriver().await;
    let c = browser(&driver, "fr", true).await;
    c.goto(&p.url("/register?step=1")).await.unwrap();
    let html_lang = c
        .execute("return document.documentElement.lang", vec![])
        .await
        .unwrap();
    assert_eq!(html_lang, "fr");
    let headline = text(&c, "headline").await;
    assert!(headline.contains("Le site ne répond pas"), "{headline}");
    let ahead = text(&c, "ahead").await;
    assert!(
        ahead.contains("réessaie toute seule dans 5 secondes"),
        "{ahead}"
    );
    assert!(!at_origin(&c).await);
    let shots = target_dir().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    inspect(&c, &axe_source(), &shots, "error").await;
    // The site comes up: the page gets there by itself, on the page asked for.
    let _origin = support::origin_at(addr, 10, 1).await;
    wait_until(
        "the page trying again by itself",
        Duration::from_secs(30),
        || async { at_origin(&c).await },
    )
    .await;
    let url = c.current_url().await.unwrap();
    assert!(url.as_str().ends_with("/register?step=1"), "{url}");
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_citizen_registering_never_meets_the_session_limit_that_stops_a_shared_admission() {
    let origin = origin(50, 1).await;
    // The default session limit (20 a second, 60 at once).
    let p = proxy(&origin).admission(600, 100, "10m").start().await;
    // Meanwhile one admission is shared by 50 clients, who keep asking.
    let http = Http::new();
    let mut shared = p.visitor(&http);
    assert!(shared.get("/").await.unwrap().is_from_origin());
    let cookie = format!("waitroom={}", shared.cookie.clone().unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut hammer = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (http, url, cookie, stop) = (http.clone(), p.url("/"), cookie.clone(), stop.clone());
        hammer.spawn(async move {
            let mut limited = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = http
                    .send(http::Method::GET, &url, None, &[("cookie", &cookie)])
                    .await
                    .unwrap();
                limited += u32::from(r.status == 429);
            }
            limited
        });
    }

    let driver = chromedriver().await;
    let c = browser(&driver, "en", true).await;
    let too_many = |html: &str| html.contains("Too many requests");
    c.goto(&p.url("/")).await.unwrap();
    assert!(at_origin(&c).await);
    c.find(Locator::LinkText("Register"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // A citizen who reloads the form a few times, impatient.
    for _ in 0..5 {
        c.refresh().await.unwrap();
        let html = c.source().await.unwrap();
        assert!(at_origin(&c).await && !too_many(&html), "{html}");
    }
    fill_the_form(&c).await;
    c.find(Locator::Css("form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until("the confirmation", Duration::from_secs(20), || async {
        c.find(Locator::Id("confirmation")).await.is_ok()
    })
    .await;
    assert!(!too_many(&c.source().await.unwrap()));
    c.close().await.unwrap();

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut limited = 0;
    while let Some(done) = hammer.join_next().await {
        limited += done.unwrap();
    }
    assert!(limited > 0, "the shared admission was never throttled");
    assert_eq!(origin.stats().await["registrations"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_challenge_on_a_browser_earns_its_place_and_a_script_does_not() {
    let origin = origin(10, 1).await;
    let p = proxy(&origin).admission(30, 1, "10m").start().await;
    let http = Http::new();
    // Somebody is inside: newcomers queue.
    let mut inside = p.visitor(&http);
    assert!(inside.get("/").await.unwrap().is_from_origin());
    // Switched on live (a low difficulty keeps the test short).
    let on = p
        .admin_call(
            http::Method::PATCH,
            "/admin/protection",
            Some(r#"{"proof_of_work": true, "pow_difficulty": 12}"#.into()),
        )
        .await;
    assert_eq!(on.status, 200, "{}", on.text());
    assert_eq!(on.json()["proof_of_work"], true);
    let issued = p.state().await["places_issued"].clone();

    // A script that does not answer gets challenges, never a place.
    for _ in 0..20 {
        let mut script = p.visitor(&http);
        let r = script.get("/register").await.unwrap();
        assert_eq!(r.status, 200);
        let html = r.text();
        assert!(html.contains("id=\"checking\""), "{html}");
        assert!(
            html.contains("<noscript>") && html.contains("needs JavaScript"),
            "{html}"
        );
        assert!(script.cookie.is_none(), "a place without an answer");
    }
    let json = p
        .get("/_waitroom/status", &[("accept", "application/json")])
        .await
        .unwrap();
    assert_eq!(json.status, 403);
    assert_eq!(json.json()["difficulty"], 12);
    assert_eq!(p.state().await["places_issued"], issued);

    // A browser answers by itself and lands in the line on the page it asked for.
    let driver = chromedriver().await;
    let c = browser(&driver, "en", true).await;
    c.goto(&p.url("/register")).await.unwrap();
    wait_until(
        "a place after the challenge",
        Duration::from_secs(30),
        || async { text(&c, "headline").await.contains("number 1") },
    )
    .await;
    assert_eq!(c.current_url().await.unwrap().path(), "/register");
    let metrics = p.metrics().await;
    assert!(
        metrics.contains("waitroom_challenges_total{outcome=\"solved\"} 1"),
        "{metrics}"
    );
    c.close().await.unwrap();

    // Switched off, a newcomer gets a place at once again.
    let off = p
        .admin_call(
            http::Method::PATCH,
            "/admin/protection",
            Some(r#"{"proof_of_work": false}"#.into()),
        )
        .await;
    assert_eq!(off.status, 200);
    let mut later = p.visitor(&http);
    later.get("/").await.unwrap();
    assert!(later.cookie.is_some(), "no place with the challenge off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_looks_like_another_site_keeps_every_click_on_this_one() {
    let origin = origin(10, 1).await;
    let p = start_proxy(&origin, 1_000).await;
    p.pause().await;
    let driver = chromedriver().await;
    let c = browser(&driver, "en", true).await;
    // `/%5Cevil.example/` is a 400 now, with no link at all (issue 26): below.
    for path in ["//evil.example/", "///evil.example", "//evil.example/x?a=b"] {
        c.goto(&p.url(path)).await.unwrap();
        c.find(Locator::Css("#languages summary"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.find(Locator::Css("a[hreflang=fr]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_until("the French page", Duration::from_secs(10), || async {
            c.execute("return document.documentElement.lang", vec![])
                .await
                .is_ok_and(|l| l == "fr")
        })
        .await;
        let url = c.current_url().await.unwrap();
        assert_eq!(
            (url.host_str(), url.port()),
            (Some("127.0.0.1"), Some(p.public.port())),
            "{path}: a click led to {url}"
        );
    }
    c.goto(&p.url("/%5Cevil.example/")).await.unwrap();
    let links = c
        .execute("return document.links.length", vec![])
        .await
        .unwrap();
    assert_eq!(links, 0, "a path that cannot be read one way only: no link");
    let url = c.current_url().await.unwrap();
    assert_eq!(url.port(), Some(p.public.port()), "no redirect: {url}");
    c.close().await.unwrap();
}

#[tokio::test]
async fn past_its_addresss_allowance_a_browser_earns_its_kept_place_by_itself() {
    let origin = origin(10, 1).await;
    // Everybody here comes from 127.0.0.1: two places at once for the address,
    // then one a minute.
    let p = proxy(&origin)
        .admission(30, 1, "10m")
        .clients("places_per_minute = 1\nplaces_burst = 2")
        .start()
        .await;
    let http = Http::new();
    let mut inside = p.visitor(&http);
    assert!(inside.get("/").await.unwrap().is_from_origin());
    let mut ahead = p.visitor(&http);
    assert!(!ahead.get("/register").await.unwrap().is_from_origin());
    // The third from the address: a place kept, earned by the page's own work.
    let driver = chromedriver().await;
    let c = browser(&driver, "de", true).await;
    c.goto(&p.url("/register")).await.unwrap();
    wait_until(
        "the kept place, earned",
        Duration::from_secs(30),
        || async { text(&c, "headline").await.contains("Nummer 2") },
    )
    .await;
    assert_eq!(c.current_url().await.unwrap().path(), "/register");
    assert_eq!(
        p.metric("waitroom_kept_places_total{outcome=\"earned_work\"}")
            .await,
        1.0
    );
    assert_eq!(
        p.metric("waitroom_rate_limited_total{limit=\"places\"}")
            .await,
        0.0,
        "nobody refused"
    );
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lottery_pre_queue_promises_no_place_and_explains_the_drawn_one() {
    let origin = origin(10, 1).await;
    // Room for two, both taken: after the opening everybody still waits, at the
    // place the draw gave them.
    let p = proxy(&origin)
        .admission(60, 2, "10m")
        .toml("[queue]\npoll_min = \"500ms\"\npoll_max = \"1s\"\nabandon_min = \"10m\"")
        .start()
        .await;
    let http = Http::new();
    for _ in 0..2 {
        assert!(p.visitor(&http).get("/").await.unwrap().is_from_origin());
    }
    let later = waitroom::clock::format_rfc3339(waitroom::clock::wall_ms() + 3_600_000);
    let r = p
        .patch(serde_json::json!({ "opens_at": later, "lottery": true }))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    wait_until("the lottery seen", Duration::from_secs(10), || async {
        let l = http
            .send(http::Method::GET, &p.url("/_waitroom/lottery"), None, &[])
            .await
            .unwrap();
        l.json()["lottery"] == true
    })
    .await;
    // Some who came before, so that the draw has something to draw.
    for _ in 0..6 {
        p.visitor(&http).status().await.unwrap();
    }
    let driver = chromedriver().await;
    let expected = [
        (
            "de",
            "Sie sind in der Auslosung",
            "Nummer",
            "aus der Auslosung",
        ),
        (
            "fr",
            "Vous participez au tirage au sort",
            "numéro",
            "issu du tirage",
        ),
        (
            "lb",
            "Dir sidd an der Auslousung",
            "Nummer",
            "aus der Auslousung",
        ),
        ("en", "You are in the draw", "number", "from the draw"),
    ];
    let mut browsers = Vec::new();
    for (lang, in_draw, number, _) in expected {
        let c = browser(&driver, lang, true).await;
        c.goto(&p.url("/register")).await.unwrap();
        let headline = text(&c, "headline").await;
        assert!(headline.contains(in_draw), "{lang}: {headline}");
        // The opening's time, as the page shows times (24-hour, the zone named).
        let b = headline.as_bytes();
        let hh_mm_zone = (0..b.len().saturating_sub(6)).any(|i| {
            b[i..i + 2].iter().all(u8::is_ascii_digit)
                && b[i + 2] == b':'
                && b[i + 3..i + 5].iter().all(u8::is_ascii_digit)
                && b[i + 5] == b' '
                && b.get(i + 6).is_some_and(u8::is_ascii_uppercase)
        });
        assert!(hh_mm_zone, "{lang}: {headline}");
        let ahead = text(&c, "ahead").await;
        assert!(
            !ahead.contains(number) && text(&c, "eta").await.is_empty(),
            "{lang}: {ahead}"
        );
        let title = c.title().await.unwrap();
        assert!(
            !title.starts_with('#'),
            "{lang}: a place in the title: {title}"
        );
        browsers.push(c);
    }
    // The opening: the order is drawn.
    let now = waitroom::clock::format_rfc3339(waitroom::clock::wall_ms());
    assert_eq!(
        p.patch(serde_json::json!({ "opens_at": now })).await.status,
        200
    );
    for (c, (lang, _, number, drawn)) in browsers.iter().zip(expected) {
        wait_until(
            &format!("{lang}: the drawn place explained"),
            Duration::from_secs(30),
            || async { text(c, "drawn").await.contains(drawn) },
        )
        .await;
        assert!(text(c, "headline").await.contains(number), "{lang}");
        // Read out once, with the place.
        let announced = c
            .execute(
                "return document.getElementById('announce').textContent",
                vec![],
            )
            .await
            .unwrap();
        let announced = announced.as_str().unwrap_or_default();
        assert!(
            announced.contains(drawn) && announced.contains(number),
            "{lang}: announced {announced:?}"
        );
    }
    for c in browsers {
        c.close().await.unwrap();
    }
}

/// The upper end, in minutes, of an English estimate shown ("less than a minute":
/// 1; "about 3 minutes": 3; "2 to 4 minutes": 4); `None` for none.
fn eta_minutes(text: &str) -> Option<u64> {
    if text.contains("less than a minute") {
        return Some(1);
    }
    text.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .next_back()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_bound_by_its_capacity_never_shows_a_longer_wait_while_the_place_falls() {
    let origin = origin(50, 1).await;
    // Four sessions at once, of 20 s: the line moves as sessions end, in waves.
    let p = proxy(&origin)
        .admission(600, 4, "20s")
        .toml("[queue]\npoll_min = \"1s\"\npoll_max = \"5s\"\nabandon_min = \"30s\"")
        .start()
        .await;
    let http = Http::new();
    let start = std::time::Instant::now();
    // 40 ahead, each using the site once when let in.
    let b = support::Behaviour {
        requests_after: 1,
        leave_after_polls: None,
        think: Duration::ZERO,
    };
    let mut crowd = Vec::new();
    for _ in 0..40 {
        let mut v = p.visitor(&http);
        crowd.push(tokio::spawn(async move {
            support::visit(&mut v, start, b).await
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let driver = chromedriver().await;
    let c = browser(&driver, "en", true).await;
    c.goto(&p.url("/register")).await.unwrap();
    // Every change of the screen-reader region, timed by the page itself.
    c.execute(
        "window.__said=[];new MutationObserver(function(){window.__said.push(Date.now())})\
         .observe(document.getElementById('announce'),{childList:true,characterData:true,subtree:true})",
        vec![],
    )
    .await
    .unwrap();
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let watched = std::time::Instant::now();
    while watched.elapsed() < Duration::from_secs(180) {
        let headline = text(&c, "headline").await;
        let Some(place) = headline
            .split(|ch: char| !ch.is_ascii_digit())
            .find_map(|n| n.parse::<u64>().ok())
        else {
            break; // let in
        };
        if let Some(minutes) = eta_minutes(&text(&c, "eta").await) {
            if let Some(&(last_place, last_minutes)) = seen.last() {
                assert!(
                    !(place < last_place && minutes > last_minutes),
                    "at {:?}: place {last_place} → {place}, estimate {last_minutes} → {minutes} min",
                    watched.elapsed()
                );
            }
            seen.push((place, minutes));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(seen.len() > 100, "watched too little: {seen:?}");
    let (first, last) = (seen[0].0, seen[seen.len() - 1].0);
    assert!(last < first, "the place never fell: {first} → {last}");
    let said: Vec<u64> = c
        .execute("return window.__said", vec![])
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_f64().map(|t| t as u64))
        .collect();
    for pair in said.windows(2) {
        assert!(
            pair[1] - pair[0] >= 59_000,
            "the screen reader spoke twice within a minute: {said:?}"
        );
    }
    c.close().await.unwrap();
    for v in crowd {
        v.abort();
    }
}

/// The `points` of the first line in the console's chart `id`.
async fn chart_points(c: &Client, id: &str) -> String {
    c.execute(
        &format!("const l = document.querySelector('#{id} polyline'); return l ? l.getAttribute('points') : ''"),
        vec![],
    )
    .await
    .ok()
    .and_then(|v| v.as_str().map(str::to_owned))
    .unwrap_or_default()
}

/// Clicks `id` on the console and accepts the confirmation it asks for.
async fn confirm_click(c: &Client, id: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mut accepted = false;
    for _ in 0..50 {
        if c.accept_alert().await.is_ok() {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(accepted, "no confirmation was asked for {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_charts_the_line_live_and_steers_it() {
    let origin = origin(50, 5).await;
    let p = proxy(&origin)
        .admission(60, 1_000, "10m")
        .toml("[queue]\nabandon_min = \"10m\"")
        .toml("[[rooms]]\nname = \"tickets\"\npaths = [\"/tickets\"]")
        .start()
        .await;
    let http = Http::new();
    // A small crowd keeps arriving while the console is watched.
    let crowd = {
        let (http, base) = (http.clone(), p.url(""));
        tokio::spawn(async move {
            for _ in 0..60 {
                let mut v = support::Visitor::new(&base, &http);
                let _ = v.get("/").await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let driver = chromedriver().await;
    let c = browser(&driver, "en", true).await;
    c.goto(&format!("http://{}/", p.admin)).await.unwrap();
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(support::ADMIN_TOKEN)
        .await
        .unwrap();
    c.find(Locator::Css("#login-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_until(
        "the console to show the room",
        Duration::from_secs(20),
        || async { text(&c, "status").await.starts_with("Live") },
    )
    .await;
    assert_eq!(
        text(&c, "now-instances").await,
        "1",
        "this instance, alone in memory mode"
    );
    // The charts move as the line grows.
    let first = chart_points(&c, "chart-waiting").await;
    wait_until(
        "the waiting chart to move",
        Duration::from_secs(20),
        || async {
            let now = chart_points(&c, "chart-waiting").await;
            !now.is_empty() && now != first
        },
    )
    .await;
    crowd.await.unwrap();

    // Pause from the page: the line stops moving while people wait.
    confirm_click(&c, "pause").await;
    wait_until("the pause to apply", Duration::from_secs(10), || async {
        p.state().await["paused"] == true
    })
    .await;
    let waiting = p.state().await["queue_length"].as_u64().unwrap();
    assert!(waiting >= 20, "{waiting} waiting");
    let called = p.metric("waitroom_called_total").await;
    wait_until(
        "the page to say paused",
        Duration::from_secs(10),
        || async { text(&c, "now-mode").await == "paused" },
    )
    .await;
    assert_eq!(
        p.metric("waitroom_called_total").await,
        called,
        "called while paused"
    );

    // A new rate and resume from the page: the line drains at the new rate.
    c.find(Locator::Id("rate-input"))
        .await
        .unwrap()
        .send_keys("6000")
        .await
        .unwrap();
    confirm_click(&c, "rate-form-submit").await;
    wait_until("the new rate to apply", Duration::from_secs(10), || async {
        p.state().await["new_users_per_minute"] == 6000
    })
    .await;
    confirm_click(&c, "pause").await;
    wait_until(
        "the line to drain at the new rate",
        Duration::from_secs(20),
        || async { p.state().await["queue_length"] == 0 },
    )
    .await;
    assert!(p.metric("waitroom_called_total").await >= called + waiting as f64);

    // Another room is picked and steered on its own.
    c.find(Locator::Id("room-select"))
        .await
        .unwrap()
        .select_by_value("tickets")
        .await
        .unwrap();
    confirm_click(&c, "pause").await;
    let tickets_paused = || async {
        p.admin_call(Method::GET, "/admin/state?room=tickets", None)
            .await
            .json()["paused"]
            == true
    };
    wait_until(
        "the tickets room to pause",
        Duration::from_secs(10),
        tickets_paused,
    )
    .await;
    assert_eq!(p.state().await["paused"], false, "the default room runs on");

    // An event scheduled from the page, in that room.
    let in_an_hour = waitroom::clock::format_rfc3339(waitroom::clock::wall_ms() + 3_600_000);
    for (id, value) in [
        ("event-opens", in_an_hour.as_str()),
        ("event-capacity", "25"),
        ("event-message", "Ticket sale"),
    ] {
        c.find(Locator::Id(id))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    confirm_click(&c, "event-submit").await;
    let event = || async {
        p.admin_call(Method::GET, "/admin/event?room=tickets", None)
            .await
            .json()["event"]
            .clone()
    };
    wait_until(
        "the event to be scheduled",
        Duration::from_secs(10),
        || async { event().await["opens_at"] == in_an_hour.as_str() },
    )
    .await;
    assert_eq!(event().await["max_active_users"], 25);
    wait_until(
        "the page to show the event",
        Duration::from_secs(10),
        || async { text(&c, "event-now").await.contains(&in_an_hour) },
    )
    .await;

    // On a phone (360 px) and a laptop (1280 px): no sideways scrolling, and no
    // serious or critical axe-core violation.
    let source = axe_source();
    for width in [360, 1280] {
        c.set_window_size(width, 900).await.unwrap();
        let fits = c
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(fits, true, "the console scrolls sideways at {width} px");
        let (bad, passes) = axe(&c, &source).await;
        assert!(passes > 10, "axe-core checked too little: {passes}");
        assert!(bad.is_empty(), "at {width} px: {bad:#?}");
    }
    c.close().await.unwrap();
}

/// `waitroom demo` as a process, stopped when dropped.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_a_single_browser_its_place_behind_a_crowd() {
    use std::io::BufRead;
    let port = support::three_free_ports();
    let mut demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_waitroom"))
            .args(["demo", "--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The demo says when its crowd is in line (it reads no more of its output).
    let stdout = demo.0.stdout.take().unwrap();
    let (lines, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let mut crowd = None;
    while let Ok(line) = said.recv_timeout(Duration::from_secs(60)) {
        if line.contains("simulated crowd") {
            crowd = Some(line);
            break;
        }
    }
    let crowd = crowd.expect("the demo never said its crowd was in line");
    assert!(crowd.contains("crowd of 8"), "{crowd}");

    // One browser, one tab: its very first page shows it behind others.
    let driver = chromedriver().await;
    let c = browser(&driver, "en", true).await;
    c.goto(&format!("http://127.0.0.1:{port}/")).await.unwrap();
    let headline = text(&c, "headline").await;
    let place: u64 = headline
        .trim_start_matches("You are number ")
        .trim_end_matches(" in line.")
        .parse()
        .unwrap_or_else(|_| panic!("no place on the first page: {headline:?}"));
    assert!(place >= 2, "nobody ahead: {headline}");
    let title = c.title().await.unwrap();
    assert_eq!(title, format!("#{place} · Demo registration"));
    // The crowd moves: the place counts down without the visitor doing anything.
    wait_until(
        "the place counting down",
        Duration::from_secs(60),
        || async {
            text(&c, "headline")
                .await
                .trim_start_matches("You are number ")
                .trim_end_matches(" in line.")
                .parse::<u64>()
                .is_ok_and(|now| now < place)
        },
    )
    .await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_whose_session_lapsed_mid_form_is_told_and_goes_first_without_a_resent_form() {
    let origin = origin(10, 1).await;
    // One at a time; a session lapses after 3 s without a request.
    let p = proxy(&origin)
        .admission(600, 1, "3s")
        .toml("[queue]\npoll_min = \"500ms\"\npoll_max = \"1s\"\nabandon_min = \"10m\"")
        .start()
        .await;
    let driver = chromedriver().await;
    let c = browser(&driver, "en", true).await;
    c.goto(&p.url("/register")).await.unwrap();
    assert!(at_origin(&c).await, "the first visitor goes straight in");
    fill_the_form(&c).await;
    // Two others queue behind while entry is paused, and keep polling.
    p.pause().await;
    let http = Http::new();
    let mut others = vec![p.visitor(&http), p.visitor(&http)];
    for v in &mut others {
        assert!(!v.get("/").await.unwrap().is_from_origin());
    }
    let others = std::sync::Arc::new(tokio::sync::Mutex::new(others));
    let polling = {
        let others = others.clone();
        tokio::spawn(async move {
            loop {
                for v in others.lock().await.iter_mut() {
                    let _ = v.status().await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    // The citizen stays on the form until their session lapsed.
    wait_until("the session to lapse", Duration::from_secs(30), || async {
        p.state().await["active_users"] == 0
    })
    .await;
    c.find(Locator::Css("form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Told what happened, first in line, and that the form must be sent again.
    wait_until("the explanation", Duration::from_secs(10), || async {
        text(&c, "lapsed").await.contains("Your session ended")
    })
    .await;
    let note = text(&c, "lapsed").await;
    assert!(note.contains("send it again"), "{note}");
    // Entry is paused: the page says so, and the place the citizen has.
    let place = text(&c, "ahead").await;
    assert!(place.contains("number 1"), "{place}");
    // Entry resumes: the citizen is let in before the two who have not had a turn.
    p.patch(serde_json::json!({"paused": false})).await;
    wait_until(
        "the citizen back at the site",
        Duration::from_secs(30),
        || at_origin(&c),
    )
    .await;
    polling.abort();
    for v in others.lock().await.iter_mut() {
        let s = v.status().await.unwrap().json();
        assert_ne!(
            s["state"], "admitted",
            "someone went before the citizen: {s}"
        );
    }
    // The page did not send the form again by itself: the citizen is on the form,
    // and the site has no registration.
    assert_eq!(c.current_url().await.unwrap().path(), "/register");
    assert!(c.find(Locator::Css("form button")).await.is_ok());
    assert_eq!(origin.stats().await["registrations"], 0);
    c.close().await.unwrap();
}

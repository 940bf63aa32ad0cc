//! The `waitroom` binary from outside: help, check-config, and the demo.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::three_free_ports;

const BIN: &str = env!("CARGO_BIN_EXE_waitroom");

fn check_config(text: &str) -> (bool, String) {
    let mut file = tempfile_in_target("check.toml");
    file.1.write_all(text.as_bytes()).unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&file.0)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file.0);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

fn tempfile_in_target(name: &str) -> (std::path::PathBuf, std::fs::File) {
    let dir = std::env::temp_dir().join(format!("waitroom-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}-{name}", rand::random::<u32>()));
    let f = std::fs::File::create(&path).unwrap();
    (path, f)
}

#[test]
fn help_exits_zero() {
    for args in [
        &["--help"][..],
        &["demo", "--help"],
        &["check-config", "--help"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn check_config_accepts_the_examples_and_names_key_and_reason() {
    let example = include_str!("../../../config/example.toml");
    let (ok, text) = check_config(example);
    assert!(ok, "{text}");
    for shipped in [
        include_str!("../../../config/demo.toml"),
        include_str!("../../../config/container.toml"),
        include_str!("../../../deploy/kubernetes/waitroom.toml"),
    ] {
        let (ok, text) = check_config(shipped);
        assert!(ok, "{text}");
    }

    let (ok, text) = check_config(&example.replace(
        "session_duration     = \"10m\"",
        "session_duration = \"ten minutes\"",
    ));
    assert!(!ok);
    assert!(text.contains("admission.session_duration:"), "{text}");
    let (ok, text) = check_config(&format!("{example}\n[extra]\nkey = 1\n"));
    assert!(!ok);
    assert!(text.contains("unknown field `extra`"), "{text}");
    let broken = std::env::temp_dir().join(format!("waitroom-broken-{}.html", std::process::id()));
    std::fs::write(&broken, "<p>{{ position </p>").unwrap();
    let page_with = |line: String| example.replace("[page]", &format!("[page]\n{line}"));
    let (ok, text) = check_config(&page_with(format!("template = \"{}\"", broken.display())));
    assert!(!ok);
    assert!(text.contains("page.template:"), "{text}");
    // A catalogue is named by its language's code.
    let folder = std::env::temp_dir().join(format!("waitroom-locales-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("Polish.toml"), "").unwrap();
    let (ok, text) = check_config(&page_with(format!("catalogues = \"{}\"", folder.display())));
    assert!(!ok);
    assert!(
        text.contains("page.catalogues:") && text.contains("Polish.toml"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&folder);
    // A room's page is checked as well, and named.
    let in_a_room = format!(
        "{example}
[[rooms]]
name = \"tickets\"
paths = [\"/tickets\"]
[rooms.page]
template = \"{}\"
",
        broken.display()
    );
    let (ok, text) = check_config(&in_a_room);
    assert!(!ok);
    assert!(
        text.contains("room tickets") && text.contains("page.template:"),
        "{text}"
    );
    let _ = std::fs::remove_file(&broken);
    let (ok, text) = check_config("this is not toml");
    assert!(!ok);
    assert!(text.contains("line 1: key with no value"), "{text}");
    let out = Command::new(BIN)
        .args(["check-config", "/nonexistent/waitroom.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading /nonexistent/waitroom.toml"));
}

#[test]
fn nothing_to_do_is_an_error() {
    let out = Command::new(BIN).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

fn get(addr: &str, path: &str) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn demo_serves_the_site_and_metrics_on_the_next_port() {
    let port = three_free_ports();
    let mut child = Command::new(BIN)
        .args(["demo", "--no-crowd", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let public = format!("127.0.0.1:{port}");
    let admin = format!("127.0.0.1:{}", port + 1);
    // Wait for the listener by retrying the connection (no fixed sleep).
    let mut page = None;
    for _ in 0..200 {
        if let Some(p) = get(&public, "/") {
            page = Some(p);
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let metrics = get(&admin, "/metrics");
    // The banner says which limits are in force, once they are known.
    let (lines, banner) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let mut in_force = None;
    while let Ok(line) = banner.recv_timeout(Duration::from_secs(20)) {
        if line.contains("limits in force") {
            in_force = Some(line);
            break;
        }
    }
    // SIGHUP (a closed terminal, a reload habit) does not end the demo.
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let after_hup = get(&public, "/");
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        in_force.is_some_and(|l| l.contains("new users per minute")),
        "no limits in the banner"
    );
    assert!(alive && after_hup.is_some(), "SIGHUP ended the demo");
    let page = page.expect("demo never answered");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.to_lowercase().contains("x-served-by: origin-stub"),
        "{page}"
    );
    let metrics = metrics.expect("no metrics on port + 1");
    assert!(metrics.contains("waitroom_requests_total"), "{metrics}");
}

/// Runs the demo with `args` and `RUST_LOG` (access log on), asks for `/` once,
/// stops it and returns what it wrote to standard output (not a terminal).
fn demo_log(args: &[&str]) -> String {
    use std::io::Read;
    let port = three_free_ports();
    let mut child = Command::new(BIN)
        .args(args)
        .args(["demo", "--no-crowd", "--port", &port.to_string()])
        .env("RUST_LOG", "info,waitroom::access=debug")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let public = format!("127.0.0.1:{port}");
    let served = (0..200).any(|_| {
        get(&public, "/").is_some() || {
            std::thread::sleep(Duration::from_millis(50));
            false
        }
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(served, "the demo never answered:\n{out}");
    out
}

#[test]
fn logs_are_json_lines_on_request_and_never_coloured_into_a_file() {
    let out = demo_log(&["--log-format", "json"]);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let serving = lines
        .iter()
        .find(|l| l["fields"]["message"] == "waitroom serving")
        .unwrap_or_else(|| panic!("no start line:\n{out}"));
    assert_eq!(serving["level"], "INFO");
    let access = lines
        .iter()
        .find(|l| l["target"] == "waitroom::access")
        .unwrap_or_else(|| panic!("no access log line:\n{out}"));
    assert_eq!(access["fields"]["path"], "/", "{access}");
    assert_eq!(access["fields"]["method"], "GET", "{access}");
    assert!(access["fields"]["status"].as_u64().is_some(), "{access}");

    let text = demo_log(&[]);
    assert!(text.contains("waitroom serving"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour escapes in a file:\n{text}"
    );
}

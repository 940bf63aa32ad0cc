//! A proxy in memory mode stopped with SIGTERM and started again continues the
//! same line: queued visitors keep their places, admitted visitors stay admitted.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{free_port, origin, Http};

fn start(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_waitroom"))
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

async fn wait_ready(http: &Http, admin: u16) {
    for _ in 0..400 {
        let url = format!("http://127.0.0.1:{admin}/readyz");
        if http
            .send(http::Method::GET, &url, None, &[])
            .await
            .is_ok_and(|r| r.status == 200)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the proxy never became ready");
}

fn sigterm(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "stopped with {exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_proxy_continues_the_same_line() {
    let origin = origin(10, 1).await;
    let dir = std::env::temp_dir().join(format!("waitroom-restart-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let (public, admin) = (free_port(), free_port());
    let config = dir.join("waitroom.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\npublic = \"127.0.0.1:{public}\"\nadmin = \"127.0.0.1:{admin}\"\n\
             [origin]\nurl = \"http://{}\"\n[admission]\nnew_users_per_minute = 600\nmax_active_users = 2\n\
             [store]\nstate_dir = \"{}\"\n[admin]\ntoken = \"restart-token\"\n[cookie]\nsecure = \"never\"\n",
            origin.addr,
            dir.join("state").display()
        ),
    )
    .unwrap();
    let http = Http::new();
    let mut proxy = start(&config);
    wait_ready(&http, admin).await;

    let base = format!("http://127.0.0.1:{public}");
    let mut visitors: Vec<support::Visitor> = (0..6)
        .map(|_| support::Visitor::new(&base, &http))
        .collect();
    for v in visitors.iter_mut() {
        v.get("/").await.unwrap();
    }
    let mut before = Vec::new();
    for (i, v) in visitors.iter_mut().enumerate() {
        let s = v.status().await.unwrap().json();
        if i < 2 {
            assert_eq!(s["state"], "admitted", "visitor {i}: {s}");
        } else {
            assert_eq!(s["state"], "queued", "visitor {i}: {s}");
        }
        before.push(s["position"].as_u64().unwrap());
    }
    assert_eq!(before, vec![0, 0, 1, 2, 3, 4]);

    sigterm(&mut proxy);
    assert!(
        dir.join("state/line.json").exists(),
        "the line was not saved"
    );
    let mut proxy = start(&config);
    wait_ready(&http, admin).await;

    for (i, v) in visitors.iter_mut().enumerate() {
        if i < 2 {
            let r = v.get("/register").await.unwrap();
            assert!(
                r.is_from_origin(),
                "admitted visitor {i} thrown out: {}",
                r.text()
            );
        } else {
            let s = v.status().await.unwrap().json();
            assert_eq!(s["state"], "queued", "visitor {i}: {s}");
            assert_eq!(
                s["position"].as_u64().unwrap(),
                before[i],
                "visitor {i} lost their place"
            );
        }
    }
    sigterm(&mut proxy);
    let _ = std::fs::remove_dir_all(&dir);
}

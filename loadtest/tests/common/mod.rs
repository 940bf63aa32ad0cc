//! What the loadtest's end-to-end tests share: a waitroom in this process, and a
//! real origin-stub process that can be killed.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::TcpListener;

/// The admin token of [`waitroom`].
pub const ADMIN_TOKEN: &str = "loadtest-token";

/// Starts a waitroom in front of `origin` with `sections` of TOML (admission,
/// queue, ...); it runs until the test process ends. Returns (public, admin).
pub async fn waitroom(origin: SocketAddr, sections: &str) -> (SocketAddr, SocketAddr) {
    waitroom_with(origin, "", sections).await
}

/// [`waitroom`] with more keys of `[origin]` (`origin_keys`, TOML lines).
pub async fn waitroom_with(
    origin: SocketAddr,
    origin_keys: &str,
    sections: &str,
) -> (SocketAddr, SocketAddr) {
    let text = format!(
        "[listen]\npublic = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[origin]\nurl = \"http://{origin}\"\n{origin_keys}\n\
         [admin]\ntoken = \"{ADMIN_TOKEN}\"\n[store]\nstate_dir = \"{}\"\n\
         [clients]\ntrusted_proxies = [\"127.0.0.1/32\"]\n{sections}",
        std::env::temp_dir()
            .join(format!("loadtest-waitroom-{}", rand::random::<u64>()))
            .display()
    );
    let config = waitroom::config::Config::from_toml(&text, None).unwrap();
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = (public.local_addr().unwrap(), admin.local_addr().unwrap());
    let (trigger, shutdown) = waitroom::shutdown::channel();
    std::mem::forget(trigger); // runs until the test process ends
    let keys = waitroom::token::Keyring::new(waitroom::token::KeyPair::generate(), Vec::new());
    tokio::spawn(waitroom::app::run(
        config,
        public,
        admin,
        Some(keys),
        shutdown,
    ));
    addrs
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The origin-stub binary, built beside this crate's (`cargo test --workspace`
/// and `scripts/test.sh` build it).
fn origin_stub_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_loadtest")).with_file_name("origin-stub");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p origin-stub` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A real origin-stub process, keeping its registrations in a file (a site with
/// a database), that can be killed and started again on the same port.
pub struct OriginProcess {
    pub addr: SocketAddr,
    data: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl OriginProcess {
    /// Starts one on a free port with these extra flags.
    pub fn start(args: &[&str]) -> Self {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let data = std::env::temp_dir().join(format!("origin-data-{}", rand::random::<u64>()));
        let mut origin = Self {
            addr,
            data,
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        origin.spawn();
        origin
    }

    fn spawn(&mut self) {
        let child = Command::new(origin_stub_binary())
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--data")
            .arg(&self.data)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..400 {
            if std::net::TcpStream::connect(self.addr).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("origin-stub did not start on {}", self.addr);
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, with its registrations.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for OriginProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.data);
    }
}

//! The `waitroom` binary as a process of its own, for the faults only a process
//! has: `kill -9`, SIGTERM, SIGSTOP, a restart on the same ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, Http};

/// A configuration file in a directory of its own, on two free ports.
pub struct Setup {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub public: u16,
    pub admin: u16,
    origin: SocketAddr,
}

impl Setup {
    /// A memory-mode proxy in front of `origin`, with `extra` TOML sections.
    pub fn memory(origin: SocketAddr, extra: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("waitroom-proc-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let (public, admin) = (free_port(), free_port());
        let config = dir.join("waitroom.toml");
        let setup = Self {
            dir,
            config,
            public,
            admin,
            origin,
        };
        setup.rewrite(extra);
        setup
    }

    /// Writes the configuration file again, with `extra` TOML sections.
    pub fn rewrite(&self, extra: &str) {
        let (public, admin, origin) = (self.public, self.admin, self.origin);
        let text = format!(
            "[listen]\npublic = \"127.0.0.1:{public}\"\nadmin = \"127.0.0.1:{admin}\"\n\
             [origin]\nurl = \"http://{origin}\"\n\
             [store]\nstate_dir = \"{}\"\n[admin]\ntoken = \"{}\"\n[cookie]\nsecure = \"never\"\n\
             [clients]\nplaces_per_minute = 0\n{extra}",
            self.dir.join("state").display(),
            super::ADMIN_TOKEN,
        );
        // Written whole, then renamed: a reader never sees half a file.
        let fresh = self.dir.join("waitroom.toml.new");
        std::fs::write(&fresh, text).unwrap();
        std::fs::rename(&fresh, &self.config).unwrap();
    }

    /// `http://127.0.0.1:PUBLIC`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.public)
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Starts the binary with this configuration (its log at warn to stderr).
    pub fn spawn(&self) -> Running {
        spawn(&self.config)
    }

    /// A call to the admin listener with the bearer token.
    pub async fn admin(
        &self,
        method: http::Method,
        path: &str,
        body: Option<String>,
    ) -> super::Reply {
        let admin = SocketAddr::from(([127, 0, 0, 1], self.admin));
        super::admin_call(admin, method, path, body).await
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `waitroom --config FILE`.
pub fn spawn(config: &Path) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_waitroom"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

/// Starts `waitroom --config FILE` logging at info into `log` (the log goes to
/// standard output).
pub fn spawn_logging(config: &Path, log: &Path) -> Running {
    logging(Command::new(env!("CARGO_BIN_EXE_waitroom")), config, log)
}

/// Starts `waitroom --config FILE` allowed `nofile` open files (through
/// `prlimit`, so the child is the proxy itself), logging at info into `log`.
pub fn spawn_with_fd_limit(config: &Path, nofile: u32, log: &Path) -> Running {
    let mut prlimit = Command::new("prlimit");
    prlimit
        .arg(format!("--nofile={nofile}:{nofile}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_waitroom"));
    logging(prlimit, config, log)
}

/// Runs `command` with `--config FILE`, its log at info into `log`.
fn logging(mut command: Command, config: &Path, log: &Path) -> Running {
    Running(
        command
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the proxy starts (prlimit, from util-linux, where used)"),
    )
}

/// A proxy process, killed when the test lets go of it, passed or failed: a
/// process left running would hold the test's output open (and its ports).
pub struct Running(pub Child);

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the admin listener on `admin` answers `/readyz` with 200.
pub async fn wait_ready(http: &Http, admin: u16) {
    for _ in 0..800 {
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

/// Sends `signal` (`TERM`, `KILL`, `STOP`, `CONT`) to process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// SIGTERM, then waits for a clean exit.
pub fn sigterm(child: &mut Child) {
    signal(child.id(), "TERM");
    let exit = child.wait().unwrap();
    assert!(exit.success(), "stopped with {exit:?}");
}

/// `kill -9`, as a crash.
pub fn kill9(child: &mut Child) {
    signal(child.id(), "KILL");
    let _ = child.wait();
}

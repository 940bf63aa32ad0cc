//! A real `redis-server` per test, on a free loopback port, killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running Redis server of this test's own.
pub struct RedisServer {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
    tls: bool,
}

impl RedisServer {
    /// Starts a server (fails the test with a clear message if `redis-server` is missing).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_on_free_port(extra, false)
    }

    fn start_on_free_port(extra: &[&str], tls: bool) -> Self {
        let dir = std::env::temp_dir().join(format!("waitroom-redis-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        for _ in 0..20 {
            let mut server = Self {
                port: super::free_port(),
                dir: dir.clone(),
                child: None,
                extra: extra.iter().map(|a| a.to_string()).collect(),
                tls,
            };
            if server.spawn() {
                return server;
            }
        }
        panic!("could not start redis-server on a free port");
    }

    /// Starts a server whose TLS port is the chosen port (`extra` sets `--port 0`).
    pub fn start_tls(extra: &[&str]) -> Self {
        Self::start_on_free_port(extra, true)
    }

    fn spawn(&mut self) -> bool {
        let port_flag = if self.tls { "--tls-port" } else { "--port" };
        let child = Command::new("redis-server")
            .args([
                port_flag,
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--cluster-config-file")
            .arg(format!("nodes-{}.conf", self.port))
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed: run scripts/test.sh, which installs it");
        self.child = Some(child);
        // Ready when it answers PING (or gone if the port was taken meanwhile).
        for _ in 0..200 {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                return false;
            }
            // A TLS port accepts TCP connections; that is enough to know it listens.
            let ready = if self.tls {
                std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                ping(self.port)
            };
            if ready {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// How waitroom reaches it.
    pub fn target(&self) -> waitroom::config::RedisTarget {
        waitroom::config::RedisTarget {
            url: self.url(),
            cluster: false,
            tls_ca: None,
        }
    }

    /// Kills the server (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes it (SIGSTOP): connections stay open, nothing is answered.
    pub fn stop(&self) {
        self.signal("STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        super::process::signal(pid, signal);
    }

    /// Starts it again on the same port (empty: it keeps nothing on disk).
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn(),
            "redis-server did not come back on port {}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A three-node Redis Cluster (three primaries, no replicas) of this test's own.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers and joins them into one cluster.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli is needed (it comes with redis-server)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Ready when every node says the cluster is ok.
        for _ in 0..500 {
            let ok = nodes.iter().all(|n| {
                Command::new("redis-cli")
                    .args(["-p", &n.port.to_string(), "cluster", "info"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
            });
            if ok {
                return Self { nodes };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the cluster never reached cluster_state:ok");
    }

    /// How waitroom reaches it: one node (clients discover the others).
    pub fn target(&self) -> waitroom::config::RedisTarget {
        waitroom::config::RedisTarget {
            url: self.nodes[0].url(),
            cluster: true,
            tls_ca: None,
        }
    }
}

/// A TLS-only Redis with a password and a CA of its own (made with `openssl`).
pub struct TlsRedis {
    pub server: RedisServer,
    pub ca: std::path::PathBuf,
    pub password: &'static str,
}

impl TlsRedis {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("waitroom-tls-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl is needed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=waitroom test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ]);
        let path = |f: &str| dir.join(f).display().to_string();
        let password = "s3cret-pass";
        // TLS on the port, plain TCP off; readiness is checked over TLS by the caller.
        let server = RedisServer::start_tls(&[
            "--port",
            "0",
            "--tls-cert-file",
            &path("server.pem"),
            "--tls-key-file",
            &path("server.key"),
            "--tls-ca-cert-file",
            &path("ca.pem"),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            password,
        ]);
        Self {
            server,
            ca: dir.join("ca.pem"),
            password,
        }
    }

    pub fn target(&self) -> waitroom::config::RedisTarget {
        waitroom::config::RedisTarget {
            url: format!("rediss://:{}@127.0.0.1:{}", self.password, self.server.port),
            cluster: false,
            tls_ca: Some(self.ca.clone()),
        }
    }
}

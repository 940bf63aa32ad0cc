//! A real nginx as the origin: it resolves dot-segments and decodes escapes in
//! paths as most origins do, which is what a path trick behind waitroom relies on.
//! `scripts/test.sh` installs it (Debian's `nginx-light`) when it is missing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What the origin answers on a page outside the bypass prefixes.
pub const FORM: &str = "REGISTRATION-FORM";
/// What it answers on its static file.
pub const STATIC: &str = "STATIC-FILE";
/// What it answers on `/favicon.ico`.
pub const FAVICON: &str = "FAVICON-FILE";
/// What it answers on `/health`.
pub const HEALTHY: &str = "HEALTHY";

/// A running nginx; stopped when dropped.
pub struct Nginx {
    pub addr: std::net::SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// nginx serving the example's bypassed files (`/static/app.css`, `/favicon.ico`,
/// `/health`) and, on every other path and method, the registration form.
pub async fn site() -> Nginx {
    let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("nginx is needed by this test: `bash scripts/test.sh` installs it (apt-get install nginx-light)");
    let dir = std::env::temp_dir().join(format!("waitroom-nginx-{}", rand::random::<u64>()));
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("static")).unwrap();
    std::fs::write(www.join("static/app.css"), STATIC).unwrap();
    std::fs::write(www.join("favicon.ico"), FAVICON).unwrap();
    for _ in 0..20 {
        let port = super::free_port();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}; proxy_temp_path {d};\n\
             fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
             server {{\n  listen 127.0.0.1:{port};\n\
             location /static/ {{ root {w}; }}\n\
             location = /favicon.ico {{ root {w}; }}\n\
             location /health {{ return 200 \"{HEALTHY}\"; }}\n\
             location / {{ return 200 \"{FORM}\"; }}\n }}\n}}\n",
            d = dir.display(),
            w = www.display(),
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Nginx { addr, child, dir };
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The port was taken meanwhile: another one.
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!(
        "nginx did not start; see {}",
        dir.join("error.log").display()
    );
}

//! TLS and HTTP/2 at the edge, and an HTTPS origin (issue 10, acceptance 7), with
//! certificates generated for the test (a CA of its own, certificates for
//! 127.0.0.1 signed by it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{origin, proxy};
use bytes::Bytes;
use http::{Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// A CA of the test's own, writing certificates for 127.0.0.1 into `dir`.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Ca {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("waitroom-tls-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
        Self { issuer, dir }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Writes a new certificate and key for 127.0.0.1 as `name.pem`/`name.key`;
    /// returns the certificate (DER).
    fn issue(&self, name: &str) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        // The key first: a reload between the two writes sees a pair that does not
        // match, and keeps the certificate in force.
        std::fs::write(self.dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        std::fs::write(self.dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        cert.der().to_vec()
    }

    fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(self.ca_path()).unwrap())
            .unwrap();
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
    }

    /// An HTTPS client trusting this CA, speaking only `version`.
    fn client(&self, version: Version) -> Client<HttpsConnector<HttpConnector>, Full<Bytes>> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.client_config())
            .https_only();
        let connector = if version == Version::HTTP_2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        Client::builder(TokioExecutor::new())
            .http2_only(version == Version::HTTP_2)
            .build(connector)
    }

    /// The certificate a new TLS connection to `addr` is shown (DER).
    async fn presented(&self, addr: std::net::SocketAddr) -> Vec<u8> {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(self.client_config()));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[tokio::test]
async fn https_with_http2_and_http11_a_renewed_certificate_and_an_https_origin() {
    let ca = Ca::new();
    let first = ca.issue("edge");
    let origin = origin(10, 1).await;
    let proxy = proxy(&origin)
        .admission(600, 100, "10m")
        .cookie_secure("auto")
        .listen_toml(&format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"",
            path(&ca.dir.join("edge.pem")),
            path(&ca.dir.join("edge.key"))
        ))
        .start()
        .await;
    let url = format!("https://127.0.0.1:{}/", proxy.public.port());

    // Both versions are admitted and forwarded; the cookie is Secure under TLS.
    for version in [Version::HTTP_2, Version::HTTP_11] {
        let client = ca.client(version);
        let r = client
            .request(Request::get(&url).body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{version:?}: {e}"));
        assert_eq!(r.version(), version);
        assert_eq!(r.status(), 200, "{version:?}");
        assert_eq!(r.headers()["x-served-by"], "origin-stub", "{version:?}");
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.contains("; Secure"), "{version:?}: {cookie}");
        // The admission works on the next request of the same client.
        let token = cookie.split(';').next().unwrap().to_owned();
        let again = client
            .request(
                Request::get(format!("{url}register"))
                    .header("cookie", &token)
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(again.headers()["x-served-by"], "origin-stub");
        assert!(again.headers().get("set-cookie").is_none(), "{version:?}");
        let _ = again.into_body().collect().await;
    }

    // A renewed certificate is served without a restart.
    assert_eq!(ca.presented(proxy.public).await, first);
    let renewed = ca.issue("edge");
    let started = Instant::now();
    while ca.presented(proxy.public).await != renewed {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An HTTPS origin speaking HTTP/2 and HTTP/1.1 (by ALPN) that says which it got.
async fn https_origin(ca: &Ca) -> std::net::SocketAddr {
    ca.issue("origin");
    let tls =
        waitroom::tls::ServerTls::load(&ca.dir.join("origin.pem"), &ca.dir.join("origin.key"))
            .unwrap();
    let acceptor = tls.acceptor();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let body = format!("{:?} {}", req.version(), req.uri().path());
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("x-served-by", "tls-origin")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_https_origin_is_reached_over_http2() {
    let ca = Ca::new();
    let origin = https_origin(&ca).await;
    let proxy = crate::support::ProxyBuilder::to(origin)
        .admission(600, 100, "10m")
        .origin_toml(&format!(
            "url = \"https://127.0.0.1:{}\"\ntls_ca = \"{}\"",
            origin.port(),
            path(&ca.ca_path())
        ))
        .start()
        .await;
    let r = proxy.get("/register", &[]).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-served-by"], "tls-origin");
    assert_eq!(r.text(), "HTTP/2.0 /register");
}

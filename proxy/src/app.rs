//! Wiring: builds the parts from a [`Config`] and serves both listeners.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::Registry;
use tokio::net::TcpListener;

use crate::admin::Admin;
use crate::admission::Admission;
use crate::clock::Clock;
use crate::config::Config;
use crate::forward::{Forwarder, Peer};
use crate::metrics::Metrics;
use crate::public::{CookiePolicy, Public};
use crate::shutdown::Shutdown;
use crate::store::memory::MemoryStore;
use crate::token::{Keyring, Tokens};

/// The built-in demo configuration (`config/demo.toml`).
pub const DEMO_TOML: &str = include_str!("../../config/demo.toml");

/// The demo configuration with the public port `port`, admin on `port + 1` and
/// the origin on `port + 2`.
pub fn demo_config(port: u16) -> Config {
    let mut c = Config::from_toml(DEMO_TOML, None).expect("the demo configuration is valid");
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    c.public = at(port);
    c.admin = at(port.wrapping_add(1));
    c.origin = format!("http://{}", at(port.wrapping_add(2)))
        .parse()
        .expect("a valid URL");
    c
}

/// Runs the proxy on already-bound listeners until `shutdown` fires.
pub async fn run(
    config: Config,
    public: TcpListener,
    admin: TcpListener,
    keys: Keyring,
    shutdown: Shutdown,
) {
    let clock = Clock::system();
    let registry = Registry::new();
    let metrics = Metrics::new(&registry);
    let store = Arc::new(MemoryStore::new(config.timing, config.settings));
    let tokens = Tokens::new(
        keys,
        clock.clone(),
        config.queue_token_ttl.as_secs(),
        // Sessions slide server-side; the token only needs to outlive a long visit.
        (config.timing.session_ms / 1000).max(3600) * 4,
    );
    let admission = Admission::new(store, tokens, clock, metrics.clone());
    tokio::spawn(admission.clone().run_pump(shutdown.clone()));

    let forwarder = Forwarder::new(
        config.origin.clone(),
        config.origin_timeout,
        metrics.clone(),
    );
    let public_service = Arc::new(Public::new(
        admission.clone(),
        forwarder,
        CookiePolicy {
            name: config.cookie_name.clone(),
            secure: config.cookie_secure,
        },
        config.bypass.clone(),
        metrics,
        config.timing.poll_max_ms.min(5_000),
    ));
    let admin_service = Arc::new(Admin::new(admission, registry, config.admin_token.clone()));

    let public_task = crate::server::serve(
        public,
        move |req, addr| {
            let s = public_service.clone();
            async move { s.handle(req, Peer { addr, tls: false }).await }
        },
        shutdown.clone(),
    );
    let admin_task = crate::server::serve(
        admin,
        move |req, _| {
            let s = admin_service.clone();
            async move { s.handle(req).await }
        },
        shutdown,
    );
    tokio::join!(public_task, admin_task);
}

//! waitroom: a virtual waiting room, an admission-control reverse proxy.
//!
//! # Layout
//!
//! - [`config`]: the TOML file and its validation into a [`config::Config`].
//! - [`clock`]: time in milliseconds, following tokio's (pausable) clock.
//! - [`admission`]: the decision (who goes in, who waits) and the line's rules
//!   ([`admission::line`]): places, outflow (GCRA), capacity, sessions, abandonment.
//! - [`store`]: where the line lives, behind one trait ([`store::Store`]).
//! - [`token`]: signed queue and admission tokens (EdDSA JWTs) and their keys.
//! - [`clients`]: who the client is, through trusted proxies.
//! - [`limits`]: rate limits per client (new places) and per session.
//! - [`pow`]: the proof-of-work challenge an operator can put before new places.
//! - [`path`]: the path as the origin will understand it, on which every routing
//!   decision is taken and which is forwarded.
//! - [`public`]: the public listener: routing, `/_waitroom/*`, forwarding decisions.
//! - [`queue_page`]: the page and JSON a waiting visitor sees.
//! - [`forward`]: the pooled hyper client to the origin.
//! - [`breaker`]: the origin's health: a circuit breaker that holds the line.
//! - [`admin`]: the admin listener: metrics, health, state, settings.
//! - [`console`]: the ops console's page on the admin listener; [`history`]: the
//!   last 30 minutes it charts.
//! - [`metrics`]: Prometheus metrics, injected.
//! - [`http`]: bodies, cookies and the one place errors become answers.
//! - [`server`]: accepting connections and serving them until shutdown;
//!   [`write_deadline`]: a client that takes nothing of an answer is cut.
//! - [`handover`]: zero-downtime restarts: a new process takes the listeners over.
//! - [`tls`]: TLS at the edge (certificates reloaded when they change) and to the origin.
//! - [`reload`]: a new configuration put in force without a restart.
//! - [`shutdown`]: the shutdown signal.
//! - [`app`]: wiring it all together: [`app::run`].

pub mod admin;
pub mod admission;
pub mod app;
pub mod breaker;
pub mod clients;
pub mod clock;
pub mod config;
pub mod console;
pub mod crowd;
pub mod event;
pub mod forward;
pub mod h1;
pub mod handover;
pub mod history;
pub mod http;
pub mod instance;
pub mod limits;
pub mod metrics;
pub mod path;
pub mod pow;
pub mod public;
pub mod queue_page;
pub mod reload;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod token;
pub mod write_deadline;

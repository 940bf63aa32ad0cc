//! The line and the edge from outside: tokens, abandonment, capacity, smoothness
//! at the origin, TLS, strict input, abuse, and the command line. One test binary
//! for them all (each file a module), which spares the suite several links.

#[path = "../support/mod.rs"]
mod support;

mod abandonment;
mod abuse;
mod capacity;
mod cli;
mod edge;
mod fairness;
mod smooth;
mod tls;
mod tokens;

//! What operators have: commands from the origin (`release`, `revoke`), reloading the
//! configuration, metrics that alert rules can rely on, the `waitroom admin` command
//! line and the console's API, the lottery opening, and several rooms in one process. One test binary for them all
//! (each file a module), which spares the suite several links.

#[path = "../support/mod.rs"]
mod support;

mod admin_cli;
mod commands;
mod events;
mod lottery;
mod metrics;
mod reload;
mod rooms;

//! The front door (issue 26): no way around the line, no visitor ever given
//! another's answer, no one visitor holding the site. One test binary, a module
//! per part.

#[path = "../support/mod.rs"]
mod support;

mod framing;
mod paths;
mod rooms;
mod turns;

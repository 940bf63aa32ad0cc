//! loadtest: replays arrival spikes against a target and reports what users and
//! the origin saw.
//!
//! # Layout
//! - [`profile`]: when visitors arrive (uniform, front-loaded spike, CSV trace).
//! - [`client`]: the shared HTTP client and each visitor's cookie jar.
//! - [`steps`]: what a visitor does on the site (origin-stub's registration, or a journey file).
//! - [`visitor`]: one visitor's behaviour: arrive, wait as a browser does, take the steps.
//! - [`sampler`]: the origin's and waitroom's counters over time.
//! - [`analysis`]: waits, ETA error, FIFO inversions, rates, from what visitors saw.
//! - [`report`]: the summary, the terminal table, `summary.json` and `report.html`.
//! - [`chart`]: SVG charts.
//! - [`run`]: one spike, start to end.

pub mod analysis;
pub mod chart;
pub mod client;
pub mod profile;
pub mod report;
pub mod run;
pub mod sampler;
pub mod steps;
pub mod visitor;

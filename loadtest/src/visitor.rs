//! One simulated visitor: arrives, waits as a browser does, registers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::client::{Browser, ErrorKind, Reply};

/// How visitors behave.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Share of visitors who walk away while waiting (0..=1).
    pub abandon_share: f64,
    /// An abandoning visitor leaves after this many status polls.
    pub abandon_after_polls: u32,
    /// Share of waiting visitors who reload the page instead of letting it poll.
    pub reload_share: f64,
    /// Share of visitors who retry a failed submit (the others give up at once).
    pub retry_share: f64,
    /// How many times a retrying visitor tries a failing step again.
    pub retries: u32,
    /// Think time between pages, drawn uniformly from this range.
    pub think: (Duration, Duration),
    /// Poll interval when the waiting room does not say (or on errors).
    pub default_poll: Duration,
    /// Poll at this interval whatever the waiting room says (a client that ignores
    /// `poll_after_ms`); `None` follows it, as the queue page does.
    pub fixed_poll: Option<Duration>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            abandon_share: 0.0,
            abandon_after_polls: 2,
            reload_share: 0.1,
            retry_share: 0.8,
            retries: 3,
            think: (Duration::from_millis(500), Duration::from_millis(2_000)),
            default_poll: Duration::from_secs(2),
            fixed_poll: None,
        }
    }
}

/// What one visitor saw. Times are seconds from the run's start.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Journey {
    /// The visitor's number (also their registration number's tail).
    pub id: u32,
    /// When the profile said they arrive.
    pub scheduled: f64,
    /// When their first request left.
    pub arrived: f64,
    /// Whether a waiting room queued them.
    pub queued: bool,
    /// The position and ETA shown on their first status answer.
    pub first_position: Option<u64>,
    /// ETA (seconds) shown on their first status answer.
    pub first_eta: Option<f64>,
    /// When they were let through to the site.
    pub admitted: Option<f64>,
    /// Whether they walked away on purpose while waiting.
    pub abandoned: bool,
    /// The confirmation number they ended with.
    pub confirmation: Option<String>,
    /// Whether two submits gave them two different confirmations.
    pub inconsistent: bool,
    /// Why they ended without a registration, if they wanted one.
    pub lost: Option<ErrorKind>,
    /// Failed requests by kind.
    pub errors: Vec<ErrorKind>,
    /// Status polls made while waiting.
    pub polls: u32,
    /// `(sent, seconds)` of each request the site itself answered.
    pub site_latencies: Vec<(f64, f64)>,
    /// When the visit ended.
    pub done: f64,
}

/// Live counts for the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    /// Visitors who arrived.
    pub arrived: AtomicU64,
    /// Visitors let through.
    pub admitted: AtomicU64,
    /// Visitors with a confirmation.
    pub registered: AtomicU64,
    /// Visitors whose visit ended.
    pub done: AtomicU64,
    /// Failed requests.
    pub errors: AtomicU64,
}

/// A visitor about to arrive.
pub struct Visitor {
    /// Live counts to update.
    pub progress: Arc<Progress>,
    /// Their number.
    pub id: u32,
    /// Their browser.
    pub browser: Browser,
    /// The behaviour of the crowd.
    pub behaviour: Behaviour,
    /// The run's start.
    pub start: Instant,
}

fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

impl Visitor {
    /// Runs the whole visit, arriving `at` seconds after the start.
    pub async fn run(self, at: f64) -> Journey {
        let progress = self.progress.clone();
        let j = self.visit(at).await;
        let count = |c: &AtomicU64, yes: bool| {
            c.fetch_add(u64::from(yes), Ordering::Relaxed);
        };
        count(&progress.admitted, j.admitted.is_some());
        count(&progress.registered, j.confirmation.is_some());
        progress
            .errors
            .fetch_add(j.errors.len() as u64, Ordering::Relaxed);
        count(&progress.done, true);
        j
    }

    async fn visit(mut self, at: f64) -> Journey {
        let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
        let b = self.behaviour.clone();
        let abandons = rng.random_bool(b.abandon_share.clamp(0.0, 1.0));
        let reloads = rng.random_bool(b.reload_share.clamp(0.0, 1.0));
        let retries = if rng.random_bool(b.retry_share.clamp(0.0, 1.0)) {
            b.retries
        } else {
            0
        };
        let mut j = Journey {
            id: self.id,
            scheduled: at,
            ..Default::default()
        };
        tokio::time::sleep_until(self.start + Duration::from_secs_f64(at)).await;
        j.arrived = secs(self.start);
        self.progress.arrived.fetch_add(1, Ordering::Relaxed);

        // Arrive and wait until the site itself answers.
        let mut failures = 0;
        loop {
            let sent = secs(self.start);
            let landing = self.browser.page("/").await;
            match self.note(&mut j, sent, landing) {
                Some(r) if r.from_origin() && r.status.is_success() => break,
                Some(r) if r.status.is_success() => {
                    j.queued = true;
                    match self.wait_in_line(&mut j, abandons, reloads).await {
                        Waited::Admitted => break,
                        Waited::Left => {
                            j.abandoned = true;
                            j.done = secs(self.start);
                            return j;
                        }
                    }
                }
                _ => {
                    failures += 1;
                    if failures > retries {
                        j.lost = j.errors.last().copied();
                        j.done = secs(self.start);
                        return j;
                    }
                    self.backoff(failures).await;
                }
            }
        }
        j.admitted = Some(secs(self.start));

        // The registration: form, submit, check.
        let nrn = format!("{:013}", 1_000_000_000_000u64 + u64::from(self.id));
        let steps: [(&str, Method, Option<String>); 3] = [
            ("/register", Method::GET, None),
            (
                "/register",
                Method::POST,
                Some(format!("nrn={nrn}&email=visitor{}%40example.org", self.id)),
            ),
            ("/check", Method::GET, None),
        ];
        for (path, method, form) in steps {
            self.think(&mut rng).await;
            let path = if path == "/check" {
                format!("/check?nrn={nrn}")
            } else {
                path.to_owned()
            };
            let mut failures = 0;
            let reply = loop {
                let sent = secs(self.start);
                let r = self
                    .browser
                    .request(method.clone(), &path, "text/html", form.clone())
                    .await;
                match self.note(&mut j, sent, r) {
                    Some(r) if r.status.is_success() && r.from_origin() => break Some(r),
                    _ => {
                        failures += 1;
                        if failures > retries {
                            break None;
                        }
                        self.backoff(failures).await;
                    }
                }
            };
            let Some(reply) = reply else {
                j.lost = j.errors.last().copied().or(Some(ErrorKind::Client4xx));
                j.done = secs(self.start);
                return j;
            };
            if let Some(c) = confirmation(&reply.text()) {
                if j.confirmation.as_ref().is_some_and(|old| *old != c) {
                    j.inconsistent = true;
                }
                j.confirmation = Some(c);
            }
        }
        if j.confirmation.is_none() {
            j.lost = Some(ErrorKind::Client4xx);
        }
        j.done = secs(self.start);
        j
    }

    /// Records a request's outcome; returns the reply if there was one.
    fn note(&self, j: &mut Journey, sent: f64, r: Result<Reply, ErrorKind>) -> Option<Reply> {
        match r {
            Ok(reply) => {
                if let Some(kind) = reply.error_kind() {
                    j.errors.push(kind);
                }
                if reply.from_origin() {
                    j.site_latencies.push((sent, secs(self.start) - sent));
                }
                Some(reply)
            }
            Err(kind) => {
                j.errors.push(kind);
                None
            }
        }
    }

    async fn wait_in_line(&mut self, j: &mut Journey, abandons: bool, reloads: bool) -> Waited {
        let b = self.behaviour.clone();
        loop {
            if abandons && j.polls >= b.abandon_after_polls {
                return Waited::Left;
            }
            let status = self
                .browser
                .request(Method::GET, "/_waitroom/status", "application/json", None)
                .await;
            let mut poll_after = b.default_poll;
            match status {
                Ok(r) if r.status.is_success() => {
                    let s: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                    if j.first_eta.is_none() {
                        j.first_eta = s["eta_seconds"].as_f64();
                        j.first_position = s["position"].as_u64();
                    }
                    if s["state"] == "admitted" {
                        return Waited::Admitted;
                    }
                    if let Some(ms) = s["poll_after_ms"].as_u64() {
                        poll_after = Duration::from_millis(ms);
                    }
                }
                Ok(r) => j.errors.extend(r.error_kind()),
                Err(kind) => j.errors.push(kind),
            }
            j.polls += 1;
            tokio::time::sleep(b.fixed_poll.unwrap_or(poll_after)).await;
            if reloads && j.polls.is_multiple_of(3) {
                // An impatient visitor reloads the page: they keep their place.
                let sent = secs(self.start);
                let r = self.browser.page("/").await;
                if let Some(r) = self.note(j, sent, r) {
                    if r.from_origin() && r.status.is_success() {
                        return Waited::Admitted;
                    }
                }
            }
        }
    }

    async fn think(&self, rng: &mut impl Rng) {
        let (lo, hi) = self.behaviour.think;
        let t = if hi > lo {
            rng.random_range(lo..hi)
        } else {
            lo
        };
        tokio::time::sleep(t).await;
    }

    async fn backoff(&self, failures: u32) {
        tokio::time::sleep(Duration::from_millis(500 * u64::from(failures.min(6)))).await;
    }
}

enum Waited {
    Admitted,
    Left,
}

/// The confirmation number on a page (`data-confirmation="…"`).
pub fn confirmation(page: &str) -> Option<String> {
    let start = page.find("data-confirmation=\"")? + "data-confirmation=\"".len();
    let end = page[start..].find('"')?;
    Some(page[start..start + end].to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_confirmation() {
        let page =
            r#"<strong id="confirmation" data-confirmation="WL-000001-K">WL-000001-K</strong>"#;
        assert_eq!(super::confirmation(page).as_deref(), Some("WL-000001-K"));
        assert_eq!(super::confirmation("<p>nothing</p>"), None);
    }
}

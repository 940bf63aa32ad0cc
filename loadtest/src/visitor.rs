//! One simulated visitor: arrives, waits as a browser does, takes the journey's steps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::client::{Browser, ErrorKind, Reply};
use crate::steps::Steps;

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
    /// Whether they took every step of the journey.
    pub completed: bool,
    /// Whether the run ended (`--max-duration`) while they were still under way.
    pub unfinished: bool,
    /// Every attempt at a step that reached the site or failed on the way.
    pub steps: Vec<StepDone>,
    /// Why they ended without a registration, if they wanted one.
    pub lost: Option<ErrorKind>,
    /// Failed requests by kind (the waiting room's refusals and challenges apart).
    pub errors: Vec<ErrorKind>,
    /// Answers refused by a limit of the waiting room's (`429`, its `limited`
    /// page): the page waits as `Retry-After` says, then tries again.
    pub limited: u32,
    /// Answers that were the waiting room's proof-of-work page (its `check` page:
    /// a place kept past the address's allowance, or the challenge switched on),
    /// whose work the visitor did as the page's script does.
    pub challenged: u32,
    /// Status polls made while waiting.
    pub polls: u32,
    /// `(sent, seconds)` of each request the site itself answered.
    pub site_latencies: Vec<(f64, f64)>,
    /// When the visit ended.
    pub done: f64,
}

/// One attempt at a step of the journey.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct StepDone {
    /// Which step (its index in the journey).
    pub step: usize,
    /// When the request left (seconds from the start).
    pub sent: f64,
    /// How long the answer took (seconds).
    pub secs: f64,
    /// Whether the answer was what the step expects.
    pub ok: bool,
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
    /// What they do on the site.
    pub steps: Arc<Steps>,
    /// When the run ends whatever is under way (`--max-duration`).
    pub deadline: Option<Instant>,
}

fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

impl Visitor {
    /// Runs the whole visit, arriving `at` seconds after the start; `None` when the
    /// run ended before they were due.
    pub async fn run(self, at: f64) -> Option<Journey> {
        let progress = self.progress.clone();
        let j = self.visit(at).await?;
        let count = |c: &AtomicU64, yes: bool| {
            c.fetch_add(u64::from(yes), Ordering::Relaxed);
        };
        count(&progress.admitted, j.admitted.is_some());
        count(&progress.registered, j.completed);
        progress
            .errors
            .fetch_add(j.errors.len() as u64, Ordering::Relaxed);
        count(&progress.done, true);
        Some(j)
    }

    async fn visit(mut self, at: f64) -> Option<Journey> {
        let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
        let b = self.behaviour.clone();
        let who = Who {
            abandons: rng.random_bool(b.abandon_share.clamp(0.0, 1.0)),
            reloads: rng.random_bool(b.reload_share.clamp(0.0, 1.0)),
            retries: if rng.random_bool(b.retry_share.clamp(0.0, 1.0)) {
                b.retries
            } else {
                0
            },
        };
        let mut j = Journey {
            id: self.id,
            scheduled: at,
            ..Default::default()
        };
        let due = self.start + Duration::from_secs_f64(at);
        if self.deadline.is_some_and(|d| due >= d) {
            return None;
        }
        tokio::time::sleep_until(due).await;
        j.arrived = secs(self.start);
        self.progress.arrived.fetch_add(1, Ordering::Relaxed);
        let deadline = self.deadline;
        let cut = {
            let steps = self.take_steps(&mut j, &mut rng, who);
            match deadline {
                Some(d) => tokio::time::timeout_at(d, steps).await.is_err(),
                None => {
                    steps.await;
                    false
                }
            }
        };
        j.unfinished = cut;
        j.done = secs(self.start);
        Some(j)
    }

    /// Takes the journey's steps, the first one again after waiting in line.
    async fn take_steps(&mut self, j: &mut Journey, rng: &mut impl Rng, who: Who) {
        let steps = self.steps.clone();
        for (i, step) in steps.steps.iter().enumerate() {
            if i > 0 {
                self.think(step.think_ms, rng).await;
            }
            let mut failures = 0;
            loop {
                let sent = secs(self.start);
                let r = self
                    .browser
                    .request(
                        step.method(),
                        &step.path_for(self.id),
                        "text/html,application/xhtml+xml,*/*;q=0.8",
                        step.form_for(self.id),
                    )
                    .await;
                let took = secs(self.start) - sent;
                let reply = self.note(j, sent, r);
                if reply.as_ref().and_then(Reply::waitroom_page) == Some("check") {
                    // The work the page's script does, then the page again.
                    if let Some((name, answer)) = reply.as_ref().and_then(solve) {
                        let answer = tokio::task::spawn_blocking(answer).await.ok().flatten();
                        if let Some(answer) = answer {
                            self.browser.set_cookie(&name, &answer);
                            continue;
                        }
                    }
                }
                if reply.as_ref().and_then(Reply::waitroom_page) == Some("limited") {
                    // Refused by the waiting room's own limit: its page waits as
                    // `Retry-After` says and tries again; not the site's failure.
                    let wait = reply.as_ref().and_then(Reply::retry_after).unwrap_or(2);
                    tokio::time::sleep(Duration::from_secs(wait.clamp(1, 60))).await;
                    continue;
                }
                if reply.as_ref().and_then(Reply::waitroom_page) == Some("queue") {
                    // In line: wait as the queue page does, then take the step again.
                    j.queued = true;
                    match self.wait_in_line(j, who, &step.path_for(self.id)).await {
                        Waited::Admitted => continue,
                        Waited::Left => {
                            j.abandoned = true;
                            return;
                        }
                    }
                }
                let site = reply.as_ref().filter(|r| r.waitroom_page().is_none());
                let ok = site.is_some_and(|r| step.accepts(r.status.as_u16(), &r.text()));
                if reply.is_none() || site.is_some() {
                    j.steps.push(StepDone {
                        step: i,
                        sent,
                        secs: took,
                        ok,
                    });
                }
                if let (true, Some(r)) = (ok, site) {
                    if j.admitted.is_none() {
                        j.admitted = Some(secs(self.start));
                    }
                    if let Some(c) = confirmation(&r.text()) {
                        if j.confirmation.as_ref().is_some_and(|old| *old != c) {
                            j.inconsistent = true;
                        }
                        j.confirmation = Some(c);
                    }
                    break;
                }
                failures += 1;
                if failures > who.retries {
                    j.lost = j.errors.last().copied().or(Some(ErrorKind::Client4xx));
                    return;
                }
                self.backoff(failures).await;
            }
        }
        j.completed = true;
    }

    /// Records a request's outcome; returns the reply if there was one.
    fn note(&self, j: &mut Journey, sent: f64, r: Result<Reply, ErrorKind>) -> Option<Reply> {
        match r {
            Ok(reply) => {
                match reply.waitroom_page() {
                    Some("limited") => j.limited += 1,
                    Some("check") => j.challenged += 1,
                    _ => j.errors.extend(reply.error_kind()),
                }
                if reply.waitroom_page().is_none() {
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

    /// Waits in line as the queue page does, at `page` (the step's own address,
    /// which an impatient visitor reloads now and then).
    async fn wait_in_line(&mut self, j: &mut Journey, who: Who, page: &str) -> Waited {
        let b = self.behaviour.clone();
        loop {
            if who.abandons && j.polls >= b.abandon_after_polls {
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
                Ok(r) if r.waitroom_page() == Some("limited") => {
                    j.limited += 1;
                    if let Some(wait) = r.retry_after() {
                        poll_after = Duration::from_secs(wait.clamp(1, 60));
                    }
                }
                Ok(r) => j.errors.extend(r.error_kind()),
                Err(kind) => j.errors.push(kind),
            }
            j.polls += 1;
            tokio::time::sleep(b.fixed_poll.unwrap_or(poll_after)).await;
            if who.reloads && j.polls.is_multiple_of(3) {
                // An impatient visitor reloads the page: they keep their place (and
                // once let in, take the step from the start as the page's reload does).
                let sent = secs(self.start);
                let r = self.browser.page(page).await;
                if let Some(r) = self.note(j, sent, r) {
                    if r.waitroom_page().is_none() && r.status.is_success() {
                        return Waited::Admitted;
                    }
                }
            }
        }
    }

    async fn think(&self, step_ms: Option<[u64; 2]>, rng: &mut impl Rng) {
        let (lo, hi) = match step_ms {
            Some([lo, hi]) => (Duration::from_millis(lo), Duration::from_millis(hi)),
            None => self.behaviour.think,
        };
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

/// What kind of visitor this is, drawn at arrival.
#[derive(Clone, Copy)]
struct Who {
    /// Walks away after a few polls.
    abandons: bool,
    /// Reloads the page now and then while waiting.
    reloads: bool,
    /// How often a failed step is tried again.
    retries: u32,
}

/// The proof of work a `check` page asks for: its answer cookie's name, and the
/// work that finds the answer (`challenge.counter`), as the page's script does.
fn solve(page: &Reply) -> Option<(String, impl FnOnce() -> Option<String> + Send + 'static)> {
    let text = page.text();
    let c = text.split("var C = \"").nth(1)?;
    let challenge = c.split('"').next()?.to_owned();
    let bits: u32 = c
        .split("D = ")
        .nth(1)?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()?;
    let name = c.split("NAME = \"").nth(1)?.split('"').next()?.to_owned();
    let work = move || {
        (0u64..1 << 32)
            .find(|n| {
                use sha2::Digest;
                let hash = sha2::Sha256::digest(format!("{challenge}:{n}"));
                zero_bits(&hash) >= bits
            })
            .map(|n| format!("{challenge}.{n}"))
    };
    Some((name, work))
}

/// Leading zero bits of `hash`.
fn zero_bits(hash: &[u8]) -> u32 {
    let mut bits = 0;
    for byte in hash {
        if *byte != 0 {
            return bits + byte.leading_zeros();
        }
        bits += 8;
    }
    bits
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

//! One spike run: schedule the crowd, let it visit, sample the servers, summarize.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use tokio::time::Instant;

use crate::client::{Browser, Http};
use crate::profile::Profile;
use crate::report::{self, OriginReport, Summary};
use crate::sampler::{self, Sample, Targets};
use crate::steps::Steps;
use crate::visitor::{Behaviour, Journey, Progress, Visitor};

/// Everything a spike run needs.
#[derive(Clone, Debug)]
pub struct Spike {
    /// A name for the run in reports.
    pub label: String,
    /// The URL visitors open (`http://host:port`).
    pub target: String,
    /// When they arrive.
    pub profile: Profile,
    /// How many (ignored for a trace).
    pub users: usize,
    /// Over how many seconds (ignored for a trace).
    pub over: f64,
    /// How they behave.
    pub behaviour: Behaviour,
    /// The origin's base URL, for `/__stats` and `/__outbox`.
    pub origin: Option<String>,
    /// waitroom's admin base URL and token, for the configured rate and queue length.
    pub admin: Option<(String, String)>,
    /// Clear the origin's counters and registrations first.
    pub reset_origin: bool,
    /// A visitor's request gives up after this long.
    pub request_timeout: Duration,
    /// Draw a progress bar on the terminal (else a progress line every few seconds).
    pub progress: bool,
    /// What visitors do on the site.
    pub steps: Arc<Steps>,
    /// End the run this long after its start, whatever is under way.
    pub max_duration: Option<Duration>,
    /// Each visitor comes from an address of its own, in `X-Forwarded-For`
    /// (believed only by a waitroom that trusts the loadtest's host).
    pub spread_addresses: bool,
}

/// How often the progress line is written when stderr is not a terminal.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What a run produced.
pub struct Outcome {
    /// The summary.
    pub summary: Summary,
    /// Every visitor's journey.
    pub journeys: Vec<Journey>,
    /// Samples over time.
    pub samples: Vec<Sample>,
}

impl Outcome {
    /// What the run's charts show.
    pub fn charts(&self) -> Vec<report::Chart> {
        report::chart_data(&self.journeys, &self.samples, self.summary.origin.capacity)
    }
}

/// CPU seconds this process has used (Linux `/proc/self/stat`, 100 ticks/s).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Runs one spike to the end.
pub async fn run(spike: &Spike) -> anyhow::Result<Outcome> {
    let http = Http::new(spike.request_timeout);
    let control = Http::new(Duration::from_secs(10));
    if let (Some(origin), true) = (&spike.origin, spike.reset_origin) {
        let r = control
            .send(Method::POST, &format!("{origin}/__reset"), &[], None)
            .await;
        anyhow::ensure!(
            r.as_ref().is_ok_and(|r| r.status.is_success()),
            "could not reset the origin at {origin}: POST /__reset is origin-stub's; against another site pass --no-reset"
        );
    }
    let configured = match &spike.admin {
        Some((admin, token)) => {
            sampler::get_json(&control, &format!("{admin}/admin/state"), Some(token))
                .await
                .and_then(|s| s["new_users_per_minute"].as_f64())
                .map(|per_minute| per_minute / 60.0)
        }
        None => None,
    };
    let schedule = spike.profile.schedule(spike.users, spike.over);
    let cpu_before = cpu_seconds();
    let started_at = std::time::SystemTime::now();
    let start = Instant::now() + Duration::from_millis(300);
    let deadline = spike.max_duration.map(|d| start + d);
    let progress = Arc::new(Progress::default());

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let targets = Targets {
        origin: spike.origin.clone(),
        admin: spike.admin.clone(),
    };
    let sampling = tokio::spawn(sampler::sample(
        control.clone(),
        targets,
        start,
        Duration::from_millis(250),
        stopped,
    ));

    let mut tasks = tokio::task::JoinSet::new();
    for (i, at) in schedule.iter().enumerate() {
        let visitor = Visitor {
            progress: progress.clone(),
            id: i as u32,
            browser: Browser::new(
                http.clone(),
                &spike.target,
                i as u32,
                spike.spread_addresses,
            ),
            behaviour: spike.behaviour.clone(),
            start,
            steps: spike.steps.clone(),
            deadline,
        };
        tasks.spawn(visitor.run(*at));
    }
    let bar = spike.progress.then(|| progress_bar(schedule.len() as u64));
    let mut journeys = Vec::with_capacity(schedule.len());
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut said = Instant::now();
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(j) => journeys.extend(j?),
                None => break,
            },
            _ = tick.tick() => {
                let p = &progress;
                let line = format!(
                    "arrived {}/{}  in {}  done {}  completed {}  errors {}",
                    p.arrived.load(Ordering::Relaxed),
                    schedule.len(),
                    p.admitted.load(Ordering::Relaxed),
                    p.done.load(Ordering::Relaxed),
                    p.registered.load(Ordering::Relaxed),
                    p.errors.load(Ordering::Relaxed),
                );
                if let Some(bar) = &bar {
                    bar.set_position(p.done.load(Ordering::Relaxed));
                    bar.set_message(line);
                } else if said.elapsed() >= PROGRESS_EVERY {
                    said = Instant::now();
                    eprintln!(
                        "loadtest {}: {:.0} s  {line}",
                        spike.label,
                        Instant::now().saturating_duration_since(start).as_secs_f64()
                    );
                }
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let _ = stop.send(true);
    let samples = sampling.await.unwrap_or_default();
    journeys.sort_by_key(|j| j.id);

    let origin = match &spike.origin {
        Some(o) => origin_report(&control, o).await,
        None => OriginReport::default(),
    };
    let mut summary = report::summarize(&spike.label, &spike.target, &journeys, origin);
    // The rate in force at the end, if the run sampled it (an operator may change it
    // during the run), else the one read at the start.
    summary.configured_rate_per_s = samples
        .iter()
        .rev()
        .find_map(|s| s.rate_per_minute)
        .map(|r| r / 60.0)
        .or(configured);
    summary.steps = report::steps(&spike.steps, &journeys);
    summary.run = report::RunInfo {
        started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
        users: schedule.len(),
        over_s: spike.over,
        profile: spike.profile.name(),
        journey: spike.steps.source.clone(),
        max_duration_s: spike.max_duration.map(|d| d.as_secs_f64()),
        cut: journeys.iter().any(|j| j.unfinished) || journeys.len() < schedule.len(),
    };
    summary.loadtest_cpu_s = cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    Ok(Outcome {
        summary,
        journeys,
        samples,
    })
}

async fn origin_report(http: &Http, origin: &str) -> OriginReport {
    let stats = sampler::get_json(http, &format!("{origin}/__stats"), None).await;
    let outbox = sampler::get_json(http, &format!("{origin}/__outbox"), None).await;
    let field = |k: &str| stats.as_ref().and_then(|s| s[k].as_u64());
    OriginReport {
        max_in_flight: field("max_in_flight"),
        capacity: field("capacity"),
        latency_ms: stats
            .as_ref()
            .map(|s| s["latency_ms"].clone())
            .unwrap_or_default(),
        registrations: field("registrations"),
        confirmations: field("confirmations"),
        duplicate_mails: outbox.as_ref().and_then(report::duplicate_mails),
    }
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} done  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// Writes `summary.json` and `report.html` for these runs into `dir`.
pub fn write_report(
    dir: &std::path::Path,
    title: &str,
    outcomes: &[&Outcome],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let summary = if outcomes.len() == 1 {
        serde_json::to_value(&outcomes[0].summary)?
    } else {
        serde_json::Value::Object(
            outcomes
                .iter()
                .map(|o| Ok((o.summary.label.clone(), serde_json::to_value(&o.summary)?)))
                .collect::<anyhow::Result<_>>()?,
        )
    };
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    let charts: Vec<_> = outcomes.iter().map(|o| o.charts()).collect();
    let drawn = report::draw_shared(&charts);
    let runs: Vec<(&Summary, Vec<(&'static str, String)>)> =
        outcomes.iter().map(|o| &o.summary).zip(drawn).collect();
    std::fs::write(dir.join("report.html"), report::html(title, &runs))?;
    Ok(())
}

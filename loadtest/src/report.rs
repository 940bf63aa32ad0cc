//! The run's summary: computed from the journeys (what visitors saw), printed as
//! a table, written as `summary.json` and a self-contained `report.html`.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::analysis::{self, quantile};
use crate::chart::{self, Series, COLORS};
use crate::client::ErrorKind;
use crate::sampler::Sample;
use crate::visitor::Journey;

/// Percentiles of a distribution.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
    /// How many values.
    pub count: usize,
}

impl Percentiles {
    /// Of these values.
    pub fn of(v: &[f64]) -> Self {
        Self {
            p50: quantile(v, 0.5),
            p90: quantile(v, 0.9),
            p95: quantile(v, 0.95),
            p99: quantile(v, 0.99),
            max: quantile(v, 1.0),
            count: v.len(),
        }
    }
}

/// Failed requests by kind.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Errors {
    /// Connections refused or broken.
    pub connect: u64,
    /// No answer in time.
    pub timeout: u64,
    /// 4xx answers.
    pub client_4xx: u64,
    /// 5xx answers.
    pub server_5xx: u64,
}

/// What the waiting room itself refused or asked, apart from the site's errors.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Limited {
    /// Visitors refused at least once by a limit of the waiting room's (429).
    pub visitors: usize,
    /// Such answers, retries included.
    pub answers: u64,
    /// Visitors who met the waiting room's proof-of-work page (a place kept past
    /// the per-address allowance, or the challenge switched on) and did its work.
    pub challenged_visitors: usize,
}

/// What the origin reported (`/__stats` and `/__outbox` at the end).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct OriginReport {
    /// Most requests inside the origin at once.
    pub max_in_flight: Option<u64>,
    /// Its capacity.
    pub capacity: Option<u64>,
    /// Its latency percentiles (ms).
    pub latency_ms: serde_json::Value,
    /// Registrations on its list.
    pub registrations: Option<u64>,
    /// Confirmation e-mails in its outbox.
    pub confirmations: Option<u64>,
    /// Registration numbers with more than one e-mail.
    pub duplicate_mails: Option<u64>,
}

/// What was run.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunInfo {
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// Visitors scheduled.
    pub users: usize,
    /// Over how many seconds they were to arrive.
    pub over_s: f64,
    /// How arrivals were spread.
    pub profile: String,
    /// The journey they took (a file, or origin-stub's registration).
    pub journey: String,
    /// The run was to end after this many seconds (`--max-duration`), if given.
    pub max_duration_s: Option<f64>,
    /// Whether it ended that way, with visitors still under way or yet to arrive:
    /// the figures are then a partial report.
    pub cut: bool,
}

/// One step of the journey as all visitors took it (every attempt counted).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StepSummary {
    /// The step's name.
    pub name: String,
    /// Its method and path (with `{id}` unfilled).
    pub request: String,
    /// Attempts that reached the site or failed on the way (the waiting room's
    /// own pages not counted).
    pub requests: usize,
    /// Attempts whose answer was not what the step expects.
    pub failures: usize,
    /// Visitors who got the step done.
    pub visitors_done: usize,
    /// Time to the whole answer (seconds), over every attempt.
    pub latency_s: Percentiles,
}

/// Per step of `steps`, what the visitors of `journeys` saw.
pub fn steps(steps: &crate::steps::Steps, journeys: &[Journey]) -> Vec<StepSummary> {
    steps
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let tries: Vec<_> = journeys
                .iter()
                .flat_map(|j| j.steps.iter())
                .filter(|d| d.step == i)
                .collect();
            let secs: Vec<f64> = tries.iter().map(|d| d.secs).collect();
            StepSummary {
                name: step.name.clone(),
                request: format!("{} {}", step.method, step.path),
                requests: tries.len(),
                failures: tries.iter().filter(|d| !d.ok).count(),
                visitors_done: journeys
                    .iter()
                    .filter(|j| j.steps.iter().any(|d| d.step == i && d.ok))
                    .count(),
                latency_s: Percentiles::of(&secs),
            }
        })
        .collect()
}

/// The run's summary (`summary.json`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Summary {
    /// What this run was (e.g. "direct", "waitroom").
    pub label: String,
    /// The URL visitors opened.
    pub target: String,
    /// Visitors who arrived.
    pub arrivals: usize,
    /// Visitors a waiting room queued.
    pub queued: usize,
    /// Visitors let through to the site.
    pub admitted: usize,
    /// Visitors who ended with a confirmation number (origin-stub's journey).
    pub registrations_completed: usize,
    /// Visitors who took every step of the journey.
    pub completed: usize,
    /// Visitors who wanted to take the journey and ended without (the run's end
    /// cutting them short not counted).
    pub lost: usize,
    /// Visitors still under way when the run was cut (`--max-duration`).
    pub unfinished: usize,
    /// Visitors who walked away on purpose while waiting.
    pub abandoned: usize,
    /// Duplicate confirmation e-mails at the origin plus visitors shown two numbers.
    pub duplicated_confirmations: u64,
    /// Failed requests by kind.
    pub errors: Errors,
    /// What the waiting room refused or asked (not the site's errors).
    pub limited: Limited,
    /// Visitors who saw at least one 5xx.
    pub visitors_seeing_5xx: usize,
    /// Seconds from arrival to admission, for visitors who were queued.
    pub queue_wait_s: Percentiles,
    /// `|ETA shown at arrival − real wait| / real wait`, for visitors who were queued.
    pub eta_relative_error: Percentiles,
    /// Share of queued visitors whose real wait fell inside the range the page
    /// showed them at arrival (see [`analysis::shown_range`]).
    pub eta_within_shown_range: Option<f64>,
    /// Pairs where a visitor who arrived ≥ 1 s earlier was admitted > 2 s later.
    pub fifo_inversions: u64,
    /// Admissions per second after the line formed (10th–90th percentile span).
    pub admission_rate_per_s: Option<f64>,
    /// The configured outflow per second, when waitroom's admin API was given.
    pub configured_rate_per_s: Option<f64>,
    /// Latency of the site's own answers as visitors measured them (seconds).
    pub site_latency_s: Percentiles,
    /// The origin's view.
    pub origin: OriginReport,
    /// How late each arrival left against its schedule (milliseconds).
    pub arrival_lag_ms: Percentiles,
    /// Wall-clock length of the run.
    pub duration_s: f64,
    /// CPU the load generator itself used (user + system seconds).
    pub loadtest_cpu_s: Option<f64>,
    /// What was run.
    pub run: RunInfo,
    /// Per step of the journey.
    pub steps: Vec<StepSummary>,
}

/// Builds the summary from the journeys and what the origin said.
pub fn summarize(label: &str, target: &str, journeys: &[Journey], origin: OriginReport) -> Summary {
    let mut errors = Errors::default();
    for e in journeys.iter().flat_map(|j| &j.errors) {
        match e {
            ErrorKind::Connect => errors.connect += 1,
            ErrorKind::Timeout => errors.timeout += 1,
            ErrorKind::Client4xx => errors.client_4xx += 1,
            ErrorKind::Server5xx => errors.server_5xx += 1,
        }
    }
    let queued: Vec<&Journey> = journeys
        .iter()
        .filter(|j| j.queued && j.admitted.is_some())
        .collect();
    let waits: Vec<f64> = queued
        .iter()
        .map(|j| j.admitted.unwrap_or(0.0) - j.arrived)
        .collect();
    let eta_pairs: Vec<(f64, f64)> = queued
        .iter()
        .filter_map(|j| Some((j.first_eta?, j.admitted? - j.arrived)))
        .collect();
    let visits: Vec<(f64, f64)> = journeys
        .iter()
        .filter_map(|j| Some((j.arrived, j.admitted?)))
        .collect();
    let latencies: Vec<f64> = journeys
        .iter()
        .flat_map(|j| j.site_latencies.iter().map(|l| l.1))
        .collect();
    let lags: Vec<f64> = journeys
        .iter()
        .map(|j| (j.arrived - j.scheduled) * 1000.0)
        .collect();
    let inconsistent = journeys.iter().filter(|j| j.inconsistent).count() as u64;
    Summary {
        label: label.to_owned(),
        target: target.to_owned(),
        arrivals: journeys.len(),
        queued: journeys.iter().filter(|j| j.queued).count(),
        admitted: journeys.iter().filter(|j| j.admitted.is_some()).count(),
        registrations_completed: journeys.iter().filter(|j| j.confirmation.is_some()).count(),
        completed: journeys.iter().filter(|j| j.completed).count(),
        lost: journeys
            .iter()
            .filter(|j| !j.abandoned && !j.completed && !j.unfinished)
            .count(),
        unfinished: journeys.iter().filter(|j| j.unfinished).count(),
        abandoned: journeys.iter().filter(|j| j.abandoned).count(),
        duplicated_confirmations: origin.duplicate_mails.unwrap_or(0) + inconsistent,
        errors,
        limited: Limited {
            visitors: journeys.iter().filter(|j| j.limited > 0).count(),
            answers: journeys.iter().map(|j| u64::from(j.limited)).sum(),
            challenged_visitors: journeys.iter().filter(|j| j.challenged > 0).count(),
        },
        visitors_seeing_5xx: journeys
            .iter()
            .filter(|j| j.errors.contains(&ErrorKind::Server5xx))
            .count(),
        queue_wait_s: Percentiles::of(&waits),
        eta_relative_error: Percentiles::of(&analysis::eta_errors(&eta_pairs)),
        eta_within_shown_range: analysis::within_shown_range(&eta_pairs),
        fifo_inversions: analysis::fifo_inversions(&visits, 1.0, 2.0),
        admission_rate_per_s: analysis::admission_rate(
            &queued.iter().filter_map(|j| j.admitted).collect::<Vec<_>>(),
        ),
        configured_rate_per_s: None,
        site_latency_s: Percentiles::of(&latencies),
        origin,
        arrival_lag_ms: Percentiles::of(&lags),
        duration_s: journeys.iter().map(|j| j.done).fold(0.0, f64::max),
        loadtest_cpu_s: None,
        run: RunInfo::default(),
        steps: Vec::new(),
    }
}

/// Counts registration numbers with more than one mail in an outbox listing.
pub fn duplicate_mails(outbox: &serde_json::Value) -> Option<u64> {
    let mut per: HashMap<&str, u64> = HashMap::new();
    for mail in outbox.as_array()? {
        *per.entry(mail["nrn"].as_str()?).or_default() += 1;
    }
    Some(per.values().filter(|n| **n > 1).map(|n| n - 1).sum())
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

fn pct(p: &Percentiles, digits: usize) -> String {
    format!(
        "{} / {} / {} / {}",
        opt(p.p50, digits),
        opt(p.p95, digits),
        opt(p.p99, digits),
        opt(p.max, digits)
    )
}

/// What each row of the table means, in a line (the report shows it beside).
pub fn meaning(label: &str) -> &'static str {
    match label {
        "arrivals" => "visitors whose first request left",
        "queued" => "visitors a waiting room put in line",
        "admitted" => "visitors who reached the site itself",
        "registrations completed" => "visitors shown a confirmation number (origin-stub's journey)",
        "journeys completed" => "visitors who took every step of the journey",
        "lost" => "visitors who wanted to and could not: gave up after errors",
        "unfinished (run cut short)" => "still under way when --max-duration ended the run",
        "abandoned (on purpose)" => "visitors told to walk away while waiting (--abandon)",
        "duplicated confirmations" => "second e-mails for one number, or two numbers shown to one visitor",
        "errors connect/timeout/4xx/5xx" => "failed requests by kind (retries included; the waiting room's 429s and challenges not counted here)",
        "limited by the waiting room (429) visitors / answers" => "refused by a limit of the waiting room's, not the site's; they waited as told and tried again (see the note below the table)",
        "challenged (proof of work)" => "visitors shown the waiting room's proof-of-work page (a place kept past the per-address allowance, or the challenge switched on), who did its work as a browser does",
        "visitors seeing a 5xx" => "visitors who met a server error at least once",
        "queue wait s p50/p95/p99/max" => "from arrival to reaching the site, for those who waited",
        "ETA error median / p90" => "|first estimate − real wait| ÷ real wait; large for short waits (10 s shown as a minute is 500%)",
        "wait within the range shown at arrival" => "share of waits inside the range the page showed first",
        "FIFO inversions" => "pairs let in out of arrival order (1 s apart or more, 2 s late or more)",
        "admission rate / configured (/s)" => "admissions per second while a line existed, and the rate set (last sampled)",
        "site latency s p50/p95/p99/max" => "the site's answers as visitors timed them",
        "origin in flight max / capacity" => "most requests inside the origin at once, and what it can take",
        "origin latency ms p50/p99/max" => "the origin's own time per request (its /__stats)",
        "arrival lag ms p50/p95/p99/max" => "how late arrivals left against the schedule: the load generator's accuracy",
        "duration s" => "from the first arrival to the last visitor's end",
        "loadtest CPU s" => "CPU the load generator used: it was not the bottleneck if well below the duration",
        _ => "",
    }
}

/// The rows of the terminal table: `(label, value)`. Figures about a line are `-`
/// for a run where nobody was queued (straight at the origin): there was none.
pub fn rows(s: &Summary) -> Vec<(&'static str, String)> {
    let o = &s.origin;
    let lined = |v: String| if s.queued > 0 { v } else { "-".to_owned() };
    vec![
        ("arrivals", s.arrivals.to_string()),
        ("queued", s.queued.to_string()),
        ("admitted", s.admitted.to_string()),
        (
            "registrations completed",
            s.registrations_completed.to_string(),
        ),
        ("journeys completed", s.completed.to_string()),
        ("lost", s.lost.to_string()),
        ("unfinished (run cut short)", s.unfinished.to_string()),
        ("abandoned (on purpose)", s.abandoned.to_string()),
        (
            "duplicated confirmations",
            s.duplicated_confirmations.to_string(),
        ),
        (
            "errors connect/timeout/4xx/5xx",
            format!(
                "{}/{}/{}/{}",
                s.errors.connect, s.errors.timeout, s.errors.client_4xx, s.errors.server_5xx
            ),
        ),
        (
            "limited by the waiting room (429) visitors / answers",
            format!("{} / {}", s.limited.visitors, s.limited.answers),
        ),
        (
            "challenged (proof of work)",
            s.limited.challenged_visitors.to_string(),
        ),
        ("visitors seeing a 5xx", s.visitors_seeing_5xx.to_string()),
        (
            "queue wait s p50/p95/p99/max",
            lined(pct(&s.queue_wait_s, 1)),
        ),
        (
            "ETA error median / p90",
            lined(format!(
                "{} / {}",
                opt(s.eta_relative_error.p50.map(|v| v * 100.0), 0) + "%",
                opt(s.eta_relative_error.p90.map(|v| v * 100.0), 0) + "%"
            )),
        ),
        (
            "wait within the range shown at arrival",
            lined(opt(s.eta_within_shown_range.map(|v| v * 100.0), 0) + "%"),
        ),
        ("FIFO inversions", lined(s.fifo_inversions.to_string())),
        (
            "admission rate / configured (/s)",
            lined(format!(
                "{} / {}",
                opt(s.admission_rate_per_s, 1),
                opt(s.configured_rate_per_s, 1)
            )),
        ),
        ("site latency s p50/p95/p99/max", pct(&s.site_latency_s, 3)),
        (
            "origin in flight max / capacity",
            format!(
                "{} / {}",
                o.max_in_flight.map_or("-".into(), |v| v.to_string()),
                o.capacity.map_or("-".into(), |v| v.to_string())
            ),
        ),
        (
            "origin latency ms p50/p99/max",
            format!(
                "{} / {} / {}",
                opt(o.latency_ms["p50"].as_f64(), 1),
                opt(o.latency_ms["p99"].as_f64(), 1),
                opt(o.latency_ms["max"].as_f64(), 1)
            ),
        ),
        ("arrival lag ms p50/p95/p99/max", pct(&s.arrival_lag_ms, 1)),
        ("duration s", format!("{:.1}", s.duration_s)),
        ("loadtest CPU s", opt(s.loadtest_cpu_s, 1)),
    ]
}

/// Why the waiting room refused or asked, and what to do about it: a line per
/// cause, none when it did neither.
pub fn notes(s: &Summary) -> Vec<String> {
    let mut notes = Vec::new();
    if s.limited.answers > 0 {
        notes.push(format!(
            "{}: {} visitors were refused {} times by the waiting room's per-address limit \
             (429, clients.places_per_minute): they all came from this one host. To measure \
             the line rather than the limit, run with --spread-addresses against a waitroom \
             that trusts this host (clients.trusted_proxies), or raise the limit for the run.",
            s.label, s.limited.visitors, s.limited.answers
        ));
    }
    if s.limited.challenged_visitors > 0 {
        notes.push(format!(
            "{}: {} visitors met the waiting room's proof-of-work page and did its work, as \
             a browser does: past the per-address allowance (clients.places_per_minute) from \
             this one host, their places were kept in arrival order and earned that way (or \
             the challenge is switched on). To measure the line without it, run with \
             --spread-addresses against a waitroom that trusts this host \
             (clients.trusted_proxies).",
            s.label, s.limited.challenged_visitors
        ));
    }
    notes
}

/// A table of one or more summaries side by side, with the notes of each below.
pub fn table(summaries: &[&Summary]) -> String {
    let all: Vec<Vec<(&str, String)>> = summaries.iter().map(|s| rows(s)).collect();
    let width = all[0].iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let col = all
        .iter()
        .flat_map(|r| r.iter().map(|(_, v)| v.len()))
        .chain(summaries.iter().map(|s| s.label.len()))
        .max()
        .unwrap_or(0);
    let mut out = format!("{:width$}", "");
    for s in summaries {
        let _ = write!(out, "  {:>col$}", s.label);
    }
    out.push('\n');
    for (i, (label, _)) in all[0].iter().enumerate() {
        let _ = write!(out, "{label:width$}");
        for r in &all {
            let _ = write!(out, "  {:>col$}", r[i].1);
        }
        out.push('\n');
    }
    for note in summaries.iter().flat_map(|s| notes(s)) {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

/// The per-step table of a run (a row per step: requests, failures, visitors who
/// got it done, latency percentiles), as Locust and k6 print it.
pub fn step_table(s: &Summary) -> String {
    let mut out = format!(
        "{:<12} {:<28} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
        "step", "request", "requests", "failed", "done", "p50 ms", "p95 ms", "p99 ms"
    );
    for st in &s.steps {
        let [name, request, cells @ ..] = step_cells(st);
        let _ = write!(out, "{name:<12} {request:<28}");
        for cell in cells {
            let _ = write!(out, " {cell:>8}");
        }
        out.push('\n');
    }
    out
}

/// A step's row: name, request, requests, failed, done, p50, p95, p99 (ms).
fn step_cells(st: &StepSummary) -> [String; 8] {
    let ms = |v: Option<f64>| opt(v.map(|v| v * 1000.0), 0);
    [
        st.name.clone(),
        st.request.clone(),
        st.requests.to_string(),
        st.failures.to_string(),
        st.visitors_done.to_string(),
        ms(st.latency_s.p50),
        ms(st.latency_s.p95),
        ms(st.latency_s.p99),
    ]
}

/// A chart's data, drawn by [`Chart::draw`] (runs side by side share scales).
pub enum Chart {
    /// Lines over time.
    Lines {
        /// Caption.
        title: &'static str,
        /// What the y axis counts.
        y_label: &'static str,
        /// The lines.
        series: Vec<Series<'static>>,
    },
    /// A distribution.
    Histogram {
        /// Caption.
        title: &'static str,
        /// What the x axis counts.
        x_label: &'static str,
        /// The values.
        values: Vec<f64>,
    },
}

impl Chart {
    fn title(&self) -> &'static str {
        match self {
            Self::Lines { title, .. } | Self::Histogram { title, .. } => title,
        }
    }

    /// The largest `x` and `y` it shows.
    fn extent(&self) -> (f64, f64) {
        match self {
            Self::Lines { series, .. } => {
                chart::bounds(series.iter().flat_map(|s| s.points.iter()))
            }
            Self::Histogram { values, .. } => (values.iter().copied().fold(0.0, f64::max), 0.0),
        }
    }

    /// As SVG, on axes up to `scale`.
    fn draw(&self, scale: (f64, f64)) -> String {
        match self {
            Self::Lines {
                title,
                y_label,
                series,
            } => chart::lines(title, "seconds", y_label, series, Some(scale)),
            Self::Histogram {
                title,
                x_label,
                values,
            } => chart::histogram(title, x_label, values, 40, Some(scale.0)),
        }
    }
}

/// The charts of runs shown side by side (title and SVG), each kind on the axes of
/// the largest of its kind in any run (so that two runs compare at a glance).
pub fn draw_shared(runs: &[Vec<Chart>]) -> Vec<Vec<(&'static str, String)>> {
    let mut scales: HashMap<&str, (f64, f64)> = HashMap::new();
    for c in runs.iter().flatten() {
        let (x, y) = c.extent();
        let e = scales.entry(c.title()).or_insert((0.0, 0.0));
        *e = (e.0.max(x), e.1.max(y));
    }
    runs.iter()
        .map(|charts| {
            charts
                .iter()
                .map(|c| (c.title(), c.draw(scales[c.title()])))
                .collect()
        })
        .collect()
}

/// The charts of one run: title and SVG.
pub fn charts(
    journeys: &[Journey],
    samples: &[Sample],
    capacity: Option<u64>,
) -> Vec<(&'static str, String)> {
    draw_shared(&[chart_data(journeys, samples, capacity)]).remove(0)
}

/// What the charts of one run show: arrivals and admissions per second (with the
/// configured rate, when waitroom's admin API was sampled), the line's length and
/// the active sessions against the configured capacity (when anybody was queued, or
/// sampled), the origin's requests in flight against its capacity, the site's
/// latency, and the distribution of waits (when anybody waited).
pub fn chart_data(journeys: &[Journey], samples: &[Sample], capacity: Option<u64>) -> Vec<Chart> {
    let seconds = journeys.iter().map(|j| j.done).fold(1.0, f64::max).ceil() as usize + 1;
    let series = |v: Vec<u32>| -> Vec<(f64, f64)> {
        v.into_iter()
            .enumerate()
            .map(|(i, c)| (i as f64, f64::from(c)))
            .collect()
    };
    let sampled = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        samples.iter().filter_map(|s| Some((s.t, f(s)?))).collect()
    };
    let arrivals = analysis::per_second(journeys.iter().map(|j| j.arrived), seconds);
    let admissions = analysis::per_second(journeys.iter().filter_map(|j| j.admitted), seconds);
    let mut flow = vec![
        Series {
            label: "arrivals",
            points: series(arrivals),
            color: COLORS[0],
        },
        Series {
            label: "admissions",
            points: series(admissions),
            color: COLORS[1],
        },
    ];
    let rate = sampled(&|s| s.rate_per_minute.map(|r| r / 60.0));
    if !rate.is_empty() {
        flow.push(Series {
            label: "configured rate",
            points: rate,
            color: COLORS[3],
        });
    }
    let mut out = vec![Chart::Lines {
        title: "Arrivals and admissions",
        y_label: "visitors per second",
        series: flow,
    }];
    if journeys.iter().any(|j| j.queued) {
        let waiting = analysis::occupancy(
            journeys
                .iter()
                .filter(|j| j.queued)
                .map(|j| (j.arrived, j.admitted.unwrap_or(j.done))),
            seconds,
        );
        out.push(Chart::Lines {
            title: "Queue length (visitors waiting)",
            y_label: "visitors",
            series: vec![Series {
                label: "waiting",
                points: series(waiting),
                color: COLORS[0],
            }],
        });
    }
    let active = sampled(&|s| s.active_users.map(|a| a as f64));
    if !active.is_empty() {
        out.push(Chart::Lines {
            title: "Active users (sessions and calls) against the capacity",
            y_label: "visitors",
            series: vec![
                Series {
                    label: "active",
                    points: active,
                    color: COLORS[2],
                },
                Series {
                    label: "max_active_users",
                    points: sampled(&|s| s.max_active.map(|m| m as f64)),
                    color: COLORS[3],
                },
            ],
        });
    }
    let mut origin = vec![Series {
        label: "origin in flight",
        points: sampled(&|s| s.origin_in_flight.map(|n| n as f64)),
        color: COLORS[0],
    }];
    if let Some(c) = capacity {
        origin.push(Series {
            label: "capacity",
            points: vec![(0.0, c as f64), (seconds as f64, c as f64)],
            color: COLORS[3],
        });
    }
    out.push(Chart::Lines {
        title: "Origin: requests in flight",
        y_label: "requests",
        series: origin,
    });
    let mut per_second: Vec<Vec<f64>> = vec![Vec::new(); seconds];
    for (sent, latency) in journeys.iter().flat_map(|j| j.site_latencies.iter()) {
        if let Some(bucket) = per_second.get_mut(*sent as usize) {
            bucket.push(*latency * 1000.0);
        }
    }
    let latency = |q: f64| {
        per_second
            .iter()
            .enumerate()
            .filter_map(|(i, v)| Some((i as f64, quantile(v, q)?)))
            .collect::<Vec<_>>()
    };
    out.push(Chart::Lines {
        title: "Site latency seen by visitors",
        y_label: "milliseconds",
        series: vec![
            Series {
                label: "p50",
                points: latency(0.5),
                color: COLORS[0],
            },
            Series {
                label: "p99",
                points: latency(0.99),
                color: COLORS[3],
            },
        ],
    });
    let waits: Vec<f64> = journeys
        .iter()
        .filter(|j| j.queued)
        .filter_map(|j| Some(j.admitted? - j.arrived))
        .collect();
    if !waits.is_empty() {
        out.push(Chart::Histogram {
            title: "Distribution of waits in line",
            x_label: "seconds waited",
            values: waits,
        });
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A self-contained HTML page: the table and the charts of each run, side by side.
pub fn html(title: &str, runs: &[(&Summary, Vec<(&'static str, String)>)]) -> String {
    let summaries: Vec<&Summary> = runs.iter().map(|(s, _)| *s).collect();
    let mut page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>body{{font:15px/1.4 system-ui,sans-serif;margin:1.5rem;color:#111}}\
         table{{border-collapse:collapse}}td,th{{padding:.2rem .8rem;border-bottom:1px solid #ddd;text-align:right}}\
         td:first-child,th:first-child,td.meaning{{text-align:left}}td.meaning{{color:#444;font-size:.9em}}\
         .runs{{display:flex;flex-wrap:wrap;gap:1rem}}.run,.runs>figure{{flex:1 1 540px;min-width:0}}.none p{{color:#555;padding:2rem 1rem;border:1px dashed #bbb}}\
         figure{{margin:0}}svg{{max-width:100%;height:auto;display:block;margin:.5rem 0}}\
         .table{{overflow-x:auto}}@media (max-width:700px){{body{{margin:.75rem}}td.meaning{{display:none}}}}\
         @media print{{.runs{{display:block}}figure{{break-inside:avoid}}}}</style></head>\
         <body><h1>{t}</h1><div class=\"table\"><table><tr><th></th>",
        t = escape(title)
    );
    for s in &summaries {
        let _ = write!(page, "<th>{}</th>", escape(&s.label));
    }
    page.push_str("<th>what it means</th></tr>");
    let all: Vec<_> = summaries.iter().map(|s| rows(s)).collect();
    for (i, (label, _)) in all[0].iter().enumerate() {
        let _ = write!(page, "<tr><td>{}</td>", escape(label));
        for r in &all {
            let _ = write!(page, "<td>{}</td>", escape(&r[i].1));
        }
        let _ = write!(
            page,
            "<td class=\"meaning\">{}</td></tr>",
            escape(meaning(label))
        );
    }
    page.push_str("</table></div>");
    for note in summaries.iter().flat_map(|s| notes(s)) {
        let _ = write!(
            page,
            "<p class=\"note\"><strong>Note:</strong> {}</p>",
            escape(&note)
        );
    }
    page.push_str("<div class=\"runs\">");
    for (s, _) in runs {
        let _ = write!(
            page,
            "<section class=\"run\"><h2>{} — {}</h2>",
            escape(&s.label),
            escape(&s.target)
        );
        let r = &s.run;
        let _ = write!(
            page,
            "<p class=\"what\">{} visitors over {} s ({}), journey: {}; started {}{}</p>",
            r.users,
            r.over_s,
            escape(&r.profile),
            escape(&r.journey),
            escape(&r.started_at),
            match (r.max_duration_s, r.cut) {
                (Some(d), true) => format!("; <strong>cut after {d} s: a partial report</strong>"),
                (Some(d), false) => format!("; at most {d} s"),
                _ => String::new(),
            }
        );
        page.push_str(
            "<table class=\"steps\"><tr><th>step</th><th>request</th><th>requests</th>\
             <th>failed</th><th>visitors done</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th></tr>",
        );
        for st in &s.steps {
            page.push_str("<tr>");
            for cell in step_cells(st) {
                let _ = write!(page, "<td>{}</td>", escape(&cell));
            }
            page.push_str("</tr>");
        }
        page.push_str("</table></section>");
    }
    page.push_str("</div>");
    // A row per kind of chart, the runs side by side on the same axes; a run without
    // that chart says why.
    let longest = runs.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    let mut titles: Vec<&str> = Vec::new();
    for (_, charts) in runs
        .iter()
        .filter(|(_, c)| c.len() == longest)
        .take(1)
        .chain(runs)
    {
        for (title, _) in charts {
            if !titles.contains(title) {
                titles.push(title);
            }
        }
    }
    for title in titles {
        page.push_str("<div class=\"runs\">");
        for (s, charts) in runs {
            match charts.iter().find(|(t, _)| *t == title) {
                Some((_, svg)) => {
                    let _ = write!(page, "<figure class=\"chart\">{svg}</figure>");
                }
                None => {
                    let _ = write!(
                        page,
                        "<figure class=\"chart none\"><p>{}: not in the run {} (nobody waited, or no waiting room was asked).</p></figure>",
                        escape(title),
                        escape(&s.label)
                    );
                }
            }
        }
        page.push_str("</div>");
    }
    page.push_str("</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_what_visitors_saw() {
        let j = |id, arrived: f64, admitted: Option<f64>, confirmation: Option<&str>| Journey {
            id,
            scheduled: arrived,
            arrived,
            queued: true,
            first_eta: Some(10.0),
            admitted,
            confirmation: confirmation.map(str::to_owned),
            completed: confirmation.is_some(),
            done: admitted.unwrap_or(arrived) + 1.0,
            ..Default::default()
        };
        let mut lost = j(3, 2.0, Some(12.0), None);
        lost.errors = vec![ErrorKind::Server5xx, ErrorKind::Timeout];
        let mut left = j(4, 3.0, None, None);
        left.abandoned = true;
        let journeys = vec![
            j(1, 0.0, Some(10.0), Some("A")),
            j(2, 1.0, Some(21.0), Some("B")),
            lost,
            left,
        ];
        let s = summarize("t", "http://x", &journeys, OriginReport::default());
        assert_eq!(
            (
                s.arrivals,
                s.admitted,
                s.registrations_completed,
                s.lost,
                s.abandoned
            ),
            (4, 3, 2, 1, 1)
        );
        assert_eq!(
            (s.errors.server_5xx, s.errors.timeout, s.visitors_seeing_5xx),
            (1, 1, 1)
        );
        // Waits 10, 20, 10; ETA 10 shown each time: errors 0, 0.5, 0.
        assert_eq!(s.queue_wait_s.max, Some(20.0));
        assert_eq!(s.eta_relative_error.p50, Some(0.0));
        assert_eq!(s.eta_relative_error.max, Some(0.5));
        // "Less than a minute" was shown: all three waits of 10-20 s were inside it.
        assert_eq!(s.eta_within_shown_range, Some(1.0));
        assert!(table(&[&s, &s]).contains("registrations completed"));
        for (label, _) in rows(&s) {
            assert!(!meaning(label).is_empty(), "{label} has no meaning");
        }
        let page = html("report", &[(&s, charts(&journeys, &[], Some(5)))]);
        assert_eq!(page.matches("<svg").count(), 5);
    }

    #[test]
    fn duplicate_mails_in_an_outbox() {
        let outbox = serde_json::json!([{"nrn": "1"}, {"nrn": "2"}, {"nrn": "1"}, {"nrn": "1"}]);
        assert_eq!(duplicate_mails(&outbox), Some(2));
    }
}

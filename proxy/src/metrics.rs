//! Prometheus metrics, registered into a registry passed in (no globals).

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::admission::line::{PumpReport, Snapshot};

/// The kinds of the origin's misbehaviour counted (see [`Metrics::origin_misbehaved`]).
pub const MISBEHAVIOUR: [&str; 4] = [
    "unsolicited_bytes",
    "extra_bytes",
    "unasked_upgrade",
    "transfer_coding",
];

/// Counters of one instance at one moment (see [`Metrics::totals`]).
#[derive(Clone, Debug, Default)]
pub struct Totals {
    /// Visitors let in (direct, claimed, open).
    pub admitted: u64,
    /// Places called by the pump.
    pub called: u64,
    /// Departed places passed over.
    pub passed_over: u64,
    /// Tokens refused.
    pub refused: u64,
    /// Answers from the origin.
    pub origin_answers: u64,
    /// Forwarded requests that failed: a 5xx answer or none.
    pub origin_failures: u64,
    /// Forwarded requests the origin did not answer at all.
    pub origin_no_answer: u64,
    /// The origin's latency histogram: (upper bound in seconds, cumulative count).
    pub origin_latency: Vec<(f64, u64)>,
}

/// The proxy's metrics. Cheap to clone: every field is a handle.
#[derive(Clone)]
pub struct Metrics {
    requests: IntCounterVec,
    /// The series counted on every request, looked up once (a lookup by label
    /// takes the vector's lock and hashes the label: on the hot path, that adds up).
    hot: Hot,
    tokens_refused: IntCounterVec,
    client_errors: IntCounterVec,
    accept_failures: IntCounter,
    rate_limited: IntCounterVec,
    challenges: IntCounterVec,
    admissions: IntCounterVec,
    sessions_ended: IntCounterVec,
    queued: IntCounter,
    called: IntCounter,
    passed_over: IntCounter,
    store_errors: IntCounterVec,
    store_up: IntGauge,
    held_requests: IntGauge,
    queued_for_origin: IntGauge,
    turns_held: IntGauge,
    kept: IntCounterVec,
    clients_cut: IntCounterVec,
    breaker: IntGauge,
    breaker_opened: IntCounter,
    origin_errors: IntCounterVec,
    origin_misbehaviour: IntCounterVec,
    origin_seconds: Histogram,
    origin_responses: IntCounterVec,
    wait_seconds: Histogram,
    line: IntGaugeVec,
    settings: IntGaugeVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: T) -> T {
    registry
        .register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

/// Series of the hot paths, looked up once.
#[derive(Clone)]
struct Hot {
    /// `waitroom_requests_total` for `forwarded`, `queued` and `status`.
    forwarded: IntCounter,
    queued: IntCounter,
    status: IntCounter,
    /// `waitroom_origin_responses_total` by class, `1xx` first.
    origin_classes: [IntCounter; 5],
}

impl Hot {
    fn of(requests: &IntCounterVec, origin_responses: &IntCounterVec) -> Self {
        let class = |c: &str| origin_responses.with_label_values(&[c]);
        Self {
            forwarded: requests.with_label_values(&["forwarded"]),
            queued: requests.with_label_values(&["queued"]),
            status: requests.with_label_values(&["status"]),
            origin_classes: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn new(registry: &Registry) -> Self {
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let counter = |name: &str, help: &str| {
            register(registry, IntCounter::new(name, help).expect("valid metric"))
        };
        let requests = counter_vec(
            "waitroom_requests_total",
            "Public requests by outcome",
            &["outcome"],
        );
        let origin_responses = counter_vec(
                "waitroom_origin_responses_total",
                "Responses from the origin to forwarded requests, by status class: 1xx, 2xx, 3xx, 4xx, 5xx",
                &["class"],
            );
        Self {
            hot: Hot::of(&requests, &origin_responses),
            requests,
            tokens_refused: counter_vec(
                "waitroom_tokens_refused_total",
                "Presented tokens refused, by reason",
                &["reason"],
            ),
            client_errors: counter_vec(
                "waitroom_client_errors_total",
                "Requests refused as the client's mistake: body (broken or malformed body), request (no or two Host headers, CONNECT), shed (over limits.max_connections), path (a path that cannot be read one way only: answered 400)",
                &["kind"],
            ),
            accept_failures: counter(
                "waitroom_accept_failures_total",
                "Failed accepts on the public listener (out of file descriptors and the like); each is followed by a back-off",
            ),
            rate_limited: counter_vec(
                "waitroom_rate_limited_total",
                "Requests answered 429: places (a client asking for too many new places), session (one admission used faster than a person does)",
                &["limit"],
            ),
            challenges: counter_vec(
                "waitroom_challenges_total",
                "Proof-of-work challenges: issued (to a newcomer without a good answer), solved (answered, a place follows)",
                &["outcome"],
            ),
            admissions: counter_vec(
                "waitroom_admissions_total",
                "Visitors let in: direct (nobody waiting) or claimed (their turn came)",
                &["kind"],
            ),
            sessions_ended: counter_vec(
                "waitroom_sessions_ended_total",
                "Sessions the origin ended with a waitroom-command response header: release (its business is done, the slot goes to the next in line) or revoke (it must not go on)",
                &["command"],
            ),
            queued: counter("waitroom_places_issued_total", "Places in line handed out"),
            called: counter(
                "waitroom_called_total",
                "Places called by the pump (admissions granted from the line)",
            ),
            passed_over: counter(
                "waitroom_passed_over_total",
                "Departed places passed over without using an admission",
            ),
            store_errors: counter_vec(
                "waitroom_store_errors_total",
                "Store operations that failed",
                &["operation"],
            ),
            store_up: register(
                registry,
                IntGauge::new(
                    "waitroom_store_up",
                    "1 while the store answers this instance's pump, 0 while it does not",
                )
                .expect("valid metric"),
            ),
            held_requests: register(
                registry,
                IntGauge::new(
                    "waitroom_origin_held_requests",
                    "Admitted visitors' requests waiting for a failing origin to recover",
                )
                .expect("valid metric"),
            ),
            turns_held: register(
                registry,
                IntGauge::new(
                    "waitroom_origin_turns_held",
                    "Turns at the origin held now (origin.max_in_flight): requests whose answer the origin has not finished sending",
                )
                .expect("valid metric"),
            ),
            kept: counter_vec(
                "waitroom_kept_places_total",
                "Places kept in arrival order for newcomers past their address's allowance: kept (a place kept), earned_work (earned by the page's proof of work), earned_allowance (earned as the address's allowance came back, without the work)",
                &["outcome"],
            ),
            clients_cut: counter_vec(
                "waitroom_clients_cut_total",
                "Clients cut off: write_timeout (read nothing of an answer for limits.write_timeout), body_timeout (sent nothing of a request body for limits.body_timeout: answered 408)",
                &["reason"],
            ),
            queued_for_origin: register(
                registry,
                IntGauge::new(
                    "waitroom_origin_queued_requests",
                    "Requests waiting for their turn at the origin (origin.max_in_flight)",
                )
                .expect("valid metric"),
            ),
            breaker: register(
                registry,
                IntGauge::new(
                    "waitroom_origin_breaker",
                    "The origin's circuit breaker: 0 closed (healthy), 1 open (failing: the line is held), 2 half-open (probing)",
                )
                .expect("valid metric"),
            ),
            breaker_opened: counter(
                "waitroom_origin_breaker_opened_total",
                "Times the origin's circuit breaker opened (the origin was failing)",
            ),
            origin_errors: counter_vec(
                "waitroom_origin_errors_total",
                "Forwarded requests that failed: connect (refused), broken, timeout, status_5xx (answered 500 or more)",
                &["kind"],
            ),
            origin_misbehaviour: counter_vec(
                "waitroom_origin_misbehaviour_total",
                "Answers the origin framed against the protocol, each answered 502 or its connection closed, never held against the origin by the breaker: unsolicited_bytes (bytes on an idle connection, after its answer had ended: a late body), extra_bytes (more than the answer's framing said), unasked_upgrade (101 to a request that asked for none), transfer_coding (a coding other than chunked, which no request offered)",
                &["kind"],
            ),
            origin_seconds: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "waitroom_origin_response_seconds",
                        "Time until the origin's response head",
                    )
                    .buckets(prometheus::exponential_buckets(0.001, 2.0, 16).expect("buckets")),
                )
                .expect("valid metric"),
            ),
            origin_responses,
            wait_seconds: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "waitroom_wait_seconds",
                        "How long visitors admitted from the line waited: from their place to their admission",
                    )
                    .buckets(vec![
                        5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
                        14400.0,
                    ]),
                )
                .expect("valid metric"),
            ),
            line: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "waitroom_line",
                        "The line: queue_length, active_users, called_pending, outflow_per_minute (measured admissions a minute from the line)",
                    ),
                    &["what"],
                )
                .expect("valid metric"),
            ),
            settings: register(
                registry,
                IntGaugeVec::new(
                    Opts::new("waitroom_setting", "Current run-time settings"),
                    &["name"],
                )
                .expect("valid metric"),
            ),
        }
        .with_zeros()
    }

    /// Starts the series that alerts need at 0 rather than absent.
    fn with_zeros(self) -> Self {
        for outcome in ["forwarded", "queued", "bypass", "status"] {
            self.requests.with_label_values(&[outcome]);
        }
        for e in crate::token::TokenError::ALL {
            self.tokens_refused.with_label_values(&[e.label()]);
        }
        for kind in ["direct", "claimed", "open"] {
            self.admissions.with_label_values(&[kind]);
        }
        for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            self.origin_responses.with_label_values(&[class]);
        }
        for kind in ["connect", "broken", "timeout", "status_5xx"] {
            self.origin_errors.with_label_values(&[kind]);
        }
        for outcome in ["kept", "earned_work", "earned_allowance"] {
            self.kept.with_label_values(&[outcome]);
        }
        for reason in ["write_timeout", "body_timeout"] {
            self.clients_cut.with_label_values(&[reason]);
        }
        for kind in MISBEHAVIOUR {
            self.origin_misbehaviour.with_label_values(&[kind]);
        }
        for op in ["decide", "touch", "pump", "end"] {
            self.store_errors.with_label_values(&[op]);
        }
        for kind in ["body", "request", "shed", "path"] {
            self.client_errors.with_label_values(&[kind]);
        }
        for command in ["release", "revoke"] {
            self.sessions_ended.with_label_values(&[command]);
        }
        for limit in ["places", "session"] {
            self.rate_limited.with_label_values(&[limit]);
        }
        for outcome in ["issued", "solved"] {
            self.challenges.with_label_values(&[outcome]);
        }
        self
    }

    /// Counts a public request by outcome (`forwarded`, `queued`, `bypass`, ...).
    pub fn request(&self, outcome: &str) {
        match outcome {
            "forwarded" => self.hot.forwarded.inc(),
            "queued" => self.hot.queued.inc(),
            "status" => self.hot.status.inc(),
            _ => self.requests.with_label_values(&[outcome]).inc(),
        }
    }

    /// Counts a refused token.
    pub fn token_refused(&self, reason: &str) {
        self.tokens_refused.with_label_values(&[reason]).inc();
    }

    /// This instance's counters so far, for the console's history.
    pub fn totals(&self) -> Totals {
        let sum = |v: &IntCounterVec, labels: &[&str]| {
            labels
                .iter()
                .map(|l| v.with_label_values(&[l]).get())
                .sum::<u64>()
        };
        let h = prometheus::core::Metric::metric(&self.origin_seconds);
        let buckets = h
            .get_histogram()
            .get_bucket()
            .iter()
            .map(|b| (b.upper_bound(), b.cumulative_count()))
            .collect();
        Totals {
            admitted: sum(&self.admissions, &["direct", "claimed", "open"]),
            called: self.called.get(),
            passed_over: self.passed_over.get(),
            refused: self.tokens_refused(),
            origin_answers: sum(&self.origin_responses, &["1xx", "2xx", "3xx", "4xx", "5xx"]),
            origin_failures: sum(
                &self.origin_errors,
                &["connect", "broken", "timeout", "status_5xx"],
            ),
            origin_no_answer: sum(&self.origin_errors, &["connect", "broken", "timeout"]),
            origin_latency: buckets,
        }
    }

    /// Refused tokens so far, whatever the reason.
    pub fn tokens_refused(&self) -> u64 {
        crate::token::TokenError::ALL
            .iter()
            .map(|e| self.tokens_refused.with_label_values(&[e.label()]).get())
            .sum()
    }

    /// Counts a request refused as the client's mistake (see the metric's help).
    pub fn client_error(&self, kind: &str) {
        self.client_errors.with_label_values(&[kind]).inc();
    }

    /// Counts a failed accept on the public listener.
    pub fn accept_failed(&self) {
        self.accept_failures.inc();
    }

    /// Counts a request answered 429 by `limit` (`places` or `session`).
    pub fn rate_limited(&self, limit: &str) {
        self.rate_limited.with_label_values(&[limit]).inc();
    }

    /// Counts a proof-of-work challenge by outcome (`issued`, `solved`).
    pub fn challenge(&self, outcome: &str) {
        self.challenges.with_label_values(&[outcome]).inc();
    }

    /// Counts an admission.
    pub fn admitted(&self, kind: &str) {
        self.admissions.with_label_values(&[kind]).inc();
    }

    /// Counts a session the origin ended with `command` (`release` or `revoke`).
    pub fn session_ended(&self, command: &str) {
        self.sessions_ended.with_label_values(&[command]).inc();
    }

    /// Counts a place handed out.
    pub fn queued(&self) {
        self.queued.inc();
    }

    /// Counts a failed store operation.
    pub fn store_error(&self, operation: &str) {
        self.store_errors.with_label_values(&[operation]).inc();
    }

    /// Records whether the store answered the last pump round.
    pub fn store_up(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    /// Counts a request waiting for its turn at the origin (`origin.max_in_flight`)
    /// while the guard lives.
    pub fn queued_for_origin(&self) -> HeldRequest {
        self.queued_for_origin.inc();
        HeldRequest(self.queued_for_origin.clone())
    }

    /// Counts a turn held at the origin while the guard lives.
    pub fn turn_held(&self) -> HeldRequest {
        self.turns_held.inc();
        HeldRequest(self.turns_held.clone())
    }

    /// Counts a kept place's `outcome` (`kept`, `earned_work`, `earned_allowance`).
    pub fn kept(&self, outcome: &str) {
        self.kept.with_label_values(&[outcome]).inc();
    }

    /// Counts a client cut off, for `reason` (`write_timeout` or `body_timeout`).
    pub fn client_cut(&self, reason: &str) {
        self.clients_cut.with_label_values(&[reason]).inc();
    }

    /// Counts a request held for a failing origin while the guard lives.
    pub fn holding_request(&self) -> HeldRequest {
        self.held_requests.inc();
        HeldRequest(self.held_requests.clone())
    }

    /// Records the breaker's state (see [`crate::breaker::State::gauge`]) and how
    /// many times it opened.
    pub fn breaker(&self, state: i64, times_opened: u64) {
        self.breaker.set(state);
        self.breaker_opened
            .inc_by(times_opened.saturating_sub(self.breaker_opened.get()));
    }

    /// Counts an answer the origin framed against the protocol, by `kind` (one
    /// of [`MISBEHAVIOUR`]).
    pub fn origin_misbehaved(&self, kind: &str) {
        self.origin_misbehaviour.with_label_values(&[kind]).inc();
    }

    /// Counts a failed forward.
    pub fn origin_error(&self, kind: &str) {
        self.origin_errors.with_label_values(&[kind]).inc();
    }

    /// Records the origin's time to a response head.
    pub fn origin_latency(&self, seconds: f64) {
        self.origin_seconds.observe(seconds);
    }

    /// Counts a response from the origin by its status class.
    pub fn origin_response(&self, status: http::StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.hot.origin_classes[class].inc();
    }

    /// Records how long a visitor admitted from the line waited.
    pub fn waited(&self, seconds: f64) {
        self.wait_seconds.observe(seconds);
    }

    /// Records what a pump round did.
    pub fn pumped(&self, report: PumpReport) {
        self.called.inc_by(u64::from(report.called));
        self.passed_over.inc_by(u64::from(report.passed_over));
    }

    /// Refreshes the gauges from a snapshot.
    pub fn observe(&self, s: &Snapshot) {
        let gauge = |what: &str, v: u64| {
            self.line
                .with_label_values(&[what])
                .set(i64::try_from(v).unwrap_or(i64::MAX))
        };
        gauge("queue_length", s.queue_length);
        // The measured outflow, admissions a minute (0 until there is a line to measure).
        gauge(
            "outflow_per_minute",
            s.measured_per_minute.map_or(0, |m| m.round() as u64),
        );
        gauge("active_users", s.active_users);
        gauge("called_pending", s.called_pending);
        let setting = |name: &str, v: i64| self.settings.with_label_values(&[name]).set(v);
        setting(
            "new_users_per_minute",
            i64::from(s.settings.new_users_per_minute),
        );
        setting("max_active_users", i64::from(s.settings.max_active_users));
        setting("paused", i64::from(s.settings.paused));
        setting("closed", i64::from(s.settings.closed));
        setting("queue_all", i64::from(s.settings.queue_all));
        setting("passthrough", i64::from(s.settings.passthrough));
        setting("lottery", i64::from(s.settings.lottery));
        // Unix seconds of a scheduled opening, 0 for none.
        setting(
            "opens_at",
            s.settings.opens_at.map_or(0, |ms| (ms / 1000) as i64),
        );
        // Unix seconds until which the line is held for a failing origin, 0 for never.
        setting(
            "held_until",
            s.settings.held_until.map_or(0, |ms| (ms / 1000) as i64),
        );
    }
}

/// A request counted in a gauge (`waitroom_origin_held_requests`,
/// `waitroom_origin_queued_requests`) while it lives.
pub struct HeldRequest(IntGauge);

impl Drop for HeldRequest {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    render_all(std::slice::from_ref(registry))
}

/// A registry for room `name`'s metrics: each carries the label `room="NAME"`
/// (the default room's have none, so a single room reads as it always did).
pub fn room_registry(name: &str) -> Registry {
    let labels = std::collections::HashMap::from([("room".to_owned(), name.to_owned())]);
    Registry::new_custom(None, Some(labels)).expect("a valid label name and value")
}

/// Whether a metric is the process's (the origin, the listener), counted in the
/// default room's registry only: other rooms' registries have it at zero.
fn process_wide(name: &str) -> bool {
    name.starts_with("waitroom_origin_") || name == "waitroom_accept_failures_total"
}

/// The metrics of several registries in one exposition, the process's (the
/// default room's) first, then other rooms' (their own line's metrics): a metric
/// several of them have is written once, with every registry's series.
pub fn render_all(registries: &[Registry]) -> String {
    use prometheus::Encoder;
    let mut families: Vec<prometheus::proto::MetricFamily> = Vec::new();
    for (i, registry) in registries.iter().enumerate() {
        for mut family in registry.gather() {
            if i > 0 && process_wide(family.name()) {
                continue;
            }
            match families.iter_mut().find(|f| f.name() == family.name()) {
                Some(f) => f.mut_metric().extend(family.take_metric()),
                None => families.push(family),
            }
        }
    }
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&families, &mut out)
        .expect("text encoding into a Vec cannot fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}

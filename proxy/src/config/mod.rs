//! Configuration: the TOML file as written ([`File`]) and the validated [`Config`].
//!
//! Unknown keys are errors; every validation error names the key and the reason.
//! The library never reads files or the environment: the binary passes the text
//! and the `WAITROOM_ADMIN_TOKEN` override in.

mod edge;
mod rooms;

pub use edge::Edge;
pub use rooms::{route, RoomConfig, DEFAULT_ROOM};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::admission::line::{Settings, Timing};
use crate::admission::OnFailure;
use crate::breaker::BreakerConfig;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The text is not valid TOML, has an unknown key or a value of the wrong type.
    #[error("{0}")]
    Parse(String),
    /// A key has a value that is not allowed.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key, as `section.name`.
        key: &'static str,
        /// Why its value is refused.
        reason: String,
    },
}

/// A TOML error on one line: the key it is about (`section.name`, found from where
/// the error is), the reason, and the line.
fn parse_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    // A missing key or section is about the whole file, not a line of it.
    let Some(span) = e.span().filter(|s| s.start > 0 || s.end < text.len()) else {
        return message.to_owned();
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let mut lines = text[..start].lines().rev();
    let this = text.lines().nth(line_no - 1).unwrap_or("");
    let name = this
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let section = lines
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix('[')
                .and_then(|l| l.trim_start_matches('[').split(']').next())
        })
        .map(str::trim);
    match (section, name) {
        (Some(s), Some(k)) => format!("{s}.{k}: {message} (line {line_no})"),
        (None, Some(k)) => format!("{k}: {message} (line {line_no})"),
        _ => format!("line {line_no}: {message}"),
    }
}

/// The most `new_users_per_minute` or `max_active_users` may be: more than any
/// site can mean (a typing slip, or `u32::MAX` meaning "no limit", for which
/// `admission.passthrough` is there).
pub const MAX_LIMIT: u32 = 10_000_000;

/// Why `n` is refused as a rate or capacity above [`MAX_LIMIT`].
pub fn beyond_any_site(n: u32) -> String {
    format!(
        "{n} is more than any site can take (at most {MAX_LIMIT}; for no limit at all, use passthrough)"
    )
}

/// A path prefix of the configuration must start with `/` and be written as
/// requests' paths are compared with it (see [`crate::path`]); the reason when not.
fn absolute(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err(format!("{prefix:?} must start with '/'"));
    }
    match crate::path::normalize(prefix) {
        Ok(None) => Ok(()),
        Ok(Some(normal)) => Err(format!(
            "{prefix:?} is compared with paths as the origin reads them: write it {normal:?}"
        )),
        Err(e) => Err(format!("{prefix:?} can never match a request: {e}")),
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// The file as written. Every section but `listen` and `origin` may be left out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    listen: ListenFile,
    origin: OriginFile,
    #[serde(default)]
    admission: AdmissionFile,
    #[serde(default)]
    queue: QueueFile,
    #[serde(default)]
    routes: RoutesFile,
    #[serde(default)]
    store: StoreFile,
    #[serde(default)]
    admin: AdminFile,
    #[serde(default)]
    cookie: CookieFile,
    #[serde(default)]
    page: PageFile,
    #[serde(default)]
    breaker: BreakerFile,
    #[serde(default)]
    clients: edge::ClientsFile,
    #[serde(default)]
    limits: edge::LimitsFile,
    #[serde(default)]
    rooms: Vec<rooms::RoomFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct BreakerFile {
    enabled: bool,
    consecutive_failures: u32,
    failure_share: f64,
    min_requests: u32,
    window: String,
    open_for: String,
    stall_after: String,
    hold_requests: String,
}

impl Default for BreakerFile {
    /// [`BreakerConfig::default`], as written in a file.
    fn default() -> Self {
        let d = BreakerConfig::default();
        let text = |t: Duration| humantime::format_duration(t).to_string();
        Self {
            enabled: d.enabled,
            consecutive_failures: d.consecutive_failures,
            failure_share: d.failure_share,
            min_requests: d.min_requests,
            window: text(d.window),
            open_for: text(d.open_for),
            stall_after: text(d.stall_after),
            hold_requests: text(d.hold_requests),
        }
    }
}

impl BreakerFile {
    fn validate(&self) -> Result<BreakerConfig, ConfigError> {
        if self.consecutive_failures == 0 {
            return Err(invalid(
                "breaker.consecutive_failures",
                "must be at least 1",
            ));
        }
        if !(self.failure_share > 0.0 && self.failure_share <= 1.0) {
            return Err(invalid(
                "breaker.failure_share",
                "must be above 0 and at most 1",
            ));
        }
        if self.min_requests == 0 {
            return Err(invalid("breaker.min_requests", "must be at least 1"));
        }
        let at_least = |key: &'static str, text: &str, min: Duration, shown: &str| {
            let d = duration(key, text)?;
            if d < min {
                return Err(invalid(key, format!("must be at least {shown}")));
            }
            Ok(d)
        };
        Ok(BreakerConfig {
            enabled: self.enabled,
            consecutive_failures: self.consecutive_failures,
            failure_share: self.failure_share,
            min_requests: self.min_requests,
            window: at_least("breaker.window", &self.window, Duration::from_secs(1), "1s")?,
            open_for: at_least(
                "breaker.open_for",
                &self.open_for,
                Duration::from_millis(100),
                "100ms",
            )?,
            stall_after: at_least(
                "breaker.stall_after",
                &self.stall_after,
                Duration::from_secs(1),
                "1s",
            )?,
            hold_requests: duration("breaker.hold_requests", &self.hold_requests)?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PageFile {
    template: Option<String>,
    catalogues: Option<String>,
    site_name: Option<String>,
    logo: Option<String>,
}

/// The longest site name shown (in characters).
const SITE_NAME_MAX: usize = 80;

impl PageFile {
    fn checked(self) -> Result<PageConfig, ConfigError> {
        let site_name = match self.site_name.map(|n| n.trim().to_owned()) {
            Some(n) if n.is_empty() => None,
            Some(n) if n.chars().count() > SITE_NAME_MAX || n.chars().any(char::is_control) => {
                return Err(invalid(
                    "page.site_name",
                    format!("must be at most {SITE_NAME_MAX} characters on one line"),
                ))
            }
            n => n,
        };
        Ok(PageConfig {
            template: self.template.map(PathBuf::from),
            catalogues: self.catalogues.map(PathBuf::from),
            site_name,
            logo: self.logo.map(PathBuf::from),
        })
    }
}

/// The queue page's parts the operator chooses (`[page]`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PageConfig {
    /// The operator's template, if not the built-in one.
    pub template: Option<PathBuf>,
    /// A folder of the operator's catalogues (`de.toml`, `pl.toml`, …), if any.
    pub catalogues: Option<PathBuf>,
    /// The site's name, shown at the top of every page and in the tab's title.
    pub site_name: Option<String>,
    /// An image file (SVG, PNG, JPEG or WebP) shown beside the site's name.
    pub logo: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenFile {
    public: String,
    admin: String,
    #[serde(default = "default_handover_wait")]
    handover_wait: String,
    tls_cert: Option<String>,
    tls_key: Option<String>,
}

fn default_handover_wait() -> String {
    "2s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginFile {
    url: String,
    #[serde(default = "default_origin_timeout")]
    timeout: String,
    tls_ca: Option<String>,
    #[serde(default)]
    max_in_flight: u32,
    #[serde(default)]
    idempotent_paths: Vec<String>,
    #[serde(default)]
    honours_idempotency_key: bool,
    #[serde(default)]
    max_in_flight_per_visitor: u32,
}

fn default_origin_timeout() -> String {
    "30s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AdmissionFile {
    new_users_per_minute: u32,
    max_active_users: u32,
    session_duration: String,
    burst: Option<u32>,
    opens_at: Option<String>,
    queue_all: bool,
    passthrough: bool,
    lottery: bool,
}

impl Default for AdmissionFile {
    fn default() -> Self {
        Self {
            new_users_per_minute: 600,
            max_active_users: 200,
            session_duration: "10m".into(),
            burst: None,
            opens_at: None,
            queue_all: false,
            passthrough: false,
            lottery: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct QueueFile {
    poll_min: String,
    poll_max: String,
    abandon_after_polls: u32,
    abandon_min: String,
    token_ttl: String,
    return_grace: String,
    returned_share: f64,
}

impl Default for QueueFile {
    fn default() -> Self {
        Self {
            poll_min: "1s".into(),
            poll_max: "20s".into(),
            abandon_after_polls: 3,
            abandon_min: "5s".into(),
            token_ttl: "24h".into(),
            return_grace: "5m".into(),
            returned_share: 0.5,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RoutesFile {
    bypass: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct StoreFile {
    kind: String,
    on_failure: String,
    open_share: f64,
    url: Option<String>,
    cluster: bool,
    tls_ca: Option<String>,
    room: String,
    state_dir: String,
}

impl Default for StoreFile {
    fn default() -> Self {
        Self {
            kind: "memory".into(),
            on_failure: "hold".into(),
            open_share: 0.5,
            url: None,
            cluster: false,
            tls_ca: None,
            room: "default".into(),
            state_dir: "waitroom-state".into(),
        }
    }
}

/// Where the line lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// In this process, saved to `state_dir`.
    Memory,
    /// In Redis, shared by every instance configured with the same URL and room.
    Redis(RedisTarget),
}

/// How to reach the shared Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisTarget {
    /// `redis://` or, over TLS, `rediss://`, as `[user:password@]host:port[/db]`.
    pub url: String,
    /// Whether `url` is a node of a Redis Cluster.
    pub cluster: bool,
    /// A CA certificate (PEM) to trust for `rediss://` instead of the system's.
    pub tls_ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AdminFile {
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CookieFile {
    name: String,
    secure: String,
}

impl Default for CookieFile {
    fn default() -> Self {
        Self {
            name: "waitroom".into(),
            secure: "auto".into(),
        }
    }
}

/// When the cookie carries the `Secure` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieSecure {
    /// When the request came over TLS or with `X-Forwarded-Proto: https`.
    Auto,
    /// Always.
    Always,
    /// Never (plain-HTTP test set-ups).
    Never,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Public listener address.
    pub public: SocketAddr,
    /// Admin listener address.
    pub admin: SocketAddr,
    /// How long a stopping process keeps its listeners open for a successor to
    /// take over (see [`crate::handover`]).
    pub handover_wait: Duration,
    /// The origin's base URL (`http://host:port` or `https://host:port`).
    pub origin: http::Uri,
    /// A CA (PEM) to check an `https://` origin against instead of the system's roots.
    pub origin_tls_ca: Option<PathBuf>,
    /// The public listener's certificate chain and key (PEM), when it serves TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How long the origin may take to start answering.
    pub origin_timeout: Duration,
    /// Requests the origin is given at once at most (0: no limit); the others wait
    /// here, in order.
    pub origin_max_in_flight: u32,
    /// Path prefixes where the origin treats a POST or PATCH sent twice as sent
    /// once, so that one whose connection broke may be sent again.
    pub origin_idempotent_paths: Vec<String>,
    /// Whether the origin honours a client's `Idempotency-Key` (only then does
    /// one make a POST re-sendable).
    pub origin_honours_idempotency_key: bool,
    /// Turns at the origin one visitor (an admitted session, or a client on a
    /// bypassed path) holds at once at most, with `origin_max_in_flight`.
    pub origin_max_in_flight_per_visitor: u32,
    /// Initial run-time settings.
    pub settings: Settings,
    /// Timings of the line.
    pub timing: Timing,
    /// Lifetime of a queue token.
    pub queue_token_ttl: Duration,
    /// Path prefixes forwarded without admission.
    pub bypass: Vec<String>,
    /// Where the line lives.
    pub store: StoreKind,
    /// What happens while the store cannot be reached.
    pub on_failure: OnFailure,
    /// The waiting room's name in a shared store (several rooms can share a Redis).
    pub room: String,
    /// Where memory mode keeps the signing keys and the line.
    pub state_dir: PathBuf,
    /// The admin bearer token.
    pub admin_token: String,
    /// Cookie name.
    pub cookie_name: String,
    /// Cookie `Secure` policy.
    pub cookie_secure: CookieSecure,
    /// The origin's circuit breaker.
    pub breaker: BreakerConfig,
    /// The queue page: template, catalogues and the site's identity.
    pub page: PageConfig,
    /// Who the client is, and what one client or session may ask for.
    pub edge: Edge,
    /// The rooms beside the default one (`[[rooms]]`), see [`RoomConfig`].
    pub rooms: Vec<RoomConfig>,
}

/// The longest duration any key takes: more is a typo, and overflows the
/// arithmetic of cookie lifetimes and deadlines.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

fn duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(text).map_err(|e| {
        invalid(
            key,
            format!("{text:?} is not a duration like \"90s\" or \"10m\" ({e})"),
        )
    })?;
    if d > MAX_DURATION {
        return Err(invalid(key, format!("{text:?} is more than a year")));
    }
    Ok(d)
}

/// The latest opening that may be scheduled, from `now_ms`: a year ahead.
pub fn latest_opening(now_ms: u64) -> u64 {
    now_ms.saturating_add(MAX_DURATION.as_millis() as u64)
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn address(key: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse().map_err(|_| {
        invalid(
            key,
            format!("{text:?} is not an address like \"127.0.0.1:8080\""),
        )
    })
}

impl Config {
    /// Whether `other` forwards to the origin otherwise (its address, timeouts,
    /// turns, or what may be sent twice): a forwarder is built anew for it.
    pub fn forwarding_differs(&self, other: &Config) -> bool {
        self.origin != other.origin
            || self.origin_timeout != other.origin_timeout
            || self.origin_tls_ca != other.origin_tls_ca
            || self.origin_max_in_flight != other.origin_max_in_flight
            || self.origin_max_in_flight_per_visitor != other.origin_max_in_flight_per_visitor
            || self.origin_idempotent_paths != other.origin_idempotent_paths
            || self.origin_honours_idempotency_key != other.origin_honours_idempotency_key
            || self.edge.body_timeout != other.edge.body_timeout
            || self.edge.write_timeout != other.edge.write_timeout
    }

    /// Parses and validates TOML text. `admin_token_env` (from `WAITROOM_ADMIN_TOKEN`)
    /// overrides `admin.token`.
    pub fn from_toml(text: &str, admin_token_env: Option<String>) -> Result<Self, ConfigError> {
        let mut file: File =
            toml::from_str(text).map_err(|e| ConfigError::Parse(parse_error(text, &e)))?;
        let rooms = std::mem::take(&mut file.rooms);
        let mut config = Self::try_from_file(file, admin_token_env.clone())?;
        config.rooms = rooms::validate(text, rooms, &config, admin_token_env.as_ref())?;
        Ok(config)
    }

    /// Every room: the default one (the file's own sections) first, then the
    /// file's `[[rooms]]` in order.
    pub fn all_rooms(&self) -> Vec<RoomConfig> {
        std::iter::once(RoomConfig::default_of(self))
            .chain(self.rooms.iter().cloned())
            .collect()
    }

    fn try_from_file(f: File, admin_token_env: Option<String>) -> Result<Self, ConfigError> {
        let origin: http::Uri = f.origin.url.parse().map_err(|e| {
            invalid(
                "origin.url",
                format!("{:?} is not a URL ({e})", f.origin.url),
            )
        })?;
        let https = origin.scheme_str() == Some("https");
        if !(https || origin.scheme_str() == Some("http")) || origin.authority().is_none() {
            return Err(invalid(
                "origin.url",
                "must be an http:// or https:// URL with a host, like \"http://127.0.0.1:8081\"",
            ));
        }
        if f.origin.tls_ca.is_some() && !https {
            return Err(invalid(
                "origin.tls_ca",
                "only used with an https:// origin",
            ));
        }
        let tls = match (f.listen.tls_cert, f.listen.tls_key) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(
                    "listen.tls_key",
                    "missing: listen.tls_cert needs its key",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "listen.tls_cert",
                    "missing: listen.tls_key needs its certificate",
                ))
            }
        };
        if origin.path() != "/" || origin.query().is_some() {
            return Err(invalid(
                "origin.url",
                "must not have a path or query; requests keep theirs",
            ));
        }
        let a = &f.admission;
        if a.new_users_per_minute == 0 {
            return Err(invalid(
                "admission.new_users_per_minute",
                "must be at least 1 (pause through the admin API to stop admissions)",
            ));
        }
        if a.max_active_users == 0 {
            return Err(invalid("admission.max_active_users", "must be at least 1"));
        }
        for (key, n) in [
            ("admission.new_users_per_minute", a.new_users_per_minute),
            ("admission.max_active_users", a.max_active_users),
        ] {
            if n > MAX_LIMIT {
                return Err(invalid(key, beyond_any_site(n)));
            }
        }
        if a.burst == Some(0) {
            return Err(invalid("admission.burst", "must be at least 1"));
        }
        let session = duration("admission.session_duration", &a.session_duration)?;
        if session < Duration::from_secs(1) {
            return Err(invalid("admission.session_duration", "must be at least 1s"));
        }
        let opens_at = a
            .opens_at
            .as_deref()
            .map(|t| crate::clock::parse_rfc3339(t).map_err(|e| invalid("admission.opens_at", e)))
            .transpose()?;
        if opens_at.is_some_and(|at| at > latest_opening(crate::clock::wall_ms())) {
            return Err(invalid(
                "admission.opens_at",
                "must be at most a year from now",
            ));
        }
        let q = &f.queue;
        let poll_min = duration("queue.poll_min", &q.poll_min)?;
        let poll_max = duration("queue.poll_max", &q.poll_max)?;
        if poll_min < Duration::from_millis(200) {
            return Err(invalid("queue.poll_min", "must be at least 200ms"));
        }
        if poll_max < poll_min {
            return Err(invalid(
                "queue.poll_max",
                "must not be shorter than queue.poll_min",
            ));
        }
        if q.abandon_after_polls == 0 {
            return Err(invalid("queue.abandon_after_polls", "must be at least 1"));
        }
        let abandon_min = duration("queue.abandon_min", &q.abandon_min)?;
        let queue_token_ttl = duration("queue.token_ttl", &q.token_ttl)?;
        let return_grace = duration("queue.return_grace", &q.return_grace)?;
        if !(q.returned_share > 0.0 && q.returned_share <= 1.0) {
            return Err(invalid(
                "queue.returned_share",
                "must be above 0 and at most 1",
            ));
        }
        if queue_token_ttl < Duration::from_secs(60) {
            return Err(invalid("queue.token_ttl", "must be at least 1m"));
        }
        for prefix in &f.origin.idempotent_paths {
            absolute(prefix).map_err(|reason| invalid("origin.idempotent_paths", reason))?;
        }
        for prefix in &f.routes.bypass {
            absolute(prefix).map_err(|reason| invalid("routes.bypass", reason))?;
            if prefix.starts_with("/_waitroom") || "/_waitroom/".starts_with(prefix.as_str()) {
                return Err(invalid(
                    "routes.bypass",
                    format!("{prefix:?} would cover /_waitroom/, which is reserved"),
                ));
            }
        }
        if f.store.cluster && f.store.kind != "redis" {
            return Err(invalid(
                "store.cluster",
                "only used with store.kind = \"redis\"",
            ));
        }
        let store = match (f.store.kind.as_str(), f.store.url) {
            ("memory", None) => StoreKind::Memory,
            ("memory", Some(_)) => {
                return Err(invalid(
                    "store.url",
                    "only used with store.kind = \"redis\"",
                ))
            }
            ("redis", Some(url)) => {
                if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                    return Err(invalid(
                        "store.url",
                        format!("{url:?} is not a redis:// or rediss:// URL like \"redis://127.0.0.1:6379\""),
                    ));
                }
                if f.store.tls_ca.is_some() && !url.starts_with("rediss://") {
                    return Err(invalid("store.tls_ca", "only used with a rediss:// URL"));
                }
                StoreKind::Redis(RedisTarget {
                    url,
                    cluster: f.store.cluster,
                    tls_ca: f.store.tls_ca.map(PathBuf::from),
                })
            }
            ("redis", None) => {
                return Err(invalid(
                    "store.url",
                    "missing: store.kind = \"redis\" needs a URL",
                ))
            }
            (other, _) => {
                return Err(invalid(
                    "store.kind",
                    format!("{other:?} is not one of \"memory\", \"redis\""),
                ))
            }
        };
        if !(f.store.open_share > 0.0 && f.store.open_share <= 1.0) {
            return Err(invalid("store.open_share", "must be above 0 and at most 1"));
        }
        let on_failure = match f.store.on_failure.as_str() {
            "hold" => OnFailure::Hold,
            "open" => OnFailure::Open {
                per_minute: ((f64::from(a.new_users_per_minute) * f.store.open_share).ceil()
                    as u32)
                    .max(1),
                // Everybody waiting polls within the held poll interval (up to a
                // quarter later, see public::spread).
                gather_ms: millis(poll_max.min(Duration::from_secs(5))) * 5 / 4 + 500,
            },
            other => {
                return Err(invalid(
                    "store.on_failure",
                    format!("{other:?} is not one of \"hold\", \"open\""),
                ))
            }
        };
        let room_ok = !f.store.room.is_empty()
            && f.store.room.len() <= 64
            && f.store
                .room
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !room_ok {
            return Err(invalid(
                "store.room",
                "must be 1 to 64 letters, digits, '_' or '-'",
            ));
        }
        let admin_token = admin_token_env.or(f.admin.token).ok_or_else(|| {
            invalid(
                "admin.token",
                "missing: set it, or the environment variable WAITROOM_ADMIN_TOKEN",
            )
        })?;
        if admin_token.trim().len() < 8 {
            return Err(invalid("admin.token", "must be at least 8 characters"));
        }
        let cookie_secure = match f.cookie.secure.as_str() {
            "auto" => CookieSecure::Auto,
            "always" => CookieSecure::Always,
            "never" => CookieSecure::Never,
            other => {
                return Err(invalid(
                    "cookie.secure",
                    format!("{other:?} is not one of \"auto\", \"always\", \"never\""),
                ))
            }
        };
        let name_ok = !f.cookie.name.is_empty()
            && f.cookie
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(invalid(
                "cookie.name",
                "must be letters, digits, '_' or '-'",
            ));
        }
        let public = address("listen.public", &f.listen.public)?;
        let admin = address("listen.admin", &f.listen.admin)?;
        let overlap = public.ip() == admin.ip()
            || public.ip().is_unspecified()
            || admin.ip().is_unspecified();
        if overlap && public.port() == admin.port() && public.port() != 0 {
            return Err(invalid(
                "listen.admin",
                format!("must differ from listen.public ({public})"),
            ));
        }
        match (f.origin.max_in_flight, f.origin.max_in_flight_per_visitor) {
            (_, 0) => {}
            (0, _) => {
                return Err(invalid(
                    "origin.max_in_flight_per_visitor",
                    "only used with origin.max_in_flight",
                ))
            }
            (all, one) if one > all => {
                return Err(invalid(
                    "origin.max_in_flight_per_visitor",
                    format!("must be at most origin.max_in_flight ({all})"),
                ))
            }
            _ => {}
        }
        let origin_timeout = duration("origin.timeout", &f.origin.timeout)?;
        if origin_timeout < Duration::from_millis(100) {
            return Err(invalid(
                "origin.timeout",
                "must be at least 100ms (every request would time out)",
            ));
        }
        Ok(Self {
            public,
            admin,
            handover_wait: duration("listen.handover_wait", &f.listen.handover_wait)?,
            origin,
            origin_tls_ca: f.origin.tls_ca.map(PathBuf::from),
            tls,
            origin_timeout,
            origin_max_in_flight: f.origin.max_in_flight,
            origin_idempotent_paths: f.origin.idempotent_paths,
            origin_honours_idempotency_key: f.origin.honours_idempotency_key,
            origin_max_in_flight_per_visitor: match f.origin.max_in_flight_per_visitor {
                0 => f.origin.max_in_flight.div_ceil(4).max(1),
                n => n,
            },
            settings: Settings {
                new_users_per_minute: a.new_users_per_minute,
                max_active_users: a.max_active_users,
                paused: false,
                paused_at: None,
                closed: false,
                opens_at,
                held_until: None,
                queue_all: a.queue_all,
                passthrough: a.passthrough,
                lottery: a.lottery,
            },
            timing: Timing {
                session_ms: millis(session),
                burst: a.burst,
                poll_min_ms: millis(poll_min),
                poll_max_ms: millis(poll_max),
                abandon_polls: q.abandon_after_polls,
                abandon_min_ms: millis(abandon_min),
                return_grace_ms: millis(return_grace),
                returned_share_permille: ((q.returned_share * 1000.0).round() as u32)
                    .clamp(1, 1000),
            },
            queue_token_ttl,
            bypass: f.routes.bypass,
            store,
            on_failure,
            room: f.store.room,
            state_dir: PathBuf::from(f.store.state_dir),
            admin_token,
            cookie_name: f.cookie.name,
            cookie_secure,
            breaker: f.breaker.validate()?,
            page: f.page.checked()?,
            edge: edge::validate(f.clients, f.limits)?,
            rooms: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[listen]
public = "127.0.0.1:8080"
admin = "127.0.0.1:9090"
[origin]
url = "http://127.0.0.1:8081"
[admin]
token = "change-me"
"#;

    fn err(extra: &str) -> String {
        Config::from_toml(&format!("{MINIMAL}{extra}"), None)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults() {
        let c = Config::from_toml(MINIMAL, None).unwrap();
        assert_eq!(c.settings.new_users_per_minute, 600);
        assert_eq!(c.settings.max_active_users, 200);
        assert_eq!(c.timing.session_ms, 600_000);
        assert_eq!(c.cookie_name, "waitroom");
        assert_eq!(c.admin_token, "change-me");
    }

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../../../config/example.toml");
        Config::from_toml(text, None).unwrap();
    }

    #[test]
    fn an_opening_can_be_scheduled() {
        let with = |t: &str| format!("{MINIMAL}[admission]\nopens_at = \"{t}\"\n");
        let c = Config::from_toml(&with("2026-11-28T09:00:00Z"), None).unwrap();
        assert_eq!(c.settings.opens_at, Some(1_795_856_400_000));
        let e = Config::from_toml(&with("9am"), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("admission.opens_at:"), "{e}");
    }

    #[test]
    fn environment_overrides_admin_token() {
        let c = Config::from_toml(MINIMAL, Some("from-the-env".into())).unwrap();
        assert_eq!(c.admin_token, "from-the-env");
    }

    #[test]
    fn rejected_values_name_key_and_reason() {
        assert!(err("[queue]\nbogus = 1\n").contains("unknown field `bogus`"));
        assert!(err("[cookie]\nname = \"a b\"\n").starts_with("cookie.name:"));
        assert!(err("[queue]\npoll_min = \"soon\"\n")
            .starts_with("queue.poll_min: \"soon\" is not a duration"));
        assert!(err("[routes]\nbypass = [\"/_waitroom/x\"]\n").starts_with("routes.bypass:"));
        let e = err("[routes]\nbypass = [\"/static/../x\"]\n");
        assert!(
            e.starts_with("routes.bypass:") && e.contains("\"/x\""),
            "{e}"
        );
        let e = err("[admission]\nnew_users_per_minute = 4294967295\n");
        assert!(
            e.starts_with("admission.new_users_per_minute: 4294967295 is more"),
            "{e}"
        );
        let e = err("[[rooms]]\nname = \"t\"\npaths = [\"/t%2Fx\"]\n");
        assert!(e.starts_with("rooms.t.paths:"), "{e}");
        assert!(err("[routes]\nbypass = [\"/\"]\n").starts_with("routes.bypass:"));
        let relative = MINIMAL.replace(
            "url = \"http://127.0.0.1:8081\"",
            "url = \"http://127.0.0.1:8081\"\nidempotent_paths = [\"register\"]",
        );
        let e = Config::from_toml(&relative, None).unwrap_err().to_string();
        assert!(e.starts_with("origin.idempotent_paths:"), "{e}");
        // TOML's own errors name the key too, with the line.
        let wrong_type = err("[admission]\nnew_users_per_minute = \"fast\"\n");
        let line = format!("{MINIMAL}[admission]").lines().count() + 1;
        assert!(
            wrong_type.starts_with("admission.new_users_per_minute: invalid type")
                && wrong_type.ends_with(&format!("(line {line})")),
            "{wrong_type}"
        );
        let unknown = err("[queue]\nfoo = 1\n");
        assert!(unknown.starts_with("queue.foo: unknown field"), "{unknown}");
        assert!(err("[store]\nkind = \"disk\"\n").starts_with("store.kind:"));
        assert!(err("[store]\nkind = \"redis\"\n").starts_with("store.url: missing"));
        assert!(err("[store]\nkind = \"redis\"\nurl = \"http://x\"\n").starts_with("store.url:"));
        assert!(err("[store]\nroom = \"a b\"\n").starts_with("store.room:"));
        let redis = format!("{MINIMAL}[store]\nkind = \"redis\"\nurl = \"redis://:pw@127.0.0.1:6380/2\"\nroom = \"vaccines\"\n");
        let c = Config::from_toml(&redis, None).unwrap();
        assert_eq!(
            c.store,
            StoreKind::Redis(RedisTarget {
                url: "redis://:pw@127.0.0.1:6380/2".into(),
                cluster: false,
                tls_ca: None,
            })
        );
        assert!(
            err("[store]\nkind = \"redis\"\nurl = \"redis://x\"\ntls_ca = \"ca.pem\"\n")
                .starts_with("store.tls_ca:")
        );
        assert_eq!(c.room, "vaccines");
        assert!(err("[store]\ncluster = true\n").starts_with("store.cluster:"));
        assert!(err("[breaker]\nfailure_share = 0.0\n").starts_with("breaker.failure_share:"));
        assert!(err("[breaker]\nconsecutive_failures = 0\n")
            .starts_with("breaker.consecutive_failures:"));
        assert!(err("[breaker]\nopen_for = \"10ms\"\n").starts_with("breaker.open_for:"));
        assert!(err("[breaker]\nwindow = \"soon\"\n").starts_with("breaker.window:"));
        let c = Config::from_toml(MINIMAL, None).unwrap();
        assert_eq!(c.breaker, crate::breaker::BreakerConfig::default());
        assert_eq!(c.handover_wait, Duration::from_secs(2));
        assert!(err("[store]\non_failure = \"panic\"\n").starts_with("store.on_failure:"));
        assert!(err("[store]\nopen_share = 0.0\n").starts_with("store.open_share:"));
        let open = format!("{MINIMAL}[store]\non_failure = \"open\"\nopen_share = 0.25\n");
        let c = Config::from_toml(&open, None).unwrap();
        assert_eq!(
            c.on_failure,
            OnFailure::Open {
                per_minute: 150,
                gather_ms: 6_750
            }
        );
        assert!(
            err("[queue]\npoll_min = \"5s\"\npoll_max = \"1s\"\n").starts_with("queue.poll_max:")
        );
        let no_token = MINIMAL.replace("token = \"change-me\"", "");
        let e = Config::from_toml(&no_token, None).unwrap_err().to_string();
        assert!(e.starts_with("admin.token: missing"), "{e}");
        let bad_origin = MINIMAL.replace("http://127.0.0.1:8081", "ftp://x");
        let e = Config::from_toml(&bad_origin, None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("origin.url:"), "{e}");
        let zero = format!("{MINIMAL}[admission]\nnew_users_per_minute = 0\n");
        assert!(Config::from_toml(&zero, None)
            .unwrap_err()
            .to_string()
            .starts_with("admission.new_users_per_minute:"));
        let zero = MINIMAL.replace("8081\"", "8081\"\ntimeout = \"0s\"");
        let e = Config::from_toml(&zero, None).unwrap_err().to_string();
        assert!(e.starts_with("origin.timeout:"), "{e}");
        let e = err("[admission]\nsession_duration = \"1000000000y\"\n");
        assert!(
            e.starts_with("admission.session_duration:") && e.contains("more than a year"),
            "{e}"
        );
        let e = err("[admission]\nopens_at = \"9999-12-31T23:59:59Z\"\n");
        assert!(
            e.starts_with("admission.opens_at: must be at most a year"),
            "{e}"
        );
        let same = MINIMAL.replace("127.0.0.1:9090", "127.0.0.1:8080");
        let e = Config::from_toml(&same, None).unwrap_err().to_string();
        assert!(e.starts_with("listen.admin: must differ"), "{e}");
        let half = MINIMAL.replace("[origin]", "tls_cert = \"c.pem\"\n[origin]");
        let e = Config::from_toml(&half, None).unwrap_err().to_string();
        assert!(e.starts_with("listen.tls_key: missing"), "{e}");
        let ca = MINIMAL.replace("8081\"", "8081\"\ntls_ca = \"ca.pem\"");
        let e = Config::from_toml(&ca, None).unwrap_err().to_string();
        assert!(e.starts_with("origin.tls_ca:"), "{e}");
        let any = MINIMAL.replace("127.0.0.1:8080", "0.0.0.0:9090");
        let e = Config::from_toml(&any, None).unwrap_err().to_string();
        assert!(e.starts_with("listen.admin: must differ"), "{e}");
        assert!(err("[clients]\ntrusted_proxies = [\"10.0.0.0/33\"]\n")
            .starts_with("clients.trusted_proxies:"));
        assert!(err("[queue]\nreturned_share = 0.0\n").starts_with("queue.returned_share:"));
        assert!(err("[limits]\nsession_burst = 2\n").starts_with("limits.session_burst:"));
        assert!(err("[limits]\nmax_connections = 3\n").starts_with("limits.max_connections:"));
        let c = Config::from_toml(MINIMAL, None).unwrap();
        assert_eq!(
            c.edge.places,
            crate::limits::Limit {
                rate: 30,
                burst: 30
            }
        );
        assert_eq!(
            c.edge.session,
            crate::limits::Limit {
                rate: 20,
                burst: 60
            }
        );
        let typed = format!("{MINIMAL}[admission]\nmax_active_users = \"many\"\n");
        assert!(Config::from_toml(&typed, None)
            .unwrap_err()
            .to_string()
            .contains("max_active_users"));
    }
}

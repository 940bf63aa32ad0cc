//! What a waiting visitor sees: the status JSON and the queue page.
//!
//! The page is a template (`page.html`, minijinja; an operator may supply their
//! own) filled with messages from catalogues in eight languages or more ([`i18n`]),
//! under the site's name and logo when the operator gives them. Without
//! JavaScript it refreshes itself (a meta refresh at the poll interval, inside
//! `<noscript>`); with JavaScript it polls `/_waitroom/status`, updates the place in
//! an `aria-live` region, and reloads the page the visitor asked for when their
//! turn comes.

mod holes;
pub mod i18n;
mod json;
pub mod notice;
pub mod steady;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use minijinja::{context, Environment, UndefinedBehavior};

use holes::{Fill, Holes};
use i18n::Catalogues;

use crate::admission::line::{Gate, Wait};
use crate::clock::Millis;
use crate::config::PageConfig;

/// The visitor's state as `/_waitroom/status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting in line.
    Queued,
    /// Their turn has come; the next request goes through.
    Admitted,
    /// Waiting, and admissions are paused.
    Paused,
    /// The waiting room is closed (with `opens_at` when an opening is scheduled).
    Closed,
}

/// The status JSON of the contract, plus what the page needs besides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// Queued, admitted, paused or closed.
    pub state: State,
    /// 1-based among the people still waiting; 0 once admitted.
    pub position: u64,
    /// People ahead: `position - 1`.
    pub ahead: u64,
    /// Estimated wait from the measured outflow.
    pub eta_seconds: u64,
    /// When to poll again.
    pub poll_after_ms: u64,
    /// A scheduled opening (RFC 3339), while the room is closed until then.
    #[serde(
        with = "crate::clock::rfc3339",
        skip_serializing_if = "Option::is_none"
    )]
    pub opens_at: Option<Millis>,
    /// Seconds until that opening (count down from this, not from the clock of the
    /// device, which may be wrong).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_in_seconds: Option<u64>,
    /// While the operator has paused the line: since when (RFC 3339), if known.
    #[serde(
        with = "crate::clock::rfc3339",
        skip_serializing_if = "Option::is_none"
    )]
    pub paused_at: Option<Millis>,
    /// How much of the line ahead at arrival is behind the visitor now, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_percent: Option<u8>,
    /// Why the line does not move, when it is not the operator: `"origin"` while
    /// the site is failing (the state says `paused`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Whether the page reads the place and the estimate out to screen readers now:
    /// only in answer to a poll that said what the page showed ([`steady`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announce: Option<bool>,
    /// Before a lottery opening: the order of everybody who arrives before it is
    /// drawn then, and the place shown now is no promise (the page shows none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lottery: Option<bool>,
    /// After a lottery opening, for a place of its pre-queue: its number is the
    /// draw's (the page says so).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drawn: Option<bool>,
}

/// Why a line that should move does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// The site behind the waiting room is failing; calls resume once it recovers.
    Origin,
}

/// What went wrong with a visitor's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trouble {
    /// The site did not answer (refused, broken, or still failing after a wait).
    Down,
    /// The site took too long to answer.
    Slow,
    /// Too many requests from the visitor's connection or session (429).
    TooMany,
}

impl Status {
    /// The status of a visitor still waiting, told `w` at `now`.
    pub fn waiting(w: &Wait, now: Millis) -> Self {
        let (state, opens_at) = match w.gate {
            Gate::Open => (State::Queued, None),
            Gate::Paused { .. } | Gate::Held { .. } => (State::Paused, None),
            Gate::Closed => (State::Closed, None),
            Gate::Scheduled { opens_at } => (State::Closed, Some(opens_at)),
        };
        let reason = matches!(w.gate, Gate::Held { .. }).then_some(Reason::Origin);
        let paused_at = match w.gate {
            Gate::Paused { since } => since,
            _ => None,
        };
        Self {
            state,
            position: w.position,
            ahead: w.position.saturating_sub(1),
            eta_seconds: w.eta_ms.div_ceil(1000),
            poll_after_ms: w.poll_after_ms,
            opens_at,
            opens_in_seconds: opens_at.map(|t| t.saturating_sub(now).div_ceil(1000)),
            paused_at,
            progress_percent: None,
            reason,
            announce: None,
            lottery: None,
            drawn: None,
        }
    }

    /// With the progress made since the visitor arrived at `first_position`.
    pub fn progress_from(mut self, first_position: Option<u64>) -> Self {
        self.progress_percent = first_position
            .filter(|first| *first > 0 && self.position > 0)
            .map(|first| {
                let gone = first.saturating_sub(self.position);
                (gone * 100 / first).min(99) as u8
            });
        self
    }

    /// The status of an admitted visitor.
    pub fn admitted() -> Self {
        Self {
            state: State::Admitted,
            position: 0,
            ahead: 0,
            eta_seconds: 0,
            poll_after_ms: 0,
            opens_at: None,
            opens_in_seconds: None,
            paused_at: None,
            progress_percent: None,
            reason: None,
            announce: None,
            lottery: None,
            drawn: None,
        }
    }

    /// The status shown while the store cannot be reached: the line is held.
    pub fn held(poll_after_ms: u64) -> Self {
        Self {
            state: State::Paused,
            position: 0,
            ahead: 0,
            eta_seconds: 0,
            poll_after_ms,
            opens_at: None,
            opens_in_seconds: None,
            paused_at: None,
            progress_percent: None,
            reason: None,
            announce: None,
            lottery: None,
            drawn: None,
        }
    }

    /// Marked as a lottery's: before its opening (`lottery`: no place promised),
    /// or a place drawn at it (`drawn`).
    pub fn lottery(mut self, lottery: bool, drawn: bool) -> Self {
        self.lottery =
            (lottery && self.state == State::Closed && self.opens_at.is_some()).then_some(true);
        self.drawn = (drawn && self.state == State::Queued).then_some(true);
        self
    }

    /// With the estimate steadied against what the page showed `before` (see
    /// [`steady`]), while the line moves.
    pub fn steadied(mut self, before: Option<steady::Before>) -> Self {
        if self.state == State::Queued && self.position > 0 {
            let told = steady::steady(before, self.eta_seconds, self.position);
            self.eta_seconds = told.eta_seconds;
            self.announce = before.map(|_| told.announce);
        }
        self
    }

    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("status serializes")
    }
}

/// Why an operator's page could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct PageError {
    /// The configuration key (`page.template`, `page.catalogues`).
    pub key: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// The queue page: a template and its catalogues.
#[derive(Clone, Debug)]
pub struct Page {
    env: Environment<'static>,
    catalogues: Catalogues,
    /// Each language's catalogue as the template gets it, prepared once.
    prepared: Vec<(&'static str, Prepared)>,
    /// Where the page asks for the visitor's status (see [`Page::for_room`]).
    status_url: String,
    /// The site's name, shown at the top and in the tab's title.
    site_name: Option<String>,
    /// The site's logo, served at `logo_url`.
    logo: Option<Logo>,
    /// Where the page finds the logo (see [`Page::for_room`]).
    logo_url: String,
    /// The built-in template's pages cut at their holes, by language and shape
    /// ([`holes`]); `None` for an operator's template, always rendered whole.
    holes: Option<Arc<Mutex<Cut>>>,
}

/// Each shape's pieces, or `None` for a shape rendered whole each time.
type Cut = HashMap<Shape, Option<Arc<Holes>>>;

/// A page's shape: its language (index among the prepared ones), state, whether
/// it refreshes, whether it asks to send again, and what its values are
/// ([`holes::shape`]).
type Shape = (usize, &'static str, bool, bool, u64);

/// Shapes kept at most (each is a few kilobytes; the pages in use have a few dozen).
const MAX_SHAPES: usize = 1024;

/// An image the page shows, as it is served.
#[derive(Clone, Debug)]
pub struct Logo {
    /// The file's bytes.
    pub bytes: Bytes,
    /// Its media type, from the file's extension.
    pub content_type: &'static str,
}

/// The largest logo file accepted.
const LOGO_MAX_BYTES: u64 = 256 * 1024;

impl Logo {
    /// Reads the image at `path` (SVG, PNG, JPEG or WebP, at most 256 KiB).
    fn load(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let content_type = match ext.as_deref() {
            Some("svg") => "image/svg+xml",
            Some("png") => "image/png",
            Some("jpg" | "jpeg") => "image/jpeg",
            Some("webp") => "image/webp",
            _ => {
                return Err(format!(
                    "{shown}: must be an .svg, .png, .jpg or .webp file"
                ))
            }
        };
        let size = std::fs::metadata(path)
            .map_err(|e| format!("{shown}: {e}"))?
            .len();
        if size > LOGO_MAX_BYTES {
            return Err(format!(
                "{shown}: {size} bytes, more than the {LOGO_MAX_BYTES} a logo may have"
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
        Ok(Self {
            bytes: Bytes::from(bytes),
            content_type,
        })
    }
}

/// A language's catalogue as the template gets it: as a map (`t`) and as the
/// JSON the page's script reads. Built once, not on every render (where turning
/// the catalogue into template values was much of the page's cost).
#[derive(Clone, Debug)]
struct Prepared {
    t: minijinja::Value,
    messages_json: minijinja::Value,
}

impl Prepared {
    fn of(catalogues: &Catalogues, lang: &str) -> Self {
        let messages = catalogues.messages(lang);
        // `</` cannot appear inside the JSON, so it cannot close the script element.
        let json = serde_json::to_string(messages)
            .unwrap_or_default()
            .replace("</", "<\\/");
        Self {
            t: minijinja::Value::from_serialize(messages),
            messages_json: minijinja::Value::from_safe_string(json),
        }
    }
}

/// What a page says besides the visitor's status.
#[derive(Clone, Copy, Debug, Default)]
pub struct Notes<'a> {
    /// The page text of an event under way.
    pub message: Option<&'a str>,
    /// The operator's notice, in the page's language.
    pub notice: Option<&'a str>,
    /// The visitor's session lapsed after this many seconds without a request:
    /// the page says so, and that what they were sending must be sent again.
    pub lapsed_after_secs: Option<u64>,
    /// The page answers a request that must not be sent again by itself (a form):
    /// when the visitor's turn comes, the page loads its address anew instead of
    /// repeating the request.
    pub resend: bool,
}

/// Where a room's page asks for the visitor's status.
const STATUS_URL: &str = "/_waitroom/status";
/// Where a room's page finds its logo.
const LOGO_URL: &str = "/_waitroom/logo";

const TEMPLATE: &str = "page.html";

impl Page {
    /// The page that ships with waitroom.
    pub fn builtin() -> Self {
        Self::new(
            include_str!("page.html").to_owned(),
            true,
            Catalogues::builtin(),
            None,
            None,
        )
        .expect("the built-in page renders")
    }

    /// The operator's template, catalogue folder, site name and logo, checked by
    /// rendering every state in every language: a broken page is refused here,
    /// never shown.
    pub fn load(config: &PageConfig) -> Result<Self, PageError> {
        let builtin = config.template.is_none();
        let source = match config.template.as_deref() {
            Some(path) => std::fs::read_to_string(path).map_err(|e| PageError {
                key: "page.template",
                reason: format!("{}: {e}", path.display()),
            })?,
            None => include_str!("page.html").to_owned(),
        };
        let catalogues = match config.catalogues.as_deref() {
            Some(dir) => Catalogues::with_folder(dir).map_err(|reason| PageError {
                key: "page.catalogues",
                reason,
            })?,
            None => Catalogues::builtin(),
        };
        let logo = match config.logo.as_deref() {
            Some(path) => Some(Logo::load(path).map_err(|reason| PageError {
                key: "page.logo",
                reason,
            })?),
            None => None,
        };
        Self::new(source, builtin, catalogues, config.site_name.clone(), logo)
    }

    fn new(
        source: String,
        builtin: bool,
        catalogues: Catalogues,
        site_name: Option<String>,
        logo: Option<Logo>,
    ) -> Result<Self, PageError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_template_owned(TEMPLATE, source)
            .map_err(|e| PageError {
                key: "page.template",
                reason: e.to_string(),
            })?;
        let prepared = catalogues
            .languages()
            .iter()
            .map(|lang| (*lang, Prepared::of(&catalogues, lang)))
            .collect();
        let page = Self {
            env,
            catalogues,
            prepared,
            status_url: STATUS_URL.into(),
            site_name,
            logo,
            logo_url: LOGO_URL.into(),
            holes: builtin.then(Default::default),
        };
        let wait = |position, gate| Wait {
            position,
            eta_ms: 300_000,
            poll_after_ms: 5_000,
            gate,
        };
        let samples = [
            Status::waiting(&wait(42, Gate::Open), 0).progress_from(Some(50)),
            Status::waiting(&wait(1, Gate::Paused { since: None }), 0),
            Status::waiting(&wait(7, Gate::Closed), 0),
            Status::waiting(&wait(9, Gate::Scheduled { opens_at: 60_000 }), 0),
            Status::waiting(&wait(3, Gate::Held { until: 60_000 }), 0),
            Status::held(5_000),
            Status::admitted(),
        ];
        for lang in page.catalogues.languages() {
            for s in &samples {
                page.try_render(s, lang, "/register")
                    .map_err(|e| PageError {
                        key: "page.template",
                        reason: format!("does not render: {e:#}"),
                    })?;
            }
            for (trouble, retry) in [
                (Trouble::Down, true),
                (Trouble::Slow, false),
                (Trouble::TooMany, true),
            ] {
                let shown = Shown::Error {
                    trouble,
                    retry_secs: 5,
                    retry,
                };
                let notes = Notes {
                    message: Some("-"),
                    notice: Some("-"),
                    lapsed_after_secs: Some(600),
                    resend: true,
                };
                page.try_render_shown(&Status::admitted(), shown, lang, "/register", &notes)
                    .map_err(|e| PageError {
                        key: "page.template",
                        reason: format!("the error page does not render: {e:#}"),
                    })?;
            }
        }
        Ok(page)
    }

    /// The page of room `name` (not the default room): it asks for the status
    /// of a place in that room's line (`/_waitroom/status?room=NAME`).
    pub fn for_room(mut self, name: &str) -> Self {
        if name != crate::config::DEFAULT_ROOM {
            self.status_url = format!("{STATUS_URL}?room={name}");
            self.logo_url = format!("{LOGO_URL}?room={name}");
            // The pieces carry the addresses: a room cuts its own.
            self.holes = self.holes.as_ref().map(|_| Default::default());
        }
        self
    }

    /// The site's logo, if the operator gave one.
    pub fn logo(&self) -> Option<&Logo> {
        self.logo.as_ref()
    }

    /// The language for a request (see [`Catalogues::negotiate`]).
    pub fn language(
        &self,
        query_lang: Option<&str>,
        chosen: Option<&str>,
        accept_language: Option<&str>,
    ) -> &'static str {
        self.catalogues
            .negotiate(query_lang, chosen, accept_language)
    }

    /// The offered language `tag` names, if any (see [`Catalogues::known`]).
    pub fn known_language(&self, tag: &str) -> Option<&'static str> {
        self.catalogues.known(tag)
    }

    /// The message `key` of the catalogue of `lang` (no placeholders filled).
    pub fn message(&self, lang: &str, key: &str) -> String {
        self.catalogues.text(lang, key, &[])
    }

    /// The page for `status` in `lang`, served for `target` (the path and query
    /// the visitor asked for: the language links keep it).
    pub fn render(&self, status: &Status, lang: &str, target: &str) -> String {
        self.render_noting(status, lang, target, &Notes::default())
    }

    /// [`Page::render`] with `notes` shown as well.
    pub fn render_noting(
        &self,
        status: &Status,
        lang: &str,
        target: &str,
        notes: &Notes,
    ) -> String {
        self.try_render_shown(status, Shown::of(status), lang, target, notes)
            .unwrap_or_else(|e| {
                // Checked at start-up for every state and language; keep serving anyway.
                tracing::error!(error = %e, "queue page failed to render");
                render_plain(status)
            })
    }

    /// The page for an admitted visitor whose request the site could not answer:
    /// it says so in `lang` and, when the request may be repeated (`retry`: a
    /// GET), reloads `target` by itself after `retry_secs`; otherwise it asks the
    /// visitor to send it again (a form is never sent again behind their back).
    pub fn render_error(
        &self,
        trouble: Trouble,
        lang: &str,
        target: &str,
        retry_secs: u64,
        retry: bool,
    ) -> String {
        let status = Status {
            poll_after_ms: retry_secs * 1000,
            ..Status::admitted()
        };
        let shown = Shown::Error {
            trouble,
            retry_secs,
            retry,
        };
        self.try_render_shown(&status, shown, lang, target, &Notes::default())
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "error page failed to render");
                render_plain(&status)
            })
    }

    fn try_render(
        &self,
        status: &Status,
        lang: &str,
        target: &str,
    ) -> Result<String, minijinja::Error> {
        self.try_render_shown(status, Shown::of(status), lang, target, &Notes::default())
    }

    fn try_render_shown(
        &self,
        status: &Status,
        shown: Shown,
        lang: &str,
        target: &str,
        notes: &Notes,
    ) -> Result<String, minijinja::Error> {
        let c = &self.catalogues;
        let message = notes.message;
        let lapsed_note = notes.lapsed_after_secs.map(|secs| {
            c.text(
                lang,
                "session_lapsed",
                &[("minutes", secs.div_ceil(60).max(1).to_string())],
            )
        });
        let t = |key: &str| c.text(lang, key, &[]);
        let place = || {
            c.text(
                lang,
                "position",
                &[("position", status.position.to_string())],
            )
        };
        let headline = match shown {
            Shown::Paused => t("paused"),
            Shown::Held => t("trouble"),
            Shown::Error {
                trouble: Trouble::Down,
                ..
            } => t("origin_down"),
            Shown::Error {
                trouble: Trouble::Slow,
                ..
            } => t("origin_slow"),
            Shown::Error {
                trouble: Trouble::TooMany,
                ..
            } => t("too_many"),
            Shown::Closed => t("closed"),
            Shown::Admitted => t("admitted"),
            Shown::Scheduled { opens_at, .. } => {
                c.text(lang, "scheduled", &[("time", utc_time(opens_at, false))])
            }
            Shown::Draw { opens_at, .. } => {
                c.text(lang, "in_draw", &[("time", utc_time(opens_at, false))])
            }
            Shown::Queued => place(),
        };
        let ahead = match (shown, status.ahead) {
            (Shown::Queued, 0) => t("ahead_none"),
            (Shown::Queued, 1) => t("ahead_one"),
            (Shown::Queued, n) => c.text(lang, "ahead_many", &[("ahead", n.to_string())]),
            (
                Shown::Error {
                    trouble: Trouble::TooMany,
                    retry: true,
                    retry_secs,
                },
                _,
            ) => c.text(lang, "try_again_in", &[("seconds", retry_secs.to_string())]),
            (
                Shown::Error {
                    retry: true,
                    retry_secs,
                    ..
                },
                _,
            ) => c.text(lang, "retrying", &[("seconds", retry_secs.to_string())]),
            (
                Shown::Error {
                    trouble: Trouble::TooMany,
                    retry: false,
                    ..
                },
                _,
            ) => t("send_again"),
            (Shown::Error { retry: false, .. }, _) => t("resend"),
            // Not moving, the place still stands: say which it is (but before a
            // draw, which will give another).
            (Shown::Admitted | Shown::Draw { .. }, _) => String::new(),
            _ if status.position == 0 => String::new(),
            _ => place(),
        };
        let (eta, countdown) = match shown {
            Shown::Queued => (eta_text(c, lang, status.eta_seconds, 0), String::new()),
            // Since when, and no countdown: nobody knows when it goes on.
            Shown::Paused => (
                status.paused_at.map_or_else(String::new, |at| {
                    c.text(lang, "paused_since", &[("time", utc_time(at, false))])
                }),
                String::new(),
            ),
            Shown::Scheduled { opens_in, .. } => (
                eta_text(c, lang, status.eta_seconds, opens_in),
                c.text(lang, "countdown", &[("countdown", clock_text(opens_in))]),
            ),
            Shown::Draw { opens_in, .. } => (
                String::new(),
                c.text(lang, "countdown", &[("countdown", clock_text(opens_in))]),
            ),
            _ => (String::new(), String::new()),
        };
        let updated = c.text(
            lang,
            "updated",
            &[("time", utc_time(crate::clock::wall_ms(), true))],
        );
        let text = |s: Option<String>| s.map_or(Fill::None, Fill::Text);
        // What changes from visitor to visitor; the language links' addresses last.
        let mut fills = vec![
            Fill::Text(headline),
            Fill::Text(ahead),
            Fill::Text(eta),
            Fill::Text(updated),
            Fill::Number(status.poll_after_ms.div_ceil(1000).max(1)),
            Fill::Number(status.poll_after_ms),
            Fill::Number(status.position),
            Fill::Number(status.eta_seconds),
            Fill::Text(countdown),
            status.opens_in_seconds.map_or(Fill::None, Fill::Number),
            text(status.opens_at.map(crate::clock::format_rfc3339)),
            status
                .progress_percent
                .map_or(Fill::None, |p| Fill::Number(p.into())),
            text(message.map(str::to_owned)),
            text(lapsed_note),
            text(notes.notice.map(str::to_owned)),
            text((status.drawn == Some(true)).then(|| t("drawn"))),
        ];
        let links = fills.len();
        fills.extend(
            c.languages()
                .iter()
                .map(|code| Fill::Text(with_lang(target, code))),
        );
        let prepared = self.prepared.iter().position(|(l, _)| *l == lang);
        let render = |marked: bool| {
            let v = |i: usize| fills[i].value(i, marked);
            let prepared = match prepared {
                Some(i) => self.prepared[i].1.clone(),
                None => Prepared::of(c, lang),
            };
            let languages: Vec<_> = c
                .languages()
                .iter()
                .enumerate()
                .map(|(i, code)| {
                    context! {
                        code => code,
                        name => c.text(code, "language_name", &[]),
                        href => v(links + i),
                        current => *code == lang,
                    }
                })
                .collect();
            self.env.get_template(TEMPLATE)?.render(context! {
                lang => lang,
                t => prepared.t,
                headline => v(0),
                ahead => v(1),
                eta => v(2),
                updated => v(3),
                languages => languages,
                refresh => shown.refreshes(),
                refresh_secs => v(4),
                poll_after_ms => v(5),
                messages_json => prepared.messages_json,
                // A room name is letters, digits, '_' and '-': nothing to escape.
                status_url => minijinja::Value::from_safe_string(
                    serde_json::to_string(&self.status_url).unwrap_or_default(),
                ),
                state => shown.name(),
                position => v(6),
                eta_seconds => v(7),
                countdown => v(8),
                opens_in_seconds => v(9),
                opens_at => v(10),
                progress_percent => v(11),
                message => v(12),
                site_name => self.site_name.as_deref(),
                lapsed_note => v(13),
                notice => v(14),
                drawn => v(15),
                resend => notes.resend,
                // Our own path and a room's name (letters, digits, '_', '-'): nothing to escape.
                logo_url => self
                    .logo
                    .as_ref()
                    .map(|_| minijinja::Value::from_safe_string(self.logo_url.clone())),
            })
        };
        let (Some(cache), Some(at)) = (&self.holes, prepared) else {
            return render(false);
        };
        if fills.len() > 32 {
            return render(false);
        }
        let key = (
            at,
            shown.name(),
            shown.refreshes(),
            notes.resend,
            holes::shape(&fills),
        );
        let known = cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        match known {
            Some(Some(holes)) => Ok(holes.fill(&fills)),
            Some(None) => render(false),
            None => {
                // A shape not seen before: rendered whole, and its pieces kept
                // only when they give the very same page.
                let whole = render(false)?;
                let holes = render(true)
                    .ok()
                    .and_then(|marked| Holes::cut(&marked, &fills))
                    .filter(|holes| holes.fill(&fills) == whole)
                    .map(Arc::new);
                if holes.is_none() {
                    tracing::warn!(
                        state = shown.name(),
                        lang,
                        "queue page: a shape is rendered whole each time"
                    );
                }
                let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                if cache.len() < MAX_SHAPES {
                    cache.insert(key, holes);
                }
                Ok(whole)
            }
        }
    }
}

/// What the page shows: the status's state, with a scheduled opening, a hold for
/// the origin and an error apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shown {
    Queued,
    Admitted,
    Paused,
    Held,
    Closed,
    Scheduled {
        opens_at: Millis,
        opens_in: u64,
    },
    /// Before a lottery opening: in the draw, no place promised.
    Draw {
        opens_at: Millis,
        opens_in: u64,
    },
    Error {
        trouble: Trouble,
        retry_secs: u64,
        retry: bool,
    },
}

impl Shown {
    fn of(status: &Status) -> Self {
        let opens_in = status.opens_in_seconds.unwrap_or(0);
        match (status.state, status.opens_at) {
            (State::Closed, Some(opens_at)) if status.lottery == Some(true) => {
                Self::Draw { opens_at, opens_in }
            }
            (State::Closed, Some(opens_at)) => Self::Scheduled { opens_at, opens_in },
            (State::Queued, _) => Self::Queued,
            (State::Admitted, _) => Self::Admitted,
            (State::Paused, _) if status.reason == Some(Reason::Origin) => Self::Held,
            (State::Paused, _) => Self::Paused,
            (State::Closed, _) => Self::Closed,
        }
    }

    /// The `state` variable of the template.
    fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Admitted => "admitted",
            Self::Paused => "paused",
            Self::Held => "held",
            Self::Closed => "closed",
            Self::Scheduled { .. } => "scheduled",
            Self::Draw { .. } => "draw",
            Self::Error { .. } => "error",
        }
    }

    /// Whether the page asks again by itself (not after a form that failed).
    fn refreshes(self) -> bool {
        !matches!(self, Self::Error { retry: false, .. })
    }
}

/// A link to `target` with its `lang` parameter set to `code`, every other
/// parameter kept: the visitor who switches language still reaches the page they
/// asked for. The link is the query alone (`?step=1&lang=fr`), relative to the
/// page's own address, so that no path asked for (`//evil.example/`) can turn it
/// into a link to another site.
fn with_lang(target: &str, code: &str) -> String {
    let query = target.split_once('?').map_or("", |(_, query)| query);
    let mut href = String::from("?");
    for pair in query.split('&') {
        if !pair.is_empty() && pair.split('=').next() != Some("lang") {
            href.push_str(pair);
            href.push('&');
        }
    }
    href.push_str("lang=");
    href.push_str(code);
    href
}

/// The time of day of `ms` in UTC, `09:00 UTC` or with seconds `09:00:05 UTC`.
fn utc_time(ms: Millis, seconds: bool) -> String {
    // RFC 3339 text: `2026-11-28T09:00:05Z`.
    let text = crate::clock::format_rfc3339(ms);
    let end = if seconds { 19 } else { 16 };
    format!("{} UTC", &text[11..end])
}

/// A countdown as the page shows it: `1:02:05`, or `2:05` under an hour.
fn clock_text(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// An honest wait: a range of minutes when it is more than a minute away. The
/// first `certain` seconds (until a scheduled opening) are not widened.
fn eta_text(c: &Catalogues, lang: &str, eta_seconds: u64, certain: u64) -> String {
    if eta_seconds < 60 {
        return c.text(lang, "eta_soon", &[]);
    }
    let certain = certain.min(eta_seconds);
    let uncertain = eta_seconds - certain;
    let low = ((certain + uncertain * 4 / 5) / 60).max(1);
    let high = (certain * 4 + uncertain * 5).div_ceil(4 * 60);
    if low == high {
        c.text(lang, "eta_about", &[("minutes", low.to_string())])
    } else {
        c.text(
            lang,
            "eta_range",
            &[("low", low.to_string()), ("high", high.to_string())],
        )
    }
}

/// A minimal page for the case the template fails at run time.
fn render_plain(status: &Status) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>You are in line</title>\
         <noscript><meta http-equiv=\"refresh\" content=\"{}\"></noscript></head><body><p>You are number {} in line. \
         Keep this page open; you keep your place if you reload.</p></body></html>",
        status.poll_after_ms.div_ceil(1000).max(1),
        status.position
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(position: u64, eta_seconds: u64) -> Status {
        Status::waiting(
            &Wait {
                position,
                eta_ms: eta_seconds * 1000,
                poll_after_ms: 3_000,
                gate: Gate::Open,
            },
            0,
        )
    }

    /// `html` with the time of day it was rendered (`09:00:05 UTC`) taken out.
    fn without_the_time(html: &str) -> String {
        let mut out = String::new();
        let mut rest = html;
        while let Some(at) = rest.find(" UTC") {
            let (before, after) = rest.split_at(at);
            let time = before.len().saturating_sub(8);
            let shaped = before[time..].bytes().enumerate().all(|(i, b)| {
                if i == 2 || i == 5 {
                    b == b':'
                } else {
                    b.is_ascii_digit()
                }
            });
            out.push_str(if shaped && before.len() >= 8 {
                &before[..time]
            } else {
                before
            });
            out.push_str(" UTC");
            rest = &after[4..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn the_pieces_give_the_very_page_a_whole_render_gives() {
        let page = Page::builtin();
        let mut whole = page.clone();
        whole.holes = None;
        let wait = |position, eta_s: u64, gate| Wait {
            position,
            eta_ms: eta_s * 1000,
            poll_after_ms: 4_500,
            gate,
        };
        let mut statuses = vec![Status::admitted(), Status::held(5_000)];
        for (position, eta) in [(1, 0), (2, 30), (7, 300), (42, 7_300), (100_000, 90_000)] {
            for gate in [
                Gate::Open,
                Gate::Paused { since: None },
                Gate::Closed,
                Gate::Held { until: 60_000 },
                Gate::Scheduled {
                    opens_at: 3_600_000,
                },
            ] {
                let status = Status::waiting(&wait(position, eta, gate), 1_000);
                statuses.push(status);
                statuses.push(status.progress_from(Some(position * 2)));
                statuses.push(status.progress_from(Some(position)));
            }
        }
        let notes = [
            Notes::default(),
            Notes {
                message: Some("Heute <b>nur</b> für Ü60 & \"Risiko\""),
                ..Notes::default()
            },
            Notes {
                notice: Some("Wartung um 18:00 / 'bitte' <warten>"),
                lapsed_after_secs: Some(600),
                resend: true,
                ..Notes::default()
            },
        ];
        let targets = [
            "/",
            "/register?step=2&lang=de",
            "/a?x=<script>&y=\"1\"",
            "/b?lang=fr",
        ];
        for lang in ["de", "fr", "lb", "en"] {
            for status in &statuses {
                for note in &notes {
                    for target in targets {
                        let expected =
                            without_the_time(&whole.render_noting(status, lang, target, note));
                        // The first of a shape is rendered whole and cut; the
                        // second is put together from the pieces.
                        for round in 0..2 {
                            let got = page.render_noting(status, lang, target, note);
                            assert_eq!(
                                without_the_time(&got),
                                expected,
                                "{lang} {status:?} {target} round {round}"
                            );
                        }
                    }
                }
            }
        }
        for (trouble, retry) in [
            (Trouble::Down, true),
            (Trouble::Slow, false),
            (Trouble::TooMany, true),
        ] {
            for _ in 0..2 {
                assert_eq!(
                    without_the_time(&page.render_error(trouble, "fr", "/r?a=1", 10, retry)),
                    without_the_time(&whole.render_error(trouble, "fr", "/r?a=1", 10, retry))
                );
            }
        }
        let shapes = page.holes.as_ref().unwrap().lock().unwrap();
        assert!(shapes.len() > 50, "{} shapes", shapes.len());
        assert!(
            shapes.values().all(Option::is_some),
            "every shape of the built-in page is served from its pieces"
        );
    }

    #[test]
    fn renders_each_language_with_place_range_and_switcher() {
        let page = Page::builtin();
        let html = page.render(&queued(12, 300), "de", "/register");
        assert!(html.contains("<html lang=\"de\""), "{html}");
        assert!(
            html.contains("<title>#12 · Sie sind in der Warteschlange</title>"),
            "{html}"
        );
        assert!(html.contains("Sie sind Nummer 12 in der Warteschlange."));
        assert!(html.contains("11 Personen sind vor Ihnen."));
        assert!(html.contains("Geschätzte Wartezeit: 4 bis 7 Minuten."));
        // The links are the query alone: the path stays the page's own.
        assert!(
            html.contains("href=\"?lang=fr\" lang=\"fr\" hreflang=\"fr\""),
            "{html}"
        );
        assert!(html.contains("lang=de\" lang=\"de\" hreflang=\"de\" aria-current=\"true\""));
        assert!(html.contains("aria-live=\"polite\""));
        assert!(html.contains("http-equiv=\"refresh\" content=\"3\""));
        let lb = page.render(&queued(1, 20), "lb", "/");
        assert!(
            lb.contains("Dir sidd als Nächst drun.") && lb.contains("manner wéi eng Minutt"),
            "{lb}"
        );
        let paused = page.render(&Status::held(5_000), "fr", "/");
        assert!(
            paused.contains("L&#x27;entrée est suspendue")
                || paused.contains("L'entrée est suspendue"),
            "{paused}"
        );
    }

    #[test]
    fn a_lottery_pre_queue_promises_no_place_and_a_drawn_one_says_so() {
        let page = Page::builtin();
        let opens_at = 1_795_856_400_000;
        let wait = |gate| Wait {
            position: 11,
            eta_ms: 3_700_000,
            poll_after_ms: 20_000,
            gate,
        };
        let s = Status::waiting(&wait(Gate::Scheduled { opens_at }), opens_at - 3_600_000)
            .lottery(true, false);
        assert_eq!(s.to_json()["lottery"], true);
        assert_eq!(s.json_bytes(), serde_json::to_vec(&s).unwrap());
        for (lang, in_draw, number) in [
            ("de", "Sie sind in der Auslosung.", "Nummer 11"),
            ("fr", "Vous participez au tirage au sort.", "numéro 11"),
            ("lb", "Dir sidd an der Auslousung.", "Nummer 11"),
            ("en", "You are in the draw.", "number 11"),
        ] {
            let html = page.render(&s, lang, "/register");
            assert!(
                html.contains(in_draw) && html.contains("09:00 UTC"),
                "{lang}: {html}"
            );
            assert!(
                !html.contains(number) && !html.contains("#11 ·"),
                "{lang}: a place number: {html}"
            );
            assert!(html.contains("<p id=\"eta\"></p>"), "{lang}: {html}");
            assert!(html.contains("role=\"timer\">"), "{lang}: the countdown");
        }
        // Not a lottery's: the place and the estimate, as before.
        let plain = Status::waiting(&wait(Gate::Scheduled { opens_at }), opens_at - 3_600_000)
            .lottery(false, false);
        assert!(plain.to_json().get("lottery").is_none());
        assert!(page
            .render(&plain, "en", "/")
            .contains("You are number 11 in line."));
        // After the opening, a drawn place says where its number comes from.
        let drawn = Status::waiting(&wait(Gate::Open), opens_at).lottery(false, true);
        assert_eq!(drawn.to_json()["drawn"], true);
        let html = page.render(&drawn, "en", "/");
        assert!(html.contains("this is your number from the draw"), "{html}");
        assert!(html.contains("You are number 11 in line."), "{html}");
        let html = page.render(&plain, "en", "/");
        assert!(html.contains("id=\"drawn\" hidden"), "{html}");
    }

    #[test]
    fn a_paused_line_says_since_when_and_counts_nothing_down() {
        let page = Page::builtin();
        let since = 1_795_856_400_000;
        let wait = Wait {
            position: 7,
            eta_ms: 600_000,
            poll_after_ms: 20_000,
            gate: Gate::Paused { since: Some(since) },
        };
        let s = Status::waiting(&wait, since + 60_000);
        assert_eq!(s.to_json()["paused_at"], "2026-11-28T09:00:00Z");
        assert_eq!(s.json_bytes(), serde_json::to_vec(&s).unwrap());
        for (lang, text) in [
            ("en", "Paused since 09:00 UTC"),
            ("de", "Angehalten seit 09:00 UTC"),
            ("fr", "En pause depuis 09:00 UTC"),
            ("lb", "Ugehalen zënter 09:00 UTC"),
        ] {
            let html = page.render(&s, lang, "/");
            assert!(html.contains(text), "{lang}: {html}");
            assert!(
                html.contains("id=\"countdown\" role=\"timer\" hidden"),
                "{lang}"
            );
        }
        // A pause whose start is not known says nothing of it.
        let unknown = Status::waiting(
            &Wait {
                gate: Gate::Paused { since: None },
                ..wait
            },
            0,
        );
        assert!(unknown.to_json().get("paused_at").is_none());
        assert!(page
            .render(&unknown, "en", "/")
            .contains("<p id=\"eta\"></p>"));
    }

    #[test]
    fn scheduled_closed_and_progress() {
        let page = Page::builtin();
        let wait = |gate| Wait {
            position: 30,
            eta_ms: 3_900_000,
            poll_after_ms: 20_000,
            gate,
        };
        // Opens at 09:00 UTC, an hour from now; 30 places take 5 more minutes.
        let opens_at = 1_795_856_400_000;
        let s = Status::waiting(&wait(Gate::Scheduled { opens_at }), opens_at - 3_600_000)
            .progress_from(Some(40));
        assert_eq!((s.state, s.opens_in_seconds), (State::Closed, Some(3_600)));
        let json = s.to_json();
        assert_eq!(json["opens_at"], "2026-11-28T09:00:00Z");
        assert_eq!(json["progress_percent"], 25);
        let html = page.render(&s, "de", "/register");
        assert!(html.contains("Der Einlass öffnet um 09:00 UTC."), "{html}");
        assert!(html.contains(">Öffnet in 1:00:00.</p>"), "{html}");
        assert!(
            html.contains("Sie sind Nummer 30 in der Warteschlange."),
            "{html}"
        );
        // The hour to the opening is certain; only the 5 minutes after it are a range.
        assert!(
            html.contains("Geschätzte Wartezeit: 64 bis 67 Minuten."),
            "{html}"
        );
        assert!(
            html.contains("<progress id=\"progress\" max=\"100\" value=\"25\">"),
            "{html}"
        );
        let closed = Status::waiting(&wait(Gate::Closed), 0);
        assert!(closed.to_json().get("opens_at").is_none());
        let html = page.render(&closed, "en", "/");
        assert!(html.contains("Entry is closed for now."), "{html}");
        assert!(html.contains("You are number 30 in line."), "{html}");
        assert!(
            html.contains("<p id=\"eta\"></p>"),
            "no promise while closed: {html}"
        );
        assert!(
            html.contains("id=\"countdown\" role=\"timer\" hidden"),
            "{html}"
        );
        assert!(html.contains("id=\"progress-box\" hidden"), "{html}");
        assert_eq!(clock_text(125), "2:05");
        assert_eq!(utc_time(opens_at + 5_000, true), "09:00:05 UTC");
        assert_eq!(with_lang("/register", "fr"), "?lang=fr");
        assert_eq!(
            with_lang("/register?lang=de&step=1&language=x", "lb"),
            "?step=1&language=x&lang=lb"
        );
        assert_eq!(with_lang("//evil.example/?a=b", "de"), "?a=b&lang=de");
    }

    fn template(path: &Path) -> PageConfig {
        PageConfig {
            template: Some(path.to_owned()),
            ..PageConfig::default()
        }
    }

    #[test]
    fn a_logo_that_is_no_image_or_too_big_is_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("waitroom-logo-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let with_logo = |name: &str, bytes: usize| {
            let path = dir.join(name);
            std::fs::write(&path, vec![b'x'; bytes]).unwrap();
            Page::load(&PageConfig {
                logo: Some(path),
                ..PageConfig::default()
            })
        };
        let e = with_logo("logo.gif", 10).unwrap_err().to_string();
        assert!(e.starts_with("page.logo:") && e.contains(".svg"), "{e}");
        let e = with_logo("big.png", 300 * 1024).unwrap_err().to_string();
        assert!(
            e.starts_with("page.logo:") && e.contains("more than"),
            "{e}"
        );
        let page = with_logo("logo.PNG", 10).unwrap();
        assert_eq!(page.logo().unwrap().content_type, "image/png");
        assert!(page
            .render(&queued(3, 90), "en", "/")
            .contains("<img src=\"/_waitroom/logo\""));
        let room = page.for_room("tickets");
        assert!(room
            .render(&queued(3, 90), "en", "/")
            .contains("<img src=\"/_waitroom/logo?room=tickets\""));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_broken_template_is_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("waitroom-page-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let syntax = dir.join("syntax.html");
        std::fs::write(&syntax, "<p>{{ position </p>").unwrap();
        let e = Page::load(&template(&syntax)).unwrap_err().to_string();
        assert!(e.starts_with("page.template:"), "{e}");
        let unknown = dir.join("unknown.html");
        std::fs::write(&unknown, "<p>{{ no_such_variable }}</p>").unwrap();
        let e = Page::load(&template(&unknown)).unwrap_err().to_string();
        assert!(e.starts_with("page.template: does not render"), "{e}");
        let custom = dir.join("custom.html");
        std::fs::write(
            &custom,
            "<html lang=\"{{ lang }}\"><p id=custom>{{ headline }}</p></html>",
        )
        .unwrap();
        let page = Page::load(&template(&custom)).unwrap();
        assert!(page
            .render(&queued(3, 90), "en", "/")
            .contains("<p id=custom>You are number 3 in line.</p>"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}

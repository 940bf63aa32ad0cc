//! What a waiting visitor sees: the status JSON and a plain queue page.
//!
//! The page refreshes itself without JavaScript (meta refresh at the poll interval)
//! and, with JavaScript, polls `/_waitroom/status` and reloads when admitted. The
//! polished, multilingual page replaces this module's HTML later.

use crate::admission::line::Wait;

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
    /// The waiting room is closed.
    Closed,
}

/// The status JSON of the contract (plus nothing the contract forbids).
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
}

impl Status {
    /// The status of a visitor still waiting.
    pub fn waiting(w: &Wait) -> Self {
        Self {
            state: if w.paused {
                State::Paused
            } else {
                State::Queued
            },
            position: w.position,
            ahead: w.position.saturating_sub(1),
            eta_seconds: w.eta_ms.div_ceil(1000),
            poll_after_ms: w.poll_after_ms,
        }
    }

    /// The status of an admitted visitor.
    pub fn admitted() -> Self {
        Self {
            state: State::Admitted,
            position: 0,
            ahead: 0,
            eta_seconds: 0,
            poll_after_ms: 0,
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
        }
    }

    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("status serializes")
    }
}

fn minutes(eta_seconds: u64) -> String {
    match eta_seconds {
        0..=59 => "less than a minute".to_owned(),
        60..=119 => "about 1 minute".to_owned(),
        s => format!("about {} minutes", s.div_ceil(60)),
    }
}

/// The queue page for a waiting visitor.
pub fn render(status: &Status) -> String {
    let refresh = status.poll_after_ms.div_ceil(1000).max(1);
    let headline = match status.state {
        State::Paused => "Entry is paused for a moment. You keep your place.".to_owned(),
        _ if status.position == 0 => "You are in line.".to_owned(),
        _ => format!("You are number {} in line.", status.position),
    };
    let wait = match status.state {
        State::Queued => format!("Estimated wait: {}.", minutes(status.eta_seconds)),
        _ => String::new(),
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<noscript><meta http-equiv="refresh" content="{refresh}"></noscript>
<title>You are in line</title>
<style>body{{font:1.1rem/1.5 system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;color:#111}}
.n{{font-size:2.5rem;font-weight:700}}</style></head>
<body><main><h1>Thank you for waiting</h1>
<p class="n" id="headline" aria-live="polite">{headline}</p>
<p id="wait">{wait}</p>
<p>Keep this page open: it updates by itself. If you reload or come back later, you keep your place.</p>
</main>
<script>
(function poll(after){{setTimeout(function(){{fetch('/_waitroom/status',{{headers:{{Accept:'application/json'}},credentials:'same-origin'}})
.then(function(r){{return r.json()}}).then(function(s){{
if(s.state==='admitted'){{location.reload();return}}
document.getElementById('headline').textContent=s.state==='paused'?'Entry is paused for a moment. You keep your place.':'You are number '+s.position+' in line.';
poll(s.poll_after_ms)}}).catch(function(){{poll(after)}})}},after)}})({poll_after});
</script></body></html>
"#,
        poll_after = status.poll_after_ms,
    )
}

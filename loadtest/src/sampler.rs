//! Samples the origin's `/__stats` (and optionally waitroom's `/admin/state`)
//! while the run goes on, for the charts over time.

use std::time::Duration;

use http::Method;
use tokio::time::Instant;

use crate::client::Http;

/// One sample.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Sample {
    /// Seconds from the start.
    pub t: f64,
    /// Requests inside the origin.
    pub origin_in_flight: Option<u64>,
    /// People waiting, as waitroom counts them.
    pub queue_length: Option<u64>,
    /// Active sessions, as waitroom counts them.
    pub active_users: Option<u64>,
    /// waitroom's configured outflow (new users per minute) then.
    pub rate_per_minute: Option<f64>,
    /// waitroom's configured capacity (`max_active_users`) then.
    pub max_active: Option<u64>,
}

/// Where to sample.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    /// The origin's base URL.
    pub origin: Option<String>,
    /// waitroom's admin base URL and bearer token.
    pub admin: Option<(String, String)>,
}

/// Reads a JSON document.
pub async fn get_json(http: &Http, url: &str, token: Option<&str>) -> Option<serde_json::Value> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    let r = http.send(Method::GET, url, &headers, None).await.ok()?;
    if !r.status.is_success() {
        return None;
    }
    serde_json::from_slice(&r.body).ok()
}

/// Samples every `every` until `stop` resolves.
pub async fn sample(
    http: Http,
    targets: Targets,
    start: Instant,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return out,
        }
        let mut s = Sample {
            t: start.elapsed().as_secs_f64(),
            ..Default::default()
        };
        if let Some(origin) = &targets.origin {
            s.origin_in_flight = get_json(&http, &format!("{origin}/__stats"), None)
                .await
                .and_then(|v| v["in_flight"].as_u64());
        }
        if let Some((admin, token)) = &targets.admin {
            if let Some(v) = get_json(&http, &format!("{admin}/admin/state"), Some(token)).await {
                s.queue_length = v["queue_length"].as_u64();
                s.active_users = v["active_users"].as_u64();
                s.rate_per_minute = v["new_users_per_minute"].as_f64();
                s.max_active = v["max_active_users"].as_u64();
            }
        }
        out.push(s);
    }
}

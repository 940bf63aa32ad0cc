//! `waitroom admin …`: the admin API of a running instance from a terminal.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Map, Value};

/// Where the instance is and how to get in.
#[derive(Args)]
pub struct AdminArgs {
    /// The admin listener's URL.
    #[arg(
        long,
        env = "WAITROOM_ADMIN_URL",
        default_value = "http://127.0.0.1:9090"
    )]
    url: String,
    /// The admin bearer token.
    #[arg(long, env = "WAITROOM_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    /// The room to steer (`[[rooms]]`); the default room without it.
    #[arg(long, env = "WAITROOM_ROOM")]
    room: Option<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Print the room's state (JSON).
    State,
    /// List the rooms with their states (JSON).
    Rooms,
    /// Change settings: rate=N capacity=N queue_all=true|false passthrough=true|false.
    Set {
        /// `key=value` pairs.
        #[arg(required = true, value_name = "KEY=VALUE")]
        changes: Vec<String>,
    },
    /// Stop admitting; everybody keeps or takes a place.
    Pause,
    /// Admit again after a pause.
    Resume,
    /// Close the room (the page says it is closed).
    Close,
    /// Open a closed room.
    Open,
    /// Schedule an opening (RFC 3339, UTC), or cancel it with `none`.
    OpenAt {
        /// `2026-11-28T09:00:00Z` or `none`.
        time: String,
    },
    /// Everybody straight through (`on`), or back to the limits (`off`).
    Passthrough {
        /// `on` or `off`.
        switch: Switch,
    },
    /// Everybody takes a place even while there is room (`on`), or not (`off`).
    QueueAll {
        /// `on` or `off`.
        switch: Switch,
    },
    /// The room's event: `show`, `set …` (a pre-queue, an opening, an end), `cancel`.
    #[command(subcommand)]
    Event(EventCommand),
    /// A live one-line view of the room, once a second.
    Watch {
        /// Stop after this many lines (default: until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
}

#[derive(Subcommand)]
enum EventCommand {
    /// Print the room's event (JSON).
    Show,
    /// Schedule an event (replacing one not under way).
    Set {
        /// The opening (RFC 3339, UTC).
        #[arg(long)]
        opens_at: String,
        /// When everybody arriving starts taking a place (default: now).
        #[arg(long)]
        prequeue_at: Option<String>,
        /// The end, if it has one.
        #[arg(long)]
        ends_at: Option<String>,
        /// Its own admissions a minute from the pre-queue on.
        #[arg(long)]
        rate: Option<u32>,
        /// Its own capacity from the pre-queue on.
        #[arg(long)]
        capacity: Option<u32>,
        /// Draw the pre-queue by lot at the opening.
        #[arg(long)]
        lottery: bool,
        /// A text the queue page shows during the event.
        #[arg(long)]
        message: Option<String>,
        /// What the room does at the end: back to `normal`, or `close`.
        #[arg(long, value_name = "normal|close", default_value = "normal")]
        then: String,
    },
    /// Cancel the event (one under way gives the room its settings back).
    Cancel,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Switch {
    On,
    Off,
}

impl Switch {
    fn on(self) -> bool {
        matches!(self, Self::On)
    }
}

/// Runs one admin command, printing its answer.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.url, &args.token)?.in_room(args.room.as_deref());
    let patch = |v: Value| async { api.patch(v).await };
    let answer = match args.command {
        AdminCommand::State => api.get("/admin/state").await?,
        AdminCommand::Rooms => api.get("/admin/rooms").await?,
        AdminCommand::Set { changes } => patch(settings_patch(&changes)?).await?,
        AdminCommand::Pause => patch(json!({"paused": true})).await?,
        AdminCommand::Resume => patch(json!({"paused": false})).await?,
        AdminCommand::Close => patch(json!({"closed": true})).await?,
        AdminCommand::Open => patch(json!({"closed": false})).await?,
        AdminCommand::OpenAt { time } => {
            let at = if time == "none" {
                Value::Null
            } else {
                Value::String(time)
            };
            patch(json!({ "opens_at": at })).await?
        }
        AdminCommand::Passthrough { switch } => patch(json!({"passthrough": switch.on()})).await?,
        AdminCommand::QueueAll { switch } => patch(json!({"queue_all": switch.on()})).await?,
        AdminCommand::Event(EventCommand::Show) => api.get("/admin/event").await?,
        AdminCommand::Event(EventCommand::Cancel) => {
            api.call(http::Method::DELETE, "/admin/event", None).await?
        }
        AdminCommand::Event(EventCommand::Set {
            opens_at,
            prequeue_at,
            ends_at,
            rate,
            capacity,
            lottery,
            message,
            then,
        }) => {
            let event = json!({
                "opens_at": opens_at,
                "prequeue_at": prequeue_at,
                "ends_at": ends_at,
                "new_users_per_minute": rate,
                "max_active_users": capacity,
                "lottery": lottery,
                "message": message,
                "after": then,
            });
            api.call(http::Method::PUT, "/admin/event", Some(event))
                .await?
        }
        AdminCommand::Watch { count } => return watch(&api, count).await,
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

/// `GET /admin/state` of the instance at `url`.
pub async fn state(url: &str, token: &str) -> anyhow::Result<Value> {
    Api::new(url, token)?.get("/admin/state").await
}

/// The JSON of `set`'s `key=value` pairs (`rate` and `capacity` are short for the
/// API's names).
fn settings_patch(changes: &[String]) -> anyhow::Result<Value> {
    let mut patch = Map::new();
    for change in changes {
        let Some((key, value)) = change.split_once('=') else {
            bail!("{change:?}: expected KEY=VALUE, such as rate=600");
        };
        let (name, value) = match key.trim() {
            "rate" | "new_users_per_minute" => ("new_users_per_minute", number(key, value)?),
            "capacity" | "max_active_users" => ("max_active_users", number(key, value)?),
            k @ ("paused" | "closed" | "queue_all" | "passthrough") => (k, boolean(key, value)?),
            other => bail!(
                "{other}: unknown setting (rate, capacity, paused, closed, queue_all, passthrough)"
            ),
        };
        patch.insert(name.to_owned(), value);
    }
    Ok(Value::Object(patch))
}

fn number(key: &str, value: &str) -> anyhow::Result<Value> {
    let n: u32 = value
        .trim()
        .parse()
        .with_context(|| format!("{key}: {value:?} is not a whole number"))?;
    Ok(json!(n))
}

fn boolean(key: &str, value: &str) -> anyhow::Result<Value> {
    match value.trim() {
        "true" | "on" | "yes" => Ok(json!(true)),
        "false" | "off" | "no" => Ok(json!(false)),
        other => bail!("{key}: {other:?} is not true or false"),
    }
}

/// Prints one line a second: waiting, active against the cap, the outflow.
async fn watch(api: &Api, count: Option<u64>) -> anyhow::Result<()> {
    let mut printed = 0;
    loop {
        let s = api.get("/admin/state").await?;
        println!("{}", one_line(&s));
        printed += 1;
        if count.is_some_and(|c| printed >= c) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The state in one line.
fn one_line(s: &Value) -> String {
    let mode = ["closed", "paused", "passthrough", "queue_all"]
        .into_iter()
        .filter(|m| s[*m] == true)
        .collect::<Vec<_>>();
    let measured = s["measured_per_minute"]
        .as_f64()
        .map_or("-".to_owned(), |m| format!("{m:.0}"));
    format!(
        "{}  waiting {}  active {}/{}  outflow {}/min of {}  {}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        s["queue_length"],
        s["active_users"],
        s["max_active_users"],
        measured,
        s["new_users_per_minute"],
        if mode.is_empty() {
            "open".to_owned()
        } else {
            mode.join(" ")
        },
    )
}

/// The admin API at one URL.
struct Api {
    base: String,
    token: String,
    /// `?room=NAME`, or nothing for the default room.
    room: String,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<bytes::Bytes>>,
}

impl Api {
    fn new(url: &str, token: &str) -> anyhow::Result<Self> {
        let base = url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            bail!("--url {url:?}: the admin listener speaks plain http://");
        }
        Ok(Self {
            base,
            token: token.to_owned(),
            room: String::new(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Steers room `room` (the default room with `None`).
    fn in_room(mut self, room: Option<&str>) -> Self {
        self.room = room.map_or_else(String::new, |r| format!("?room={r}"));
        self
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(http::Method::GET, path, None).await
    }

    async fn patch(&self, body: Value) -> anyhow::Result<Value> {
        self.call(http::Method::PATCH, "/admin/settings", Some(body))
            .await
    }

    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}{}", self.base, self.room);
        let request = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes::Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .with_context(|| format!("{url}: not a URL"))?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .with_context(|| format!("{url}: no answer within 10 s"))?
            .with_context(|| format!("{url}: could not reach the admin listener"))?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).trim().to_owned()));
        if !status.is_success() {
            let reason = value["error"]
                .as_str()
                .map_or(value.to_string(), str::to_owned);
            bail!("{url}: {status}: {reason}");
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::settings_patch;

    #[test]
    fn set_reads_short_and_long_names_and_refuses_the_rest() {
        let p = settings_patch(&["rate=60".into(), "capacity=5".into(), "queue_all=on".into()])
            .unwrap();
        assert_eq!(
            p,
            serde_json::json!({"new_users_per_minute": 60, "max_active_users": 5, "queue_all": true})
        );
        for bad in ["rate", "rate=fast", "speed=1", "paused=maybe"] {
            assert!(settings_patch(&[bad.into()]).is_err(), "{bad}");
        }
    }
}

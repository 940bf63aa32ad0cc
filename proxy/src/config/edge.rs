//! The `[clients]` and `[limits]` sections: who the client is, and what one client
//! or one session may ask for.

use std::time::Duration;

use serde::Deserialize;

use super::{duration, invalid, ConfigError};
use crate::clients::TrustedProxies;
use crate::limits::Limit;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct ClientsFile {
    trusted_proxies: Vec<String>,
    places_per_minute: u32,
    places_burst: u32,
    proof_of_work: bool,
    pow_difficulty: u32,
}

impl Default for ClientsFile {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            places_per_minute: 30,
            places_burst: 30,
            proof_of_work: false,
            pow_difficulty: crate::limits::DEFAULT_DIFFICULTY,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct LimitsFile {
    max_connections: usize,
    session_requests_per_second: u32,
    session_burst: u32,
    write_timeout: String,
    body_timeout: String,
}

impl Default for LimitsFile {
    fn default() -> Self {
        Self {
            max_connections: 0,
            session_requests_per_second: 20,
            session_burst: 60,
            write_timeout: "30s".into(),
            body_timeout: "30s".into(),
        }
    }
}

/// The shortest `limits.write_timeout` and `limits.body_timeout`: a phone on a
/// poor network pauses for seconds.
const MIN_CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

/// The validated `[clients]` and `[limits]` sections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// New places one client may take (per minute; rate 0: no limit).
    pub places: Limit,
    /// Requests one admitted session may make (per second; rate 0: no limit).
    pub session: Limit,
    /// Whether newcomers answer a proof-of-work challenge, and how hard (bits).
    pub proof_of_work: (bool, u32),
    /// Open connections per listener before the newest are shed; 0 picks a
    /// number below the process's file-descriptor limit.
    pub max_connections: usize,
    /// A client that reads nothing of an answer for this long is cut.
    pub write_timeout: Duration,
    /// A client that sends nothing of a request's body for this long gets a 408
    /// (a body kept whole before it goes to the origin must all come within it).
    pub body_timeout: Duration,
}

pub(super) fn validate(clients: ClientsFile, limits: LimitsFile) -> Result<Edge, ConfigError> {
    let nets = clients
        .trusted_proxies
        .iter()
        .map(|text| {
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    invalid(
                        "clients.trusted_proxies",
                        format!("{text:?} is not an address or network like \"10.0.0.0/8\""),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if clients.places_per_minute > 0 && clients.places_burst == 0 {
        return Err(invalid(
            "clients.places_burst",
            "must be at least 1 (a visitor needs one place)",
        ));
    }
    if limits.session_requests_per_second > 0 && limits.session_burst < 10 {
        return Err(invalid(
            "limits.session_burst",
            "must be at least 10: a browser loads a page with its assets at once",
        ));
    }
    if !(1..=crate::pow::MAX_DIFFICULTY).contains(&clients.pow_difficulty) {
        return Err(invalid(
            "clients.pow_difficulty",
            format!("must be 1 to {} (bits)", crate::pow::MAX_DIFFICULTY),
        ));
    }
    if limits.max_connections != 0 && limits.max_connections < 16 {
        return Err(invalid(
            "limits.max_connections",
            "must be 0 (picked from the file-descriptor limit) or at least 16",
        ));
    }
    let client_timeout = |key: &'static str, text: &str| {
        let d = duration(key, text)?;
        if d < MIN_CLIENT_TIMEOUT {
            return Err(invalid(
                key,
                "must be at least 1s: a phone on a poor network pauses for that long",
            ));
        }
        Ok(d)
    };
    Ok(Edge {
        write_timeout: client_timeout("limits.write_timeout", &limits.write_timeout)?,
        body_timeout: client_timeout("limits.body_timeout", &limits.body_timeout)?,
        trusted_proxies: TrustedProxies::new(nets),
        places: Limit {
            rate: clients.places_per_minute,
            burst: clients.places_burst,
        },
        session: Limit {
            rate: limits.session_requests_per_second,
            burst: limits.session_burst,
        },
        max_connections: limits.max_connections,
        proof_of_work: (clients.proof_of_work, clients.pow_difficulty),
    })
}

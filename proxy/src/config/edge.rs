//! The `[clients]` and `[limits]` sections: who the client is, and what one client
//! or one session may ask for.

use serde::Deserialize;

use super::{invalid, ConfigError};
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
}

impl Default for LimitsFile {
    fn default() -> Self {
        Self {
            max_connections: 0,
            session_requests_per_second: 20,
            session_burst: 60,
        }
    }
}

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
    Ok(Edge {
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

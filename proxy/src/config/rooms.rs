//! Several rooms in one deployment: `[[rooms]]`, each matched by host and path
//! prefix, with its own line, settings, page and cookie.
//!
//! A room's `admission`, `queue` and `page` tables are laid over the file's own
//! (a key a room leaves out is the file's), and the result is checked exactly as
//! the file's sections are, so a room's error names the room and the key. The
//! file's own sections are the default room, which takes every request no other
//! room matches.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Config, ConfigError, File, PageConfig};
use crate::admission::line::{Settings, Timing};
use crate::admission::OnFailure;

/// The name of the room the file's own sections describe.
pub const DEFAULT_ROOM: &str = "default";

/// A `[[rooms]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoomFile {
    name: String,
    #[serde(default)]
    hosts: Vec<String>,
    paths: Vec<String>,
    cookie: Option<String>,
    #[serde(default)]
    admission: toml::Table,
    #[serde(default)]
    queue: toml::Table,
    #[serde(default)]
    page: toml::Table,
}

/// One room: where it applies, and what its line and page are.
#[derive(Clone, Debug, PartialEq)]
pub struct RoomConfig {
    /// Its name, in the admin API (`?room=`), the metrics (`room` label) and the
    /// store; [`DEFAULT_ROOM`] for the file's own sections.
    pub name: String,
    /// The hosts it applies to (lower case, without a port); empty: any host.
    pub hosts: Vec<String>,
    /// The path prefixes it applies to (`/` for the default room).
    pub paths: Vec<String>,
    /// Initial run-time settings.
    pub settings: Settings,
    /// Timings of its line.
    pub timing: Timing,
    /// Lifetime of a queue token.
    pub queue_token_ttl: Duration,
    /// What its line does while the store cannot be reached.
    pub on_failure: OnFailure,
    /// Its cookie's name.
    pub cookie_name: String,
    /// Its queue page's template, catalogues and site identity.
    pub page: PageConfig,
}

impl RoomConfig {
    /// The default room: the file's own sections, for every host and path.
    pub fn default_of(c: &Config) -> Self {
        Self {
            name: DEFAULT_ROOM.into(),
            hosts: Vec::new(),
            paths: vec!["/".into()],
            settings: c.settings,
            timing: c.timing,
            queue_token_ttl: c.queue_token_ttl,
            on_failure: c.on_failure,
            cookie_name: c.cookie_name.clone(),
            page: c.page.clone(),
        }
    }

    /// Its name in a shared store: the file's `store.room`, and for another room
    /// `ROOM.NAME` (a dot is never in `store.room`, so no two rooms meet).
    pub fn store_name(&self, c: &Config) -> String {
        if self.name == DEFAULT_ROOM {
            c.room.clone()
        } else {
            format!("{}.{}", c.room, self.name)
        }
    }

    /// Where memory mode keeps its line: the state directory, and for another
    /// room `rooms/NAME` under it.
    pub fn state_dir(&self, c: &Config) -> PathBuf {
        if self.name == DEFAULT_ROOM {
            c.state_dir.clone()
        } else {
            c.state_dir.join("rooms").join(&self.name)
        }
    }

    /// Whether it applies to a request for `host` (without a port, any case).
    pub fn serves_host(&self, host: Option<&str>) -> bool {
        self.hosts.is_empty()
            || host.is_some_and(|h| self.hosts.iter().any(|o| o.eq_ignore_ascii_case(h)))
    }

    /// The longest of its path prefixes that `path` is under (a prefix matches
    /// whole segments: `/tickets` takes `/tickets` and `/tickets/…`, not
    /// `/ticketsale`).
    pub fn prefix_of(&self, path: &str) -> Option<usize> {
        self.paths
            .iter()
            .filter(|p| crate::http::path_under(path, p))
            .map(|p| p.len())
            .max()
    }
}

fn hosts_of(written: &[String]) -> Vec<String> {
    written.iter().map(|h| h.to_ascii_lowercase()).collect()
}

fn invalid(room: &str, key: &str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Parse(format!("rooms.{room}.{key}: {reason}"))
}

/// The rooms of a file whose own sections made `base`; `text` is the file.
pub(super) fn validate(
    text: &str,
    rooms: Vec<RoomFile>,
    base: &Config,
    admin_token_env: Option<&String>,
) -> Result<Vec<RoomConfig>, ConfigError> {
    if rooms.is_empty() {
        return Ok(Vec::new());
    }
    let mut raw: toml::Table =
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
    raw.remove("rooms");
    let mut out: Vec<RoomConfig> = Vec::new();
    for (i, room) in rooms.into_iter().enumerate() {
        let name = room.name.clone();
        let name_ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(ConfigError::Parse(format!(
                "rooms[{i}].name: {name:?} must be 1 to 32 lower-case letters, digits, '_' or '-'"
            )));
        }
        if name == "pow" || name == "lang" {
            return Err(invalid(
                &name,
                "name",
                "is reserved (the cookies of the challenge and of the chosen language end in it)",
            ));
        }
        if name == DEFAULT_ROOM || out.iter().any(|r| r.name == name) {
            return Err(invalid(
                &name,
                "name",
                "is taken (by another room or the default room)",
            ));
        }
        if room.paths.is_empty() {
            return Err(invalid(
                &name,
                "paths",
                "missing: a room needs at least one path prefix",
            ));
        }
        for p in &room.paths {
            super::absolute(p).map_err(|reason| invalid(&name, "paths", reason))?;
            if p == "/" && hosts_of(&room.hosts).is_empty() {
                return Err(invalid(
                    &name,
                    "paths",
                    "\"/\" for any host is the default room's (name hosts to take a whole host)",
                ));
            }
            if p.starts_with("/_waitroom") {
                return Err(invalid(
                    &name,
                    "paths",
                    format!("{p:?} is under /_waitroom/, which is reserved"),
                ));
            }
        }
        let hosts = hosts_of(&room.hosts);
        if let Some(h) = hosts
            .iter()
            .find(|h| h.is_empty() || h.contains(['/', ' ']))
        {
            return Err(invalid(&name, "hosts", format!("{h:?} is not a host name")));
        }
        // The room's sections over the file's, checked as the file's are.
        let mut doc = raw.clone();
        for (section, table) in [
            ("admission", room.admission),
            ("queue", room.queue),
            ("page", room.page),
        ] {
            let entry = doc
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = entry {
                t.extend(table);
            }
        }
        if let Some(cookie) = &room.cookie {
            let mut t = toml::Table::new();
            t.insert("name".into(), toml::Value::String(cookie.clone()));
            let entry = doc
                .entry("cookie")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(c) = entry {
                c.extend(t);
            }
        }
        let file: File = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| invalid(&name, "", e.message().trim()))?;
        let c = Config::try_from_file(file, admin_token_env.cloned())
            .map_err(|e| ConfigError::Parse(format!("rooms.{name}.{e}")))?;
        let cookie_name = match room.cookie {
            Some(_) => c.cookie_name.clone(),
            None => format!("{}_{name}", base.cookie_name),
        };
        if cookie_name == base.cookie_name || out.iter().any(|r| r.cookie_name == cookie_name) {
            return Err(invalid(
                &name,
                "cookie",
                format!("{cookie_name:?} is another room's cookie"),
            ));
        }
        let new = RoomConfig {
            name: name.clone(),
            hosts,
            paths: room.paths,
            settings: c.settings,
            timing: c.timing,
            queue_token_ttl: c.queue_token_ttl,
            on_failure: c.on_failure,
            cookie_name,
            page: c.page,
        };
        for other in &out {
            let hosts_meet = other.hosts.is_empty() && new.hosts.is_empty()
                || other.hosts.iter().any(|h| new.hosts.contains(h));
            if let Some(p) = new.paths.iter().find(|p| other.paths.contains(p)) {
                if hosts_meet {
                    return Err(invalid(
                        &name,
                        "paths",
                        format!(
                            "{p:?} is room {:?}'s already, for the same hosts",
                            other.name
                        ),
                    ));
                }
            }
        }
        out.push(new);
    }
    Ok(out)
}

/// Which of `rooms` takes a request for `host` and `path`: of those it applies
/// to, one naming the host before one for any host, then the longest prefix;
/// `None` when none does (the default room's).
pub fn route(rooms: &[RoomConfig], host: Option<&str>, path: &str) -> Option<usize> {
    rooms
        .iter()
        .enumerate()
        .filter(|(_, r)| r.serves_host(host))
        .filter_map(|(i, r)| Some((i, (!r.hosts.is_empty(), r.prefix_of(path)?))))
        .max_by_key(|(_, key)| *key)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[listen]\npublic = \"127.0.0.1:8080\"\nadmin = \"127.0.0.1:9090\"\n\
        [origin]\nurl = \"http://127.0.0.1:8081\"\n[admin]\ntoken = \"a-long-token\"\n\
        [admission]\nnew_users_per_minute = 100\nmax_active_users = 50\n";

    fn rooms(extra: &str) -> Result<Config, String> {
        Config::from_toml(&format!("{BASE}{extra}"), None).map_err(|e| e.to_string())
    }

    #[test]
    fn a_room_takes_the_files_sections_and_changes_what_it_names() {
        let c = rooms(
            "[[rooms]]\nname = \"tickets\"\npaths = [\"/tickets\"]\n\
             [rooms.admission]\nnew_users_per_minute = 7\n\
             [rooms.page]\ntemplate = \"tickets.html\"\n",
        )
        .unwrap();
        let all = c.all_rooms();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].name, "default");
        let t = &all[1];
        assert_eq!(
            (t.settings.new_users_per_minute, t.settings.max_active_users),
            (7, 50),
            "its own rate, the file's capacity"
        );
        assert_eq!(t.cookie_name, "waitroom_tickets");
        assert_eq!(t.page.template, Some(PathBuf::from("tickets.html")));
        assert_eq!(all[0].page.template, None);
        assert_eq!(t.store_name(&c), "default.tickets");
        assert!(t.state_dir(&c).ends_with("rooms/tickets"));
    }

    #[test]
    fn a_rooms_mistake_names_the_room_and_the_key() {
        let e = rooms(
            "[[rooms]]\nname = \"tickets\"\npaths = [\"/t\"]\n[rooms.admission]\nnew_users_per_minute = 0\n",
        )
        .unwrap_err();
        assert!(
            e.starts_with("rooms.tickets.admission.new_users_per_minute: must be at least 1"),
            "{e}"
        );
        let e = rooms("[[rooms]]\nname = \"t\"\npaths = [\"/t\"]\n[rooms.queue]\npoll = 3\n")
            .unwrap_err();
        assert!(e.starts_with("rooms.t.") && e.contains("poll"), "{e}");
        for (room, says) in [
            ("name = \"Big\"\npaths = [\"/b\"]", "rooms[0].name"),
            ("name = \"default\"\npaths = [\"/b\"]", "is taken"),
            ("name = \"lang\"\npaths = [\"/b\"]", "is reserved"),
            ("name = \"a\"\npaths = []", "at least one path"),
            ("name = \"a\"\npaths = [\"b\"]", "must start with '/'"),
            ("name = \"a\"\npaths = [\"/_waitroom\"]", "reserved"),
            ("name = \"a\"\npaths = [\"/\"]", "default room's"),
            (
                "name = \"a\"\npaths = [\"/a\"]\ncookie = \"waitroom\"",
                "another room's cookie",
            ),
        ] {
            let e = rooms(&format!("[[rooms]]\n{room}\n")).unwrap_err();
            assert!(e.contains(says), "{room}: {e}");
        }
        let e = rooms(
            "[[rooms]]\nname = \"a\"\npaths = [\"/x\"]\n[[rooms]]\nname = \"b\"\npaths = [\"/x\"]\n",
        )
        .unwrap_err();
        assert!(
            e.contains("rooms.b.paths") && e.contains("room \"a\""),
            "{e}"
        );
        rooms(
            "[[rooms]]\nname = \"a\"\nhosts = [\"a.example\"]\npaths = [\"/x\"]\n\
             [[rooms]]\nname = \"b\"\nhosts = [\"b.example\"]\npaths = [\"/x\"]\n",
        )
        .expect("the same path on different hosts");
    }

    #[test]
    fn the_most_specific_room_takes_a_request() {
        let c = rooms(
            "[[rooms]]\nname = \"tickets\"\npaths = [\"/tickets\"]\n\
             [[rooms]]\nname = \"vip\"\npaths = [\"/tickets/vip\"]\n\
             [[rooms]]\nname = \"shop\"\nhosts = [\"Shop.example\"]\npaths = [\"/\"]\n",
        )
        .unwrap();
        let all = c.all_rooms();
        let name =
            |host: Option<&str>, path: &str| route(&all, host, path).map(|i| all[i].name.as_str());
        assert_eq!(name(None, "/register"), Some("default"));
        assert_eq!(name(None, "/tickets"), Some("tickets"));
        assert_eq!(name(None, "/tickets/42"), Some("tickets"));
        assert_eq!(name(None, "/ticketsale"), Some("default"), "whole segments");
        assert_eq!(
            name(None, "/tickets/vip/7"),
            Some("vip"),
            "the longest prefix"
        );
        assert_eq!(
            name(Some("shop.example"), "/tickets"),
            Some("shop"),
            "a named host first"
        );
        assert_eq!(name(Some("other.example"), "/x"), Some("default"));
    }
}

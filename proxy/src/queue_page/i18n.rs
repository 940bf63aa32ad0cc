//! Messages of the queue page in German, French, Luxembourgish and English, from
//! catalogue files a translator edits without touching code (`proxy/locales/*.toml`,
//! or a directory of the operator's own), and the choice of language per request.

use std::collections::BTreeMap;
use std::path::Path;

/// The languages offered, in the order of the switcher.
pub const LANGUAGES: [&str; 4] = ["de", "fr", "lb", "en"];

/// Every key a catalogue must have.
pub const KEYS: [&str; 30] = [
    "language_name",
    "title",
    "heading",
    "position",
    "ahead_one",
    "ahead_many",
    "ahead_none",
    "eta_soon",
    "eta_range",
    "eta_about",
    "paused",
    "closed",
    "scheduled",
    "countdown",
    "keep_open",
    "updated",
    "progress_label",
    "language_label",
    "admitted",
    "trouble",
    "origin_down",
    "origin_slow",
    "retrying",
    "resend",
    "too_many",
    "try_again_in",
    "send_again",
    "check_title",
    "checking",
    "needs_js",
];

const BUILTIN: [(&str, &str); 4] = [
    ("de", include_str!("../../locales/de.toml")),
    ("fr", include_str!("../../locales/fr.toml")),
    ("lb", include_str!("../../locales/lb.toml")),
    ("en", include_str!("../../locales/en.toml")),
];

/// The messages of every language.
#[derive(Clone, Debug)]
pub struct Catalogues {
    by_lang: BTreeMap<&'static str, BTreeMap<String, String>>,
}

fn parse(lang: &str, text: &str, origin: &str) -> Result<BTreeMap<String, String>, String> {
    let map: BTreeMap<String, String> =
        toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    if let Some(missing) = KEYS.iter().find(|k| !map.contains_key(**k)) {
        return Err(format!(
            "{origin}: language {lang:?} lacks the message {missing:?}"
        ));
    }
    if let Some(unknown) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("{origin}: unknown message {unknown:?}"));
    }
    Ok(map)
}

impl Catalogues {
    /// The catalogues that ship with waitroom.
    pub fn builtin() -> Self {
        let by_lang = BUILTIN
            .iter()
            .map(|(lang, text)| {
                (
                    *lang,
                    parse(lang, text, lang).expect("built-in catalogues are complete"),
                )
            })
            .collect();
        Self { by_lang }
    }

    /// The built-in catalogues with `dir/LANG.toml` files replacing theirs.
    pub fn with_overrides(dir: &Path) -> Result<Self, String> {
        let mut c = Self::builtin();
        for lang in LANGUAGES {
            let path = dir.join(format!("{lang}.toml"));
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let map = parse(lang, &text, &path.display().to_string())?;
                    c.by_lang.insert(lang, map);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        Ok(c)
    }

    /// The language for a request: `?lang=` first, then `Accept-Language` (by
    /// quality), then English.
    pub fn negotiate(
        &self,
        query_lang: Option<&str>,
        accept_language: Option<&str>,
    ) -> &'static str {
        let known = |tag: &str| {
            let primary = tag
                .split(['-', '_'])
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            LANGUAGES.into_iter().find(|l| *l == primary)
        };
        if let Some(l) = query_lang.and_then(known) {
            return l;
        }
        let mut offered: Vec<(f32, &'static str)> = accept_language
            .unwrap_or("")
            .split(',')
            .filter_map(|part| {
                let mut it = part.split(';');
                let lang = known(it.next()?.trim())?;
                let q = it
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.parse().ok())
                    .unwrap_or(1.0);
                (q > 0.0).then_some((q, lang))
            })
            .collect();
        offered.sort_by(|a, b| b.0.total_cmp(&a.0));
        offered.first().map_or("en", |(_, l)| l)
    }

    /// Message `key` in `lang`, with `{name}` placeholders filled from `args`.
    pub fn text(&self, lang: &str, key: &str, args: &[(&str, String)]) -> String {
        let mut s = self
            .by_lang
            .get(lang)
            .or_else(|| self.by_lang.get("en"))
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default();
        for (name, value) in args {
            s = s.replace(&format!("{{{name}}}"), value);
        }
        s
    }

    /// All messages of `lang` (for the page's script, which formats updates).
    pub fn messages(&self, lang: &str) -> &BTreeMap<String, String> {
        self.by_lang.get(lang).unwrap_or(&self.by_lang["en"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_every_message() {
        let c = Catalogues::builtin();
        for lang in LANGUAGES {
            assert_eq!(c.messages(lang).len(), KEYS.len(), "{lang}");
        }
        assert_eq!(
            c.text("lb", "position", &[("position", "7".into())]),
            "Dir sidd Nummer 7 an der Waardeschlaang."
        );
    }

    #[test]
    fn negotiates_query_then_accept_language_then_english() {
        let c = Catalogues::builtin();
        assert_eq!(c.negotiate(None, Some("fr-LU,fr;q=0.9,en;q=0.8")), "fr");
        assert_eq!(c.negotiate(None, Some("en;q=0.5, de-DE;q=0.9")), "de");
        assert_eq!(c.negotiate(None, Some("lb")), "lb");
        assert_eq!(c.negotiate(None, Some("pt-BR, es;q=0.9")), "en");
        assert_eq!(c.negotiate(None, Some("de;q=0, fr;q=0.1")), "fr");
        assert_eq!(c.negotiate(Some("LB"), Some("de")), "lb");
        assert_eq!(c.negotiate(Some("xx"), Some("de")), "de");
        assert_eq!(c.negotiate(None, None), "en");
    }

    #[test]
    fn an_incomplete_override_is_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("waitroom-locales-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("fr.toml"), "title = \"File d'attente\"\n").unwrap();
        let e = Catalogues::with_overrides(&dir).unwrap_err();
        assert!(
            e.contains("fr.toml") && e.contains("lacks the message"),
            "{e}"
        );
        let full =
            include_str!("../../locales/fr.toml").replace("Merci de votre patience", "Merci !");
        std::fs::write(dir.join("fr.toml"), full).unwrap();
        let c = Catalogues::with_overrides(&dir).unwrap();
        assert_eq!(c.text("fr", "heading", &[]), "Merci !");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! Messages of the queue page, from catalogue files a translator edits without
//! touching code: the ones that ship (`proxy/locales/*.toml`: German, French,
//! Luxembourgish, English, Portuguese, Italian, Dutch, Spanish) and any in a folder
//! of the operator's own, which replace those or add languages; and the choice of
//! language per request.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

/// The languages that ship, in the order of the switcher (a folder's new ones
/// follow, in the order of their codes).
pub const LANGUAGES: [&str; 8] = ["de", "fr", "lb", "en", "pt", "it", "nl", "es"];

/// Every key a catalogue must have.
pub const KEYS: [&str; 36] = [
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
    "paused_since",
    "closed",
    "scheduled",
    "in_draw",
    "drawn",
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
    "kept",
    "kept_no_js",
    "session_lapsed",
];

const BUILTIN: [(&str, &str); 8] = [
    ("de", include_str!("../../locales/de.toml")),
    ("fr", include_str!("../../locales/fr.toml")),
    ("lb", include_str!("../../locales/lb.toml")),
    ("en", include_str!("../../locales/en.toml")),
    ("pt", include_str!("../../locales/pt.toml")),
    ("it", include_str!("../../locales/it.toml")),
    ("nl", include_str!("../../locales/nl.toml")),
    ("es", include_str!("../../locales/es.toml")),
];

/// The messages of every language.
#[derive(Clone, Debug)]
pub struct Catalogues {
    /// The languages offered, in the order of the switcher.
    order: Vec<&'static str>,
    by_lang: BTreeMap<&'static str, BTreeMap<String, String>>,
}

/// Whether `code` can name a catalogue: a language's two or three lowercase letters
/// (ISO 639-1, or 639-3 where there is no shorter one).
pub fn is_language_code(code: &str) -> bool {
    (2..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_lowercase())
}

/// The one `'static` copy of a language code (answers and headers carry codes for
/// the life of the process; a code read from a folder is kept once, however often
/// the folder is read again).
fn intern(code: &str) -> &'static str {
    static CODES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    if let Some(known) = LANGUAGES.iter().find(|l| **l == code) {
        return known;
    }
    let mut codes = CODES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = codes.get(code) {
        return known;
    }
    let leaked: &'static str = Box::leak(code.to_owned().into_boxed_str());
    codes.insert(leaked);
    leaked
}

/// Messages added after the first catalogues: an operator's file without them gets
/// the built-in text of its language (or English), so it keeps working.
const ADDED_LATER: [&str; 6] = [
    "session_lapsed",
    "kept",
    "kept_no_js",
    "in_draw",
    "drawn",
    "paused_since",
];

fn parse(
    lang: &str,
    text: &str,
    origin: &str,
    fallback: Option<&BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, String> {
    let mut map: BTreeMap<String, String> =
        toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    if let Some(fallback) = fallback {
        for key in ADDED_LATER {
            if let (false, Some(text)) = (map.contains_key(key), fallback.get(key)) {
                map.insert(key.to_owned(), text.clone());
            }
        }
    }
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
                    parse(lang, text, lang, None).expect("built-in catalogues are complete"),
                )
            })
            .collect();
        Self {
            order: LANGUAGES.to_vec(),
            by_lang,
        }
    }

    /// The built-in catalogues, with every `LANG.toml` in `dir` replacing the one
    /// of its language or adding a language (named by the file: `pl.toml` adds
    /// Polish, offered after the built-in ones). Every file must have every message.
    pub fn with_folder(dir: &Path) -> Result<Self, String> {
        let mut c = Self::builtin();
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("toml") {
                files.push(path);
            }
        }
        files.sort();
        for path in files {
            let shown = path.display().to_string();
            let code = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if !is_language_code(code) {
                return Err(format!(
                    "{shown}: a catalogue is named by its language's code, two or three lowercase letters (\"pl.toml\")"
                ));
            }
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{shown}: {e}"))?;
            let fallback = c.by_lang.get(code).or_else(|| c.by_lang.get("en"));
            let map = parse(code, &text, &shown, fallback)?;
            let lang = intern(code);
            if !c.order.contains(&lang) {
                c.order.push(lang);
            }
            c.by_lang.insert(lang, map);
        }
        Ok(c)
    }

    /// The languages offered, in the order of the switcher.
    pub fn languages(&self) -> &[&'static str] {
        &self.order
    }

    /// The offered language `tag` names (by its primary subtag: `pt-BR` is `pt`).
    pub fn known(&self, tag: &str) -> Option<&'static str> {
        let primary = tag.split(['-', '_']).next().unwrap_or("");
        self.order
            .iter()
            .copied()
            .find(|l| l.eq_ignore_ascii_case(primary))
    }

    /// The language for a request: `?lang=` first, then the language the visitor
    /// chose before (`chosen`, from their cookie), then `Accept-Language` (by
    /// quality), then English.
    pub fn negotiate(
        &self,
        query_lang: Option<&str>,
        chosen: Option<&str>,
        accept_language: Option<&str>,
    ) -> &'static str {
        let known = |tag: &str| self.known(tag);
        if let Some(l) = query_lang
            .and_then(known)
            .or_else(|| chosen.and_then(known))
        {
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
        assert_eq!(
            c.negotiate(None, None, Some("fr-LU,fr;q=0.9,en;q=0.8")),
            "fr"
        );
        assert_eq!(c.negotiate(None, None, Some("en;q=0.5, de-DE;q=0.9")), "de");
        assert_eq!(c.negotiate(None, None, Some("lb")), "lb");
        assert_eq!(c.negotiate(None, None, Some("pt-BR, es;q=0.9")), "pt");
        assert_eq!(c.negotiate(None, None, Some("pl, sv;q=0.9")), "en");
        assert_eq!(c.negotiate(None, None, Some("de;q=0, fr;q=0.1")), "fr");
        assert_eq!(c.negotiate(Some("LB"), None, Some("de")), "lb");
        assert_eq!(c.negotiate(Some("xx"), None, Some("de")), "de");
        assert_eq!(c.negotiate(None, None, None), "en");
    }

    #[test]
    fn a_chosen_language_comes_after_the_query_and_before_the_browser() {
        let c = Catalogues::builtin();
        assert_eq!(c.negotiate(None, Some("it"), Some("de")), "it");
        assert_eq!(c.negotiate(Some("nl"), Some("it"), Some("de")), "nl");
        assert_eq!(c.negotiate(None, Some("xx"), Some("de")), "de");
    }

    #[test]
    fn an_incomplete_override_is_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("waitroom-locales-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("fr.toml"), "title = \"File d'attente\"\n").unwrap();
        let e = Catalogues::with_folder(&dir).unwrap_err();
        assert!(
            e.contains("fr.toml") && e.contains("lacks the message"),
            "{e}"
        );
        let full =
            include_str!("../../locales/fr.toml").replace("Merci de votre patience", "Merci !");
        std::fs::write(dir.join("fr.toml"), full).unwrap();
        let c = Catalogues::with_folder(&dir).unwrap();
        assert_eq!(c.text("fr", "heading", &[]), "Merci !");
        assert_eq!(
            c.languages(),
            LANGUAGES,
            "a replaced language keeps its place"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_in_the_folder_adds_its_language() {
        let dir = std::env::temp_dir().join(format!("waitroom-locales-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let polish = include_str!("../../locales/en.toml")
            .replace("language_name = \"English\"", "language_name = \"Polski\"");
        std::fs::write(dir.join("pl.toml"), &polish).unwrap();
        std::fs::write(dir.join("README.txt"), "not a catalogue").unwrap();
        let c = Catalogues::with_folder(&dir).unwrap();
        assert_eq!(c.languages().last(), Some(&"pl"));
        assert_eq!(c.languages().len(), LANGUAGES.len() + 1);
        assert_eq!(c.text("pl", "language_name", &[]), "Polski");
        assert_eq!(c.negotiate(None, None, Some("pl-PL")), "pl");
        let again = Catalogues::with_folder(&dir).unwrap();
        assert!(
            std::ptr::eq(c.languages()[8], again.languages()[8]),
            "kept once"
        );
        std::fs::write(dir.join("Polish.toml"), &polish).unwrap();
        let e = Catalogues::with_folder(&dir).unwrap_err();
        assert!(
            e.contains("Polish.toml") && e.contains("two or three"),
            "{e}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

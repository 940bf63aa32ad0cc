//! The operator's notice: a text the queue page shows in every state (a delay
//! explained, an opening moved), put up and taken down live through the admin
//! API (`PUT /admin/notice`), in each language the operator writes it in.

use std::collections::BTreeMap;

/// The longest text of one language.
pub const MAX_CHARS: usize = 500;
/// The most languages one notice has.
const MAX_LANGUAGES: usize = 32;

/// A notice, in one or more languages.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Notice {
    /// Text by language code (`"*"`: the one text for every language).
    by_lang: BTreeMap<String, String>,
}

impl Notice {
    /// A notice as the admin API takes it: one text for every language
    /// (`"Opening moved to 10:00"`), or texts by language code
    /// (`{"de": "…", "fr": "…", "en": "…"}`); the reason when it cannot be one.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        let by_lang: BTreeMap<String, String> = match value {
            serde_json::Value::String(text) => BTreeMap::from([("*".to_owned(), text.clone())]),
            serde_json::Value::Object(texts) => texts
                .iter()
                .map(|(lang, text)| match text.as_str() {
                    Some(t) => Ok((lang.clone(), t.to_owned())),
                    None => Err(format!("notice.{lang}: must be a text")),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err("notice: a text, or texts by language code".into()),
        };
        if by_lang.is_empty() || by_lang.len() > MAX_LANGUAGES {
            return Err(format!("notice: 1 to {MAX_LANGUAGES} languages"));
        }
        for (lang, text) in &by_lang {
            if lang != "*" && !super::i18n::is_language_code(lang) {
                return Err(format!(
                    "notice.{lang}: not a language code (two or three lowercase letters)"
                ));
            }
            let n = text.trim().chars().count();
            if n == 0 || n > MAX_CHARS {
                return Err(format!("notice.{lang}: 1 to {MAX_CHARS} characters"));
            }
        }
        Ok(Self { by_lang })
    }

    /// As the store keeps it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.by_lang).expect("texts serialize")
    }

    /// Read back from the store (`None` when it is not a notice).
    pub fn parse(stored: &str) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_str(stored).ok()?;
        Self::from_json(&value).ok()
    }

    /// The text for a visitor reading `lang`: theirs, else the one for every
    /// language, else English, else the first written.
    pub fn text(&self, lang: &str) -> &str {
        self.by_lang
            .get(lang)
            .or_else(|| self.by_lang.get("*"))
            .or_else(|| self.by_lang.get("en"))
            .or_else(|| self.by_lang.values().next())
            .map_or("", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_notice_in_each_language_and_the_fallbacks() {
        let n = Notice::from_json(&json!({"de": "Später", "en": "Later"})).unwrap();
        assert_eq!(
            (n.text("de"), n.text("fr"), n.text("en")),
            ("Später", "Later", "Later")
        );
        let all = Notice::from_json(&json!("Moved to 10:00")).unwrap();
        assert_eq!(all.text("lb"), "Moved to 10:00");
        assert_eq!(Notice::parse(&n.to_json()), Some(n));
    }

    #[test]
    fn a_bad_notice_is_refused_with_the_reason() {
        for (value, says) in [
            (json!(42), "a text"),
            (json!({}), "1 to 32"),
            (json!({"German": "x"}), "not a language code"),
            (json!({"de": 1}), "must be a text"),
            (json!({"de": " "}), "1 to 500"),
            (json!("x".repeat(501)), "1 to 500"),
        ] {
            let e = Notice::from_json(&value).unwrap_err();
            assert!(e.contains(says), "{value}: {e}");
        }
    }
}

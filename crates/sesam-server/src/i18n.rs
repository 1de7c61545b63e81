//! The translation catalog (Danish and English) and the choice of language per request:
//! the `sesam_lang` cookie set by the switch on every page, else Accept-Language.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Da,
    En,
}

pub const LANG_COOKIE: &str = "sesam_lang";

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Da => "da",
            Lang::En => "en",
        }
    }
    pub fn other(self) -> Lang {
        match self {
            Lang::Da => Lang::En,
            Lang::En => Lang::Da,
        }
    }
    pub fn from_code(code: &str) -> Option<Lang> {
        match code {
            "da" => Some(Lang::Da),
            "en" => Some(Lang::En),
            _ => None,
        }
    }
    pub fn catalog(self) -> &'static Catalog {
        match self {
            Lang::Da => &DA,
            Lang::En => &EN,
        }
    }

    /// The best of our languages for an Accept-Language header: Danish when the header is
    /// absent (Sesam's home), English when the browser prefers neither.
    pub fn negotiate(accept_language: Option<&str>) -> Lang {
        let Some(header) = accept_language else {
            return Lang::Da;
        };
        let mut best: Option<(f32, Lang)> = None;
        for item in header.split(',') {
            let mut parts = item.trim().split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            let lang = match primary {
                "da" => Lang::Da,
                "en" => Lang::En,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::En)
    }
}

/// Key → text for one language.
#[derive(Debug)]
pub struct Catalog {
    texts: HashMap<String, String>,
}

impl Catalog {
    fn parse(source: &str) -> Catalog {
        let texts: HashMap<String, String> =
            toml::from_str(source).expect("the built-in translation catalogs are valid TOML");
        Catalog { texts }
    }

    /// The text for `key`; the key itself if missing (a test keeps that from happening).
    pub fn get<'a>(&'a self, key: &'a str) -> &'a str {
        self.texts.get(key).map(String::as_str).unwrap_or(key)
    }

    /// The text with `{name}` replaced by `value`.
    pub fn fill(&self, key: &str, name: &str, value: &str) -> String {
        self.get(key).replace(&format!("{{{name}}}"), value)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.texts.keys().map(String::as_str)
    }
}

static EN: LazyLock<Catalog> =
    LazyLock::new(|| Catalog::parse(include_str!("../../../locales/en.toml")));
static DA: LazyLock<Catalog> =
    LazyLock::new(|| Catalog::parse(include_str!("../../../locales/da.toml")));

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Lang, Self::Rejection> {
        if let Some(lang) =
            crate::web::cookies::get(&parts.headers, LANG_COOKIE).and_then(|c| Lang::from_code(&c))
        {
            return Ok(lang);
        }
        let accept = parts
            .headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        Ok(Lang::negotiate(accept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn both_catalogs_have_the_same_keys() {
        let en: BTreeSet<_> = EN.keys().collect();
        let da: BTreeSet<_> = DA.keys().collect();
        assert_eq!(
            en.difference(&da).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "missing in da.toml"
        );
        assert_eq!(
            da.difference(&en).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "missing in en.toml"
        );
    }

    #[test]
    fn every_key_the_templates_use_exists() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../templates");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for piece in text.split("t.get(\"").skip(1) {
                let key = piece.split('"').next().unwrap();
                assert!(
                    EN.texts.contains_key(key),
                    "template key {key:?} is not in en.toml"
                );
                checked += 1;
            }
        }
        assert!(
            checked > 20,
            "the templates use the catalog ({checked} keys found)"
        );
    }

    #[test]
    fn accept_language_picks_the_preferred_of_ours() {
        assert_eq!(Lang::negotiate(None), Lang::Da);
        assert_eq!(Lang::negotiate(Some("en-GB,en;q=0.9,da;q=0.8")), Lang::En);
        assert_eq!(Lang::negotiate(Some("de-DE,da;q=0.5,en;q=0.4")), Lang::Da);
        assert_eq!(Lang::negotiate(Some("de-DE")), Lang::En);
        assert_eq!(Lang::negotiate(Some("da;q=0,en;q=0.1")), Lang::En);
        assert_eq!(Lang::negotiate(Some(";;;,q=,da-DK")), Lang::Da);
    }

    #[test]
    fn fill_replaces_the_placeholder() {
        assert!(EN
            .fill("login.locked_body", "until", "12:00")
            .contains("until 12:00"));
    }
}

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

    /// The templates with askama's `{% %}`, `{{ }}` and `{# #}` and scripts taken out: what
    /// is left is markup and any text written straight into it.
    fn literal_markup(template: &str) -> String {
        let mut text = template.to_owned();
        for (open, close) in [
            ("{#", "#}"),
            ("<script", "</script>"),
            ("{%", "%}"),
            ("{{", "}}"),
        ] {
            let mut out = String::with_capacity(text.len());
            let mut rest = text.as_str();
            while let Some(start) = rest.find(open) {
                out.push_str(&rest[..start]);
                match rest[start..].find(close) {
                    Some(end) => rest = &rest[start + end + close.len()..],
                    None => rest = "",
                }
            }
            out.push_str(rest);
            text = out;
        }
        text
    }

    /// Words that are the same in every language: protocol and product names.
    const SAME_IN_EVERY_LANGUAGE: &[&str] = &[
        "OpenID Connect",
        "SAML",
        "Entity ID",
        "client_id",
        "sub:",
        "https://",
    ];

    /// Texts a template writes straight into the markup, not through the catalog.
    fn untranslated(name: &str, template: &str) -> Vec<String> {
        let markup = literal_markup(template);
        let mut found = Vec::new();
        let mut check = |piece: &str| {
            let mut rest = piece.to_owned();
            for same in SAME_IN_EVERY_LANGUAGE {
                rest = rest.replace(same, "");
            }
            if rest.chars().any(char::is_alphabetic) {
                found.push(format!("{name}: {:?}", piece.trim()));
            }
        };
        // Text between tags.
        for piece in markup
            .split('<')
            .filter_map(|p| p.split_once('>').map(|(_, t)| t))
        {
            check(piece);
        }
        // Attributes a person reads or hears.
        for attribute in ["title=\"", "placeholder=\"", "alt=\"", "aria-label=\""] {
            for piece in markup.split(attribute).skip(1) {
                check(piece.split('"').next().unwrap_or(""));
            }
        }
        found
    }

    /// Written in a template owned by another part of the work; remove once translated.
    const KNOWN_UNTRANSLATED: &[&str] = &[
        "admin_saml_sp.html: \"Low\"",
        "admin_saml_sp.html: \"Substantial\"",
    ];

    #[test]
    fn templates_write_no_text_past_the_catalog() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../templates");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            found.extend(untranslated(
                &name,
                &std::fs::read_to_string(&path).unwrap(),
            ));
        }
        found.retain(|f| !KNOWN_UNTRANSLATED.contains(&f.as_str()));
        assert_eq!(found, Vec::<String>::new(), "text not from the catalog");
        // The check itself finds what it should.
        assert_eq!(
            untranslated(
                "t.html",
                "<th>Event</th><th>{{ t.get(\"x\") }}</th><input placeholder=\"Name\">"
            ),
            vec!["t.html: \"Event\"", "t.html: \"Name\""]
        );
    }

    /// Keys named in the server's code: the argument of a `get("…")` or `fill("…")` call,
    /// and literals of the catalog's deeper sections (`wait.result.…`, `stepup.reason.…`)
    /// that code picks for a template to look up.
    fn keys_in_code() -> Vec<(String, String)> {
        let mut keys = Vec::new();
        let mut stack = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") || path.ends_with("i18n.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let mut offset = 0;
                for (i, piece) in text.split('"').enumerate() {
                    let before = &text[..offset];
                    offset += piece.len() + 1;
                    if i % 2 == 0 {
                        continue;
                    }
                    let key_like = piece.contains('.')
                        && piece
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_');
                    if !key_like {
                        continue;
                    }
                    let called = before.ends_with("get(\"") || before.ends_with("fill(\"");
                    let deep = piece.matches('.').count() >= 2 && looks_like_text_key(piece);
                    if called || deep {
                        keys.push((path.display().to_string(), piece.to_owned()));
                    }
                }
            }
        }
        keys
    }

    #[test]
    fn every_key_the_code_names_exists() {
        let keys = keys_in_code();
        assert!(
            keys.len() > 30,
            "the code names catalog keys ({})",
            keys.len()
        );
        let missing: Vec<_> = keys
            .iter()
            .filter(|(_, k)| !EN.texts.contains_key(k) || !DA.texts.contains_key(k))
            .collect();
        assert_eq!(missing, Vec::<&(String, String)>::new());
    }

    /// A key in a section the catalog has, as opposed to an audit event such as
    /// `login.password.succeeded`.
    fn looks_like_text_key(key: &str) -> bool {
        let section = |k: &str| k.rsplit_once('.').map(|(s, _)| s.to_owned());
        EN.texts.keys().any(|k| section(k) == section(key))
    }

    /// The demo phone's texts (`static/phone.js`): one table per language, each key in both,
    /// and every key the page and the script use is in the table.
    #[test]
    fn the_demo_phone_has_every_text_in_both_languages() {
        let script = include_str!("../../../static/phone.js");
        let page = include_str!("../../../static/phone.html");
        let table = |lang: &str, next: &str| -> BTreeSet<String> {
            let start = script
                .find(&format!("\n    {lang}: {{\n"))
                .unwrap_or_else(|| panic!("no {lang} table"));
            let body = &script[start..];
            let end = body.find(next).unwrap_or(body.len());
            body[..end]
                .lines()
                .skip(2)
                .filter_map(|line| {
                    let line = line.trim_start();
                    let (key, _) = line.split_once(':')?;
                    (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                        .then(|| key.to_owned())
                })
                .collect()
        };
        let en = table("en", "\n    da: {");
        let da = table("da", "\n  };");
        assert!(en.len() > 40, "{} English texts", en.len());
        assert_eq!(
            en.symmetric_difference(&da).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "in one language only"
        );
        let mut used: Vec<String> = page
            .split("data-t=\"")
            .skip(1)
            .map(|p| p.split('"').next().unwrap_or("").to_owned())
            .collect();
        let bytes = script.as_bytes();
        for (at, _) in script.match_indices("t(\"") {
            let before = at.checked_sub(1).map(|i| bytes[i] as char);
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') {
                continue;
            }
            let key = script[at + 3..].split('"').next().unwrap_or("");
            if key.ends_with('_') {
                continue; // a prefix completed at run time (status_…), checked below
            }
            used.push(key.to_owned());
        }
        for status in ["approved", "wrong_code", "rejected"] {
            used.push(format!("status_{status}"));
        }
        let missing: Vec<_> = used.iter().filter(|k| !en.contains(*k)).collect();
        assert_eq!(missing, Vec::<&String>::new(), "used but not in the table");
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

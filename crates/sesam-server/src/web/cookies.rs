//! The two small cookies Sesam sets itself (remembered username, language); the session
//! cookie is tower-sessions'.

use axum::http::{header, HeaderMap, HeaderValue};
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};

/// The value of the named cookie, percent-decoded; `None` when absent or not UTF-8.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| {
            percent_decode_str(v)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        })
}

/// A `Set-Cookie` value: httpOnly, SameSite=Lax, path `/`. `max_age` 0 deletes it.
pub fn set(name: &str, value: &str, max_age_seconds: i64, secure: bool) -> HeaderValue {
    let mut cookie = format!(
        "{name}={}; Path=/; Max-Age={max_age_seconds}; HttpOnly; SameSite=Lax",
        utf8_percent_encode(value, NON_ALPHANUMERIC)
    );
    if secure {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).expect("percent-encoded cookie is a valid header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_headers() {
        let set_value = set("sesam_username", "Anna Æblegård", 60, true);
        let text = set_value.to_str().unwrap();
        assert!(
            text.contains("HttpOnly") && text.contains("Secure") && text.contains("SameSite=Lax")
        );
        let pair = text.split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {pair}")).unwrap(),
        );
        assert_eq!(
            get(&headers, "sesam_username").as_deref(),
            Some("Anna Æblegård")
        );
        assert_eq!(get(&headers, "missing"), None);
    }

    #[test]
    fn invalid_utf8_is_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("sesam_username=%FF%FE"),
        );
        assert_eq!(get(&headers, "sesam_username"), None);
    }
}

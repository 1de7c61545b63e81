//! The authorization response delivered to the client's redirect URI: a query-string redirect
//! or, for `response_mode=form_post`, an HTML form (no inline script: the server's CSP forbids it).

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::authorize::{AuthorizeErrorCode, ResponseMode};

/// Everything but RFC 3986 unreserved characters is encoded in query values.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How the answer reaches the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationResponse {
    /// 303 to `location` (parameters in the query string).
    Redirect {
        /// The full URL for the `Location` header.
        location: String,
    },
    /// An HTML page whose form posts `fields` to `action` (see [`Self::form_post_html`]).
    FormPost {
        /// The client's redirect URI.
        action: String,
        /// The response parameters, in order.
        fields: Vec<(String, String)>,
    },
}

impl AuthorizationResponse {
    fn new(redirect_uri: &str, fields: Vec<(String, String)>, mode: ResponseMode) -> Self {
        match mode {
            ResponseMode::Query => {
                let mut location = redirect_uri.to_owned();
                let mut separator = if redirect_uri.contains('?') { '&' } else { '?' };
                for (name, value) in &fields {
                    location.push(separator);
                    location.push_str(name);
                    location.push('=');
                    location.extend(utf8_percent_encode(value, QUERY_VALUE));
                    separator = '&';
                }
                AuthorizationResponse::Redirect { location }
            }
            ResponseMode::FormPost => AuthorizationResponse::FormPost {
                action: redirect_uri.to_owned(),
                fields,
            },
        }
    }

    /// The page for `form_post`: a form with hidden fields and a submit button, no inline
    /// script. `script_src`, when given, is an external script (same origin, allowed by the CSP)
    /// that submits the form (`id="form-post"`) on load. `None` for a redirect.
    pub fn form_post_html(&self, button_label: &str, script_src: Option<&str>) -> Option<String> {
        let AuthorizationResponse::FormPost { action, fields } = self else {
            return None;
        };
        let mut html = String::from(
            "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"referrer\" content=\"no-referrer\">\n",
        );
        if let Some(src) = script_src {
            html.push_str(&format!(
                "<script src=\"{}\" defer></script>\n",
                escape(src)
            ));
        }
        html.push_str(&format!(
            "</head>\n<body>\n<form id=\"form-post\" method=\"post\" action=\"{}\">\n",
            escape(action)
        ));
        for (name, value) in fields {
            html.push_str(&format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
                escape(name),
                escape(value)
            ));
        }
        html.push_str(&format!(
            "<button type=\"submit\">{}</button>\n</form>\n</body>\n</html>\n",
            escape(button_label)
        ));
        Some(html)
    }
}

/// The success answer: `code`, `state` when the client sent one, and `iss` (RFC 9207).
pub fn authorization_response(
    redirect_uri: &str,
    code: &str,
    state: Option<&str>,
    iss: &str,
    mode: ResponseMode,
) -> AuthorizationResponse {
    let mut fields = vec![("code".to_owned(), code.to_owned())];
    if let Some(state) = state {
        fields.push(("state".to_owned(), state.to_owned()));
    }
    fields.push(("iss".to_owned(), iss.to_owned()));
    AuthorizationResponse::new(redirect_uri, fields, mode)
}

/// The error answer: `error`, `error_description`, `state`, and `iss` (RFC 9207).
pub fn authorization_error_response(
    redirect_uri: &str,
    error: AuthorizeErrorCode,
    description: Option<&str>,
    state: Option<&str>,
    iss: &str,
    mode: ResponseMode,
) -> AuthorizationResponse {
    let mut fields = vec![("error".to_owned(), error.as_str().to_owned())];
    if let Some(description) = description {
        // RFC 6749 §4.1.2.1 limits error_description to printable ASCII without '"' and '\'.
        let clean: String = description
            .chars()
            .filter(|c| matches!(c, ' '..='~') && *c != '"' && *c != '\\')
            .collect();
        fields.push(("error_description".to_owned(), clean));
    }
    if let Some(state) = state {
        fields.push(("state".to_owned(), state.to_owned()));
    }
    fields.push(("iss".to_owned(), iss.to_owned()));
    AuthorizationResponse::new(redirect_uri, fields, mode)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://idp.example.dk";

    #[test]
    fn query_response_encodes_values_and_keeps_existing_query() {
        let r = authorization_response(
            "https://sp.example.dk/cb",
            "abc",
            Some("s t&x=y"),
            ISS,
            ResponseMode::Query,
        );
        assert_eq!(
            r,
            AuthorizationResponse::Redirect {
                location: "https://sp.example.dk/cb?code=abc&state=s%20t%26x%3Dy&iss=https%3A%2F%2Fidp.example.dk".into()
            }
        );
        let r = authorization_response(
            "https://sp.example.dk/cb?t=1",
            "abc",
            None,
            ISS,
            ResponseMode::Query,
        );
        let AuthorizationResponse::Redirect { location } = r else {
            panic!()
        };
        assert!(location.starts_with("https://sp.example.dk/cb?t=1&code=abc&iss="));
    }

    #[test]
    fn form_post_page_escapes_and_has_no_inline_script() {
        let r = authorization_response(
            "https://sp.example.dk/cb?a=1&b=2",
            "abc",
            Some("\"><script>alert(1)</script>"),
            ISS,
            ResponseMode::FormPost,
        );
        let html = r
            .form_post_html("Continue", Some("/static/form-post.js"))
            .unwrap();
        assert!(html.contains("action=\"https://sp.example.dk/cb?a=1&amp;b=2\""));
        assert!(html
            .contains("name=\"state\" value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""));
        assert!(html.contains("name=\"iss\" value=\"https://idp.example.dk\""));
        assert!(html.contains("<button type=\"submit\">Continue</button>"));
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains("<script src=\"/static/form-post.js\" defer></script>"));
        assert!(!html.contains("onload"));
        let redirect = authorization_response("https://sp/cb", "c", None, ISS, ResponseMode::Query);
        assert_eq!(redirect.form_post_html("x", None), None);
    }

    #[test]
    fn error_response_carries_error_state_and_iss() {
        let r = authorization_error_response(
            "https://sp.example.dk/cb",
            AuthorizeErrorCode::LoginRequired,
            Some("no session \"here\"\n"),
            Some("xyz"),
            ISS,
            ResponseMode::Query,
        );
        let AuthorizationResponse::Redirect { location } = r else {
            panic!()
        };
        assert_eq!(
            location,
            "https://sp.example.dk/cb?error=login_required&error_description=no%20session%20here&state=xyz&iss=https%3A%2F%2Fidp.example.dk"
        );
    }
}

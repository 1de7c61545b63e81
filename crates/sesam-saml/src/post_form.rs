//! The HTTP-POST binding's auto-submit page, without JavaScript (the CSP forbids inline script):
//! the user presses the button, which also works with JavaScript disabled.

use crate::xml::esc;
use base64::Engine;

/// An HTML page posting `saml_response` (the XML, base64-encoded here) and `relay_state` to
/// `acs_url`. `button_label` comes from the caller's translation catalog.
pub fn post_form(
    acs_url: &str,
    saml_response: &str,
    relay_state: Option<&str>,
    button_label: &str,
) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(saml_response.as_bytes());
    let relay = relay_state
        .map(|r| {
            format!(
                r#"<input type="hidden" name="RelayState" value="{}">"#,
                esc(r)
            )
        })
        .unwrap_or_default();
    format!(
        concat!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>SAML</title></head><body>",
            r#"<form method="post" action="{action}">"#,
            r#"<input type="hidden" name="SAMLResponse" value="{response}">{relay}"#,
            r#"<button type="submit">{label}</button></form></body></html>"#
        ),
        action = esc(acs_url),
        response = encoded,
        relay = relay,
        label = esc(button_label),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_form_has_fields_no_script_and_escapes() {
        let html = post_form(
            "https://sp/acs?a=1&b=\"2\"",
            "<samlp:Response/>",
            Some("x\"><script>"),
            "Fortsæt",
        );
        assert!(html.contains(r#"action="https://sp/acs?a=1&amp;b=&quot;2&quot;""#));
        assert!(html.contains(r#"name="SAMLResponse" value="PHNhbWxwOlJlc3BvbnNlLz4=""#));
        assert!(html.contains(r#"name="RelayState" value="x&quot;&gt;&lt;script&gt;""#));
        assert!(html.contains("<button type=\"submit\">Fortsæt</button>"));
        assert!(!html.contains("<script"));
        assert!(!post_form("https://sp/acs", "<r/>", None, "Go").contains("RelayState"));
    }
}

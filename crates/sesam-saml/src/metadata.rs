//! The IdP's own SAML metadata: our template in schema order, signed as a whole.
//! samael's metadata writer puts SingleSignOnService before NameIDFormat, which the schema forbids.

use crate::error::Result;
use crate::key::{Certificate, IdpKey};
use crate::response::NameIdFormat;
use crate::xml::{esc, instant, new_id, sign_enveloped, signature_template};
use crate::{BINDING_HTTP_POST, BINDING_HTTP_REDIRECT};
use time::{Duration, OffsetDateTime};

/// What the IdP metadata document says. Endpoints are absolute URLs.
#[derive(Debug, Clone, Copy)]
pub struct IdpMetadata<'a> {
    pub entity_id: &'a str,
    /// The SingleSignOnService endpoint (both Redirect and POST bindings).
    pub sso_url: &'a str,
    /// The SingleLogoutService endpoint (both Redirect and POST bindings).
    pub slo_url: &'a str,
    pub want_authn_requests_signed: bool,
    pub valid_until: OffsetDateTime,
    pub cache_duration: Duration,
    /// A second signing certificate published ahead of a key rollover.
    pub next_signing_certificate: Option<&'a Certificate>,
    /// The certificate SPs encrypt to; `None` publishes the signing certificate for encryption.
    pub encryption_certificate: Option<&'a Certificate>,
}

fn key_descriptor(usage: &str, cert: &Certificate) -> String {
    format!(
        r#"<md:KeyDescriptor use="{usage}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
        cert.to_base64()
    )
}

/// `xs:duration` in seconds, e.g. `PT3600S`.
fn duration(d: Duration) -> String {
    format!("PT{}S", d.whole_seconds().max(0))
}

/// Renders and signs the IdP metadata with `key` (whose certificate is the first signing key).
pub fn idp_metadata(meta: &IdpMetadata<'_>, key: &IdpKey) -> Result<String> {
    let id = new_id()?;
    let mut keys = key_descriptor("signing", key.certificate());
    if let Some(next) = meta.next_signing_certificate {
        keys.push_str(&key_descriptor("signing", next));
    }
    keys.push_str(&key_descriptor(
        "encryption",
        meta.encryption_certificate.unwrap_or(key.certificate()),
    ));
    let mut endpoints = String::new();
    for binding in [BINDING_HTTP_REDIRECT, BINDING_HTTP_POST] {
        endpoints.push_str(&format!(
            r#"<md:SingleLogoutService Binding="{binding}" Location="{}"/>"#,
            esc(meta.slo_url)
        ));
    }
    // What an SP may ask for; emailAddress only where its registration allows it.
    for format in [
        NameIdFormat::Persistent,
        NameIdFormat::Transient,
        NameIdFormat::EmailAddress,
    ] {
        endpoints.push_str(&format!(
            "<md:NameIDFormat>{}</md:NameIDFormat>",
            format.uri()
        ));
    }
    for binding in [BINDING_HTTP_REDIRECT, BINDING_HTTP_POST] {
        endpoints.push_str(&format!(
            r#"<md:SingleSignOnService Binding="{binding}" Location="{}"/>"#,
            esc(meta.sso_url)
        ));
    }
    let xml = format!(
        concat!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#""#,
            r#" ID="{id}" entityID="{entity_id}" validUntil="{valid_until}" cacheDuration="{cache}">"#,
            "{signature}",
            r#"<md:IDPSSODescriptor WantAuthnRequestsSigned="{want}" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">"#,
            "{keys}{endpoints}</md:IDPSSODescriptor></md:EntityDescriptor>"
        ),
        id = id,
        entity_id = esc(meta.entity_id),
        valid_until = instant(meta.valid_until),
        cache = duration(meta.cache_duration),
        signature = signature_template(&id, key),
        want = meta.want_authn_requests_signed,
        keys = keys,
        endpoints = endpoints,
    );
    sign_enveloped(&xml, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::tests::{tamper, xmlsec1_verifies};
    use crate::xml::{parse, NS_MD};

    const ID_ATTR: &str = "urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor";

    #[test]
    fn idp_metadata_is_signed_ordered_and_verifies_with_xmlsec1() {
        let key = IdpKey::generate("sesam test", 30).unwrap();
        let next = IdpKey::generate("sesam next", 30).unwrap();
        let valid_until = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let meta = IdpMetadata {
            entity_id: "https://idp.example.dk/saml?a=1&b=2",
            sso_url: "https://idp.example.dk/saml/sso",
            slo_url: "https://idp.example.dk/saml/slo",
            want_authn_requests_signed: true,
            valid_until,
            cache_duration: Duration::hours(6),
            next_signing_certificate: Some(next.certificate()),
            encryption_certificate: None,
        };
        let xml = idp_metadata(&meta, &key).unwrap();
        let cert_pem = key.certificate_pem().unwrap();
        assert!(xmlsec1_verifies(&xml, &cert_pem, ID_ATTR), "{xml}");
        let tampered = tamper(&xml, "/saml/sso", "/saml/ss0");
        assert!(!xmlsec1_verifies(&tampered, &cert_pem, ID_ATTR));

        let root = parse(xml.as_bytes(), 1 << 20).unwrap();
        assert_eq!(root.attr("entityID"), Some(meta.entity_id));
        assert_eq!(root.attr("cacheDuration"), Some("PT21600S"));
        assert_eq!(root.attr("validUntil"), Some("2027-01-15T08:00:00Z"));
        let idp = root.child(NS_MD, "IDPSSODescriptor").unwrap();
        assert_eq!(idp.attr("WantAuthnRequestsSigned"), Some("true"));
        let order: Vec<&str> = idp.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            order,
            [
                "KeyDescriptor",
                "KeyDescriptor",
                "KeyDescriptor",
                "SingleLogoutService",
                "SingleLogoutService",
                "NameIDFormat",
                "NameIDFormat",
                "NameIDFormat",
                "SingleSignOnService",
                "SingleSignOnService"
            ]
        );
        let uses: Vec<&str> = idp
            .children_named(NS_MD, "KeyDescriptor")
            .filter_map(|k| k.attr("use"))
            .collect();
        assert_eq!(uses, ["signing", "signing", "encryption"]);
        // The Signature is the first child, as the schema wants.
        assert_eq!(root.children[0].name, "Signature");
    }
}

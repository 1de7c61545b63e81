//! The SAML Response: our own builder with a signed Assertion (RSA-SHA256, exclusive c14n),
//! 5-minute validity, persistent NameID and the OIOSAML 3 attributes; and error Responses.

use crate::error::Result;
use crate::key::IdpKey;
use crate::xml::{esc, instant, new_id, sign_enveloped, signature_template};
use crate::NAMEID_PERSISTENT;
use time::{Duration, OffsetDateTime};

/// How long an assertion may be used after it is issued.
pub const ASSERTION_VALIDITY: Duration = Duration::minutes(5);

const ATTR_SPEC_VERSION: &str = "https://data.gov.dk/model/core/specVersion";
const ATTR_LOA: &str = "https://data.gov.dk/concept/core/nsis/loa";
const NAME_FORMAT_URI: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri";

// The level claimed in AuthnContextClassRef and the `loa` attribute is sesam-core's
// AssuranceLevel: one level type for the whole server.
pub use sesam_core::AssuranceLevel;

/// One released attribute: a URI name and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub values: Vec<String>,
}

/// Everything a successful Response says. Times are passed in; nothing here reads the clock.
#[derive(Debug, Clone, Copy)]
pub struct ResponseParams<'a> {
    pub idp_entity_id: &'a str,
    pub sp_entity_id: &'a str,
    /// The resolved ACS URL: Response Destination and SubjectConfirmation Recipient.
    pub acs_url: &'a str,
    /// The AuthnRequest ID, `None` for IdP-initiated login.
    pub in_response_to: Option<&'a str>,
    /// The persistent pseudonym of the user at this SP.
    pub name_id: &'a str,
    pub session_index: &'a str,
    pub authn_instant: OffsetDateTime,
    pub now: OffsetDateTime,
    pub loa: AssuranceLevel,
    pub attributes: &'a [Attribute],
}

/// Why the IdP did not log the user in: the second-level status code sent to the SP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusError {
    RequestDenied,
    NoAuthnContext,
    NoPassive,
    AuthnFailed,
    InvalidNameIdPolicy,
    RequestUnsupported,
    UnsupportedBinding,
    /// A top-level status (SAML Core 3.2.2.2): the request's SAML version is not 2.0.
    VersionMismatch,
}

impl StatusError {
    /// The top-level code and, unless the top level says it all, the second-level code.
    fn codes(self) -> (&'static str, Option<&'static str>) {
        const REQUESTER: &str = "urn:oasis:names:tc:SAML:2.0:status:Requester";
        const RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
        match self {
            Self::RequestDenied => (
                RESPONDER,
                Some("urn:oasis:names:tc:SAML:2.0:status:RequestDenied"),
            ),
            Self::NoAuthnContext => (
                RESPONDER,
                Some("urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext"),
            ),
            Self::NoPassive => (
                RESPONDER,
                Some("urn:oasis:names:tc:SAML:2.0:status:NoPassive"),
            ),
            Self::AuthnFailed => (
                RESPONDER,
                Some("urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"),
            ),
            Self::InvalidNameIdPolicy => (
                REQUESTER,
                Some("urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy"),
            ),
            Self::RequestUnsupported => (
                REQUESTER,
                Some("urn:oasis:names:tc:SAML:2.0:status:RequestUnsupported"),
            ),
            Self::VersionMismatch => ("urn:oasis:names:tc:SAML:2.0:status:VersionMismatch", None),
            Self::UnsupportedBinding => (
                REQUESTER,
                Some("urn:oasis:names:tc:SAML:2.0:status:UnsupportedBinding"),
            ),
        }
    }
}

fn attribute(name: &str, values: &[String]) -> String {
    let mut out = format!(
        r#"<saml:Attribute Name="{}" NameFormat="{NAME_FORMAT_URI}">"#,
        esc(name)
    );
    for v in values {
        out.push_str(&format!(
            r#"<saml:AttributeValue xsi:type="xs:string">{}</saml:AttributeValue>"#,
            esc(v)
        ));
    }
    out.push_str("</saml:Attribute>");
    out
}

/// The signed Assertion alone (no XML declaration), to embed or to encrypt.
pub(crate) fn signed_assertion(p: &ResponseParams<'_>, key: &IdpKey) -> Result<String> {
    let id = new_id()?;
    let now = instant(p.now);
    let not_on_or_after = instant(p.now + ASSERTION_VALIDITY);
    let in_response_to = p
        .in_response_to
        .map(|r| format!(r#" InResponseTo="{}""#, esc(r)))
        .unwrap_or_default();
    let mut attributes = attribute(ATTR_SPEC_VERSION, &["OIO-SAML-3.0".to_string()]);
    attributes.push_str(&attribute(ATTR_LOA, &[p.loa.name().to_string()]));
    for a in p.attributes {
        attributes.push_str(&attribute(&a.name, &a.values));
    }
    let xml = format!(
        concat!(
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance""#,
            r#" ID="{id}" Version="2.0" IssueInstant="{now}">"#,
            "<saml:Issuer>{issuer}</saml:Issuer>{signature}",
            "<saml:Subject>",
            r#"<saml:NameID Format="{persistent}" NameQualifier="{issuer}" SPNameQualifier="{audience}">{name_id}</saml:NameID>"#,
            r#"<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">"#,
            r#"<saml:SubjectConfirmationData{irt} NotOnOrAfter="{nooa}" Recipient="{acs}"/>"#,
            "</saml:SubjectConfirmation></saml:Subject>",
            r#"<saml:Conditions NotBefore="{now}" NotOnOrAfter="{nooa}">"#,
            "<saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions>",
            r#"<saml:AuthnStatement AuthnInstant="{authn_instant}" SessionIndex="{session_index}">"#,
            "<saml:AuthnContext><saml:AuthnContextClassRef>{loa}</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>",
            "<saml:AttributeStatement>{attributes}</saml:AttributeStatement>",
            "</saml:Assertion>"
        ),
        id = id,
        now = now,
        issuer = esc(p.idp_entity_id),
        signature = signature_template(&id, key),
        persistent = NAMEID_PERSISTENT,
        audience = esc(p.sp_entity_id),
        name_id = esc(p.name_id),
        irt = in_response_to,
        nooa = not_on_or_after,
        acs = esc(p.acs_url),
        authn_instant = instant(p.authn_instant),
        session_index = esc(p.session_index),
        loa = p.loa.nsis_uri(),
        attributes = attributes,
    );
    sign_enveloped(&xml, key)
}

fn response_envelope(
    idp_entity_id: &str,
    destination: &str,
    in_response_to: Option<&str>,
    now: OffsetDateTime,
    status: &str,
    body: &str,
) -> Result<String> {
    let in_response_to = in_response_to
        .map(|r| format!(r#" InResponseTo="{}""#, esc(r)))
        .unwrap_or_default();
    Ok(format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#,
            r#" ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{dest}"{irt}>"#,
            "<saml:Issuer>{issuer}</saml:Issuer>{status}{body}</samlp:Response>"
        ),
        id = new_id()?,
        now = instant(now),
        dest = esc(destination),
        irt = in_response_to,
        issuer = esc(idp_entity_id),
        status = status,
        body = body,
    ))
}

const STATUS_SUCCESS: &str = r#"<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>"#;

/// A successful Response with a signed Assertion, ready for [`crate::post_form`].
pub fn build_response(p: &ResponseParams<'_>, key: &IdpKey) -> Result<String> {
    let assertion = signed_assertion(p, key)?;
    response_envelope(
        p.idp_entity_id,
        p.acs_url,
        p.in_response_to,
        p.now,
        STATUS_SUCCESS,
        &assertion,
    )
}

pub(crate) fn build_response_with_body(p: &ResponseParams<'_>, body: &str) -> Result<String> {
    response_envelope(
        p.idp_entity_id,
        p.acs_url,
        p.in_response_to,
        p.now,
        STATUS_SUCCESS,
        body,
    )
}

/// A Response carrying an error status and no Assertion.
pub fn build_error_response(
    idp_entity_id: &str,
    acs_url: &str,
    in_response_to: Option<&str>,
    now: OffsetDateTime,
    error: StatusError,
    message: Option<&str>,
) -> Result<String> {
    let (top, second) = error.codes();
    let second = second
        .map(|c| format!(r#"<samlp:StatusCode Value="{c}"/>"#))
        .unwrap_or_default();
    let message = message
        .map(|m| format!("<samlp:StatusMessage>{}</samlp:StatusMessage>", esc(m)))
        .unwrap_or_default();
    let status = format!(
        r#"<samlp:Status><samlp:StatusCode Value="{top}">{second}</samlp:StatusCode>{message}</samlp:Status>"#
    );
    response_envelope(idp_entity_id, acs_url, in_response_to, now, &status, "")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::xml::tests::{tamper, xmlsec1_verifies};
    use crate::xml::{parse, NS_SAML, NS_SAMLP};

    pub(crate) const ASSERTION_ID_ATTR: &str = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion";

    pub(crate) fn params<'a>(attributes: &'a [Attribute]) -> ResponseParams<'a> {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        ResponseParams {
            idp_entity_id: "https://idp.example.dk/saml",
            sp_entity_id: "https://sp.kommune.dk/shibboleth",
            acs_url: "https://sp.kommune.dk/Shibboleth.sso/SAML2/POST",
            in_response_to: Some("_req<1>"),
            name_id: "a1b2c3d4-pseudonym",
            session_index: "_sess1",
            authn_instant: now - Duration::seconds(30),
            now,
            loa: AssuranceLevel::Substantial,
            attributes,
        }
    }

    #[test]
    fn response_assertion_is_signed_complete_and_verifies_with_xmlsec1() {
        let key = IdpKey::generate("idp", 10).unwrap();
        let attrs = [Attribute {
            name: "https://data.gov.dk/model/core/eid/email".into(),
            values: vec!["anne & bo <x@kommune.dk>".into()],
        }];
        let xml = build_response(&params(&attrs), &key).unwrap();
        let pem = key.certificate_pem().unwrap();
        assert!(xmlsec1_verifies(&xml, &pem, ASSERTION_ID_ATTR), "{xml}");
        assert!(!xmlsec1_verifies(
            &tamper(&xml, "a1b2c3d4", "a1b2c3d5"),
            &pem,
            ASSERTION_ID_ATTR
        ));

        let root = parse(xml.as_bytes(), 1 << 20).unwrap();
        assert_eq!(root.attr("InResponseTo"), Some("_req<1>"));
        assert_eq!(root.attr("Destination"), Some(params(&[]).acs_url));
        let status = root.child(NS_SAMLP, "Status").unwrap();
        assert_eq!(
            status.child(NS_SAMLP, "StatusCode").unwrap().attr("Value"),
            Some("urn:oasis:names:tc:SAML:2.0:status:Success")
        );
        let assertion = root.child(NS_SAML, "Assertion").unwrap();
        let names: Vec<&str> = assertion.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Issuer",
                "Signature",
                "Subject",
                "Conditions",
                "AuthnStatement",
                "AttributeStatement"
            ]
        );
        let subject = assertion.child(NS_SAML, "Subject").unwrap();
        assert_eq!(
            subject.child(NS_SAML, "NameID").unwrap().text,
            "a1b2c3d4-pseudonym"
        );
        let data = subject
            .child(NS_SAML, "SubjectConfirmation")
            .unwrap()
            .child(NS_SAML, "SubjectConfirmationData")
            .unwrap();
        assert_eq!(data.attr("NotOnOrAfter"), Some("2023-11-14T22:18:20Z"));
        assert_eq!(data.attr("InResponseTo"), Some("_req<1>"));
        let conditions = assertion.child(NS_SAML, "Conditions").unwrap();
        assert_eq!(conditions.attr("NotBefore"), Some("2023-11-14T22:13:20Z"));
        assert_eq!(
            conditions.attr("NotOnOrAfter"),
            Some("2023-11-14T22:18:20Z")
        );
        let authn = assertion.child(NS_SAML, "AuthnStatement").unwrap();
        assert_eq!(authn.attr("SessionIndex"), Some("_sess1"));
        assert_eq!(authn.attr("AuthnInstant"), Some("2023-11-14T22:12:50Z"));
        let attrs: Vec<(String, String)> = assertion
            .child(NS_SAML, "AttributeStatement")
            .unwrap()
            .children
            .iter()
            .map(|a| {
                (
                    a.attr("Name").unwrap().to_string(),
                    a.children[0].text.clone(),
                )
            })
            .collect();
        assert_eq!(attrs[0], (ATTR_SPEC_VERSION.into(), "OIO-SAML-3.0".into()));
        assert_eq!(attrs[1], (ATTR_LOA.into(), "Substantial".into()));
        assert_eq!(attrs[2].1, "anne & bo <x@kommune.dk>");
        assert!(xml.contains(
            "https://data.gov.dk/concept/core/nsis/loa/Substantial</saml:AuthnContextClassRef>"
        ));
    }

    #[test]
    fn error_response_carries_second_level_status() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let xml = build_error_response(
            "https://idp",
            "https://sp/acs",
            Some("_r"),
            now,
            StatusError::NoPassive,
            Some("login needed <now>"),
        )
        .unwrap();
        let root = parse(xml.as_bytes(), 1 << 16).unwrap();
        let top = root
            .child(NS_SAMLP, "Status")
            .unwrap()
            .child(NS_SAMLP, "StatusCode")
            .unwrap();
        assert_eq!(
            top.attr("Value"),
            Some("urn:oasis:names:tc:SAML:2.0:status:Responder")
        );
        assert_eq!(
            top.child(NS_SAMLP, "StatusCode").unwrap().attr("Value"),
            Some("urn:oasis:names:tc:SAML:2.0:status:NoPassive")
        );
        assert!(root.child(NS_SAML, "Assertion").is_none());
        assert!(xml.contains("login needed &lt;now&gt;"));
    }

    #[test]
    fn version_mismatch_is_a_top_level_status_alone() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let xml = build_error_response(
            "https://idp",
            "https://sp/acs",
            Some("_r"),
            now,
            StatusError::VersionMismatch,
            None,
        )
        .unwrap();
        let root = parse(xml.as_bytes(), 1 << 16).unwrap();
        let top = root
            .child(NS_SAMLP, "Status")
            .unwrap()
            .child(NS_SAMLP, "StatusCode")
            .unwrap();
        assert_eq!(
            top.attr("Value"),
            Some("urn:oasis:names:tc:SAML:2.0:status:VersionMismatch")
        );
        assert!(top.child(NS_SAMLP, "StatusCode").is_none());
    }
}

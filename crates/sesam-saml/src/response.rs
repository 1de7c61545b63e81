//! The SAML Response: our own builder with a signed Assertion and/or Response (RSA-SHA256,
//! exclusive c14n), 5-minute validity, the NameID in the format chosen and the OIOSAML 3
//! attributes; and error Responses.

use crate::error::Result;
use crate::key::IdpKey;
use crate::xml::{esc, instant, new_id, sign_enveloped, signature_template};
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

/// The NameID formats Sesam knows (SAML Core 8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameIdFormat {
    /// A stable pseudonym per user and SP.
    Persistent,
    /// A fresh random value in every assertion.
    Transient,
    /// The user's email address.
    EmailAddress,
    /// The SP leaves the choice to the IdP; never sent in a NameID.
    Unspecified,
}

impl NameIdFormat {
    pub const ALL: [NameIdFormat; 4] = [
        Self::Persistent,
        Self::Transient,
        Self::EmailAddress,
        Self::Unspecified,
    ];

    pub fn uri(self) -> &'static str {
        match self {
            Self::Persistent => "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
            Self::Transient => "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
            Self::EmailAddress => "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
            Self::Unspecified => "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
        }
    }

    /// The short name used in the CLI, the portal and the database.
    pub fn name(self) -> &'static str {
        match self {
            Self::Persistent => "persistent",
            Self::Transient => "transient",
            Self::EmailAddress => "emailAddress",
            Self::Unspecified => "unspecified",
        }
    }

    /// A short name or a format URI.
    pub fn parse(s: &str) -> Option<NameIdFormat> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s || f.uri() == s)
    }
}

/// Which parts of a successful Response carry Sesam's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseSigning {
    /// The Assertion (the default; what SAML's Web SSO profile needs).
    #[default]
    Assertion,
    /// The Response as a whole, the Assertion unsigned inside it.
    Response,
    /// The Assertion, and the Response around it.
    Both,
}

impl ResponseSigning {
    pub const ALL: [ResponseSigning; 3] = [Self::Assertion, Self::Response, Self::Both];

    pub fn name(self) -> &'static str {
        match self {
            Self::Assertion => "assertion",
            Self::Response => "response",
            Self::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<ResponseSigning> {
        Self::ALL.into_iter().find(|v| v.name() == s.trim())
    }

    pub fn signs_assertion(self) -> bool {
        matches!(self, Self::Assertion | Self::Both)
    }

    pub fn signs_response(self) -> bool {
        matches!(self, Self::Response | Self::Both)
    }
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
    /// The user's NameID at this SP, in `name_id_format`.
    pub name_id: &'a str,
    /// Persistent, transient or emailAddress (the server resolves unspecified).
    pub name_id_format: NameIdFormat,
    pub session_index: &'a str,
    pub authn_instant: OffsetDateTime,
    pub now: OffsetDateTime,
    pub loa: AssuranceLevel,
    pub attributes: &'a [Attribute],
    pub signing: ResponseSigning,
}

/// Why the IdP did not log the user in: the second-level status code sent to the SP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusError {
    RequestDenied,
    NoAuthnContext,
    NoPassive,
    AuthnFailed,
    InvalidNameIdPolicy,
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

/// The NameID's qualifier attributes: pseudonyms are qualified by who issued them and for
/// whom; an email address is not.
pub(crate) fn name_id_qualifiers(format: NameIdFormat, idp: &str, sp: &str) -> String {
    match format {
        NameIdFormat::Persistent | NameIdFormat::Transient => format!(
            r#" NameQualifier="{}" SPNameQualifier="{}""#,
            esc(idp),
            esc(sp)
        ),
        NameIdFormat::EmailAddress | NameIdFormat::Unspecified => String::new(),
    }
}

/// The Assertion alone (no XML declaration), signed unless only the Response is, to embed or
/// to encrypt.
pub(crate) fn maybe_signed_assertion(p: &ResponseParams<'_>, key: &IdpKey) -> Result<String> {
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
    let qualifiers = name_id_qualifiers(p.name_id_format, p.idp_entity_id, p.sp_entity_id);
    let sign = p.signing.signs_assertion();
    let xml = format!(
        concat!(
            r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance""#,
            r#" ID="{id}" Version="2.0" IssueInstant="{now}">"#,
            "<saml:Issuer>{issuer}</saml:Issuer>{signature}",
            "<saml:Subject>",
            r#"<saml:NameID Format="{format}"{qualifiers}>{name_id}</saml:NameID>"#,
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
        signature = if sign { signature_template(&id, key) } else { String::new() },
        format = p.name_id_format.uri(),
        qualifiers = qualifiers,
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
    if sign {
        sign_enveloped(&xml, key)
    } else {
        Ok(xml)
    }
}

const XML_DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// The `samlp:Response` around `status` and `body`; signed as a whole with `sign_with`.
fn response_envelope(
    idp_entity_id: &str,
    destination: &str,
    in_response_to: Option<&str>,
    now: OffsetDateTime,
    status: &str,
    body: &str,
    sign_with: Option<&IdpKey>,
) -> Result<String> {
    let in_response_to = in_response_to
        .map(|r| format!(r#" InResponseTo="{}""#, esc(r)))
        .unwrap_or_default();
    let id = new_id()?;
    // The schema puts the Response's Signature right after its Issuer. It is the first
    // signature in document order, so xmlsec fills in this one and leaves the Assertion's.
    let signature = sign_with
        .map(|key| signature_template(&id, key))
        .unwrap_or_default();
    let xml = format!(
        concat!(
            r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#,
            r#" ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{dest}"{irt}>"#,
            "<saml:Issuer>{issuer}</saml:Issuer>{signature}{status}{body}</samlp:Response>"
        ),
        id = id,
        now = instant(now),
        dest = esc(destination),
        irt = in_response_to,
        issuer = esc(idp_entity_id),
        signature = signature,
        status = status,
        body = body,
    );
    let xml = match sign_with {
        Some(key) => sign_enveloped(&xml, key)?,
        None => xml,
    };
    Ok(format!("{XML_DECLARATION}{xml}"))
}

const STATUS_SUCCESS: &str = r#"<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>"#;

/// A successful Response, the Assertion and/or the Response signed as `p.signing` says,
/// ready for [`crate::post_form`].
pub fn build_response(p: &ResponseParams<'_>, key: &IdpKey) -> Result<String> {
    let assertion = maybe_signed_assertion(p, key)?;
    build_response_with_body(p, key, &assertion)
}

/// A successful Response around `body` (the Assertion, plain or encrypted).
pub(crate) fn build_response_with_body(
    p: &ResponseParams<'_>,
    key: &IdpKey,
    body: &str,
) -> Result<String> {
    response_envelope(
        p.idp_entity_id,
        p.acs_url,
        p.in_response_to,
        p.now,
        STATUS_SUCCESS,
        body,
        p.signing.signs_response().then_some(key),
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
    response_envelope(
        idp_entity_id,
        acs_url,
        in_response_to,
        now,
        &status,
        "",
        None,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::xml::tests::{tamper, xmlsec1_verifies};
    use crate::xml::{parse, NS_DS, NS_SAML, NS_SAMLP};

    pub(crate) const ASSERTION_ID_ATTR: &str = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion";

    pub(crate) fn params<'a>(attributes: &'a [Attribute]) -> ResponseParams<'a> {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        ResponseParams {
            idp_entity_id: "https://idp.example.dk/saml",
            sp_entity_id: "https://sp.kommune.dk/shibboleth",
            acs_url: "https://sp.kommune.dk/Shibboleth.sso/SAML2/POST",
            in_response_to: Some("_req<1>"),
            name_id: "a1b2c3d4-pseudonym",
            name_id_format: NameIdFormat::Persistent,
            session_index: "_sess1",
            authn_instant: now - Duration::seconds(30),
            now,
            loa: AssuranceLevel::Substantial,
            attributes,
            signing: ResponseSigning::Assertion,
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

    const RESPONSE_ID_ATTR: &str = "urn:oasis:names:tc:SAML:2.0:protocol:Response";

    fn signatures(xml: &str) -> (bool, bool) {
        let root = parse(xml.as_bytes(), 1 << 20).unwrap();
        let response_signed = root.child(NS_DS, "Signature").is_some();
        let assertion_signed = root
            .child(NS_SAML, "Assertion")
            .is_some_and(|a| a.child(NS_DS, "Signature").is_some());
        (response_signed, assertion_signed)
    }

    #[test]
    fn the_response_the_assertion_or_both_are_signed_and_verify_with_xmlsec1() {
        let key = IdpKey::generate("idp", 10).unwrap();
        let pem = key.certificate_pem().unwrap();
        for signing in ResponseSigning::ALL {
            let p = ResponseParams {
                signing,
                ..params(&[])
            };
            let xml = build_response(&p, &key).unwrap();
            assert!(xml.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><samlp:Response "#));
            assert_eq!(
                signatures(&xml),
                (signing.signs_response(), signing.signs_assertion()),
                "{signing:?}"
            );
            let root = parse(xml.as_bytes(), 1 << 20).unwrap();
            let order: Vec<&str> = root.children.iter().map(|c| c.name.as_str()).collect();
            if signing.signs_response() {
                // Schema order: Issuer, Signature, Status, Assertion.
                assert_eq!(order, ["Issuer", "Signature", "Status", "Assertion"]);
                assert!(xmlsec1_verifies(&xml, &pem, RESPONSE_ID_ATTR), "{xml}");
                let changed = tamper(&xml, "a1b2c3d4", "a1b2c3d5");
                assert!(!xmlsec1_verifies(&changed, &pem, RESPONSE_ID_ATTR));
                let changed = tamper(&xml, "status:Success", "status:Requester");
                assert!(!xmlsec1_verifies(&changed, &pem, RESPONSE_ID_ATTR));
            } else {
                assert_eq!(order, ["Issuer", "Status", "Assertion"]);
            }
            if signing.signs_assertion() {
                let assertion = xml
                    .split_once("<saml:Assertion ")
                    .map(|(_, rest)| format!("<saml:Assertion {rest}"))
                    .unwrap()
                    .replace("</samlp:Response>", "");
                assert!(xmlsec1_verifies(&assertion, &pem, ASSERTION_ID_ATTR));
            }
        }
    }

    #[test]
    fn each_name_id_format_is_written_with_its_qualifiers() {
        let key = IdpKey::generate("idp", 10).unwrap();
        for (format, qualified) in [
            (NameIdFormat::Persistent, true),
            (NameIdFormat::Transient, true),
            (NameIdFormat::EmailAddress, false),
        ] {
            let p = ResponseParams {
                name_id_format: format,
                name_id: "anne@kommune.dk",
                ..params(&[])
            };
            let xml = build_response(&p, &key).unwrap();
            let root = parse(xml.as_bytes(), 1 << 20).unwrap();
            let name_id = root
                .child(NS_SAML, "Assertion")
                .and_then(|a| a.child(NS_SAML, "Subject"))
                .and_then(|s| s.child(NS_SAML, "NameID"))
                .unwrap()
                .clone();
            assert_eq!(name_id.attr("Format"), Some(format.uri()));
            assert_eq!(name_id.text, "anne@kommune.dk");
            assert_eq!(name_id.attr("SPNameQualifier").is_some(), qualified);
            assert_eq!(name_id.attr("NameQualifier").is_some(), qualified);
        }
        for f in NameIdFormat::ALL {
            assert_eq!(NameIdFormat::parse(f.uri()), Some(f));
            assert_eq!(NameIdFormat::parse(f.name()), Some(f));
        }
        assert_eq!(
            NameIdFormat::parse("urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos"),
            None
        );
        assert_eq!(ResponseSigning::parse("both"), Some(ResponseSigning::Both));
        assert_eq!(ResponseSigning::parse("Both"), None);
        assert_eq!(ResponseSigning::default(), ResponseSigning::Assertion);
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

//! Single logout messages: reading an SP's LogoutRequest (HTTP-Redirect and HTTP-POST, with the
//! same signature rules as AuthnRequests) and writing the signed LogoutResponse.

use crate::authn_request::{
    check_post_signature_structure, check_request_header, checked_relay_state, decode_base64,
    decode_redirect_message, read_request_header, verify_post_message, verify_redirect, Evidence,
    RequestHeader, SignaturePolicy, MAX_REQUEST_XML_BYTES,
};
use crate::error::{Result, SamlError};
use crate::key::{Certificate, IdpKey};
use crate::xml::{
    esc, instant, new_id, parse, sign_enveloped, signature_template, Element, NS_DS, NS_SAML,
    NS_SAMLP,
};
use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::sign::Signer;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use std::io::Write;
use time::{Duration, OffsetDateTime};

const ALG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

/// The fields of a LogoutRequest Sesam acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub id: String,
    pub version: String,
    pub issue_instant: OffsetDateTime,
    pub destination: Option<String>,
    pub issuer: Option<String>,
    pub name_id: Option<String>,
    pub session_indexes: Vec<String>,
    pub signed: bool,
}

/// A decoded LogoutRequest whose signature has not been checked yet.
#[derive(Debug, Clone)]
pub struct UnverifiedLogoutRequest {
    request: LogoutRequest,
    relay_state: Option<String>,
    evidence: Evidence,
}

impl UnverifiedLogoutRequest {
    /// The Issuer, to look up the service provider. Not yet authenticated.
    pub fn issuer(&self) -> Option<&str> {
        self.request.issuer.as_deref()
    }

    pub fn relay_state(&self) -> Option<&str> {
        self.relay_state.as_deref()
    }

    /// Checks the signature with the SP's certificates (see [`crate::UnverifiedAuthnRequest::verify`]).
    pub fn verify(
        self,
        sp_certs: &[Certificate],
        policy: SignaturePolicy,
    ) -> Result<LogoutRequest> {
        let mut request = match check_evidence(self.evidence, "LogoutRequest", sp_certs, policy)? {
            Checked::Unsigned => return Ok(self.request),
            Checked::Redirect => self.request,
            Checked::Post(signed) => read_logout_request(&signed)?,
        };
        request.signed = true;
        Ok(request)
    }
}

enum Checked {
    Unsigned,
    Redirect,
    /// The element the enveloped signature covers.
    Post(Element),
}

fn check_evidence(
    evidence: Evidence,
    message: &'static str,
    certs: &[Certificate],
    policy: SignaturePolicy,
) -> Result<Checked> {
    match evidence {
        Evidence::None if policy.require_signed => Err(SamlError::Unsigned),
        Evidence::None => Ok(Checked::Unsigned),
        Evidence::Redirect {
            sig_alg,
            signature,
            signed_octets,
        } => {
            verify_redirect(&sig_alg, &signature, &signed_octets, certs, policy)?;
            Ok(Checked::Redirect)
        }
        Evidence::Post { xml } => Ok(Checked::Post(verify_post_message(
            &xml, message, certs, policy,
        )?)),
    }
}

impl LogoutRequest {
    /// Version 2.0, IssueInstant within `skew`, Destination our SLO endpoint (required when signed).
    pub fn validate(&self, slo_url: &str, now: OffsetDateTime, skew: Duration) -> Result<()> {
        check_request_header(
            &self.version,
            self.issue_instant,
            self.destination.as_ref(),
            self.signed,
            slo_url,
            now,
            skew,
        )
    }
}

fn read_logout_request(root: &Element) -> Result<LogoutRequest> {
    let RequestHeader {
        id,
        version,
        issue_instant,
    } = read_request_header(
        root,
        "LogoutRequest",
        "samlp:LogoutRequest",
        "LogoutRequest ID",
    )?;
    Ok(LogoutRequest {
        id: id.to_string(),
        version: version.to_string(),
        issue_instant,
        destination: root.attr("Destination").map(str::to_string),
        issuer: root
            .child(NS_SAML, "Issuer")
            .map(|i| i.trimmed_text().to_string()),
        name_id: root
            .child(NS_SAML, "NameID")
            .map(|n| n.trimmed_text().to_string()),
        session_indexes: root
            .children_named(NS_SAMLP, "SessionIndex")
            .map(|s| s.trimmed_text().to_string())
            .collect(),
        signed: false,
    })
}

/// The parsed root and the signature evidence of a POST-binding message.
fn decode_post_message(
    field: &'static str,
    base64_xml: &str,
    message: &'static str,
) -> Result<(Element, Evidence)> {
    let xml = decode_base64(field, base64_xml)?;
    let root = parse(&xml, MAX_REQUEST_XML_BYTES)?;
    let evidence = if root.count_descendants(NS_DS, "Signature") == 0 {
        Evidence::None
    } else {
        check_post_signature_structure(
            &root,
            message,
            SignaturePolicy {
                require_signed: true,
                allow_sha1: true,
            },
        )?;
        Evidence::Post {
            xml: String::from_utf8(xml).map_err(|_| SamlError::NotXml("not UTF-8".into()))?,
        }
    };
    Ok((root, evidence))
}

/// Decodes an HTTP-Redirect LogoutRequest from the raw query string exactly as received.
pub fn decode_logout_redirect(raw_query: &str) -> Result<UnverifiedLogoutRequest> {
    let (xml, relay_state, evidence) = decode_redirect_message(raw_query, "SAMLRequest")?;
    Ok(UnverifiedLogoutRequest {
        request: read_logout_request(&parse(&xml, MAX_REQUEST_XML_BYTES)?)?,
        relay_state,
        evidence,
    })
}

/// Decodes an HTTP-POST LogoutRequest from its form fields.
pub fn decode_logout_post(
    saml_request: &str,
    relay_state: Option<&str>,
) -> Result<UnverifiedLogoutRequest> {
    let (root, evidence) = decode_post_message("SAMLRequest", saml_request, "LogoutRequest")?;
    let request = read_logout_request(&root)?;
    Ok(UnverifiedLogoutRequest {
        request,
        relay_state: checked_relay_state(relay_state.map(str::to_string))?,
        evidence,
    })
}

/// An SP's answer to a LogoutRequest Sesam sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutResponse {
    pub id: String,
    pub in_response_to: Option<String>,
    pub issuer: Option<String>,
    /// The top-level StatusCode value.
    pub status: String,
    pub signed: bool,
}

impl LogoutResponse {
    pub fn is_success(&self) -> bool {
        self.status == "urn:oasis:names:tc:SAML:2.0:status:Success"
    }
}

/// A decoded LogoutResponse whose signature has not been checked yet.
#[derive(Debug, Clone)]
pub struct UnverifiedLogoutResponse {
    response: LogoutResponse,
    evidence: Evidence,
}

impl UnverifiedLogoutResponse {
    pub fn issuer(&self) -> Option<&str> {
        self.response.issuer.as_deref()
    }

    pub fn verify(
        self,
        sp_certs: &[Certificate],
        policy: SignaturePolicy,
    ) -> Result<LogoutResponse> {
        let mut response = match check_evidence(self.evidence, "LogoutResponse", sp_certs, policy)?
        {
            Checked::Unsigned => return Ok(self.response),
            Checked::Redirect => self.response,
            Checked::Post(signed) => read_logout_response(&signed)?,
        };
        response.signed = true;
        Ok(response)
    }
}

fn read_logout_response(root: &Element) -> Result<LogoutResponse> {
    if !root.is(NS_SAMLP, "LogoutResponse") {
        return Err(SamlError::WrongRoot {
            expected: "samlp:LogoutResponse",
            found: format!("{{{}}}{}", root.ns, root.name),
        });
    }
    let status = root
        .child(NS_SAMLP, "Status")
        .and_then(|s| s.child(NS_SAMLP, "StatusCode"))
        .and_then(|c| c.attr("Value"))
        .ok_or(SamlError::Missing("StatusCode"))?;
    Ok(LogoutResponse {
        id: root
            .attr("ID")
            .filter(|v| !v.is_empty())
            .ok_or(SamlError::Missing("LogoutResponse ID"))?
            .to_string(),
        in_response_to: root.attr("InResponseTo").map(str::to_string),
        issuer: root
            .child(NS_SAML, "Issuer")
            .map(|i| i.trimmed_text().to_string()),
        status: status.to_string(),
        signed: false,
    })
}

/// Decodes an HTTP-Redirect LogoutResponse (`SAMLResponse`) from the raw query string.
pub fn decode_logout_response_redirect(raw_query: &str) -> Result<UnverifiedLogoutResponse> {
    let (xml, _, evidence) = decode_redirect_message(raw_query, "SAMLResponse")?;
    Ok(UnverifiedLogoutResponse {
        response: read_logout_response(&parse(&xml, MAX_REQUEST_XML_BYTES)?)?,
        evidence,
    })
}

/// Decodes an HTTP-POST LogoutResponse from its `SAMLResponse` form field.
pub fn decode_logout_response_post(saml_response: &str) -> Result<UnverifiedLogoutResponse> {
    let (root, evidence) = decode_post_message("SAMLResponse", saml_response, "LogoutResponse")?;
    Ok(UnverifiedLogoutResponse {
        response: read_logout_response(&root)?,
        evidence,
    })
}

/// What a LogoutRequest Sesam sends to another SP of the session says.
#[derive(Debug, Clone, Copy)]
pub struct LogoutRequestParams<'a> {
    pub idp_entity_id: &'a str,
    pub sp_entity_id: &'a str,
    /// The SP's SingleLogoutService Location.
    pub destination: &'a str,
    /// The NameID the SP was given, and its format.
    pub name_id: &'a str,
    pub name_id_format: crate::NameIdFormat,
    pub session_index: &'a str,
    pub now: OffsetDateTime,
}

fn logout_request_xml(
    p: &LogoutRequestParams<'_>,
    key: Option<&IdpKey>,
) -> Result<(String, String)> {
    let id = new_id()?;
    let signature = key.map(|k| signature_template(&id, k)).unwrap_or_default();
    let xml = format!(
        concat!(
            r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#,
            r#" ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{dest}" NotOnOrAfter="{nooa}">"#,
            "<saml:Issuer>{issuer}</saml:Issuer>{signature}",
            r#"<saml:NameID Format="{format}"{qualifiers}>{name_id}</saml:NameID>"#,
            "<samlp:SessionIndex>{session_index}</samlp:SessionIndex></samlp:LogoutRequest>"
        ),
        id = id,
        now = instant(p.now),
        nooa = instant(p.now + crate::ASSERTION_VALIDITY),
        dest = esc(p.destination),
        issuer = esc(p.idp_entity_id),
        signature = signature,
        format = p.name_id_format.uri(),
        qualifiers =
            crate::response::name_id_qualifiers(p.name_id_format, p.idp_entity_id, p.sp_entity_id),
        name_id = esc(p.name_id),
        session_index = esc(p.session_index),
    );
    let xml = match key {
        Some(k) => sign_enveloped(&xml, k)?,
        None => xml,
    };
    Ok((id, xml))
}

/// A LogoutRequest with an enveloped signature for the HTTP-POST binding: (ID, XML).
pub fn build_logout_request(p: &LogoutRequestParams<'_>, key: &IdpKey) -> Result<(String, String)> {
    logout_request_xml(p, Some(key))
}

/// A LogoutRequest over HTTP-Redirect, signed over the query: (ID, URL).
pub fn logout_request_redirect_url(
    p: &LogoutRequestParams<'_>,
    relay_state: Option<&str>,
    key: &IdpKey,
) -> Result<(String, String)> {
    let (id, xml) = logout_request_xml(p, None)?;
    Ok((
        id,
        redirect_url(p.destination, "SAMLRequest", &xml, relay_state, key)?,
    ))
}

/// How a logout ended, as the LogoutResponse's status says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutStatus {
    Success,
    /// Logged out here, but not every other service provider could be told.
    PartialLogout,
    /// The request was refused (e.g. it names another user's session).
    RequestDenied,
}

/// What a LogoutResponse says.
#[derive(Debug, Clone, Copy)]
pub struct LogoutResponseParams<'a> {
    pub idp_entity_id: &'a str,
    /// The SP's SingleLogoutService (ResponseLocation when it has one).
    pub destination: &'a str,
    pub in_response_to: &'a str,
    pub now: OffsetDateTime,
    pub status: LogoutStatus,
}

fn logout_response_xml(p: &LogoutResponseParams<'_>, key: Option<&IdpKey>) -> Result<String> {
    const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
    let status = match p.status {
        LogoutStatus::Success => format!(r#"<samlp:StatusCode Value="{SUCCESS}"/>"#),
        LogoutStatus::PartialLogout => format!(
            r#"<samlp:StatusCode Value="{SUCCESS}"><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:PartialLogout"/></samlp:StatusCode>"#
        ),
        LogoutStatus::RequestDenied => concat!(
            r#"<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Requester">"#,
            r#"<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:RequestDenied"/></samlp:StatusCode>"#
        )
        .to_string(),
    };
    let id = new_id()?;
    let signature = key.map(|k| signature_template(&id, k)).unwrap_or_default();
    let xml = format!(
        concat!(
            r#"<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#,
            r#" ID="{id}" Version="2.0" IssueInstant="{now}" Destination="{dest}" InResponseTo="{irt}">"#,
            "<saml:Issuer>{issuer}</saml:Issuer>{signature}<samlp:Status>{status}</samlp:Status></samlp:LogoutResponse>"
        ),
        id = id,
        now = instant(p.now),
        dest = esc(p.destination),
        irt = esc(p.in_response_to),
        issuer = esc(p.idp_entity_id),
        signature = signature,
        status = status,
    );
    match key {
        Some(k) => sign_enveloped(&xml, k),
        None => Ok(xml),
    }
}

/// A LogoutResponse with an enveloped signature, for the HTTP-POST binding.
pub fn build_logout_response(p: &LogoutResponseParams<'_>, key: &IdpKey) -> Result<String> {
    logout_response_xml(p, Some(key))
}

/// The URL that delivers a LogoutResponse over HTTP-Redirect: DEFLATE, base64, and an
/// RSA-SHA256 signature over `SAMLResponse`, `RelayState` and `SigAlg` in that order.
pub fn logout_response_redirect_url(
    p: &LogoutResponseParams<'_>,
    relay_state: Option<&str>,
    key: &IdpKey,
) -> Result<String> {
    let xml = logout_response_xml(p, None)?;
    redirect_url(p.destination, "SAMLResponse", &xml, relay_state, key)
}

/// `destination` with the HTTP-Redirect encoding of `xml` in `param`: DEFLATE, base64, and an
/// RSA-SHA256 signature over `param`, `RelayState` and `SigAlg` in that order.
fn redirect_url(
    destination: &str,
    param: &str,
    xml: &str,
    relay_state: Option<&str>,
    key: &IdpKey,
) -> Result<String> {
    let mut deflater =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflater
        .write_all(xml.as_bytes())
        .map_err(|e| SamlError::Signing(e.to_string()))?;
    let deflated = deflater
        .finish()
        .map_err(|e| SamlError::Signing(e.to_string()))?;
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut query = format!("{param}={}", enc(&b64.encode(deflated)));
    if let Some(r) = relay_state {
        query.push_str(&format!("&RelayState={}", enc(r)));
    }
    query.push_str(&format!("&SigAlg={}", enc(ALG_RSA_SHA256)));
    let mut signer = Signer::new(MessageDigest::sha256(), key.private_key())?;
    signer.update(query.as_bytes())?;
    let signature = signer.sign_to_vec()?;
    query.push_str(&format!("&Signature={}", enc(&b64.encode(signature))));
    let separator = if destination.contains('?') { '&' } else { '?' };
    Ok(format!("{destination}{separator}{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::tests::xmlsec1_verifies;

    #[test]
    fn logout_response_is_signed_for_post_and_for_redirect() {
        let key = IdpKey::generate("idp", 10).unwrap();
        let p = LogoutResponseParams {
            idp_entity_id: "https://idp.example.dk/saml/metadata",
            destination: "https://sp.example.dk/slo?x=1",
            in_response_to: "_req1",
            now: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            status: LogoutStatus::PartialLogout,
        };
        let xml = build_logout_response(&p, &key).unwrap();
        let pem = key.certificate_pem().unwrap();
        assert!(xmlsec1_verifies(
            &xml,
            &pem,
            "urn:oasis:names:tc:SAML:2.0:protocol:LogoutResponse"
        ));
        assert!(xml.contains("status:PartialLogout"));
        let url = logout_response_redirect_url(&p, Some("rs"), &key).unwrap();
        assert!(url.starts_with("https://sp.example.dk/slo?x=1&SAMLResponse="));
        let signed = &url[url.find("SAMLResponse").unwrap()..url.find("&Signature=").unwrap()];
        let sig = &url[url.find("&Signature=").unwrap() + 11..];
        let sig = b64_decode(
            &percent_encoding::percent_decode_str(sig)
                .decode_utf8()
                .unwrap(),
        );
        let public = key.certificate().public_key().unwrap();
        let mut v = openssl::sign::Verifier::new(MessageDigest::sha256(), &public).unwrap();
        v.update(signed.as_bytes()).unwrap();
        assert!(v.verify(&sig).unwrap());
    }

    fn b64_decode(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    #[test]
    fn logout_request_fields_are_read() {
        let xml = concat!(
            r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#,
            r#" ID="_l1" Version="2.0" IssueInstant="2023-11-14T22:13:00Z" Destination="https://idp/slo">"#,
            "<saml:Issuer>https://sp</saml:Issuer><saml:NameID>abc</saml:NameID>",
            "<samlp:SessionIndex>s1</samlp:SessionIndex></samlp:LogoutRequest>"
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(xml);
        let r = decode_logout_post(&b64, None).unwrap();
        assert_eq!(r.issuer(), Some("https://sp"));
        let r = r
            .verify(
                &[],
                SignaturePolicy {
                    require_signed: false,
                    allow_sha1: false,
                },
            )
            .unwrap();
        assert_eq!(r.name_id.as_deref(), Some("abc"));
        assert_eq!(r.session_indexes, vec!["s1".to_string()]);
        assert!(decode_logout_post(
            &base64::engine::general_purpose::STANDARD.encode("<x/>"),
            None
        )
        .is_err());
    }
}

//! Reading an AuthnRequest from the HTTP-Redirect and HTTP-POST bindings, checking its signature,
//! and the checks the server applies before a login starts (version, time, Destination, ACS).

use crate::error::{Result, SamlError};
use crate::key::Certificate;
use crate::sp_metadata::{IndexedEndpoint, SpMetadata};
use crate::xml::{parse, parse_instant, Element, NS_DS, NS_SAML, NS_SAMLP};
use crate::BINDING_HTTP_POST;
use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::sign::Verifier;
use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, CryptoProvider, ReduceMode, XmlSec,
};
use std::io::Read;
use time::{Duration, OffsetDateTime};

/// Largest AuthnRequest XML we accept, after inflating or base64 decoding.
pub const MAX_REQUEST_XML_BYTES: usize = 64 * 1024;
/// Largest RelayState we accept (the spec says 80 bytes; real SPs send more).
pub const MAX_RELAY_STATE_BYTES: usize = 1024;

const ALG_RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
const ALG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const ALG_RSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384";
const ALG_RSA_SHA512: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512";
const DIGEST_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
const DIGEST_SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const DIGEST_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#sha384";
const DIGEST_SHA512: &str = "http://www.w3.org/2001/04/xmlenc#sha512";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// How strict to be about a service provider's request signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignaturePolicy {
    /// Refuse unsigned requests (the SP's AuthnRequestsSigned, or our own setting).
    pub require_signed: bool,
    /// Accept RSA-SHA1 and SHA-1 digests; only for SPs an admin marked legacy.
    pub allow_sha1: bool,
}

/// `RequestedAuthnContext`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedAuthnContext {
    /// `exact` when absent.
    pub comparison: String,
    pub class_refs: Vec<String>,
}

/// `NameIDPolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameIdPolicy {
    pub format: Option<String>,
    pub sp_name_qualifier: Option<String>,
    pub allow_create: Option<bool>,
}

/// The fields of an AuthnRequest Sesam acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthnRequest {
    pub id: String,
    pub version: String,
    pub issue_instant: OffsetDateTime,
    pub destination: Option<String>,
    pub issuer: Option<String>,
    pub assertion_consumer_service_url: Option<String>,
    pub assertion_consumer_service_index: Option<u16>,
    pub protocol_binding: Option<String>,
    pub force_authn: bool,
    pub is_passive: bool,
    pub requested_authn_context: Option<RequestedAuthnContext>,
    pub name_id_policy: Option<NameIdPolicy>,
    /// True when a signature was present and verified.
    pub signed: bool,
}

/// What a message brought to prove who sent it: nothing, a Redirect-binding query
/// signature, or (POST binding) the XML whose enveloped signature is checked.
#[derive(Debug, Clone)]
pub(crate) enum Evidence {
    None,
    Redirect {
        sig_alg: String,
        signature: Vec<u8>,
        signed_octets: String,
    },
    Post {
        xml: String,
    },
}

/// A decoded request whose signature has not been checked yet. Only the issuer can be read
/// (to find the SP); [`UnverifiedAuthnRequest::verify`] gives the request itself.
#[derive(Debug, Clone)]
pub struct UnverifiedAuthnRequest {
    request: AuthnRequest,
    relay_state: Option<String>,
    evidence: Evidence,
}

impl UnverifiedAuthnRequest {
    /// The Issuer, to look up the service provider. Not yet authenticated.
    pub fn issuer(&self) -> Option<&str> {
        self.request.issuer.as_deref()
    }

    /// The RelayState, decoded; returned to the SP unchanged.
    pub fn relay_state(&self) -> Option<&str> {
        self.relay_state.as_deref()
    }

    /// Whether the message carries a signature at all.
    pub fn is_signed(&self) -> bool {
        !matches!(self.evidence, Evidence::None)
    }

    /// Checks the signature with the SP's signing certificates. A present but bad signature fails
    /// even when signatures are optional; a missing one fails when `policy.require_signed`.
    pub fn verify(self, sp_certs: &[Certificate], policy: SignaturePolicy) -> Result<AuthnRequest> {
        let mut request = match self.evidence {
            Evidence::None if policy.require_signed => return Err(SamlError::Unsigned),
            Evidence::None => return Ok(self.request),
            Evidence::Redirect {
                sig_alg,
                signature,
                signed_octets,
            } => {
                verify_redirect(&sig_alg, &signature, &signed_octets, sp_certs, policy)?;
                self.request
            }
            Evidence::Post { xml } => verify_post(&xml, sp_certs, policy)?,
        };
        request.signed = true;
        Ok(request)
    }
}

fn digest_for(alg: &str, policy: SignaturePolicy) -> Result<MessageDigest> {
    match alg {
        ALG_RSA_SHA256 => Ok(MessageDigest::sha256()),
        ALG_RSA_SHA384 => Ok(MessageDigest::sha384()),
        ALG_RSA_SHA512 => Ok(MessageDigest::sha512()),
        ALG_RSA_SHA1 if policy.allow_sha1 => Ok(MessageDigest::sha1()),
        ALG_RSA_SHA1 => Err(SamlError::Sha1Refused(alg.to_string())),
        other => Err(SamlError::AlgorithmNotAccepted(other.to_string())),
    }
}

pub(crate) fn verify_redirect(
    sig_alg: &str,
    signature: &[u8],
    signed_octets: &str,
    certs: &[Certificate],
    policy: SignaturePolicy,
) -> Result<()> {
    let digest = digest_for(sig_alg, policy)?;
    for cert in certs {
        let key = cert.public_key()?;
        let mut verifier = Verifier::new(digest, &key)?;
        verifier.update(signed_octets.as_bytes())?;
        // A malformed signature is an openssl error for this key; try the next one.
        if verifier.verify(signature).unwrap_or(false) {
            return Ok(());
        }
    }
    Err(SamlError::BadSignature)
}

/// Signature-wrapping defence before xmlsec runs: one `message` element (the root, e.g.
/// `AuthnRequest`), one Signature (its direct child), one Reference to the root's ID, unique
/// IDs, only harmless transforms.
pub(crate) fn check_post_signature_structure(
    root: &Element,
    message: &'static str,
    policy: SignaturePolicy,
) -> Result<()> {
    let structure = SamlError::SignatureStructure;
    if !root.is(NS_SAMLP, message) || root.count_descendants(NS_SAMLP, message) != 1 {
        return Err(structure("exactly one protocol message, as the root"));
    }
    if root.count_descendants(NS_DS, "Signature") != 1 {
        return Err(structure("exactly one Signature is allowed"));
    }
    let signature = root.child(NS_DS, "Signature").ok_or(structure(
        "the Signature must be a child of the signed message",
    ))?;
    let mut ids = Vec::new();
    root.collect_ids(&mut ids);
    let root_id = root.attr("ID").ok_or(SamlError::Missing(match message {
        "AuthnRequest" => "AuthnRequest ID",
        _ => "message ID",
    }))?;
    if ids.iter().filter(|id| **id == root_id).count() != 1 {
        return Err(structure("duplicate ID"));
    }
    let signed_info = signature
        .child(NS_DS, "SignedInfo")
        .ok_or(SamlError::Missing("SignedInfo"))?;
    let method = signed_info
        .child(NS_DS, "SignatureMethod")
        .and_then(|m| m.attr("Algorithm"))
        .ok_or(SamlError::Missing("SignatureMethod"))?;
    digest_for(method, policy)?;
    if signed_info
        .child(NS_DS, "CanonicalizationMethod")
        .and_then(|m| m.attr("Algorithm"))
        != Some(EXC_C14N)
    {
        return Err(structure("CanonicalizationMethod must be exclusive c14n"));
    }
    let mut references = signed_info.children_named(NS_DS, "Reference");
    let reference = references.next().ok_or(SamlError::Missing("Reference"))?;
    if references.next().is_some() {
        return Err(structure("exactly one Reference is allowed"));
    }
    if reference.attr("URI") != Some(&format!("#{root_id}")) {
        return Err(structure("the Reference must point at the message's ID"));
    }
    let digest = reference
        .child(NS_DS, "DigestMethod")
        .and_then(|m| m.attr("Algorithm"))
        .ok_or(SamlError::Missing("DigestMethod"))?;
    let digest_ok = matches!(digest, DIGEST_SHA256 | DIGEST_SHA384 | DIGEST_SHA512)
        || (digest == DIGEST_SHA1 && policy.allow_sha1);
    if digest == DIGEST_SHA1 && !policy.allow_sha1 {
        return Err(SamlError::Sha1Refused(digest.to_string()));
    }
    if !digest_ok {
        return Err(SamlError::AlgorithmNotAccepted(digest.to_string()));
    }
    if let Some(transforms) = reference.child(NS_DS, "Transforms") {
        for t in &transforms.children {
            if !matches!(t.attr("Algorithm"), Some(ENVELOPED) | Some(EXC_C14N)) {
                return Err(structure(
                    "only enveloped-signature and exclusive c14n transforms",
                ));
            }
        }
    }
    Ok(())
}

fn verify_post(xml: &str, certs: &[Certificate], policy: SignaturePolicy) -> Result<AuthnRequest> {
    read_authn_request(&verify_post_message(xml, "AuthnRequest", certs, policy)?)
}

/// Verifies the enveloped signature of a POST-binding `message` and returns the element the
/// signature covers, parsed from exactly the signed bytes.
pub(crate) fn verify_post_message(
    xml: &str,
    message: &'static str,
    certs: &[Certificate],
    policy: SignaturePolicy,
) -> Result<Element> {
    if certs.is_empty() {
        return Err(SamlError::BadSignature);
    }
    check_post_signature_structure(
        &parse(xml.as_bytes(), MAX_REQUEST_XML_BYTES)?,
        message,
        policy,
    )?;
    let ders: Vec<CertificateDer> = certs.iter().map(|c| c.der().to_vec().into()).collect();
    let strong = [
        AllowedSignatureAlgorithm::RsaSha256,
        AllowedSignatureAlgorithm::RsaSha384,
        AllowedSignatureAlgorithm::RsaSha512,
    ];
    // samael cannot express SHA-1; for legacy SPs our structure check already limited the set.
    let allowed = (!policy.allow_sha1).then_some(&strong[..]);
    let verified = XmlSec::reduce_xml_to_signed_with_allowed_algorithms(
        xml,
        &ders,
        ReduceMode::PreDigest,
        allowed,
    )
    .map_err(|_| SamlError::BadSignature)?;
    // Read the request from exactly the bytes the signature covers, not from our own parse of
    // the envelope: no parser differential between what was checked and what is used.
    let root = parse(verified.as_bytes(), MAX_REQUEST_XML_BYTES)?;
    if !root.is(NS_SAMLP, message) {
        return Err(SamlError::SignatureStructure(
            "the signed element is not the protocol message",
        ));
    }
    Ok(root)
}

fn bool_attr(e: &Element, name: &'static str) -> Result<bool> {
    match e.attr(name).map(str::trim) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(v) => Err(SamlError::Invalid {
            field: name,
            value: v.to_string(),
        }),
    }
}

/// What every SAML request carries: its root element's name, ID, Version and IssueInstant.
pub(crate) struct RequestHeader<'a> {
    pub id: &'a str,
    pub version: &'a str,
    pub issue_instant: OffsetDateTime,
}

/// Reads the header of a `samlp:{name}` request (`what` names its ID in errors).
pub(crate) fn read_request_header<'a>(
    root: &'a Element,
    name: &'static str,
    expected: &'static str,
    what: &'static str,
) -> Result<RequestHeader<'a>> {
    if !root.is(NS_SAMLP, name) {
        return Err(SamlError::WrongRoot {
            expected,
            found: format!("{{{}}}{}", root.ns, root.name),
        });
    }
    let id = root
        .attr("ID")
        .filter(|v| !v.is_empty())
        .ok_or(SamlError::Missing(what))?;
    let version = root.attr("Version").ok_or(SamlError::Missing("Version"))?;
    let issue_instant = parse_instant(
        "IssueInstant",
        root.attr("IssueInstant")
            .ok_or(SamlError::Missing("IssueInstant"))?,
    )?;
    Ok(RequestHeader {
        id,
        version,
        issue_instant,
    })
}

/// Version 2.0, IssueInstant within `skew` of `now`, and Destination `endpoint` (it may be
/// left out only by an unsigned request).
pub(crate) fn check_request_header(
    version: &str,
    issue_instant: OffsetDateTime,
    destination: Option<&String>,
    signed: bool,
    endpoint: &str,
    now: OffsetDateTime,
    skew: Duration,
) -> Result<()> {
    if version != "2.0" {
        return Err(SamlError::Version(version.to_string()));
    }
    if (issue_instant - now).abs() > skew {
        return Err(SamlError::IssueInstant(crate::xml::instant(issue_instant)));
    }
    match destination {
        Some(d) if d == endpoint => Ok(()),
        None if !signed => Ok(()),
        other => Err(SamlError::Destination {
            expected: endpoint.to_string(),
            found: other.cloned(),
        }),
    }
}

fn read_authn_request(root: &Element) -> Result<AuthnRequest> {
    let RequestHeader {
        id,
        version,
        issue_instant,
    } = read_request_header(
        root,
        "AuthnRequest",
        "samlp:AuthnRequest",
        "AuthnRequest ID",
    )?;
    let acs_index = root
        .attr("AssertionConsumerServiceIndex")
        .map(|v| {
            v.trim().parse::<u16>().map_err(|_| SamlError::Invalid {
                field: "AssertionConsumerServiceIndex",
                value: v.to_string(),
            })
        })
        .transpose()?;
    let requested_authn_context =
        root.child(NS_SAMLP, "RequestedAuthnContext")
            .map(|r| RequestedAuthnContext {
                comparison: r.attr("Comparison").unwrap_or("exact").to_string(),
                class_refs: r
                    .children_named(NS_SAML, "AuthnContextClassRef")
                    .map(|c| c.trimmed_text().to_string())
                    .collect(),
            });
    let name_id_policy = root
        .child(NS_SAMLP, "NameIDPolicy")
        .map(|p| -> Result<NameIdPolicy> {
            Ok(NameIdPolicy {
                format: p.attr("Format").map(str::to_string),
                sp_name_qualifier: p.attr("SPNameQualifier").map(str::to_string),
                allow_create: p
                    .attr("AllowCreate")
                    .map(|_| bool_attr(p, "AllowCreate"))
                    .transpose()?,
            })
        })
        .transpose()?;
    Ok(AuthnRequest {
        id: id.to_string(),
        version: version.to_string(),
        issue_instant,
        destination: root.attr("Destination").map(str::to_string),
        issuer: root
            .child(NS_SAML, "Issuer")
            .map(|i| i.trimmed_text().to_string()),
        assertion_consumer_service_url: root
            .attr("AssertionConsumerServiceURL")
            .map(str::to_string),
        assertion_consumer_service_index: acs_index,
        protocol_binding: root.attr("ProtocolBinding").map(str::to_string),
        force_authn: bool_attr(root, "ForceAuthn")?,
        is_passive: bool_attr(root, "IsPassive")?,
        requested_authn_context,
        name_id_policy,
        signed: false,
    })
}

pub(crate) fn decode_base64(field: &'static str, value: &str) -> Result<Vec<u8>> {
    let compact: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.len() > MAX_REQUEST_XML_BYTES * 2 {
        return Err(SamlError::TooLarge {
            limit: MAX_REQUEST_XML_BYTES * 2,
        });
    }
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| SamlError::Base64(field))
}

/// Raw DEFLATE (RFC 1951) with an output cap: a deflate bomb stops at `limit` bytes.
pub(crate) fn inflate(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let decoder = flate2::read::DeflateDecoder::new(data);
    decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| SamlError::Inflate(e.to_string()))?;
    if out.len() > limit {
        return Err(SamlError::TooLarge { limit });
    }
    Ok(out)
}

/// Percent-decoding of one query value. `+` stays `+` in base64 values (space is not base64),
/// and means space elsewhere.
pub(crate) fn query_decode(value: &str, plus_is_space: bool) -> Result<String> {
    let value = if plus_is_space {
        value.replace('+', " ")
    } else {
        value.to_string()
    };
    percent_encoding::percent_decode_str(&value)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| SamlError::Invalid {
            field: "query string",
            value: "not UTF-8 after percent-decoding".into(),
        })
}

pub(crate) fn checked_relay_state(relay_state: Option<String>) -> Result<Option<String>> {
    match relay_state {
        Some(r) if r.len() > MAX_RELAY_STATE_BYTES => Err(SamlError::TooLarge {
            limit: MAX_RELAY_STATE_BYTES,
        }),
        other => Ok(other),
    }
}

/// Decodes an HTTP-Redirect AuthnRequest from the raw query string exactly as received (the
/// part after `?`, still percent-encoded). The signed octets are rebuilt from the raw values in
/// the order the binding defines, so re-encoding can never make a good signature fail or a bad one pass.
pub fn decode_redirect(raw_query: &str) -> Result<UnverifiedAuthnRequest> {
    let (xml, relay_state, evidence) = decode_redirect_message(raw_query, "SAMLRequest")?;
    let root = parse(&xml, MAX_REQUEST_XML_BYTES)?;
    Ok(UnverifiedAuthnRequest {
        request: read_authn_request(&root)?,
        relay_state,
        evidence,
    })
}

/// The XML, RelayState and signature evidence of a Redirect-binding message carried in
/// `param` (`SAMLRequest` or `SAMLResponse`), from the raw query string exactly as received:
/// the one Redirect decoder, with one set of caps, for AuthnRequests and logout messages.
pub(crate) fn decode_redirect_message(
    raw_query: &str,
    param: &'static str,
) -> Result<(Vec<u8>, Option<String>, Evidence)> {
    if raw_query.len() > MAX_REQUEST_XML_BYTES * 2 {
        return Err(SamlError::TooLarge {
            limit: MAX_REQUEST_XML_BYTES * 2,
        });
    }
    let (mut message, mut relay_state, mut sig_alg, mut signature) = (None, None, None, None);
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            n if n == param => &mut message,
            "RelayState" => &mut relay_state,
            "SigAlg" => &mut sig_alg,
            "Signature" => &mut signature,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(SamlError::Invalid {
                field: "query string",
                value: format!("{name} appears twice"),
            });
        }
    }
    let raw_message = message.ok_or(SamlError::Missing(param))?;
    let deflated = decode_base64(param, &query_decode(raw_message, false)?)?;
    let xml = inflate(&deflated, MAX_REQUEST_XML_BYTES)?;
    let evidence = match (sig_alg, signature) {
        (None, None) => Evidence::None,
        (Some(raw_alg), Some(raw_sig)) => {
            let mut signed_octets = format!("{param}={raw_message}");
            if let Some(raw_relay) = relay_state {
                signed_octets.push_str("&RelayState=");
                signed_octets.push_str(raw_relay);
            }
            signed_octets.push_str("&SigAlg=");
            signed_octets.push_str(raw_alg);
            Evidence::Redirect {
                sig_alg: query_decode(raw_alg, true)?,
                signature: decode_base64("Signature", &query_decode(raw_sig, false)?)?,
                signed_octets,
            }
        }
        (None, Some(_)) => return Err(SamlError::Missing("SigAlg")),
        (Some(_), None) => return Err(SamlError::Missing("Signature")),
    };
    let relay_state = relay_state.map(|r| query_decode(r, true)).transpose()?;
    Ok((xml, checked_relay_state(relay_state)?, evidence))
}

/// Decodes an HTTP-POST AuthnRequest: the `SAMLRequest` and `RelayState` form fields, already
/// form-decoded by the server.
pub fn decode_post(
    saml_request: &str,
    relay_state: Option<&str>,
) -> Result<UnverifiedAuthnRequest> {
    let xml = decode_base64("SAMLRequest", saml_request)?;
    let root = parse(&xml, MAX_REQUEST_XML_BYTES)?;
    let request = read_authn_request(&root)?;
    let evidence = if root.count_descendants(NS_DS, "Signature") == 0 {
        Evidence::None
    } else {
        // The structure is checked now, the cryptography once the SP's certificates are known.
        check_post_signature_structure(
            &root,
            "AuthnRequest",
            SignaturePolicy {
                require_signed: true,
                allow_sha1: true,
            },
        )?;
        Evidence::Post {
            xml: String::from_utf8(xml).map_err(|_| SamlError::NotXml("not UTF-8".into()))?,
        }
    };
    Ok(UnverifiedAuthnRequest {
        request,
        relay_state: checked_relay_state(relay_state.map(str::to_string))?,
        evidence,
    })
}

impl AuthnRequest {
    /// Version 2.0, IssueInstant within `skew` of `now`, Destination equal to our SSO endpoint
    /// (required when the request was signed, as the binding spec says).
    pub fn validate(&self, sso_url: &str, now: OffsetDateTime, skew: Duration) -> Result<()> {
        check_request_header(
            &self.version,
            self.issue_instant,
            self.destination.as_ref(),
            self.signed,
            sso_url,
            now,
            skew,
        )
    }

    /// Picks the AssertionConsumerService from the SP's metadata only: an exact URL match, an
    /// existing index, or the default HTTP-POST endpoint. Responses go out over HTTP-POST.
    pub fn resolve_acs<'a>(&self, sp: &'a SpMetadata) -> Result<&'a IndexedEndpoint> {
        let acs = &sp.assertion_consumer_services;
        let chosen = match (
            &self.assertion_consumer_service_url,
            self.assertion_consumer_service_index,
        ) {
            (Some(_), Some(_)) => {
                return Err(SamlError::Invalid {
                    field: "AuthnRequest",
                    value: "both AssertionConsumerServiceURL and Index".into(),
                })
            }
            (Some(url), None) => acs
                .iter()
                .filter(|e| &e.location == url)
                .find(|e| match &self.protocol_binding {
                    Some(b) => &e.binding == b,
                    None => e.binding == BINDING_HTTP_POST,
                })
                .ok_or_else(|| SamlError::UnknownAcs(url.clone()))?,
            (None, Some(index)) => acs
                .iter()
                .find(|e| e.index == index)
                .ok_or_else(|| SamlError::UnknownAcs(format!("index {index}")))?,
            (None, None) => {
                let post = || acs.iter().filter(|e| e.binding == BINDING_HTTP_POST);
                post()
                    .find(|e| e.is_default == Some(true))
                    .or_else(|| post().find(|e| e.is_default.is_none()))
                    .or_else(|| post().next())
                    .ok_or_else(|| SamlError::UnknownAcs("no HTTP-POST endpoint".into()))?
            }
        };
        if chosen.binding != BINDING_HTTP_POST {
            return Err(SamlError::UnknownAcs(format!(
                "{} uses unsupported binding {}",
                chosen.location, chosen.binding
            )));
        }
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::IdpKey;
    use crate::sp_metadata::{parse_sp_metadata, tests::shibboleth_like};
    use crate::xml::{esc, sign_enveloped, signature_template};
    use openssl::sign::Signer;
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    use std::io::Write;

    const SSO: &str = "https://idp.example.dk/saml/sso";
    const ACS: &str = "https://sp.kommune.dk/Shibboleth.sso/SAML2/POST";

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    fn request_xml(id: &str, extra_attrs: &str, signature: &str) -> String {
        format!(
            concat!(
                r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#,
                r#" ID="{id}" Version="2.0" IssueInstant="2023-11-14T22:13:00Z" Destination="{sso}" {extra}>"#,
                r#"<saml:Issuer>https://sp.kommune.dk/shibboleth</saml:Issuer>{sig}"#,
                r#"<samlp:NameIDPolicy Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent" AllowCreate="1"/>"#,
                r#"<samlp:RequestedAuthnContext Comparison="minimum"><saml:AuthnContextClassRef>https://data.gov.dk/concept/core/nsis/loa/Substantial</saml:AuthnContextClassRef></samlp:RequestedAuthnContext>"#,
                r#"</samlp:AuthnRequest>"#
            ),
            id = id,
            sso = SSO,
            extra = extra_attrs,
            sig = signature
        )
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut enc =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    fn enc(s: &str) -> String {
        utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
    }

    /// A Redirect query as an SP would send it, signed with `key` under `alg` (None: unsigned).
    fn redirect_query(
        xml: &str,
        relay: Option<&str>,
        key: &IdpKey,
        alg: Option<(&str, MessageDigest)>,
    ) -> String {
        let mut q = format!("SAMLRequest={}", enc(&b64(&deflate(xml.as_bytes()))));
        if let Some(r) = relay {
            q.push_str(&format!("&RelayState={}", enc(r)));
        }
        if let Some((uri, md)) = alg {
            q.push_str(&format!("&SigAlg={}", enc(uri)));
            let mut signer = Signer::new(md, key.private_key()).unwrap();
            signer.update(q.as_bytes()).unwrap();
            let sig = signer.sign_to_vec().unwrap();
            q.push_str(&format!("&Signature={}", enc(&b64(&sig))));
        }
        q
    }

    fn sp_and_key() -> (SpMetadata, IdpKey) {
        let key = IdpKey::generate("sp sign", 10).unwrap();
        let enc_key = IdpKey::generate("sp enc", 10).unwrap();
        let sp =
            parse_sp_metadata(shibboleth_like(key.certificate(), enc_key.certificate()).as_bytes())
                .unwrap();
        (sp, key)
    }

    const STRICT: SignaturePolicy = SignaturePolicy {
        require_signed: true,
        allow_sha1: false,
    };

    #[test]
    fn redirect_signed_request_verifies_and_extracts_fields() {
        let (sp, key) = sp_and_key();
        let xml = request_xml(
            "_r1",
            &format!(r#"AssertionConsumerServiceURL="{ACS}" ForceAuthn="true""#),
            "",
        );
        let q = redirect_query(
            &xml,
            Some("back to /a b&c"),
            &key,
            Some((ALG_RSA_SHA256, MessageDigest::sha256())),
        );
        let unverified = decode_redirect(&q).unwrap();
        assert_eq!(
            unverified.issuer(),
            Some("https://sp.kommune.dk/shibboleth")
        );
        assert_eq!(unverified.relay_state(), Some("back to /a b&c"));
        let req = unverified.verify(&sp.signing_certificates, STRICT).unwrap();
        assert!(req.signed && req.force_authn && !req.is_passive);
        assert_eq!(req.id, "_r1");
        assert_eq!(req.issue_instant, now() - Duration::seconds(20));
        let ctx = req.requested_authn_context.as_ref().unwrap();
        assert_eq!(ctx.comparison, "minimum");
        assert_eq!(
            ctx.class_refs,
            ["https://data.gov.dk/concept/core/nsis/loa/Substantial"]
        );
        assert_eq!(
            req.name_id_policy.as_ref().unwrap().allow_create,
            Some(true)
        );
        req.validate(SSO, now(), Duration::minutes(3)).unwrap();
        assert_eq!(req.resolve_acs(&sp).unwrap().location, ACS);
    }

    #[test]
    fn redirect_signature_is_checked_over_the_raw_query() {
        let (sp, key) = sp_and_key();
        let xml = request_xml("_r2", "", "");
        let q = redirect_query(
            &xml,
            Some("state"),
            &key,
            Some((ALG_RSA_SHA512, MessageDigest::sha512())),
        );
        // Parameter order in the URL does not matter; the signed string has the spec's order.
        let mut parts: Vec<&str> = q.split('&').collect();
        parts.reverse();
        let reordered = parts.join("&");
        assert!(decode_redirect(&reordered)
            .unwrap()
            .verify(&sp.signing_certificates, STRICT)
            .is_ok());
        // A changed RelayState breaks it.
        let tampered = q.replace("RelayState=state", "RelayState=stat3");
        assert!(matches!(
            decode_redirect(&tampered)
                .unwrap()
                .verify(&sp.signing_certificates, STRICT),
            Err(SamlError::BadSignature)
        ));
        // A different key breaks it.
        let other = IdpKey::generate("other", 1).unwrap();
        assert!(matches!(
            decode_redirect(&q)
                .unwrap()
                .verify(&[other.certificate().clone()], STRICT),
            Err(SamlError::BadSignature)
        ));
    }

    #[test]
    fn redirect_sha1_only_for_legacy_and_unsigned_only_when_allowed() {
        let (sp, key) = sp_and_key();
        let xml = request_xml("_r3", "", "");
        let q = redirect_query(
            &xml,
            None,
            &key,
            Some((ALG_RSA_SHA1, MessageDigest::sha1())),
        );
        assert!(matches!(
            decode_redirect(&q)
                .unwrap()
                .verify(&sp.signing_certificates, STRICT),
            Err(SamlError::Sha1Refused(_))
        ));
        let legacy = SignaturePolicy {
            require_signed: true,
            allow_sha1: true,
        };
        assert!(
            decode_redirect(&q)
                .unwrap()
                .verify(&sp.signing_certificates, legacy)
                .unwrap()
                .signed
        );

        let unsigned = redirect_query(&xml, None, &key, None);
        assert!(matches!(
            decode_redirect(&unsigned)
                .unwrap()
                .verify(&sp.signing_certificates, STRICT),
            Err(SamlError::Unsigned)
        ));
        let lax = SignaturePolicy::default();
        assert!(
            !decode_redirect(&unsigned)
                .unwrap()
                .verify(&[], lax)
                .unwrap()
                .signed
        );
        let unknown_alg = format!("{unsigned}&SigAlg={}&Signature=AAAA", enc("urn:nope"));
        assert!(matches!(
            decode_redirect(&unknown_alg)
                .unwrap()
                .verify(&sp.signing_certificates, lax),
            Err(SamlError::AlgorithmNotAccepted(_))
        ));
        assert!(matches!(
            decode_redirect(&format!("{unsigned}&Signature=AAAA")),
            Err(SamlError::Missing("SigAlg"))
        ));
    }

    #[test]
    fn redirect_bad_inputs_fail_cleanly() {
        assert!(matches!(
            decode_redirect("RelayState=x"),
            Err(SamlError::Missing("SAMLRequest"))
        ));
        assert!(matches!(
            decode_redirect("SAMLRequest=%%%***"),
            Err(SamlError::Base64("SAMLRequest"))
        ));
        assert!(matches!(
            decode_redirect(&format!("SAMLRequest={}", enc(&b64(b"not deflate at all")))),
            Err(SamlError::Inflate(_))
        ));
        let bomb = deflate(&vec![b' '; 20 * 1024 * 1024]);
        assert!(bomb.len() < MAX_REQUEST_XML_BYTES * 2);
        assert!(matches!(
            decode_redirect(&format!("SAMLRequest={}", enc(&b64(&bomb)))),
            Err(SamlError::TooLarge { .. })
        ));
        let doctype = r#"<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="&b;"/>"#;
        assert!(matches!(
            decode_redirect(&format!(
                "SAMLRequest={}",
                enc(&b64(&deflate(doctype.as_bytes())))
            )),
            Err(SamlError::Doctype)
        ));
        let wrong_root =
            r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="x"/>"#;
        assert!(matches!(
            decode_redirect(&format!(
                "SAMLRequest={}",
                enc(&b64(&deflate(wrong_root.as_bytes())))
            )),
            Err(SamlError::WrongRoot { .. })
        ));
        let q = format!(
            "SAMLRequest={}",
            enc(&b64(&deflate(request_xml("_d", "", "").as_bytes())))
        );
        assert!(matches!(
            decode_redirect(&format!("{q}&{q}")),
            Err(SamlError::Invalid { .. })
        ));
        let long_relay = format!("{q}&RelayState={}", "r".repeat(MAX_RELAY_STATE_BYTES + 1));
        assert!(matches!(
            decode_redirect(&long_relay),
            Err(SamlError::TooLarge { .. })
        ));
    }

    fn signed_post_xml(key: &IdpKey, id: &str, extra: &str) -> String {
        sign_enveloped(&request_xml(id, extra, &signature_template(id, key)), key).unwrap()
    }

    #[test]
    fn post_signed_request_verifies_and_tampering_fails() {
        let (sp, key) = sp_and_key();
        let xml = signed_post_xml(
            &key,
            "_p1",
            r#"AssertionConsumerServiceIndex="4" IsPassive="true""#,
        );
        let req = decode_post(&b64(xml.as_bytes()), Some("rs"))
            .unwrap()
            .verify(&sp.signing_certificates, STRICT)
            .unwrap();
        assert!(req.signed && req.is_passive);
        assert_eq!(req.assertion_consumer_service_index, Some(4));
        assert_eq!(
            req.resolve_acs(&sp).unwrap().location,
            "https://sp.kommune.dk/Shibboleth.sso/SAML2/POST2"
        );

        let tampered = xml.replace("IsPassive=\"true\"", "IsPassive=\"false\"");
        assert!(matches!(
            decode_post(&b64(tampered.as_bytes()), None)
                .unwrap()
                .verify(&sp.signing_certificates, STRICT),
            Err(SamlError::BadSignature)
        ));
        let other = IdpKey::generate("other", 1).unwrap();
        assert!(matches!(
            decode_post(&b64(xml.as_bytes()), None)
                .unwrap()
                .verify(&[other.certificate().clone()], STRICT),
            Err(SamlError::BadSignature)
        ));
        let unsigned = request_xml("_p2", "", "");
        assert!(matches!(
            decode_post(&b64(unsigned.as_bytes()), None)
                .unwrap()
                .verify(&sp.signing_certificates, STRICT),
            Err(SamlError::Unsigned)
        ));
    }

    #[test]
    fn post_signature_wrapping_is_rejected() {
        let (sp, key) = sp_and_key();
        let genuine = signed_post_xml(&key, "_good", "");
        // Attacker's request at the root, the genuine signed one hidden inside Extensions.
        let wrapped = format!(
            concat!(
                r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#,
                r#" ID="_evil" Version="2.0" IssueInstant="2023-11-14T22:13:00Z" AssertionConsumerServiceURL="https://evil.example/acs">"#,
                r#"<saml:Issuer>https://sp.kommune.dk/shibboleth</saml:Issuer><samlp:Extensions>{}</samlp:Extensions></samlp:AuthnRequest>"#
            ),
            genuine
        );
        assert!(matches!(
            decode_post(&b64(wrapped.as_bytes()), None),
            Err(SamlError::SignatureStructure(_))
        ));
        // The genuine signature moved onto an attacker root that claims the genuine ID twice.
        let sig_start = genuine.find("<ds:Signature").unwrap();
        let sig_end = genuine.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
        let signature = &genuine[sig_start..sig_end];
        let moved = request_xml("_evil", "", signature);
        assert!(matches!(
            decode_post(&b64(moved.as_bytes()), None),
            Err(SamlError::SignatureStructure(_))
        ));
        // Two signatures.
        let twice = genuine.replacen(
            "</samlp:AuthnRequest>",
            &format!("<samlp:Extensions>{signature}</samlp:Extensions></samlp:AuthnRequest>"),
            1,
        );
        assert!(matches!(
            decode_post(&b64(twice.as_bytes()), None),
            Err(SamlError::SignatureStructure(_))
        ));
        // The untouched original still passes.
        assert!(decode_post(&b64(genuine.as_bytes()), None)
            .unwrap()
            .verify(&sp.signing_certificates, STRICT)
            .is_ok());
    }

    #[test]
    fn post_bad_inputs_fail_cleanly() {
        assert!(matches!(
            decode_post("***not base64***", None),
            Err(SamlError::Base64("SAMLRequest"))
        ));
        assert!(matches!(
            decode_post(&b64(b"\x00\x01binary"), None),
            Err(SamlError::NotXml(_))
        ));
        let xxe = r#"<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="&x;"/>"#;
        assert!(matches!(
            decode_post(&b64(xxe.as_bytes()), None),
            Err(SamlError::Doctype)
        ));
        let big = request_xml(
            "_big",
            &format!(r#"ProviderName="{}""#, "x".repeat(MAX_REQUEST_XML_BYTES)),
            "",
        );
        assert!(matches!(
            decode_post(&b64(big.as_bytes()), None),
            Err(SamlError::TooLarge { .. })
        ));
        let no_id = request_xml("", "", "");
        assert!(matches!(
            decode_post(&b64(no_id.as_bytes()), None),
            Err(SamlError::Missing("AuthnRequest ID"))
        ));
        let bad_bool = request_xml("_b", r#"ForceAuthn="maybe""#, "");
        assert!(matches!(
            decode_post(&b64(bad_bool.as_bytes()), None),
            Err(SamlError::Invalid { .. })
        ));
    }

    #[test]
    fn validation_checks_version_time_destination_and_acs() {
        let (sp, _) = sp_and_key();
        let parsed = |extra: &str| {
            decode_post(&b64(request_xml("_v", extra, "").as_bytes()), None)
                .unwrap()
                .verify(&[], SignaturePolicy::default())
                .unwrap()
        };
        let req = parsed("");
        req.validate(SSO, now(), Duration::minutes(3)).unwrap();
        assert!(matches!(
            req.validate(SSO, now() + Duration::minutes(10), Duration::minutes(3)),
            Err(SamlError::IssueInstant(_))
        ));
        assert!(matches!(
            req.validate("https://other/sso", now(), Duration::minutes(3)),
            Err(SamlError::Destination { .. })
        ));
        let mut v1 = req.clone();
        v1.version = "1.1".into();
        assert!(matches!(
            v1.validate(SSO, now(), Duration::minutes(3)),
            Err(SamlError::Version(_))
        ));
        let mut signed_no_dest = req.clone();
        signed_no_dest.destination = None;
        signed_no_dest.signed = true;
        assert!(matches!(
            signed_no_dest.validate(SSO, now(), Duration::minutes(3)),
            Err(SamlError::Destination { .. })
        ));

        // Default: isDefault="true" POST endpoint.
        assert_eq!(req.resolve_acs(&sp).unwrap().index, 4);
        let evil = parsed(&format!(
            r#"AssertionConsumerServiceURL="{}""#,
            esc("https://evil.example/acs")
        ));
        assert!(matches!(
            evil.resolve_acs(&sp),
            Err(SamlError::UnknownAcs(_))
        ));
        let prefix = parsed(&format!(r#"AssertionConsumerServiceURL="{ACS}/x""#));
        assert!(matches!(
            prefix.resolve_acs(&sp),
            Err(SamlError::UnknownAcs(_))
        ));
        assert!(matches!(
            parsed(r#"AssertionConsumerServiceIndex="9""#).resolve_acs(&sp),
            Err(SamlError::UnknownAcs(_))
        ));
        // Index 3 is HTTP-Artifact, which Sesam does not answer on.
        assert!(matches!(
            parsed(r#"AssertionConsumerServiceIndex="3""#).resolve_acs(&sp),
            Err(SamlError::UnknownAcs(_))
        ));
        let both = parsed(&format!(
            r#"AssertionConsumerServiceURL="{ACS}" AssertionConsumerServiceIndex="1""#
        ));
        assert!(matches!(
            both.resolve_acs(&sp),
            Err(SamlError::Invalid { .. })
        ));
    }
}

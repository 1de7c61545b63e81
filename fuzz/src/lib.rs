//! What the fuzz targets share: a fixed service provider (key, certificate, metadata) whose
//! signatures the seeds carry, and the encodings an SP wraps a SAML message in.
//!
//! The key in `keys/` is a throwaway made for fuzzing; nothing trusts it.

#![forbid(unsafe_code)]

use std::io::Write;
use std::sync::OnceLock;

use base64::Engine;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use sesam_saml::{Certificate, SignaturePolicy, SpMetadata};
use time::{Duration, OffsetDateTime};

pub const SP_KEY_PEM: &[u8] = include_bytes!("../keys/sp.key.pem");
pub const SP_CERT_PEM: &[u8] = include_bytes!("../keys/sp.cert.pem");
pub const SP_ENTITY_ID: &str = "https://sp.example/metadata";
pub const IDP_SSO_URL: &str = "https://idp.example/saml/sso";
pub const IDP_SLO_URL: &str = "https://idp.example/saml/slo";

/// The SP's metadata, as an admin would have imported it.
pub const SP_METADATA: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://sp.example/metadata">"#,
    r#"<md:SPSSODescriptor AuthnRequestsSigned="false" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">"#,
    r#"<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://sp.example/slo"/>"#,
    r#"<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example/acs" index="0" isDefault="true"/>"#,
    r#"<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example/acs2" index="1"/>"#,
    "</md:SPSSODescriptor></md:EntityDescriptor>"
);

/// The SP's signing certificate (the one the signed seeds were made with).
pub fn sp_certificates() -> &'static [Certificate] {
    static CERTS: OnceLock<Vec<Certificate>> = OnceLock::new();
    CERTS.get_or_init(|| vec![Certificate::from_pem(SP_CERT_PEM).expect("fuzz SP certificate")])
}

pub fn sp_metadata() -> &'static SpMetadata {
    static SP: OnceLock<SpMetadata> = OnceLock::new();
    SP.get_or_init(|| {
        sesam_saml::parse_sp_metadata(SP_METADATA.as_bytes()).expect("fuzz SP metadata")
    })
}

/// Both policies the server applies: optional signatures with SHA-1 allowed (legacy SP), and
/// required signatures without it.
pub const POLICIES: [SignaturePolicy; 2] = [
    SignaturePolicy {
        require_signed: false,
        allow_sha1: true,
    },
    SignaturePolicy {
        require_signed: true,
        allow_sha1: false,
    },
];

/// A fixed "now" near the seeds' IssueInstant, and the server's default skew.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("fixed instant")
}

pub const SKEW: Duration = Duration::minutes(3);

pub fn percent(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

pub fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("deflate into memory");
    encoder.finish().expect("deflate into memory")
}

/// The query string an SP sends over HTTP-Redirect for `xml` (unsigned).
pub fn redirect_query(param: &str, xml: &[u8], relay_state: Option<&str>) -> String {
    let mut query = format!("{param}={}", percent(&base64(&deflate(xml))));
    if let Some(relay) = relay_state {
        query.push_str("&RelayState=");
        query.push_str(&percent(relay));
    }
    query
}

/// How a target reads its input. The first byte chooses: an even byte means the rest is the
/// message exactly as it arrives on the wire (query string or form field), so the fuzzer
/// explores percent, base64 and deflate decoding; an odd byte means the rest is the XML
/// itself, which the target wraps as an SP would, so the fuzzer reaches the XML reader
/// without having to invent a valid deflate stream. The second bit picks among variants.
pub enum Input<'a> {
    Wire(&'a str),
    Xml(&'a [u8]),
}

pub fn split_input(data: &[u8]) -> Option<(u8, Input<'_>)> {
    let (&mode, rest) = data.split_first()?;
    if mode & 1 == 0 {
        Some((mode, Input::Wire(std::str::from_utf8(rest).ok()?)))
    } else {
        Some((mode, Input::Xml(rest)))
    }
}

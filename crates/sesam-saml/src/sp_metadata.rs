//! Reading a service provider's SAML metadata (an uploaded or fetched EntityDescriptor).
//! Our own namespace-aware reader: clear errors, DOCTYPE refused, size capped.

use crate::error::{Result, SamlError};
use crate::key::Certificate;
use crate::xml::{parse, Element, NS_DS, NS_MD, NS_SAMLP};

/// Largest SP metadata document we read.
pub const MAX_SP_METADATA_BYTES: usize = 256 * 1024;

/// An indexed endpoint (AssertionConsumerService).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedEndpoint {
    pub binding: String,
    pub location: String,
    pub index: u16,
    pub is_default: Option<bool>,
}

/// A plain endpoint (SingleLogoutService).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub binding: String,
    pub location: String,
    pub response_location: Option<String>,
}

/// What Sesam needs from an SP's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct SpMetadata {
    pub entity_id: String,
    pub assertion_consumer_services: Vec<IndexedEndpoint>,
    pub single_logout_services: Vec<Endpoint>,
    /// Certificates from KeyDescriptors with use="signing" or without `use`.
    pub signing_certificates: Vec<Certificate>,
    /// The first certificate with use="encryption" or without `use`.
    pub encryption_certificate: Option<Certificate>,
    /// The `md:EncryptionMethod` algorithm URIs of that certificate's KeyDescriptor, in the
    /// SP's order of preference.
    pub encryption_methods: Vec<String>,
    pub authn_requests_signed: bool,
    pub want_assertions_signed: bool,
}

fn parse_bool(field: &'static str, v: Option<&str>) -> Result<Option<bool>> {
    match v.map(str::trim) {
        None => Ok(None),
        Some("true") | Some("1") => Ok(Some(true)),
        Some("false") | Some("0") => Ok(Some(false)),
        Some(other) => Err(SamlError::Invalid {
            field,
            value: other.to_string(),
        }),
    }
}

fn required<'a>(e: &'a Element, attr: &'static str, what: &'static str) -> Result<&'a str> {
    e.attr(attr)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(SamlError::Missing(what))
}

fn certificates(kd: &Element) -> Result<Vec<Certificate>> {
    let mut out = Vec::new();
    if let Some(info) = kd.child(NS_DS, "KeyInfo") {
        for data in info.children_named(NS_DS, "X509Data") {
            for c in data.children_named(NS_DS, "X509Certificate") {
                out.push(Certificate::from_base64(&c.text)?);
            }
        }
    }
    Ok(out)
}

/// Parses an SP `md:EntityDescriptor` with an `md:SPSSODescriptor` for SAML 2.0.
pub fn parse_sp_metadata(xml: &[u8]) -> Result<SpMetadata> {
    let root = parse(xml, MAX_SP_METADATA_BYTES)?;
    if !root.is(NS_MD, "EntityDescriptor") {
        return Err(SamlError::WrongRoot {
            expected: "md:EntityDescriptor",
            found: format!("{{{}}}{}", root.ns, root.name),
        });
    }
    let entity_id = required(&root, "entityID", "entityID")?.to_string();
    let sp = root
        .children_named(NS_MD, "SPSSODescriptor")
        .find(|d| {
            d.attr("protocolSupportEnumeration")
                .is_some_and(|p| p.split_whitespace().any(|p| p == NS_SAMLP))
        })
        .ok_or(SamlError::Missing("SPSSODescriptor for SAML 2.0"))?;

    let mut acs = Vec::new();
    for e in sp.children_named(NS_MD, "AssertionConsumerService") {
        let index = required(e, "index", "AssertionConsumerService index")?;
        acs.push(IndexedEndpoint {
            binding: required(e, "Binding", "AssertionConsumerService Binding")?.to_string(),
            location: required(e, "Location", "AssertionConsumerService Location")?.to_string(),
            index: index.parse().map_err(|_| SamlError::Invalid {
                field: "AssertionConsumerService index",
                value: index.to_string(),
            })?,
            is_default: parse_bool("isDefault", e.attr("isDefault"))?,
        });
    }
    if acs.is_empty() {
        return Err(SamlError::Missing("AssertionConsumerService"));
    }
    let mut slo = Vec::new();
    for e in sp.children_named(NS_MD, "SingleLogoutService") {
        slo.push(Endpoint {
            binding: required(e, "Binding", "SingleLogoutService Binding")?.to_string(),
            location: required(e, "Location", "SingleLogoutService Location")?.to_string(),
            response_location: e.attr("ResponseLocation").map(str::to_string),
        });
    }
    let mut signing = Vec::new();
    let mut encryption = None;
    let mut encryption_methods = Vec::new();
    for kd in sp.children_named(NS_MD, "KeyDescriptor") {
        let usage = kd.attr("use").map(str::trim);
        let certs = certificates(kd)?;
        let mut methods = Vec::new();
        for m in kd.children_named(NS_MD, "EncryptionMethod") {
            methods.push(required(m, "Algorithm", "EncryptionMethod Algorithm")?.to_string());
        }
        if matches!(usage, None | Some("signing")) {
            signing.extend(certs.iter().cloned());
        }
        if matches!(usage, None | Some("encryption")) && encryption.is_none() {
            encryption = certs.into_iter().next();
            if encryption.is_some() {
                encryption_methods = methods;
            }
        }
    }
    Ok(SpMetadata {
        entity_id,
        assertion_consumer_services: acs,
        single_logout_services: slo,
        signing_certificates: signing,
        encryption_certificate: encryption,
        encryption_methods,
        authn_requests_signed: parse_bool("AuthnRequestsSigned", sp.attr("AuthnRequestsSigned"))?
            .unwrap_or(false),
        want_assertions_signed: parse_bool(
            "WantAssertionsSigned",
            sp.attr("WantAssertionsSigned"),
        )?
        .unwrap_or(false),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::key::IdpKey;

    /// Metadata shaped like what a Shibboleth SP generates (extensions, UIInfo, two certs).
    pub(crate) fn shibboleth_like(sign: &Certificate, enc: &Certificate) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- generated by Shibboleth SP -->
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" xmlns:mdui="urn:oasis:names:tc:SAML:metadata:ui" xmlns:init="urn:oasis:names:tc:SAML:profiles:SSO:request-init" xmlns:idpdisc="urn:oasis:names:tc:SAML:profiles:SSO:idp-discovery-protocol" entityID="https://sp.kommune.dk/shibboleth" cacheDuration="PT1H">
  <md:Extensions><alg:DigestMethod xmlns:alg="urn:oasis:names:tc:SAML:metadata:algsupport" Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/></md:Extensions>
  <md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol urn:oasis:names:tc:SAML:1.1:protocol" AuthnRequestsSigned="1" WantAssertionsSigned="true">
    <md:Extensions>
      <init:RequestInitiator Binding="urn:oasis:names:tc:SAML:profiles:SSO:request-init" Location="https://sp.kommune.dk/Shibboleth.sso/Login"/>
      <idpdisc:DiscoveryResponse Binding="urn:oasis:names:tc:SAML:profiles:SSO:idp-discovery-protocol" Location="https://sp.kommune.dk/Shibboleth.sso/Login" index="1"/>
      <mdui:UIInfo><mdui:DisplayName xml:lang="da">Kommunens &amp; selvbetjening</mdui:DisplayName></mdui:UIInfo>
    </md:Extensions>
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo><ds:KeyName>sp.kommune.dk</ds:KeyName><ds:X509Data>
        <ds:X509SubjectName>CN=sp.kommune.dk</ds:X509SubjectName>
        <ds:X509Certificate>
{sign}
        </ds:X509Certificate>
      </ds:X509Data></ds:KeyInfo>
    </md:KeyDescriptor>
    <md:KeyDescriptor use="encryption">
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{enc}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
      <md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes256-gcm"/>
      <md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#rsa-oaep"/>
    </md:KeyDescriptor>
    <md:ArtifactResolutionService Binding="urn:oasis:names:tc:SAML:2.0:bindings:SOAP" Location="https://sp.kommune.dk/Shibboleth.sso/Artifact/SOAP" index="1"/>
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://sp.kommune.dk/Shibboleth.sso/SLO/Redirect"/>
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.kommune.dk/Shibboleth.sso/SLO/POST"/>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.kommune.dk/Shibboleth.sso/SAML2/POST" index="1"/>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST-SimpleSign" Location="https://sp.kommune.dk/Shibboleth.sso/SAML2/POST-SimpleSign" index="2"/>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact" Location="https://sp.kommune.dk/Shibboleth.sso/SAML2/Artifact" index="3" isDefault="false"/>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.kommune.dk/Shibboleth.sso/SAML2/POST2" index="4" isDefault="true"/>
  </md:SPSSODescriptor>
  <md:Organization><md:OrganizationName xml:lang="da">Kommune</md:OrganizationName><md:OrganizationDisplayName xml:lang="da">Kommune</md:OrganizationDisplayName><md:OrganizationURL xml:lang="da">https://kommune.dk</md:OrganizationURL></md:Organization>
  <md:ContactPerson contactType="technical"><md:EmailAddress>mailto:it@kommune.dk</md:EmailAddress></md:ContactPerson>
</md:EntityDescriptor>
"#,
            sign = wrap64(&sign.to_base64()),
            enc = enc.to_base64()
        )
    }

    fn wrap64(s: &str) -> String {
        s.as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn parses_shibboleth_like_sp_metadata() {
        let sign = IdpKey::generate("sp sign", 10).unwrap();
        let enc = IdpKey::generate("sp enc", 10).unwrap();
        let xml = shibboleth_like(sign.certificate(), enc.certificate());
        let sp = parse_sp_metadata(xml.as_bytes()).unwrap();
        assert_eq!(sp.entity_id, "https://sp.kommune.dk/shibboleth");
        assert_eq!(sp.assertion_consumer_services.len(), 4);
        assert_eq!(sp.assertion_consumer_services[3].index, 4);
        assert_eq!(sp.assertion_consumer_services[3].is_default, Some(true));
        assert_eq!(sp.assertion_consumer_services[2].is_default, Some(false));
        assert_eq!(sp.single_logout_services.len(), 2);
        assert_eq!(sp.signing_certificates, vec![sign.certificate().clone()]);
        assert_eq!(sp.encryption_certificate.as_ref(), Some(enc.certificate()));
        assert_eq!(
            sp.encryption_methods,
            [
                "http://www.w3.org/2009/xmlenc11#aes256-gcm",
                "http://www.w3.org/2009/xmlenc11#rsa-oaep"
            ]
        );
        assert!(sp.authn_requests_signed);
        assert!(sp.want_assertions_signed);
    }

    #[test]
    fn key_descriptor_without_use_serves_both() {
        let cert = IdpKey::generate("sp", 10).unwrap();
        let xml = format!(
            r#"<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="urn:sp"><SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><KeyDescriptor><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><X509Data><X509Certificate>{}</X509Certificate></X509Data></KeyInfo></KeyDescriptor><AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp/acs" index="0"/></SPSSODescriptor></EntityDescriptor>"#,
            cert.certificate().to_base64()
        );
        let sp = parse_sp_metadata(xml.as_bytes()).unwrap();
        assert_eq!(sp.signing_certificates.len(), 1);
        assert!(sp.encryption_certificate.is_some());
        assert!(sp.encryption_methods.is_empty());
        assert!(!sp.authn_requests_signed);
    }

    #[test]
    fn bad_sp_metadata_gives_clear_errors() {
        let ok_sp = r#"<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:AssertionConsumerService Binding="b" Location="https://sp/acs" index="1"/></md:SPSSODescriptor>"#;
        let md = |attrs: &str, body: &str| {
            format!(
                r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" {attrs}>{body}</md:EntityDescriptor>"#
            )
        };
        assert!(parse_sp_metadata(md(r#"entityID="urn:sp""#, ok_sp).as_bytes()).is_ok());
        assert!(matches!(
            parse_sp_metadata(b"{\"json\": true}"),
            Err(SamlError::NotXml(_))
        ));
        assert!(matches!(
            parse_sp_metadata(
                br#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"/>"#
            ),
            Err(SamlError::WrongRoot { .. })
        ));
        assert!(matches!(
            parse_sp_metadata(br#"<EntityDescriptor entityID="x"/>"#),
            Err(SamlError::WrongRoot { .. })
        ));
        assert!(matches!(
            parse_sp_metadata(md("", ok_sp).as_bytes()),
            Err(SamlError::Missing("entityID"))
        ));
        assert!(matches!(
            parse_sp_metadata(md(r#"entityID="urn:sp""#, "").as_bytes()),
            Err(SamlError::Missing("SPSSODescriptor for SAML 2.0"))
        ));
        let no_acs = r#"<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/>"#;
        assert!(matches!(
            parse_sp_metadata(md(r#"entityID="urn:sp""#, no_acs).as_bytes()),
            Err(SamlError::Missing("AssertionConsumerService"))
        ));
        let bad_cert = r#"<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor><ds:KeyInfo><ds:X509Data><ds:X509Certificate>!!!</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:AssertionConsumerService Binding="b" Location="l" index="1"/></md:SPSSODescriptor>"#;
        assert!(matches!(
            parse_sp_metadata(md(r#"entityID="urn:sp""#, bad_cert).as_bytes()),
            Err(SamlError::Base64("X509Certificate"))
        ));
        let no_algorithm = r#"<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="encryption"><md:EncryptionMethod Algorithm=" "/></md:KeyDescriptor><md:AssertionConsumerService Binding="b" Location="l" index="1"/></md:SPSSODescriptor>"#;
        assert!(matches!(
            parse_sp_metadata(md(r#"entityID="urn:sp""#, no_algorithm).as_bytes()),
            Err(SamlError::Missing("EncryptionMethod Algorithm"))
        ));
        let doctype = format!(
            "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{}",
            md(r#"entityID="&e;""#, ok_sp)
        );
        assert!(matches!(
            parse_sp_metadata(doctype.as_bytes()),
            Err(SamlError::Doctype)
        ));
        let huge = md(
            r#"entityID="urn:sp""#,
            &format!("<!--{}-->{ok_sp}", "x".repeat(300 * 1024)),
        );
        assert!(matches!(
            parse_sp_metadata(huge.as_bytes()),
            Err(SamlError::TooLarge { .. })
        ));
    }
}

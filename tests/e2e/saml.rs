//! SAML single sign-on end to end: a test service provider (samael + openssl, and the xmlsec1
//! command line as an independent verifier) sends AuthnRequests over both bindings and checks
//! every Response; bad requests each get their answer.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use flate2::write::DeflateEncoder;
use flate2::Compression;
use openssl::encrypt::Decrypter;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Padding;
use openssl::sign::Signer;
use openssl::symm::{decrypt_aead, Cipher};
use reqwest::StatusCode;
use samael::crypto::{CertificateDer, CryptoProvider, XmlSec};
use sesam_app::{Answer, AppClient, EnrolOptions};
use sesam_core::User;
use sesam_saml::{IdpKey, ResponseSigning};
use sesam_server::saml::{sp_registration, SpOptions};

use crate::harness::{on_both_databases, urlencode, Browser, Page, TestDb, TestServer};
use crate::passwordless::{code_on, start_login};

on_both_databases!(
    metadata_is_signed_and_names_the_endpoints,
    passwordless_login_over_redirect_then_sso_over_post_with_encryption,
    passwordless_login_over_post_with_signed_request_then_signed_redirect,
    bad_requests_get_the_right_answer,
    force_authn_is_passive_step_up_and_high,
    sp_cli_adds_lists_updates_and_removes,
    single_logout_ends_the_session_and_answers_the_sp,
    logout_at_sesam_tells_the_service_providers,
    a_one_time_password_gates_the_response_and_an_unreachable_level_is_answered,
    encryption_follows_the_sp_metadata_and_the_operator_overrides_it,
    name_id_formats_persistent_transient_email_and_unspecified,
    the_response_the_assertion_or_both_are_signed_per_sp,
);

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
const LOA_LOW: &str = "https://data.gov.dk/concept/core/nsis/loa/Low";
pub(crate) const LOA_SUBSTANTIAL: &str = "https://data.gov.dk/concept/core/nsis/loa/Substantial";
const LOA_HIGH: &str = "https://data.gov.dk/concept/core/nsis/loa/High";
const ASSERTION_ID_ATTR: &str = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion";
const RESPONSE_ID_ATTR: &str = "urn:oasis:names:tc:SAML:2.0:protocol:Response";
const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const NAMEID_PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
const NAMEID_TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";
const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
const NAMEID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
const RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
const RSA_OAEP_11: &str = "http://www.w3.org/2009/xmlenc11#rsa-oaep";
const AES256_GCM: &str = "http://www.w3.org/2009/xmlenc11#aes256-gcm";
const AES128_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes128-cbc";
const AES256_CBC: &str = "http://www.w3.org/2001/04/xmlenc#aes256-cbc";
const PASSWORD: &str = "correct horse battery";

// ---------------------------------------------------------------- the test SP

pub(crate) struct TestSp {
    host: String,
    entity_id: String,
    acs: String,
    signing: IdpKey,
    encryption: IdpKey,
    /// Its SingleLogoutService uses HTTP-POST (else HTTP-Redirect).
    slo_post: bool,
    /// The `md:EncryptionMethod` algorithms its metadata lists.
    encryption_methods: Vec<&'static str>,
    want_assertions_signed: bool,
    /// What `accept` expects Sesam to have signed.
    signs: ResponseSigning,
    /// The NameID format `accept` expects.
    name_id_format: &'static str,
}

/// What an AuthnRequest says; `TestSp::request` fills in sensible values.
#[derive(Clone)]
pub(crate) struct Req {
    pub(crate) id: String,
    issuer: String,
    issue_instant: i64,
    destination: Option<String>,
    acs_url: Option<String>,
    acs_index: Option<u16>,
    force: bool,
    passive: bool,
    /// (Comparison, class refs)
    pub(crate) context: Option<(&'static str, Vec<&'static str>)>,
    name_id_format: Option<&'static str>,
}

fn instant(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn private_key(key: &IdpKey) -> PKey<Private> {
    PKey::private_key_from_pem(&key.private_key_pem().unwrap()).unwrap()
}

fn key_descriptor(usage: &str, key: &IdpKey) -> String {
    key_descriptor_with(usage, key, &[])
}

/// A KeyDescriptor listing `methods` as `md:EncryptionMethod`s.
fn key_descriptor_with(usage: &str, key: &IdpKey, methods: &[&str]) -> String {
    let methods: String = methods
        .iter()
        .map(|m| format!(r#"<md:EncryptionMethod Algorithm="{m}"/>"#))
        .collect();
    format!(
        r#"<md:KeyDescriptor use="{usage}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>{methods}</md:KeyDescriptor>"#,
        key.certificate().to_base64()
    )
}

impl TestSp {
    pub(crate) fn new(host: &str) -> TestSp {
        TestSp {
            host: host.to_owned(),
            entity_id: format!("https://{host}/shibboleth"),
            acs: format!("https://{host}/Shibboleth.sso/SAML2/POST"),
            signing: IdpKey::generate(host, 30).unwrap(),
            encryption: IdpKey::generate(&format!("{host} encryption"), 30).unwrap(),
            slo_post: false,
            encryption_methods: Vec::new(),
            want_assertions_signed: true,
            signs: ResponseSigning::Assertion,
            name_id_format: NAMEID_PERSISTENT,
        }
    }

    fn slo(&self) -> String {
        format!("https://{}/Shibboleth.sso/SLO", self.host)
    }

    /// A LogoutRequest for `name_id` and `session_index`, with a signature template when
    /// `template` (for POST).
    fn logout_xml(
        &self,
        sesam: &TestServer,
        id: &str,
        name_id: &str,
        session_index: &str,
        template: bool,
    ) -> String {
        let signature = if template {
            signature_template(id, &self.signing)
        } else {
            String::new()
        };
        format!(
            concat!(
                r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#,
                r#" ID="{id}" Version="2.0" IssueInstant="{ii}" Destination="{dest}">"#,
                "<saml:Issuer>{issuer}</saml:Issuer>{signature}",
                r#"<saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">{name_id}</saml:NameID>"#,
                "<samlp:SessionIndex>{session_index}</samlp:SessionIndex></samlp:LogoutRequest>"
            ),
            id = id,
            ii = instant(sesam.now().0),
            dest = sesam.server.state.saml.slo_url,
            issuer = self.entity_id,
            signature = signature,
            name_id = name_id,
            session_index = session_index,
        )
    }

    /// The SP's LogoutResponse to Sesam.
    fn logout_response_xml(
        &self,
        sesam: &TestServer,
        in_response_to: &str,
        status: &str,
        template: bool,
    ) -> String {
        let id = format!("_{}", uuid::Uuid::new_v4().simple());
        let signature = if template {
            signature_template(&id, &self.signing)
        } else {
            String::new()
        };
        format!(
            concat!(
                r#"<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#,
                r#" ID="{id}" Version="2.0" IssueInstant="{ii}" Destination="{dest}" InResponseTo="{irt}">"#,
                "<saml:Issuer>{issuer}</saml:Issuer>{signature}",
                r#"<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:{status}"/></samlp:Status></samlp:LogoutResponse>"#
            ),
            id = id,
            ii = instant(sesam.now().0),
            dest = sesam.server.state.saml.slo_url,
            irt = in_response_to,
            issuer = self.entity_id,
            signature = signature,
            status = status,
        )
    }

    fn second_acs(&self) -> String {
        format!("https://{}/Shibboleth.sso/SAML2/POST-2", self.host)
    }

    fn metadata(&self, authn_requests_signed: bool) -> String {
        format!(
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{eid}">"#,
                r#"<md:SPSSODescriptor AuthnRequestsSigned="{signed}" WantAssertionsSigned="{want}" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">"#,
                "{sig}{enc}",
                r#"<md:SingleLogoutService Binding="{slo_binding}" Location="{slo}"/>"#,
                "<md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>",
                r#"<md:AssertionConsumerService Binding="{post}" Location="{acs}" index="0" isDefault="true"/>"#,
                r#"<md:AssertionConsumerService Binding="{post}" Location="{acs2}" index="1"/>"#,
                "</md:SPSSODescriptor></md:EntityDescriptor>"
            ),
            eid = self.entity_id,
            signed = authn_requests_signed,
            want = self.want_assertions_signed,
            sig = key_descriptor("signing", &self.signing),
            enc = key_descriptor_with("encryption", &self.encryption, &self.encryption_methods),
            post = BINDING_POST,
            acs = self.acs,
            acs2 = self.second_acs(),
            slo_binding = if self.slo_post {
                BINDING_POST
            } else {
                "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
            },
            slo = self.slo(),
        )
    }

    /// Registers this SP with `sesam` as the CLI would.
    pub(crate) async fn register(&self, sesam: &TestServer, options: SpOptions) {
        assert_schema_valid(&self.metadata(false), SAML_XSD);
        let (record, _) =
            sp_registration(self.metadata(false).as_bytes(), None, &options).expect("registers");
        sesam
            .store()
            .upsert_saml_sp(&record, sesam.now())
            .await
            .unwrap();
    }

    pub(crate) fn request(&self, sesam: &TestServer) -> Req {
        Req {
            id: format!("_{}", uuid::Uuid::new_v4().simple()),
            issuer: self.entity_id.clone(),
            issue_instant: sesam.now().0,
            destination: Some(sesam.server.state.saml.sso_url.clone()),
            acs_url: Some(self.acs.clone()),
            acs_index: None,
            force: false,
            passive: false,
            context: None,
            name_id_format: Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"),
        }
    }

    /// The AuthnRequest XML; with `signature_template`, ready for enveloped signing.
    fn xml(&self, r: &Req, signature_template: bool) -> String {
        let mut attrs = String::new();
        if let Some(d) = &r.destination {
            attrs.push_str(&format!(r#" Destination="{d}""#));
        }
        if let Some(a) = &r.acs_url {
            attrs.push_str(&format!(r#" AssertionConsumerServiceURL="{a}""#));
        }
        if let Some(i) = r.acs_index {
            attrs.push_str(&format!(r#" AssertionConsumerServiceIndex="{i}""#));
        }
        if r.force {
            attrs.push_str(r#" ForceAuthn="true""#);
        }
        if r.passive {
            attrs.push_str(r#" IsPassive="true""#);
        }
        let signature = if signature_template {
            self::signature_template(&r.id, &self.signing)
        } else {
            String::new()
        };
        let policy = r
            .name_id_format
            .map(|f| format!(r#"<samlp:NameIDPolicy Format="{f}" AllowCreate="true"/>"#))
            .unwrap_or_default();
        let context = r
            .context
            .as_ref()
            .map(|(cmp, refs)| {
                let refs: String = refs
                    .iter()
                    .map(|c| format!("<saml:AuthnContextClassRef>{c}</saml:AuthnContextClassRef>"))
                    .collect();
                format!(r#"<samlp:RequestedAuthnContext Comparison="{cmp}">{refs}</samlp:RequestedAuthnContext>"#)
            })
            .unwrap_or_default();
        format!(
            concat!(
                r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#,
                r#" ID="{id}" Version="2.0" IssueInstant="{ii}"{attrs}>"#,
                "<saml:Issuer>{issuer}</saml:Issuer>{signature}{policy}{context}</samlp:AuthnRequest>"
            ),
            id = r.id,
            ii = instant(r.issue_instant),
            attrs = attrs,
            issuer = r.issuer,
            signature = signature,
            policy = policy,
            context = context,
        )
    }

    /// `/saml/sso?...` for the Redirect binding, signed over the query when `sig_alg` is given.
    pub(crate) fn redirect(&self, r: &Req, relay: Option<&str>, sig_alg: Option<&str>) -> String {
        redirect_path(
            &self.xml(r, false),
            relay,
            sig_alg.map(|a| (&self.signing, a)),
        )
    }

    /// The POST binding's form fields, the request signed (enveloped) when `signed`.
    fn post_fields(&self, r: &Req, relay: Option<&str>, signed: bool) -> Vec<(String, String)> {
        let xml = if signed {
            sign_enveloped(&self.xml(r, true), &self.signing)
        } else {
            self.xml(r, false)
        };
        post_fields(&xml, relay)
    }
}

fn signature_template(id: &str, key: &IdpKey) -> String {
    format!(
        concat!(
            r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>"#,
            r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
            r#"<ds:SignatureMethod Algorithm="{alg}"/>"#,
            r##"<ds:Reference URI="#{id}"><ds:Transforms>"##,
            r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"#,
            r#"<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
            r#"</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>"#,
            r#"<ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo>"#,
            r#"<ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data>"#,
            r#"<ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"#
        ),
        alg = RSA_SHA256,
        id = id,
        cert = key.certificate().to_base64()
    )
}

fn sign_enveloped(xml: &str, key: &IdpKey) -> String {
    let der = private_key(key)
        .rsa()
        .unwrap()
        .private_key_to_der()
        .unwrap();
    XmlSec::sign_xml(xml, &der).expect("xmlsec signs")
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut enc = DeflateEncoder::new(Vec::new(), Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn redirect_path(xml: &str, relay: Option<&str>, signer: Option<(&IdpKey, &str)>) -> String {
    redirect_path_raw(&B64.encode(deflate(xml.as_bytes())), relay, signer)
}

fn redirect_path_raw(b64: &str, relay: Option<&str>, signer: Option<(&IdpKey, &str)>) -> String {
    format!("/saml/sso?{}", signed_query(b64, relay, signer))
}

/// `SAMLRequest=…[&RelayState=…][&SigAlg=…&Signature=…]`, signed as the Redirect binding says.
fn signed_query(b64: &str, relay: Option<&str>, signer: Option<(&IdpKey, &str)>) -> String {
    signed_query_of("SAMLRequest", b64, relay, signer)
}

fn signed_query_of(
    param: &str,
    b64: &str,
    relay: Option<&str>,
    signer: Option<(&IdpKey, &str)>,
) -> String {
    let mut q = format!("{param}={}", urlencode(b64));
    if let Some(r) = relay {
        q.push_str(&format!("&RelayState={}", urlencode(r)));
    }
    if let Some((key, alg)) = signer {
        q.push_str(&format!("&SigAlg={}", urlencode(alg)));
        let digest = if alg == RSA_SHA1 {
            MessageDigest::sha1()
        } else {
            MessageDigest::sha256()
        };
        let pkey = private_key(key);
        let mut signer = Signer::new(digest, &pkey).unwrap();
        signer.update(q.as_bytes()).unwrap();
        let sig = signer.sign_to_vec().unwrap();
        q.push_str(&format!("&Signature={}", urlencode(&B64.encode(sig))));
    }
    q
}

fn post_fields(xml: &str, relay: Option<&str>) -> Vec<(String, String)> {
    let mut fields = vec![("SAMLRequest".to_owned(), B64.encode(xml.as_bytes()))];
    if let Some(r) = relay {
        fields.push(("RelayState".to_owned(), r.to_owned()));
    }
    fields
}

async fn post_sso(browser: &Browser, fields: &[(String, String)]) -> Page {
    post_sso_to(browser, "/saml/sso", fields).await
}

async fn post_sso_to(browser: &Browser, path: &str, fields: &[(String, String)]) -> Page {
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    browser.post_form(path, &refs).await
}

/// Follows redirects on this site until a page answers.
pub(crate) async fn follow(browser: &Browser, mut page: Page) -> Page {
    for _ in 0..10 {
        if !page.status.is_redirection() {
            return page;
        }
        let next = page.location().unwrap().to_owned();
        assert!(next.starts_with('/'), "redirected off-site to {next}");
        page = browser.get(&next).await;
    }
    panic!("too many redirects");
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attr_after<'a>(body: &'a str, marker: &str) -> Option<&'a str> {
    let start = body.find(marker)? + marker.len();
    let end = body[start..].find('"')? + start;
    Some(&body[start..end])
}

/// The auto-submitting form: (action, decoded SAMLResponse XML, RelayState).
fn form_post(page: &Page) -> (String, String, Option<String>) {
    form_field(page, "SAMLResponse")
}

/// As [`form_post`], for the message in form field `field`.
fn form_field(page: &Page, field: &str) -> (String, String, Option<String>) {
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let action = unescape(attr_after(&page.body, "action=\"").expect("a form"));
    let response = attr_after(&page.body, &format!("name=\"{field}\" value=\""))
        .unwrap_or_else(|| panic!("no {field} in:\n{}", page.body));
    let xml = String::from_utf8(B64.decode(response).unwrap()).unwrap();
    let relay = attr_after(&page.body, "name=\"RelayState\" value=\"").map(unescape);
    (action, xml, relay)
}

/// The OASIS SAML 2.0 schemas (protocol, assertion, metadata) with XML Encryption 1.1.
const SAML_XSD: &str = "saml-all.xsd";

/// The same OASIS schemas with XML Encryption 1.0 only: what strict SPs on older stacks
/// validate with (an `xenc11:MGF` element fails their strict wildcard).
const SAML_XENC10_XSD: &str = "saml-xenc10.xsd";

/// Validates `xml` with `xmllint` against an OASIS schema kept in tests/fixtures/saml, offline.
fn assert_schema_valid(xml: &str, schema: &str) {
    if let Err(e) = schema_check(xml, schema) {
        panic!("{schema}: {e}\n{xml}");
    }
}

/// `xmllint --schema` over `xml`: its complaint when it is not valid.
fn schema_check(xml: &str, schema: &str) -> Result<(), String> {
    let path = format!(
        "{}/tests/fixtures/saml/{schema}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut child = Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema", &path, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xmllint is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(xml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Runs `xmlsec1 --verify` over `xml` with `cert_pem`.
fn xmlsec1_verifies(xml: &str, cert_pem: &[u8], id_attr: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let file = dir.path().join("doc.xml");
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&file, xml).unwrap();
    let out = Command::new("xmlsec1")
        .arg("--verify")
        .arg("--pubkey-cert-pem")
        .arg(&cert)
        .arg("--id-attr:ID")
        .arg(id_attr)
        .arg(&file)
        .stdout(Stdio::null())
        .output()
        .expect("xmlsec1 is installed");
    if !out.status.success() {
        eprintln!("xmlsec1: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.success()
}

/// Runs `xmlsec1 --decrypt` over a Response with the SP's private key: the document with its
/// assertion in the clear.
fn xmlsec1_decrypts(xml: &str, key: &IdpKey) -> String {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("sp.key");
    let file = dir.path().join("doc.xml");
    let out_file = dir.path().join("dec.xml");
    std::fs::write(&key_file, key.private_key_pem().unwrap()).unwrap();
    std::fs::write(&file, xml).unwrap();
    let out = Command::new("xmlsec1")
        .args(["--decrypt", "--privkey-pem"])
        .arg(&key_file)
        .arg("--output")
        .arg(&out_file)
        .arg(&file)
        .output()
        .expect("xmlsec1 is installed");
    assert!(
        out.status.success(),
        "xmlsec1 --decrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&out_file).unwrap()
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let a = s
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in {s}"));
    let b = s[a..]
        .find(end)
        .unwrap_or_else(|| panic!("{end} not in {s}"))
        + a
        + end.len();
    &s[a..b]
}

/// Decrypts an EncryptedAssertion with the SP's key, by the algorithms it names: the data by
/// AES-GCM or AES-CBC, the key by RSA-OAEP with SHA-1 (`mgf1p`, XML Encryption 1.0) or with
/// SHA-256 and MGF1-SHA-256 (XML Encryption 1.1).
fn decrypt_assertion(xml: &str, key: &IdpKey) -> String {
    let encrypted = between(
        xml,
        "<saml:EncryptedAssertion>",
        "</saml:EncryptedAssertion>",
    );
    let oaep_md = if encrypted.contains(RSA_OAEP_MGF1P) {
        assert!(encrypted.contains("xmldsig#sha1"));
        assert!(!encrypted.contains("xenc11:MGF"), "mgf1p has a fixed MGF");
        MessageDigest::sha1()
    } else {
        assert!(encrypted.contains(&format!("{RSA_OAEP_11}\"")));
        assert!(encrypted.contains("xmlenc11#mgf1sha256") && encrypted.contains("xmlenc#sha256"));
        MessageDigest::sha256()
    };
    let mut values = encrypted
        .split("<xenc:CipherValue>")
        .skip(1)
        .map(|s| B64.decode(s.split('<').next().unwrap().trim()).unwrap());
    let (wrapped, blob) = (values.next().unwrap(), values.next().unwrap());
    let pkey = private_key(key);
    let mut d = Decrypter::new(&pkey).unwrap();
    d.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
    d.set_rsa_oaep_md(oaep_md).unwrap();
    d.set_rsa_mgf1_md(oaep_md).unwrap();
    let mut aes = vec![0u8; d.decrypt_len(&wrapped).unwrap()];
    let n = d.decrypt(&wrapped, &mut aes).unwrap();
    aes.truncate(n);
    let (data_method, _) = encryption_algorithms(xml);
    let plain = if data_method.contains("-gcm") {
        let cipher = match aes.len() {
            32 => Cipher::aes_256_gcm(),
            _ => Cipher::aes_128_gcm(),
        };
        let (iv, rest) = blob.split_at(12);
        let (ct, tag) = rest.split_at(rest.len() - 16);
        decrypt_aead(cipher, &aes, Some(iv), &[], ct, tag).unwrap()
    } else {
        assert!(data_method.contains("xmlenc#aes") && data_method.contains("-cbc"));
        let cipher = match aes.len() {
            32 => Cipher::aes_256_cbc(),
            _ => Cipher::aes_128_cbc(),
        };
        let (iv, ct) = blob.split_at(16);
        openssl::symm::decrypt(cipher, &aes, Some(iv), ct).unwrap()
    };
    String::from_utf8(plain).unwrap()
}

/// The algorithm URIs an encrypted Response names: (data encryption, key transport).
fn encryption_algorithms(xml: &str) -> (String, String) {
    let encrypted = between(
        xml,
        "<saml:EncryptedAssertion>",
        "</saml:EncryptedAssertion>",
    );
    let mut methods = encrypted
        .split("<xenc:EncryptionMethod Algorithm=\"")
        .skip(1)
        .map(|m| m.split('"').next().unwrap().to_owned());
    (methods.next().unwrap(), methods.next().unwrap())
}

/// What the test SP read from a verified Response.
#[derive(Debug)]
pub(crate) struct Login {
    name_id: String,
    session_index: String,
    pub(crate) loa: String,
    authn_instant: i64,
    attributes: HashMap<String, Vec<String>>,
}

impl TestSp {
    /// Checks a successful Response as a strict SP would and returns what it says.
    pub(crate) fn accept(
        &self,
        sesam: &TestServer,
        page: &Page,
        request_id: &str,
        relay: Option<&str>,
        encrypted: bool,
    ) -> Login {
        let csp = page
            .headers
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(
            csp.contains(&format!("form-action https://{}", self.host)),
            "{csp}"
        );
        assert!(page.body.contains("/static/form-post.js"));
        let (action, xml, got_relay) = form_post(page);
        assert_eq!(action, self.acs);
        assert_eq!(
            got_relay.as_deref(),
            relay,
            "RelayState comes back unchanged"
        );

        let idp = &sesam.server.state.saml;
        let idp_cert = idp.key.certificate();
        let idp_pem = idp_cert.to_pem().unwrap();
        let now = sesam.now().0;
        assert_schema_valid(&xml, SAML_XSD);
        let response: samael::schema::Response = xml.parse().expect("samael reads the Response");
        assert_eq!(response.destination.as_deref(), Some(self.acs.as_str()));
        assert_eq!(response.in_response_to.as_deref(), Some(request_id));
        assert_eq!(
            response.issuer.as_ref().and_then(|i| i.value.as_deref()),
            Some(idp.entity_id.as_str())
        );
        assert_eq!(
            response
                .status
                .as_ref()
                .unwrap()
                .status_code
                .value
                .as_deref(),
            Some(SUCCESS)
        );
        assert!((response.issue_instant.timestamp() - now).abs() <= 1);

        // The Response's own signature, when this SP asked for one: right after the Issuer,
        // over the Response, verified by xmlsec1; a change anywhere inside breaks it.
        match &response.signature {
            Some(signature) => {
                assert!(self.signs != ResponseSigning::Assertion, "{xml}");
                assert_eq!(
                    signature.signed_info.reference[0].uri.as_deref(),
                    Some(format!("#{}", response.id).as_str())
                );
                assert!(
                    xml.contains("</saml:Issuer><ds:Signature "),
                    "schema position"
                );
                assert!(xmlsec1_verifies(&xml, &idp_pem, RESPONSE_ID_ATTR), "{xml}");
                let tampered = xml.replacen(&self.acs, &self.second_acs(), 1);
                assert!(!xmlsec1_verifies(&tampered, &idp_pem, RESPONSE_ID_ATTR));
            }
            None => assert_eq!(self.signs, ResponseSigning::Assertion, "{xml}"),
        }

        let assertion_xml = if encrypted {
            assert!(response.assertion.is_none(), "no plaintext assertion");
            assert!(!xml.contains("AttributeStatement"));
            let (_, key_transport) = encryption_algorithms(&xml);
            let ours = decrypt_assertion(&xml, &self.encryption);
            if key_transport == RSA_OAEP_MGF1P {
                // What strict SPs on XML Encryption 1.0 stacks validate and read.
                assert_schema_valid(&xml, SAML_XENC10_XSD);
                let theirs = xmlsec1_decrypts(&xml, &self.encryption);
                let id = ours
                    .split("ID=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                assert!(
                    theirs.contains(&format!("ID=\"{id}\"")) && !theirs.contains("EncryptedData"),
                    "xmlsec1 opens the same assertion: {theirs}"
                );
            } else {
                // xmlenc11's MGF element is outside XML Encryption 1.0: valid only with 1.1.
                let refused = schema_check(&xml, SAML_XENC10_XSD).unwrap_err();
                assert!(refused.contains("MGF"), "{refused}");
            }
            ours
        } else {
            assert!(response.encrypted_assertion.is_none());
            between(&xml, "<saml:Assertion ", "</saml:Assertion>").to_owned()
        };
        assert_schema_valid(&assertion_xml, SAML_XSD);
        if self.signs.signs_assertion() {
            // samael (the SP's library) and xmlsec1 both verify the assertion's signature,
            // and a changed assertion does not verify.
            XmlSec::verify_signed_xml(
                &assertion_xml,
                &CertificateDer::from(idp_cert.der().to_vec()),
                Some("ID"),
            )
            .expect("samael verifies the assertion signature");
            assert!(xmlsec1_verifies(
                &assertion_xml,
                &idp_pem,
                ASSERTION_ID_ATTR
            ));
            let tampered = assertion_xml.replacen("OIO-SAML-3.0", "OIO-SAML-3.1", 1);
            assert!(!xmlsec1_verifies(&tampered, &idp_pem, ASSERTION_ID_ATTR));
            assert!(assertion_xml.contains("rsa-sha256") && assertion_xml.contains("xml-exc-c14n"));
        } else {
            assert!(!assertion_xml.contains("<ds:Signature"), "{assertion_xml}");
        }

        let a: samael::schema::Assertion = assertion_xml.parse().expect("samael reads it");
        assert_eq!(a.issuer.value.as_deref(), Some(idp.entity_id.as_str()));
        let subject = a.subject.as_ref().unwrap();
        let name_id = subject.name_id.as_ref().unwrap();
        assert_eq!(name_id.format.as_deref(), Some(self.name_id_format));
        let confirmation = &subject.subject_confirmations.as_ref().unwrap()[0];
        assert_eq!(
            confirmation.method.as_deref(),
            Some("urn:oasis:names:tc:SAML:2.0:cm:bearer")
        );
        let data = confirmation.subject_confirmation_data.as_ref().unwrap();
        assert_eq!(data.recipient.as_deref(), Some(self.acs.as_str()));
        assert_eq!(data.in_response_to.as_deref(), Some(request_id));
        let not_on_or_after = data.not_on_or_after.unwrap().timestamp();
        assert!(not_on_or_after > now && not_on_or_after <= now + 300);
        let conditions = a.conditions.as_ref().unwrap();
        assert!(conditions.not_before.unwrap().timestamp() <= now);
        assert_eq!(
            conditions.not_on_or_after.unwrap().timestamp(),
            not_on_or_after
        );
        let audiences = &conditions.audience_restrictions.as_ref().unwrap()[0].audience;
        assert_eq!(audiences, &vec![self.entity_id.clone()]);
        let statement = &a.authn_statements.as_ref().unwrap()[0];
        let loa = statement
            .authn_context
            .as_ref()
            .and_then(|c| c.value.as_ref())
            .and_then(|c| c.value.clone())
            .unwrap();
        let mut attributes = HashMap::new();
        for s in a.attribute_statements.as_ref().unwrap() {
            for attr in &s.attributes {
                attributes.insert(
                    attr.name.clone().unwrap(),
                    attr.values.iter().filter_map(|v| v.value.clone()).collect(),
                );
            }
        }
        assert_eq!(
            attributes["https://data.gov.dk/model/core/specVersion"],
            vec!["OIO-SAML-3.0".to_owned()]
        );
        let loa_name = loa.rsplit('/').next().unwrap().to_owned();
        assert_eq!(
            attributes["https://data.gov.dk/concept/core/nsis/loa"],
            vec![loa_name]
        );
        Login {
            name_id: name_id.value.clone(),
            session_index: statement.session_index.clone().unwrap(),
            loa,
            authn_instant: statement.authn_instant.unwrap().timestamp(),
            attributes,
        }
    }

    /// Checks a SAML error Response to this SP and returns its second-level status code.
    fn refused(&self, page: &Page, request_id: &str) -> String {
        let (action, xml, _) = form_post(page);
        assert_eq!(action, self.acs);
        assert_schema_valid(&xml, SAML_XSD);
        let response: samael::schema::Response = xml.parse().unwrap();
        assert_eq!(response.in_response_to.as_deref(), Some(request_id));
        assert!(response.assertion.is_none() && response.encrypted_assertion.is_none());
        let top = response.status.unwrap().status_code.value.unwrap();
        assert_ne!(top, SUCCESS);
        if let Some(message) = status_message(&xml) {
            for artefact in ["Some(", "None", "&quot;", "\\\""] {
                assert!(!message.contains(artefact), "{artefact} in {message}");
            }
        }
        // The second-level code, or the top-level one when it stands alone (VersionMismatch).
        let marker = "<samlp:StatusCode Value=\"";
        let codes: Vec<&str> = xml.split(marker).skip(1).collect();
        let code = codes.get(1).or(codes.first()).expect("a status code");
        code.split('"')
            .next()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned()
    }
}

/// The StatusMessage of a Response, as the SP reads it.
fn status_message(xml: &str) -> Option<String> {
    let start = "<samlp:StatusMessage>";
    let text = xml
        .split(start)
        .nth(1)?
        .split("</samlp:StatusMessage>")
        .next()?;
    Some(text.to_owned())
}

/// The Response form a refusal posts to the SP's ACS.
fn response_xml(page: &Page) -> String {
    form_post(page).1
}

/// A refusal page that names its cause (the Danish text: no Accept-Language is sent).
fn assert_refused_because(page: &Page, cause: &str) {
    assert_refused_page(page, StatusCode::FORBIDDEN);
    assert!(page.body.contains(cause), "{cause} not in {}", page.body);
}

/// A page refusing the request: a 4xx, no form to any SP.
fn assert_refused_page(page: &Page, status: StatusCode) {
    assert_eq!(page.status, status, "{}", page.body);
    assert!(page.location().is_none());
    assert!(!page.body.contains("SAMLResponse"));
}

// ---------------------------------------------------------------- logins

async fn passwordless_on(sesam: &TestServer) {
    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
}

async fn anna_with_app(sesam: &TestServer) -> (User, AppClient) {
    let anna = sesam
        .store()
        .create_user(
            sesam_store::NewUser {
                username: sesam_core::Username::parse("anna").unwrap(),
                display_name: "Anna Andersen".into(),
                email: Some("anna@kommune.dk".into()),
                password_hash: Some(sesam_server::password::hash_now(PASSWORD).unwrap()),
                is_admin: false,
                password_only: false,
                must_change_password: false,
            },
            sesam.now(),
        )
        .await
        .unwrap();
    let (app, _) = sesam
        .enrol(
            &anna,
            EnrolOptions {
                display_name: "Anna's iPhone".into(),
                ..EnrolOptions::default()
            },
        )
        .await;
    (anna, app)
}

/// From the login page the service sent the browser to, through the passwordless login with
/// the app answering, to the page the login returns to.
async fn passwordless(browser: &Browser, app: &AppClient, username: &str) -> Page {
    assert_eq!(start_login(browser, username).await, "/login/wait");
    let wait = browser.get("/login/wait").await;
    let code = code_on(&wait);
    let pending = app.pending().await.unwrap();
    // The page says who logs in to which service, as the app does.
    let who = format!("Login som {username} til {}", pending[0].service);
    assert!(wait.body.contains(&who), "{who} not in {}", wait.body);
    assert_eq!(
        app.answer(&pending[0].id, &Answer::Code(code))
            .await
            .unwrap()
            .status,
        "approved"
    );
    let done = browser.get("/login/complete").await;
    assert_eq!(done.location(), Some("/saml/sso/continue"));
    follow(browser, done).await
}

/// Answers the pending app request (push approval after a password).
async fn approve(app: &AppClient, code: String) {
    let pending = app.pending().await.unwrap();
    assert_eq!(
        app.answer(&pending[0].id, &Answer::Code(code))
            .await
            .unwrap()
            .status,
        "approved"
    );
}

// ---------------------------------------------------------------- tests

async fn metadata_is_signed_and_names_the_endpoints(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let page = sesam.browser().get("/saml/metadata").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.headers.get("content-type").unwrap(),
        "application/samlmetadata+xml"
    );
    let idp = &sesam.server.state.saml;
    let pem = idp.key.certificate().to_pem().unwrap();
    assert!(xmlsec1_verifies(
        &page.body,
        &pem,
        "urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor"
    ));
    assert!(!xmlsec1_verifies(
        &page.body.replacen("/saml/sso", "/saml/ss0", 1),
        &pem,
        "urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor"
    ));
    assert_schema_valid(&page.body, SAML_XSD);
    let base = &sesam.server.state.config.public_url;
    assert_eq!(idp.entity_id, format!("{base}/saml/metadata"));
    assert!(page
        .body
        .contains(&format!(r#"entityID="{base}/saml/metadata""#)));
    for binding in ["HTTP-Redirect", "HTTP-POST"] {
        assert!(page.body.contains(&format!(
            r#"<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:{binding}" Location="{base}/saml/sso"/>"#
        )));
    }
    assert!(page.body.contains("nameid-format:persistent"));
    assert!(page.body.contains(r#"use="signing""#) && page.body.contains(r#"use="encryption""#));
    assert!(page.body.contains("validUntil=") && page.body.contains("cacheDuration="));
    // Our own reader of SP metadata reads it too (same structure, other descriptor).
    assert!(page.body.contains("IDPSSODescriptor"));
    sesam.stop().await;
}

async fn passwordless_login_over_redirect_then_sso_over_post_with_encryption(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    passwordless_on(&sesam).await;
    sesam
        .store()
        .set_setting("organisation_cvr", "29189099", sesam.now())
        .await
        .unwrap();
    sesam
        .store()
        .set_setting("organisation_name", "Testby Kommune", sesam.now())
        .await
        .unwrap();
    let (anna, app) = anna_with_app(&sesam).await;
    let plain = TestSp::new("plain.example.test");
    plain
        .register(
            &sesam,
            SpOptions {
                name: Some("Plain Service".into()),
                released_attributes: vec![
                    "uuid".into(),
                    "name".into(),
                    "email".into(),
                    "orgName".into(),
                    "cvr".into(),
                ],
                ..SpOptions::default()
            },
        )
        .await;
    let sealed = TestSp::new("sealed.example.test");
    sealed
        .register(
            &sesam,
            SpOptions {
                encrypt_assertions: true,
                require_signed_requests: true,
                released_attributes: vec!["uuid".into()],
                ..SpOptions::default()
            },
        )
        .await;
    let browser = sesam.browser();

    // Redirect binding, unsigned, a RelayState with characters that need escaping.
    let relay = "https://plain.example.test/app?x=1&y=\"2\"";
    let req = plain.request(&sesam);
    let first = browser.get(&plain.redirect(&req, Some(relay), None)).await;
    assert_eq!(first.location(), Some("/login"), "{}", first.body);
    let page = passwordless(&browser, &app, "anna").await;
    let login = plain.accept(&sesam, &page, &req.id, Some(relay), false);
    // A third-party SP library given only Sesam's published metadata accepts the Response.
    let idp_metadata: samael::metadata::EntityDescriptor = browser
        .get("/saml/metadata")
        .await
        .body
        .parse()
        .expect("samael reads Sesam's metadata");
    let third_party = samael::service_provider::ServiceProvider {
        entity_id: Some(plain.entity_id.clone()),
        acs_url: Some(plain.acs.clone()),
        idp_metadata,
        allowed_signature_algorithms: Some(vec![
            samael::crypto::AllowedSignatureAlgorithm::RsaSha256,
        ]),
        ..Default::default()
    };
    let (_, response_xml, _) = form_post(&page);
    let assertion = third_party
        .parse_base64_response(&B64.encode(&response_xml), Some(&[req.id.as_str()]))
        .expect("samael's ServiceProvider accepts the Response");
    assert_eq!(
        assertion.subject.unwrap().name_id.unwrap().value,
        login.name_id
    );
    assert!(third_party
        .parse_base64_response(&B64.encode(&response_xml), Some(&["_another_request"]))
        .is_err());
    assert_eq!(login.loa, LOA_SUBSTANTIAL);
    assert_eq!(
        login.attributes["https://data.gov.dk/model/core/eid/professional/uuid/persistent"],
        vec![format!("urn:uuid:{}", anna.id.0)]
    );
    assert_eq!(
        login.attributes["https://data.gov.dk/model/core/eid/fullName"],
        vec!["Anna Andersen".to_owned()]
    );
    assert_eq!(
        login.attributes["https://data.gov.dk/model/core/eid/email"],
        vec!["anna@kommune.dk".to_owned()]
    );
    assert_eq!(
        login.attributes["https://data.gov.dk/model/core/eid/professional/orgName"],
        vec!["Testby Kommune".to_owned()]
    );
    assert_eq!(
        login.attributes["https://data.gov.dk/model/core/eid/professional/cvr"],
        vec!["29189099".to_owned()]
    );
    assert!((login.authn_instant - sesam.now().0).abs() <= 1);
    assert!(login.name_id.len() >= 32 && !login.name_id.contains(&anna.id.0));
    assert!(sesam
        .audit_events("anna")
        .await
        .contains(&"saml.response".to_string()));
    // The request is answered once: coming back to the continuation finds nothing waiting.
    assert_refused_page(
        &browser.get("/saml/sso/continue").await,
        StatusCode::BAD_REQUEST,
    );

    // POST binding, signed, to an SP that gets encrypted assertions: the session is reused.
    let req2 = sealed.request(&sesam);
    let posted = post_sso(&browser, &sealed.post_fields(&req2, Some("opaque"), true)).await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
    let handover = posted.location().unwrap().to_owned();
    assert!(handover.starts_with("/saml/sso/continue?r="));
    let page = browser.get(&handover).await;
    let second = sealed.accept(&sesam, &page, &req2.id, Some("opaque"), true);
    assert_eq!(second.loa, LOA_SUBSTANTIAL);
    assert_eq!(
        second.session_index, login.session_index,
        "one login, two SPs"
    );
    assert_ne!(second.name_id, login.name_id, "a pseudonym per SP");
    assert_eq!(second.attributes.len(), 3, "specVersion, loa and uuid only");
    assert_eq!(
        sesam
            .store()
            .saml_participants(&login.session_index)
            .await
            .unwrap()
            .len(),
        2
    );
    // The handover is single-use.
    assert_refused_page(&browser.get(&handover).await, StatusCode::BAD_REQUEST);

    // The same user at the first SP again: the same persistent NameID.
    let req3 = plain.request(&sesam);
    let again = browser.get(&plain.redirect(&req3, None, None)).await;
    let third = plain.accept(&sesam, &again, &req3.id, None, false);
    assert_eq!(third.name_id, login.name_id);
    sesam.stop().await;
}

async fn passwordless_login_over_post_with_signed_request_then_signed_redirect(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    passwordless_on(&sesam).await;
    let (_anna, app) = anna_with_app(&sesam).await;
    let sp = TestSp::new("signed.example.test");
    sp.register(
        &sesam,
        SpOptions {
            encrypt_assertions: true,
            require_signed_requests: true,
            ..SpOptions::default()
        },
    )
    .await;
    let browser = sesam.browser();

    // The cross-site POST carries no cookie; the handover continues on a GET that has one.
    let mut req = sp.request(&sesam);
    req.acs_url = None;
    req.acs_index = Some(1);
    let posted = post_sso(&sesam.browser(), &sp.post_fields(&req, None, true)).await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
    let to_login = browser.get(posted.location().unwrap()).await;
    assert_eq!(to_login.location(), Some("/login"));
    let page = passwordless(&browser, &app, "anna").await;
    let (action, _, _) = form_post(&page);
    assert_eq!(action, sp.second_acs(), "the ACS chosen by index");

    // A signed Redirect request, answered from the session.
    let req = sp.request(&sesam);
    let page = browser
        .get(&sp.redirect(&req, Some("r"), Some(RSA_SHA256)))
        .await;
    let login = sp.accept(&sesam, &page, &req.id, Some("r"), true);
    assert_eq!(login.loa, LOA_SUBSTANTIAL);
    sesam.stop().await;
}

async fn bad_requests_get_the_right_answer(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let sp = TestSp::new("sp.example.test");
    sp.register(&sesam, SpOptions::default()).await;
    let strict = TestSp::new("strict.example.test");
    strict
        .register(
            &sesam,
            SpOptions {
                require_signed_requests: true,
                ..SpOptions::default()
            },
        )
        .await;
    let off = TestSp::new("off.example.test");
    off.register(
        &sesam,
        SpOptions {
            enabled: false,
            ..SpOptions::default()
        },
    )
    .await;
    let stranger = TestSp::new("stranger.example.test");
    let browser = sesam.browser();
    let get = |path: String| {
        let browser = &browser;
        async move { browser.get(&path).await }
    };

    // Unknown and disabled SPs: a page, never a redirect.
    let page = get(stranger.redirect(&stranger.request(&sesam), None, None)).await;
    assert_refused_page(&page, StatusCode::FORBIDDEN);
    let page = get(off.redirect(&off.request(&sesam), None, None)).await;
    assert_refused_page(&page, StatusCode::FORBIDDEN);
    let mut no_issuer = sp.request(&sesam);
    no_issuer.issuer = String::new();
    assert!(get(sp.redirect(&no_issuer, None, None))
        .await
        .status
        .is_client_error());

    // An ACS the metadata does not list, by URL or index.
    let mut r = sp.request(&sesam);
    r.acs_url = Some("https://evil.example.test/acs".into());
    assert_refused_page(
        &get(sp.redirect(&r, None, None)).await,
        StatusCode::BAD_REQUEST,
    );
    r.acs_url = None;
    r.acs_index = Some(7);
    assert_refused_page(
        &get(sp.redirect(&r, None, None)).await,
        StatusCode::BAD_REQUEST,
    );

    // Signatures: missing when required, by another key, over changed content, SHA-1.
    const UNSIGNED: &str = "ikke signeret, men tjenesten skal signere";
    const BAD_SIGNATURE: &str = "passer ikke med den nøgle";
    const SHA1_REFUSED: &str = "signeret med SHA-1";
    const UNKNOWN_ALGORITHM: &str = "ukendt eller ikke understøttet algoritme";
    let r = strict.request(&sesam);
    assert_refused_because(&get(strict.redirect(&r, None, None)).await, UNSIGNED);
    let foreign = IdpKey::generate("foreign", 30).unwrap();
    let path = redirect_path(
        &strict.xml(&strict.request(&sesam), false),
        None,
        Some((&foreign, RSA_SHA256)),
    );
    assert_refused_because(&get(path).await, BAD_SIGNATURE);
    // At an SP that may send unsigned requests, a signature it does send must still hold,
    // and each failure says what is wrong.
    let path = redirect_path(
        &sp.xml(&sp.request(&sesam), false),
        None,
        Some((&foreign, RSA_SHA256)),
    );
    assert_refused_because(&get(path).await, BAD_SIGNATURE);
    let sha1 = sp.redirect(&sp.request(&sesam), None, Some(RSA_SHA1));
    assert_refused_because(&get(sha1).await, SHA1_REFUSED);
    let unknown = sp.redirect(&sp.request(&sesam), None, Some("urn:example:no-such-alg"));
    assert_refused_because(&get(unknown).await, UNKNOWN_ALGORITHM);
    let good = strict.redirect(&strict.request(&sesam), Some("a"), Some(RSA_SHA256));
    assert_refused_page(
        &get(good.replacen("RelayState=a", "RelayState=b", 1)).await,
        StatusCode::FORBIDDEN,
    );
    let sha1 = strict.redirect(&strict.request(&sesam), None, Some(RSA_SHA1));
    assert_refused_because(&get(sha1).await, SHA1_REFUSED);
    let fields = strict.post_fields(&strict.request(&sesam), None, false);
    assert_refused_because(&post_sso(&browser, &fields).await, UNSIGNED);
    let signed = sign_enveloped(&strict.xml(&strict.request(&sesam), true), &foreign);
    assert_refused_because(
        &post_sso(&browser, &post_fields(&signed, None)).await,
        BAD_SIGNATURE,
    );
    // A signed POST request changed after signing, and wrapped inside another request.
    let r = strict.request(&sesam);
    let signed = sign_enveloped(&strict.xml(&r, true), &strict.signing);
    let changed = signed.replacen(&strict.acs, &strict.second_acs(), 1);
    assert_refused_page(
        &post_sso(&browser, &post_fields(&changed, None)).await,
        StatusCode::FORBIDDEN,
    );
    let wrapped = format!(
        concat!(
            r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#,
            r#" ID="_evil" Version="2.0" IssueInstant="{ii}" AssertionConsumerServiceURL="{acs}">"#,
            "<saml:Issuer>{issuer}</saml:Issuer><samlp:Extensions>{signed}</samlp:Extensions></samlp:AuthnRequest>"
        ),
        ii = instant(sesam.now().0),
        acs = strict.acs,
        issuer = strict.entity_id,
        signed = signed.trim_start_matches(|c| c != '>').trim_start_matches('>'),
    );
    // Said as what it is: a structure signed requests may not have, not a bad key.
    assert_refused_because(
        &post_sso(&browser, &post_fields(&wrapped, None)).await,
        "bygget op på en måde, som signaturer ikke må have",
    );
    // The untouched signed request is accepted.
    let page = post_sso(&browser, &post_fields(&signed, None)).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);

    // Times and Destination are answered to the SP's ACS.
    let mut r = sp.request(&sesam);
    r.issue_instant -= 600;
    assert_eq!(
        sp.refused(&get(sp.redirect(&r, None, None)).await, &r.id),
        "RequestDenied"
    );
    let mut r = sp.request(&sesam);
    r.issue_instant += 600;
    assert_eq!(
        sp.refused(&get(sp.redirect(&r, None, None)).await, &r.id),
        "RequestDenied"
    );
    let mut r = sp.request(&sesam);
    r.destination = Some("https://other-idp.example.test/sso".into());
    let page = get(sp.redirect(&r, None, None)).await;
    assert_eq!(sp.refused(&page, &r.id), "RequestDenied");
    let message = status_message(&response_xml(&page)).expect("a StatusMessage");
    assert!(!message.contains("Some("), "{message}");
    assert!(
        message.starts_with("Destination https://other-idp.example.test/sso does not match"),
        "{message}"
    );

    // Another SAML version: the top-level VersionMismatch alone, and a schema-valid Response.
    let r = sp.request(&sesam);
    let v11 = sp
        .xml(&r, false)
        .replacen(r#"Version="2.0""#, r#"Version="1.1""#, 1);
    let page = get(redirect_path(&v11, None, None)).await;
    assert_eq!(sp.refused(&page, &r.id), "VersionMismatch");
    let xml = response_xml(&page);
    assert_eq!(xml.matches("<samlp:StatusCode ").count(), 1, "{xml}");
    let mut r = sp.request(&sesam);
    r.name_id_format = Some("urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos");
    assert_eq!(
        sp.refused(&get(sp.redirect(&r, None, None)).await, &r.id),
        "InvalidNameIDPolicy"
    );

    // A replayed request ID.
    let r = sp.request(&sesam);
    let first = get(sp.redirect(&r, None, None)).await;
    assert_eq!(first.location(), Some("/login"));
    let replay = get(sp.redirect(&r, None, None)).await;
    assert_eq!(sp.refused(&replay, &r.id), "RequestDenied");
    let replay = post_sso(&browser, &sp.post_fields(&r, None, false)).await;
    assert_eq!(sp.refused(&replay, &r.id), "RequestDenied");

    // What cannot be read at all: a page.
    let r = sp.request(&sesam);
    let doctype = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]>{}",
        sp.xml(&r, false)
    );
    assert_refused_page(
        &get(redirect_path(&doctype, None, None)).await,
        StatusCode::BAD_REQUEST,
    );
    assert_refused_page(
        &post_sso(&browser, &post_fields(&doctype, None)).await,
        StatusCode::BAD_REQUEST,
    );
    let bomb = deflate(&vec![b' '; 10 * 1024 * 1024]);
    let page = get(redirect_path_raw(&B64.encode(&bomb), None, None)).await;
    assert!(page.status.is_client_error(), "{}", page.status);
    assert!(!page.body.contains("SAMLResponse"));
    assert_refused_page(
        &get("/saml/sso?SAMLRequest=%%%not-base64!!".into()).await,
        StatusCode::BAD_REQUEST,
    );
    assert_refused_page(
        &get(redirect_path_raw("bm90IGRlZmxhdGU=", None, None)).await,
        StatusCode::BAD_REQUEST,
    );
    assert_refused_page(&get("/saml/sso".into()).await, StatusCode::BAD_REQUEST);
    assert_refused_page(
        &get("/saml/sso?SAMLRequest=a&SAMLRequest=b".into()).await,
        StatusCode::BAD_REQUEST,
    );
    let long_relay = "x".repeat(2000);
    assert_refused_page(
        &get(sp.redirect(&sp.request(&sesam), Some(&long_relay), None)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    assert_refused_page(
        &post_sso(
            &browser,
            &sp.post_fields(&sp.request(&sesam), Some(&long_relay), false),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    assert_refused_page(
        &post_sso(
            &browser,
            &[("SAMLRequest".to_owned(), "!!not base64!!".to_owned())],
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    assert_refused_page(
        &browser
            .post_raw(
                "/saml/sso",
                "application/x-www-form-urlencoded",
                b"SAMLRequest=%FF%FE".to_vec(),
            )
            .await,
        StatusCode::BAD_REQUEST,
    );
    assert_refused_page(
        &browser
            .post_raw(
                "/saml/sso",
                "text/xml",
                sp.xml(&sp.request(&sesam), false).into_bytes(),
            )
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    assert_refused_page(
        &browser
            .post_raw(
                "/saml/sso",
                "application/x-www-form-urlencoded",
                format!("SAMLRequest={}", "A".repeat(200_000)).into_bytes(),
            )
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    let not_authn = B64.encode(br#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_x" Version="2.0" IssueInstant="2026-01-01T00:00:00Z"/>"#);
    assert_refused_page(
        &post_sso(&browser, &[("SAMLRequest".to_owned(), not_authn)]).await,
        StatusCode::BAD_REQUEST,
    );
    // Continuations without a request waiting.
    for path in [
        "/saml/sso/continue?r=0123456789abcdef0123456789abcdef",
        "/saml/sso/continue?r=../../etc",
        "/saml/sso/continue",
    ] {
        assert_refused_page(&sesam.browser().get(path).await, StatusCode::BAD_REQUEST);
    }
    sesam.stop().await;
}

async fn force_authn_is_passive_step_up_and_high(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let (_anna, app) = anna_with_app(&sesam).await;
    let sp = TestSp::new("levels.example.test");
    sp.register(&sesam, SpOptions::default()).await;
    let browser = sesam.browser();

    // IsPassive without a session: NoPassive, at once.
    let mut r = sp.request(&sesam);
    r.passive = true;
    assert_eq!(
        sp.refused(&browser.get(&sp.redirect(&r, None, None)).await, &r.id),
        "NoPassive"
    );
    // High is refused before any login.
    let mut r = sp.request(&sesam);
    r.context = Some(("exact", vec![LOA_HIGH]));
    assert_eq!(
        sp.refused(&browser.get(&sp.redirect(&r, None, None)).await, &r.id),
        "NoAuthnContext"
    );
    let mut r = sp.request(&sesam);
    r.context = Some(("better", vec![LOA_SUBSTANTIAL]));
    assert_eq!(
        sp.refused(&browser.get(&sp.redirect(&r, None, None)).await, &r.id),
        "NoAuthnContext"
    );

    // A password login gives Low.
    let r = sp.request(&sesam);
    let start = browser.get(&sp.redirect(&r, None, None)).await;
    assert_eq!(start.location(), Some("/login"));
    let answer = browser.log_in("anna", PASSWORD).await;
    let page = follow(&browser, answer).await;
    let low = sp.accept(&sesam, &page, &r.id, None, false);
    assert_eq!(low.loa, LOA_LOW);

    // IsPassive with a session that suffices: answered without a page.
    let mut r = sp.request(&sesam);
    r.passive = true;
    r.context = Some(("minimum", vec![LOA_LOW]));
    let page = browser.get(&sp.redirect(&r, None, None)).await;
    assert_eq!(sp.accept(&sesam, &page, &r.id, None, false).loa, LOA_LOW);
    // IsPassive asking for more than the session has: NoPassive.
    let mut r = sp.request(&sesam);
    r.passive = true;
    r.context = Some(("minimum", vec![LOA_SUBSTANTIAL]));
    assert_eq!(
        sp.refused(&browser.get(&sp.redirect(&r, None, None)).await, &r.id),
        "NoPassive"
    );

    // Substantial asked for: the app steps the password login up.
    let mut r = sp.request(&sesam);
    r.context = Some(("minimum", vec![LOA_SUBSTANTIAL, LOA_HIGH]));
    let start = browser.get(&sp.redirect(&r, None, None)).await;
    assert_eq!(start.location(), Some("/login/step-up"));
    let wait = follow(&browser, start).await;
    approve(&app, code_on(&wait)).await;
    let page = follow(&browser, browser.get("/login/complete").await).await;
    let stepped = sp.accept(&sesam, &page, &r.id, None, false);
    assert_eq!(stepped.loa, LOA_SUBSTANTIAL);
    assert_eq!(
        stepped.session_index, low.session_index,
        "the same login, stepped up"
    );

    // ForceAuthn: the session is not reused; a new login is, with a new AuthnInstant.
    sesam.clock.advance(30);
    let mut r = sp.request(&sesam);
    r.force = true;
    let start = browser.get(&sp.redirect(&r, None, None)).await;
    assert_eq!(start.location(), Some("/login"), "{}", start.body);
    let answer = browser.log_in("anna", PASSWORD).await;
    let page = follow(&browser, answer).await;
    let fresh = sp.accept(&sesam, &page, &r.id, None, false);
    assert_eq!(fresh.authn_instant, sesam.now().0);
    assert!(fresh.authn_instant > stepped.authn_instant);
    assert_ne!(fresh.session_index, low.session_index);
    assert_eq!(fresh.name_id, low.name_id);

    // An SP whose minimum is Substantial steps a password login up too.
    let strict = TestSp::new("substantial.example.test");
    strict
        .register(
            &sesam,
            SpOptions {
                min_level: sesam_core::AssuranceLevel::Substantial,
                ..SpOptions::default()
            },
        )
        .await;
    let r = strict.request(&sesam);
    let start = browser.get(&strict.redirect(&r, None, None)).await;
    assert_eq!(start.location(), Some("/login/step-up"));
    let wait = follow(&browser, start).await;
    approve(&app, code_on(&wait)).await;
    let page = follow(&browser, browser.get("/login/complete").await).await;
    assert_eq!(
        strict.accept(&sesam, &page, &r.id, None, false).loa,
        LOA_SUBSTANTIAL
    );
    sesam.stop().await;
}

fn sesam_cli(db: &TestDb, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sesam"))
        .args(args)
        .env_remove("SESAM_CONFIG")
        .env("SESAM_DATABASE_URL", &db.url)
        .output()
        .expect("run sesam");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn sp_cli_adds_lists_updates_and_removes(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let sp = TestSp::new("cli.example.test");
    let file = dir.path().join("sp.xml");
    std::fs::write(&file, sp.metadata(false)).unwrap();
    let file = file.to_str().unwrap();

    // A new installation: the database is made first (the admin commands never make one).
    let (ok, _, err) = sesam_cli(&db, &["migrate"]);
    assert!(ok, "{err}");
    let (ok, out, err) = sesam_cli(&db, &["sp", "add", "--metadata", file, "--encrypt"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("added https://cli.example.test/shibboleth"),
        "{out}"
    );
    let (ok, out, err) = sesam_cli(
        &db,
        &[
            "sp",
            "add",
            "--metadata",
            file,
            "--name",
            "Sagssystem",
            "--min-level",
            "substantial",
            "--require-signed-requests",
            "--attributes",
            "uuid,email",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("updated"), "{out}");
    let (ok, out, _) = sesam_cli(&db, &["sp", "list"]);
    assert!(ok);
    assert!(
        out.contains("https://cli.example.test/shibboleth  Sagssystem"),
        "{out}"
    );
    assert!(out.contains("min-level=substantial") && out.contains("signed-requests"));
    assert!(out.contains("attributes=uuid,email") && !out.contains("encrypt"));

    // Bad metadata and bad options: a clear error, nothing stored or changed.
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let cases = [
        (write("text.xml", "this is not XML"), "not well-formed"),
        (
            write(
                "root.xml",
                r#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"/>"#,
            ),
            "root element",
        ),
        (
            write(
                "doctype.xml",
                &format!(
                    "<!DOCTYPE x [<!ENTITY a \"a\">]>{}",
                    sp.metadata(false)
                        .replace(r#"<?xml version="1.0" encoding="UTF-8"?>"#, "")
                ),
            ),
            "DOCTYPE",
        ),
        (
            write("big.xml", &format!("<x>{}</x>", "a".repeat(300 * 1024))),
            "larger than",
        ),
        (write("binary.xml", "\u{0}\u{1}"), "not"),
    ];
    for (path, want) in &cases {
        let (ok, _, err) = sesam_cli(&db, &["sp", "add", "--metadata", path]);
        assert!(!ok);
        assert!(err.contains(want), "{path}: {err}");
    }
    let (ok, _, err) = sesam_cli(&db, &["sp", "add", "--metadata", "/no/such/file.xml"]);
    assert!(!ok && err.contains("/no/such/file.xml"), "{err}");
    let (ok, _, err) = sesam_cli(
        &db,
        &["sp", "add", "--metadata", file, "--min-level", "high"],
    );
    assert!(!ok && err.contains("min-level"), "{err}");
    let (ok, _, err) = sesam_cli(
        &db,
        &["sp", "add", "--metadata", file, "--attributes", "cpr"],
    );
    assert!(!ok && err.contains("unknown attribute"), "{err}");
    let (ok, _, err) = sesam_cli(
        &db,
        &["sp", "add", "--metadata", "http://127.0.0.1:9/metadata"],
    );
    assert!(!ok && err.contains("127.0.0.1:9"), "{err}");
    let (_, out, _) = sesam_cli(&db, &["sp", "list"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("Sagssystem"), "unchanged: {out}");

    // From a URL: fetched, kept for a refresh; a document over the size cap is refused.
    let served = std::sync::Arc::new(std::sync::Mutex::new(sp.metadata(false)));
    let current = served.clone();
    let app = axum::Router::new()
        .route(
            "/metadata.xml",
            axum::routing::get(move || {
                let current = current.clone();
                async move { current.lock().unwrap().clone() }
            }),
        )
        .route(
            "/big.xml",
            axum::routing::get(|| async { format!("<x>{}</x>", "a".repeat(300 * 1024)) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = format!("http://{addr}/metadata.xml");
    let run = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        tokio::task::block_in_place(|| sesam_cli(&db, &refs))
    };
    let (ok, _, err) = run(vec![
        "sp".into(),
        "add".into(),
        "--metadata".into(),
        format!("http://{addr}/big.xml"),
    ]);
    assert!(!ok && err.contains("larger than"), "{err}");
    let (ok, _, err) = run(vec![
        "sp".into(),
        "add".into(),
        "--metadata".into(),
        format!("http://{addr}/missing.xml"),
    ]);
    assert!(!ok && err.contains("404"), "{err}");
    let other = TestSp::new("url.example.test");
    *served.lock().unwrap() = other.metadata(false);
    let (ok, out, err) = run(vec![
        "sp".into(),
        "add".into(),
        "--metadata".into(),
        url.clone(),
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("added https://url.example.test/shibboleth"),
        "{out}"
    );
    let store = db.store().await;
    let stored = store
        .saml_sp("https://url.example.test/shibboleth")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.metadata_url.as_deref(), Some(url.as_str()));
    // The SP rolls its signing key: a refresh picks it up; metadata naming another entity
    // is refused and changes nothing.
    let rolled = TestSp::new("url.example.test");
    *served.lock().unwrap() = rolled.metadata(true);
    let refresh = || {
        run(vec![
            "sp".into(),
            "refresh".into(),
            "https://url.example.test/shibboleth".into(),
        ])
    };
    let (ok, out, err) = refresh();
    assert!(ok && out.contains("refreshed"), "{err}");
    let after = store
        .saml_sp("https://url.example.test/shibboleth")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.metadata_xml, rolled.metadata(true));
    assert_eq!(after.created_at, stored.created_at);
    *served.lock().unwrap() = sp.metadata(false);
    let (ok, _, err) = refresh();
    assert!(!ok && err.contains("nothing changed"), "{err}");
    assert_eq!(
        store
            .saml_sp("https://url.example.test/shibboleth")
            .await
            .unwrap()
            .unwrap()
            .metadata_xml,
        rolled.metadata(true)
    );
    store.close().await;
    let (ok, _, err) = sesam_cli(
        &db,
        &["sp", "refresh", "https://cli.example.test/shibboleth"],
    );
    assert!(!ok && err.contains("not added from a URL"), "{err}");
    sesam_cli(
        &db,
        &["sp", "remove", "https://url.example.test/shibboleth"],
    );

    let (ok, out, _) = sesam_cli(
        &db,
        &["sp", "remove", "https://cli.example.test/shibboleth"],
    );
    assert!(ok && out.contains("removed"));
    let (ok, _, err) = sesam_cli(
        &db,
        &["sp", "remove", "https://cli.example.test/shibboleth"],
    );
    assert!(!ok && err.contains("no service provider"));
    let (_, out, _) = sesam_cli(&db, &["sp", "list"]);
    assert!(out.trim().is_empty());
}

/// Password login at `sp` (no session yet) over the Redirect binding.
async fn password_login_at(sesam: &TestServer, browser: &Browser, sp: &TestSp) -> Login {
    let r = sp.request(sesam);
    let start = browser.get(&sp.redirect(&r, None, None)).await;
    assert_eq!(start.location(), Some("/login"));
    let page = follow(browser, browser.log_in("anna", PASSWORD).await).await;
    sp.accept(sesam, &page, &r.id, None, false)
}

/// Checks a LogoutResponse delivered over HTTP-Redirect (signature over the query) and
/// returns its status codes joined with a space.
/// Checks a message delivered over HTTP-Redirect to `to` (signature over the query with
/// Sesam's key) and returns its XML.
fn redirect_message(sesam: &TestServer, to: &str, page: &Page, param: &str) -> String {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let location = page.location().unwrap();
    let (endpoint, query) = location.split_once('?').unwrap();
    assert_eq!(endpoint, to);
    let signed = &query[..query.find("&Signature=").unwrap()];
    let value = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .map(|v| {
                reqwest::Url::parse(&format!("http://x/?v={v}"))
                    .unwrap()
                    .query_pairs()
                    .next()
                    .unwrap()
                    .1
                    .into_owned()
            })
            .unwrap()
    };
    assert_eq!(value("SigAlg"), RSA_SHA256);
    assert!(signed.contains("&SigAlg="));
    let signature = B64.decode(value("Signature").replace(' ', "+")).unwrap();
    let idp = &sesam.server.state.saml;
    let public = openssl::x509::X509::from_der(idp.key.certificate().der())
        .unwrap()
        .public_key()
        .unwrap();
    let mut verifier = openssl::sign::Verifier::new(MessageDigest::sha256(), &public).unwrap();
    verifier.update(signed.as_bytes()).unwrap();
    assert!(
        verifier.verify(&signature).unwrap(),
        "the query signature verifies"
    );
    let deflated = B64.decode(value(param).replace(' ', "+")).unwrap();
    let mut xml = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::DeflateDecoder::new(&deflated[..]),
        &mut xml,
    )
    .unwrap();
    assert_schema_valid(&xml, SAML_XSD);
    xml
}

fn redirect_logout_response(
    sesam: &TestServer,
    sp: &TestSp,
    page: &Page,
    request_id: &str,
) -> String {
    let xml = redirect_message(sesam, &sp.slo(), page, "SAMLResponse");
    let response: samael::schema::LogoutResponse = xml.parse().expect("samael reads it");
    assert_eq!(response.in_response_to.as_deref(), Some(request_id));
    assert_eq!(response.destination.as_deref(), Some(sp.slo().as_str()));
    assert_eq!(
        response.issuer.and_then(|i| i.value).as_deref(),
        Some(sesam.server.state.saml.entity_id.as_str())
    );
    statuses(&xml)
}

fn statuses(xml: &str) -> String {
    xml.split("<samlp:StatusCode Value=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().rsplit(':').next().unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn single_logout_ends_the_session_and_answers_the_sp(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let (_anna, _app) = anna_with_app(&sesam).await;
    let a = TestSp::new("a.example.test");
    a.register(&sesam, SpOptions::default()).await;
    let mut b = TestSp::new("b.example.test");
    b.slo_post = true;
    b.register(&sesam, SpOptions::default()).await;
    let browser = sesam.browser();
    let at_a = password_login_at(&sesam, &browser, &a).await;
    let r = b.request(&sesam);
    let at_b = b.accept(
        &sesam,
        &browser.get(&b.redirect(&r, None, None)).await,
        &r.id,
        None,
        false,
    );
    let slo = |xml: &str, signer: Option<(&IdpKey, &str)>| {
        format!(
            "/saml/slo?{}",
            signed_query(&B64.encode(deflate(xml.as_bytes())), Some("back"), signer)
        )
    };
    let id = || format!("_{}", uuid::Uuid::new_v4().simple());
    let still_signed_in =
        |page: Page| assert_eq!(page.status, StatusCode::OK, "{:?}", page.location());

    // Refused without ending the session: unsigned, foreign key, unknown SP, garbage.
    let xml = a.logout_xml(&sesam, &id(), &at_a.name_id, &at_a.session_index, false);
    assert_refused_page(&browser.get(&slo(&xml, None)).await, StatusCode::FORBIDDEN);
    let foreign = IdpKey::generate("foreign", 30).unwrap();
    assert_refused_page(
        &browser.get(&slo(&xml, Some((&foreign, RSA_SHA256)))).await,
        StatusCode::FORBIDDEN,
    );
    let stranger = TestSp::new("stranger.example.test");
    let xml = stranger.logout_xml(&sesam, &id(), "x", "y", false);
    assert_refused_page(
        &browser
            .get(&slo(&xml, Some((&stranger.signing, RSA_SHA256))))
            .await,
        StatusCode::FORBIDDEN,
    );
    assert_refused_page(
        &browser.get("/saml/slo?SAMLRequest=%%%garbage").await,
        StatusCode::BAD_REQUEST,
    );
    assert_refused_page(
        &browser
            .get(&slo(
                &a.xml(&a.request(&sesam), false),
                Some((&a.signing, RSA_SHA256)),
            ))
            .await,
        StatusCode::BAD_REQUEST,
    );
    // Signed, but naming another user's NameID: answered RequestDenied, session kept.
    let other = id();
    let xml = a.logout_xml(&sesam, &other, "someone-else", &at_a.session_index, false);
    let page = browser
        .get(&slo(&xml, Some((&a.signing, RSA_SHA256))))
        .await;
    assert_eq!(
        redirect_logout_response(&sesam, &a, &page, &other),
        "Requester RequestDenied"
    );
    still_signed_in(browser.get("/account").await);

    // The real thing: the session ends, b (HTTP-POST) is told and confirms, then a is answered.
    let request_id = id();
    let xml = a.logout_xml(
        &sesam,
        &request_id,
        &at_a.name_id,
        &at_a.session_index,
        false,
    );
    let path = slo(&xml, Some((&a.signing, RSA_SHA256)));
    let to_b = browser.get(&path).await;
    assert_eq!(browser.get("/account").await.location(), Some("/login"));
    let (action, told, _) = form_field(&to_b, "SAMLRequest");
    assert_schema_valid(&told, SAML_XSD);
    assert_eq!(action, b.slo());
    let pem = sesam.server.state.saml.key.certificate().to_pem().unwrap();
    assert!(xmlsec1_verifies(
        &told,
        &pem,
        "urn:oasis:names:tc:SAML:2.0:protocol:LogoutRequest"
    ));
    assert!(told.contains(&format!(
        "<samlp:SessionIndex>{}</samlp:SessionIndex>",
        at_a.session_index
    )));
    let told: samael::schema::LogoutRequest = told.parse().expect("samael reads it");
    assert_eq!(told.name_id.unwrap().value, at_b.name_id);
    assert_eq!(told.destination.as_deref(), Some(b.slo().as_str()));
    let answer = sign_enveloped(
        &b.logout_response_xml(&sesam, told.id.as_deref().unwrap(), "Success", true),
        &b.signing,
    );
    let posted = post_sso_to(
        &browser,
        "/saml/slo",
        &[("SAMLResponse".to_owned(), B64.encode(&answer))],
    )
    .await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
    let page = browser.get(posted.location().unwrap()).await;
    assert_eq!(
        redirect_logout_response(&sesam, &a, &page, &request_id),
        "Success"
    );
    assert!(page.location().unwrap().contains("&RelayState=back&"));
    assert_eq!(browser.get("/account").await.location(), Some("/login"));
    assert!(sesam
        .audit_events("anna")
        .await
        .contains(&"saml.logout".to_string()));
    let mut passive = a.request(&sesam);
    passive.passive = true;
    assert_eq!(
        a.refused(
            &browser.get(&a.redirect(&passive, None, None)).await,
            &passive.id
        ),
        "NoPassive"
    );
    // The same request again is a replay.
    let page = browser.get(&path).await;
    assert_eq!(
        redirect_logout_response(&sesam, &a, &page, &request_id),
        "Requester RequestDenied"
    );

    // Over HTTP-POST from b: handed over to a GET, answered by a signed form xmlsec1 accepts.
    let at_b2 = password_login_at(&sesam, &browser, &b).await;
    assert_ne!(at_b2.session_index, at_b.session_index);
    let request_id = id();
    let xml = sign_enveloped(
        &b.logout_xml(
            &sesam,
            &request_id,
            &at_b2.name_id,
            &at_b2.session_index,
            true,
        ),
        &b.signing,
    );
    let posted = post_sso_to(
        &sesam.browser(),
        "/saml/slo",
        &post_fields(&xml, Some("rs")),
    )
    .await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
    let page = browser.get(posted.location().unwrap()).await;
    let (action, response, relay) = form_post(&page);
    assert_schema_valid(&response, SAML_XSD);
    assert_eq!(action, b.slo());
    assert_eq!(relay.as_deref(), Some("rs"));
    let pem = sesam.server.state.saml.key.certificate().to_pem().unwrap();
    assert!(xmlsec1_verifies(
        &response,
        &pem,
        "urn:oasis:names:tc:SAML:2.0:protocol:LogoutResponse"
    ));
    let parsed: samael::schema::LogoutResponse = response.parse().unwrap();
    assert_eq!(parsed.in_response_to.as_deref(), Some(request_id.as_str()));
    assert_eq!(statuses(&response), "Success");
    assert_eq!(browser.get("/account").await.location(), Some("/login"));
    // A POST LogoutRequest changed after signing is refused.
    let changed = sign_enveloped(
        &b.logout_xml(&sesam, &id(), &at_b2.name_id, &at_b2.session_index, true),
        &b.signing,
    )
    .replacen(&at_b2.name_id, "someone-else", 1);
    assert_refused_page(
        &post_sso_to(&browser, "/saml/slo", &post_fields(&changed, None)).await,
        StatusCode::FORBIDDEN,
    );
    assert_refused_page(
        &browser.get("/saml/slo/continue?r=00ff").await,
        StatusCode::BAD_REQUEST,
    );

    // c (HTTP-Redirect) is told by a signed redirect; its refusal makes the logout partial.
    let c = TestSp::new("c.example.test");
    c.register(&sesam, SpOptions::default()).await;
    let at_a3 = password_login_at(&sesam, &browser, &a).await;
    let r = c.request(&sesam);
    let at_c = c.accept(
        &sesam,
        &browser.get(&c.redirect(&r, None, None)).await,
        &r.id,
        None,
        false,
    );
    let request_id = id();
    let xml = a.logout_xml(
        &sesam,
        &request_id,
        &at_a3.name_id,
        &at_a3.session_index,
        false,
    );
    let to_c = browser
        .get(&slo(&xml, Some((&a.signing, RSA_SHA256))))
        .await;
    let told = redirect_message(&sesam, &c.slo(), &to_c, "SAMLRequest");
    assert!(told.contains(&at_c.name_id) && told.contains(&at_a3.session_index));
    let told_id = told
        .split(" ID=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let refusal = c.logout_response_xml(&sesam, told_id, "Responder", false);
    let back = format!(
        "/saml/slo?{}",
        signed_query_of(
            "SAMLResponse",
            &B64.encode(deflate(refusal.as_bytes())),
            None,
            Some((&c.signing, RSA_SHA256)),
        )
    );
    let page = browser.get(&back).await;
    assert_eq!(
        redirect_logout_response(&sesam, &a, &page, &request_id),
        "Success PartialLogout"
    );
    assert_eq!(browser.get("/account").await.location(), Some("/login"));
    // A LogoutResponse nobody waits for.
    assert_refused_page(&browser.get(&back).await, StatusCode::BAD_REQUEST);
    sesam.stop().await;
}

async fn logout_at_sesam_tells_the_service_providers(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let (_anna, _app) = anna_with_app(&sesam).await;
    let mut b = TestSp::new("b.example.test");
    b.slo_post = true;
    b.register(&sesam, SpOptions::default()).await;
    let browser = sesam.browser();
    let at_b = password_login_at(&sesam, &browser, &b).await;

    let csrf = browser.get("/logout").await.csrf();
    let page = browser.post_form("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(browser.get("/account").await.location(), Some("/login"));
    let (action, told, _) = form_field(&page, "SAMLRequest");
    assert_eq!(action, b.slo());
    let pem = sesam.server.state.saml.key.certificate().to_pem().unwrap();
    assert!(xmlsec1_verifies(
        &told,
        &pem,
        "urn:oasis:names:tc:SAML:2.0:protocol:LogoutRequest"
    ));
    let told: samael::schema::LogoutRequest = told.parse().expect("samael reads it");
    assert_eq!(told.name_id.unwrap().value, at_b.name_id);

    let answer = sign_enveloped(
        &b.logout_response_xml(&sesam, told.id.as_deref().unwrap(), "Success", true),
        &b.signing,
    );
    let posted = post_sso_to(
        &browser,
        "/saml/slo",
        &[("SAMLResponse".to_owned(), B64.encode(&answer))],
    )
    .await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
    let done = browser.get(posted.location().unwrap()).await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.body.contains("Du er logget ud"), "{}", done.body);
    // A second logout has nobody left to tell.
    assert_eq!(
        sesam.browser().get("/logout").await.location(),
        Some("/login")
    );
}

/// The key from a file signs, the next certificate is published ahead of a rollover, and
/// the organisation can require every SP to sign its requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_key_next_certificate_and_signed_requests_for_all() {
    let dir = tempfile::tempdir().unwrap();
    let current = IdpKey::generate("idp.example.test", 30).unwrap();
    let next = IdpKey::generate("idp.example.test next", 30).unwrap();
    let key_path = dir.path().join("saml.pem");
    let next_path = dir.path().join("next.crt");
    let mut pem = current.private_key_pem().unwrap();
    pem.extend_from_slice(&current.certificate_pem().unwrap());
    std::fs::write(&key_path, pem).unwrap();
    std::fs::write(&next_path, next.certificate_pem().unwrap()).unwrap();
    let db = TestDb::sqlite();
    let config = crate::harness::test_config_with(
        &db.url,
        &[
            ("SESAM_SAML_KEY_FILE", key_path.to_str().unwrap()),
            (
                "SESAM_SAML_NEXT_CERTIFICATE_FILE",
                next_path.to_str().unwrap(),
            ),
        ],
    );
    let sesam = TestServer::start_with(sesam_core::ManualClock::starting_now(), config).await;
    let page = sesam.browser().get("/saml/metadata").await;
    assert!(xmlsec1_verifies(
        &page.body,
        &current.certificate_pem().unwrap(),
        "urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor"
    ));
    assert!(page.body.contains(&current.certificate().to_base64()));
    assert!(page.body.contains(&next.certificate().to_base64()));
    assert!(page.body.contains(r#"WantAuthnRequestsSigned="false""#));
    assert_schema_valid(&page.body, SAML_XSD);

    sesam
        .store()
        .set_setting("saml_want_signed_requests", "true", sesam.now())
        .await
        .unwrap();
    let page = sesam.browser().get("/saml/metadata").await;
    assert!(page.body.contains(r#"WantAuthnRequestsSigned="true""#));
    let sp = TestSp::new("sp.example.test");
    sp.register(&sesam, SpOptions::default()).await;
    let browser = sesam.browser();
    let unsigned = sp.request(&sesam);
    assert_refused_page(
        &browser.get(&sp.redirect(&unsigned, None, None)).await,
        StatusCode::FORBIDDEN,
    );
    let signed = sp.request(&sesam);
    let page = browser
        .get(&sp.redirect(&signed, None, Some(RSA_SHA256)))
        .await;
    assert_eq!(page.location(), Some("/login"), "{}", page.body);
    sesam.stop().await;
}

/// Defects 2 and 5 of the login-flow issue: a must-change password let
/// `/saml/sso/continue` issue a signed Success, and a level the user cannot reach ended
/// on a Sesam page the SP never heard of.
async fn a_one_time_password_gates_the_response_and_an_unreachable_level_is_answered(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let sp = TestSp::new("gate.example.test");
    sp.register(&sesam, SpOptions::default()).await;
    sesam
        .store()
        .create_user(
            sesam_store::NewUser {
                username: sesam_core::Username::parse("bo").unwrap(),
                display_name: "Bo Berg".into(),
                email: None,
                password_hash: Some(sesam_server::password::hash_now(PASSWORD).unwrap()),
                is_admin: false,
                password_only: true,
                must_change_password: true,
            },
            sesam.now(),
        )
        .await
        .unwrap();
    let browser = sesam.browser();
    let r = sp.request(&sesam);
    let start = browser.get(&sp.redirect(&r, None, None)).await;
    assert_eq!(start.location(), Some("/login"));
    let answer = browser.log_in("bo", PASSWORD).await;
    assert_eq!(answer.location(), Some("/account/password"));
    // The attack: skip the change and ask for the Response.
    let skipped = browser.get("/saml/sso/continue").await;
    assert_eq!(skipped.location(), Some("/account/password"));
    assert!(!skipped.body.contains("SAMLResponse"));
    for path in ["/account", "/account/devices", "/admin"] {
        assert_eq!(
            browser.get(path).await.location(),
            Some("/account/password"),
            "{path} waits for the new password"
        );
    }
    let form = browser.get("/account/password").await;
    let new = "a brand new secret 42";
    let done = browser
        .post_form(
            "/account/password",
            &[
                ("csrf", &form.csrf()),
                ("current", PASSWORD),
                ("new", new),
                ("repeat", new),
            ],
        )
        .await;
    assert_eq!(done.location(), Some("/saml/sso/continue"), "{}", done.body);
    let page = follow(&browser, done).await;
    assert_eq!(sp.accept(&sesam, &page, &r.id, None, false).loa, LOA_LOW);

    // Substantial asked of a password-only user who is logged in: the SP hears at once.
    let mut r = sp.request(&sesam);
    r.context = Some(("minimum", vec![LOA_SUBSTANTIAL]));
    let page = follow(&browser, browser.get(&sp.redirect(&r, None, None)).await).await;
    assert_eq!(sp.refused(&page, &r.id), "NoAuthnContext");
    // ... and after a fresh password login in another browser, too.
    let other = sesam.browser();
    let mut r = sp.request(&sesam);
    r.context = Some(("minimum", vec![LOA_SUBSTANTIAL]));
    let start = other.get(&sp.redirect(&r, None, None)).await;
    assert_eq!(start.location(), Some("/login"));
    let answer = other.log_in("bo", new).await;
    let page = follow(&other, answer).await;
    assert_eq!(sp.refused(&page, &r.id), "NoAuthnContext");
    // The browser stays logged in at Low for what it can do.
    assert_eq!(other.get("/account").await.status, StatusCode::OK);
    sesam.stop().await;
}

// ---------------------------------------------------------------- per-SP choices

/// A browser in the admin portal: an administrator's password, then the app's approval.
async fn portal_admin(sesam: &TestServer) -> Browser {
    let boss = sesam
        .store()
        .create_user(
            sesam_store::NewUser {
                username: sesam_core::Username::parse("boss").unwrap(),
                display_name: "Bo Boss".into(),
                email: None,
                password_hash: Some(sesam_server::password::hash_now(PASSWORD).unwrap()),
                is_admin: true,
                password_only: false,
                must_change_password: false,
            },
            sesam.now(),
        )
        .await
        .unwrap();
    let (app, _) = sesam.enrol(&boss, EnrolOptions::default()).await;
    let browser = sesam.browser();
    browser.log_in("boss", PASSWORD).await;
    assert_eq!(
        browser.get("/admin").await.location(),
        Some("/login/step-up")
    );
    assert_eq!(
        browser.get("/login/step-up").await.location(),
        Some("/login/wait")
    );
    approve(&app, code_on(&browser.get("/login/wait").await)).await;
    assert_eq!(
        browser.get("/login/complete").await.location(),
        Some("/admin")
    );
    browser
}

/// A request from `sp` answered from the browser's session: what the SP read, and the XML.
async fn answered(
    sesam: &TestServer,
    browser: &Browser,
    sp: &TestSp,
    encrypted: bool,
) -> (Login, String) {
    let r = sp.request(sesam);
    let page = browser.get(&sp.redirect(&r, None, None)).await;
    let login = sp.accept(sesam, &page, &r.id, None, encrypted);
    (login, response_xml(&page))
}

fn algorithms(xml: &str) -> (&str, &str) {
    let (data, key) = encryption_algorithms(xml);
    (
        [AES256_GCM, AES128_CBC, AES256_CBC, "aes128-gcm"]
            .into_iter()
            .find(|a| *a == data)
            .unwrap_or_else(|| panic!("unexpected data encryption {data}")),
        [RSA_OAEP_MGF1P, RSA_OAEP_11]
            .into_iter()
            .find(|a| *a == key)
            .unwrap_or_else(|| panic!("unexpected key transport {key}")),
    )
}

async fn encryption_follows_the_sp_metadata_and_the_operator_overrides_it(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let (_anna, _app) = anna_with_app(&sesam).await;
    let encrypted = || SpOptions {
        encrypt_assertions: true,
        ..SpOptions::default()
    };
    // No EncryptionMethod list: mgf1p + AES-256-GCM, schema-valid with XML Encryption 1.0
    // and opened by xmlsec1 1.2 (both checked in `accept`).
    let unlisted = TestSp::new("unlisted.example.test");
    unlisted.register(&sesam, encrypted()).await;
    let mut oaep11 = TestSp::new("oaep11.example.test");
    oaep11.encryption_methods = vec![RSA_OAEP_11];
    oaep11.register(&sesam, encrypted()).await;
    let mut cbc = TestSp::new("cbc.example.test");
    cbc.encryption_methods = vec![AES128_CBC];
    cbc.register(&sesam, encrypted()).await;
    let mut both = TestSp::new("both.example.test");
    both.encryption_methods = vec![AES256_CBC, AES256_GCM, RSA_OAEP_11, RSA_OAEP_MGF1P];
    both.register(&sesam, encrypted()).await;

    let browser = sesam.browser();
    let r = unlisted.request(&sesam);
    let start = browser.get(&unlisted.redirect(&r, None, None)).await;
    assert_eq!(start.location(), Some("/login"));
    let page = follow(&browser, browser.log_in("anna", PASSWORD).await).await;
    unlisted.accept(&sesam, &page, &r.id, None, true);
    assert_eq!(
        algorithms(&response_xml(&page)),
        (AES256_GCM, RSA_OAEP_MGF1P)
    );
    let xml = response_xml(&page);
    // The element, not the letters: base64 cipher text contains "MGF" about one time in a hundred.
    assert!(!xml.contains(":MGF ") && !xml.contains("<MGF"), "{xml}");

    // Only xmlenc11 rsa-oaep listed: that (read by our own decryption; xmlsec1 1.2 cannot).
    let (_, xml) = answered(&sesam, &browser, &oaep11, true).await;
    assert_eq!(algorithms(&xml), (AES256_GCM, RSA_OAEP_11));
    // Only AES-128-CBC listed: the SP reads nothing better; xmlsec1 opens it.
    let (_, xml) = answered(&sesam, &browser, &cbc, true).await;
    assert_eq!(algorithms(&xml), (AES128_CBC, RSA_OAEP_MGF1P));
    // GCM is preferred to CBC listed before it; the first key transport listed is taken.
    let (_, xml) = answered(&sesam, &browser, &both, true).await;
    assert_eq!(algorithms(&xml), (AES256_GCM, RSA_OAEP_11));

    // The operator overrides the metadata with the CLI; `auto` goes back to it.
    let edit = |args: &[&str]| {
        let mut all = vec!["sp", "edit", oaep11.entity_id.as_str()];
        all.extend_from_slice(args);
        let answer = tokio::task::block_in_place(|| sesam_cli(&db, &all));
        if answer.0 && !db.is_postgres() {
            // The CLI is another process: on SQLite no notification reaches the server,
            // which sees the change once its cached registration is older than the maximum age.
            std::thread::sleep(sesam_store::CONFIG_CACHE_MAX_AGE);
        }
        answer
    };
    let (ok, out, err) = edit(&[
        "--key-transport",
        "rsa-oaep-mgf1p",
        "--data-encryption",
        "aes256-cbc",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("key transport rsa-oaep-mgf1p, data encryption aes256-cbc (weaker)"),
        "{out}"
    );
    let (_, xml) = answered(&sesam, &browser, &oaep11, true).await;
    assert_eq!(algorithms(&xml), (AES256_CBC, RSA_OAEP_MGF1P));
    // Bad values: a clear error naming the choices, nothing changed.
    for (flag, bad, want) in [
        (
            "--key-transport",
            "rsa-1_5",
            "choose auto, rsa-oaep-mgf1p or rsa-oaep",
        ),
        ("--data-encryption", "tripledes-cbc", "aes256-gcm"),
        ("--data-encryption", "", "aes256-gcm"),
        ("--sign", "everything", "assertion, response or both"),
        (
            "--nameid-format",
            "unspecified",
            "persistent, transient or emailAddress",
        ),
    ] {
        let (ok, _, err) = edit(&[flag, bad]);
        assert!(
            !ok && err.contains(want) && err.contains(flag),
            "{flag} {bad}: {err}"
        );
    }
    let (ok, _, err) = tokio::task::block_in_place(|| {
        sesam_cli(&db, &["sp", "edit", "https://nobody.example.test/sp"])
    });
    assert!(!ok && err.contains("no service provider"), "{err}");
    let stored = sesam
        .store()
        .saml_sp(&oaep11.entity_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.key_transport.as_deref(), Some("rsa-oaep-mgf1p"));
    assert_eq!(stored.data_encryption.as_deref(), Some("aes256-cbc"));
    let (ok, out, err) = edit(&["--key-transport", "auto", "--data-encryption", "auto"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("key transport rsa-oaep, data encryption aes256-gcm,"),
        "{out}"
    );
    let (_, xml) = answered(&sesam, &browser, &oaep11, true).await;
    assert_eq!(algorithms(&xml), (AES256_GCM, RSA_OAEP_11));

    // And in the portal: the SP's page shows what its assertions get, a form changes it.
    let admin = portal_admin(&sesam).await;
    let path = format!(
        "/admin/services/saml?entity_id={}",
        urlencode(&cbc.entity_id)
    );
    let page = admin.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page
        .body
        .contains(r#"<code id="sp-key-transport">rsa-oaep-mgf1p</code>"#));
    assert!(page
        .body
        .contains(r#"<code id="sp-data-encryption">aes128-cbc</code>"#));
    assert!(
        page.body.contains(r#"id="sp-weaker""#),
        "CBC is marked weaker"
    );
    let csrf = page.csrf();
    let save = |key_transport: &str, data_encryption: &str, signing: &str| {
        let fields = vec![
            ("csrf", csrf.clone()),
            ("entity_id", cbc.entity_id.clone()),
            ("action", "save".into()),
            ("name", "CBC".into()),
            ("min_level", "low".into()),
            ("enabled", "on".into()),
            ("encrypt", "on".into()),
            ("attribute", "uuid".into()),
            ("key_transport", key_transport.into()),
            ("data_encryption", data_encryption.into()),
            ("signing", signing.into()),
            ("nameid_format", "persistent".into()),
        ];
        let admin = &admin;
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            admin.post_form("/admin/services/saml", &pairs).await
        }
    };
    for (kt, de, sign) in [
        ("rsa-1_5", "auto", "assertion"),
        ("auto", "aes512-gcm", "assertion"),
        ("auto", "auto", "nothing"),
        ("auto\u{0}", "auto", "assertion"),
    ] {
        let refused = save(kt, de, sign).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{kt} {de} {sign}");
        assert!(
            refused.body.contains(r#"id="sp-problem""#),
            "{}",
            refused.body
        );
    }
    let unchanged = sesam
        .store()
        .saml_sp(&cbc.entity_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(unchanged.data_encryption, None);
    assert_eq!(unchanged.name, "cbc.example.test");
    let saved = save("rsa-oaep", "aes256-gcm", "assertion").await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let page = admin.get(&path).await;
    assert!(page
        .body
        .contains(r#"<code id="sp-key-transport">rsa-oaep</code>"#));
    assert!(page
        .body
        .contains(r#"<code id="sp-data-encryption">aes256-gcm</code>"#));
    assert!(!page.body.contains(r#"id="sp-weaker""#));
    let (_, xml) = answered(&sesam, &browser, &cbc, true).await;
    assert_eq!(algorithms(&xml), (AES256_GCM, RSA_OAEP_11));
    assert!(sesam
        .store()
        .list_audit(Some(&cbc.entity_id), 10)
        .await
        .unwrap()
        .iter()
        .any(
            |e| e.event == "saml.sp.changed" && e.detail.contains("key transport auto -> rsa-oaep")
        ));
    sesam.stop().await;
}

async fn name_id_formats_persistent_transient_email_and_unspecified(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let (_anna, _app) = anna_with_app(&sesam).await;
    let mut sp = TestSp::new("nameid.example.test");
    sp.slo_post = true;
    sp.register(&sesam, SpOptions::default()).await;
    let browser = sesam.browser();
    let persistent = password_login_at(&sesam, &browser, &sp).await;
    fn with_format(sp: &TestSp, sesam: &TestServer, format: Option<&'static str>) -> Req {
        let mut r = sp.request(sesam);
        r.name_id_format = format;
        r
    }

    // Unspecified and no policy at all: the SP's default, persistent, the same value.
    for format in [Some(NAMEID_UNSPECIFIED), None] {
        let r = with_format(&sp, &sesam, format);
        let page = browser.get(&sp.redirect(&r, None, None)).await;
        let login = sp.accept(&sesam, &page, &r.id, None, false);
        assert_eq!(login.name_id, persistent.name_id);
    }

    // Transient: a fresh random value in every assertion, never the persistent one.
    sp.name_id_format = NAMEID_TRANSIENT;
    let mut seen = vec![persistent.name_id.clone()];
    for _ in 0..2 {
        let r = with_format(&sp, &sesam, Some(NAMEID_TRANSIENT));
        let page = browser.get(&sp.redirect(&r, None, None)).await;
        let login = sp.accept(&sesam, &page, &r.id, None, false);
        assert!(!seen.contains(&login.name_id), "{} reused", login.name_id);
        assert!(login.name_id.len() >= 32, "{}", login.name_id);
        seen.push(login.name_id);
    }
    let participant = sesam
        .store()
        .saml_participants(&persistent.session_index)
        .await
        .unwrap();
    assert_eq!(participant.len(), 1);
    assert_eq!(
        participant[0].name_id, seen[2],
        "the latest, for the logout"
    );
    assert_eq!(participant[0].name_id_format, NAMEID_TRANSIENT);

    // emailAddress: the user's address, to an SP that is given it as attribute anyway.
    sp.name_id_format = NAMEID_EMAIL;
    let r = with_format(&sp, &sesam, Some(NAMEID_EMAIL));
    let page = browser.get(&sp.redirect(&r, None, None)).await;
    let login = sp.accept(&sesam, &page, &r.id, None, false);
    assert_eq!(login.name_id, "anna@kommune.dk");
    assert!(!response_xml(&page).contains("SPNameQualifier"));

    // Formats not offered: InvalidNameIDPolicy to the SP.
    for bad in [
        "urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos",
        "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName",
        "persistent",
        "",
    ] {
        let r = with_format(&sp, &sesam, Some(bad));
        let page = browser.get(&sp.redirect(&r, None, None)).await;
        assert_eq!(sp.refused(&page, &r.id), "InvalidNameIDPolicy", "{bad:?}");
    }

    // Logout at Sesam names the NameID (and format) the SP got last: here its email.
    let csrf = browser.get("/logout").await.csrf();
    let page = browser.post_form("/logout", &[("csrf", &csrf)]).await;
    let (_, told, _) = form_field(&page, "SAMLRequest");
    assert_schema_valid(&told, SAML_XSD);
    // (samael's schema types do not read the NameID's Format attribute.)
    assert!(
        told.contains(&format!(
            r#"<saml:NameID Format="{NAMEID_EMAIL}">anna@kommune.dk</saml:NameID>"#
        )),
        "{told}"
    );

    // An SP not given the email address may not ask for it as NameID.
    let mut private = TestSp::new("private.example.test");
    private
        .register(
            &sesam,
            SpOptions {
                released_attributes: vec!["uuid".into()],
                ..SpOptions::default()
            },
        )
        .await;
    let mut r = private.request(&sesam);
    r.name_id_format = Some(NAMEID_EMAIL);
    let page = sesam.browser().get(&private.redirect(&r, None, None)).await;
    assert_eq!(private.refused(&page, &r.id), "InvalidNameIDPolicy");
    assert!(
        status_message(&response_xml(&page))
            .unwrap()
            .contains("not offered"),
        "{}",
        response_xml(&page)
    );

    // A user without an email address: the SP hears InvalidNameIDPolicy after the login.
    sesam.add_user("bo", "Bo Bech", PASSWORD).await;
    let bo = sesam.browser();
    let r = with_format(&sp, &sesam, Some(NAMEID_EMAIL));
    assert_eq!(
        bo.get(&sp.redirect(&r, None, None)).await.location(),
        Some("/login")
    );
    let page = follow(&bo, bo.log_in("bo", PASSWORD).await).await;
    assert_eq!(sp.refused(&page, &r.id), "InvalidNameIDPolicy");
    assert!(status_message(&response_xml(&page))
        .unwrap()
        .contains("no email address"));

    // An SP registered with transient as its default gets it without asking.
    private.name_id_format = NAMEID_TRANSIENT;
    private
        .register(
            &sesam,
            SpOptions {
                released_attributes: vec!["uuid".into()],
                nameid_format: sesam_saml::NameIdFormat::Transient,
                ..SpOptions::default()
            },
        )
        .await;
    let mut r = private.request(&sesam);
    r.name_id_format = None;
    let page = bo.get(&private.redirect(&r, None, None)).await;
    private.accept(&sesam, &page, &r.id, None, false);
    sesam.stop().await;
}

async fn the_response_the_assertion_or_both_are_signed_per_sp(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let (_anna, _app) = anna_with_app(&sesam).await;
    let browser = sesam.browser();
    let mut first = true;
    for (signing, encrypt) in [
        (ResponseSigning::Response, false),
        (ResponseSigning::Both, false),
        (ResponseSigning::Both, true),
        (ResponseSigning::Response, true),
        (ResponseSigning::Assertion, false),
    ] {
        let host = format!("{}-{encrypt}.example.test", signing.name());
        let mut sp = TestSp::new(&host);
        sp.signs = signing;
        // An SP that wants signed assertions cannot be given only a signed Response.
        sp.want_assertions_signed = signing != ResponseSigning::Response;
        sp.register(
            &sesam,
            SpOptions {
                response_signing: signing,
                encrypt_assertions: encrypt,
                ..SpOptions::default()
            },
        )
        .await;
        let r = sp.request(&sesam);
        let mut page = browser.get(&sp.redirect(&r, None, None)).await;
        if first {
            page = follow(&browser, browser.log_in("anna", PASSWORD).await).await;
            first = false;
        }
        // `accept` checks each signature with xmlsec1 and samael, and its absence.
        sp.accept(&sesam, &page, &r.id, None, encrypt);
        if !encrypt {
            // samael's ServiceProvider, given only Sesam's metadata, accepts it too.
            let idp_metadata: samael::metadata::EntityDescriptor =
                browser.get("/saml/metadata").await.body.parse().unwrap();
            let third_party = samael::service_provider::ServiceProvider {
                entity_id: Some(sp.entity_id.clone()),
                acs_url: Some(sp.acs.clone()),
                idp_metadata,
                ..Default::default()
            };
            third_party
                .parse_base64_response(&B64.encode(response_xml(&page)), Some(&[r.id.as_str()]))
                .unwrap_or_else(|e| panic!("{signing:?}: {e:?}"));
        }
    }

    // The registration refuses a signed Response alone where the metadata asks for signed
    // assertions, and says why.
    let strict = TestSp::new("strict.example.test");
    let refused = sp_registration(
        strict.metadata(false).as_bytes(),
        None,
        &SpOptions {
            response_signing: ResponseSigning::Response,
            ..SpOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        format!("{refused:#}").contains("WantAssertionsSigned"),
        "{refused:#}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("strict.xml");
    std::fs::write(&file, strict.metadata(false)).unwrap();
    let (ok, _, err) = tokio::task::block_in_place(|| {
        sesam_cli(
            &db,
            &[
                "sp",
                "add",
                "--metadata",
                file.to_str().unwrap(),
                "--sign",
                "response",
            ],
        )
    });
    assert!(!ok && err.contains("WantAssertionsSigned"), "{err}");
    assert!(sesam
        .store()
        .saml_sp(&strict.entity_id)
        .await
        .unwrap()
        .is_none());
    let (ok, out, err) = tokio::task::block_in_place(|| {
        sesam_cli(
            &db,
            &[
                "sp",
                "add",
                "--metadata",
                file.to_str().unwrap(),
                "--sign",
                "both",
                "--nameid-format",
                "transient",
            ],
        )
    });
    assert!(ok, "{err}");
    assert!(out.contains("added"), "{out}");
    let (_, out, _) = tokio::task::block_in_place(|| sesam_cli(&db, &["sp", "list"]));
    let line = out
        .lines()
        .find(|l| l.contains("strict.example.test"))
        .unwrap();
    assert!(
        line.contains("sign=both") && line.contains("nameid-format=transient"),
        "{line}"
    );
    sesam.stop().await;
}

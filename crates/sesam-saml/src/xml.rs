//! A small namespace-aware element tree over quick-xml, escaping, and enveloped XML signing.
//! The parser is the gate for untrusted input: no DOCTYPE, no entities, size and depth caps.

use crate::error::{Result, SamlError};
use crate::key::IdpKey;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use samael::crypto::{CryptoProvider, XmlSec};
use time::{OffsetDateTime, UtcOffset};

pub(crate) const NS_SAML: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub(crate) const NS_SAMLP: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub(crate) const NS_MD: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
pub(crate) const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";

/// Deeper nesting than this is an attack, not SAML.
const MAX_DEPTH: usize = 48;

/// One parsed element: namespace URI, local name, unqualified and qualified attributes, children.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Element {
    pub ns: String,
    pub name: String,
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Attr {
    pub ns: String,
    pub name: String,
    pub value: String,
}

impl Element {
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// An attribute without namespace (the SAML attributes are all unqualified).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.is_empty() && a.name == name)
            .map(|a| a.value.as_str())
    }

    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }

    pub fn children_named<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.is(ns, name))
    }

    /// How many elements of this name the subtree holds, this one included.
    pub fn count_descendants(&self, ns: &str, name: &str) -> usize {
        usize::from(self.is(ns, name))
            + self
                .children
                .iter()
                .map(|c| c.count_descendants(ns, name))
                .sum::<usize>()
    }

    /// Every `ID` attribute value in the subtree.
    pub fn collect_ids<'a>(&'a self, out: &mut Vec<&'a str>) {
        if let Some(id) = self.attr("ID") {
            out.push(id);
        }
        for c in &self.children {
            c.collect_ids(out);
        }
    }

    pub fn trimmed_text(&self) -> &str {
        self.text.trim()
    }
}

fn not_xml(e: impl std::fmt::Display) -> SamlError {
    SamlError::NotXml(e.to_string())
}

fn resolved_ns(r: ResolveResult<'_>) -> Result<String> {
    match r {
        ResolveResult::Bound(ns) => Ok(String::from_utf8_lossy(ns.as_ref()).into_owned()),
        ResolveResult::Unbound => Ok(String::new()),
        ResolveResult::Unknown(p) => Err(not_xml(format!(
            "undeclared namespace prefix {}",
            String::from_utf8_lossy(&p)
        ))),
    }
}

/// Parses untrusted XML into an element tree. Rejects DOCTYPE (and with it every entity
/// declaration), references to undefined entities, input over `limit` bytes, and deep nesting.
pub(crate) fn parse(input: &[u8], limit: usize) -> Result<Element> {
    if input.len() > limit {
        return Err(SamlError::TooLarge { limit });
    }
    let text = std::str::from_utf8(input).map_err(|_| not_xml("input is not UTF-8"))?;
    // Belt and braces: a DOCTYPE is refused even where the tokenizer might not report it.
    if text.contains("<!DOCTYPE") || text.contains("<!ENTITY") {
        return Err(SamlError::Doctype);
    }
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(not_xml)?;
        let ns = match event {
            Event::Start(_) | Event::Empty(_) => resolved_ns(ns)?,
            _ => String::new(),
        };
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                if root.is_some() {
                    return Err(not_xml("more than one root element"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(not_xml("elements nested too deeply"));
                }
                let mut attrs = Vec::new();
                for attr in start.attributes() {
                    let attr = attr.map_err(not_xml)?;
                    if attr.key.as_namespace_binding().is_some() {
                        continue;
                    }
                    let (attr_ns, local) = reader.resolver().resolve_attribute(attr.key);
                    let attr_ns = resolved_ns(attr_ns)?;
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(not_xml)?
                        .into_owned();
                    attrs.push(Attr {
                        ns: attr_ns,
                        name: String::from_utf8_lossy(local.as_ref()).into_owned(),
                        value,
                    });
                }
                let element = Element {
                    ns,
                    name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                    attrs,
                    children: Vec::new(),
                    text: String::new(),
                };
                if matches!(event, Event::Start(_)) {
                    stack.push(element);
                } else {
                    attach(&mut stack, &mut root, element);
                }
            }
            Event::End(_) => {
                let element = stack.pop().ok_or_else(|| not_xml("unbalanced end tag"))?;
                attach(&mut stack, &mut root, element);
            }
            Event::Text(t) => {
                let s = t.decode().map_err(not_xml)?;
                push_text(&mut stack, &s)?;
            }
            Event::CData(t) => {
                let s = t.decode().map_err(not_xml)?;
                push_text(&mut stack, &s)?;
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(not_xml)? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(not_xml)?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| not_xml(format!("undefined entity &{name};")))?
                            .to_string()
                    }
                };
                push_text(&mut stack, &resolved)?;
            }
            Event::DocType(_) => return Err(SamlError::Doctype),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(not_xml("unexpected end of document"));
    }
    root.ok_or_else(|| not_xml("no root element"))
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn push_text(stack: &mut [Element], s: &str) -> Result<()> {
    match stack.last_mut() {
        Some(parent) => {
            parent.text.push_str(s);
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err(not_xml("text outside the root element")),
    }
}

/// Escapes text for element content and double-quoted attributes; characters XML 1.0 cannot
/// carry at all become U+FFFD rather than producing a document nobody can parse.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `xs:dateTime` in UTC with second precision, as SAML deployments expect.
pub(crate) fn instant(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

pub(crate) fn parse_instant(field: &'static str, s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).map_err(|_| {
        SamlError::Invalid {
            field,
            value: s.to_string(),
        }
    })
}

/// A fresh xs:ID: underscore (IDs must not start with a digit) and 160 random bits in hex.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 20];
    openssl::rand::rand_bytes(&mut bytes)?;
    let mut id = String::with_capacity(41);
    id.push('_');
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    Ok(id)
}

/// The enveloped-signature template xmlsec fills in: RSA-SHA256, SHA-256 digest, exclusive c14n.
pub(crate) fn signature_template(reference_id: &str, key: &IdpKey) -> String {
    format!(
        concat!(
            r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>"#,
            r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
            r#"<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>"#,
            r##"<ds:Reference URI="#{id}"><ds:Transforms>"##,
            r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"#,
            r#"<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
            r#"</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>"#,
            r#"<ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo>"#,
            r#"<ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data>"#,
            r#"<ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>"#
        ),
        id = esc(reference_id),
        cert = key.certificate().to_base64()
    )
}

/// Signs a document holding exactly one signature template (see [`signature_template`]) whose
/// reference points at an `ID` attribute. Returns the document without the XML declaration,
/// so it can be embedded in another document.
pub(crate) fn sign_enveloped(xml: &str, key: &IdpKey) -> Result<String> {
    let signed =
        XmlSec::sign_xml(xml, key.key_der()).map_err(|e| SamlError::Signing(e.to_string()))?;
    Ok(strip_declaration(&signed).trim_end().to_string())
}

fn strip_declaration(xml: &str) -> &str {
    let trimmed = xml.trim_start();
    if trimmed.starts_with("<?xml") {
        if let Some(end) = trimmed.find("?>") {
            return trimmed[end + 2..].trim_start();
        }
    }
    trimmed
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn parses_namespaces_attributes_and_text() {
        let doc = br#"<?xml version="1.0"?><a:Root xmlns:a="urn:x" xmlns:b="urn:y" ID="i1" b:q="v"><a:C>1 &lt; 2 &#65;</a:C><D/></a:Root>"#;
        let root = parse(doc, 1000).unwrap();
        assert!(root.is("urn:x", "Root"));
        assert_eq!(root.attr("ID"), Some("i1"));
        assert_eq!(root.attr("q"), None);
        assert_eq!(root.child("urn:x", "C").unwrap().text, "1 < 2 A");
        assert!(root.child("", "D").is_some());
    }

    #[test]
    fn rejects_doctype_and_entities() {
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        assert!(matches!(parse(bomb, 10_000), Err(SamlError::Doctype)));
        let undefined = br#"<r>&xxe;</r>"#;
        assert!(matches!(parse(undefined, 100), Err(SamlError::NotXml(_))));
    }

    #[test]
    fn rejects_garbage_size_and_depth() {
        assert!(matches!(
            parse(b"not xml at all", 100),
            Err(SamlError::NotXml(_))
        ));
        assert!(matches!(
            parse(b"<a><b></a>", 100),
            Err(SamlError::NotXml(_))
        ));
        assert!(matches!(parse(b"<a/><b/>", 100), Err(SamlError::NotXml(_))));
        assert!(matches!(parse(b"<p:a/>", 100), Err(SamlError::NotXml(_))));
        assert!(matches!(
            parse(&[b' '; 101], 100),
            Err(SamlError::TooLarge { .. })
        ));
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(matches!(
            parse(deep.as_bytes(), 10_000),
            Err(SamlError::NotXml(_))
        ));
    }

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(
            esc("<a href=\"x\">&'\u{1}"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;\u{FFFD}"
        );
    }

    #[test]
    fn formats_instants_in_utc() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(instant(t), "2023-11-14T22:13:20Z");
        assert_eq!(parse_instant("x", "2023-11-14T22:13:20Z").unwrap(), t);
        assert!(parse_instant("x", "yesterday").is_err());
    }

    /// Runs the independent `xmlsec1` verifier over `xml`; true when it accepts the signature.
    pub(crate) fn xmlsec1_verifies(xml: &str, cert_pem: &[u8], id_attr: &str) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let file = dir.path().join("doc.xml");
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&file, xml).unwrap();
        let out = std::process::Command::new("xmlsec1")
            .arg("--verify")
            .arg("--pubkey-cert-pem")
            .arg(&cert)
            .arg("--id-attr:ID")
            .arg(id_attr)
            .arg(&file)
            .output()
            .expect("xmlsec1 is installed");
        if !out.status.success() {
            eprintln!("xmlsec1: {}", String::from_utf8_lossy(&out.stderr));
        }
        out.status.success()
    }

    /// The same signed document with one character of signed content changed.
    pub(crate) fn tamper(xml: &str, from: &str, to: &str) -> String {
        assert!(xml.contains(from), "tamper target {from} not in document");
        xml.replacen(from, to, 1)
    }
}

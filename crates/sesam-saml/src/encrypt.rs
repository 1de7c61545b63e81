//! Assertion encryption to the SP's certificate, with openssl directly: the data by AES-GCM
//! (or, for an old SP, AES-CBC) and the key by RSA-OAEP (XML Encryption 1.0's mgf1p form by
//! default, or 1.1's `rsa-oaep` with SHA-256), chosen per SP from its metadata.

use crate::error::{Result, SamlError};
use crate::key::{Certificate, IdpKey};
use crate::response::{build_response_with_body, maybe_signed_assertion, ResponseParams};
use base64::Engine;
use openssl::encrypt::Encrypter;
use openssl::hash::MessageDigest;
use openssl::rsa::Padding;
use openssl::symm::{encrypt, encrypt_aead, Cipher};

/// How the AES key is wrapped for the SP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTransport {
    /// `xmlenc11#rsa-oaep` with SHA-256 digest and MGF1-SHA-256 (xmlsec >= 1.3, OIOSAML 3).
    RsaOaepSha256,
    /// `xmlenc#rsa-oaep-mgf1p`: SHA-1 digest and MGF1-SHA-1. XML Encryption 1.0, which every
    /// SP stack reads (OAEP with SHA-1 is not weakened by SHA-1's collisions).
    RsaOaepMgf1pSha1,
}

impl KeyTransport {
    /// Every key transport Sesam offers, the default first.
    pub const ALL: [KeyTransport; 2] = [Self::RsaOaepMgf1pSha1, Self::RsaOaepSha256];

    /// The algorithm URI of XML Encryption (and of metadata's `md:EncryptionMethod`).
    pub fn uri(self) -> &'static str {
        match self {
            Self::RsaOaepSha256 => "http://www.w3.org/2009/xmlenc11#rsa-oaep",
            Self::RsaOaepMgf1pSha1 => "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
        }
    }

    /// The short name used in the CLI, the portal and the database.
    pub fn name(self) -> &'static str {
        match self {
            Self::RsaOaepSha256 => "rsa-oaep",
            Self::RsaOaepMgf1pSha1 => "rsa-oaep-mgf1p",
        }
    }

    /// A short name or an algorithm URI.
    pub fn parse(s: &str) -> Option<KeyTransport> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s || k.uri() == s)
    }

    fn method(self) -> &'static str {
        match self {
            Self::RsaOaepSha256 => concat!(
                r#"<xenc:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#rsa-oaep">"#,
                r#"<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>"#,
                r#"<xenc11:MGF xmlns:xenc11="http://www.w3.org/2009/xmlenc11#" Algorithm="http://www.w3.org/2009/xmlenc11#mgf1sha256"/>"#,
                "</xenc:EncryptionMethod>"
            ),
            Self::RsaOaepMgf1pSha1 => concat!(
                r#"<xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p">"#,
                r#"<ds:DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/>"#,
                "</xenc:EncryptionMethod>"
            ),
        }
    }

    fn digest(self) -> MessageDigest {
        match self {
            Self::RsaOaepSha256 => MessageDigest::sha256(),
            Self::RsaOaepMgf1pSha1 => MessageDigest::sha1(),
        }
    }
}

/// How the assertion itself is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataEncryption {
    Aes256Gcm,
    Aes128Gcm,
    /// CBC has no integrity of its own (padding-oracle attacks on XML Encryption): only for
    /// an SP that reads nothing else.
    Aes256Cbc,
    Aes128Cbc,
}

impl DataEncryption {
    /// Every data encryption Sesam offers, the default first.
    pub const ALL: [DataEncryption; 4] = [
        Self::Aes256Gcm,
        Self::Aes128Gcm,
        Self::Aes256Cbc,
        Self::Aes128Cbc,
    ];

    pub fn uri(self) -> &'static str {
        match self {
            Self::Aes256Gcm => "http://www.w3.org/2009/xmlenc11#aes256-gcm",
            Self::Aes128Gcm => "http://www.w3.org/2009/xmlenc11#aes128-gcm",
            Self::Aes256Cbc => "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
            Self::Aes128Cbc => "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Aes256Gcm => "aes256-gcm",
            Self::Aes128Gcm => "aes128-gcm",
            Self::Aes256Cbc => "aes256-cbc",
            Self::Aes128Cbc => "aes128-cbc",
        }
    }

    /// A short name or an algorithm URI.
    pub fn parse(s: &str) -> Option<DataEncryption> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|d| d.name() == s || d.uri() == s)
    }

    /// Without authenticated encryption: shown as weaker, never preferred.
    pub fn is_weaker(self) -> bool {
        matches!(self, Self::Aes256Cbc | Self::Aes128Cbc)
    }

    fn key_len(self) -> usize {
        match self {
            Self::Aes256Gcm | Self::Aes256Cbc => 32,
            Self::Aes128Gcm | Self::Aes128Cbc => 16,
        }
    }

    /// The CipherValue octets: for GCM (XML Encryption 1.1) IV || ciphertext || tag, for CBC
    /// (1.0) IV || ciphertext with PKCS#7 padding (one of the paddings 1.0 allows).
    fn seal(self, key: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plain.len() + 48);
        match self {
            Self::Aes256Gcm | Self::Aes128Gcm => {
                let cipher = if self == Self::Aes256Gcm {
                    Cipher::aes_256_gcm()
                } else {
                    Cipher::aes_128_gcm()
                };
                let mut iv = [0u8; 12];
                openssl::rand::rand_bytes(&mut iv)?;
                let mut tag = [0u8; 16];
                let ciphertext = encrypt_aead(cipher, key, Some(&iv), &[], plain, &mut tag)?;
                out.extend_from_slice(&iv);
                out.extend_from_slice(&ciphertext);
                out.extend_from_slice(&tag);
            }
            Self::Aes256Cbc | Self::Aes128Cbc => {
                let cipher = if self == Self::Aes256Cbc {
                    Cipher::aes_256_cbc()
                } else {
                    Cipher::aes_128_cbc()
                };
                let mut iv = [0u8; 16];
                openssl::rand::rand_bytes(&mut iv)?;
                out.extend_from_slice(&iv);
                out.extend_from_slice(&encrypt(cipher, key, Some(&iv), plain)?);
            }
        }
        Ok(out)
    }
}

/// The algorithms an encrypted assertion uses for one SP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encryption {
    pub key_transport: KeyTransport,
    pub data: DataEncryption,
}

impl Default for Encryption {
    /// What every current SP stack reads: mgf1p and AES-256-GCM.
    fn default() -> Self {
        Encryption {
            key_transport: KeyTransport::RsaOaepMgf1pSha1,
            data: DataEncryption::Aes256Gcm,
        }
    }
}

impl Encryption {
    /// The choice for an SP whose metadata lists `methods` (its `md:EncryptionMethod`
    /// algorithm URIs, in its order of preference): the first key transport Sesam has, and
    /// the first authenticated data encryption, else the first CBC one when that is all the
    /// SP reads. Whatever the SP does not list gets the default.
    pub fn from_metadata(methods: &[String]) -> Encryption {
        let default = Encryption::default();
        let listed: Vec<DataEncryption> = methods
            .iter()
            .filter_map(|m| DataEncryption::parse(m))
            .collect();
        Encryption {
            key_transport: methods
                .iter()
                .find_map(|m| KeyTransport::parse(m))
                .unwrap_or(default.key_transport),
            data: listed
                .iter()
                .copied()
                .find(|d| !d.is_weaker())
                .or(listed.first().copied())
                .unwrap_or(default.data),
        }
    }
}

/// `<saml:EncryptedAssertion>` holding `assertion_xml` encrypted to `sp_cert`.
pub(crate) fn encrypted_assertion(
    assertion_xml: &str,
    sp_cert: &Certificate,
    encryption: Encryption,
) -> Result<String> {
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let mut key = vec![0u8; encryption.data.key_len()];
    openssl::rand::rand_bytes(&mut key)?;
    let data = encryption.data.seal(&key, assertion_xml.as_bytes())?;

    let public = sp_cert.public_key()?;
    if public.rsa().is_err() {
        return Err(SamlError::Key(
            "the SP's encryption certificate must hold an RSA key".into(),
        ));
    }
    let transport = encryption.key_transport;
    let mut encrypter = Encrypter::new(&public)?;
    encrypter.set_rsa_padding(Padding::PKCS1_OAEP)?;
    encrypter.set_rsa_oaep_md(transport.digest())?;
    encrypter.set_rsa_mgf1_md(transport.digest())?;
    let mut wrapped = vec![0u8; encrypter.encrypt_len(&key)?];
    let n = encrypter.encrypt(&key, &mut wrapped)?;
    wrapped.truncate(n);

    Ok(format!(
        concat!(
            "<saml:EncryptedAssertion>",
            r#"<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" Type="http://www.w3.org/2001/04/xmlenc#Element">"#,
            r#"<xenc:EncryptionMethod Algorithm="{data_method}"/>"#,
            r#"<ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><xenc:EncryptedKey>"#,
            "{method}",
            "<xenc:CipherData><xenc:CipherValue>{key}</xenc:CipherValue></xenc:CipherData>",
            "</xenc:EncryptedKey></ds:KeyInfo>",
            "<xenc:CipherData><xenc:CipherValue>{data}</xenc:CipherValue></xenc:CipherData>",
            "</xenc:EncryptedData></saml:EncryptedAssertion>"
        ),
        data_method = encryption.data.uri(),
        method = transport.method(),
        key = b64(&wrapped),
        data = b64(&data),
    ))
}

/// A successful Response whose Assertion (signed unless only the Response is) is encrypted
/// to the SP's encryption certificate.
pub fn build_encrypted_response(
    p: &ResponseParams<'_>,
    key: &IdpKey,
    sp_encryption_cert: &Certificate,
    encryption: Encryption,
) -> Result<String> {
    let assertion = maybe_signed_assertion(p, key)?;
    build_response_with_body(
        p,
        key,
        &encrypted_assertion(&assertion, sp_encryption_cert, encryption)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::tests::{params, ASSERTION_ID_ATTR};
    use crate::xml::tests::xmlsec1_verifies;

    use crate::xml::{parse, Element, NS_SAML};
    use openssl::encrypt::Decrypter;
    use openssl::symm::{decrypt, decrypt_aead};

    fn b64(e: &Element) -> Vec<u8> {
        let cv = &e
            .children
            .iter()
            .find(|c| c.name == "CipherData")
            .unwrap()
            .children[0];
        base64::engine::general_purpose::STANDARD
            .decode(cv.text.trim())
            .unwrap()
    }

    /// Our own decryption, by the algorithms the document names: also for the xmlenc11 form
    /// the installed xmlsec1 1.2 cannot read.
    fn decrypt_with(xml: &str, sp: &IdpKey) -> String {
        let root = parse(xml.as_bytes(), 1 << 20).unwrap();
        let data = root.child(NS_SAML, "EncryptedAssertion").unwrap().children[0].clone();
        let algorithm = |e: &Element| {
            let m = e.children.iter().find(|c| c.name == "EncryptionMethod");
            m.unwrap().attr("Algorithm").unwrap().to_owned()
        };
        let enc_key = &data
            .children
            .iter()
            .find(|c| c.name == "KeyInfo")
            .unwrap()
            .children[0];
        let transport = KeyTransport::parse(&algorithm(enc_key)).unwrap();
        let mut d = Decrypter::new(sp.private_key()).unwrap();
        d.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
        d.set_rsa_oaep_md(transport.digest()).unwrap();
        d.set_rsa_mgf1_md(transport.digest()).unwrap();
        let wrapped = b64(enc_key);
        let mut key = vec![0u8; d.decrypt_len(&wrapped).unwrap()];
        let n = d.decrypt(&wrapped, &mut key).unwrap();
        key.truncate(n);
        let blob = b64(&data);
        let plain = match DataEncryption::parse(&algorithm(&data)).unwrap() {
            DataEncryption::Aes256Gcm | DataEncryption::Aes128Gcm => {
                let cipher = if key.len() == 32 {
                    Cipher::aes_256_gcm()
                } else {
                    Cipher::aes_128_gcm()
                };
                let (iv, rest) = blob.split_at(12);
                let (ct, tag) = rest.split_at(rest.len() - 16);
                decrypt_aead(cipher, &key, Some(iv), &[], ct, tag).unwrap()
            }
            DataEncryption::Aes256Cbc | DataEncryption::Aes128Cbc => {
                let cipher = if key.len() == 32 {
                    Cipher::aes_256_cbc()
                } else {
                    Cipher::aes_128_cbc()
                };
                let (iv, ct) = blob.split_at(16);
                decrypt(cipher, &key, Some(iv), ct).unwrap()
            }
        };
        String::from_utf8(plain).unwrap()
    }

    fn xmlsec1_decrypts(xml: &str, key: &IdpKey) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("sp.key");
        let in_file = dir.path().join("enc.xml");
        let out_file = dir.path().join("dec.xml");
        std::fs::write(&key_file, key.private_key_pem().unwrap()).unwrap();
        std::fs::write(&in_file, xml).unwrap();
        let out = std::process::Command::new("xmlsec1")
            .args(["--decrypt", "--privkey-pem"])
            .arg(&key_file)
            .arg("--output")
            .arg(&out_file)
            .arg(&in_file)
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!("xmlsec1: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        Some(std::fs::read_to_string(&out_file).unwrap())
    }

    fn with(key_transport: KeyTransport, data: DataEncryption) -> Encryption {
        Encryption {
            key_transport,
            data,
        }
    }

    #[test]
    fn xmlenc11_encrypted_assertion_round_trips_and_still_verifies() {
        let idp = IdpKey::generate("idp", 10).unwrap();
        let sp = IdpKey::generate("sp enc", 10).unwrap();
        for data in DataEncryption::ALL {
            let encryption = with(KeyTransport::RsaOaepSha256, data);
            let xml =
                build_encrypted_response(&params(&[]), &idp, sp.certificate(), encryption).unwrap();
            assert!(!xml.contains("a1b2c3d4-pseudonym"));
            assert!(xml.contains("xmlenc11#rsa-oaep\"") && xml.contains("xenc11:MGF"));
            assert!(xml.contains(data.uri()));
            let assertion = decrypt_with(&xml, &sp);
            assert!(assertion.contains("a1b2c3d4-pseudonym"));
            let pem = idp.certificate_pem().unwrap();
            assert!(xmlsec1_verifies(&assertion, &pem, ASSERTION_ID_ATTR));
        }
    }

    #[test]
    fn mgf1p_with_each_data_encryption_decrypts_with_xmlsec1_and_the_assertion_verifies() {
        let idp = IdpKey::generate("idp", 10).unwrap();
        let sp = IdpKey::generate("sp enc", 10).unwrap();
        let pem = idp.certificate_pem().unwrap();
        for data in DataEncryption::ALL {
            let encryption = with(KeyTransport::RsaOaepMgf1pSha1, data);
            let xml =
                build_encrypted_response(&params(&[]), &idp, sp.certificate(), encryption).unwrap();
            assert!(!xml.contains("a1b2c3d4-pseudonym"));
            // The element, not the letters, which base64 cipher text may contain.
            assert!(
                !xml.contains(":MGF ") && !xml.contains("<MGF"),
                "mgf1p names no MGF element"
            );
            let decrypted = xmlsec1_decrypts(&xml, &sp).unwrap_or_else(|| panic!("{data:?}"));
            assert!(decrypted.contains("a1b2c3d4-pseudonym"));
            assert!(
                xmlsec1_verifies(&decrypted, &pem, ASSERTION_ID_ATTR),
                "{decrypted}"
            );
            assert!(decrypt_with(&xml, &sp).contains("a1b2c3d4-pseudonym"));

            // The wrong SP key cannot decrypt.
            let other = IdpKey::generate("other", 1).unwrap();
            assert!(xmlsec1_decrypts(&xml, &other).is_none());
        }
    }

    #[test]
    fn the_choice_follows_the_sp_metadata() {
        let m = |uris: &[&str]| -> Vec<String> { uris.iter().map(|u| u.to_string()).collect() };
        let default = Encryption::default();
        assert_eq!(
            default,
            with(KeyTransport::RsaOaepMgf1pSha1, DataEncryption::Aes256Gcm)
        );
        assert_eq!(Encryption::from_metadata(&[]), default);
        // Only xmlenc11 rsa-oaep: that, with the default data encryption.
        assert_eq!(
            Encryption::from_metadata(&m(&["http://www.w3.org/2009/xmlenc11#rsa-oaep"])),
            with(KeyTransport::RsaOaepSha256, DataEncryption::Aes256Gcm)
        );
        // Only CBC: the SP reads nothing better.
        assert_eq!(
            Encryption::from_metadata(&m(&["http://www.w3.org/2001/04/xmlenc#aes128-cbc"])),
            with(KeyTransport::RsaOaepMgf1pSha1, DataEncryption::Aes128Cbc)
        );
        // GCM wins over CBC listed before it; the first transport listed wins.
        assert_eq!(
            Encryption::from_metadata(&m(&[
                "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
                "http://www.w3.org/2009/xmlenc11#aes128-gcm",
                "http://www.w3.org/2009/xmlenc11#aes256-gcm",
                "http://www.w3.org/2001/04/xmlenc#rsa-1_5",
                "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
                "http://www.w3.org/2009/xmlenc11#rsa-oaep",
            ])),
            with(KeyTransport::RsaOaepMgf1pSha1, DataEncryption::Aes128Gcm)
        );
        // Unknown and refused algorithms (RSA PKCS#1 v1.5, 3DES) are passed over.
        assert_eq!(
            Encryption::from_metadata(&m(&[
                "http://www.w3.org/2001/04/xmlenc#rsa-1_5",
                "http://www.w3.org/2001/04/xmlenc#tripledes-cbc",
                "",
                "urn:nonsense",
            ])),
            default
        );
    }

    #[test]
    fn names_and_uris_parse_and_nothing_else_does() {
        for k in KeyTransport::ALL {
            assert_eq!(KeyTransport::parse(k.name()), Some(k));
            assert_eq!(KeyTransport::parse(k.uri()), Some(k));
        }
        for d in DataEncryption::ALL {
            assert_eq!(DataEncryption::parse(d.name()), Some(d));
            assert_eq!(DataEncryption::parse(&format!(" {} ", d.uri())), Some(d));
        }
        for bad in [
            "",
            "rsa-1_5",
            "RSA-OAEP",
            "aes192-gcm",
            "aes256",
            "tripledes-cbc",
        ] {
            assert_eq!(KeyTransport::parse(bad), None, "{bad}");
            assert_eq!(DataEncryption::parse(bad), None, "{bad}");
        }
        assert!(DataEncryption::Aes128Cbc.is_weaker() && !DataEncryption::Aes128Gcm.is_weaker());
    }
}

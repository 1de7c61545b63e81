//! Assertion encryption to the SP's certificate: AES-256-GCM for the data and RSA-OAEP for the
//! key (xmlenc11 SHA-256/MGF1-SHA-256, or the older mgf1p SHA-1 form), with openssl directly.

use crate::error::{Result, SamlError};
use crate::key::{Certificate, IdpKey};
use crate::response::{build_response_with_body, signed_assertion, ResponseParams};
use base64::Engine;
use openssl::encrypt::Encrypter;
use openssl::hash::MessageDigest;
use openssl::rsa::Padding;
use openssl::symm::{encrypt_aead, Cipher};

/// How the AES key is wrapped for the SP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTransport {
    /// `xmlenc11#rsa-oaep` with SHA-256 digest and MGF1-SHA-256 (OIOSAML 3; xmlsec >= 1.3).
    RsaOaepSha256,
    /// `xmlenc#rsa-oaep-mgf1p`: SHA-1 digest and MGF1-SHA-1, for SPs on older stacks.
    RsaOaepMgf1pSha1,
}

impl KeyTransport {
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

/// `<saml:EncryptedAssertion>` holding `assertion_xml` encrypted to `sp_cert`.
pub(crate) fn encrypted_assertion(
    assertion_xml: &str,
    sp_cert: &Certificate,
    transport: KeyTransport,
) -> Result<String> {
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let mut key = [0u8; 32];
    let mut iv = [0u8; 12];
    openssl::rand::rand_bytes(&mut key)?;
    openssl::rand::rand_bytes(&mut iv)?;
    let mut tag = [0u8; 16];
    let ciphertext = encrypt_aead(
        Cipher::aes_256_gcm(),
        &key,
        Some(&iv),
        &[],
        assertion_xml.as_bytes(),
        &mut tag,
    )?;
    // xmlenc11 AES-GCM CipherValue: IV || ciphertext || tag.
    let mut data = Vec::with_capacity(iv.len() + ciphertext.len() + tag.len());
    data.extend_from_slice(&iv);
    data.extend_from_slice(&ciphertext);
    data.extend_from_slice(&tag);

    let public = sp_cert.public_key()?;
    if public.rsa().is_err() {
        return Err(SamlError::Key(
            "the SP's encryption certificate must hold an RSA key".into(),
        ));
    }
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
            r#"<xenc:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes256-gcm"/>"#,
            r#"<ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><xenc:EncryptedKey>"#,
            "{method}",
            "<xenc:CipherData><xenc:CipherValue>{key}</xenc:CipherValue></xenc:CipherData>",
            "</xenc:EncryptedKey></ds:KeyInfo>",
            "<xenc:CipherData><xenc:CipherValue>{data}</xenc:CipherValue></xenc:CipherData>",
            "</xenc:EncryptedData></saml:EncryptedAssertion>"
        ),
        method = transport.method(),
        key = b64(&wrapped),
        data = b64(&data),
    ))
}

/// A successful Response whose signed Assertion is encrypted to the SP's encryption certificate.
pub fn build_encrypted_response(
    p: &ResponseParams<'_>,
    key: &IdpKey,
    sp_encryption_cert: &Certificate,
    transport: KeyTransport,
) -> Result<String> {
    let assertion = signed_assertion(p, key)?;
    build_response_with_body(
        p,
        &encrypted_assertion(&assertion, sp_encryption_cert, transport)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::tests::{params, ASSERTION_ID_ATTR};
    use crate::xml::tests::xmlsec1_verifies;

    use crate::xml::{parse, NS_SAML};
    use openssl::encrypt::Decrypter;
    use openssl::symm::decrypt_aead;

    /// Our own decryption, for the xmlenc11 form the installed xmlsec1 1.2 cannot read.
    fn decrypt(xml: &str, sp: &IdpKey) -> String {
        let root = parse(xml.as_bytes(), 1 << 20).unwrap();
        let data = root.child(NS_SAML, "EncryptedAssertion").unwrap().children[0].clone();
        let value = |e: &crate::xml::Element| {
            let cv = &e
                .children
                .iter()
                .find(|c| c.name == "CipherData")
                .unwrap()
                .children[0];
            base64::engine::general_purpose::STANDARD
                .decode(cv.text.trim())
                .unwrap()
        };
        let enc_key = &data
            .children
            .iter()
            .find(|c| c.name == "KeyInfo")
            .unwrap()
            .children[0];
        let mut d = Decrypter::new(sp.private_key()).unwrap();
        d.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
        d.set_rsa_oaep_md(MessageDigest::sha256()).unwrap();
        d.set_rsa_mgf1_md(MessageDigest::sha256()).unwrap();
        let wrapped = value(enc_key);
        let mut key = vec![0u8; d.decrypt_len(&wrapped).unwrap()];
        let n = d.decrypt(&wrapped, &mut key).unwrap();
        key.truncate(n);
        let blob = value(&data);
        let (iv, rest) = blob.split_at(12);
        let (ct, tag) = rest.split_at(rest.len() - 16);
        let plain = decrypt_aead(Cipher::aes_256_gcm(), &key, Some(iv), &[], ct, tag).unwrap();
        String::from_utf8(plain).unwrap()
    }

    #[test]
    fn xmlenc11_encrypted_assertion_round_trips_and_still_verifies() {
        let idp = IdpKey::generate("idp", 10).unwrap();
        let sp = IdpKey::generate("sp enc", 10).unwrap();
        let xml = build_encrypted_response(
            &params(&[]),
            &idp,
            sp.certificate(),
            KeyTransport::RsaOaepSha256,
        )
        .unwrap();
        assert!(!xml.contains("a1b2c3d4-pseudonym"));
        assert!(xml.contains("xmlenc11#rsa-oaep"));
        let assertion = decrypt(&xml, &sp);
        assert!(assertion.contains("a1b2c3d4-pseudonym"));
        let pem = idp.certificate_pem().unwrap();
        assert!(xmlsec1_verifies(&assertion, &pem, ASSERTION_ID_ATTR));
    }

    #[test]
    fn encrypted_response_decrypts_with_xmlsec1_and_the_assertion_verifies() {
        let idp = IdpKey::generate("idp", 10).unwrap();
        let sp = IdpKey::generate("sp enc", 10).unwrap();
        let xml = build_encrypted_response(
            &params(&[]),
            &idp,
            sp.certificate(),
            KeyTransport::RsaOaepMgf1pSha1,
        )
        .unwrap();
        assert!(!xml.contains("a1b2c3d4-pseudonym"));

        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("sp.key");
        let in_file = dir.path().join("enc.xml");
        let out_file = dir.path().join("dec.xml");
        std::fs::write(&key_file, sp.private_key_pem().unwrap()).unwrap();
        std::fs::write(&in_file, &xml).unwrap();
        let out = std::process::Command::new("xmlsec1")
            .args(["--decrypt", "--privkey-pem"])
            .arg(&key_file)
            .arg("--output")
            .arg(&out_file)
            .arg(&in_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let decrypted = std::fs::read_to_string(&out_file).unwrap();
        assert!(decrypted.contains("a1b2c3d4-pseudonym"));
        let pem = idp.certificate_pem().unwrap();
        assert!(
            xmlsec1_verifies(&decrypted, &pem, ASSERTION_ID_ATTR),
            "{decrypted}"
        );

        // The wrong SP key cannot decrypt.
        let other = IdpKey::generate("other", 1).unwrap();
        std::fs::write(&key_file, other.private_key_pem().unwrap()).unwrap();
        let out = std::process::Command::new("xmlsec1")
            .args(["--decrypt", "--privkey-pem"])
            .arg(&key_file)
            .arg(&in_file)
            .output()
            .unwrap();
        assert!(!out.status.success());
    }
}

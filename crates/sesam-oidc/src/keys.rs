//! Signing keys for ID tokens: RSA-2048 (RS256) and EC P-256 (ES256), held as parsed openssl
//! keys so signing on the hot path does no parsing; each knows its JWK and RFC 7638 `kid`.

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::{Signer, Verifier};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::jwt::base64url;
use crate::Error;

/// A JWS signature algorithm Sesam signs ID tokens with.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum JwsAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256; the default every relying party supports.
    #[default]
    RS256,
    /// ECDSA P-256 with SHA-256; a per-client option.
    ES256,
}

impl JwsAlg {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlg::RS256 => "RS256",
            JwsAlg::ES256 => "ES256",
        }
    }
}

/// A key that signs JWS: what [`crate::sign_jwt`] and [`crate::jwks`] need from a key.
pub trait JwsSigner: Send + Sync {
    /// The algorithm this key signs with.
    fn alg(&self) -> JwsAlg;
    /// The key id: the RFC 7638 thumbprint of the public key.
    fn kid(&self) -> &str;
    /// The public key as a JWK with `kid`, `alg` and `use`.
    fn public_jwk(&self) -> Value;
    /// The JWS signature over `signing_input`, base64url without padding.
    fn sign(&self, signing_input: &[u8]) -> Result<String, Error>;
    /// Whether `signature` (raw bytes, base64url-decoded) is this key's over `signing_input`.
    fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool;
}

fn verify_der(pkey: &PKey<Private>, signing_input: &[u8], der: &[u8]) -> bool {
    let Ok(mut verifier) = Verifier::new(MessageDigest::sha256(), pkey) else {
        return false;
    };
    verifier.update(signing_input).is_ok() && verifier.verify(der).unwrap_or(false)
}

/// An RSA private key for RS256, at least 2048 bits.
pub struct SigningKey {
    pkey: PKey<Private>,
    kid: String,
    n: String,
    e: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh RSA-2048 key.
    pub fn generate() -> Result<Self, Error> {
        Self::from_pkey(PKey::from_rsa(Rsa::generate(2048)?)?)
    }

    /// Loads a PKCS#8 (or traditional RSA) PEM private key; refuses non-RSA and < 2048 bits.
    pub fn from_pem(pem: &[u8]) -> Result<Self, Error> {
        Self::from_pkey(PKey::private_key_from_pem(pem)?)
    }

    /// The private key as PKCS#8 PEM, for storing.
    pub fn to_pem(&self) -> Result<Vec<u8>, Error> {
        Ok(self.pkey.private_key_to_pem_pkcs8()?)
    }

    fn from_pkey(pkey: PKey<Private>) -> Result<Self, Error> {
        if pkey.id() != Id::RSA {
            return Err(Error::UnsuitableKey("RS256 needs an RSA key"));
        }
        let rsa = pkey.rsa()?;
        if rsa.size() < 256 {
            return Err(Error::UnsuitableKey(
                "RSA keys must have at least 2048 bits",
            ));
        }
        let n = base64url(&rsa.n().to_vec());
        let e = base64url(&rsa.e().to_vec());
        // RFC 7638: the required members in lexicographic order, no whitespace.
        let kid = thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#));
        Ok(SigningKey { pkey, kid, n, e })
    }

    /// RS256 signature over `signing_input`, base64url.
    pub fn sign_rs256(&self, signing_input: &[u8]) -> Result<String, Error> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.pkey)?;
        signer.update(signing_input)?;
        Ok(base64url(&signer.sign_to_vec()?))
    }

    /// The public key as PEM (SubjectPublicKeyInfo), for relying parties that want it.
    pub fn public_key_pem(&self) -> Result<Vec<u8>, Error> {
        Ok(self.pkey.public_key_to_pem()?)
    }
}

impl JwsSigner for SigningKey {
    fn alg(&self) -> JwsAlg {
        JwsAlg::RS256
    }
    fn kid(&self) -> &str {
        &self.kid
    }
    fn public_jwk(&self) -> Value {
        json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": self.n, "e": self.e})
    }
    fn sign(&self, signing_input: &[u8]) -> Result<String, Error> {
        self.sign_rs256(signing_input)
    }
    fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        verify_der(&self.pkey, signing_input, signature)
    }
}

/// An EC P-256 private key for ES256.
pub struct EcSigningKey {
    pkey: PKey<Private>,
    kid: String,
    x: String,
    y: String,
}

impl std::fmt::Debug for EcSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcSigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl EcSigningKey {
    /// A fresh P-256 key.
    pub fn generate() -> Result<Self, Error> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        Self::from_pkey(PKey::from_ec_key(EcKey::generate(&group)?)?)
    }

    /// Loads a PKCS#8 (or SEC1) PEM private key; refuses anything but P-256.
    pub fn from_pem(pem: &[u8]) -> Result<Self, Error> {
        Self::from_pkey(PKey::private_key_from_pem(pem)?)
    }

    /// The private key as PKCS#8 PEM, for storing.
    pub fn to_pem(&self) -> Result<Vec<u8>, Error> {
        Ok(self.pkey.private_key_to_pem_pkcs8()?)
    }

    fn from_pkey(pkey: PKey<Private>) -> Result<Self, Error> {
        if pkey.id() != Id::EC {
            return Err(Error::UnsuitableKey("ES256 needs an EC key"));
        }
        let ec = pkey.ec_key()?;
        if ec.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
            return Err(Error::UnsuitableKey("ES256 needs a P-256 key"));
        }
        let mut x = BigNum::new()?;
        let mut y = BigNum::new()?;
        let mut ctx = BigNumContext::new()?;
        ec.public_key()
            .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)?;
        let x = base64url(&x.to_vec_padded(32)?);
        let y = base64url(&y.to_vec_padded(32)?);
        let kid = thumbprint(&format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#
        ));
        Ok(EcSigningKey { pkey, kid, x, y })
    }

    /// ES256 signature over `signing_input`: raw r||s (64 bytes, RFC 7518 §3.4), base64url.
    pub fn sign_es256(&self, signing_input: &[u8]) -> Result<String, Error> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.pkey)?;
        signer.update(signing_input)?;
        let der = signer.sign_to_vec()?;
        let sig = EcdsaSig::from_der(&der)?;
        let mut raw = sig.r().to_vec_padded(32)?;
        raw.extend_from_slice(&sig.s().to_vec_padded(32)?);
        Ok(base64url(&raw))
    }

    /// The public key as PEM (SubjectPublicKeyInfo).
    pub fn public_key_pem(&self) -> Result<Vec<u8>, Error> {
        Ok(self.pkey.public_key_to_pem()?)
    }
}

impl JwsSigner for EcSigningKey {
    fn alg(&self) -> JwsAlg {
        JwsAlg::ES256
    }
    fn kid(&self) -> &str {
        &self.kid
    }
    fn public_jwk(&self) -> Value {
        json!({"kty": "EC", "use": "sig", "alg": "ES256", "kid": self.kid, "crv": "P-256", "x": self.x, "y": self.y})
    }
    fn sign(&self, signing_input: &[u8]) -> Result<String, Error> {
        self.sign_es256(signing_input)
    }
    fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        if signature.len() != 64 {
            return false;
        }
        let der = BigNum::from_slice(&signature[..32])
            .and_then(|r| Ok((r, BigNum::from_slice(&signature[32..])?)))
            .and_then(|(r, s)| EcdsaSig::from_private_components(r, s))
            .and_then(|sig| sig.to_der());
        der.is_ok_and(|der| verify_der(&self.pkey, signing_input, &der))
    }
}

fn thumbprint(canonical_jwk: &str) -> String {
    base64url(&Sha256::digest(canonical_jwk.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::pkey::Public;
    use openssl::sign::Verifier;

    fn b64d(s: &str) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
    }

    #[test]
    fn rsa_key_round_trips_through_pkcs8_pem_with_the_same_kid() {
        let key = SigningKey::generate().unwrap();
        let pem = key.to_pem().unwrap();
        assert!(pem.starts_with(b"-----BEGIN PRIVATE KEY-----"));
        let again = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(key.kid(), again.kid());
        assert_eq!(key.public_jwk(), again.public_jwk());
        assert_eq!(b64d(key.kid()).len(), 32);
    }

    #[test]
    fn rfc7638_thumbprint_vector() {
        // RFC 7638 §3.1: the example RSA key and its thumbprint.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let canonical = format!(r#"{{"e":"AQAB","kty":"RSA","n":"{n}"}}"#);
        assert_eq!(
            thumbprint(&canonical),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn rs256_signature_verifies_with_openssl() {
        let key = SigningKey::generate().unwrap();
        let sig = b64d(&key.sign_rs256(b"header.payload").unwrap());
        assert_eq!(sig.len(), 256);
        let public: PKey<Public> =
            PKey::public_key_from_pem(&key.public_key_pem().unwrap()).unwrap();
        let mut verifier = Verifier::new(MessageDigest::sha256(), &public).unwrap();
        verifier.update(b"header.payload").unwrap();
        assert!(verifier.verify(&sig).unwrap());
    }

    #[test]
    fn es256_signature_is_raw_r_s_and_verifies_with_openssl_after_der_conversion() {
        let key = EcSigningKey::generate().unwrap();
        let again = EcSigningKey::from_pem(&key.to_pem().unwrap()).unwrap();
        assert_eq!(key.kid(), again.kid());
        let raw = b64d(&key.sign_es256(b"header.payload").unwrap());
        assert_eq!(raw.len(), 64);
        let r = BigNum::from_slice(&raw[..32]).unwrap();
        let s = BigNum::from_slice(&raw[32..]).unwrap();
        let der = EcdsaSig::from_private_components(r, s)
            .unwrap()
            .to_der()
            .unwrap();
        let public: PKey<Public> =
            PKey::public_key_from_pem(&key.public_key_pem().unwrap()).unwrap();
        let mut verifier = Verifier::new(MessageDigest::sha256(), &public).unwrap();
        verifier.update(b"header.payload").unwrap();
        assert!(verifier.verify(&der).unwrap());
        let jwk = key.public_jwk();
        assert_eq!(b64d(jwk["x"].as_str().unwrap()).len(), 32);
        assert_eq!(b64d(jwk["y"].as_str().unwrap()).len(), 32);
    }

    #[test]
    fn wrong_key_types_and_weak_keys_are_refused() {
        let ec_pem = EcSigningKey::generate().unwrap().to_pem().unwrap();
        assert!(matches!(
            SigningKey::from_pem(&ec_pem),
            Err(Error::UnsuitableKey(_))
        ));
        let rsa_pem = SigningKey::generate().unwrap().to_pem().unwrap();
        assert!(matches!(
            EcSigningKey::from_pem(&rsa_pem),
            Err(Error::UnsuitableKey(_))
        ));
        let weak = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
        let weak_pem = weak.private_key_to_pem_pkcs8().unwrap();
        assert!(matches!(
            SigningKey::from_pem(&weak_pem),
            Err(Error::UnsuitableKey(_))
        ));
        let p384 = EcKey::generate(&EcGroup::from_curve_name(Nid::SECP384R1).unwrap()).unwrap();
        let p384_pem = PKey::from_ec_key(p384)
            .unwrap()
            .private_key_to_pem_pkcs8()
            .unwrap();
        assert!(matches!(
            EcSigningKey::from_pem(&p384_pem),
            Err(Error::UnsuitableKey(_))
        ));
        assert!(matches!(
            SigningKey::from_pem(b"not a key"),
            Err(Error::Openssl(_))
        ));
    }
}

//! The IdP's signing key with its self-signed certificate, and certificates of service providers.
//! Keys are parsed once and kept parsed; PEM in and out for storage.

use crate::error::{Result, SamlError};
use base64::Engine;
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Rsa;
use openssl::x509::{X509Builder, X509NameBuilder, X509};

/// Smallest RSA modulus we sign with or accept from a service provider.
const MIN_RSA_BITS: u32 = 2048;

/// An RSA key pair and the self-signed X.509 certificate published in the IdP metadata.
pub struct IdpKey {
    key: PKey<Private>,
    /// PKCS#1 DER, the form samael's xmlsec signer loads.
    key_der: Vec<u8>,
    cert: Certificate,
}

impl std::fmt::Debug for IdpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpKey")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl IdpKey {
    /// Makes a new RSA-2048 key and a self-signed SHA-256 certificate valid for `valid_days`.
    pub fn generate(common_name: &str, valid_days: u32) -> Result<Self> {
        let rsa = Rsa::generate(2048)?;
        let key = PKey::from_rsa(rsa)?;
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_text("CN", common_name)?;
        let name = name.build();
        let mut serial = BigNum::new()?;
        serial.rand(127, openssl::bn::MsbOption::MAYBE_ZERO, false)?;
        let mut builder = X509Builder::new()?;
        builder.set_version(2)?;
        builder.set_serial_number(Asn1Integer::from_bn(&serial)?.as_ref())?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(&name)?;
        builder.set_pubkey(&key)?;
        builder.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
        builder.set_not_after(Asn1Time::days_from_now(valid_days)?.as_ref())?;
        builder.sign(&key, MessageDigest::sha256())?;
        Self::from_parts(key, builder.build())
    }

    /// Loads a private key (PKCS#8 or PKCS#1 PEM) and its certificate; they must belong together.
    pub fn from_pem(key_pem: &[u8], cert_pem: &[u8]) -> Result<Self> {
        let key = PKey::private_key_from_pem(key_pem)
            .map_err(|e| SamlError::Key(format!("private key PEM: {e}")))?;
        let cert = X509::from_pem(cert_pem)
            .map_err(|e| SamlError::Key(format!("certificate PEM: {e}")))?;
        Self::from_parts(key, cert)
    }

    fn from_parts(key: PKey<Private>, cert: X509) -> Result<Self> {
        let rsa = key
            .rsa()
            .map_err(|_| SamlError::Key("the IdP key must be RSA".into()))?;
        if rsa.size() * 8 < MIN_RSA_BITS {
            return Err(SamlError::Key(format!(
                "RSA key has {} bits, at least {MIN_RSA_BITS} needed",
                rsa.size() * 8
            )));
        }
        let cert_key = cert.public_key()?;
        if !key.public_eq(&cert_key) {
            return Err(SamlError::Key(
                "the certificate does not belong to the private key".into(),
            ));
        }
        let key_der = rsa.private_key_to_der()?;
        Ok(Self {
            key,
            key_der,
            cert: Certificate::from_x509(cert)?,
        })
    }

    /// The private key as PKCS#8 PEM, for storage.
    pub fn private_key_pem(&self) -> Result<Vec<u8>> {
        Ok(self.key.private_key_to_pem_pkcs8()?)
    }

    /// The certificate as PEM, for storage.
    pub fn certificate_pem(&self) -> Result<Vec<u8>> {
        Ok(self.cert.x509.to_pem()?)
    }

    /// The certificate, as published in metadata and KeyInfo.
    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    pub(crate) fn private_key(&self) -> &PKey<Private> {
        &self.key
    }

    pub(crate) fn key_der(&self) -> &[u8] {
        &self.key_der
    }
}

/// A parsed X.509 certificate (an SP's signing or encryption certificate, or our own).
#[derive(Clone)]
pub struct Certificate {
    x509: X509,
    der: Vec<u8>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subject: Vec<String> = self
            .x509
            .subject_name()
            .entries()
            .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
            .collect();
        f.debug_struct("Certificate")
            .field("subject", &subject)
            .finish()
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Certificate {
    fn from_x509(x509: X509) -> Result<Self> {
        let der = x509.to_der()?;
        Ok(Self { x509, der })
    }

    /// Reads the base64 DER body of a `ds:X509Certificate` element (whitespace allowed).
    pub fn from_base64(text: &str) -> Result<Self> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|_| SamlError::Base64("X509Certificate"))?;
        Self::from_der(&der)
    }

    /// Reads a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self> {
        let x509 =
            X509::from_der(der).map_err(|e| SamlError::Key(format!("certificate DER: {e}")))?;
        Self::from_x509(x509)
    }

    /// Reads a PEM certificate.
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let x509 =
            X509::from_pem(pem).map_err(|e| SamlError::Key(format!("certificate PEM: {e}")))?;
        Self::from_x509(x509)
    }

    /// DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Base64 of the DER, as it goes into `ds:X509Certificate`.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.der)
    }

    /// PEM text.
    pub fn to_pem(&self) -> Result<Vec<u8>> {
        Ok(self.x509.to_pem()?)
    }

    pub(crate) fn public_key(&self) -> Result<PKey<Public>> {
        Ok(self.x509.public_key()?)
    }
}

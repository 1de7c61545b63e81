//! The one error type of sesam-saml.
//! Every rejected input maps to a variant a server can turn into a clear 4xx or SAML status.

/// Everything that can go wrong while reading or writing SAML messages.
#[derive(Debug, thiserror::Error)]
pub enum SamlError {
    #[error("key or certificate is unusable: {0}")]
    Key(String),
    #[error("input is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("DOCTYPE and entity declarations are not allowed")]
    Doctype,
    #[error("not well-formed XML: {0}")]
    NotXml(String),
    #[error("root element is {found}, expected {expected}")]
    WrongRoot {
        expected: &'static str,
        found: String,
    },
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("invalid {field}: {value}")]
    Invalid { field: &'static str, value: String },
    #[error("{0} is not valid base64")]
    Base64(&'static str),
    #[error("SAMLRequest cannot be inflated: {0}")]
    Inflate(String),
    #[error("the request is not signed, but this service provider must sign its requests")]
    Unsigned,
    #[error("signature algorithm {0} is unknown or not supported")]
    AlgorithmNotAccepted(String),
    #[error("SHA-1 ({0}) is refused for this service provider's signatures")]
    Sha1Refused(String),
    #[error("signature does not verify with the service provider's registered key")]
    BadSignature,
    #[error("signature structure rejected: {0}")]
    SignatureStructure(&'static str),
    #[error("unsupported SAML version {0}")]
    Version(String),
    #[error("IssueInstant {0} is outside the allowed clock skew")]
    IssueInstant(String),
    #[error("Destination {} does not match this IdP's endpoint {expected}", .found.as_deref().unwrap_or("(none)"))]
    Destination {
        expected: String,
        found: Option<String>,
    },
    #[error("AssertionConsumerService not registered for this service provider: {0}")]
    UnknownAcs(String),
    #[error("XML signing failed: {0}")]
    Signing(String),
    #[error("crypto error: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
}

pub type Result<T, E = SamlError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts reach SPs as StatusMessage: plain words, no Rust debug output.
    #[test]
    fn every_message_is_plain_text() {
        let s = || "x".to_owned();
        let all = [
            SamlError::Key(s()),
            SamlError::TooLarge { limit: 1 },
            SamlError::Doctype,
            SamlError::NotXml(s()),
            SamlError::WrongRoot {
                expected: "AuthnRequest",
                found: s(),
            },
            SamlError::Missing("Issuer"),
            SamlError::Invalid {
                field: "ID",
                value: s(),
            },
            SamlError::Base64("SAMLRequest"),
            SamlError::Inflate(s()),
            SamlError::Unsigned,
            SamlError::AlgorithmNotAccepted(s()),
            SamlError::Sha1Refused(s()),
            SamlError::BadSignature,
            SamlError::SignatureStructure("x"),
            SamlError::Version(s()),
            SamlError::IssueInstant(s()),
            SamlError::Destination {
                expected: s(),
                found: Some("https://idp.example.test/sso".into()),
            },
            SamlError::Destination {
                expected: s(),
                found: None,
            },
            SamlError::UnknownAcs(s()),
            SamlError::Signing(s()),
            SamlError::Crypto(openssl::error::ErrorStack::get()),
        ];
        for e in &all {
            let text = e.to_string();
            for artefact in ["Some(", "None", "\"", "{", "}"] {
                assert!(!text.contains(artefact), "{artefact} in {text:?}");
            }
        }
        let d = SamlError::Destination {
            expected: "https://a".into(),
            found: Some("https://b".into()),
        };
        assert_eq!(
            d.to_string(),
            "Destination https://b does not match this IdP's endpoint https://a"
        );
    }
}

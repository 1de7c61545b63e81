//! The crate's failures that are not protocol answers: bad keys and crypto library errors.
//! Protocol errors a client must see are [`crate::AuthorizeError`] and [`crate::TokenError`].

/// Something went wrong with a key or in openssl; never caused by what a client sent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// openssl refused an operation (key parsing, signing, random bytes).
    #[error("openssl: {0}")]
    Openssl(#[from] openssl::error::ErrorStack),
    /// The key is of the wrong type or too weak for its algorithm.
    #[error("unsuitable key: {0}")]
    UnsuitableKey(&'static str),
    /// Claims or a header could not be serialised.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

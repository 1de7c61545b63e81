//! What can go wrong when the app talks to Sesam or reads its profile.
//! One error type for the library; the CLI wraps it in `anyhow` at its edge.

/// Why a call to the app API (or the profile file) failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Sesam answered with a non-2xx status and its JSON error body.
    #[error("refused by Sesam ({status} {error}): {message}")]
    Refused {
        status: u16,
        error: String,
        message: String,
    },
    /// A non-2xx status whose body is not Sesam's JSON error (a proxy, a body limit, ...).
    #[error("unexpected HTTP status {status}: {body}")]
    UnexpectedStatus { status: u16, body: String },
    /// The request never got an answer (connection, TLS, timeout, ...).
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// The server URL and path do not make a valid URL.
    #[error("bad server URL: {0}")]
    BadServerUrl(String),
    /// The profile file could not be read, written or understood.
    #[error("profile: {0}")]
    Profile(String),
    /// Sesam answered 2xx with something the API does not describe.
    #[error("unexpected answer from Sesam: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The HTTP status of a refusal, if the server answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } | ClientError::UnexpectedStatus { status, .. } => {
                Some(*status)
            }
            ClientError::Http(e) => e.status().map(|s| s.as_u16()),
            ClientError::BadServerUrl(_) | ClientError::Profile(_) | ClientError::Protocol(_) => {
                None
            }
        }
    }

    /// The machine-readable reason of a refusal (`invalid_proof`, `replayed_proof`, ...).
    pub fn error_code(&self) -> Option<&str> {
        match self {
            ClientError::Refused { error, .. } => Some(error),
            _ => None,
        }
    }
}

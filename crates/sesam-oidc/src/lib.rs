//! The OpenID Connect provider protocol of Sesam, as pure functions: parse and judge what a
//! relying party sends, and render what Sesam answers. The server does HTTP and storage.
//!
//! The flow, as the server wires it:
//!
//! 1. `/authorize`: [`AuthorizeRequest::validate`] with the client looked up by id. A
//!    [`AuthorizeError::NotRedirectable`] becomes an error page; any other error is sent to the
//!    client with [`AuthorizeError::response`]. After login, [`AuthorizeRequest::success`]
//!    delivers the code (as a redirect or an HTML form for `form_post`).
//! 2. `/token`: [`TokenRequest::parse`], then [`authenticate_client`], then for a code
//!    [`IssuedCode::redeem`] (the server makes the code single use), then
//!    [`issue_id_token`] with [`IdTokenClaims`].
//! 3. `/.well-known/openid-configuration` and `/jwks`: [`discovery`] and [`jwks`].
//!
//! Keys ([`SigningKey`] for RS256, [`EcSigningKey`] for ES256) are parsed once and sign through
//! openssl. Time is always a parameter (seconds since the Unix epoch).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod authorize;
mod discovery;
mod error;
mod id_token;
mod jwt;
mod keys;
mod params;
mod pkce;
mod response;
mod secret;
mod token;

pub use authorize::{
    is_valid_redirect_uri, AssuranceLevel, AuthorizeError, AuthorizeErrorCode, AuthorizeRequest,
    ClientInfo, Prompt, ResponseMode, SubjectType, MAX_NONCE_LEN, MAX_PARAM_LEN, MAX_REQUEST_LEN,
    MAX_STATE_LEN,
};
pub use discovery::{discovery, jwks, SUPPORTED_SCOPES};
pub use error::Error;
pub use id_token::{issue_id_token, pairwise_sub, IdTokenClaims};
pub use jwt::{at_hash, base64url, sign_jwt, verify_jwt};
pub use keys::{EcSigningKey, JwsAlg, JwsSigner, SigningKey};
pub use pkce::{pkce_challenge_s256, verify_pkce_s256};
pub use response::{authorization_error_response, authorization_response, AuthorizationResponse};
pub use secret::{generate_secret, hash_client_secret, verify_client_secret};
pub use token::{
    authenticate_client, ClientAuth, Grant, IssuedCode, IssuedRefreshToken, TokenError,
    TokenErrorCode, TokenRequest, CODE_LIFETIME_SECS,
};

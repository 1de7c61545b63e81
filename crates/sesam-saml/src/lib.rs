//! SAML 2.0 identity-provider protocol for Sesam, as pure functions: no HTTP, no storage.
//! Metadata out and in, AuthnRequest decoding and checks, signed (and encrypted) Responses.
//!
//! samael supplies the xmlsec signing and verification; element templates, the untrusted-input
//! parser, Redirect inflate and Redirect signature checks are ours (see DESIGN.md §4, "SAML").

#![forbid(unsafe_code)]

mod authn_request;
mod encrypt;
mod error;
mod key;
mod logout;
mod metadata;
mod post_form;
mod response;
mod sp_metadata;
mod xml;

pub use authn_request::{
    decode_post, decode_redirect, AuthnRequest, NameIdPolicy, RequestedAuthnContext,
    SignaturePolicy, UnverifiedAuthnRequest, MAX_RELAY_STATE_BYTES, MAX_REQUEST_XML_BYTES,
};
pub use encrypt::{build_encrypted_response, DataEncryption, Encryption, KeyTransport};
pub use error::{Result, SamlError};
pub use key::{Certificate, IdpKey};
pub use logout::{
    build_logout_request, build_logout_response, decode_logout_post, decode_logout_redirect,
    decode_logout_response_post, decode_logout_response_redirect, logout_request_redirect_url,
    logout_response_redirect_url, LogoutRequest, LogoutRequestParams, LogoutResponse,
    LogoutResponseParams, LogoutStatus, UnverifiedLogoutRequest, UnverifiedLogoutResponse,
};
pub use metadata::{idp_metadata, IdpMetadata};
pub use post_form::post_form;
pub use response::{
    build_error_response, build_response, AssuranceLevel, Attribute, NameIdFormat, ResponseParams,
    ResponseSigning, StatusError, ASSERTION_VALIDITY,
};
pub use sp_metadata::{
    parse_sp_metadata, Endpoint, IndexedEndpoint, SpMetadata, MAX_SP_METADATA_BYTES,
};
pub use xml::new_id;

pub const BINDING_HTTP_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
pub const BINDING_HTTP_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
pub const NAMEID_PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";

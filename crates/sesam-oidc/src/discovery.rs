//! What Sesam tells relying parties about itself: the discovery document
//! (`/.well-known/openid-configuration`) and the JWKS with the keys that verify its ID tokens.

use serde_json::{json, Value};

use crate::authorize::AssuranceLevel;
use crate::keys::JwsSigner;

/// The scopes Sesam grants; others in a request are ignored.
pub const SUPPORTED_SCOPES: &[&str] = &["openid", "profile", "email"];

/// The discovery document for `issuer` (e.g. `https://login.kommune.dk`, no trailing slash
/// needed). Endpoints are the issuer plus `/authorize`, `/token`, `/userinfo`, `/jwks`,
/// `/revoke`, `/end_session`.
pub fn discovery(issuer: &str) -> Value {
    let base = issuer.trim_end_matches('/');
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/jwks"),
        "revocation_endpoint": format!("{base}/revoke"),
        "end_session_endpoint": format!("{base}/end_session"),
        "scopes_supported": SUPPORTED_SCOPES,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "subject_types_supported": ["public", "pairwise"],
        "acr_values_supported": [AssuranceLevel::Low.nsis_uri(), AssuranceLevel::Substantial.nsis_uri()],
        "prompt_values_supported": ["none", "login"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "at_hash", "sid",
            "name", "given_name", "family_name", "preferred_username", "email", "email_verified"
        ],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
    })
}

/// The JWK Set: the current key, and during a rollover the next (and/or the previous) key,
/// so clients that cache the set keep verifying.
pub fn jwks(keys: &[&dyn JwsSigner]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{EcSigningKey, SigningKey};
    use openidconnect::core::{CoreJsonWebKeySet, CoreProviderMetadata};

    #[test]
    fn discovery_lists_endpoints_and_parses_as_provider_metadata() {
        let doc = discovery("https://idp.example.dk/");
        assert_eq!(
            doc["authorization_endpoint"],
            "https://idp.example.dk/authorize"
        );
        assert_eq!(
            doc["end_session_endpoint"],
            "https://idp.example.dk/end_session"
        );
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        assert!(!doc["acr_values_supported"].to_string().contains("High"));

        let doc = discovery("https://idp.example.dk");
        let metadata: CoreProviderMetadata = serde_json::from_value(doc).unwrap();
        assert_eq!(metadata.issuer().as_str(), "https://idp.example.dk");
        assert_eq!(metadata.jwks_uri().as_str(), "https://idp.example.dk/jwks");
        assert_eq!(
            metadata.token_endpoint().unwrap().as_str(),
            "https://idp.example.dk/token"
        );
    }

    #[test]
    fn jwks_holds_current_and_next_key_and_parses_with_openidconnect() {
        let current = SigningKey::generate().unwrap();
        let next = SigningKey::generate().unwrap();
        let ec = EcSigningKey::generate().unwrap();
        let set = jwks(&[&current, &next, &ec]);
        let keys = set["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[0]["kid"], current.kid());
        assert_eq!(keys[1]["kid"], next.kid());
        assert_eq!(keys[2]["kty"], "EC");
        assert!(keys
            .iter()
            .all(|k| k.get("d").is_none() && k.get("p").is_none()));
        let parsed: CoreJsonWebKeySet = serde_json::from_value(set).unwrap();
        assert_eq!(parsed.keys().len(), 3);
    }
}

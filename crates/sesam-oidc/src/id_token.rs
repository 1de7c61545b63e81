//! The ID token: its claims as Sesam issues them and the signing that makes it a JWS; plus the
//! pairwise subject, so clients that must not correlate users each see a different `sub`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::jwt::{base64url, sign_jwt};
use crate::keys::JwsSigner;
use crate::Error;

/// Claims of an ID token (OIDC Core §2). Times are seconds since the Unix epoch; the server
/// takes them from its clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenClaims {
    /// The issuer, exactly as in the discovery document.
    pub iss: String,
    /// The subject: user id, or [`pairwise_sub`] for pairwise clients.
    pub sub: String,
    /// The client id.
    pub aud: String,
    /// Expiry.
    pub exp: u64,
    /// Issued at.
    pub iat: u64,
    /// When the user actually authenticated.
    pub auth_time: u64,
    /// The `nonce` from the authorization request, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The NSIS level reached, as its URI ([`crate::AssuranceLevel::nsis_uri`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Methods used (RFC 8176): e.g. `["pop", "pin"]` for the app, `["pwd"]` for a password.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub amr: Vec<String>,
    /// [`crate::at_hash`] of the access token issued with this ID token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    /// The session id, for logout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Further claims for the granted scopes (`name`, `email`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Signs the claims with `key` (RS256 or ES256, as the client is registered for).
pub fn issue_id_token(key: &dyn JwsSigner, claims: &IdTokenClaims) -> Result<String, Error> {
    sign_jwt(key, claims)
}

/// A pairwise subject (OIDC Core §8.1): base64url(SHA-256) over the sector (or client id), the
/// user id and a secret salt, each length-prefixed so no two inputs collide.
pub fn pairwise_sub(user_id: &str, sector: &str, salt: &[u8]) -> String {
    let mut hash = Sha256::new();
    for part in [sector.as_bytes(), user_id.as_bytes(), salt] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    base64url(&hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::jwks;
    use crate::jwt::at_hash;
    use crate::keys::{EcSigningKey, JwsAlg, SigningKey};
    use crate::AssuranceLevel;
    use openidconnect::core::{
        CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    };
    use openidconnect::{AccessToken, AccessTokenHash, ClientId, IssuerUrl, Nonce};

    const ISS: &str = "https://idp.example.dk";

    fn claims(access_token: &str, alg: JwsAlg) -> IdTokenClaims {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut extra = Map::new();
        extra.insert("email".into(), "alice@kommune.dk".into());
        IdTokenClaims {
            iss: ISS.into(),
            sub: "user-1".into(),
            aud: "sp1".into(),
            exp: now + 300,
            iat: now,
            auth_time: now - 5,
            nonce: Some("n-0S6_WzA2Mj".into()),
            acr: Some(AssuranceLevel::Substantial.nsis_uri().into()),
            amr: vec!["pop".into(), "pin".into()],
            at_hash: Some(at_hash(access_token, alg)),
            sid: Some("session-1".into()),
            extra,
        }
    }

    fn verify_with_openidconnect(
        token: &str,
        key_set: serde_json::Value,
        alg: CoreJwsSigningAlgorithm,
        nonce: &str,
        client_id: &str,
    ) -> Result<CoreIdToken, String> {
        let keys: CoreJsonWebKeySet = serde_json::from_value(key_set).unwrap();
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(client_id.into()),
            IssuerUrl::new(ISS.into()).unwrap(),
            keys,
        )
        .set_allowed_algs([alg]);
        let id_token: CoreIdToken = token.parse().map_err(|e| format!("{e:?}"))?;
        id_token
            .claims(&verifier, &Nonce::new(nonce.into()))
            .map_err(|e| format!("{e:?}"))?;
        Ok(id_token)
    }

    #[test]
    fn rs256_id_token_verifies_with_openidconnect_against_our_jwks() {
        let key = SigningKey::generate().unwrap();
        let next = SigningKey::generate().unwrap();
        let access_token = "access-token-value";
        let token = issue_id_token(&key, &claims(access_token, JwsAlg::RS256)).unwrap();
        let set = jwks(&[&next, &key]);
        let id_token = verify_with_openidconnect(
            &token,
            set.clone(),
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            "n-0S6_WzA2Mj",
            "sp1",
        )
        .unwrap();

        let keys: CoreJsonWebKeySet = serde_json::from_value(set.clone()).unwrap();
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new("sp1".into()),
            IssuerUrl::new(ISS.into()).unwrap(),
            keys,
        );
        let c = id_token
            .claims(&verifier, &Nonce::new("n-0S6_WzA2Mj".into()))
            .unwrap();
        assert_eq!(c.subject().as_str(), "user-1");
        assert_eq!(
            c.auth_context_ref().unwrap().as_str(),
            AssuranceLevel::Substantial.nsis_uri()
        );
        assert_eq!(c.auth_method_refs().unwrap().len(), 2);
        assert_eq!(c.email().unwrap().as_str(), "alice@kommune.dk");
        // openidconnect's own at_hash over the token agrees with ours.
        let expected = AccessTokenHash::from_token(
            &AccessToken::new(access_token.into()),
            id_token.signing_alg().unwrap(),
            id_token.signing_key(&verifier).unwrap(),
        )
        .unwrap();
        assert_eq!(c.access_token_hash(), Some(&expected));

        // Wrong nonce, wrong audience, wrong keys, expired: all refused.
        let rs = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;
        assert!(
            verify_with_openidconnect(&token, set.clone(), rs.clone(), "other", "sp1").is_err()
        );
        assert!(
            verify_with_openidconnect(&token, set.clone(), rs.clone(), "n-0S6_WzA2Mj", "sp2")
                .is_err()
        );
        assert!(verify_with_openidconnect(
            &token,
            jwks(&[&next]),
            rs.clone(),
            "n-0S6_WzA2Mj",
            "sp1"
        )
        .is_err());
        let mut old = claims(access_token, JwsAlg::RS256);
        old.exp = old.iat - 3600;
        let expired = issue_id_token(&key, &old).unwrap();
        assert!(verify_with_openidconnect(
            &expired,
            set.clone(),
            rs.clone(),
            "n-0S6_WzA2Mj",
            "sp1"
        )
        .is_err());
        let mut wrong_iss = claims(access_token, JwsAlg::RS256);
        wrong_iss.iss = "https://evil.example".into();
        let forged = issue_id_token(&key, &wrong_iss).unwrap();
        assert!(verify_with_openidconnect(&forged, set, rs, "n-0S6_WzA2Mj", "sp1").is_err());
    }

    #[test]
    fn es256_id_token_verifies_with_openidconnect() {
        let key = EcSigningKey::generate().unwrap();
        let token = issue_id_token(&key, &claims("at", JwsAlg::ES256)).unwrap();
        verify_with_openidconnect(
            &token,
            jwks(&[&key]),
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            "n-0S6_WzA2Mj",
            "sp1",
        )
        .unwrap();
    }

    #[test]
    fn optional_claims_are_left_out_when_absent() {
        let mut c = claims("at", JwsAlg::RS256);
        c.nonce = None;
        c.at_hash = None;
        c.amr.clear();
        c.extra.clear();
        let json = serde_json::to_value(&c).unwrap();
        assert!(json.get("nonce").is_none());
        assert!(json.get("amr").is_none());
        assert_eq!(json["aud"], "sp1");
    }

    #[test]
    fn pairwise_sub_differs_per_sector_and_is_stable() {
        let a = pairwise_sub("user-1", "sp1", b"salt");
        assert_eq!(a, pairwise_sub("user-1", "sp1", b"salt"));
        assert_ne!(a, pairwise_sub("user-1", "sp2", b"salt"));
        assert_ne!(a, pairwise_sub("user-2", "sp1", b"salt"));
        assert_ne!(a, pairwise_sub("user-1", "sp1", b"pepper"));
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        assert_ne!(pairwise_sub("c", "ab", b""), pairwise_sub("bc", "a", b""));
        assert_eq!(a.len(), 43);
    }
}

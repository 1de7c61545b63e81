//! Compact JWS: header and claims serialised, signed by a [`JwsSigner`], joined with dots;
//! plus `at_hash`, which binds an access token to the ID token issued with it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::keys::{JwsAlg, JwsSigner};
use crate::Error;

/// base64url without padding, as JOSE and PKCE use it.
pub fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `claims` as a compact JWS with header `{"alg", "kid", "typ": "JWT"}`.
pub fn sign_jwt<C: Serialize + ?Sized>(key: &dyn JwsSigner, claims: &C) -> Result<String, Error> {
    let header = json!({"alg": key.alg().as_str(), "kid": key.kid(), "typ": "JWT"});
    let mut token = base64url(&serde_json::to_vec(&header)?);
    token.push('.');
    token.push_str(&base64url(&serde_json::to_vec(claims)?));
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&signature);
    Ok(token)
}

/// The claims of a compact JWS that one of `keys` signed (matched by `kid` and `alg`), or
/// `None`. Times and audience are the caller's to check.
pub fn verify_jwt(token: &str, keys: &[&dyn JwsSigner]) -> Option<serde_json::Value> {
    if token.len() > 16 * 1024 {
        return None;
    }
    let (signing_input, signature) = token.rsplit_once('.')?;
    let (header, claims) = signing_input.split_once('.')?;
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    let key = keys.iter().find(|k| {
        header.get("kid").and_then(|v| v.as_str()) == Some(k.kid())
            && header.get("alg").and_then(|v| v.as_str()) == Some(k.alg().as_str())
    })?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    if !key.verify(signing_input.as_bytes(), &signature) {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()
}

/// The `at_hash` claim (OIDC Core §3.1.3.6): the left half of the hash of the access token,
/// base64url. Both supported algorithms hash with SHA-256.
pub fn at_hash(access_token: &str, alg: JwsAlg) -> String {
    let digest = match alg {
        JwsAlg::RS256 | JwsAlg::ES256 => Sha256::digest(access_token.as_bytes()),
    };
    base64url(&digest[..digest.len() / 2])
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_jwt_accepts_own_tokens_and_refuses_tampered_or_foreign_ones() {
        use crate::keys::{EcSigningKey, SigningKey};
        let rsa = SigningKey::generate().unwrap();
        let ec = EcSigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let keys: [&dyn JwsSigner; 2] = [&rsa, &ec];
        for key in keys {
            let token = sign_jwt(key, &json!({"sub": "u1"})).unwrap();
            assert_eq!(verify_jwt(&token, &keys).unwrap()["sub"], "u1");
            let tampered = token.replacen(
                token.split('.').nth(1).unwrap(),
                &base64url(br#"{"sub":"u2"}"#),
                1,
            );
            assert!(verify_jwt(&tampered, &keys).is_none());
        }
        let foreign = sign_jwt(&other, &json!({"sub": "u1"})).unwrap();
        assert!(verify_jwt(&foreign, &keys).is_none());
        assert!(verify_jwt("a.b", &keys).is_none());
        assert!(verify_jwt("not a token", &keys).is_none());
    }

    use super::*;
    use crate::keys::SigningKey;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::sign::Verifier;

    #[test]
    fn at_hash_matches_the_oidc_core_example() {
        // OpenID Connect Core 1.0, Appendix A.3 (ID token with access token).
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y", JwsAlg::RS256),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    #[test]
    fn signed_jwt_has_kid_header_and_verifies_independently() {
        let key = SigningKey::generate().unwrap();
        let token = sign_jwt(&key, &json!({"sub": "alice"})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], key.kid());
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "alice");

        let public = PKey::public_key_from_pem(&key.public_key_pem().unwrap()).unwrap();
        let mut verifier = Verifier::new(MessageDigest::sha256(), &public).unwrap();
        verifier
            .update(format!("{}.{}", parts[0], parts[1]).as_bytes())
            .unwrap();
        assert!(verifier
            .verify(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .unwrap());
    }
}

//! The device proof: an ES256 compact JWS over method, path, body hash, time and a unique id.
//! Every app API request carries one in `Authorization: DeviceProof <jws>` (docs/app-api.md).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// The `typ` every proof header carries.
pub const PROOF_TYP: &str = "sesam-proof+jwt";
/// The only algorithm Sesam accepts.
pub const PROOF_ALG: &str = "ES256";
/// The Authorization scheme in front of the JWS.
pub const PROOF_SCHEME: &str = "DeviceProof";

/// The JWS payload of a device proof, field for field as documented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofClaims {
    /// The HTTP method, e.g. `POST`.
    pub htm: String,
    /// The request path exactly as sent, with the query if any.
    pub htu: String,
    /// base64url(SHA-256(body)) without padding; of the empty string for GET and DELETE.
    pub bh: String,
    /// Unix seconds when the proof was made.
    pub iat: i64,
    /// A fresh unique id, never reused by the same key.
    pub jti: String,
}

impl ProofClaims {
    /// Claims for a request made at `iat`, with a fresh random `jti`.
    pub fn new(method: &str, path_and_query: &str, body: &[u8], iat: i64) -> ProofClaims {
        ProofClaims {
            htm: method.to_ascii_uppercase(),
            htu: path_and_query.to_owned(),
            bh: body_hash(body),
            iat,
            jti: new_jti(),
        }
    }

    /// Claims for a request made now.
    pub fn now(method: &str, path_and_query: &str, body: &[u8]) -> ProofClaims {
        ProofClaims::new(method, path_and_query, body, unix_now())
    }
}

/// base64url(SHA-256(body)) without padding.
pub fn body_hash(body: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(body))
}

/// A fresh proof id: 16 random bytes, 22 base64url characters.
pub fn new_jti() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The current time in Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The public key as the JWK Sesam expects: `{"kty":"EC","crv":"P-256","x":..,"y":..}`.
pub fn public_jwk(key: &VerifyingKey) -> Value {
    let point = key.to_encoded_point(false);
    // An uncompressed point of a valid key always has both coordinates.
    let coord =
        |c: Option<&p256::FieldBytes>| c.map(|b| URL_SAFE_NO_PAD.encode(b)).unwrap_or_default();
    json!({
        "kty": "EC",
        "crv": "P-256",
        "x": coord(point.x()),
        "y": coord(point.y()),
    })
}

/// The header of a proof by an enrolled device: `{"alg":"ES256","typ":..,"kid":device_id}`.
pub fn device_header(device_id: &str) -> Value {
    json!({ "alg": PROOF_ALG, "typ": PROOF_TYP, "kid": device_id })
}

/// The header of the enrolment proof, which carries the public key instead of a device id.
pub fn enrolment_header(key: &VerifyingKey) -> Value {
    json!({ "alg": PROOF_ALG, "typ": PROOF_TYP, "jwk": public_jwk(key) })
}

/// A compact JWS of `claims` under `header`, signed ES256 (64-byte `r || s`) by `key`.
///
/// The header is used as given, so tests can send a wrong `alg` or `kid` on purpose.
pub fn sign_proof(key: &SigningKey, header: &Value, claims: &ProofClaims) -> String {
    let signing_input = signing_input(header, claims);
    let signature: Signature = key.sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

/// A JWS with an empty signature part (`header.payload.`), for `"alg":"none"` tests.
pub fn unsigned_jws(header: &Value, claims: &ProofClaims) -> String {
    format!("{}.", signing_input(header, claims))
}

/// The Authorization header value for a compact JWS.
pub fn authorization(jws: &str) -> String {
    format!("{PROOF_SCHEME} {jws}")
}

fn signing_input(header: &Value, claims: &ProofClaims) -> String {
    // Serialising a Value or a plain struct of strings and integers cannot fail.
    let header = serde_json::to_vec(header).unwrap_or_default();
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier as _;

    /// Splits and checks a proof the way a server would: returns (header, claims) if the
    /// signature verifies with `key`.
    pub(crate) fn verify(jws: &str, key: &VerifyingKey) -> Result<(Value, ProofClaims), String> {
        let parts: Vec<&str> = jws.split('.').collect();
        let [h, p, s] = parts.as_slice() else {
            return Err(format!("not three parts: {jws}"));
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string());
        let sig = Signature::from_slice(&decode(s)?).map_err(|e| e.to_string())?;
        key.verify(format!("{h}.{p}").as_bytes(), &sig)
            .map_err(|e| e.to_string())?;
        let header: Value = serde_json::from_slice(&decode(h)?).map_err(|e| e.to_string())?;
        let claims: Value = serde_json::from_slice(&decode(p)?).map_err(|e| e.to_string())?;
        let keys: Vec<&String> = claims
            .as_object()
            .ok_or("payload not an object")?
            .keys()
            .collect();
        if keys.len() != 5 {
            return Err(format!(
                "payload has other fields than documented: {claims}"
            ));
        }
        let claims = serde_json::from_value(claims).map_err(|e| e.to_string())?;
        Ok((header, claims))
    }

    /// The public key of a JWK as Sesam would read it.
    pub(crate) fn key_from_jwk(jwk: &Value) -> VerifyingKey {
        let coord = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
        let mut sec1 = vec![4u8];
        sec1.extend(coord("x"));
        sec1.extend(coord("y"));
        VerifyingKey::from_sec1_bytes(&sec1).unwrap()
    }

    fn key() -> SigningKey {
        SigningKey::random(&mut rand::rngs::OsRng)
    }

    #[test]
    fn body_hash_of_empty_body_is_the_known_vector() {
        assert_eq!(
            body_hash(b""),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }

    #[test]
    fn body_hash_is_base64url_sha256_without_padding() {
        // SHA-256("abc") from FIPS 180-2, written out independently of the function.
        let expected = [
            0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
            0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
            0xf2, 0x00, 0x15, 0xad,
        ];
        assert_eq!(body_hash(b"abc"), URL_SAFE_NO_PAD.encode(expected));
        assert_eq!(
            body_hash(b"abc"),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
        let body = br#"{"code":"42"}"#;
        let hash = body_hash(body);
        assert!(!hash.contains('='));
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&hash).unwrap(),
            Sha256::digest(body).to_vec()
        );
    }

    #[test]
    fn proof_has_exactly_the_documented_header_and_payload_and_verifies() {
        let key = key();
        let claims = ProofClaims::new(
            "post",
            "/api/app/v1/challenges/abc/answer",
            br#"{"code":"42"}"#,
            1_763_800_000,
        );
        let jws = sign_proof(&key, &device_header("dev-1"), &claims);
        let (header, decoded) = verify(&jws, key.verifying_key()).unwrap();
        assert_eq!(
            header,
            json!({"alg": "ES256", "typ": "sesam-proof+jwt", "kid": "dev-1"})
        );
        assert_eq!(decoded.htm, "POST");
        assert_eq!(decoded.htu, "/api/app/v1/challenges/abc/answer");
        assert_eq!(decoded.bh, body_hash(br#"{"code":"42"}"#));
        assert_eq!(decoded.iat, 1_763_800_000);
        assert_eq!(decoded, claims);
        // The signature part is the raw 64-byte r || s form.
        let sig = jws.rsplit('.').next().unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(sig).unwrap().len(), 64);
    }

    #[test]
    fn proof_does_not_verify_with_another_key() {
        let jws = sign_proof(
            &key(),
            &device_header("d"),
            &ProofClaims::now("GET", "/x", b""),
        );
        assert!(verify(&jws, key().verifying_key()).is_err());
    }

    #[test]
    fn jti_is_fresh_and_in_the_documented_alphabet() {
        let a = ProofClaims::now("GET", "/api/app/v1/challenges", b"");
        let b = ProofClaims::now("GET", "/api/app/v1/challenges", b"");
        assert_ne!(a.jti, b.jti);
        for jti in [&a.jti, &b.jti] {
            assert!((22..=128).contains(&jti.len()), "{jti}");
            assert!(jti
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        }
        assert!((a.iat - unix_now()).abs() <= 5);
    }

    #[test]
    fn enrolment_header_carries_the_jwk_and_no_kid() {
        let key = key();
        let header = enrolment_header(key.verifying_key());
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["typ"], "sesam-proof+jwt");
        assert!(header.get("kid").is_none());
        assert_eq!(header.as_object().unwrap().len(), 3);
        let jwk = &header["jwk"];
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk.as_object().unwrap().len(), 4);
        assert_eq!(&key_from_jwk(jwk), key.verifying_key());
        let jws = sign_proof(
            &key,
            &header,
            &ProofClaims::now("POST", "/api/app/v1/enrolments", b"{}"),
        );
        let (decoded, _) = verify(&jws, &key_from_jwk(jwk)).unwrap();
        assert_eq!(decoded, header);
    }

    #[test]
    fn unsigned_jws_has_an_empty_signature() {
        let header = json!({"alg": "none", "typ": PROOF_TYP, "kid": "d"});
        let jws = unsigned_jws(&header, &ProofClaims::now("GET", "/x", b""));
        assert!(jws.ends_with('.'));
        assert_eq!(jws.split('.').count(), 3);
        assert_eq!(authorization("a.b.c"), "DeviceProof a.b.c");
    }
}

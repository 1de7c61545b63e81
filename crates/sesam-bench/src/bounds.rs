//! What the hardware allows for the one expensive operation of each login, measured in the
//! same run on the same cores: one thread per core doing nothing else for a while.

use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordVerifier};
use serde::Serialize;
use sesam_oidc::{IdTokenClaims, SigningKey};
use sesam_saml::{Attribute, IdpKey, LevelOfAssurance, ResponseParams};

#[derive(Debug, Serialize)]
pub struct Bounds {
    pub threads: usize,
    /// RSA-2048 signed SAML Responses per second (as Sesam builds them for the benchmark SP).
    pub xml_signatures_per_second: f64,
    /// RS256 ID tokens per second.
    pub rs256_per_second: f64,
    /// argon2id verifications per second with Sesam's parameters.
    pub argon2_per_second: f64,
}

pub fn measure(each: Duration) -> anyhow::Result<Bounds> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    let idp = IdpKey::generate("https://bench.test/saml/metadata", 30)?;
    let attributes = saml_attributes();
    let xml = per_second(threads, each, || {
        let now = time::OffsetDateTime::now_utc();
        let params = ResponseParams {
            idp_entity_id: "http://127.0.0.1:40000/saml/metadata",
            sp_entity_id: "https://sp.bench.test/abcdef",
            acs_url: "https://sp.bench.test/abcdef/acs",
            in_response_to: Some("_0123456789abcdef0123456789abcdef"),
            name_id: "4f1c6f5a1e0e4c2f9a3b7d8e6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39",
            session_index: "_f3b2c1d0-a9b8-4c7d-8e6f-5a4b3c2d1e0f",
            authn_instant: now,
            now,
            loa: LevelOfAssurance::Substantial,
            attributes: &attributes,
        };
        sesam_saml::build_response(&params, &idp).is_ok()
    });

    let key = SigningKey::generate()?;
    let claims = id_token_claims();
    let rs256 = per_second(threads, each, || {
        sesam_oidc::issue_id_token(&key, &claims).is_ok()
    });

    let hash = sesam_server::password::hash_now(crate::seed::PASSWORD)?;
    let argon2 = per_second(threads, each, || {
        let parsed = argon2::PasswordHash::new(&hash);
        parsed.is_ok_and(|h| {
            Argon2::default()
                .verify_password(crate::seed::PASSWORD.as_bytes(), &h)
                .is_ok()
        })
    });

    Ok(Bounds {
        threads,
        xml_signatures_per_second: xml,
        rs256_per_second: rs256,
        argon2_per_second: argon2,
    })
}

/// Runs `op` on `threads` threads for `each`; successful operations per second in total.
fn per_second(threads: usize, each: Duration, op: impl Fn() -> bool + Sync) -> f64 {
    let start = Instant::now();
    let done: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed() < each {
                        if op() {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    done as f64 / start.elapsed().as_secs_f64()
}

/// The attributes the benchmark SP receives (Sesam's default release: uuid, name, email).
fn saml_attributes() -> Vec<Attribute> {
    let one = |name: &str, value: &str| Attribute {
        name: name.to_owned(),
        values: vec![value.to_owned()],
    };
    vec![
        one(
            sesam_server::saml::ATTR_UUID,
            "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
        ),
        one(sesam_server::saml::ATTR_NAME, "Bench bench-abcdef-app-123"),
        one(sesam_server::saml::ATTR_EMAIL, "bench-abcdef-app-123@bench.test"),
    ]
}

/// An ID token like the ones the OIDC scenario receives.
fn id_token_claims() -> IdTokenClaims {
    let mut extra = serde_json::Map::new();
    extra.insert("name".into(), "Bench bench-abcdef-app-123".into());
    extra.insert("preferred_username".into(), "bench-abcdef-app-123".into());
    extra.insert("email".into(), "bench-abcdef-app-123@bench.test".into());
    extra.insert("email_verified".into(), false.into());
    IdTokenClaims {
        iss: "http://127.0.0.1:40000".into(),
        sub: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
        aud: "0123456789abcdef0123456789abcdef".into(),
        exp: 1_900_000_000,
        iat: 1_899_999_700,
        auth_time: 1_899_999_690,
        nonce: Some("0123456789abcdef0123456789abcdef".into()),
        acr: Some("https://data.gov.dk/concept/core/nsis/loa/Substantial".into()),
        amr: vec!["pop".into(), "pin".into()],
        at_hash: Some("a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6".into()),
        sid: Some("f3b2c1d0-a9b8-4c7d-8e6f-5a4b3c2d1e0f".into()),
        extra,
    }
}

//! What the hardware allows for the one expensive operation of each login, measured in the
//! same run on the same cores: one thread per core doing nothing else for a while.

use std::time::{Duration, Instant};

use argon2::{Argon2, Block};
use serde::Serialize;
use sesam_oidc::{IdTokenClaims, SigningKey};
use sesam_saml::{AssuranceLevel, Attribute, IdpKey, ResponseParams};

#[derive(Debug, Serialize)]
pub struct Bounds {
    pub threads: usize,
    /// RSA-2048 signed SAML Responses per second (as Sesam builds them for the benchmark SP).
    pub xml_signatures_per_second: f64,
    /// RS256 ID tokens per second.
    pub rs256_per_second: f64,
    /// argon2id hashes per second with Sesam's parameters (m=19 MiB, t=2, p=1).
    pub argon2_per_second: f64,
    /// CPU time per operation (the measuring threads' own CPU clocks): unlike the rates,
    /// other work on the machine does not change them much.
    pub xml_signature_cpu_ms: f64,
    pub rs256_cpu_ms: f64,
    pub argon2_cpu_ms: f64,
}

impl Bounds {
    /// Each bound from whichever measurement reached more.
    pub fn best_of(self, other: Bounds) -> Bounds {
        Bounds {
            threads: self.threads,
            xml_signatures_per_second: self
                .xml_signatures_per_second
                .max(other.xml_signatures_per_second),
            rs256_per_second: self.rs256_per_second.max(other.rs256_per_second),
            argon2_per_second: self.argon2_per_second.max(other.argon2_per_second),
            xml_signature_cpu_ms: self.xml_signature_cpu_ms.min(other.xml_signature_cpu_ms),
            rs256_cpu_ms: self.rs256_cpu_ms.min(other.rs256_cpu_ms),
            argon2_cpu_ms: self.argon2_cpu_ms.min(other.argon2_cpu_ms),
        }
    }
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
            name_id_format: sesam_saml::NameIdFormat::Persistent,
            session_index: "_f3b2c1d0-a9b8-4c7d-8e6f-5a4b3c2d1e0f",
            authn_instant: now,
            now,
            loa: AssuranceLevel::Substantial,
            attributes: &attributes,
            signing: sesam_saml::ResponseSigning::Assertion,
        };
        sesam_saml::build_response(&params, &idp).is_ok()
    });

    let key = SigningKey::generate()?;
    let claims = id_token_claims();
    let rs256 = per_second(threads, each, || {
        sesam_oidc::issue_id_token(&key, &claims).is_ok()
    });

    // The memory is allocated once per thread: the bound is the hashing itself, not the
    // allocator (Sesam's verification allocates its 19 MiB per call).
    let hasher = Argon2::default();
    let blocks = argon2::Params::default().block_count();
    let argon2id = per_second_with(
        threads,
        each,
        || vec![Block::new(); blocks],
        |memory| {
            let mut out = [0u8; 32];
            hasher
                .hash_password_into_with_memory(
                    crate::seed::PASSWORD.as_bytes(),
                    b"sixteen byte salt",
                    &mut out,
                    &mut memory[..],
                )
                .is_ok()
        },
    );

    Ok(Bounds {
        threads,
        xml_signatures_per_second: xml.per_second,
        rs256_per_second: rs256.per_second,
        argon2_per_second: argon2id.per_second,
        xml_signature_cpu_ms: xml.cpu_ms_per_op,
        rs256_cpu_ms: rs256.cpu_ms_per_op,
        argon2_cpu_ms: argon2id.cpu_ms_per_op,
    })
}

/// What one bound measurement gave.
struct Rate {
    /// Successful operations per wall-clock second, all threads together.
    per_second: f64,
    /// The threads' CPU time per successful operation.
    cpu_ms_per_op: f64,
}

/// This thread's CPU time so far.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Runs `op` on `threads` threads for `each`; successful operations per second in total.
fn per_second(threads: usize, each: Duration, op: impl Fn() -> bool + Sync) -> Rate {
    per_second_with(threads, each, || (), |_| op())
}

/// As [`per_second`], with state each thread makes once (`init`) and `op` reuses.
fn per_second_with<S>(
    threads: usize,
    each: Duration,
    init: impl Fn() -> S + Sync,
    op: impl Fn(&mut S) -> bool + Sync,
) -> Rate {
    let start = Instant::now();
    let (done, cpu) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut state = init();
                    let cpu_start = thread_cpu();
                    let mut n = 0u64;
                    while start.elapsed() < each {
                        if op(&mut state) {
                            n += 1;
                        }
                    }
                    (n, thread_cpu().saturating_sub(cpu_start))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or((0, Duration::ZERO)))
            .fold((0u64, Duration::ZERO), |(n, c), (wn, wc)| (n + wn, c + wc))
    });
    Rate {
        per_second: done as f64 / start.elapsed().as_secs_f64(),
        cpu_ms_per_op: if done > 0 {
            cpu.as_secs_f64() * 1000.0 / done as f64
        } else {
            f64::INFINITY
        },
    }
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
        one(
            sesam_server::saml::ATTR_EMAIL,
            "bench-abcdef-app-123@bench.test",
        ),
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

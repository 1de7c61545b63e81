//! The reference Sesam MFA app: a device key, enrolment and the signed app API calls.
//! Library for the end-to-end tests and the `sesam-app` CLI; it speaks exactly as a phone does.
#![forbid(unsafe_code)]

mod client;
mod error;
mod model;
mod profile;
mod proof;

pub use client::{api_path, check_response, AppClient, API_PREFIX};
pub use error::ClientError;
pub use model::{
    Answer, AnswerResult, ChallengeView, DeviceUpdate, DeviceView, Eligibility, EnrolOptions,
    EnrolmentRequest, PushRegistration, ScanResult,
};
pub use profile::Profile;
pub use proof::{
    authorization, body_hash, device_header, enrolment_header, new_jti, public_jwk, sign_proof,
    unix_now, unsigned_jws, ProofClaims, PROOF_ALG, PROOF_SCHEME, PROOF_TYP,
};

/// Re-exported so callers name the same key types as the library.
pub use p256::ecdsa::{SigningKey, VerifyingKey};

//! The app API's public-key reader (`Jwk::parse`): the `jwk` an enrolling app puts in its
//! proof header. The proof (JWS) parser and verifier themselves are private to
//! sesam-server's `api::proof` and need the server state, so they are not reachable here.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesam_server::api::proof::Jwk;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(jwk) = Jwk::parse(&value) else {
        return;
    };
    // The stored form reads back to the same key and thumbprint.
    let stored: serde_json::Value =
        serde_json::from_str(&jwk.to_json()).expect("stored key is JSON");
    let again = Jwk::parse(&stored).expect("stored key parses");
    assert_eq!(again.key, jwk.key);
    assert_eq!(again.thumbprint(), jwk.thumbprint());
});

//! SP metadata import (an uploaded or fetched EntityDescriptor, `parse_sp_metadata`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(first) = sesam_saml::parse_sp_metadata(data) else {
        return;
    };
    assert_eq!(
        sesam_saml::parse_sp_metadata(data).ok().as_ref(),
        Some(&first),
        "a second parse of accepted metadata differs"
    );
    assert!(!first.entity_id.is_empty());
    assert!(!first.assertion_consumer_services.is_empty());
    for cert in &first.signing_certificates {
        let _ = cert.to_pem();
    }
});

//! The SAML HTTP-POST AuthnRequest reader (`POST /saml/sso`, form fields `SAMLRequest` and
//! `RelayState`), then the enveloped-signature check through xmlsec with the SP's certificate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesam_fuzz::{split_input, Input};

fuzz_target!(|data: &[u8]| {
    let Some((mode, input)) = split_input(data) else {
        return;
    };
    // On the wire: the SAMLRequest field, then an optional RelayState after the first newline.
    let (field, relay) = match input {
        Input::Wire(text) => match text.split_once('\n') {
            Some((field, relay)) => (field.to_owned(), Some(relay)),
            None => (text.to_owned(), None),
        },
        Input::Xml(xml) => (sesam_fuzz::base64(xml), (mode & 2 != 0).then_some("relay")),
    };
    let Ok(first) = sesam_saml::decode_post(&field, relay) else {
        return;
    };
    let again = sesam_saml::decode_post(&field, relay).expect("second decode of an accepted form");
    assert_eq!(first.issuer(), again.issuer());
    assert_eq!(first.relay_state(), again.relay_state());
    assert_eq!(first.is_signed(), again.is_signed());
    for policy in sesam_fuzz::POLICIES {
        let signed = first.is_signed();
        match first.clone().verify(sesam_fuzz::sp_certificates(), policy) {
            Ok(request) => {
                assert_eq!(request.signed, signed);
                let _ =
                    request.validate(sesam_fuzz::IDP_SSO_URL, sesam_fuzz::now(), sesam_fuzz::SKEW);
                let _ = request.resolve_acs(sesam_fuzz::sp_metadata());
            }
            Err(_) => assert!(signed || policy.require_signed),
        }
    }
});

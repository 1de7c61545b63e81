//! The SAML HTTP-POST single-logout readers (`POST /saml/slo`: a LogoutRequest in
//! `SAMLRequest`, or a LogoutResponse in `SAMLResponse`), then the enveloped-signature check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesam_fuzz::{split_input, Input};

fuzz_target!(|data: &[u8]| {
    let Some((mode, input)) = split_input(data) else {
        return;
    };
    let (field, relay) = match input {
        Input::Wire(text) => match text.split_once('\n') {
            Some((field, relay)) => (field.to_owned(), Some(relay)),
            None => (text.to_owned(), None),
        },
        Input::Xml(xml) => (sesam_fuzz::base64(xml), Some("relay")),
    };
    if mode & 2 != 0 {
        let Ok(first) = sesam_saml::decode_logout_response_post(&field) else {
            return;
        };
        let again = sesam_saml::decode_logout_response_post(&field)
            .expect("second decode of an accepted form");
        assert_eq!(first.issuer(), again.issuer());
        for policy in sesam_fuzz::POLICIES {
            if let Ok(r) = first.clone().verify(sesam_fuzz::sp_certificates(), policy) {
                let _ = r.is_success();
            }
        }
    } else {
        let Ok(first) = sesam_saml::decode_logout_post(&field, relay) else {
            return;
        };
        let again = sesam_saml::decode_logout_post(&field, relay)
            .expect("second decode of an accepted form");
        assert_eq!(first.issuer(), again.issuer());
        assert_eq!(first.relay_state(), again.relay_state());
        for policy in sesam_fuzz::POLICIES {
            if let Ok(request) = first.clone().verify(sesam_fuzz::sp_certificates(), policy) {
                let _ =
                    request.validate(sesam_fuzz::IDP_SLO_URL, sesam_fuzz::now(), sesam_fuzz::SKEW);
            }
        }
    }
});

//! The SAML HTTP-Redirect single-logout decoders (`GET /saml/slo?SAMLRequest=…` and
//! `?SAMLResponse=…`): the raw query string, then the signature check and the request checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesam_fuzz::{split_input, Input};

fuzz_target!(|data: &[u8]| {
    let Some((mode, input)) = split_input(data) else {
        return;
    };
    let response = mode & 2 != 0;
    let param = if response {
        "SAMLResponse"
    } else {
        "SAMLRequest"
    };
    let query = match input {
        Input::Wire(query) => query.to_owned(),
        Input::Xml(xml) => sesam_fuzz::redirect_query(param, xml, Some("relay")),
    };
    if response {
        let Ok(first) = sesam_saml::decode_logout_response_redirect(&query) else {
            return;
        };
        let again = sesam_saml::decode_logout_response_redirect(&query)
            .expect("second decode of an accepted query");
        assert_eq!(first.issuer(), again.issuer());
        for policy in sesam_fuzz::POLICIES {
            if let Ok(r) = first.clone().verify(sesam_fuzz::sp_certificates(), policy) {
                let _ = r.is_success();
            }
        }
    } else {
        let Ok(first) = sesam_saml::decode_logout_redirect(&query) else {
            return;
        };
        let again =
            sesam_saml::decode_logout_redirect(&query).expect("second decode of an accepted query");
        assert_eq!(first.issuer(), again.issuer());
        assert_eq!(first.relay_state(), again.relay_state());
        if let Some(relay) = first.relay_state() {
            assert!(relay.len() <= sesam_saml::MAX_RELAY_STATE_BYTES);
        }
        for policy in sesam_fuzz::POLICIES {
            if let Ok(request) = first.clone().verify(sesam_fuzz::sp_certificates(), policy) {
                let _ =
                    request.validate(sesam_fuzz::IDP_SLO_URL, sesam_fuzz::now(), sesam_fuzz::SKEW);
            }
        }
    }
});

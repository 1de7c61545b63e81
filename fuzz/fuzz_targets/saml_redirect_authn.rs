//! The SAML HTTP-Redirect AuthnRequest decoder (`GET /saml/sso?SAMLRequest=…`): the raw query
//! string, then the signature check with the SP's certificate and the server's request checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesam_fuzz::{split_input, Input};

fuzz_target!(|data: &[u8]| {
    let Some((mode, input)) = split_input(data) else {
        return;
    };
    let query = match input {
        Input::Wire(query) => query.to_owned(),
        Input::Xml(xml) => {
            let relay = (mode & 2 != 0).then_some("relay/state?x=1&y=ø");
            sesam_fuzz::redirect_query("SAMLRequest", xml, relay)
        }
    };
    let Ok(first) = sesam_saml::decode_redirect(&query) else {
        return;
    };
    // Decoding is a pure function of the query.
    let again = sesam_saml::decode_redirect(&query).expect("second decode of an accepted query");
    assert_eq!(first.issuer(), again.issuer());
    assert_eq!(first.relay_state(), again.relay_state());
    assert_eq!(first.is_signed(), again.is_signed());
    if let Some(relay) = first.relay_state() {
        assert!(relay.len() <= sesam_saml::MAX_RELAY_STATE_BYTES);
    }
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

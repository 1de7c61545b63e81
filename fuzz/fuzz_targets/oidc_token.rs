//! The OIDC `/token` request: the form body as the server decodes it and the raw
//! `Authorization` header, read by `TokenRequest::parse`, then client authentication.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesam_oidc::{ClientAuth, ClientInfo, JwsAlg, SubjectType, TokenRequest};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Input: the Authorization header on the first line (an empty line means none), then
    // the form body.
    let (header, body) = text.split_once('\n').unwrap_or(("", text));
    let authorization = (!header.is_empty()).then_some(header);
    if body.len() > 16 * 1024 {
        return;
    }
    let Ok(form) = serde_urlencoded::from_str::<Vec<(String, String)>>(body) else {
        return;
    };
    let parsed = TokenRequest::parse(&form, authorization);
    assert_eq!(parsed, TokenRequest::parse(&form, authorization));
    let _ = ClientAuth::parse(&form, authorization);
    match parsed {
        Ok(request) => {
            let id = request.client.client_id().to_owned();
            assert!(!id.is_empty());
            let client = ClientInfo {
                client_id: id,
                redirect_uris: vec!["https://rp.example/cb".to_owned()],
                public: false,
                secret_hash: Some(sesam_oidc::hash_client_secret("s3cret")),
                id_token_alg: JwsAlg::RS256,
                subject_type: SubjectType::Public,
            };
            let ok = sesam_oidc::authenticate_client(&request.client, Some(&client)).is_ok();
            let secret_ok = matches!(
                &request.client,
                ClientAuth::Basic { secret, .. } | ClientAuth::Post { secret, .. } if secret == "s3cret"
            );
            assert_eq!(
                ok, secret_ok,
                "client authentication disagrees with the secret"
            );
            assert!(sesam_oidc::authenticate_client(&request.client, None).is_err());
        }
        Err(error) => {
            let _ = error.to_json();
            let _ = error.www_authenticate();
            assert!((400..500).contains(&error.status()));
        }
    }
});

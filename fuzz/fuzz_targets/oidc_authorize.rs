//! The OIDC `/authorize` parameters: the query string as the server decodes it, judged by
//! `AuthorizeRequest::validate` against a registered client, then the answers it leads to.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesam_oidc::{
    AuthorizationResponse, AuthorizeError, AuthorizeRequest, ClientInfo, JwsAlg, SubjectType,
};

const ISS: &str = "https://idp.example";

fn client(client_id: &str) -> Option<ClientInfo> {
    (client_id == "rp" || client_id == "native").then(|| ClientInfo {
        client_id: client_id.to_owned(),
        redirect_uris: vec![
            "https://rp.example/cb".to_owned(),
            "https://rp.example/cb?x=1".to_owned(),
            "http://127.0.0.1:8080/cb".to_owned(),
        ],
        public: client_id == "native",
        secret_hash: None,
        id_token_alg: JwsAlg::RS256,
        subject_type: SubjectType::Public,
    })
}

/// Text a client sent must not add markup to the form_post page: with every field value
/// replaced by a plain word, the page has as many `<` and `"` as before.
fn check_response(response: &AuthorizationResponse, redirect_uri: &str) {
    match response {
        AuthorizationResponse::Redirect { location } => assert!(location.starts_with(redirect_uri)),
        AuthorizationResponse::FormPost { action, fields } => {
            let page = |r: &AuthorizationResponse| {
                r.form_post_html("Continue", Some("/static/form-post.js"))
                    .expect("a form_post answer has a page")
            };
            let plain = AuthorizationResponse::FormPost {
                action: action.clone(),
                fields: fields
                    .iter()
                    .map(|(n, _)| (n.clone(), "x".to_owned()))
                    .collect(),
            };
            let markup = |html: &str| html.matches(['<', '"']).count();
            assert_eq!(
                markup(&page(response)),
                markup(&page(&plain)),
                "a field value adds markup to the form_post page"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    // As the server reads it (web/oidc.rs `pairs`): capped, then form-decoded.
    if query.len() > 16 * 1024 {
        return;
    }
    let Ok(params) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) else {
        return;
    };
    let result = AuthorizeRequest::validate(&params, client);
    assert_eq!(
        result,
        AuthorizeRequest::validate(&params, client),
        "validation is not a pure function of the parameters"
    );
    match result {
        Ok(request) => {
            assert!(sesam_oidc::is_valid_redirect_uri(request.redirect_uri()));
            assert!(request.has_scope("openid"));
            assert!(request
                .state()
                .is_none_or(|s| s.len() <= sesam_oidc::MAX_STATE_LEN));
            assert!(request
                .nonce()
                .is_none_or(|n| n.len() <= sesam_oidc::MAX_NONCE_LEN));
            // The request waits in the session as JSON while the user logs in.
            let stored = serde_json::to_string(&request).expect("serialise the request");
            let restored: AuthorizeRequest =
                serde_json::from_str(&stored).expect("read back the stored request");
            assert_eq!(restored, request);
            let _ = request.scope();
            let _ = request.auth_time_is_fresh(1_000, 2_000);
            check_response(&request.success("code-123", ISS), request.redirect_uri());
            check_response(
                &request.error(sesam_oidc::AuthorizeErrorCode::LoginRequired, "login", ISS),
                request.redirect_uri(),
            );
        }
        Err(error) => {
            let response = error.response(ISS);
            match &error {
                AuthorizeError::NotRedirectable { .. } => assert!(response.is_none()),
                AuthorizeError::Redirect { redirect_uri, .. } => {
                    check_response(&response.expect("a redirectable error"), redirect_uri)
                }
            }
        }
    }
});

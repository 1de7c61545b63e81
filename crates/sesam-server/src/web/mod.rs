//! Routes and the middleware around them.

pub mod account;
pub mod admin;
pub mod admin_services;
pub mod agent;
pub mod applinks;
pub mod auth;
pub mod branding;
pub mod cookies;
pub mod csrf;
pub mod demo;
pub mod devices;
pub mod error;
pub mod flood;
pub mod form;
pub mod login;
pub mod moved;
pub mod oidc;
pub mod ops;
pub mod pages;
pub mod passkey;
pub mod protocol;
pub mod saml;
pub mod scim;
pub mod streams;
pub mod totp;
pub mod upstream;
pub mod wait;

use axum::http::{header, HeaderValue};
use axum::response::Redirect;
use axum::routing::{get, post};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer, SessionStore};

use crate::state::AppState;

pub const SESSION_COOKIE: &str = "sesam_session";

/// `Cache-Control: no-store` on every answer of a route (tokens, user data).
fn no_store() -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))
}

/// The application with its session layer over `store` (SQLite or PostgreSQL).
pub fn router<S: SessionStore + Clone>(state: AppState, store: S, idle_seconds: i64) -> Router {
    let sessions = SessionManagerLayer::new(moved::MarkingStore(store))
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(state.config.cookie_secure)
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(idle_seconds)));

    let pages = Router::new()
        .route("/", get(|| async { Redirect::to("/account") }))
        .route(
            "/login",
            get(login::show_username).post(login::submit_username),
        )
        .route(
            "/login/password",
            get(login::show_password).post(login::submit_password),
        )
        .route("/login/switch", get(login::switch_user))
        .route(
            "/login/wait",
            get(wait::show).post(wait::continue_without_js),
        )
        .route("/login/wait/status", get(wait::status))
        .route("/login/wait/events", get(wait::events))
        .route("/login/choose", post(wait::choose))
        .route("/login/complete", get(wait::complete))
        .route("/login/cancel", post(wait::cancel))
        .route("/login/retry", post(wait::retry))
        .route("/login/step-up", get(wait::step_up))
        .route("/login/unreachable", get(wait::unreachable))
        .route(crate::applinks::OPEN_PATH, get(applinks::open))
        .route("/login/upstream", post(upstream::begin))
        .route(crate::upstream::CALLBACK_PATH, get(upstream::callback))
        .route(
            "/login/totp",
            get(totp::show_login).post(totp::submit_login),
        )
        .route(
            "/login/passkey",
            get(passkey::show_login).post(passkey::submit_login),
        )
        .route("/account", get(account::show_account))
        .route(
            "/account/password",
            get(account::show_change_password).post(account::submit_change_password),
        )
        .route("/account/devices", get(devices::show))
        .route(
            "/account/devices/activation",
            post(devices::new_activation_code),
        )
        .route("/account/devices/{id}/rename", post(devices::rename))
        .route("/account/devices/{id}/remove", post(devices::remove))
        .route("/account/totp", post(totp::start_enrolment))
        .route("/account/totp/confirm", post(totp::confirm_enrolment))
        .route("/account/totp/remove", post(totp::remove))
        .route("/account/passkeys/new", post(passkey::start_enrolment))
        .route("/account/passkeys", post(passkey::finish_enrolment))
        .route("/account/passkeys/{id}/remove", post(passkey::remove))
        .route(
            "/logout",
            get(account::show_logout).post(account::submit_logout),
        )
        .route("/lang/{code}", get(ops::switch_language))
        .route(
            "/authorize",
            get(oidc::authorize_get).post(oidc::authorize_post),
        )
        .route("/authorize/continue", get(oidc::resume))
        .route("/end_session", get(oidc::end_session))
        .route("/saml/sso", get(saml::sso_redirect).post(saml::sso_post))
        .route("/saml/sso/continue", get(saml::sso_continue))
        .route("/saml/slo", get(saml::slo_redirect).post(saml::slo_post))
        .route("/saml/slo/continue", get(saml::slo_continue))
        .route("/admin", get(admin::dashboard))
        .route(
            "/admin/settings",
            get(admin::show_settings).post(admin::save_settings),
        )
        .route("/admin/settings/preview", post(admin::preview_settings))
        .route("/admin/users", get(admin::users))
        .route("/admin/users/new", post(admin::create_user))
        .route("/admin/users/{id}", get(admin::user))
        .route("/admin/users/{id}/{action}", post(admin::user_action))
        .route(
            "/admin/users/{id}/devices/{device}/remove",
            post(admin::remove_device),
        )
        .route("/admin/services", get(admin_services::services))
        .route("/admin/services/oidc", post(admin_services::create_client))
        .route(
            "/admin/services/scim",
            post(admin_services::create_scim_client),
        )
        .route(
            "/admin/services/scim/remove",
            post(admin_services::remove_scim_client),
        )
        .route(
            "/admin/services/saml",
            get(admin_services::sp).post(admin_services::save_sp),
        )
        .route("/admin/services/saml/new", post(admin_services::add_sp))
        .route(
            "/admin/services/oidc/{id}",
            get(admin_services::client).post(admin_services::save_client),
        )
        .route(
            "/admin/services/oidc/{id}/{action}",
            post(admin_services::client_action),
        )
        .route("/admin/branding/logo", post(branding::upload_logo))
        .route("/admin/branding/logo/remove", post(branding::remove_logo))
        .route("/admin/audit", get(admin::audit_log))
        .route("/admin/audit.csv", get(admin::audit_csv))
        .route("/demo", get(demo::show))
        .route("/demo/login", get(demo::login))
        .route("/demo/activation", post(demo::activation))
        .route("/demo/phone", get(demo::phone))
        .layer(axum::middleware::from_fn(moved::guard))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            branding::scope,
        ))
        .layer(sessions)
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));

    // form-action also governs the redirects after a form is sent: the password form's
    // answer may end at a service's redirect URI or ACS, so those schemes are allowed.
    let csp = HeaderValue::from_static(if state.config.cookie_secure {
        "default-src 'self'; frame-ancestors 'none'; form-action 'self' https:; base-uri 'none'"
    } else {
        "default-src 'self'; frame-ancestors 'none'; form-action 'self' https: http:; base-uri 'none'"
    });
    // Browsers that reached Sesam over https once keep to https (a year).
    let hsts = state
        .config
        .public_url
        .starts_with("https://")
        .then(|| HeaderValue::from_static("max-age=31536000"));
    // The OIDC endpoints a browser app (a public client) calls from its own origin. They use
    // no cookies, so any origin may read their answers.
    let oidc_api = Router::new()
        .route("/.well-known/openid-configuration", get(oidc::discovery))
        .route("/jwks", get(oidc::jwks))
        .route("/token", post(oidc::token).layer(no_store()))
        .route(
            "/userinfo",
            get(oidc::userinfo).post(oidc::userinfo).layer(no_store()),
        )
        .route("/revoke", post(oidc::revoke).layer(no_store()))
        .layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(tower_http::cors::Any)
                .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        );
    // Every matched route is timed under its template; the app API inside its own router,
    // where the template is whole.
    let track = || axum::middleware::from_fn_with_state(state.clone(), crate::metrics::track);
    Router::new()
        .merge(pages)
        .merge(oidc_api)
        .route("/saml/metadata", get(saml::metadata))
        .route(
            "/.well-known/apple-app-site-association",
            get(applinks::apple),
        )
        .route("/.well-known/assetlinks.json", get(applinks::android))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(crate::metrics::serve))
        .route("/static/{file}", get(ops::static_file))
        .route("/branding/logo", get(branding::logo))
        .route("/branding/theme.css", get(branding::theme))
        .route_layer(track())
        .nest("/api/app/v1", crate::api::router().route_layer(track()))
        .nest("/scim/v2", scim::router().route_layer(track()))
        .fallback(error::not_found)
        // A body that trickles in is cut off; the handlers' own size caps still apply.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            std::time::Duration::from_secs(state.config.limits.request_body_timeout_seconds),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            flood::guard,
        ))
        // After a 413 part of the body may still be unread: the connection is closed, and
        // the client is told so, rather than reusing a connection the server is dropping.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONNECTION,
            |r: &axum::response::Response| {
                (r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE)
                    .then(|| HeaderValue::from_static("close"))
            },
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            csp,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            move |_: &axum::response::Response| hsts.clone(),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .with_state(state)
}

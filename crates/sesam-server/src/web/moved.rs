//! Two tabs, one login: when a step gives the session a new id, a request still carrying
//! the old id (another tab, sent a moment earlier) must not end the login for both.
//!
//! tower-sessions answers a request whose session is gone with a cookie that deletes the
//! session cookie, and that would also delete the new one the other tab just got. So the
//! old id is kept for a short while as a marker, and a request that arrives with it gets a
//! page that carries on with the browser's current cookie, touching nothing.

use askama::Template;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_sessions::session::{Id, Record};
use tower_sessions::{Session, SessionStore};

use crate::i18n::{Catalog, Lang};

/// The marker's one key; a session that has it holds nothing else.
const MOVED_KEY: &str = "moved";
/// Long enough for a request sent before the rotation to arrive.
const KEEP_SECONDS: i64 = 120;

#[derive(Template)]
#[template(path = "moved.html")]
struct MovedPage {
    t: &'static Catalog,
    lang: &'static str,
    again: String,
}

/// Runs inside the session layer: answers requests with a rotated-away id, and marks the
/// old id when the handler rotated it.
pub async fn guard<S: SessionStore + Clone>(store: S, req: Request, next: Next) -> Response {
    let Some(session) = req.extensions().get::<Session>().cloned() else {
        return next.run(req).await;
    };
    let before = session.id();
    if before.is_some() && matches!(session.get::<i64>(MOVED_KEY).await, Ok(Some(_))) {
        return moved_page(&req);
    }
    let response = next.run(req).await;
    if let Some(old) = before {
        if session.id() != Some(old) && !session.is_empty().await {
            mark(&store, old).await;
        }
    }
    response
}

async fn mark<S: SessionStore>(store: &S, old: Id) {
    let mut data = std::collections::HashMap::new();
    data.insert(
        MOVED_KEY.to_owned(),
        serde_json::Value::from(time::OffsetDateTime::now_utc().unix_timestamp()),
    );
    let record = Record {
        id: old,
        data,
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::seconds(KEEP_SECONDS),
    };
    if let Err(e) = store.save(&record).await {
        tracing::warn!(error = %e, "could not mark a rotated session id");
    }
}

/// The same address again, once the browser sends its current cookie (a plain link and a
/// refresh; for a form post, the page it came from).
fn moved_page(req: &Request) -> Response {
    let lang = lang_of(req);
    let again = if req.method() == axum::http::Method::GET {
        req.uri()
            .path_and_query()
            .map_or("/login".to_owned(), |p| p.as_str().to_owned())
    } else {
        "/login".to_owned()
    };
    let page = MovedPage {
        t: lang.catalog(),
        lang: lang.code(),
        again,
    };
    match page.render() {
        Ok(html) => (
            StatusCode::OK,
            [(axum::http::header::CACHE_CONTROL, "no-store")],
            axum::response::Html(html),
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn lang_of(req: &Request) -> Lang {
    let headers = req.headers();
    crate::web::cookies::get(headers, crate::i18n::LANG_COOKIE)
        .and_then(|code| Lang::from_code(&code))
        .unwrap_or_else(|| {
            Lang::negotiate(
                headers
                    .get(axum::http::header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok()),
            )
        })
}

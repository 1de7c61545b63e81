//! Two tabs, one login: when a step gives the session a new id, a request still carrying
//! the old id (another tab, sent a moment earlier) must not end the login for both.
//!
//! tower-sessions answers a request whose session is gone with a cookie that deletes the
//! session cookie, and that would also delete the new one the other tab just got. So the
//! session store never leaves a gap: deleting a session (a new id, a logout) replaces it
//! with a short-lived marker in the same write, and a request that arrives with a marked id
//! gets a page that carries on with the browser's current cookie, touching nothing.

use askama::Template;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;
use tower_sessions::{Session, SessionStore};

use crate::i18n::{Catalog, Lang};

/// The marker's one key; a session that has it holds nothing else.
const MOVED_KEY: &str = "moved";
/// Long enough for a request sent before the rotation to arrive.
const KEEP_SECONDS: i64 = 120;

/// A session store whose `delete` leaves a marker instead of a gap.
#[derive(Clone, Debug)]
pub struct MarkingStore<S>(pub S);

#[async_trait::async_trait]
impl<S: SessionStore + Clone> SessionStore for MarkingStore<S> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.0.create(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.0.save(record).await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.0.load(id).await
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let now = time::OffsetDateTime::now_utc();
        let mut data = std::collections::HashMap::new();
        data.insert(
            MOVED_KEY.to_owned(),
            serde_json::Value::from(now.unix_timestamp()),
        );
        // One upsert: the old id never points at nothing while a request may still use it.
        self.0
            .save(&Record {
                id: *id,
                data,
                expiry_date: now + time::Duration::seconds(KEEP_SECONDS),
            })
            .await
    }
}

#[derive(Template)]
#[template(path = "moved.html")]
struct MovedPage {
    t: &'static Catalog,
    lang: &'static str,
    again: String,
}

/// Runs inside the session layer: a request with a marked id gets the "carry on" page and
/// never reaches a handler (so nothing is written to, or rotated from, the old id).
pub async fn guard(req: Request, next: Next) -> Response {
    let Some(session) = req.extensions().get::<Session>().cloned() else {
        return next.run(req).await;
    };
    if session.id().is_some() && matches!(session.get::<i64>(MOVED_KEY).await, Ok(Some(_))) {
        return moved_page(&req);
    }
    next.run(req).await
}

/// The same address again, once the browser sends its current cookie (a plain link and a
/// refresh; for a form post, the login page).
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

//! The append-only audit log (the database refuses updates and deletes).

use sesam_core::UnixTime;

use crate::{on_pool, Store, StoreError};

/// One thing that happened, as it is written.
#[derive(Clone, Debug, Default)]
pub struct AuditEvent {
    /// Who did it: a username, `system` or `cli`.
    pub actor: Option<String>,
    /// Dotted name, e.g. `login.password.failed`.
    pub event: String,
    /// Whom or what it concerns, usually a username.
    pub subject: Option<String>,
    pub client_ip: Option<String>,
    /// Free text; never secrets.
    pub detail: String,
}

impl AuditEvent {
    pub fn new(event: &str) -> AuditEvent {
        AuditEvent {
            event: event.to_owned(),
            ..AuditEvent::default()
        }
    }
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
    pub fn client_ip(mut self, ip: Option<String>) -> Self {
        self.client_ip = ip;
        self
    }
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }
}

/// One stored entry.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: Option<String>,
    pub event: String,
    pub subject: Option<String>,
    pub client_ip: Option<String>,
    pub detail: String,
}

/// Told the name of each audit event once it is stored.
pub type AuditObserver = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

impl Store {
    /// Calls `observer` with the event name of every audit event this store (and each of its
    /// clones) writes from now on. Set once; a second call is ignored and returns false.
    pub fn observe_audit(&self, observer: AuditObserver) -> bool {
        self.shared.audit_observer.set(observer).is_ok()
    }

    pub async fn append_audit(&self, e: &AuditEvent, now: UnixTime) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO audit_log (at, actor, event, subject, client_ip, detail) VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(now.0)
        .bind(&e.actor)
        .bind(&e.event)
        .bind(&e.subject)
        .bind(&e.client_ip)
        .bind(&e.detail)
        .execute(p)
        .await?
        .rows_affected()
        });
        if let Some(observe) = self.shared.audit_observer.get() {
            observe(&e.event);
        }
        Ok(())
    }

    /// Newest first; `subject` narrows to one user.
    pub async fn list_audit(
        &self,
        subject: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = on_pool!(self, |p| sqlx::query_as(
            "SELECT id, at, actor, event, subject, client_ip, detail FROM audit_log \
             WHERE (CAST($1 AS TEXT) IS NULL OR subject = $1) ORDER BY id DESC LIMIT $2"
        )
        .bind(subject)
        .bind(limit)
        .fetch_all(p)
        .await?);
        Ok(rows)
    }
}

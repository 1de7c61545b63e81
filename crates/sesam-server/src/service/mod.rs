//! The use-case layer: one function per step of the login and of the account actions,
//! typed input in, typed outcome out, no HTTP. Handlers, the CLI and the portal call these.
//!
//! Each function drives the core [`LoginFlow`](sesam_core::LoginFlow): it gathers what the
//! flow needs from the store, applies one event, and performs the effects the flow returns
//! (store writes, pushes, audit events). Rotating the session id is the web layer's part:
//! outcomes say when it is due.

pub mod account;
pub mod app;
pub mod directory;
pub mod login;
pub mod passkey;
pub mod saml;
pub mod scan;
pub mod scim;
pub mod totp;
pub mod upstream;

use sesam_core::flow::{Effect, FlowError};
use sesam_store::{AuditEvent, StoreError};

use crate::state::AppState;

/// Who is asking: what the audit log and the app's request context show.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub ip: Option<String>,
    pub user_agent: String,
    /// The second factor this browser chose at its last step-up (a cookie of its own).
    pub chosen_factor: Option<sesam_core::SecondFactor>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("login flow: {0}")]
    Flow(#[from] FlowError),
    #[error("{0}")]
    Internal(String),
}

/// Performs the effects of a transition that the use-case layer owns; returns whether the
/// session id must change.
pub(crate) async fn perform(
    state: &AppState,
    effects: &[Effect],
    subject: &str,
    origin: &Origin,
) -> Result<bool, ServiceError> {
    let now = state.now();
    let mut rotate = false;
    for effect in effects {
        match effect {
            Effect::RotateSession => rotate = true,
            Effect::CancelChallenge(id) => login::cancel_challenge(state, id).await?,
            Effect::Audit(event) => {
                state
                    .store
                    .append_audit(
                        &AuditEvent::new(event)
                            .actor(subject)
                            .subject(subject)
                            .client_ip(origin.ip.clone()),
                        now,
                    )
                    .await?
            }
            Effect::LinkUpstream { user_id, link } => {
                upstream::link(state, user_id, link, origin).await?
            }
        }
    }
    Ok(rotate)
}

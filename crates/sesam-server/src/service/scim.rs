//! SCIM provisioning as use cases: the clients' bearer tokens (made, checked, revoked), and
//! the user changes a client pushes, each written in one step and audited under its name.

use base64::Engine;
use rand::RngCore;
use sesam_core::{UnixTime, UserStatus};
use sesam_store::{AuditEvent, RoleFlag, ScimClient, ScimProfile, ScimUser, Store, StoreError};
use sha2::{Digest, Sha256};

use crate::service::ServiceError;

/// The hash a token is stored and looked up by. The token holds 256 random bits, so a
/// plain SHA-256 is enough (nothing to guess by brute force) and a lookup by hash compares
/// no secret byte by byte.
pub fn token_hash(token: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// Registers a provisioning client; returns it with its token, shown only now.
/// `Conflict` when the name is taken.
pub async fn add_client(
    store: &Store,
    name: &str,
    actor: &str,
    now: UnixTime,
) -> Result<(ScimClient, String), ServiceError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ServiceError::Internal(
            "a SCIM client needs a name of 1 to 100 printable characters".into(),
        ));
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let client = store
        .add_scim_client(name, &token_hash(&token), now)
        .await?;
    store
        .append_audit(
            &AuditEvent::new("scim.client.added")
                .actor(actor)
                .subject(&client.name),
            now,
        )
        .await?;
    Ok((client, token))
}

/// Revokes a client's token at once; `false` when there is no client of that name.
pub async fn remove_client(
    store: &Store,
    name: &str,
    actor: &str,
    now: UnixTime,
) -> Result<bool, ServiceError> {
    if !store.remove_scim_client(name).await? {
        return Ok(false);
    }
    store
        .append_audit(
            &AuditEvent::new("scim.client.removed")
                .actor(actor)
                .subject(name),
            now,
        )
        .await?;
    Ok(true)
}

/// The client a bearer token belongs to.
pub async fn authenticate(store: &Store, token: &str) -> Result<Option<ScimClient>, ServiceError> {
    if token.is_empty() || token.len() > 200 {
        return Ok(None);
    }
    Ok(store.scim_client_by_token_hash(&token_hash(token)).await?)
}

/// Why a change was refused; nothing was written.
#[derive(Debug)]
pub enum Refused {
    /// The username or external id belongs to another user.
    Taken(String),
    /// SCIM does not see the user (never there, or deleted through SCIM).
    NotFound,
    /// Administrators are not provisioned: a provisioning token (an HR system's) must not
    /// make an administrator, nor take over or lock out one.
    Administrator,
}

fn event(name: &str, client: &ScimClient, subject: &str, ip: &Option<String>) -> AuditEvent {
    AuditEvent::new(name)
        .actor(format!("scim:{}", client.name))
        .subject(subject)
        .client_ip(ip.clone())
}

/// A new user from a provisioning client, with the password hash when it sent one.
pub async fn create_user(
    store: &Store,
    client: &ScimClient,
    profile: &ScimProfile,
    password_hash: Option<&str>,
    now: UnixTime,
    ip: Option<String>,
) -> Result<Result<ScimUser, Refused>, ServiceError> {
    let created = match store.create_scim_user(profile, password_hash, now).await {
        Ok(user) => user,
        Err(StoreError::Conflict(what)) => return Ok(Err(Refused::Taken(what))),
        Err(e) => return Err(e.into()),
    };
    let name = created.user.username.as_str();
    store
        .append_audit(
            &event("user.created.scim", client, name, &ip).detail(format!(
                "externalId {}",
                created.external_id.as_deref().unwrap_or("-")
            )),
            now,
        )
        .await?;
    if created.user.status != UserStatus::Active {
        store
            .append_audit(
                &event("user.disabled.scim", client, name, &ip).detail("created inactive"),
                now,
            )
            .await?;
    }
    Ok(Ok(created))
}

/// Writes the whole new profile of `before` (a PUT, or a PATCH already applied to it), then
/// the new password if one came; audits what changed.
pub async fn update_user(
    store: &Store,
    client: &ScimClient,
    before: &ScimUser,
    profile: &ScimProfile,
    password_hash: Option<&str>,
    now: UnixTime,
    ip: Option<String>,
) -> Result<Result<ScimUser, Refused>, ServiceError> {
    if before.user.is_admin {
        return Ok(Err(Refused::Administrator));
    }
    let id = &before.user.id;
    let mut after = match store.set_scim_profile(id, profile, now).await {
        Ok(user) => user,
        Err(StoreError::Conflict(what)) => return Ok(Err(Refused::Taken(what))),
        Err(StoreError::NotFound(_)) => return Ok(Err(Refused::NotFound)),
        Err(e) => return Err(e.into()),
    };
    let name = after.user.username.as_str().to_owned();
    let b = &before.user;
    let mut changed = Vec::new();
    if b.username != after.user.username {
        changed.push(format!("userName was {}", b.username));
    }
    if b.display_name != after.user.display_name {
        changed.push(format!("displayName was {}", b.display_name));
    }
    if b.email != after.user.email {
        changed.push("emails".to_owned());
    }
    if before.external_id != after.external_id {
        changed.push("externalId".to_owned());
    }
    if let Some(hash) = password_hash {
        store.set_password(id, hash, false, now).await?;
        // Logins made with the old password stop counting.
        store.bump_session_epoch(id, now).await?;
        changed.push("password".to_owned());
        after = store
            .scim_user(id)
            .await?
            .ok_or(StoreError::NotFound(name.clone()))?;
    }
    if !changed.is_empty() {
        store
            .append_audit(
                &event("user.updated.scim", client, &name, &ip).detail(changed.join(", ")),
                now,
            )
            .await?;
    }
    if b.status != after.user.status {
        let what = if after.user.is_active() {
            "user.enabled.scim"
        } else {
            "user.disabled.scim"
        };
        store
            .append_audit(&event(what, client, &name, &ip), now)
            .await?;
    }
    Ok(Ok(after))
}

/// A SCIM DELETE: the user is disabled and leaves SCIM's view; devices and audit stay.
pub async fn delete_user(
    store: &Store,
    client: &ScimClient,
    user: &ScimUser,
    now: UnixTime,
    ip: Option<String>,
) -> Result<Result<(), Refused>, ServiceError> {
    if user.user.is_admin {
        return Ok(Err(Refused::Administrator));
    }
    if !store.scim_delete_user(&user.user.id, now).await? {
        return Ok(Err(Refused::NotFound));
    }
    store
        .append_audit(
            &event(
                "user.deleted.scim",
                client,
                user.user.username.as_str(),
                &ip,
            )
            .detail("disabled and removed from provisioning; devices and audit kept"),
            now,
        )
        .await?;
    Ok(Ok(()))
}

/// Adds a user to one of the role groups or takes them out; audited when it changed.
pub async fn set_role(
    store: &Store,
    client: &ScimClient,
    user: &ScimUser,
    role: (RoleFlag, &str),
    on: bool,
    now: UnixTime,
    ip: Option<String>,
) -> Result<Result<bool, Refused>, ServiceError> {
    if role.0 == RoleFlag::Admin {
        return Ok(Err(Refused::Administrator));
    }
    let u = &user.user;
    let has = match role.0 {
        RoleFlag::Admin => u.is_admin,
        RoleFlag::Pilot => u.in_pilot,
        RoleFlag::PasswordOnly => u.password_only,
    };
    if has == on {
        return Ok(Ok(true));
    }
    if !store.set_role_flag(&u.id, role.0, on, now).await? {
        return Ok(Ok(false));
    }
    let what = if on { "granted" } else { "removed" };
    store
        .append_audit(
            &event("user.role.scim", client, u.username.as_str(), &ip)
                .detail(format!("{} {what}", role.1)),
            now,
        )
        .await?;
    Ok(Ok(true))
}

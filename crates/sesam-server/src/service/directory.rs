//! The organisation's directory as the source of its users: one entry is taken into the
//! local user table the same way at a login and in a sync; a sync also disables local users
//! the directory no longer lists.

use std::collections::HashSet;

use sesam_core::{UnixTime, User, UserStatus};
use sesam_store::{AuditEvent, DirectoryUser, Store, StoreError};

use crate::directory::Directory;
use crate::service::ServiceError;

/// What became of one directory entry locally.
#[derive(Debug)]
pub enum Taken {
    Created(User),
    /// Renamed, or a new display name or email; `was` is the old username.
    Updated {
        user: User,
        was: String,
    },
    Unchanged(User),
    /// The entry's username belongs to another local user: left alone, reported.
    Conflict(String),
}

fn event(name: &str, subject: &str, ip: Option<String>) -> AuditEvent {
    AuditEvent::new(name)
        .actor("directory")
        .subject(subject)
        .client_ip(ip)
}

/// The local user for `entry`: found by its stable id (so a rename in the directory
/// follows), updated when the directory says something new, else created.
pub async fn take_entry(
    store: &Store,
    entry: &DirectoryUser,
    now: UnixTime,
    ip: Option<String>,
) -> Result<Taken, ServiceError> {
    match store.find_user_by_directory_id(&entry.directory_id).await? {
        Some(user)
            if user.username == entry.username
                && user.display_name == entry.display_name
                && user.email == entry.email =>
        {
            Ok(Taken::Unchanged(user))
        }
        Some(user) => match store.update_from_directory(&user.id, entry, now).await {
            Ok(updated) => {
                store
                    .append_audit(
                        &event("user.updated.directory", updated.username.as_str(), ip).detail(
                            format!(
                                "from the directory: was {} ({})",
                                user.username, user.display_name
                            ),
                        ),
                        now,
                    )
                    .await?;
                Ok(Taken::Updated {
                    user: updated,
                    was: user.username.to_string(),
                })
            }
            Err(StoreError::Conflict(_)) => Ok(Taken::Conflict(format!(
                "{} is renamed to {} in the directory, a name another local user has",
                user.username, entry.username
            ))),
            Err(e) => Err(e.into()),
        },
        None => match store.create_directory_user(entry, now).await {
            Ok(user) => {
                store
                    .append_audit(
                        &event("user.created.directory", user.username.as_str(), ip)
                            .detail(format!("from directory entry {}", entry.directory_id)),
                        now,
                    )
                    .await?;
                Ok(Taken::Created(user))
            }
            Err(StoreError::Conflict(_)) => {
                // Either a parallel login created it a moment ago, or the name is taken.
                match store.find_user_by_directory_id(&entry.directory_id).await? {
                    Some(user) => Ok(Taken::Unchanged(user)),
                    None => Ok(Taken::Conflict(format!(
                        "{} is in the directory, but a local user has that name",
                        entry.username
                    ))),
                }
            }
            Err(e) => Err(e.into()),
        },
    }
}

/// What a sync changed.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub disabled: Vec<String>,
    pub conflicts: Vec<String>,
    /// Directory entries without a stable id or a usable username.
    pub unusable: Vec<String>,
}

/// Reads every user from the directory and brings the local users in line: creates,
/// updates, and disables the linked users it no longer lists (their devices stay). When the
/// directory cannot be read whole, nothing changes.
pub async fn sync(
    store: &Store,
    directory: &Directory,
    now: UnixTime,
) -> Result<SyncReport, ServiceError> {
    let listing = directory.list_users().await.map_err(|why| {
        ServiceError::Internal(format!(
            "the directory could not be read, nothing changed: {why}"
        ))
    })?;
    let linked = store.directory_linked_users().await?;
    if listing.users.is_empty() && linked.iter().any(User::is_active) {
        // A wrong base or filter lists nobody; that is no reason to disable everyone.
        return Err(ServiceError::Internal(
            "the directory listed no users; nothing changed (check ldap_base_dn and ldap_user_filter)"
                .into(),
        ));
    }
    let mut report = SyncReport {
        unusable: listing.unusable.clone(),
        ..SyncReport::default()
    };
    for entry in &listing.users {
        match take_entry(store, entry, now, None).await? {
            Taken::Created(user) => report.created.push(user.username.to_string()),
            Taken::Updated { user, was } => report.updated.push(format!(
                "{was} -> {} ({})",
                user.username, user.display_name
            )),
            Taken::Unchanged(_) => {}
            Taken::Conflict(why) => report.conflicts.push(why),
        }
    }
    let listed: HashSet<&str> = listing
        .users
        .iter()
        .map(|u| u.directory_id.as_str())
        .collect();
    for user in linked {
        let gone = user
            .directory_id
            .as_deref()
            .is_some_and(|id| !listed.contains(id));
        if gone && user.is_active() {
            store
                .set_user_status(&user.id, UserStatus::Disabled, now)
                .await?;
            store
                .append_audit(
                    &event("user.disabled.directory", user.username.as_str(), None)
                        .detail("the directory no longer lists the user (disabled or removed)"),
                    now,
                )
                .await?;
            report.disabled.push(user.username.to_string());
        }
    }
    store
        .append_audit(
            &AuditEvent::new("directory.synced")
                .actor("directory")
                .detail(format!(
                    "{} listed; {} created, {} updated, {} disabled, {} conflicts, {} unusable",
                    listing.users.len(),
                    report.created.len(),
                    report.updated.len(),
                    report.disabled.len(),
                    report.conflicts.len(),
                    report.unusable.len()
                )),
            now,
        )
        .await?;
    Ok(report)
}

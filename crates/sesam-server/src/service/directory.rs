//! The organisation's directory as the source of its users: one entry is taken into the
//! local user table the same way at a login and in a sync (names, roles from groups, on again
//! after the sync disabled it); a sync also disables local users the directory no longer lists.

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

/// What taking one entry did.
#[derive(Debug)]
pub struct TakenEntry {
    pub taken: Taken,
    /// On again: a sync had disabled the user, and the directory lists them again.
    pub enabled: bool,
    /// What the directory's groups changed, e.g. "admin granted".
    pub roles: Vec<String>,
}

fn event(name: &str, subject: &str, ip: Option<String>) -> AuditEvent {
    AuditEvent::new(name)
        .actor("directory")
        .subject(subject)
        .client_ip(ip)
}

/// The local user for `entry`: found by its stable id (so a rename in the directory
/// follows), updated when the directory says something new, else created; then on again if
/// a sync disabled it, and its roles as the groups say (a role without a group is left).
pub async fn take_entry(
    store: &Store,
    entry: &DirectoryUser,
    now: UnixTime,
    ip: Option<String>,
) -> Result<TakenEntry, ServiceError> {
    let taken = take_names(store, entry, now, ip.clone()).await?;
    let (taken, enabled, roles) = match taken {
        Taken::Created(user) => {
            let (user, enabled, roles) = follow(store, user, entry, now, ip).await?;
            (Taken::Created(user), enabled, roles)
        }
        Taken::Updated { user, was } => {
            let (user, enabled, roles) = follow(store, user, entry, now, ip).await?;
            (Taken::Updated { user, was }, enabled, roles)
        }
        Taken::Unchanged(user) => {
            let (user, enabled, roles) = follow(store, user, entry, now, ip).await?;
            (Taken::Unchanged(user), enabled, roles)
        }
        conflict @ Taken::Conflict(_) => (conflict, false, Vec::new()),
    };
    Ok(TakenEntry {
        taken,
        enabled,
        roles,
    })
}

/// The status and roles of a linked user as the directory's entry says.
async fn follow(
    store: &Store,
    mut user: User,
    entry: &DirectoryUser,
    now: UnixTime,
    ip: Option<String>,
) -> Result<(User, bool, Vec<String>), ServiceError> {
    // Only a user the sync disabled; an administrator's lock stays (the store checks who).
    let enabled =
        user.status == UserStatus::Disabled && store.enable_from_directory(&user.id, now).await?;
    if enabled {
        store
            .append_audit(
                &event("user.enabled.directory", user.username.as_str(), ip.clone())
                    .detail("the directory lists the user again"),
                now,
            )
            .await?;
        user.status = UserStatus::Active;
    }
    let r = entry.roles;
    let wanted = [
        ("admin", "ldap_admin_group", user.is_admin, r.is_admin),
        ("pilot", "ldap_pilot_group", user.in_pilot, r.in_pilot),
        (
            "password-only",
            "ldap_password_only_group",
            user.password_only,
            r.password_only,
        ),
    ];
    let mut roles = Vec::new();
    for (role, key, has, wants) in wanted {
        match wants {
            Some(true) if !has => roles.push((
                format!("{role} granted"),
                format!("{role} granted: member of the {key}"),
            )),
            Some(false) if has => roles.push((
                format!("{role} removed"),
                format!("{role} removed: not a member of the {key}"),
            )),
            _ => {}
        }
    }
    if !roles.is_empty() {
        user.is_admin = r.is_admin.unwrap_or(user.is_admin);
        user.in_pilot = r.in_pilot.unwrap_or(user.in_pilot);
        user.password_only = r.password_only.unwrap_or(user.password_only);
        store
            .set_directory_roles(
                &user.id,
                user.is_admin,
                user.in_pilot,
                user.password_only,
                now,
            )
            .await?;
        for (_, detail) in &roles {
            store
                .append_audit(
                    &event("user.role.directory", user.username.as_str(), ip.clone())
                        .detail(detail.clone()),
                    now,
                )
                .await?;
        }
    }
    Ok((user, enabled, roles.into_iter().map(|(r, _)| r).collect()))
}

/// The user's name, display name and email from the entry; created when new.
async fn take_names(
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
    /// Users the sync had disabled that the directory lists again.
    pub enabled: Vec<String>,
    /// Role changes from the groups: "dirk: admin granted".
    pub roles: Vec<String>,
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
        let took = take_entry(store, entry, now, None).await?;
        let name = match &took.taken {
            Taken::Created(user) => {
                report.created.push(user.username.to_string());
                user.username.to_string()
            }
            Taken::Updated { user, was } => {
                report.updated.push(format!(
                    "{was} -> {} ({})",
                    user.username, user.display_name
                ));
                user.username.to_string()
            }
            Taken::Unchanged(user) => user.username.to_string(),
            Taken::Conflict(why) => {
                report.conflicts.push(why.clone());
                continue;
            }
        };
        if took.enabled {
            report.enabled.push(name.clone());
        }
        for role in took.roles {
            report.roles.push(format!("{name}: {role}"));
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
        // Only an active user: one an administrator locked stays locked, and stays a
        // person's decision that the directory will not undo.
        if gone && user.is_active() && store.disable_for_directory(&user.id, now).await? {
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
                    "{} listed; {} created, {} updated, {} disabled, {} enabled, {} role changes, \
                     {} conflicts, {} unusable",
                    listing.users.len(),
                    report.created.len(),
                    report.updated.len(),
                    report.disabled.len(),
                    report.enabled.len(),
                    report.roles.len(),
                    report.conflicts.len(),
                    report.unusable.len()
                )),
            now,
        )
        .await?;
    Ok(report)
}

/// The sync every `every`, started with the server when `ldap_sync_interval_seconds` is set.
/// Of several nodes over one PostgreSQL database the one that holds the advisory lock runs
/// it; the others skip that round. A failed round (the directory down) changed nothing and
/// is only logged; the next round tries again.
pub async fn sync_on_schedule(state: crate::state::AppState, every: std::time::Duration) {
    let Some(directory) = &state.directory else {
        return;
    };
    let mut rounds = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        rounds.tick().await;
        let lock = match state.store.try_directory_sync_lock().await {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                tracing::debug!("another node runs the directory sync");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "directory sync skipped: the database did not answer");
                continue;
            }
        };
        match sync(&state.store, directory, state.now()).await {
            Ok(r) => tracing::info!(
                created = r.created.len(),
                updated = r.updated.len(),
                disabled = r.disabled.len(),
                enabled = r.enabled.len(),
                roles = r.roles.len(),
                conflicts = r.conflicts.len(),
                unusable = r.unusable.len(),
                "directory synced"
            ),
            Err(e) => tracing::warn!(error = %e, "scheduled directory sync failed"),
        }
        drop(lock);
    }
}

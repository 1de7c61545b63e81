//! Users that come from the organisation's directory (LDAP / Active Directory): found by the
//! entry's stable id, created at their first login, their name, contact details and roles
//! kept; disabled when the directory stops listing them and on again when it lists them again.

use sesam_core::{UnixTime, User, UserId, Username};

use crate::users::{UserRow, COLUMNS};
use crate::{new_id, on_pool, Pool, Store, StoreError};

/// What the directory's groups say of a user's roles. `None`: no group is configured for
/// the role (or the directory could not say), and the local flag stays as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectoryRoles {
    pub is_admin: Option<bool>,
    pub in_pilot: Option<bool>,
    pub password_only: Option<bool>,
}

/// Held while this node runs the directory sync; on PostgreSQL a transaction-level advisory
/// lock, so that of several nodes one syncs at a time, released when dropped.
pub struct SyncLock {
    _tx: Option<sqlx::Transaction<'static, sqlx::Postgres>>,
}

/// The advisory lock key of the directory sync ("sesamdir" in ASCII).
const SYNC_LOCK_KEY: i64 = 0x7365_7361_6d64_6972;

/// What the directory says of a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryUser {
    /// The entry's stable id (entryUUID, objectGUID): unchanged by a rename.
    pub directory_id: String,
    pub username: Username,
    pub display_name: String,
    pub email: Option<String>,
    pub roles: DirectoryRoles,
}

impl Store {
    pub async fn find_user_by_directory_id(
        &self,
        directory_id: &str,
    ) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE directory_id = $1");
        let row: Option<UserRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(directory_id)
            .fetch_optional(p)
            .await?);
        row.map(User::try_from).transpose()
    }

    /// Every user linked to a directory entry.
    pub async fn directory_linked_users(&self) -> Result<Vec<User>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM users WHERE directory_id IS NOT NULL ORDER BY username_key"
        );
        let rows: Vec<UserRow> = on_pool!(self, |p| sqlx::query_as(&sql).fetch_all(p).await?);
        rows.into_iter().map(User::try_from).collect()
    }

    /// A local user for a directory entry, without a local password (the directory checks
    /// it). `Conflict` when the username or the directory id is taken.
    pub async fn create_directory_user(
        &self,
        new: &DirectoryUser,
        now: UnixTime,
    ) -> Result<User, StoreError> {
        let id = new_id();
        let sql = "INSERT INTO users (id, username, username_key, display_name, email, status, \
                   password_only, is_admin, must_change_password, in_pilot, directory_id, \
                   created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, 'active', $6, $6, $6, $6, $7, $8, $8)";
        let what = format!("user {}", new.username);
        on_pool!(self, |p| sqlx::query(sql)
            .bind(&id)
            .bind(new.username.as_str())
            .bind(new.username.key())
            .bind(&new.display_name)
            .bind(&new.email)
            .bind(false)
            .bind(&new.directory_id)
            .bind(now.0)
            .execute(p)
            .await
            .map_err(|e| StoreError::from_insert(e, &what))?
            .rows_affected());
        self.get_user(&UserId(id)).await
    }

    /// Takes the directory's username, display name and email for a user linked to it.
    /// `Conflict` when the new username belongs to another user.
    pub async fn update_from_directory(
        &self,
        id: &UserId,
        from: &DirectoryUser,
        now: UnixTime,
    ) -> Result<User, StoreError> {
        let sql = "UPDATE users SET username = $1, username_key = $2, display_name = $3, \
                   email = $4, updated_at = $5 WHERE id = $6 AND directory_id = $7";
        let what = format!("user {}", from.username);
        let changed = on_pool!(self, |p| sqlx::query(sql)
            .bind(from.username.as_str())
            .bind(from.username.key())
            .bind(&from.display_name)
            .bind(&from.email)
            .bind(now.0)
            .bind(&id.0)
            .bind(&from.directory_id)
            .execute(p)
            .await
            .map_err(|e| StoreError::from_insert(e, &what))?
            .rows_affected());
        if changed == 0 {
            return Err(StoreError::NotFound(format!(
                "user {id} linked to directory entry {}",
                from.directory_id
            )));
        }
        self.get_user(id).await
    }

    /// Sets the three role flags a directory's groups decide, as they are given.
    pub async fn set_directory_roles(
        &self,
        id: &UserId,
        is_admin: bool,
        in_pilot: bool,
        password_only: bool,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE users SET is_admin = $2, in_pilot = $3, password_only = $4, \
                   updated_at = $5 WHERE id = $1 AND directory_id IS NOT NULL";
        on_pool!(self, |p| sqlx::query(sql)
            .bind(&id.0)
            .bind(is_admin)
            .bind(in_pilot)
            .bind(password_only)
            .bind(now.0)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Disables an active linked user because the directory no longer lists them, marked so
    /// that [`Store::enable_from_directory`] may undo it. `false` when the user was not active
    /// (an administrator's lock stays what it is).
    pub async fn disable_for_directory(
        &self,
        id: &UserId,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE users SET status = 'disabled', disabled_by = 'directory', \
                   updated_at = $2 WHERE id = $1 AND status = 'active' AND directory_id IS NOT NULL";
        let done = on_pool!(self, |p| sqlx::query(sql)
            .bind(&id.0)
            .bind(now.0)
            .execute(p)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// Turns a user on again that a directory sync disabled; `false` for any other user,
    /// above all one whose status a person set in Sesam.
    pub async fn enable_from_directory(
        &self,
        id: &UserId,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE users SET status = 'active', disabled_by = NULL, updated_at = $2 \
                   WHERE id = $1 AND status = 'disabled' AND disabled_by = 'directory'";
        let done = on_pool!(self, |p| sqlx::query(sql)
            .bind(&id.0)
            .bind(now.0)
            .execute(p)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// The right to run the directory sync now: `None` when another node runs it. SQLite has
    /// one node, which always may.
    pub async fn try_directory_sync_lock(&self) -> Result<Option<SyncLock>, StoreError> {
        match &self.pool {
            Pool::Sqlite(_) => Ok(Some(SyncLock { _tx: None })),
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                    .bind(SYNC_LOCK_KEY)
                    .fetch_one(&mut *tx)
                    .await?;
                Ok(got.then_some(SyncLock { _tx: Some(tx) }))
            }
        }
    }
}

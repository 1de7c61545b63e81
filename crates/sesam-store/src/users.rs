//! Users: create, find, list, and the few fields that change after creation.

use sesam_core::{UnixTime, User, UserId, UserStatus, Username};

use crate::{new_id, on_pool, Store, StoreError};

#[derive(Clone, Debug)]
pub struct NewUser {
    pub username: Username,
    pub display_name: String,
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub password_only: bool,
    pub must_change_password: bool,
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: String,
    username: String,
    display_name: String,
    email: Option<String>,
    status: String,
    password_hash: Option<String>,
    password_only: bool,
    is_admin: bool,
    must_change_password: bool,
    in_pilot: bool,
    passwordless_locked: bool,
    session_epoch: i64,
    directory_id: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<User, StoreError> {
        Ok(User {
            id: UserId(r.id),
            username: Username::parse(&r.username)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            display_name: r.display_name,
            email: r.email,
            status: r.status.parse().map_err(StoreError::Corrupt)?,
            password_hash: r.password_hash,
            password_only: r.password_only,
            is_admin: r.is_admin,
            must_change_password: r.must_change_password,
            in_pilot: r.in_pilot,
            passwordless_locked: r.passwordless_locked,
            session_epoch: r.session_epoch,
            directory_id: r.directory_id,
            created_at: UnixTime(r.created_at),
            updated_at: UnixTime(r.updated_at),
        })
    }
}

pub(crate) const COLUMNS: &str = "id, username, display_name, email, status, password_hash, password_only, \
                       is_admin, must_change_password, in_pilot, passwordless_locked, session_epoch, directory_id, created_at, updated_at";

impl Store {
    pub async fn create_user(&self, new: NewUser, now: UnixTime) -> Result<User, StoreError> {
        let id = new_id();
        let sql = "INSERT INTO users (id, username, username_key, display_name, email, status, \
                   password_hash, password_only, is_admin, must_change_password, in_pilot, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9, $10, $11, $11)";
        let what = format!("user {}", new.username);
        on_pool!(self, |p| sqlx::query(sql)
            .bind(&id)
            .bind(new.username.as_str())
            .bind(new.username.key())
            .bind(&new.display_name)
            .bind(&new.email)
            .bind(&new.password_hash)
            .bind(new.password_only)
            .bind(new.is_admin)
            .bind(new.must_change_password)
            .bind(false)
            .bind(now.0)
            .execute(p)
            .await
            .map_err(|e| StoreError::from_insert(e, &what))?
            .rows_affected());
        self.get_user(&UserId(id)).await
    }

    pub async fn find_user_by_username(
        &self,
        username: &Username,
    ) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE username_key = $1");
        let row: Option<UserRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(username.key())
            .fetch_optional(p)
            .await?);
        row.map(User::try_from).transpose()
    }

    pub async fn get_user(&self, id: &UserId) -> Result<User, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
        let row: Option<UserRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(&id.0)
            .fetch_optional(p)
            .await?);
        row.ok_or_else(|| StoreError::NotFound(format!("user {id}")))?
            .try_into()
    }

    /// Ordered by username, for listings.
    pub async fn list_users(&self, limit: i64, offset: i64) -> Result<Vec<User>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM users ORDER BY username_key LIMIT $1 OFFSET $2");
        let rows: Vec<UserRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(limit)
            .bind(offset)
            .fetch_all(p)
            .await?);
        rows.into_iter().map(User::try_from).collect()
    }

    pub async fn count_admins(&self) -> Result<i64, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE is_admin = $1"
        )
        .bind(true)
        .fetch_one(p)
        .await?))
    }

    pub async fn set_password(
        &self,
        id: &UserId,
        password_hash: &str,
        must_change: bool,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let done = on_pool!(self, |p| {
            sqlx::query(
            "UPDATE users SET password_hash = $2, must_change_password = $3, updated_at = $4 WHERE id = $1"
        )
        .bind(&id.0)
        .bind(password_hash)
        .bind(must_change)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::NotFound(format!("user {id}")));
        }
        Ok(())
    }

    /// Raises the user's session epoch, so every login made before stops counting.
    /// Returns the new epoch.
    pub async fn bump_session_epoch(&self, id: &UserId, now: UnixTime) -> Result<i64, StoreError> {
        let epoch: Option<i64> = on_pool!(self, |p| {
            sqlx::query_scalar(
            "UPDATE users SET session_epoch = session_epoch + 1, updated_at = $2 WHERE id = $1 RETURNING session_epoch"
        )
        .bind(&id.0)
        .bind(now.0)
        .fetch_optional(p)
        .await?
        });
        epoch.ok_or_else(|| StoreError::NotFound(format!("user {id}")))
    }

    pub async fn set_in_pilot(
        &self,
        id: &UserId,
        in_pilot: bool,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "UPDATE users SET in_pilot = $2, updated_at = $3 WHERE id = $1"
        )
        .bind(&id.0)
        .bind(in_pilot)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn set_password_only(
        &self,
        id: &UserId,
        password_only: bool,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "UPDATE users SET password_only = $2, updated_at = $3 WHERE id = $1"
        )
        .bind(&id.0)
        .bind(password_only)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn set_passwordless_locked(
        &self,
        id: &UserId,
        locked: bool,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "UPDATE users SET passwordless_locked = $2, updated_at = $3 WHERE id = $1"
        )
        .bind(&id.0)
        .bind(locked)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn set_user_status(
        &self,
        id: &UserId,
        status: UserStatus,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let done = on_pool!(self, |p| sqlx::query(
            // A person's decision: the directory sync no longer undoes it.
            "UPDATE users SET status = $2, disabled_by = NULL, updated_at = $3 WHERE id = $1"
        )
        .bind(&id.0)
        .bind(status.as_str())
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected());
        if done == 0 {
            return Err(StoreError::NotFound(format!("user {id}")));
        }
        Ok(())
    }
}

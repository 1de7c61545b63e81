//! SCIM 2.0 provisioning: the clients that may push users (a bearer token each, kept as a
//! hash), and the users as SCIM sees them: with the client's own id (`externalId`), and
//! without the ones a SCIM DELETE took away (disabled, their devices and audit kept).

use sesam_core::{UnixTime, User, UserId, UserStatus, Username};

use crate::users::{UserRow, COLUMNS};
use crate::{new_id, on_pool, Store, StoreError};

/// A provisioning client (an HR system, Entra ID).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ScimClient {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

/// A user as SCIM shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimUser {
    pub user: User,
    pub external_id: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ScimUserRow {
    #[sqlx(flatten)]
    user: UserRow,
    external_id: Option<String>,
}

impl TryFrom<ScimUserRow> for ScimUser {
    type Error = StoreError;
    fn try_from(r: ScimUserRow) -> Result<ScimUser, StoreError> {
        Ok(ScimUser {
            user: User::try_from(r.user)?,
            external_id: r.external_id,
        })
    }
}

/// Which users a SCIM listing asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScimUserFilter {
    All,
    UserName(Username),
    ExternalId(String),
}

/// What SCIM may set of a user; the whole of it at once (a PATCH is applied to the stored
/// user first, so that every write is one statement and a refusal changes nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimProfile {
    pub username: Username,
    pub display_name: String,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub status: UserStatus,
}

/// The three role flags SCIM shows as groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleFlag {
    Admin,
    Pilot,
    PasswordOnly,
}

impl RoleFlag {
    fn column(self) -> &'static str {
        match self {
            RoleFlag::Admin => "is_admin",
            RoleFlag::Pilot => "in_pilot",
            RoleFlag::PasswordOnly => "password_only",
        }
    }
}

const SCIM_COLUMNS: &str = "external_id";

impl Store {
    /// `Conflict` when the name or (never in practice) the token hash is taken.
    pub async fn add_scim_client(
        &self,
        name: &str,
        token_hash: &str,
        now: UnixTime,
    ) -> Result<ScimClient, StoreError> {
        let id = new_id();
        let what = format!("SCIM client {name}");
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO scim_clients (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)"
        )
        .bind(&id)
        .bind(name)
        .bind(token_hash)
        .bind(now.0)
        .execute(p)
        .await
        .map_err(|e| StoreError::from_insert(e, &what))?
        .rows_affected());
        Ok(ScimClient {
            id,
            name: name.to_owned(),
            created_at: now.0,
        })
    }

    pub async fn list_scim_clients(&self) -> Result<Vec<ScimClient>, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_as(
            "SELECT id, name, created_at FROM scim_clients ORDER BY name"
        )
        .fetch_all(p)
        .await?))
    }

    /// `false` when there is no client of that name.
    pub async fn remove_scim_client(&self, name: &str) -> Result<bool, StoreError> {
        let done = on_pool!(self, |p| sqlx::query(
            "DELETE FROM scim_clients WHERE name = $1"
        )
        .bind(name)
        .execute(p)
        .await?
        .rows_affected());
        Ok(done == 1)
    }

    /// The client whose token hashes to `token_hash`.
    pub async fn scim_client_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<ScimClient>, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_as(
            "SELECT id, name, created_at FROM scim_clients WHERE token_hash = $1"
        )
        .bind(token_hash)
        .fetch_optional(p)
        .await?))
    }

    /// A user SCIM may see (not taken away by a SCIM DELETE).
    pub async fn scim_user(&self, id: &UserId) -> Result<Option<ScimUser>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS}, {SCIM_COLUMNS} FROM users WHERE id = $1 AND scim_deleted = $2"
        );
        let row: Option<ScimUserRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(&id.0)
            .bind(false)
            .fetch_optional(p)
            .await?);
        row.map(ScimUser::try_from).transpose()
    }

    /// The users a filter selects, ordered by username: how many there are in all, and the
    /// page of them from `offset`.
    pub async fn scim_users(
        &self,
        filter: &ScimUserFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<ScimUser>), StoreError> {
        let (clause, value) = match filter {
            ScimUserFilter::All => ("", None),
            ScimUserFilter::UserName(name) => (" AND username_key = $2", Some(name.key())),
            ScimUserFilter::ExternalId(id) => (" AND external_id = $2", Some(id.clone())),
        };
        let count_sql = format!("SELECT COUNT(*) FROM users WHERE scim_deleted = $1{clause}");
        let n = if value.is_some() { 4 } else { 3 };
        let list_sql = format!(
            "SELECT {COLUMNS}, {SCIM_COLUMNS} FROM users WHERE scim_deleted = $1{clause} \
             ORDER BY username_key LIMIT ${} OFFSET ${n}",
            n - 1
        );
        let total: i64 = on_pool!(self, |p| {
            let mut q = sqlx::query_scalar(&count_sql).bind(false);
            if let Some(v) = &value {
                q = q.bind(v);
            }
            q.fetch_one(p).await?
        });
        let rows: Vec<ScimUserRow> = on_pool!(self, |p| {
            let mut q = sqlx::query_as(&list_sql).bind(false);
            if let Some(v) = &value {
                q = q.bind(v);
            }
            q.bind(limit).bind(offset).fetch_all(p).await?
        });
        let users = rows
            .into_iter()
            .map(ScimUser::try_from)
            .collect::<Result<_, _>>()?;
        Ok((total, users))
    }

    /// A new local user from a provisioning client. `Conflict` when the username or the
    /// external id is taken.
    pub async fn create_scim_user(
        &self,
        new: &ScimProfile,
        password_hash: Option<&str>,
        now: UnixTime,
    ) -> Result<ScimUser, StoreError> {
        let id = new_id();
        let sql = "INSERT INTO users (id, username, username_key, display_name, email, status, \
                   password_hash, password_only, is_admin, must_change_password, in_pilot, \
                   external_id, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8, $8, $9, $10, $10)";
        let what = format!("user {}", new.username);
        on_pool!(self, |p| sqlx::query(sql)
            .bind(&id)
            .bind(new.username.as_str())
            .bind(new.username.key())
            .bind(&new.display_name)
            .bind(&new.email)
            .bind(new.status.as_str())
            .bind(password_hash)
            .bind(false)
            .bind(&new.external_id)
            .bind(now.0)
            .execute(p)
            .await
            .map_err(|e| StoreError::from_insert(e, &what))?
            .rows_affected());
        self.scim_user(&UserId(id.clone()))
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {id}")))
    }

    /// Writes a user's whole SCIM profile in one statement. A status change is a decision
    /// taken outside the directory sync, which therefore will not undo it. `Conflict` when
    /// the username or external id belongs to another user; `NotFound` for a user SCIM
    /// does not see.
    pub async fn set_scim_profile(
        &self,
        id: &UserId,
        profile: &ScimProfile,
        now: UnixTime,
    ) -> Result<ScimUser, StoreError> {
        let sql = "UPDATE users SET username = $2, username_key = $3, display_name = $4, \
                   email = $5, external_id = $6, \
                   disabled_by = CASE WHEN status = $7 THEN disabled_by ELSE NULL END, \
                   status = $7, updated_at = $8 WHERE id = $1 AND scim_deleted = $9";
        let what = format!("user {}", profile.username);
        let done = on_pool!(self, |p| sqlx::query(sql)
            .bind(&id.0)
            .bind(profile.username.as_str())
            .bind(profile.username.key())
            .bind(&profile.display_name)
            .bind(&profile.email)
            .bind(&profile.external_id)
            .bind(profile.status.as_str())
            .bind(now.0)
            .bind(false)
            .execute(p)
            .await
            .map_err(|e| StoreError::from_insert(e, &what))?
            .rows_affected());
        if done == 0 {
            return Err(StoreError::NotFound(format!("user {id}")));
        }
        self.scim_user(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {id}")))
    }

    /// A SCIM DELETE: the user is disabled and leaves SCIM's view; devices, TOTP and audit
    /// stay, and the external id is free again. `false` when SCIM did not see the user.
    pub async fn scim_delete_user(&self, id: &UserId, now: UnixTime) -> Result<bool, StoreError> {
        let done = on_pool!(self, |p| sqlx::query(
            "UPDATE users SET status = 'disabled', disabled_by = NULL, external_id = NULL, \
             scim_deleted = $2, updated_at = $3 WHERE id = $1 AND scim_deleted = $4"
        )
        .bind(&id.0)
        .bind(true)
        .bind(now.0)
        .bind(false)
        .execute(p)
        .await?
        .rows_affected());
        Ok(done == 1)
    }

    /// The users SCIM sees that have the role, ordered by username.
    pub async fn users_with_role(&self, role: RoleFlag) -> Result<Vec<User>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM users WHERE {} = $1 AND scim_deleted = $2 ORDER BY username_key",
            role.column()
        );
        let rows: Vec<UserRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(true)
            .bind(false)
            .fetch_all(p)
            .await?);
        rows.into_iter().map(User::try_from).collect()
    }

    /// Grants or removes a role; `false` when SCIM does not see the user.
    pub async fn set_role_flag(
        &self,
        id: &UserId,
        role: RoleFlag,
        on: bool,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE users SET {} = $2, updated_at = $3 WHERE id = $1 AND scim_deleted = $4",
            role.column()
        );
        let done = on_pool!(self, |p| sqlx::query(&sql)
            .bind(&id.0)
            .bind(on)
            .bind(now.0)
            .bind(false)
            .execute(p)
            .await?
            .rows_affected());
        Ok(done == 1)
    }
}

//! OpenID Connect clients, authorization codes and tokens. Codes and tokens are stored as
//! hashes only; the server hashes what it hands out and what it receives.

use sesam_core::UnixTime;

use crate::{new_id, on_pool, Store, StoreError};

/// A registered relying party.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcClient {
    pub client_id: String,
    pub name: String,
    /// `None` for a public client.
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// `RS256` or `ES256`.
    pub id_token_alg: String,
    /// `public` or `pairwise`.
    pub subject_type: String,
    pub enabled: bool,
    pub created_at: UnixTime,
}

#[derive(Clone, Debug)]
pub struct NewOidcClient {
    pub name: String,
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub id_token_alg: String,
    pub subject_type: String,
}

#[derive(sqlx::FromRow)]
struct ClientRow {
    client_id: String,
    name: String,
    secret_hash: Option<String>,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    id_token_alg: String,
    subject_type: String,
    enabled: bool,
    created_at: i64,
}

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

impl From<ClientRow> for OidcClient {
    fn from(r: ClientRow) -> OidcClient {
        OidcClient {
            client_id: r.client_id,
            name: r.name,
            secret_hash: r.secret_hash,
            redirect_uris: lines(&r.redirect_uris),
            post_logout_redirect_uris: lines(&r.post_logout_redirect_uris),
            id_token_alg: r.id_token_alg,
            subject_type: r.subject_type,
            enabled: r.enabled,
            created_at: UnixTime(r.created_at),
        }
    }
}

const CLIENT_COLUMNS: &str =
    "client_id, name, secret_hash, redirect_uris, post_logout_redirect_uris, \
                              id_token_alg, subject_type, enabled, created_at";

/// What a login granted a client: carried from the code to every token of its family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcGrant {
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub auth_time: i64,
    pub acr: String,
    pub amr: Vec<String>,
    /// The Sesam session the login belongs to (the `sid` claim).
    pub sid: String,
}

/// A stored authorization code.
#[derive(Clone, Debug)]
pub struct StoredCode {
    pub grant: OidcGrant,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub issued_at: i64,
}

#[derive(Clone, Debug)]
pub enum CodeUse {
    /// The first use: the code is now spent.
    First(StoredCode),
    /// The code was used before.
    Replayed(StoredCode),
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        }
    }
}

/// A token to store: its hash, kind and expiry.
#[derive(Clone, Copy, Debug)]
pub struct NewToken<'a> {
    pub hash: &'a str,
    pub kind: TokenKind,
    pub expires_at: i64,
}

#[derive(Clone, Debug)]
pub struct StoredToken {
    pub kind: TokenKind,
    pub family: String,
    pub grant: OidcGrant,
    pub issued_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl StoredToken {
    /// Usable now: not expired, revoked or (for a refresh token) rotated away.
    pub fn is_live(&self, now: UnixTime) -> bool {
        self.expires_at > now.0 && self.revoked_at.is_none() && self.used_at.is_none()
    }
}

#[derive(sqlx::FromRow)]
struct CodeRow {
    client_id: String,
    user_id: String,
    redirect_uri: String,
    code_challenge: String,
    scope: String,
    nonce: Option<String>,
    auth_time: i64,
    acr: String,
    amr: String,
    sid: String,
    issued_at: i64,
    used_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    kind: String,
    family: String,
    client_id: String,
    user_id: String,
    scope: String,
    auth_time: i64,
    acr: String,
    amr: String,
    sid: String,
    issued_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    revoked_at: Option<i64>,
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

fn stored_code(r: CodeRow) -> StoredCode {
    StoredCode {
        grant: OidcGrant {
            client_id: r.client_id,
            user_id: r.user_id,
            scope: r.scope,
            auth_time: r.auth_time,
            acr: r.acr,
            amr: words(&r.amr),
            sid: r.sid,
        },
        redirect_uri: r.redirect_uri,
        code_challenge: r.code_challenge,
        nonce: r.nonce,
        issued_at: r.issued_at,
    }
}

impl Store {
    pub async fn create_oidc_client(
        &self,
        new: &NewOidcClient,
        now: UnixTime,
    ) -> Result<OidcClient, StoreError> {
        let client_id = new_id();
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO oidc_clients (client_id, name, secret_hash, redirect_uris, \
             post_logout_redirect_uris, id_token_alg, subject_type, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)"
        )
        .bind(&client_id)
        .bind(&new.name)
        .bind(&new.secret_hash)
        .bind(new.redirect_uris.join("\n"))
        .bind(new.post_logout_redirect_uris.join("\n"))
        .bind(&new.id_token_alg)
        .bind(&new.subject_type)
        .bind(now.0)
        .execute(p)
        .await
        .map_err(|e| StoreError::from_insert(e, "OIDC client"))?
        .rows_affected());
        self.config_changed().await;
        self.get_oidc_client(&client_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("OIDC client {client_id}")))
    }

    pub async fn get_oidc_client(&self, client_id: &str) -> Result<Option<OidcClient>, StoreError> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM oidc_clients WHERE client_id = $1");
        let row: Option<ClientRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(client_id)
            .fetch_optional(p)
            .await?);
        Ok(row.map(OidcClient::from))
    }

    pub async fn list_oidc_clients(&self) -> Result<Vec<OidcClient>, StoreError> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM oidc_clients ORDER BY name, client_id");
        let rows: Vec<ClientRow> = on_pool!(self, |p| sqlx::query_as(&sql).fetch_all(p).await?);
        Ok(rows.into_iter().map(OidcClient::from).collect())
    }

    /// Removes the client with its codes and tokens. Returns whether it existed.
    pub async fn remove_oidc_client(&self, client_id: &str) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| sqlx::query(
            "DELETE FROM oidc_clients WHERE client_id = $1"
        )
        .bind(client_id)
        .execute(p)
        .await?
        .rows_affected());
        self.config_changed().await;
        Ok(n > 0)
    }

    /// Replaces the secret hash (rotation). Returns whether the client exists.
    pub async fn set_oidc_client_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| sqlx::query(
            "UPDATE oidc_clients SET secret_hash = $2, updated_at = $3 \
             WHERE client_id = $1 AND secret_hash IS NOT NULL"
        )
        .bind(client_id)
        .bind(secret_hash)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected());
        self.config_changed().await;
        Ok(n > 0)
    }

    /// Replaces the registered redirect URIs. Returns whether the client exists.
    pub async fn set_oidc_client_redirects(
        &self,
        client_id: &str,
        redirect_uris: &[String],
        post_logout_redirect_uris: &[String],
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| sqlx::query(
            "UPDATE oidc_clients SET redirect_uris = $2, post_logout_redirect_uris = $3, \
             updated_at = $4 WHERE client_id = $1"
        )
        .bind(client_id)
        .bind(redirect_uris.join("\n"))
        .bind(post_logout_redirect_uris.join("\n"))
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected());
        self.config_changed().await;
        Ok(n > 0)
    }

    pub async fn set_oidc_client_enabled(
        &self,
        client_id: &str,
        enabled: bool,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| sqlx::query(
            "UPDATE oidc_clients SET enabled = $2, updated_at = $3 WHERE client_id = $1"
        )
        .bind(client_id)
        .bind(enabled)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected());
        self.config_changed().await;
        Ok(n > 0)
    }

    pub async fn insert_oidc_code(
        &self,
        code_hash: &str,
        grant: &OidcGrant,
        redirect_uri: &str,
        code_challenge: &str,
        nonce: Option<&str>,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO oidc_codes (code_hash, client_id, user_id, redirect_uri, code_challenge, \
             scope, nonce, auth_time, acr, amr, sid, issued_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        )
        .bind(code_hash)
        .bind(&grant.client_id)
        .bind(&grant.user_id)
        .bind(redirect_uri)
        .bind(code_challenge)
        .bind(&grant.scope)
        .bind(nonce)
        .bind(grant.auth_time)
        .bind(&grant.acr)
        .bind(grant.amr.join(" "))
        .bind(&grant.sid)
        .bind(now.0)
        .execute(p)
        .await
        .map_err(|e| StoreError::from_insert(e, "authorization code"))?
        .rows_affected());
        Ok(())
    }

    /// The code as stored, and whether it has been used, without spending it.
    pub async fn peek_oidc_code(
        &self,
        code_hash: &str,
    ) -> Result<Option<(StoredCode, bool)>, StoreError> {
        let row: Option<CodeRow> = on_pool!(self, |p| {
            sqlx::query_as(
            "SELECT client_id, user_id, redirect_uri, code_challenge, scope, nonce, auth_time, \
             acr, amr, sid, issued_at, used_at FROM oidc_codes WHERE code_hash = $1"
        )
        .bind(code_hash)
        .fetch_optional(p)
        .await?
        });
        Ok(row.map(|r| {
            let used = r.used_at.is_some();
            (stored_code(r), used)
        }))
    }

    /// Spends a code: the first caller gets [`CodeUse::First`], every later one
    /// [`CodeUse::Replayed`] (also across nodes: the update is the arbiter).
    pub async fn use_oidc_code(
        &self,
        code_hash: &str,
        now: UnixTime,
    ) -> Result<CodeUse, StoreError> {
        // One statement on the usual path: the update returns the code it spent.
        let spent: Option<CodeRow> = on_pool!(self, |p| sqlx::query_as(
            "UPDATE oidc_codes SET used_at = $2 WHERE code_hash = $1 AND used_at IS NULL \
             RETURNING client_id, user_id, redirect_uri, code_challenge, scope, nonce, \
             auth_time, acr, amr, sid, issued_at, used_at"
        )
        .bind(code_hash)
        .bind(now.0)
        .fetch_optional(p)
        .await?);
        if let Some(row) = spent {
            return Ok(CodeUse::First(stored_code(row)));
        }
        Ok(match self.peek_oidc_code(code_hash).await? {
            Some((code, _)) => CodeUse::Replayed(code),
            None => CodeUse::Unknown,
        })
    }

    /// Stores the tokens of one grant in one transaction. With `rotating`, that refresh token
    /// is spent first, and only if it is still live: `false` (nothing written) means it was
    /// used, revoked or expired already, and only one of several concurrent callers wins.
    pub async fn store_oidc_tokens(
        &self,
        tokens: &[NewToken<'_>],
        family: &str,
        grant: &OidcGrant,
        now: UnixTime,
        rotating: Option<&str>,
    ) -> Result<bool, StoreError> {
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            if let Some(old) = rotating {
                let spent = sqlx::query(
                    "UPDATE oidc_tokens SET used_at = $2 WHERE token_hash = $1 AND kind = 'refresh' \
                     AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
                )
                .bind(old)
                .bind(now.0)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if spent != 1 {
                    tx.rollback().await?;
                    return Ok(false);
                }
            }
            for token in tokens {
                sqlx::query(
                    "INSERT INTO oidc_tokens (token_hash, kind, family, client_id, user_id, scope, \
                     auth_time, acr, amr, sid, issued_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(token.hash)
                .bind(token.kind.as_str())
                .bind(family)
                .bind(&grant.client_id)
                .bind(&grant.user_id)
                .bind(&grant.scope)
                .bind(grant.auth_time)
                .bind(&grant.acr)
                .bind(grant.amr.join(" "))
                .bind(&grant.sid)
                .bind(now.0)
                .bind(token.expires_at)
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::from_insert(e, "token"))?;
            }
            tx.commit().await?;
        });
        Ok(true)
    }

    pub async fn get_oidc_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<StoredToken>, StoreError> {
        let row: Option<TokenRow> = on_pool!(self, |p| sqlx::query_as(
            "SELECT kind, family, client_id, user_id, scope, auth_time, acr, amr, sid, \
             issued_at, expires_at, used_at, revoked_at FROM oidc_tokens WHERE token_hash = $1"
        )
        .bind(token_hash)
        .fetch_optional(p)
        .await?);
        row.map(|r| {
            Ok(StoredToken {
                kind: match r.kind.as_str() {
                    "access" => TokenKind::Access,
                    "refresh" => TokenKind::Refresh,
                    other => return Err(StoreError::Corrupt(format!("token kind {other}"))),
                },
                family: r.family,
                grant: OidcGrant {
                    client_id: r.client_id,
                    user_id: r.user_id,
                    scope: r.scope,
                    auth_time: r.auth_time,
                    acr: r.acr,
                    amr: words(&r.amr),
                    sid: r.sid,
                },
                issued_at: r.issued_at,
                expires_at: r.expires_at,
                used_at: r.used_at,
                revoked_at: r.revoked_at,
            })
        })
        .transpose()
    }

    /// Revokes every token of a family. Returns how many were live.
    pub async fn revoke_oidc_family(&self, family: &str, now: UnixTime) -> Result<u64, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query(
            "UPDATE oidc_tokens SET revoked_at = $2 WHERE family = $1 AND revoked_at IS NULL"
        )
        .bind(family)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected()))
    }

    /// Revokes every token of a user (a password change).
    pub async fn revoke_oidc_user(&self, user_id: &str, now: UnixTime) -> Result<u64, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query(
            "UPDATE oidc_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL"
        )
        .bind(user_id)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected()))
    }

    /// Revokes every token issued in a Sesam session (logout).
    pub async fn revoke_oidc_session(&self, sid: &str, now: UnixTime) -> Result<u64, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query(
            "UPDATE oidc_tokens SET revoked_at = $2 WHERE sid = $1 AND revoked_at IS NULL"
        )
        .bind(sid)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected()))
    }

    /// Forgets codes and tokens that can no longer be used. Returns how many rows went.
    pub async fn delete_expired_oidc(
        &self,
        now: UnixTime,
        code_lifetime: i64,
    ) -> Result<u64, StoreError> {
        let codes = on_pool!(self, |p| sqlx::query(
            "DELETE FROM oidc_codes WHERE issued_at < $1"
        )
        .bind(now.0 - code_lifetime - 3600)
        .execute(p)
        .await?
        .rows_affected());
        let tokens = on_pool!(self, |p| sqlx::query(
            "DELETE FROM oidc_tokens WHERE expires_at < $1"
        )
        .bind(now.0 - 3600)
        .execute(p)
        .await?
        .rows_affected());
        Ok(codes + tokens)
    }
}

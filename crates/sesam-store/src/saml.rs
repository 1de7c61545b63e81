//! SAML service providers (raw metadata plus per-SP settings), the AuthnRequest ID replay
//! cache, POST-binding requests waiting for their GET, and the SPs each login was sent to.

use sesam_core::UnixTime;

use crate::{on_pool, Store, StoreError};

/// A registered service provider. The metadata is kept as received; the server parses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamlSp {
    pub entity_id: String,
    pub name: String,
    pub metadata_xml: String,
    /// Where the metadata was fetched from, for a refresh; `None` when it was uploaded.
    pub metadata_url: Option<String>,
    pub enabled: bool,
    /// `low` or `substantial`.
    pub min_level: String,
    pub encrypt_assertions: bool,
    pub require_signed_requests: bool,
    /// Accept RSA-SHA1 request signatures (legacy SPs only).
    pub allow_sha1: bool,
    /// Attribute short names released to the SP (`uuid`, `name`, `email`, `orgName`).
    pub released_attributes: Vec<String>,
    /// The NameID format URI given when the request does not ask for one.
    pub nameid_format: String,
    /// `rsa-oaep-mgf1p` or `rsa-oaep`; `None`: chosen from the metadata.
    pub key_transport: Option<String>,
    /// `aes256-gcm`, `aes128-gcm`, `aes256-cbc` or `aes128-cbc`; `None`: from the metadata.
    pub data_encryption: Option<String>,
    /// `assertion`, `response` or `both`.
    pub response_signing: String,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// What `sp add` stores (a new SP, or new metadata and settings for a known one).
#[derive(Clone, Debug)]
pub struct NewSamlSp {
    pub entity_id: String,
    pub name: String,
    pub metadata_xml: String,
    pub metadata_url: Option<String>,
    pub enabled: bool,
    pub min_level: String,
    pub encrypt_assertions: bool,
    pub require_signed_requests: bool,
    pub allow_sha1: bool,
    pub released_attributes: Vec<String>,
    pub nameid_format: String,
    pub key_transport: Option<String>,
    pub data_encryption: Option<String>,
    pub response_signing: String,
}

/// One SP a login was sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamlParticipant {
    pub sid: String,
    pub sp: String,
    pub name_id: String,
    /// The format URI of `name_id`.
    pub name_id_format: String,
    pub user_id: String,
}

#[derive(sqlx::FromRow)]
struct SpRow {
    entity_id: String,
    name: String,
    metadata_xml: String,
    metadata_url: Option<String>,
    enabled: bool,
    min_level: String,
    encrypt_assertions: bool,
    require_signed_requests: bool,
    allow_sha1: bool,
    released_attributes: String,
    nameid_format: String,
    key_transport: Option<String>,
    data_encryption: Option<String>,
    response_signing: String,
    created_at: i64,
    updated_at: i64,
}

impl From<SpRow> for SamlSp {
    fn from(r: SpRow) -> SamlSp {
        SamlSp {
            entity_id: r.entity_id,
            name: r.name,
            metadata_xml: r.metadata_xml,
            metadata_url: r.metadata_url,
            enabled: r.enabled,
            min_level: r.min_level,
            encrypt_assertions: r.encrypt_assertions,
            require_signed_requests: r.require_signed_requests,
            allow_sha1: r.allow_sha1,
            released_attributes: r
                .released_attributes
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            nameid_format: r.nameid_format,
            key_transport: r.key_transport,
            data_encryption: r.data_encryption,
            response_signing: r.response_signing,
            created_at: UnixTime(r.created_at),
            updated_at: UnixTime(r.updated_at),
        }
    }
}

const SP_COLUMNS: &str = "entity_id, name, metadata_xml, metadata_url, enabled, min_level, \
                          encrypt_assertions, require_signed_requests, allow_sha1, \
                          released_attributes, nameid_format, key_transport, data_encryption, \
                          response_signing, created_at, updated_at";

impl Store {
    /// Adds the SP, or replaces the metadata and settings of the one with the same entity ID.
    /// Returns `true` when it was new.
    pub async fn upsert_saml_sp(&self, sp: &NewSamlSp, now: UnixTime) -> Result<bool, StoreError> {
        let existed = self.saml_sp(&sp.entity_id).await?.is_some();
        let attributes = sp.released_attributes.join(" ");
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO saml_sps (entity_id, name, metadata_xml, metadata_url, enabled, \
                 min_level, encrypt_assertions, require_signed_requests, allow_sha1, \
                 released_attributes, nameid_format, key_transport, data_encryption, \
                 response_signing, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) \
                 ON CONFLICT (entity_id) DO UPDATE SET name = excluded.name, \
                 metadata_xml = excluded.metadata_xml, metadata_url = excluded.metadata_url, \
                 enabled = excluded.enabled, min_level = excluded.min_level, \
                 encrypt_assertions = excluded.encrypt_assertions, \
                 require_signed_requests = excluded.require_signed_requests, \
                 allow_sha1 = excluded.allow_sha1, \
                 released_attributes = excluded.released_attributes, \
                 nameid_format = excluded.nameid_format, \
                 key_transport = excluded.key_transport, \
                 data_encryption = excluded.data_encryption, \
                 response_signing = excluded.response_signing, updated_at = excluded.updated_at",
            )
            .bind(&sp.entity_id)
            .bind(&sp.name)
            .bind(&sp.metadata_xml)
            .bind(&sp.metadata_url)
            .bind(sp.enabled)
            .bind(&sp.min_level)
            .bind(sp.encrypt_assertions)
            .bind(sp.require_signed_requests)
            .bind(sp.allow_sha1)
            .bind(&attributes)
            .bind(&sp.nameid_format)
            .bind(&sp.key_transport)
            .bind(&sp.data_encryption)
            .bind(&sp.response_signing)
            .bind(now.0)
            .execute(p)
            .await?;
        });
        self.config_changed().await;
        Ok(!existed)
    }

    pub async fn saml_sp(&self, entity_id: &str) -> Result<Option<SamlSp>, StoreError> {
        let sql = format!("SELECT {SP_COLUMNS} FROM saml_sps WHERE entity_id = $1");
        let row: Option<SpRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(entity_id)
            .fetch_optional(p)
            .await?);
        Ok(row.map(SamlSp::from))
    }

    pub async fn list_saml_sps(&self) -> Result<Vec<SamlSp>, StoreError> {
        let sql = format!("SELECT {SP_COLUMNS} FROM saml_sps ORDER BY entity_id");
        let rows: Vec<SpRow> = on_pool!(self, |p| sqlx::query_as(&sql).fetch_all(p).await?);
        Ok(rows.into_iter().map(SamlSp::from).collect())
    }

    /// Removes the SP (and the record of which logins it took part in). `false` if unknown.
    pub async fn remove_saml_sp(&self, entity_id: &str) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| sqlx::query(
            "DELETE FROM saml_sps WHERE entity_id = $1"
        )
        .bind(entity_id)
        .execute(p)
        .await?
        .rows_affected());
        self.config_changed().await;
        Ok(n > 0)
    }

    /// Remembers an AuthnRequest ID until `expires_at`. `false` when the SP used it before
    /// (a replay). Forgets IDs that have expired.
    pub async fn remember_saml_request_id(
        &self,
        sp: &str,
        id: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let purge = self.purge_due(crate::cache::Purge::SamlRequestIds, now);
        let inserted = on_pool!(self, |p| {
            if purge {
                sqlx::query("DELETE FROM saml_request_ids WHERE expires_at < $1")
                    .bind(now.0)
                    .execute(p)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO saml_request_ids (sp, id, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (sp, id) DO NOTHING",
            )
            .bind(sp)
            .bind(id)
            .bind(expires_at.0)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(inserted == 1)
    }

    /// Keeps a checked request (opaque text) under `id` until `expires_at`.
    pub async fn put_saml_pending(
        &self,
        id: &str,
        request: &str,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query("INSERT INTO saml_pending (id, request, expires_at) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(request)
                .bind(expires_at.0)
                .execute(p)
                .await
                .map_err(|e| StoreError::from_insert(e, "pending SAML request"))?;
        });
        Ok(())
    }

    /// Takes the request stored under `id` (once); `None` when unknown, taken or expired.
    pub async fn take_saml_pending(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String, i64)> = on_pool!(self, |p| {
            sqlx::query("DELETE FROM saml_pending WHERE expires_at < $1")
                .bind(now.0)
                .execute(p)
                .await?;
            sqlx::query_as("DELETE FROM saml_pending WHERE id = $1 RETURNING request, expires_at")
                .bind(id)
                .fetch_optional(p)
                .await?
        });
        Ok(row.filter(|(_, exp)| *exp >= now.0).map(|(r, _)| r))
    }

    /// Records that the login `sid` was sent to `sp` with `name_id` (the latest one, when it
    /// was sent there before: a transient NameID is new each time), and forgets records of
    /// logins older than `forget_before` (they can no longer be logged out).
    pub async fn add_saml_participant(
        &self,
        participant: &SamlParticipant,
        now: UnixTime,
        forget_before: UnixTime,
    ) -> Result<(), StoreError> {
        let purge = self.purge_due(crate::cache::Purge::SamlParticipants, now);
        on_pool!(self, |p| {
            if purge {
                sqlx::query("DELETE FROM saml_participants WHERE created_at < $1")
                    .bind(forget_before.0)
                    .execute(p)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO saml_participants (sid, sp, name_id, name_id_format, user_id, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sid, sp) \
                 DO UPDATE SET name_id = excluded.name_id, \
                 name_id_format = excluded.name_id_format",
            )
            .bind(&participant.sid)
            .bind(&participant.sp)
            .bind(&participant.name_id)
            .bind(&participant.name_id_format)
            .bind(&participant.user_id)
            .bind(now.0)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    /// The SPs the login `sid` was sent to, oldest first.
    pub async fn saml_participants(&self, sid: &str) -> Result<Vec<SamlParticipant>, StoreError> {
        let rows: Vec<(String, String, String, String, String)> =
            on_pool!(self, |p| sqlx::query_as(
                "SELECT sid, sp, name_id, name_id_format, user_id FROM saml_participants \
             WHERE sid = $1 ORDER BY created_at, sp"
            )
            .bind(sid)
            .fetch_all(p)
            .await?);
        Ok(rows
            .into_iter()
            .map(
                |(sid, sp, name_id, name_id_format, user_id)| SamlParticipant {
                    sid,
                    sp,
                    name_id,
                    name_id_format,
                    user_id,
                },
            )
            .collect())
    }
}

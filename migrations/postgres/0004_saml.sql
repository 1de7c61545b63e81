-- SAML service providers, the AuthnRequest replay cache, requests handed over from the
-- HTTP-POST binding to a GET, and which SPs took part in a login (for single logout).

CREATE TABLE saml_sps (
    entity_id               TEXT PRIMARY KEY NOT NULL,
    name                    TEXT NOT NULL,                -- shown in the app ("Log in to ...")
    metadata_xml            TEXT NOT NULL,                -- the EntityDescriptor as received
    metadata_url            TEXT,                         -- NULL: uploaded, not fetched
    enabled                 BOOLEAN NOT NULL DEFAULT TRUE,
    min_level               TEXT NOT NULL DEFAULT 'low' CHECK (min_level IN ('low', 'substantial')),
    encrypt_assertions      BOOLEAN NOT NULL DEFAULT FALSE,
    require_signed_requests BOOLEAN NOT NULL DEFAULT FALSE,
    allow_sha1              BOOLEAN NOT NULL DEFAULT FALSE,  -- legacy SPs only
    released_attributes     TEXT NOT NULL DEFAULT 'uuid name email', -- space-separated
    nameid_format           TEXT NOT NULL DEFAULT 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);

-- AuthnRequest IDs seen per SP, kept until the request could no longer pass the time check.
CREATE TABLE saml_request_ids (
    sp         TEXT NOT NULL,
    id         TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (sp, id)
);
CREATE INDEX saml_request_ids_expiry ON saml_request_ids (expires_at);

-- A checked HTTP-POST request waiting for the browser's GET (which carries the session
-- cookie); taken once.
CREATE TABLE saml_pending (
    id         TEXT PRIMARY KEY NOT NULL,
    request    TEXT NOT NULL,                             -- JSON
    expires_at BIGINT NOT NULL
);

-- The SPs a login (sid) was sent to, with the NameID each got.
CREATE TABLE saml_participants (
    sid        TEXT NOT NULL,
    sp         TEXT NOT NULL REFERENCES saml_sps (entity_id) ON DELETE CASCADE,
    name_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (sid, sp)
);

-- Provisioning clients (an HR system, Entra ID) that push users through SCIM 2.0. Each has
-- a bearer token of 32 random bytes, shown once; only its SHA-256 is kept (the token has
-- full entropy, so a slow hash adds nothing), and a request is found by that hash.
CREATE TABLE scim_clients (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
-- The provisioning client's own id for a user (SCIM externalId), unique when set.
ALTER TABLE users ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX users_external_id ON users (external_id);
-- A SCIM DELETE: the user is disabled (devices and audit stay) and no longer one of the
-- provisioned resources; SCIM answers 404 for it from then on.
ALTER TABLE users ADD COLUMN scim_deleted INTEGER NOT NULL DEFAULT 0;

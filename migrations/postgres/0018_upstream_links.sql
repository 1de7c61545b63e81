-- Users linked to an upstream eID (MitID through an OpenID Connect broker). The linking
-- claim (`sub`, or a configured claim such as a CPR number) is kept only as a keyed
-- HMAC-SHA256, so the table names no person; a login finds its user by that hash.
CREATE TABLE upstream_links (
    issuer       TEXT NOT NULL,
    subject_hash TEXT NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject_hash)
);
CREATE INDEX upstream_links_user ON upstream_links (user_id);

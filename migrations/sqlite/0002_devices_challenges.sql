-- MFA devices, their one-time activation codes, proof replay memory, challenges, the push
-- outbox (development and tests) and a general rate-limit counter.

CREATE TABLE devices (
    id             TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    display_name   TEXT NOT NULL,
    platform       TEXT NOT NULL CHECK (platform IN ('ios', 'android', 'desktop', 'other')),
    app_version    TEXT NOT NULL,
    pin_length     INTEGER NOT NULL,
    status         TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'locked', 'disabled')),
    public_key     TEXT NOT NULL,                 -- the device's P-256 key as a JWK
    key_thumbprint TEXT NOT NULL UNIQUE,          -- RFC 7638: one key, one device
    push_provider  TEXT CHECK (push_provider IN ('apns', 'fcm')),
    push_token     TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    last_used_at   INTEGER
);
CREATE INDEX devices_user ON devices (user_id);

-- Only a hash of the code is kept: a database read does not hand out enrolments.
CREATE TABLE activation_codes (
    code_hash  TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);

-- Every proof id seen, per key, until it could no longer be valid anyway.
CREATE TABLE proof_replay (
    key_id     TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, jti)
);

CREATE TABLE challenges (
    id             TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL CHECK (kind IN ('code', 'approve')),
    code           INTEGER NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'wrong_code', 'expired', 'cancelled')),
    fraud_reported INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    answered_at    INTEGER,
    answered_by    TEXT,
    service        TEXT NOT NULL,
    browser        TEXT,
    os             TEXT,
    client_ip      TEXT,
    location       TEXT
);
CREATE INDEX challenges_user_state ON challenges (user_id, state);

CREATE TABLE challenge_devices (
    challenge_id TEXT NOT NULL REFERENCES challenges (id) ON DELETE CASCADE,
    device_id    TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    PRIMARY KEY (challenge_id, device_id)
);
CREATE INDEX challenge_devices_device ON challenge_devices (device_id);

CREATE TABLE push_outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    provider     TEXT NOT NULL,
    token        TEXT NOT NULL,
    challenge_id TEXT NOT NULL,
    title        TEXT NOT NULL,
    body         TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE rate_limits (
    bucket       TEXT NOT NULL,
    key          TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    hits         INTEGER NOT NULL,
    PRIMARY KEY (bucket, key)
);

-- "This was not me" in the app stops passwordless for the user until an admin or a
-- password login clears it.
ALTER TABLE users ADD COLUMN passwordless_locked INTEGER NOT NULL DEFAULT 0;

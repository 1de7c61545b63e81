-- Passkeys (WebAuthn credentials with user verification): any number per user. `passkey` is
-- the relying party's record of the credential as webauthn-rs keeps it (public key, sign
-- counter, transports, backup flags), stored whole; credential_id (base64url) is unique
-- across all users, so one authenticator's credential can never name two accounts.
-- sign_count is the counter of the last accepted assertion: an assertion whose counter does
-- not rise above it (when either is non-zero) marks a possibly cloned authenticator.
CREATE TABLE passkeys (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    passkey       TEXT NOT NULL,
    sign_count    BIGINT NOT NULL,
    transports    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX passkeys_user ON passkeys (user_id);

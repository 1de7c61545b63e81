-- Code displays (TOTP authenticators): at most one per user. The secret is sealed with the
-- server's TOTP key (AES-256-GCM, bound to the user id); the database alone does not give it.
-- A row is pending from the moment the enrolment page shows the QR code until one code
-- confirms it. last_step is the step of the last code accepted: a code of that step or an
-- earlier one is refused, and the check-and-set is one UPDATE, so two nodes cannot both
-- accept the same code.
CREATE TABLE totp_devices (
    id            TEXT PRIMARY KEY NOT NULL,
    user_id       TEXT NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    display_name  TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    confirmed     INTEGER NOT NULL DEFAULT 0,
    last_step     INTEGER,
    created_at    INTEGER NOT NULL,
    confirmed_at  INTEGER,
    last_used_at  INTEGER
);

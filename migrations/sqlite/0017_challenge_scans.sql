-- The QR code a desktop wait page shows: one token per challenge, valid no longer than the
-- challenge, used up by the first scan. The token is kept as it is shown (the page is drawn
-- again on a reload); like the challenge's code it completes nothing without the signature
-- of a device the challenge was sent to.
CREATE TABLE challenge_scans (
    challenge_id TEXT PRIMARY KEY NOT NULL REFERENCES challenges (id) ON DELETE CASCADE,
    token        TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    scanned_by   TEXT,
    scanned_at   INTEGER
);

-- Pushes that failed for a passing reason (the provider down, a timeout), to be tried again
-- by any node until they go through, run out of attempts, or their challenge ends. One row
-- per challenge and device; the token is read from the device when the push is sent.
CREATE TABLE push_retries (
    challenge_id TEXT NOT NULL REFERENCES challenges (id) ON DELETE CASCADE,
    device_id    TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    attempts     BIGINT NOT NULL,
    due_at       BIGINT NOT NULL,
    last_error   TEXT NOT NULL,
    PRIMARY KEY (challenge_id, device_id)
);
CREATE INDEX push_retries_due ON push_retries (due_at);

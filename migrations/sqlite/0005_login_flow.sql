-- A password change raises the user's session epoch; a login of an older epoch (another
-- browser, a stolen session) stops counting at its next request.
ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0;

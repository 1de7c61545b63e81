-- Who disabled a user: 'directory' when a sync did because the directory stopped listing
-- the user, so that the sync turns the user on again once the directory lists them again.
-- NULL for every other status change (an administrator's lock, an unlock, a new user): the
-- directory never undoes what a person decided in Sesam.
ALTER TABLE users ADD COLUMN disabled_by TEXT;
-- Until now only a directory sync set status 'disabled' (administrators lock), so a
-- disabled user linked to the directory was disabled by it.
UPDATE users SET disabled_by = 'directory' WHERE status = 'disabled' AND directory_id IS NOT NULL;

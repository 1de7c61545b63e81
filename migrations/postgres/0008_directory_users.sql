-- Users that come from the organisation's directory (LDAP / Active Directory): the entry's
-- stable id (entryUUID, objectGUID), so a rename in the directory keeps the same local user
-- and a new entry that reuses an old name does not inherit its devices. NULL: a local user.
ALTER TABLE users ADD COLUMN directory_id TEXT;
CREATE UNIQUE INDEX users_directory_id ON users (directory_id);

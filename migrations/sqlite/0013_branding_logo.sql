-- The organisation's logo for the login pages, in the database so that every node serves the
-- same one. One row at most; the portal checks type and size before it is written.
CREATE TABLE branding_logo (
    id           INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    content_type TEXT NOT NULL,
    bytes        BLOB NOT NULL,
    digest       TEXT NOT NULL,
    updated_at   INTEGER NOT NULL
);

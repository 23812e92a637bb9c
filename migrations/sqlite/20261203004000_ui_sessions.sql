-- Operator console sessions (src/ui). Only the SHA-256 of the session id is
-- kept: a copy of this table does not let anyone use a session. Rows past
-- expires_at are refused and removed.
CREATE TABLE ui_sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX ui_sessions_expires_at ON ui_sessions (expires_at);

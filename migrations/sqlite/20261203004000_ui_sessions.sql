-- Operator console sessions (src/ui). Only the SHA-256 of the session id is
-- kept: a copy of this table does not let anyone use a session. Rows past
-- expires_at are refused and removed. operator_name is the name the operator
-- gave at login (the audit log records it with each action), or NULL.
CREATE TABLE ui_sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    operator_name TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX ui_sessions_expires_at ON ui_sessions (expires_at);

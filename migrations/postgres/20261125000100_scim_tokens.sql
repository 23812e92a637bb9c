-- Bearer tokens issued to SCIM clients, one identity source each. Only a
-- SHA-256 hash of the token is kept; the token itself is shown once.
CREATE TABLE scim_tokens (
    id           TEXT    PRIMARY KEY,
    source       TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL,
    description  TEXT,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX scim_tokens_source ON scim_tokens (source);

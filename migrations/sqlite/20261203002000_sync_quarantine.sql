-- People the sync stopped trying: Tyk refused their data with a 4xx that
-- retrying cannot fix (e.g. 400 "User object validation failed."). One row
-- per (org, folded e-mail); `fingerprint` is a digest of the steps that were
-- refused, so a change to the person or the mapping (a different plan)
-- lifts the quarantine, and so does an operator's `sync retry`.
-- Timestamps are milliseconds since the Unix epoch (UTC).
CREATE TABLE sync_quarantine (
    org_id       TEXT    NOT NULL,
    email_key    TEXT    NOT NULL,
    email        TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    status       BIGINT,
    reason       TEXT    NOT NULL,
    fingerprint  TEXT    NOT NULL,
    attempts     BIGINT  NOT NULL,
    first_seen   BIGINT  NOT NULL,
    last_seen    BIGINT  NOT NULL,
    PRIMARY KEY (org_id, email_key)
);
CREATE INDEX sync_quarantine_email_key ON sync_quarantine (email_key);

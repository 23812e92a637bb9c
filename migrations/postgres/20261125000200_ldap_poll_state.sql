-- Per LDAP source: when it was last polled, how that went, and how many
-- incremental polls ran since the last full one (every Nth poll is full).
CREATE TABLE ldap_poll_state (
    source             TEXT    PRIMARY KEY,
    polls_since_full   BIGINT  NOT NULL,
    last_started_at    BIGINT,
    last_success_at    BIGINT,
    last_full_at       BIGINT,
    last_error         TEXT,
    last_error_at      BIGINT,
    held               TEXT,
    last_report        TEXT,
    updated_at         BIGINT  NOT NULL
);

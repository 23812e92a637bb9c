-- Identities as each source knows them, and the outbox of identity changes.
-- Timestamps are milliseconds since the Unix epoch (UTC); ids are UUID text.

CREATE TABLE identity_users (
    id            TEXT    PRIMARY KEY,
    source        TEXT    NOT NULL,
    external_id   TEXT,
    user_name     TEXT    NOT NULL,
    user_name_lc  TEXT    NOT NULL,
    email         TEXT,
    given_name    TEXT,
    family_name   TEXT,
    display_name  TEXT,
    active        BIGINT  NOT NULL,
    attributes    TEXT    NOT NULL,
    version       BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);
CREATE UNIQUE INDEX identity_users_source_user_name ON identity_users (source, user_name_lc);
CREATE INDEX identity_users_source_external_id ON identity_users (source, external_id);
CREATE INDEX identity_users_source_email ON identity_users (source, email);
CREATE INDEX identity_users_email ON identity_users (email);
CREATE INDEX identity_users_source_updated ON identity_users (source, updated_at);

-- Every e-mail value of a user, lower-cased, so `emails.value` filters are indexed.
CREATE TABLE identity_user_emails (
    user_id   TEXT    NOT NULL REFERENCES identity_users (id) ON DELETE CASCADE,
    value_lc  TEXT    NOT NULL,
    PRIMARY KEY (user_id, value_lc)
);
CREATE INDEX identity_user_emails_value ON identity_user_emails (value_lc);

CREATE TABLE identity_groups (
    id               TEXT    PRIMARY KEY,
    source           TEXT    NOT NULL,
    external_id      TEXT,
    display_name     TEXT    NOT NULL,
    display_name_lc  TEXT    NOT NULL,
    attributes       TEXT    NOT NULL,
    version          BIGINT  NOT NULL,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);
CREATE UNIQUE INDEX identity_groups_source_display_name ON identity_groups (source, display_name_lc);
CREATE INDEX identity_groups_source_external_id ON identity_groups (source, external_id);

-- Members are users or groups of the same source.
CREATE TABLE identity_group_members (
    group_id     TEXT NOT NULL REFERENCES identity_groups (id) ON DELETE CASCADE,
    member_id    TEXT NOT NULL,
    member_kind  TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX identity_group_members_member ON identity_group_members (member_id);

CREATE TABLE identity_events (
    seq           BIGSERIAL PRIMARY KEY,
    source        TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    subject_id    TEXT,
    email         TEXT,
    detail        TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    processed_at  BIGINT
);
CREATE INDEX identity_events_pending ON identity_events (processed_at, seq);

-- Small key/value settings the service keeps for itself (e.g. generated keys).
CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

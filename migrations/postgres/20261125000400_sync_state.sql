-- The sync worker's own state: which Tyk users and groups we manage, the
-- runs we planned or applied (held runs keep their plan for approval), the
-- audit log of applied steps, and leases on outbox events being applied.
-- Timestamps are milliseconds since the Unix epoch; booleans BIGINT 0/1.

CREATE TABLE sync_managed_users (
    tyk_user_id     TEXT    PRIMARY KEY,
    org_id          TEXT    NOT NULL,
    email           TEXT    NOT NULL,
    managed_since   BIGINT  NOT NULL,
    adopted         BIGINT  NOT NULL,
    deactivated_at  BIGINT
);
CREATE UNIQUE INDEX sync_managed_users_org_email ON sync_managed_users (org_id, email);

CREATE TABLE sync_managed_groups (
    tyk_group_id   TEXT    PRIMARY KEY,
    org_id         TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    managed_since  BIGINT  NOT NULL
);
CREATE INDEX sync_managed_groups_org_name ON sync_managed_groups (org_id, name);

CREATE TABLE sync_runs (
    id              TEXT    PRIMARY KEY,
    kind            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    event_seqs      TEXT    NOT NULL,
    steps_planned   BIGINT  NOT NULL,
    steps_applied   BIGINT  NOT NULL,
    steps_failed    BIGINT  NOT NULL,
    people_removed  BIGINT  NOT NULL,
    managed_users   BIGINT  NOT NULL,
    plan            TEXT,
    message         TEXT,
    approved_by     TEXT,
    approved_at     BIGINT,
    created_at      BIGINT  NOT NULL,
    finished_at     BIGINT
);
CREATE INDEX sync_runs_created ON sync_runs (created_at);
CREATE INDEX sync_runs_status ON sync_runs (status);

CREATE TABLE sync_audit (
    id           BIGSERIAL PRIMARY KEY,
    run_id       TEXT,
    at           BIGINT  NOT NULL,
    actor        TEXT    NOT NULL,
    step_kind    TEXT    NOT NULL,
    org_id       TEXT    NOT NULL,
    email        TEXT,
    tyk_id       TEXT,
    before_json  TEXT,
    after_json   TEXT,
    event_seqs   TEXT    NOT NULL,
    rule         TEXT,
    result       TEXT    NOT NULL,
    message      TEXT
);
CREATE INDEX sync_audit_at ON sync_audit (at);
CREATE INDEX sync_audit_email ON sync_audit (email);
CREATE INDEX sync_audit_run ON sync_audit (run_id);

-- A lease on an outbox event while a worker applies it; an expired lease
-- (crashed worker) makes the event claimable again.
CREATE TABLE sync_event_leases (
    seq          BIGINT  PRIMARY KEY,
    holder       TEXT    NOT NULL,
    until_at     BIGINT  NOT NULL,
    attempts     BIGINT  NOT NULL
);

-- A user creation we are about to send to Tyk. Written before the POST and
-- removed once the new id is recorded in sync_managed_users, so that after a
-- crash in between, the user Tyk created is recognised as ours.
CREATE TABLE sync_pending_creates (
    org_id      TEXT    NOT NULL,
    email       TEXT    NOT NULL,
    started_at  BIGINT  NOT NULL,
    PRIMARY KEY (org_id, email)
);

-- The same for user groups (Tyk does not keep group names unique, so a
-- retried or interrupted creation would otherwise leave a stray group).
CREATE TABLE sync_pending_group_creates (
    org_id      TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    started_at  BIGINT  NOT NULL,
    PRIMARY KEY (org_id, name)
);

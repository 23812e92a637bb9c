-- A Tyk write about to be sent for a sync step: recorded before the
-- request, removed once the step's audit entry is written. A run abandoned
-- in between (a kill, a lost lead) leaves it for the next leader, which
-- reads the user in Tyk and audits what it found. `entry_json` is the audit
-- entry the step would get (its kind, before/after, events, rule).
CREATE TABLE sync_audit_intents (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT  NOT NULL,
    org_id      TEXT    NOT NULL,
    email       TEXT,
    entry_json  TEXT    NOT NULL
);

-- Mapping rules: identity-provider groups -> Tyk user groups.
-- origin is 'config' (owned by the config file, replaced on reload) or 'api'
-- (created through the admin API or the CLI). (org_id, name) is unique
-- across both origins: one Tyk group has exactly one rule.
CREATE TABLE mapping_rules (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    priority BIGINT NOT NULL,
    mappings_sso TEXT NOT NULL,
    permissions TEXT NOT NULL,
    origin TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

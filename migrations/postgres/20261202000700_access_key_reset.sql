-- When the sync last gave a deprovisioned Tyk user a new Dashboard API
-- access key (sync.reset_access_key_on_deactivate); NULL: not since the
-- user was last active.
ALTER TABLE sync_managed_users ADD COLUMN access_key_reset_at BIGINT;

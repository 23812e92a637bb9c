-- Why a user's primary e-mail cannot be provisioned (`empty`,
-- `control_character`, `syntax`; see domain::email), NULL when it can or the
-- user has none. Such a user keeps `email` NULL, so the mapping never sends
-- the value to Tyk; `/admin/v1/status` reports them.
--
-- The folded comparison keys (`user_name_lc`, `display_name_lc`, `email`,
-- `identity_user_emails.value_lc`, the e-mails of sync_managed_users and
-- sync_pending_creates) are recomputed by the Rust re-key step that runs
-- once after the migrations (store::migrate::rekey_folded): SQL `lower()`
-- cannot do Unicode normalisation and case folding.
ALTER TABLE identity_users ADD COLUMN email_problem TEXT;
CREATE INDEX identity_users_email_problem ON identity_users (email_problem);

-- Event runs look managed users up by e-mail alone (in every org).
CREATE INDEX sync_managed_users_email ON sync_managed_users (email);

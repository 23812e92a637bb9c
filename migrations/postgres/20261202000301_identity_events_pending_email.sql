-- The sync worker claims a person's other pending events with the batch
-- that names them (one plan per person), by e-mail.
CREATE INDEX identity_events_pending_email ON identity_events (email, seq) WHERE processed_at IS NULL;

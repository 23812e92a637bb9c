-- Wakes the sync leader on any replica when identity events are appended.
-- PostgreSQL delivers a NOTIFY only if and when the inserting transaction
-- commits, and once per transaction however many rows it inserted, so the
-- application no longer sends its own NOTIFY (a round trip per event).
-- The channel is `events::OUTBOX_CHANNEL`.
CREATE FUNCTION tyk_idsync_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tyk_idsync_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER identity_events_notify AFTER INSERT ON identity_events
    FOR EACH STATEMENT EXECUTE FUNCTION tyk_idsync_notify_outbox();

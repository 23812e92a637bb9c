-- Set when a full poll of the source failed (the directory was unreachable,
-- the bind failed, a read broke off): the next poll is full, also after a
-- restart, so deletions do not wait for the next scheduled full poll.
ALTER TABLE ldap_poll_state ADD COLUMN full_pending BIGINT NOT NULL DEFAULT 0;

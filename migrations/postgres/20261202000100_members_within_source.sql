-- A group's members are users or groups of the group's own source (issue
-- #16: a SCIM client of source `a` could name a user of source `b` as a
-- member of an `a` group, which the mapping then counted, and ids naming
-- nobody were kept as dangling members). From here on the database itself
-- refuses such a row, whatever path writes it (SCIM, the batched member
-- PATCH statement, LDAP polls, a bug, a hand-written query).
--
-- Why triggers and not foreign keys: a member is a user *or* a group, two
-- tables, and its source is not a column of the member row. Composite
-- foreign keys would need a source column and separate user/group member
-- columns on identity_group_members, which every writer (multi-row LDAP
-- inserts, the version-checked CTE) would have to fill, and SQLite cannot
-- add them without rebuilding the table. The triggers below do what those
-- keys would: check the referenced row on insert/update (locking it as a
-- foreign key check does, so a concurrent delete of the member cannot slip
-- in between), and remove a deleted user's or group's memberships (ON
-- DELETE CASCADE). A member's id and source cannot change.
--
-- The check is statement-level, with the new rows as a transition table: a
-- multi-row insert of an LDAP import is checked with one join per
-- statement, not one function call per row.

-- Existing rows that break the rule: first one membership event per row
-- (the sync worker reconciles everyone for an event with no e-mail, so a
-- person wrongly given a group in Tyk is moved back), then the rows go.
-- The migration runner (store/migrate.rs) counts these rows with the same
-- condition just before and logs the number.
INSERT INTO identity_events (source, kind, subject_id, email, detail, created_at)
SELECT g.source, 'membership_changed', m.member_id, NULL,
       '{"group":"' || m.group_id || '","change":"removed"}',
       (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT
FROM identity_group_members m
JOIN identity_groups g ON g.id = m.group_id
LEFT JOIN identity_users u ON m.member_kind = 'User' AND u.id = m.member_id
LEFT JOIN identity_groups mg ON m.member_kind = 'Group' AND mg.id = m.member_id
WHERE COALESCE(u.source, mg.source) IS NULL OR COALESCE(u.source, mg.source) <> g.source
ORDER BY m.group_id, m.member_id;

-- (Each member's source is found by its primary key; a join of a group's
-- and a member's table on `source` alone would pair every user with every
-- group of a source.)
DELETE FROM identity_group_members
WHERE (group_id, member_id) IN (
    SELECT m.group_id, m.member_id
    FROM identity_group_members m
    LEFT JOIN identity_groups g ON g.id = m.group_id
    LEFT JOIN identity_users u ON m.member_kind = 'User' AND u.id = m.member_id
    LEFT JOIN identity_groups mg ON m.member_kind = 'Group' AND mg.id = m.member_id
    WHERE g.id IS NULL OR COALESCE(u.source, mg.source) IS NULL
       OR COALESCE(u.source, mg.source) <> g.source);

-- The member objects kept for members a source did not know: such members
-- are refused now, so every kept object belonged to a row removed above.
DELETE FROM scim_member_refs;

-- One query per statement: each new row's group, and its member by primary
-- key, locked FOR KEY SHARE until the transaction ends (as a foreign key
-- check locks its parent): a concurrent delete of the member waits for
-- this transaction, then its own trigger removes the new row; a delete
-- that came first makes the member not found here.
CREATE FUNCTION identity_group_members_within_source() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    outsider TEXT;
BEGIN
    SELECT n.member_id INTO outsider
    FROM new_members n
    LEFT JOIN identity_groups g ON g.id = n.group_id
    LEFT JOIN LATERAL (SELECT u.source FROM identity_users u
                       WHERE n.member_kind = 'User' AND u.id = n.member_id
                       FOR KEY SHARE) u ON true
    LEFT JOIN LATERAL (SELECT mg.source FROM identity_groups mg
                       WHERE n.member_kind = 'Group' AND mg.id = n.member_id
                       FOR KEY SHARE) mg ON true
    WHERE g.id IS NULL OR COALESCE(u.source, mg.source) IS NULL
       OR COALESCE(u.source, mg.source) <> g.source
    LIMIT 1;
    IF FOUND THEN
        -- The text is matched by StoreError::member_outside_source.
        RAISE EXCEPTION 'group member outside its source: %', outsider
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER identity_group_members_within_source_insert AFTER INSERT ON identity_group_members
    REFERENCING NEW TABLE AS new_members
    FOR EACH STATEMENT EXECUTE FUNCTION identity_group_members_within_source();

CREATE TRIGGER identity_group_members_within_source_update AFTER UPDATE ON identity_group_members
    REFERENCING NEW TABLE AS new_members
    FOR EACH STATEMENT EXECUTE FUNCTION identity_group_members_within_source();

-- A deleted user or group is no longer anyone's member (a group's own
-- member list goes with it through the group_id foreign key).
CREATE FUNCTION identity_members_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM identity_group_members WHERE member_id IN (SELECT id FROM gone);
    RETURN NULL;
END;
$$;

CREATE TRIGGER identity_users_gone_from_groups AFTER DELETE ON identity_users
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION identity_members_gone();

CREATE TRIGGER identity_groups_gone_from_groups AFTER DELETE ON identity_groups
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION identity_members_gone();

-- A user's or group's id and source are fixed: changing either would take
-- its memberships out of their source (no writer changes them).
CREATE FUNCTION identity_keep_id_and_source() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the id and source of a row of % cannot change', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE TRIGGER identity_users_keep_id_and_source BEFORE UPDATE OF id, source ON identity_users
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.source IS DISTINCT FROM NEW.source)
    EXECUTE FUNCTION identity_keep_id_and_source();

CREATE TRIGGER identity_groups_keep_id_and_source BEFORE UPDATE OF id, source ON identity_groups
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id OR OLD.source IS DISTINCT FROM NEW.source)
    EXECUTE FUNCTION identity_keep_id_and_source();

-- A group's members are users or groups of the group's own source (issue
-- #16: a SCIM client of source `a` could name a user of source `b` as a
-- member of an `a` group, which the mapping then counted, and ids naming
-- nobody were kept as dangling members). From here on the database itself
-- refuses such a row, whatever path writes it (SCIM, LDAP polls, a bug, a
-- hand-written query).
--
-- Why triggers and not foreign keys: a member is a user *or* a group, two
-- tables, and its source is not a column of the member row. Composite
-- foreign keys would need a source column and separate user/group member
-- columns on identity_group_members, which every writer would have to
-- fill, and SQLite cannot add them without rebuilding the table. The
-- triggers below do what those keys would: check the referenced row on
-- insert/update, and remove a deleted user's or group's memberships (ON
-- DELETE CASCADE). A member's id and source cannot change. (SQLite has one
-- writer at a time, so no concurrent delete can slip past the check.)

-- Existing rows that break the rule: first one membership event per row
-- (the sync worker reconciles everyone for an event with no e-mail, so a
-- person wrongly given a group in Tyk is moved back), then the rows go.
-- The migration runner (store/migrate.rs) counts these rows with the same
-- condition just before and logs the number.
INSERT INTO identity_events (source, kind, subject_id, email, detail, created_at)
SELECT g.source, 'membership_changed', m.member_id, NULL,
       '{"group":"' || m.group_id || '","change":"removed"}',
       CAST(strftime('%s', 'now') AS INTEGER) * 1000
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

-- The text is matched by StoreError::member_outside_source (SQLite's RAISE
-- takes a literal only, so it cannot name the member; the SCIM handlers
-- check first and name it).
CREATE TRIGGER identity_group_members_within_source_insert
BEFORE INSERT ON identity_group_members
WHEN NOT EXISTS (
        SELECT 1 FROM identity_groups parent
        WHERE parent.id = NEW.group_id
          AND parent.source = CASE NEW.member_kind
              WHEN 'User' THEN (SELECT u.source FROM identity_users u WHERE u.id = NEW.member_id)
              WHEN 'Group' THEN (SELECT mg.source FROM identity_groups mg WHERE mg.id = NEW.member_id)
          END)
BEGIN
    SELECT RAISE(ABORT, 'group member outside its source');
END;

CREATE TRIGGER identity_group_members_within_source_update
BEFORE UPDATE ON identity_group_members
WHEN NOT EXISTS (
        SELECT 1 FROM identity_groups parent
        WHERE parent.id = NEW.group_id
          AND parent.source = CASE NEW.member_kind
              WHEN 'User' THEN (SELECT u.source FROM identity_users u WHERE u.id = NEW.member_id)
              WHEN 'Group' THEN (SELECT mg.source FROM identity_groups mg WHERE mg.id = NEW.member_id)
          END)
BEGIN
    SELECT RAISE(ABORT, 'group member outside its source');
END;

-- A deleted user or group is no longer anyone's member (a group's own
-- member list goes with it through the group_id foreign key).
CREATE TRIGGER identity_users_gone_from_groups AFTER DELETE ON identity_users
BEGIN
    DELETE FROM identity_group_members WHERE member_id = OLD.id;
END;

CREATE TRIGGER identity_groups_gone_from_groups AFTER DELETE ON identity_groups
BEGIN
    DELETE FROM identity_group_members WHERE member_id = OLD.id;
END;

-- A user's or group's id and source are fixed: changing either would take
-- its memberships out of their source (no writer changes them).
CREATE TRIGGER identity_users_keep_id_and_source BEFORE UPDATE OF id, source ON identity_users
WHEN OLD.id IS NOT NEW.id OR OLD.source IS NOT NEW.source
BEGIN
    SELECT RAISE(ABORT, 'the id and source of a user cannot change');
END;

CREATE TRIGGER identity_groups_keep_id_and_source BEFORE UPDATE OF id, source ON identity_groups
WHEN OLD.id IS NOT NEW.id OR OLD.source IS NOT NEW.source
BEGIN
    SELECT RAISE(ABORT, 'the id and source of a group cannot change');
END;

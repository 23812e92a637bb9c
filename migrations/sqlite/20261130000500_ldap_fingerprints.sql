-- What the LDAP poller last wrote, condensed, so a full poll with nothing
-- changed need not read every stored user and membership back:
-- * per user, a hash of the fields the poller writes (DN, login, mail,
--   names, active);
-- * per group, a hash of its direct member set (member id and kind).
-- A row may only ever be missing or right: the triggers below drop the
-- fingerprint whenever the user row or the group's member list is changed
-- by any path (the poller writes its new fingerprints afterwards, in the
-- same transaction); a missing fingerprint makes the poller compare in full.
CREATE TABLE ldap_user_fingerprints (
    user_id      TEXT    PRIMARY KEY REFERENCES identity_users (id) ON DELETE CASCADE,
    fingerprint  BIGINT  NOT NULL
);

CREATE TABLE ldap_group_fingerprints (
    group_id     TEXT    PRIMARY KEY REFERENCES identity_groups (id) ON DELETE CASCADE,
    fingerprint  BIGINT  NOT NULL
);

CREATE TRIGGER ldap_user_fingerprints_stale AFTER UPDATE ON identity_users
BEGIN
    DELETE FROM ldap_user_fingerprints WHERE user_id = OLD.id OR user_id = NEW.id;
END;

CREATE TRIGGER ldap_group_fingerprints_stale_insert AFTER INSERT ON identity_group_members
BEGIN
    DELETE FROM ldap_group_fingerprints WHERE group_id = NEW.group_id;
END;

CREATE TRIGGER ldap_group_fingerprints_stale_delete AFTER DELETE ON identity_group_members
BEGIN
    DELETE FROM ldap_group_fingerprints WHERE group_id = OLD.group_id;
END;

CREATE TRIGGER ldap_group_fingerprints_stale_update AFTER UPDATE ON identity_group_members
BEGIN
    DELETE FROM ldap_group_fingerprints WHERE group_id = OLD.group_id OR group_id = NEW.group_id;
END;

-- Bumped by every LDAP poll transaction of the source (first thing, so on
-- PostgreSQL it also makes a source's polls wait for each other). A poll
-- reads the stored state while it reads the directory, outside its write
-- transaction, and uses it only if the generation has not moved since.
CREATE TABLE ldap_source_generations (
    source      TEXT    PRIMARY KEY,
    generation  BIGINT  NOT NULL
);

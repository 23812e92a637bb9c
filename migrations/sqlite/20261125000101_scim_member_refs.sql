-- Group members a SCIM client named that this source does not (yet) know:
-- the member object as the client sent it, returned as sent.
CREATE TABLE scim_member_refs (
    group_id   TEXT NOT NULL,
    member_id  TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (group_id, member_id)
);

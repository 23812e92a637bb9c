-- Unknown SCIM group members are refused since 2026-12-02 (400 invalidValue), so
-- the member objects kept for them are never written or read any more.
DROP TABLE IF EXISTS scim_member_refs;

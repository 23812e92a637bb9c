-- The identity source(s) behind the person an audit row is about (comma-
-- separated, e.g. `okta` or `corp,okta`), so the log can be searched by
-- source. Filled for new rows from the person's identities when the row is
-- written; older rows, and rows about no one (groups, rejections), stay NULL.
ALTER TABLE sync_audit ADD COLUMN source TEXT;

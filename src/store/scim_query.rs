//! Indexed listing of users and groups: a small condition language the SCIM
//! layer translates the common filters into, compiled to one SQL text that
//! runs on both dialects, with paging in SQL.

use sqlx::AnyConnection;

use super::StoreError;
use super::identities::{GROUP_COLUMNS, USER_COLUMNS, group_from_row, user_from_row};
use crate::domain::{IdentityGroup, IdentityUser, SourceName};

/// How a column is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A condition on indexed columns. Text values for case-insensitive
/// attributes are compared lower-cased.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Id(String),
    /// `user_name_lc` (users) or `display_name_lc` (groups) equal to.
    NameLcEq(String),
    NameLcStartsWith(String),
    NameLcContains(String),
    NameLcEndsWith(String),
    ExternalId(String),
    /// Some stored e-mail of the user equals (lower-cased).
    EmailLc(String),
    /// User display name, compared lower-cased.
    DisplayNameLc(String),
    Active(bool),
    Updated(Cmp, i64),
    /// The group has this member id.
    HasMember(String),
    /// All of the conditions (true when empty).
    And(Vec<Condition>),
    /// Any of the conditions (false when empty).
    Or(Vec<Condition>),
}

/// Most values one statement may bind: SQLite's default limit is 32766,
/// PostgreSQL's 65535; the rest is for the source and the page.
pub const MAX_BINDS: usize = 32_000;

/// Deepest expression tree a condition may compile to. SQLite refuses
/// trees deeper than 1000 (`SQLITE_MAX_EXPR_DEPTH`), counting a flat
/// `a OR b OR c` chain as a left-deep tree (hence the balanced lists of
/// [`compile_list`]) and a subquery's WHERE as part of the outer tree.
pub const MAX_SQL_DEPTH: usize = 500;

/// Longest `LIKE` pattern SQLite accepts (`SQLITE_MAX_LIKE_PATTERN_LENGTH`),
/// in bytes; longer ones fail the whole statement.
pub const MAX_LIKE_PATTERN_BYTES: usize = 50_000;

impl Condition {
    /// How many values the condition binds.
    pub fn binds(&self) -> usize {
        match self {
            Condition::And(list) | Condition::Or(list) => list.iter().map(Self::binds).sum(),
            _ => 1,
        }
    }

    /// An upper bound of the depth of the expression tree it compiles to.
    pub fn sql_depth(&self) -> usize {
        match self {
            Condition::And(list) | Condition::Or(list) => {
                let balanced = list.len().next_power_of_two().trailing_zeros() as usize;
                balanced + list.iter().map(Self::sql_depth).max().unwrap_or(0) + 1
            }
            // `id IN (SELECT ... WHERE x = $n)`: IN, the subquery, `=`.
            Condition::EmailLc(_) | Condition::HasMember(_) => 4,
            _ => 2,
        }
    }

    /// Whether the condition compiles to SQL both engines accept: within
    /// [`MAX_BINDS`], [`MAX_SQL_DEPTH`] and [`MAX_LIKE_PATTERN_BYTES`], and
    /// with no NUL in a text value (PostgreSQL text cannot hold one, and
    /// SQLite's `LIKE` reads its pattern only up to the first).
    pub fn fits_sql(&self) -> bool {
        self.binds() <= MAX_BINDS && self.sql_depth() <= MAX_SQL_DEPTH && self.values_fit()
    }

    fn values_fit(&self) -> bool {
        match self {
            Condition::And(list) | Condition::Or(list) => list.iter().all(Self::values_fit),
            Condition::NameLcStartsWith(v)
            | Condition::NameLcContains(v)
            | Condition::NameLcEndsWith(v) => {
                !v.contains('\0') && like_escape(v).len() + 2 <= MAX_LIKE_PATTERN_BYTES
            }
            Condition::Id(v)
            | Condition::NameLcEq(v)
            | Condition::ExternalId(v)
            | Condition::EmailLc(v)
            | Condition::DisplayNameLc(v)
            | Condition::HasMember(v) => !v.contains('\0'),
            Condition::Active(_) | Condition::Updated(..) => true,
        }
    }
}

enum Bind {
    Text(String),
    Int(i64),
}

fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn compile(cond: &Condition, users: bool, binds: &mut Vec<Bind>) -> String {
    let mut push = |b: Bind| {
        binds.push(b);
        format!("${}", binds.len() + 1)
    };
    let name_col = if users {
        "user_name_lc"
    } else {
        "display_name_lc"
    };
    let like = |p: String| format!("{name_col} LIKE {p} ESCAPE '\\'");
    match cond {
        Condition::Id(id) => format!("id = {}", push(Bind::Text(id.clone()))),
        Condition::NameLcEq(v) => format!("{name_col} = {}", push(Bind::Text(v.clone()))),
        Condition::NameLcStartsWith(v) => like(push(Bind::Text(format!("{}%", like_escape(v))))),
        Condition::NameLcContains(v) => like(push(Bind::Text(format!("%{}%", like_escape(v))))),
        Condition::NameLcEndsWith(v) => like(push(Bind::Text(format!("%{}", like_escape(v))))),
        Condition::ExternalId(v) => format!("external_id = {}", push(Bind::Text(v.clone()))),
        Condition::EmailLc(v) => format!(
            "id IN (SELECT user_id FROM identity_user_emails WHERE value_lc = {})",
            push(Bind::Text(v.clone()))
        ),
        Condition::DisplayNameLc(v) => {
            format!("LOWER(display_name) = {}", push(Bind::Text(v.clone())))
        }
        Condition::Active(v) => format!("active = {}", push(Bind::Int(i64::from(*v)))),
        Condition::Updated(cmp, ms) => {
            let op = match cmp {
                Cmp::Eq => "=",
                Cmp::Gt => ">",
                Cmp::Ge => ">=",
                Cmp::Lt => "<",
                Cmp::Le => "<=",
            };
            format!("updated_at {op} {}", push(Bind::Int(*ms)))
        }
        Condition::HasMember(v) => format!(
            "id IN (SELECT group_id FROM identity_group_members WHERE member_id = {})",
            push(Bind::Text(v.clone()))
        ),
        Condition::And(list) => compile_list(list, "AND", users, binds),
        Condition::Or(list) => compile_list(list, "OR", users, binds),
    }
}

/// `a AND b AND ...` as a balanced tree of pairs, so that a list of n
/// conditions adds log2(n) to the expression depth rather than n.
fn compile_list(list: &[Condition], joiner: &str, users: bool, binds: &mut Vec<Bind>) -> String {
    match list {
        [] if joiner == "AND" => "1 = 1".to_string(),
        [] => "1 = 0".to_string(),
        [one] => compile(one, users, binds),
        _ => {
            let (left, right) = list.split_at(list.len() / 2);
            let left = compile_list(left, joiner, users, binds);
            let right = compile_list(right, joiner, users, binds);
            format!("({left} {joiner} {right})")
        }
    }
}

/// The WHERE fragment a condition compiles to and how many values it
/// binds after the source (`$1`): for tests and fuzzing of the compiler.
pub fn condition_sql(cond: &Condition, users: bool) -> (String, usize) {
    let mut binds = Vec::new();
    let sql = compile(cond, users, &mut binds);
    (sql, binds.len())
}

/// A page request: skip `offset` rows, return at most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub offset: i64,
    pub limit: i64,
}

fn select_sql(
    table: &str,
    columns: &str,
    cond: Option<&Condition>,
    users: bool,
    page: Option<Page>,
    binds: &mut Vec<Bind>,
) -> String {
    let mut sql = format!("SELECT {columns} FROM {table} WHERE source = $1");
    if let Some(cond) = cond {
        sql.push_str(" AND ");
        sql.push_str(&compile(cond, users, binds));
    }
    sql.push_str(" ORDER BY created_at, id");
    if let Some(page) = page {
        binds.push(Bind::Int(page.limit));
        binds.push(Bind::Int(page.offset));
        sql.push_str(&format!(
            " LIMIT ${} OFFSET ${}",
            binds.len(),
            binds.len() + 1
        ));
    }
    sql
}

async fn fetch(
    conn: &mut AnyConnection,
    sql: &str,
    source: &SourceName,
    binds: Vec<Bind>,
) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
    let mut query = sqlx::query(sql).bind(source.as_str().to_string());
    for bind in binds {
        query = match bind {
            Bind::Text(t) => query.bind(t),
            Bind::Int(i) => query.bind(i),
        };
    }
    Ok(query.fetch_all(&mut *conn).await?)
}

/// Users of a source matching `cond`, oldest first, optionally one page.
pub async fn query_users(
    conn: &mut AnyConnection,
    source: &SourceName,
    cond: Option<&Condition>,
    page: Option<Page>,
) -> Result<Vec<IdentityUser>, StoreError> {
    let mut binds = Vec::new();
    let sql = select_sql("identity_users", USER_COLUMNS, cond, true, page, &mut binds);
    fetch(conn, &sql, source, binds)
        .await?
        .iter()
        .map(user_from_row)
        .collect()
}

/// Groups of a source matching `cond`, oldest first, optionally one page.
pub async fn query_groups(
    conn: &mut AnyConnection,
    source: &SourceName,
    cond: Option<&Condition>,
    page: Option<Page>,
) -> Result<Vec<IdentityGroup>, StoreError> {
    let mut binds = Vec::new();
    let sql = select_sql(
        "identity_groups",
        GROUP_COLUMNS,
        cond,
        false,
        page,
        &mut binds,
    );
    fetch(conn, &sql, source, binds)
        .await?
        .iter()
        .map(group_from_row)
        .collect()
}

/// How many users or groups of a source match `cond`.
pub async fn count(
    conn: &mut AnyConnection,
    source: &SourceName,
    cond: Option<&Condition>,
    users: bool,
) -> Result<i64, StoreError> {
    let mut binds = Vec::new();
    let table = if users {
        "identity_users"
    } else {
        "identity_groups"
    };
    let mut sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE source = $1");
    if let Some(cond) = cond {
        sql.push_str(" AND ");
        sql.push_str(&compile(cond, users, &mut binds));
    }
    let rows = fetch(conn, &sql, source, binds).await?;
    use sqlx::Row;
    match rows.first() {
        Some(row) => Ok(row.try_get("n")?),
        None => Ok(0),
    }
}

/// A group member as a SCIM group shows it: the member and the display name
/// of the user or group it resolves to within the source (empty if none).
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member: crate::domain::GroupMember,
    pub name: String,
}

/// The members of a group with what its SCIM form needs, ordered by member
/// id, in one query.
pub async fn member_views(
    conn: &mut AnyConnection,
    source: &SourceName,
    group_id: &str,
) -> Result<Vec<MemberView>, StoreError> {
    let sql = format!("{MEMBER_VIEWS} ORDER BY m.member_id");
    let rows = sqlx::query(&sql)
        .bind(source.as_str().to_string())
        .bind(group_id.to_string())
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(member_view_from_row).collect()
}

/// The members of group `$2` of source `$1` with their names (read by
/// [`member_view_from_row`]).
pub(crate) const MEMBER_VIEWS: &str = "SELECT m.member_id, m.member_kind, \
    COALESCE(u.display_name, u.user_name, g.display_name, '') AS name \
    FROM identity_group_members m \
    LEFT JOIN identity_users u ON u.id = m.member_id AND u.source = $1 \
    LEFT JOIN identity_groups g ON g.id = m.member_id AND g.source = $1 \
    WHERE m.group_id = $2";

/// One row of [`MEMBER_VIEWS`].
pub(crate) fn member_view_from_row(r: &sqlx::any::AnyRow) -> Result<MemberView, StoreError> {
    use sqlx::Row;
    let id: String = r.try_get("member_id")?;
    let kind: String = r.try_get("member_kind")?;
    Ok(MemberView {
        member: crate::domain::GroupMember {
            id: super::identities::parse_uuid(&id)?,
            kind: crate::domain::MemberKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("bad member kind {kind:?}")))?,
        },
        name: r.try_get("name")?,
    })
}

/// Takes the write lock on a user or group row before reading it, so that
/// concurrent changes to one resource queue up instead of failing: a row
/// lock on PostgreSQL, the database write lock on SQLite (taken before any
/// read, so no stale-snapshot `SQLITE_BUSY`). Returns whether the row exists.
pub async fn lock_for_update(
    conn: &mut AnyConnection,
    source: &SourceName,
    id: &str,
    users: bool,
) -> Result<bool, StoreError> {
    let table = if users {
        "identity_users"
    } else {
        "identity_groups"
    };
    let sql = format!("UPDATE {table} SET version = version WHERE id = $1 AND source = $2");
    let result = sqlx::query(&sql)
        .bind(id.to_string())
        .bind(source.as_str().to_string())
        .execute(&mut *conn)
        .await?;
    Ok(result.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<Condition> {
        (0..n)
            .map(|i| Condition::NameLcEq(format!("u{i}")))
            .collect()
    }

    #[test]
    fn lists_compile_to_balanced_trees_with_numbered_binds() {
        let (sql, binds) = condition_sql(&Condition::Or(names(4)), true);
        assert_eq!(
            sql,
            "((user_name_lc = $2 OR user_name_lc = $3) OR (user_name_lc = $4 OR user_name_lc = $5))"
        );
        assert_eq!(binds, 4);
        assert_eq!(condition_sql(&Condition::And(vec![]), true).0, "1 = 1");
        assert_eq!(condition_sql(&Condition::Or(vec![]), true).0, "1 = 0");
        let (sql, _) = condition_sql(&Condition::Or(names(1000)), false);
        let deepest = sql
            .chars()
            .scan(0i32, |open, c| {
                *open += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                Some(*open)
            })
            .max();
        assert_eq!(deepest, Some(10), "log2(1000) rounded up");
    }

    #[test]
    fn conditions_beyond_the_engines_limits_do_not_fit() {
        assert!(Condition::Or(names(1000)).fits_sql());
        assert!(!Condition::Or(names(MAX_BINDS + 1)).fits_sql());
        let mut deep = Condition::Active(true);
        for _ in 0..MAX_SQL_DEPTH {
            deep = Condition::And(vec![deep, Condition::Active(false)]);
        }
        assert!(!deep.fits_sql());
        assert!(!Condition::NameLcContains("\0".into()).fits_sql());
        assert!(!Condition::HasMember("a\0".into()).fits_sql());
        assert!(Condition::NameLcContains("\u{1}".into()).fits_sql());
    }
}

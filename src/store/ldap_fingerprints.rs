//! The LDAP poller's condensed view of what it last wrote
//! (`ldap_user_fingerprints`, `ldap_group_fingerprints`): enough for a full
//! poll to find which users and member lists changed without reading every
//! stored row back. Triggers drop a fingerprint whenever its user row or
//! member list changes by any path, so a stored fingerprint is either
//! missing or matches the row; callers write new ones after their changes,
//! in the same transaction.

use std::collections::BTreeMap;

use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::StoreError;
use super::bulk::{placeholders, rows_per_statement};
use super::identities::{USER_COLUMNS, parse_uuid, user_from_row};
use crate::domain::{GroupMember, IdentityUser, MemberKind, SourceName};

/// One stored user of a source, condensed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDigest {
    pub id: Uuid,
    pub external_id: Option<String>,
    /// None when never written or dropped by a change since.
    pub fingerprint: Option<i64>,
}

/// How many poll transactions of `source` have committed (0 before the
/// first).
pub async fn generation(conn: &mut AnyConnection, source: &SourceName) -> Result<i64, StoreError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT generation FROM ldap_source_generations WHERE source = $1")
            .bind(source.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(found.unwrap_or(0))
}

/// Moves `source` to its next generation on the caller's write
/// transaction and returns the generation before. On PostgreSQL the row
/// stays locked until the transaction ends, so a concurrent poll of the
/// same source waits here and then sees this one's generation.
pub async fn bump_generation(
    conn: &mut AnyConnection,
    source: &SourceName,
) -> Result<i64, StoreError> {
    let next: i64 = sqlx::query_scalar(
        "INSERT INTO ldap_source_generations (source, generation) VALUES ($1, 1) \
         ON CONFLICT (source) DO UPDATE SET generation = ldap_source_generations.generation + 1 \
         RETURNING generation",
    )
    .bind(source.as_str())
    .fetch_one(&mut *conn)
    .await?;
    Ok(next - 1)
}

/// How many groups `source` has (the empty-read guard's comparison).
pub async fn count_groups(
    conn: &mut AnyConnection,
    source: &SourceName,
) -> Result<usize, StoreError> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM identity_groups WHERE source = $1")
        .bind(source.as_str())
        .fetch_one(&mut *conn)
        .await?;
    Ok(usize::try_from(count).unwrap_or(0))
}

/// Every user of `source`: id, stable id and fingerprint.
///
/// The rows come aggregated into one text value (`id,fingerprint,hex of
/// the stable id` per user, `;`-separated): at tens of thousands of users
/// that is ~10× cheaper than a result row per user through the `Any`
/// driver. The stable id is hex-encoded so no value can contain a
/// separator; an absent one is `-`.
pub async fn user_digests(
    conn: &mut AnyConnection,
    source: &SourceName,
) -> Result<Vec<UserDigest>, StoreError> {
    let sql = if conn.backend_name() == "PostgreSQL" {
        "SELECT string_agg(u.id || ',' || COALESCE(f.fingerprint::text, '') || ',' || \
         COALESCE(encode(convert_to(u.external_id, 'UTF8'), 'hex'), '-'), ';') \
         FROM identity_users u LEFT JOIN ldap_user_fingerprints f ON f.user_id = u.id \
         WHERE u.source = $1"
    } else {
        "SELECT group_concat(u.id || ',' || COALESCE(f.fingerprint, '') || ',' || \
         COALESCE(hex(u.external_id), '-'), ';') \
         FROM identity_users u LEFT JOIN ldap_user_fingerprints f ON f.user_id = u.id \
         WHERE u.source = $1"
    };
    let text: Option<String> = sqlx::query_scalar(sql)
        .bind(source.as_str())
        .fetch_one(&mut *conn)
        .await?;
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    text.split(';').map(parse_digest).collect()
}

fn parse_digest(item: &str) -> Result<UserDigest, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("bad user digest {item:?}"));
    let mut parts = item.splitn(3, ',');
    let (Some(id), Some(print), Some(external)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(corrupt());
    };
    let fingerprint = match print {
        "" => None,
        p => Some(p.parse::<i64>().map_err(|_| corrupt())?),
    };
    let external_id = match external {
        "-" => None,
        hex_text => {
            let bytes = hex::decode(hex_text).map_err(|_| corrupt())?;
            Some(String::from_utf8(bytes).map_err(|_| corrupt())?)
        }
    };
    Ok(UserDigest {
        id: parse_uuid(id)?,
        external_id,
        fingerprint,
    })
}

/// What an incremental poll needs of every stored user of a source: to
/// match the users it read, and to resolve members it did not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserKeys {
    pub id: Uuid,
    pub external_id: Option<String>,
    pub user_name: String,
    pub email: Option<String>,
    /// The DN the poller stored (`attributes.dn`).
    pub dn: Option<String>,
}

/// [`UserKeys`] of every user of `source`, aggregated into one text value
/// like [`user_digests`] (`id,external_id,user_name,email,dn` per user,
/// each text hex-encoded, `-` when absent).
pub async fn user_keys(
    conn: &mut AnyConnection,
    source: &SourceName,
) -> Result<Vec<UserKeys>, StoreError> {
    let sql = if conn.backend_name() == "PostgreSQL" {
        "SELECT string_agg(id || ',' || \
         COALESCE(encode(convert_to(external_id, 'UTF8'), 'hex'), '-') || ',' || \
         encode(convert_to(user_name, 'UTF8'), 'hex') || ',' || \
         COALESCE(encode(convert_to(email, 'UTF8'), 'hex'), '-') || ',' || \
         COALESCE(encode(convert_to(attributes::json ->> 'dn', 'UTF8'), 'hex'), '-'), ';') \
         FROM identity_users WHERE source = $1"
    } else {
        // SQLite's hex(NULL) is '', not NULL.
        "SELECT group_concat(id || ',' || \
         CASE WHEN external_id IS NULL THEN '-' ELSE hex(external_id) END || ',' || \
         hex(user_name) || ',' || \
         CASE WHEN email IS NULL THEN '-' ELSE hex(email) END || ',' || \
         CASE WHEN json_extract(attributes, '$.dn') IS NULL THEN '-' \
         ELSE hex(json_extract(attributes, '$.dn')) END, ';') \
         FROM identity_users WHERE source = $1"
    };
    let text: Option<String> = sqlx::query_scalar(sql)
        .bind(source.as_str())
        .fetch_one(&mut *conn)
        .await?;
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    text.split(';').map(parse_user_keys).collect()
}

fn parse_user_keys(item: &str) -> Result<UserKeys, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("bad user keys {item:?}"));
    let text = |part: &str| -> Result<Option<String>, StoreError> {
        if part == "-" {
            return Ok(None);
        }
        let bytes = hex::decode(part).map_err(|_| corrupt())?;
        String::from_utf8(bytes).map(Some).map_err(|_| corrupt())
    };
    let parts: Vec<&str> = item.split(',').collect();
    let [id, external_id, user_name, email, dn] = parts[..] else {
        return Err(corrupt());
    };
    Ok(UserKeys {
        id: parse_uuid(id)?,
        external_id: text(external_id)?,
        user_name: text(user_name)?.ok_or_else(corrupt)?,
        email: text(email)?,
        dn: text(dn)?,
    })
}

/// The stored rows of these users of `source` (any order; unknown ids are
/// left out).
pub async fn users_by_ids(
    conn: &mut AnyConnection,
    source: &SourceName,
    ids: &[Uuid],
) -> Result<Vec<IdentityUser>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(rows_per_statement(conn, 1)) {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM identity_users WHERE source = $1 AND id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(&sql).bind(source.as_str());
        for id in chunk {
            query = query.bind(id.to_string());
        }
        for row in query.fetch_all(&mut *conn).await? {
            out.push(user_from_row(&row)?);
        }
    }
    Ok(out)
}

/// Records the fingerprints of these users (replacing older ones).
pub async fn put_user_fingerprints(
    conn: &mut AnyConnection,
    prints: &[(Uuid, i64)],
) -> Result<(), StoreError> {
    put(conn, "ldap_user_fingerprints", "user_id", prints).await
}

/// Every group of `source` that has a fingerprint.
pub async fn group_fingerprints(
    conn: &mut AnyConnection,
    source: &SourceName,
) -> Result<BTreeMap<Uuid, i64>, StoreError> {
    let rows = sqlx::query(
        "SELECT f.group_id, f.fingerprint FROM ldap_group_fingerprints f \
         JOIN identity_groups g ON g.id = f.group_id WHERE g.source = $1",
    )
    .bind(source.as_str())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                parse_uuid(row.try_get::<&str, _>("group_id")?)?,
                row.try_get("fingerprint")?,
            ))
        })
        .collect()
}

/// Records the fingerprints of these groups' member lists.
pub async fn put_group_fingerprints(
    conn: &mut AnyConnection,
    prints: &[(Uuid, i64)],
) -> Result<(), StoreError> {
    put(conn, "ldap_group_fingerprints", "group_id", prints).await
}

/// The direct members of these groups, by group.
pub async fn members_of_groups(
    conn: &mut AnyConnection,
    groups: &[Uuid],
) -> Result<BTreeMap<Uuid, BTreeMap<Uuid, MemberKind>>, StoreError> {
    let mut out: BTreeMap<Uuid, BTreeMap<Uuid, MemberKind>> = BTreeMap::new();
    for chunk in groups.chunks(rows_per_statement(conn, 1)) {
        let sql = format!(
            "SELECT group_id, member_id, member_kind FROM identity_group_members \
             WHERE group_id IN ({})",
            placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.to_string());
        }
        for row in query.fetch_all(&mut *conn).await? {
            let group = parse_uuid(row.try_get::<&str, _>("group_id")?)?;
            let kind: &str = row.try_get("member_kind")?;
            let member = GroupMember {
                id: parse_uuid(row.try_get::<&str, _>("member_id")?)?,
                kind: MemberKind::parse(kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("bad member kind {kind:?}")))?,
            };
            out.entry(group).or_default().insert(member.id, member.kind);
        }
    }
    Ok(out)
}

async fn put(
    conn: &mut AnyConnection,
    table: &str,
    key: &str,
    prints: &[(Uuid, i64)],
) -> Result<(), StoreError> {
    // One row per key (the last given wins): PostgreSQL refuses to upsert
    // a row twice in one statement.
    let prints: Vec<(Uuid, i64)> = prints
        .iter()
        .copied()
        .collect::<BTreeMap<Uuid, i64>>()
        .into_iter()
        .collect();
    for chunk in prints.chunks(rows_per_statement(conn, 2)) {
        let values = (0..chunk.len())
            .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO {table} ({key}, fingerprint) VALUES {values} \
             ON CONFLICT ({key}) DO UPDATE SET fingerprint = excluded.fingerprint"
        );
        let mut query = sqlx::query(&sql);
        for (id, print) in chunk {
            query = query.bind(id.to_string()).bind(*print);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_with_and_without_fingerprint_and_stable_id() {
        let id = Uuid::from_u128(7);
        let d = parse_digest(&format!("{id},-42,{}", hex::encode("a,b;c"))).expect("parses");
        assert_eq!(
            d,
            UserDigest {
                id,
                external_id: Some("a,b;c".into()),
                fingerprint: Some(-42)
            }
        );
        let d = parse_digest(&format!("{id},,-")).expect("parses");
        assert_eq!((d.external_id, d.fingerprint), (None, None));
        let d = parse_digest(&format!("{id},,")).expect("empty stable id");
        assert_eq!(d.external_id.as_deref(), Some(""));
        assert!(parse_digest("x,1,61").is_err());
        assert!(parse_digest(&format!("{id},1")).is_err());
    }

    #[test]
    fn user_keys_parse_with_and_without_optional_fields() {
        let id = Uuid::from_u128(9);
        let h = hex::encode;
        let item = format!(
            "{id},{},{},{},{}",
            h("x,1"),
            h("ada"),
            h("a@x.org"),
            h("uid=ada;x,dc=x")
        );
        assert_eq!(
            parse_user_keys(&item).expect("parses"),
            UserKeys {
                id,
                external_id: Some("x,1".into()),
                user_name: "ada".into(),
                email: Some("a@x.org".into()),
                dn: Some("uid=ada;x,dc=x".into()),
            }
        );
        let keys = parse_user_keys(&format!("{id},-,{},-,-", h("b"))).expect("parses");
        assert_eq!((keys.external_id, keys.email, keys.dn), (None, None, None));
        assert!(
            parse_user_keys(&format!("{id},-,-,-,-")).is_err(),
            "a login is required"
        );
        assert!(parse_user_keys(&format!("{id},-,{}", h("b"))).is_err());
    }
}

//! The console's people search: identities whose e-mail, user name or
//! name contains a text, case-insensitively, bounded by a limit.

use sqlx::{AnyConnection, Row};

use super::StoreError;

/// One identity that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonHit {
    pub email: Option<String>,
    pub source: String,
    pub user_name: String,
    pub name: Option<String>,
    pub active: bool,
}

/// `text` with LIKE's wildcards escaped (by `\`).
fn like_pattern(text: &str) -> String {
    let mut out = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Identities matching `text`, by e-mail then source; at most `limit`.
pub async fn search(
    conn: &mut AnyConnection,
    text: &str,
    limit: i64,
) -> Result<Vec<PersonHit>, StoreError> {
    let rows = sqlx::query(
        "SELECT email, source, user_name, \
                COALESCE(display_name, given_name || ' ' || family_name, given_name) AS name, \
                active \
         FROM identity_users \
         WHERE LOWER(COALESCE(email, '')) LIKE $1 ESCAPE '\\' \
            OR LOWER(user_name) LIKE $1 ESCAPE '\\' \
            OR LOWER(COALESCE(display_name, '')) LIKE $1 ESCAPE '\\' \
            OR LOWER(COALESCE(given_name, '') || ' ' || COALESCE(family_name, '')) LIKE $1 ESCAPE '\\' \
         ORDER BY email, source, user_name LIMIT $2",
    )
    .bind(like_pattern(text.trim()))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(PersonHit {
                email: row.try_get("email")?,
                source: row.try_get("source")?,
                user_name: row.try_get("user_name")?,
                name: row.try_get("name")?,
                active: row.try_get::<i64, _>("active")? != 0,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn wildcards_are_escaped() {
        assert_eq!(super::like_pattern("A_b%"), "%a\\_b\\%%");
    }
}

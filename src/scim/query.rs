//! Translates the filters clients really send into indexed store
//! conditions. The translation may be partial: it then narrows the rows in
//! SQL and the full filter is evaluated in memory over what is left.

use serde_json::Value;

use super::filter::{AttrPath, CompareOp, Filter};
use super::schema::is_core_schema;
use crate::domain::Timestamp;
use crate::store::scim_query::{Cmp, Condition, Page};

use super::error::ScimError;
use super::filter;
use super::resource::ListParams;

/// Which resource a filter runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

/// How a list or search request is served, for Users and Groups alike:
/// entirely in SQL with paging when the filter translates exactly and no
/// sort is asked for, otherwise narrowed in SQL and finished in memory.
#[derive(Debug)]
pub struct ListPlan {
    /// The whole filter, for the in-memory pass.
    pub filter: Option<Filter>,
    /// The indexed part of the filter, run as SQL.
    pub condition: Option<Condition>,
    /// `(startIndex, page)` when SQL alone answers the request.
    pub sql_page: Option<(i64, Page)>,
}

impl ListPlan {
    pub fn new(params: &ListParams, kind: Kind, max_page_size: usize) -> Result<Self, ScimError> {
        let filter = params.parsed_filter()?;
        // What SQL cannot hold (see `Condition::fits_sql`) is left to the
        // in-memory pass, which is exact for every filter.
        let translated = filter
            .as_ref()
            .map(|f| translate(f, kind).filter(|t| t.condition.fits_sql()));
        let exact = match &translated {
            None => true,
            Some(t) => t.as_ref().is_some_and(|t| t.exact),
        };
        let condition = translated.flatten().map(|t| t.condition);
        let sql_page = (exact && params.sort_by.is_none()).then(|| {
            let (start, count) = params.window(max_page_size);
            let page = Page {
                offset: start - 1,
                limit: count,
            };
            (start, page)
        });
        Ok(Self {
            filter,
            condition,
            sql_page,
        })
    }

    /// Whether a resource passes the whole filter (the in-memory pass).
    pub fn keeps(&self, resource: &Value) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| filter::matches(f, resource))
    }
}

/// A store condition that selects at least the matching rows, and whether
/// it selects exactly them (so no in-memory pass is needed).
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub condition: Condition,
    pub exact: bool,
}

/// The translation of a filter (recursing as deep as the filter nests,
/// which the parser bounds). Flat `and`/`or` lists stay flat.
pub fn translate(filter: &Filter, kind: Kind) -> Option<Translated> {
    match filter {
        Filter::And(all) => {
            let translated: Vec<Option<Translated>> =
                all.iter().map(|f| translate(f, kind)).collect();
            let complete = translated.iter().all(Option::is_some);
            let parts: Vec<Translated> = translated.into_iter().flatten().collect();
            let exact = complete && parts.iter().all(|t| t.exact);
            let mut conditions: Vec<Condition> = parts.into_iter().map(|t| t.condition).collect();
            let condition = match conditions.len() {
                0 => return None,
                1 => conditions.remove(0),
                _ => Condition::And(conditions),
            };
            Some(Translated { condition, exact })
        }
        Filter::Or(any) => {
            let parts = any
                .iter()
                .map(|f| translate(f, kind))
                .collect::<Option<Vec<Translated>>>()?;
            let exact = parts.iter().all(|t| t.exact);
            Some(Translated {
                condition: Condition::Or(parts.into_iter().map(|t| t.condition).collect()),
                exact,
            })
        }
        // A value SQL cannot hold leaves just this comparison to memory.
        Filter::Compare { path, op, value } => {
            compare(path, *op, value, kind).filter(|t| t.condition.fits_sql())
        }
        _ => None,
    }
}

/// Folds a compared name or e-mail the way the store's `*_lc` columns are
/// folded (`domain::fold_key`): the one place the SQL translation does so.
/// A user's displayName is compared only by `LOWER()`, as SQL can do it.
fn folded(text: &str) -> String {
    crate::domain::fold_key(text)
}

fn compare(path: &AttrPath, op: CompareOp, value: &Value, kind: Kind) -> Option<Translated> {
    if path.uri.as_deref().is_some_and(|u| !is_core_schema(u)) {
        return None;
    }
    let exact = |condition| {
        Some(Translated {
            condition,
            exact: true,
        })
    };
    let text = value.as_str();
    let lc = text.map(folded);
    match (kind, path.key().as_str(), op) {
        (_, "id", CompareOp::Eq) => exact(Condition::Id(text?.to_string())),
        (_, "externalid", CompareOp::Eq) => exact(Condition::ExternalId(text?.to_string())),
        (Kind::User, "username", _) | (Kind::Group, "displayname", _) => match op {
            CompareOp::Eq => exact(Condition::NameLcEq(lc?)),
            CompareOp::Sw => exact(Condition::NameLcStartsWith(lc?)),
            CompareOp::Co => exact(Condition::NameLcContains(lc?)),
            CompareOp::Ew => exact(Condition::NameLcEndsWith(lc?)),
            _ => None,
        },
        (Kind::User, "displayname", CompareOp::Eq) => Some(Translated {
            condition: Condition::DisplayNameLc(text?.to_lowercase()),
            exact: false,
        }),
        (Kind::User, "emails.value" | "emails", CompareOp::Eq) => exact(Condition::EmailLc(lc?)),
        (Kind::User, "active", CompareOp::Eq) => exact(Condition::Active(value.as_bool()?)),
        (_, "meta.lastmodified", _) => {
            let at = Timestamp::parse_rfc3339(text?)?.0;
            let cmp = match op {
                CompareOp::Eq => Cmp::Eq,
                CompareOp::Gt => Cmp::Gt,
                CompareOp::Ge => Cmp::Ge,
                CompareOp::Lt => Cmp::Lt,
                CompareOp::Le => Cmp::Le,
                _ => return None,
            };
            exact(Condition::Updated(cmp, at))
        }
        (Kind::Group, "members.value" | "members", CompareOp::Eq) => {
            exact(Condition::HasMember(text?.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::filter::parse;
    use super::*;

    fn t(text: &str, kind: Kind) -> Option<Translated> {
        translate(&parse(text).expect("parses"), kind)
    }

    #[test]
    fn common_filters_become_indexed_conditions() {
        assert_eq!(
            t(r#"userName eq "Alice@X.org""#, Kind::User),
            Some(Translated {
                condition: Condition::NameLcEq("alice@x.org".into()),
                exact: true
            })
        );
        let both = t(
            r#"externalId eq "e1" and emails.value eq "A@x.org""#,
            Kind::User,
        )
        .expect("t");
        assert!(both.exact);
        let partial = t(r#"userName sw "a" and title eq "x""#, Kind::User).expect("t");
        assert!(!partial.exact);
        assert_eq!(t(r#"userName sw "a" or title eq "x""#, Kind::User), None);
        assert_eq!(t(r#"not (userName eq "a")"#, Kind::User), None);
        assert_eq!(
            t(r#"members.value eq "m1""#, Kind::Group).map(|t| t.condition),
            Some(Condition::HasMember("m1".into()))
        );
        assert!(
            t(r#"meta.lastModified gt "2026-01-01T00:00:00Z""#, Kind::User)
                .is_some_and(|t| t.exact)
        );
    }

    fn plan(filter: &str) -> ListPlan {
        let params = ListParams {
            filter: Some(filter.to_string()),
            ..ListParams::default()
        };
        ListPlan::new(&params, Kind::User, 50).expect("plan")
    }

    #[test]
    fn long_chains_stay_flat_and_within_sql_limits() {
        let chain = (0..1000)
            .map(|i| format!("userName eq \"u{i}\""))
            .collect::<Vec<_>>()
            .join(" or ");
        let p = plan(&chain);
        let Some(Condition::Or(list)) = &p.condition else {
            panic!("expected one flat or: {:?}", p.condition)
        };
        assert_eq!(list.len(), 1000);
        assert!(p.sql_page.is_some(), "exact, so paged in SQL");
        let cond = p.condition.as_ref().expect("condition");
        assert_eq!(cond.binds(), 1000);
        assert!(cond.sql_depth() <= 16, "{}", cond.sql_depth());
    }

    #[test]
    fn nul_in_a_value_is_left_to_the_exact_in_memory_pass() {
        for filter in [
            r#"userName ew "\u00000""#,
            r#"userName eq "a\u0000""#,
            r#"externalId eq "\u0000""#,
            r#"emails.value eq "\u0000@x""#,
        ] {
            let p = plan(filter);
            assert_eq!(p.condition, None, "{filter}");
            assert!(p.sql_page.is_none(), "{filter}");
        }
        // Other control characters bind and match as they are.
        assert!(plan(r#"userName ew "\u00010""#).condition.is_some());
        // Half a conjunction still narrows the rows.
        let p = plan(r#"userName sw "a" and userName ew "\u00000""#);
        assert_eq!(p.condition, Some(Condition::NameLcStartsWith("a".into())));
        assert!(p.sql_page.is_none());
    }

    #[test]
    fn values_too_long_for_a_like_pattern_are_left_to_memory() {
        let long = "a".repeat(30_000);
        assert!(plan(&format!("userName eq \"{long}\"")).condition.is_some());
        assert!(plan(&format!("userName sw \"{long}\"")).condition.is_some());
        let escaped = "_".repeat(30_000);
        assert_eq!(plan(&format!("userName co \"{escaped}\"")).condition, None);
    }
}

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
        let translated = filter.as_ref().map(|f| translate(f, kind));
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

pub fn translate(filter: &Filter, kind: Kind) -> Option<Translated> {
    match filter {
        Filter::And(a, b) => match (translate(a, kind), translate(b, kind)) {
            (Some(a), Some(b)) => Some(Translated {
                condition: Condition::And(Box::new(a.condition), Box::new(b.condition)),
                exact: a.exact && b.exact,
            }),
            (Some(one), None) | (None, Some(one)) => Some(Translated {
                condition: one.condition,
                exact: false,
            }),
            (None, None) => None,
        },
        Filter::Or(a, b) => {
            let (a, b) = (translate(a, kind)?, translate(b, kind)?);
            Some(Translated {
                condition: Condition::Or(Box::new(a.condition), Box::new(b.condition)),
                exact: a.exact && b.exact,
            })
        }
        Filter::Compare { path, op, value } => compare(path, *op, value, kind),
        _ => None,
    }
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
    // userName, group displayName and e-mails are compared by their fold
    // keys (the `*_lc` columns hold `domain::fold_key`); a user's
    // displayName only by `LOWER()`, as SQL can do it.
    let lc = text.map(crate::domain::fold_key);
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
}

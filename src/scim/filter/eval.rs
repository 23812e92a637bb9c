//! Evaluates a filter over a resource's JSON: exact for every filter, used
//! for whatever the SQL translation cannot express.

use std::cmp::Ordering;

use serde_json::Value;

use super::{AttrPath, CompareOp, Filter};
use crate::domain::Timestamp;
use crate::scim::schema::is_case_exact;

/// Whether `resource` matches `filter`. Recurses as deep as the filter
/// nests, which the parser bounds.
pub fn matches(filter: &Filter, resource: &Value) -> bool {
    match filter {
        Filter::And(all) => all.iter().all(|f| matches(f, resource)),
        Filter::Or(any) => any.iter().any(|f| matches(f, resource)),
        Filter::Not(inner) => !matches(inner, resource),
        Filter::Present(path) => values_at(resource, path)
            .iter()
            .any(|v| !v.is_null() && v != &Value::String(String::new())),
        Filter::Compare { path, op, value } => {
            let exact = is_case_exact(&path.key());
            let found = values_at(resource, path);
            if *op == CompareOp::Ne {
                return !found
                    .iter()
                    .any(|v| compare(v, CompareOp::Eq, value, exact));
            }
            found.iter().any(|v| compare(v, *op, value, exact))
        }
        Filter::ValuePath { attr, filter } => element_values(resource, attr)
            .iter()
            .any(|element| matches(filter, element)),
    }
}

/// Looks a key up case-insensitively, as SCIM attribute names are.
fn get_ci<'a>(object: &'a Value, key: &str) -> Option<&'a Value> {
    object
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// The object an attribute lives in: the resource itself, or the extension
/// object named by the path's URN.
fn container<'a>(resource: &'a Value, path: &AttrPath) -> Option<&'a Value> {
    match &path.uri {
        Some(uri) if !crate::scim::schema::is_core_schema(uri) => get_ci(resource, uri),
        _ => Some(resource),
    }
}

fn element_values(resource: &Value, attr: &AttrPath) -> Vec<Value> {
    match container(resource, attr).and_then(|c| get_ci(c, &attr.attr)) {
        Some(Value::Array(items)) => items.clone(),
        Some(v) => vec![v.clone()],
        None => Vec::new(),
    }
}

/// Every value at a path, multi-valued attributes flattened. A complex
/// multi-valued attribute without a sub-attribute compares on `value`.
pub fn values_at(resource: &Value, path: &AttrPath) -> Vec<Value> {
    let Some(top) = container(resource, path).and_then(|c| get_ci(c, &path.attr)) else {
        return Vec::new();
    };
    let items: Vec<&Value> = match top {
        Value::Array(items) => items.iter().collect(),
        v => vec![v],
    };
    let sub = path.sub.as_deref().or_else(|| {
        items
            .first()
            .filter(|v| v.is_object() && top.is_array())
            .map(|_| "value")
    });
    match sub {
        Some(sub) => items
            .iter()
            .filter_map(|item| get_ci(item, sub))
            .flat_map(|v| match v {
                Value::Array(a) => a.clone(),
                v => vec![v.clone()],
            })
            .collect(),
        None => items.into_iter().cloned().collect(),
    }
}

fn compare(actual: &Value, op: CompareOp, expected: &Value, case_exact: bool) -> bool {
    match (actual, expected) {
        (Value::String(a), Value::String(e)) => {
            if let (Some(ta), Some(te)) = (Timestamp::parse_rfc3339(a), Timestamp::parse_rfc3339(e))
            {
                return ordered(ta.cmp(&te), op);
            }
            let (a, e) = if case_exact {
                (a.clone(), e.clone())
            } else {
                (crate::domain::fold_key(a), crate::domain::fold_key(e))
            };
            match op {
                CompareOp::Co => a.contains(&e),
                CompareOp::Sw => a.starts_with(&e),
                CompareOp::Ew => a.ends_with(&e),
                _ => ordered(a.cmp(&e), op),
            }
        }
        (Value::Number(a), Value::Number(e)) => match (a.as_f64(), e.as_f64()) {
            (Some(a), Some(e)) => a.partial_cmp(&e).is_some_and(|o| ordered(o, op)),
            _ => false,
        },
        (Value::Bool(a), Value::Bool(e)) => matches!(op, CompareOp::Eq) && a == e,
        (Value::String(a), Value::Bool(e)) => {
            matches!(op, CompareOp::Eq) && a.eq_ignore_ascii_case(&e.to_string())
        }
        (_, Value::Null) => false,
        _ => false,
    }
}

fn ordered(ordering: Ordering, op: CompareOp) -> bool {
    match op {
        CompareOp::Eq => ordering == Ordering::Equal,
        CompareOp::Ne => ordering != Ordering::Equal,
        CompareOp::Gt => ordering == Ordering::Greater,
        CompareOp::Ge => ordering != Ordering::Less,
        CompareOp::Lt => ordering == Ordering::Less,
        CompareOp::Le => ordering != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({
            "userName": "Alice@Example.org",
            "externalId": "AbC",
            "active": true,
            "name": {"givenName": "Alice"},
            "emails": [
                {"type": "work", "value": "alice@example.org", "primary": true},
                {"type": "home", "value": "alice@home.net"}
            ],
            "meta": {"lastModified": "2026-01-02T03:04:05.000Z"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"}
        })
    }

    #[test]
    fn filters_match_as_the_rfc_says() {
        let cases = [
            (r#"userName eq "alice@example.org""#, true),
            (r#"externalId eq "abc""#, false),
            (r#"externalId eq "AbC""#, true),
            (r#"userName sw "ALICE" and active eq true"#, true),
            (r#"userName ew "nope" or name.givenName co "lic""#, true),
            (r#"not (userName pr)"#, false),
            (r#"title pr"#, false),
            (
                r#"emails[type eq "work" and value co "@example.org"]"#,
                true,
            ),
            (
                r#"emails[type eq "home" and value co "@example.org"]"#,
                false,
            ),
            (r#"emails.value eq "alice@home.net""#, true),
            (r#"emails eq "alice@home.net""#, true),
            (r#"meta.lastModified gt "2026-01-01T00:00:00Z""#, true),
            (r#"meta.lastModified lt "2026-01-02T05:04:05+02:00""#, false),
            (r#"userName ne "bob""#, true),
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "ops""#,
                true,
            ),
            (r#"active eq false"#, false),
        ];
        for (text, expected) in cases {
            let f = parse(text).expect(text);
            assert_eq!(matches(&f, &user()), expected, "{text}");
        }
    }
}

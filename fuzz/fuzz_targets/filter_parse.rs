//! SCIM filters as clients send them (`?filter=`, `/.search` bodies):
//! parsing never panics or overflows the stack, whatever parses stays
//! within the limits, and evaluation and the SQL translation of what
//! parses never panic and stay within both engines' limits.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tyk_idsync::scim::filter::{self, Filter, limits};
use tyk_idsync::scim::query::{Kind, translate};
use tyk_idsync::store::scim_query::{MAX_BINDS, condition_sql};

/// Depth (lists, `not`s and value filters) and attribute expressions.
fn shape(f: &Filter) -> (usize, usize) {
    match f {
        Filter::And(list) | Filter::Or(list) => {
            assert!(list.len() >= 2, "a list of one is the filter itself");
            let shapes: Vec<(usize, usize)> = list.iter().map(shape).collect();
            let depth = shapes.iter().map(|s| s.0).max().unwrap_or(0);
            (depth + 1, shapes.iter().map(|s| s.1).sum())
        }
        Filter::Not(inner) | Filter::ValuePath { filter: inner, .. } => {
            let (depth, clauses) = shape(inner);
            (depth + 1, clauses)
        }
        Filter::Present(_) | Filter::Compare { .. } => (0, 1),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = filter::parse(text) else {
        return;
    };
    let (depth, clauses) = shape(&parsed);
    assert!(depth <= 2 * limits::MAX_DEPTH + 1, "depth {depth}");
    assert!(clauses <= limits::MAX_CLAUSES, "{clauses} clauses");
    let user = json!({
        "id": "0b7c9a52-3c39-4a8e-9d1e-5d1f1b0a6a11",
        "userName": "Ada@Example.org",
        "externalId": "ext\u{0}1",
        "active": true,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"type": "work", "value": "ada@example.org", "primary": true}],
        "meta": {"lastModified": "2026-01-02T03:04:05.000Z"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"}
    });
    let group = json!({
        "displayName": "Ops",
        "members": [{"value": "0b7c9a52-3c39-4a8e-9d1e-5d1f1b0a6a11"}]
    });
    let _ = filter::matches(&parsed, &user);
    let _ = filter::matches(&parsed, &group);
    for kind in [Kind::User, Kind::Group] {
        let Some(translated) = translate(&parsed, kind) else {
            continue;
        };
        let condition = &translated.condition;
        if !condition.fits_sql() {
            continue;
        }
        let (sql, binds) = condition_sql(condition, kind == Kind::User);
        assert_eq!(binds, condition.binds());
        assert!(binds <= MAX_BINDS);
        assert!(binds <= limits::MAX_CLAUSES);
        assert!(!sql.contains('\0'), "values are bound, never inlined");
        let mut open = 0i64;
        for c in sql.chars() {
            open += match c {
                '(' => 1,
                ')' => -1,
                _ => 0,
            };
            assert!(open >= 0, "{sql}");
        }
        assert_eq!(open, 0, "{sql}");
    }
});

//! PATCH (RFC 7644 §3.5.2) applied to a resource's JSON: add, replace and
//! remove with plain, sub-attribute, extension and value-filter paths, and
//! path-less operations whose value keys may be dotted paths. Lenient where
//! real clients are sloppy (`"Replace"`, `"False"`).

use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::{self, Filter};
use super::schema::is_core_schema;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

/// A PATCH target: `[uri:]attr[filter][.sub]`.
#[derive(Debug, Clone)]
pub struct PatchPath {
    pub uri: Option<String>,
    pub attr: String,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PatchOp {
    pub kind: OpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

fn invalid_path(path: &str) -> ScimError {
    ScimError::InvalidPath(format!("{path:?} is not a valid attribute path"))
}

/// Parses a PATCH path. The value filter in it is bounded as filters
/// are ([`filter::limits`]); a bad one is `invalidFilter` (RFC 7644
/// §3.12, "PATCH (Path Filter)").
pub fn parse_path(text: &str) -> Result<PatchPath, ScimError> {
    let text = text.trim();
    if text.len() > filter::limits::MAX_BYTES {
        return Err(ScimError::InvalidPath(format!(
            "the path is longer than {} bytes",
            filter::limits::MAX_BYTES
        )));
    }
    let (head, filter, sub) = match text.find('[') {
        Some(open) => {
            let close = text.rfind(']').ok_or_else(|| invalid_path(text))?;
            if close < open {
                return Err(invalid_path(text));
            }
            let filter = filter::parse(&text[open + 1..close])
                .map_err(|e| ScimError::InvalidFilter(e.to_string()))?;
            let rest = &text[close + 1..];
            let sub = match rest.strip_prefix('.') {
                Some(s) if !s.is_empty() => Some(s.to_string()),
                None if rest.is_empty() => None,
                _ => return Err(invalid_path(text)),
            };
            (&text[..open], Some(filter), sub)
        }
        None => (text, None, None),
    };
    // A bare extension URN names the whole extension object.
    if is_schema_urn(head) {
        return Ok(PatchPath {
            uri: None,
            attr: head.to_string(),
            filter,
            sub,
        });
    }
    let parsed = filter::parse_attr_path(head).map_err(|_| invalid_path(text))?;
    if filter.is_some() && parsed.sub.is_some() {
        return Err(invalid_path(text));
    }
    Ok(PatchPath {
        uri: parsed.uri,
        attr: parsed.attr,
        filter,
        sub: sub.or(parsed.sub),
    })
}

/// Whether `text` names a whole schema (`urn:...:2.0:User`) rather than an
/// attribute in one: known schemas, or a URN whose last segment is
/// capitalised as resource names are and attribute names are not.
fn is_schema_urn(text: &str) -> bool {
    text.eq_ignore_ascii_case(super::schema::ENTERPRISE_SCHEMA)
        || is_core_schema(text)
        || (text.to_ascii_lowercase().starts_with("urn:")
            && text
                .rsplit(':')
                .next()
                .and_then(|last| last.chars().next())
                .is_some_and(|c| c.is_ascii_uppercase()))
}

/// Parses a PatchOp request body.
pub fn parse_ops(body: &Map<String, Value>) -> Result<Vec<PatchOp>, ScimError> {
    let ops = body
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Operations"))
        .and_then(|(_, v)| v.as_array())
        .ok_or_else(|| ScimError::InvalidSyntax("PATCH needs an \"Operations\" array".into()))?;
    ops.iter().map(parse_op).collect()
}

fn parse_op(op: &Value) -> Result<PatchOp, ScimError> {
    let name = op
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| ScimError::InvalidSyntax("each operation needs an \"op\"".into()))?;
    let kind = match name.to_ascii_lowercase().as_str() {
        "add" => OpKind::Add,
        "replace" => OpKind::Replace,
        "remove" => OpKind::Remove,
        _ => return Err(ScimError::InvalidSyntax(format!("unknown op {name:?}"))),
    };
    let path = match op.get("path") {
        Some(Value::String(p)) if !p.trim().is_empty() => Some(parse_path(p)?),
        Some(Value::String(_)) | Some(Value::Null) | None => None,
        Some(_) => return Err(ScimError::InvalidPath("path must be a string".into())),
    };
    let value = op.get("value").cloned();
    if kind == OpKind::Remove && path.is_none() {
        return Err(ScimError::NoTarget("remove needs a path".into()));
    }
    if kind != OpKind::Remove && value.is_none() {
        return Err(ScimError::InvalidValue(format!("{name} needs a value")));
    }
    Ok(PatchOp { kind, path, value })
}

/// Applies the operations in order to `resource`.
pub fn apply(resource: &mut Map<String, Value>, ops: &[PatchOp]) -> Result<(), ScimError> {
    for op in ops {
        match (&op.path, &op.value) {
            (Some(path), value) => apply_at(resource, op.kind, path, value.clone())?,
            (None, Some(Value::Object(values))) => {
                for (key, value) in values {
                    let path = parse_path(key)?;
                    apply_at(resource, op.kind, &path, Some(value.clone()))?;
                }
            }
            (None, _) => {
                return Err(ScimError::InvalidValue(
                    "an operation without a path needs an object value".into(),
                ));
            }
        }
    }
    Ok(())
}

fn key_ci(object: &Map<String, Value>, key: &str) -> String {
    object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(key))
        .cloned()
        .unwrap_or_else(|| key.to_string())
}

/// The object a path's attribute lives in (an extension object for URNs).
fn container<'a>(
    resource: &'a mut Map<String, Value>,
    path: &PatchPath,
) -> Result<&'a mut Map<String, Value>, ScimError> {
    match &path.uri {
        Some(uri) if !is_core_schema(uri) => {
            let key = key_ci(resource, uri);
            let entry = resource
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()));
            entry
                .as_object_mut()
                .ok_or_else(|| ScimError::InvalidValue(format!("{uri} is not an object")))
        }
        _ => Ok(resource),
    }
}

fn apply_at(
    resource: &mut Map<String, Value>,
    kind: OpKind,
    path: &PatchPath,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let target = container(resource, path)?;
    let key = key_ci(target, &path.attr);
    if let Some(filter) = &path.filter {
        return apply_filtered(target, &key, kind, filter, path.sub.as_deref(), value);
    }
    match (&path.sub, kind) {
        (Some(sub), _) => {
            let parent = target
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            match parent {
                Value::Object(obj) => set_or_remove(obj, sub, kind, value),
                Value::Array(items) => {
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        set_or_remove(item, sub, kind, value.clone())?;
                    }
                    Ok(())
                }
                _ => Err(ScimError::InvalidPath(format!(
                    "{key} has no sub-attributes"
                ))),
            }
        }
        (None, OpKind::Remove) => remove_values(target, &key, value),
        (None, OpKind::Add) => {
            add_value(target, &key, value.unwrap_or(Value::Null));
            Ok(())
        }
        (None, OpKind::Replace) => set_or_remove(target, &key, kind, value),
    }
}

fn set_or_remove(
    obj: &mut Map<String, Value>,
    key: &str,
    kind: OpKind,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let key = key_ci(obj, key);
    match (kind, value) {
        (OpKind::Remove, _) => {
            obj.remove(&key);
        }
        (_, Some(Value::Object(new))) if obj.get(&key).is_some_and(Value::is_object) => {
            if let Some(Value::Object(old)) = obj.get_mut(&key) {
                for (k, v) in new {
                    let k2 = key_ci(old, &k);
                    old.insert(k2, v);
                }
            }
        }
        (_, Some(v)) => {
            obj.insert(key, v);
        }
        (_, None) => return Err(ScimError::InvalidValue("a value is required".into())),
    }
    Ok(())
}

/// `add` appends to multi-valued attributes (skipping duplicates), merges
/// objects and sets everything else.
fn add_value(obj: &mut Map<String, Value>, key: &str, value: Value) {
    match (obj.get_mut(key), value) {
        (Some(Value::Array(items)), Value::Array(new)) => {
            for v in new {
                if !items.contains(&v) {
                    items.push(v);
                }
            }
        }
        (Some(Value::Array(items)), v) => {
            if !items.contains(&v) {
                items.push(v);
            }
        }
        (Some(Value::Object(old)), Value::Object(new)) => {
            for (k, v) in new {
                let k2 = key_ci(old, &k);
                old.insert(k2, v);
            }
        }
        (_, v) => {
            obj.insert(key.to_string(), v);
        }
    }
}

/// `remove` of a whole attribute, or — with a value array, as Entra sends
/// for members — of just the listed elements (matched on `value`).
fn remove_values(
    obj: &mut Map<String, Value>,
    key: &str,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let listed: Vec<Value> = match value {
        Some(Value::Array(items)) => items,
        Some(Value::Object(o)) => vec![Value::Object(o)],
        _ => {
            obj.remove(key);
            return Ok(());
        }
    };
    if let Some(Value::Array(items)) = obj.get_mut(key) {
        let gone = |item: &Value| {
            listed
                .iter()
                .any(|l| match (l.get("value"), item.get("value")) {
                    (Some(a), Some(b)) => a == b,
                    _ => l == item,
                })
        };
        items.retain(|item| !gone(item));
    }
    Ok(())
}

fn apply_filtered(
    obj: &mut Map<String, Value>,
    key: &str,
    kind: OpKind,
    filter: &Filter,
    sub: Option<&str>,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let items = match obj.get_mut(key) {
        Some(Value::Array(items)) => items,
        // Removing what is already gone succeeds: clients retry removals.
        _ if kind == OpKind::Remove => return Ok(()),
        _ => {
            obj.insert(key.to_string(), Value::Array(Vec::new()));
            return apply_filtered_new(obj, key, kind, filter, sub, value);
        }
    };
    let hits: Vec<usize> = (0..items.len())
        .filter(|i| filter::matches(filter, &items[*i]))
        .collect();
    if hits.is_empty() {
        return match kind {
            OpKind::Remove => Ok(()),
            OpKind::Replace | OpKind::Add => apply_filtered_new(obj, key, kind, filter, sub, value),
        };
    }
    for &i in hits.iter().rev() {
        match (kind, sub, items[i].as_object_mut()) {
            (OpKind::Remove, None, _) => {
                items.remove(i);
            }
            (_, Some(sub), Some(item)) => set_or_remove(item, sub, kind, value.clone())?,
            (_, None, Some(item)) => match value.clone() {
                Some(Value::Object(new)) => {
                    for (k, v) in new {
                        let k2 = key_ci(item, &k);
                        item.insert(k2, v);
                    }
                }
                _ => return Err(ScimError::InvalidValue("expected an object value".into())),
            },
            (_, _, None) => return Err(ScimError::InvalidPath(format!("{key} is not complex"))),
        }
    }
    Ok(())
}

/// An `add` — or a `replace`, as Entra ID sends it — whose value filter
/// matched nothing creates the element the filter describes:
/// `phoneNumbers[type eq "mobile"].value` on a user with no mobile number
/// adds `{"type": "mobile", "value": …}`. Only filters made of `eq`
/// comparisons of sub-attributes joined by `and` describe an element; a
/// `replace` with any other filter that matches nothing is `noTarget`.
fn apply_filtered_new(
    obj: &mut Map<String, Value>,
    key: &str,
    kind: OpKind,
    filter: &Filter,
    sub: Option<&str>,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let described = described_element(filter);
    if kind == OpKind::Replace && described.is_none() {
        return Err(ScimError::NoTarget(format!(
            "no {key} value matches the filter"
        )));
    }
    let mut element = described.unwrap_or_default();
    match (sub, value) {
        (Some(sub), Some(v)) => {
            element.insert(sub.to_string(), v);
        }
        (None, Some(Value::Object(v))) => {
            for (k, v) in v {
                let k2 = key_ci(&element, &k);
                element.insert(k2, v);
            }
        }
        (None, Some(v)) if element.is_empty() => {
            add_value(obj, key, Value::Array(vec![v]));
            return Ok(());
        }
        (None, Some(_)) => {
            return Err(ScimError::InvalidValue(format!(
                "{key}: expected an object value"
            )));
        }
        (_, None) => return Err(ScimError::InvalidValue("a value is required".into())),
    }
    add_value(obj, key, Value::Array(vec![Value::Object(element)]));
    Ok(())
}

/// The sub-attributes a filter of `eq` comparisons joined by `and` fixes
/// (`type eq "work" and primary eq true` → `{type: work, primary: true}`);
/// `None` for any other filter. Iterative: the filter's depth is bounded by
/// the parser, but nothing here needs to recurse.
fn described_element(filter: &Filter) -> Option<Map<String, Value>> {
    let mut element = Map::new();
    let mut pending = vec![filter];
    while let Some(next) = pending.pop() {
        match next {
            Filter::And(parts) => pending.extend(parts.iter().rev()),
            Filter::Compare {
                path,
                op: filter::CompareOp::Eq,
                value,
            } if path.sub.is_none() && path.uri.is_none() => {
                element.insert(path.attr.clone(), value.clone());
            }
            _ => return None,
        }
    }
    Some(element)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(start: Value, ops: Value) -> Result<Value, ScimError> {
        let mut resource = start.as_object().cloned().expect("object");
        let body = json!({"Operations": ops});
        let ops = parse_ops(body.as_object().expect("object"))?;
        apply(&mut resource, &ops)?;
        Ok(Value::Object(resource))
    }

    #[test]
    fn patch_operations_follow_the_rfc_and_real_clients() {
        let start = json!({
            "userName": "a", "active": true, "name": {"givenName": "A"},
            "emails": [{"type": "work", "value": "a@x.org"}, {"type": "home", "value": "a@h.net"}],
            "members": [{"value": "1"}, {"value": "2"}, {"value": "3"}]
        });
        let cases: Vec<(Value, Value)> = vec![
            (
                json!([{"op": "Replace", "path": "active", "value": "False"}]),
                json!({"active": "False"}),
            ),
            (
                json!([{"op": "replace", "value": {"active": false, "name.familyName": "B"}}]),
                json!({"active": false, "name": {"givenName": "A", "familyName": "B"}}),
            ),
            (
                json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "n@x.org"}]),
                json!({"emails": [{"type": "work", "value": "n@x.org"}, {"type": "home", "value": "a@h.net"}]}),
            ),
            (
                json!([{"op": "remove", "path": "members[value eq \"2\"]"}]),
                json!({"members": [{"value": "1"}, {"value": "3"}]}),
            ),
            (
                json!([{"op": "Remove", "path": "members", "value": [{"value": "1"}, {"value": "3"}]}]),
                json!({"members": [{"value": "2"}]}),
            ),
            (
                json!([{"op": "Add", "path": "members", "value": [{"value": "4"}, {"value": "1"}]}]),
                json!({"members": [{"value": "1"}, {"value": "2"}, {"value": "3"}, {"value": "4"}]}),
            ),
            (
                json!([{"op": "add", "value": {"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Ops"}}]),
                json!({"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"}}),
            ),
            (
                json!([{"op": "remove", "path": "name.givenName"}]),
                json!({"name": {}}),
            ),
        ];
        for (ops, expected_subset) in cases {
            let out = patched(start.clone(), ops.clone()).expect("applies");
            for (k, v) in expected_subset.as_object().expect("object") {
                assert_eq!(out.get(k), Some(v), "{ops} → {k}");
            }
        }
    }

    /// Entra ID's `Replace` on a filtered path that matches nothing means
    /// an add of the element the filter describes; an `Add` keeps the
    /// filter's type too.
    #[test]
    fn a_filtered_path_that_matches_nothing_adds_the_described_element() {
        let start = json!({"emails": [{"type": "work", "value": "a@x.org"}]});
        let cases = [
            (
                json!([{"op": "Replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555"}]),
                "phoneNumbers",
                json!([{"type": "mobile", "value": "+1 555"}]),
            ),
            (
                json!([{"op": "Replace", "path": "emails[type eq \"home\"].value", "value": "a@h.net"}]),
                "emails",
                json!([{"type": "work", "value": "a@x.org"}, {"type": "home", "value": "a@h.net"}]),
            ),
            (
                json!([{"op": "Replace", "path": "addresses[type eq \"work\"].formatted", "value": "1 Main St"}]),
                "addresses",
                json!([{"type": "work", "formatted": "1 Main St"}]),
            ),
            (
                json!([{"op": "Add", "path": "emails[type eq \"home\"].value", "value": "a@h.net"}]),
                "emails",
                json!([{"type": "work", "value": "a@x.org"}, {"type": "home", "value": "a@h.net"}]),
            ),
            (
                json!([{"op": "replace", "path": "emails[type eq \"other\" and primary eq false]", "value": {"value": "o@x.org"}}]),
                "emails",
                json!([{"type": "work", "value": "a@x.org"}, {"type": "other", "primary": false, "value": "o@x.org"}]),
            ),
            (
                // A match is replaced in place, not added.
                json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "n@x.org"}]),
                "emails",
                json!([{"type": "work", "value": "n@x.org"}]),
            ),
        ];
        for (ops, key, expected) in cases {
            let out = patched(start.clone(), ops.clone()).expect("applies");
            assert_eq!(out[key], expected, "{ops}");
        }
    }

    #[test]
    fn path_filters_are_bounded_like_filters() {
        let deep = format!(
            "emails[{}type eq \"work\"{}].value",
            "(".repeat(1_700),
            ")".repeat(1_700)
        );
        assert!(
            matches!(parse_path(&deep), Err(ScimError::InvalidFilter(m)) if m.contains("deeper"))
        );
        let brackets = format!("{}]", "emails[".repeat(2_000));
        assert!(matches!(
            parse_path(&brackets),
            Err(ScimError::InvalidFilter(_))
        ));
        let long = format!("emails[{}]", vec!["value pr"; 1_001].join(" or "));
        assert!(
            matches!(parse_path(&long), Err(ScimError::InvalidFilter(m)) if m.contains("1000"))
        );
        let huge = "a".repeat(filter::limits::MAX_BYTES + 1);
        assert!(
            matches!(parse_path(&huge), Err(ScimError::InvalidPath(m)) if m.contains("longer"))
        );
        let ok = format!(
            "emails[{}type eq \"work\"{}].value",
            "(".repeat(64),
            ")".repeat(64)
        );
        assert!(parse_path(&ok).is_ok());
    }

    #[test]
    fn bad_operations_are_rejected_with_scim_types() {
        let start = json!({"emails": [{"type": "work", "value": "a@x.org"}]});
        let bad = [
            json!([{"op": "jump", "path": "a", "value": 1}]),
            json!([{"op": "remove"}]),
            json!([{"op": "replace", "path": "emails[type eq]", "value": 1}]),
            json!([{"op": "replace", "path": "emails[value co \"zzz\"].value", "value": "x"}]),
            json!([{"op": "replace", "path": "emails[type eq \"a\" or type eq \"b\"]", "value": {"value": "x"}}]),
            json!([{"op": "add", "path": "x"}]),
        ];
        for ops in bad {
            assert!(patched(start.clone(), ops.clone()).is_err(), "{ops}");
        }
    }
}

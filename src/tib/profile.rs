//! The TIB profile as TIB stores it (`tap/profile.go`, struct `Profile`):
//! the field list and types, TIB's zero values, and comparison that
//! tolerates what a JSON round trip through Go changes.
//!
//! TIB decodes every profile into that struct, so what it returns has every
//! field (zero values for the missing ones) and none it does not know.
//! Comparing only the known fields, with missing = zero value, is what
//! "TIB holds the profile we rendered" means.

use serde_json::{Map, Value};

/// `ActionType` of a Dashboard SSO profile.
pub const USER_PROFILE_ACTION: &str = "GenerateOrLoginUserProfile";

/// How a field is typed in Go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `string`
    Text,
    /// `bool`
    Flag,
    /// `interface{}`
    Any,
    /// `map[string]interface{}`
    Object,
    /// `map[string]string`
    TextMap,
    /// `ProfileConstraint {Domain, Group string}`
    Constraints,
}

impl FieldKind {
    /// Whether Go's `json.Unmarshal` would accept `value` for this field.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            _ if value.is_null() => true,
            FieldKind::Text => value.is_string(),
            FieldKind::Flag => value.is_boolean(),
            FieldKind::Any => true,
            FieldKind::Object => value.is_object(),
            FieldKind::TextMap => value
                .as_object()
                .is_some_and(|m| m.values().all(|v| v.is_string() || v.is_null())),
            FieldKind::Constraints => value.as_object().is_some_and(|m| {
                m.iter().all(|(k, v)| {
                    matches!(k.as_str(), "Domain" | "Group") && (v.is_string() || v.is_null())
                })
            }),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            FieldKind::Text => "a string",
            FieldKind::Flag => "true or false",
            FieldKind::Any => "any JSON value",
            FieldKind::Object => "a JSON object",
            FieldKind::TextMap => "an object of strings",
            FieldKind::Constraints => "an object with `Domain` and `Group` strings",
        }
    }

    /// The value TIB reports when the field was never set.
    fn zero(self) -> Value {
        match self {
            FieldKind::Text => Value::String(String::new()),
            FieldKind::Flag => Value::Bool(false),
            FieldKind::Any | FieldKind::Object | FieldKind::TextMap => Value::Null,
            FieldKind::Constraints => serde_json::json!({"Domain": "", "Group": ""}),
        }
    }
}

/// Every field of TIB's `Profile`, in struct order.
pub const PROFILE_FIELDS: &[(&str, FieldKind)] = &[
    ("ID", FieldKind::Text),
    ("Name", FieldKind::Text),
    ("OrgID", FieldKind::Text),
    ("ActionType", FieldKind::Text),
    ("MatchedPolicyID", FieldKind::Text),
    ("Type", FieldKind::Text),
    ("ProviderName", FieldKind::Text),
    ("CustomEmailField", FieldKind::Text),
    ("CustomUserIDField", FieldKind::Text),
    ("ProviderConfig", FieldKind::Any),
    ("IdentityHandlerConfig", FieldKind::Object),
    ("ProviderConstraints", FieldKind::Constraints),
    ("ReturnURL", FieldKind::Text),
    ("DefaultUserGroupID", FieldKind::Text),
    ("CustomUserGroupField", FieldKind::Text),
    ("UserGroupMapping", FieldKind::TextMap),
    ("UserGroupSeparator", FieldKind::Text),
    ("SSOOnlyForRegisteredUsers", FieldKind::Flag),
];

/// Fields tyk-idsync sets; a template must not.
pub const GENERATED_FIELDS: &[&str] = &[
    "ID",
    "OrgID",
    "ActionType",
    "UserGroupMapping",
    "DefaultUserGroupID",
];

/// The profile as TIB would hold it: every known field, zero values for
/// missing or null ones, unknown fields dropped.
pub fn normalise(profile: &Value) -> Map<String, Value> {
    let empty = Map::new();
    let fields = profile.as_object().unwrap_or(&empty);
    PROFILE_FIELDS
        .iter()
        .map(|(name, kind)| {
            let value = match fields.get(*name) {
                None | Some(Value::Null) => kind.zero(),
                Some(v) if *kind == FieldKind::Constraints => {
                    let mut c = kind.zero();
                    if let (Some(out), Some(given)) = (c.as_object_mut(), v.as_object()) {
                        for (k, v) in given {
                            if let Some(s) = v.as_str() {
                                out.insert(k.clone(), Value::String(s.to_string()));
                            }
                        }
                    }
                    c
                }
                Some(v) => v.clone(),
            };
            (name.to_string(), value)
        })
        .collect()
}

/// The top-level fields in which TIB's copy differs from ours (both
/// normalised). Empty: TIB holds what we rendered.
pub fn differing_fields(ours: &Value, theirs: &Value) -> Vec<String> {
    let (ours, theirs) = (normalise(ours), normalise(theirs));
    PROFILE_FIELDS
        .iter()
        .filter(|(name, kind)| {
            let (a, b) = (&ours[*name], &theirs[*name]);
            let empty_map = |v: &Value| v.is_null() || v.as_object().is_some_and(Map::is_empty);
            let maps = matches!(kind, FieldKind::Object | FieldKind::TextMap);
            !(same_json(a, b) || (maps && empty_map(a) && empty_map(b)))
        })
        .map(|(name, _)| name.to_string())
        .collect()
}

/// JSON equality where numbers compare by value (Go re-encodes `1e3` as
/// `1000` and every number as a float64).
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Marks key names that hold secrets in TIB profiles (`DashboardCredential`,
/// OAuth client secrets, LDAP bind passwords…).
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "secret",
        "password",
        "credential",
        "private",
        "apikey",
        "api_key",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// A copy with every secret-looking value replaced by `[REDACTED]`, for
/// logs, the audit log, the admin API and `tib render`.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) && !v.is_null() && !v.is_object() {
                        Value::String("[REDACTED]".into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_tib_echoes_equals_what_we_sent() {
        let ours = json!({"ID": "p", "Type": "redirect", "ProviderConfig": {"Port": 1e3},
            "UserGroupMapping": {"a": "1"}, "ProviderConstraints": {"Domain": "x"}});
        let mut theirs = Value::Object(normalise(&ours));
        theirs["ProviderConfig"]["Port"] = json!(1000);
        theirs["SomeNewerField"] = json!(true);
        assert_eq!(differing_fields(&ours, &theirs), Vec::<String>::new());
        theirs["UserGroupMapping"]["a"] = json!("2");
        theirs["SSOOnlyForRegisteredUsers"] = json!(true);
        assert_eq!(
            differing_fields(&ours, &theirs),
            ["UserGroupMapping", "SSOOnlyForRegisteredUsers"]
        );
    }

    #[test]
    fn empty_and_null_maps_are_the_same() {
        let ours = json!({"IdentityHandlerConfig": {}});
        let theirs = json!({"IdentityHandlerConfig": null});
        assert!(differing_fields(&ours, &theirs).is_empty());
    }

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let profile = json!({"IdentityHandlerConfig": {"DashboardCredential": "k"},
            "ProviderConfig": {"UseProviders": [{"Name": "okta", "Secret": "s", "Key": "id"}],
            "LDAPAdminPassword": "p"}});
        let text = redact(&profile).to_string();
        assert!(!text.contains("\"k\"") && !text.contains("\"s\"") && !text.contains("\"p\""));
        assert!(text.contains("\"id\""), "{text}");
    }
}

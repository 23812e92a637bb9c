//! Schema URIs, attribute metadata (case-exactness, mutability) and the
//! `/Schemas` documents built from one table so they never disagree.

use serde_json::{Value, json};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Whether a URN names a core schema (whose attributes sit at the top level).
pub fn is_core_schema(uri: &str) -> bool {
    uri.eq_ignore_ascii_case(USER_SCHEMA) || uri.eq_ignore_ascii_case(GROUP_SCHEMA)
}

/// Case-exact attributes (RFC 7643): ids, references and versions; the rest
/// of the strings clients filter on compare case-insensitively.
pub fn is_case_exact(key: &str) -> bool {
    matches!(
        key,
        "id" | "externalid"
            | "meta.version"
            | "meta.location"
            | "members.value"
            | "members.$ref"
            | "groups.value"
            | "groups.$ref"
            | "password"
    )
}

fn attr(name: &str, kind: &str, multi: bool, required: bool) -> Value {
    json!({
        "name": name, "type": kind, "multiValued": multi, "description": name,
        "required": required, "caseExact": is_case_exact(&name.to_ascii_lowercase()),
        "mutability": "readWrite", "returned": "default", "uniqueness": "none"
    })
}

fn complex(name: &str, multi: bool, subs: Vec<Value>) -> Value {
    let mut a = attr(name, "complex", multi, false);
    a["subAttributes"] = Value::Array(subs);
    a
}

fn strings(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|n| attr(n, "string", false, false))
        .collect()
}

fn multi_valued(name: &str) -> Value {
    let mut subs = strings(&["value", "display", "type"]);
    subs.push(attr("primary", "boolean", false, false));
    complex(name, true, subs)
}

fn user_attributes() -> Vec<Value> {
    let mut user_name = attr("userName", "string", false, true);
    user_name["uniqueness"] = json!("server");
    let mut groups = complex(
        "groups",
        true,
        strings(&["value", "$ref", "display", "type"]),
    );
    groups["mutability"] = json!("readOnly");
    let mut password = attr("password", "string", false, false);
    password["mutability"] = json!("writeOnly");
    password["returned"] = json!("never");
    vec![
        user_name,
        complex(
            "name",
            false,
            strings(&[
                "formatted",
                "familyName",
                "givenName",
                "middleName",
                "honorificPrefix",
                "honorificSuffix",
            ]),
        ),
        attr("displayName", "string", false, false),
        attr("nickName", "string", false, false),
        attr("profileUrl", "reference", false, false),
        attr("title", "string", false, false),
        attr("userType", "string", false, false),
        attr("preferredLanguage", "string", false, false),
        attr("locale", "string", false, false),
        attr("timezone", "string", false, false),
        attr("active", "boolean", false, false),
        password,
        multi_valued("emails"),
        multi_valued("phoneNumbers"),
        multi_valued("ims"),
        multi_valued("photos"),
        complex(
            "addresses",
            true,
            strings(&[
                "formatted",
                "streetAddress",
                "locality",
                "region",
                "postalCode",
                "country",
                "type",
            ]),
        ),
        groups,
        multi_valued("entitlements"),
        multi_valued("roles"),
        multi_valued("x509Certificates"),
    ]
}

fn group_attributes() -> Vec<Value> {
    // The members' sub-attributes as RFC 7643 §8.7.1 has them: `$ref` a
    // reference to a User or Group, `type` one of those. A member must be a
    // user or group of the caller's source, so clients (and conformance
    // checkers) read this to name members that exist. `display` is the
    // member's name as this server knows it: read-only.
    let mut subs = strings(&["value", "$ref", "type", "display"]);
    subs[1]["type"] = json!("reference");
    subs[1]["referenceTypes"] = json!(["User", "Group"]);
    subs[2]["canonicalValues"] = json!(["User", "Group"]);
    subs[3]["mutability"] = json!("readOnly");
    vec![
        attr("displayName", "string", false, true),
        complex("members", true, subs),
    ]
}

fn enterprise_attributes() -> Vec<Value> {
    vec![
        attr("employeeNumber", "string", false, false),
        attr("costCenter", "string", false, false),
        attr("organization", "string", false, false),
        attr("division", "string", false, false),
        attr("department", "string", false, false),
        complex("manager", false, strings(&["value", "$ref", "displayName"])),
    ]
}

fn schema_doc(id: &str, name: &str, attributes: Vec<Value>, base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id, "name": name, "description": name, "attributes": attributes,
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")}
    })
}

/// The three schemas this server supports.
pub fn schemas(base: &str) -> Vec<Value> {
    vec![
        schema_doc(USER_SCHEMA, "User", user_attributes(), base),
        schema_doc(GROUP_SCHEMA, "Group", group_attributes(), base),
        schema_doc(
            ENTERPRISE_SCHEMA,
            "EnterpriseUser",
            enterprise_attributes(),
            base,
        ),
    ]
}

/// The User and Group resource types.
pub fn resource_types(base: &str) -> Vec<Value> {
    let rt = |id: &str, endpoint: &str, schema: &str, ext: Option<&str>| {
        let mut doc = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": id, "name": id, "endpoint": endpoint, "description": id, "schema": schema,
            "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{id}")}
        });
        if let Some(ext) = ext {
            doc["schemaExtensions"] = json!([{"schema": ext, "required": false}]);
        }
        doc
    };
    vec![
        rt("User", "/Users", USER_SCHEMA, Some(ENTERPRISE_SCHEMA)),
        rt("Group", "/Groups", GROUP_SCHEMA, None),
    ]
}

/// What this server supports, as clients discover it.
pub fn service_provider_config(base: &str, max_results: usize, max_body: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/TykTechnologies/tyk-idsync",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": max_body},
        "filter": {"supported": true, "maxResults": max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken", "name": "OAuth Bearer Token", "primary": true,
            "description": "A bearer token issued by tyk-idsync for one identity source"
        }],
        "meta": {"resourceType": "ServiceProviderConfig",
                 "location": format!("{base}/ServiceProviderConfig")}
    })
}

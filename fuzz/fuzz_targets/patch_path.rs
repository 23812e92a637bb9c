//! PATCH requests as clients send them: a PatchOp body (when the input is
//! a JSON object) or a bare path tried with add, replace and remove.
//! Parsing and application to a user never panic or overflow the stack,
//! and the patched resource is still a JSON object that round-trips.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use tyk_idsync::scim::patch::{self, OpKind, PatchOp};

fn user() -> Map<String, Value> {
    let user = json!({
        "userName": "ada@example.org",
        "active": true,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [
            {"type": "work", "value": "ada@example.org", "primary": true},
            {"type": "home", "value": "ada@home.net"}
        ],
        "members": [{"value": "1"}, {"value": "2"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"}
    });
    match user {
        Value::Object(map) => map,
        _ => unreachable!("a literal object"),
    }
}

fn check(resource: &Map<String, Value>) {
    let text = serde_json::to_string(resource).expect("serialises");
    let back: Value = serde_json::from_str(&text).expect("round-trips");
    assert!(back.is_object());
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(data) {
        if let Ok(ops) = patch::parse_ops(&body) {
            let mut resource = user();
            if patch::apply(&mut resource, &ops).is_ok() {
                check(&resource);
            }
        }
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = patch::parse_path(text) else {
        return;
    };
    let values = [
        None,
        Some(json!("x")),
        Some(json!({"value": "n@x.org", "type": "work"})),
        Some(json!([{"value": "3"}, {"value": "1"}])),
    ];
    for kind in [OpKind::Add, OpKind::Replace, OpKind::Remove] {
        for value in &values {
            let op = PatchOp {
                kind,
                path: Some(path.clone()),
                value: value.clone(),
            };
            let mut resource = user();
            if patch::apply(&mut resource, &[op]).is_ok() {
                check(&resource);
            }
        }
    }
});

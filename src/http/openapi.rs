//! The OpenAPI 3.1 document, generated from the same `OpenApiRouter` that
//! builds the routes (utoipa-axum), so the two cannot drift apart.

use utoipa::openapi::path::{HttpMethod, OperationBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, Response};

/// Security scheme names used in `#[utoipa::path(security(...))]`.
pub const ADMIN_TOKEN: &str = "adminToken";
pub const SCIM_TOKEN: &str = "scimToken";

/// The document's header and security schemes; paths are added by the
/// routers.
pub fn base() -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("tyk-idsync")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Admin API and SCIM 2.0 service provider of tyk-idsync, which keeps Tyk \
                     Dashboard users and user groups in step with an identity provider.",
                ))
                .build(),
        )
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        ADMIN_TOKEN,
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    components.add_security_scheme(
        SCIM_TOKEN,
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    doc
}

/// (method, path, summary, tag, security scheme) of the routes that come
/// as plain axum routers (SCIM, mappings, sync). Kept beside the code that
/// mounts them (`wiring::plain_routes`); a test checks each one answers.
const SCIM_ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/scim/v2/Users", "List or filter users"),
    ("post", "/scim/v2/Users", "Create a user"),
    ("post", "/scim/v2/Users/.search", "Search users"),
    ("get", "/scim/v2/Users/{id}", "Get a user"),
    ("put", "/scim/v2/Users/{id}", "Replace a user"),
    ("patch", "/scim/v2/Users/{id}", "Modify a user"),
    ("delete", "/scim/v2/Users/{id}", "Delete a user"),
    ("get", "/scim/v2/Groups", "List or filter groups"),
    ("post", "/scim/v2/Groups", "Create a group"),
    ("post", "/scim/v2/Groups/.search", "Search groups"),
    ("get", "/scim/v2/Groups/{id}", "Get a group"),
    ("put", "/scim/v2/Groups/{id}", "Replace a group"),
    ("patch", "/scim/v2/Groups/{id}", "Modify a group (members)"),
    ("delete", "/scim/v2/Groups/{id}", "Delete a group"),
    ("post", "/scim/v2/.search", "Search all resource types"),
    (
        "get",
        "/scim/v2/ServiceProviderConfig",
        "Service provider configuration",
    ),
    ("get", "/scim/v2/ResourceTypes", "Resource types"),
    ("get", "/scim/v2/ResourceTypes/{id}", "One resource type"),
    ("get", "/scim/v2/Schemas", "Schemas"),
    ("get", "/scim/v2/Schemas/{id}", "One schema"),
];

const MAPPING_ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/admin/v1/mappings", "List mapping rules"),
    ("post", "/admin/v1/mappings", "Create a mapping rule"),
    ("get", "/admin/v1/mappings/{id}", "Get a mapping rule"),
    ("put", "/admin/v1/mappings/{id}", "Replace a mapping rule"),
    ("delete", "/admin/v1/mappings/{id}", "Delete a mapping rule"),
    (
        "get",
        "/admin/v1/explain/{email}",
        "Explain a person's Tyk user",
    ),
];

const SYNC_ROUTES: &[(&str, &str, &str)] = &[
    (
        "get",
        "/admin/v1/sync/plan",
        "The plan a full reconcile would apply",
    ),
    ("post", "/admin/v1/sync/run", "Run a full reconcile now"),
    ("get", "/admin/v1/sync/runs", "List sync runs"),
    (
        "post",
        "/admin/v1/sync/runs/{id}/approve",
        "Approve a held run",
    ),
    (
        "post",
        "/admin/v1/sync/runs/{id}/reject",
        "Reject a held run (body {\"reason\"}, required): nothing of it is applied",
    ),
    ("get", "/admin/v1/sync/audit", "The audit log"),
    (
        "get",
        "/admin/v1/sync/failures",
        "People the sync quarantined (Tyk refused them) or skips (no or an invalid e-mail)",
    ),
    (
        "post",
        "/admin/v1/sync/failures/{email}/retry",
        "Lift a person's quarantine: they are tried again at once",
    ),
];

const LDAP_ROUTES: &[(&str, &str, &str)] = &[
    (
        "get",
        "/admin/v1/ldap/sources",
        "LDAP sources and their last poll",
    ),
    (
        "post",
        "/admin/v1/ldap/sources/{source}/poll",
        "Poll an LDAP source now (body: {full, force})",
    ),
];

const TIB_ROUTES: &[(&str, &str, &str)] = &[(
    "get",
    "/admin/v1/tib/profiles",
    "TIB profiles as they would be pushed, and the last push",
)];

/// Every plain route's (method, path), for tests.
pub fn plain_route_list(with_scim: bool, with_sync: bool) -> Vec<(&'static str, &'static str)> {
    let mut all: Vec<_> = MAPPING_ROUTES.iter().map(|(m, p, _)| (*m, *p)).collect();
    all.extend(LDAP_ROUTES.iter().map(|(m, p, _)| (*m, *p)));
    all.extend(TIB_ROUTES.iter().map(|(m, p, _)| (*m, *p)));
    if with_scim {
        all.extend(SCIM_ROUTES.iter().map(|(m, p, _)| (*m, *p)));
    }
    if with_sync {
        all.extend(SYNC_ROUTES.iter().map(|(m, p, _)| (*m, *p)));
    }
    all
}

fn method(name: &str) -> HttpMethod {
    match name {
        "post" => HttpMethod::Post,
        "put" => HttpMethod::Put,
        "patch" => HttpMethod::Patch,
        "delete" => HttpMethod::Delete,
        _ => HttpMethod::Get,
    }
}

fn add(doc: &mut OpenApi, routes: &[(&str, &str, &str)], tag: &str, scheme: &str) {
    for (m, path, summary) in routes {
        let operation = OperationBuilder::new()
            .summary(Some(*summary))
            .tag(tag)
            .security(SecurityRequirement::new(scheme, Vec::<String>::new()))
            .response("200", Response::new("Success"))
            .response("401", Response::new("Missing or wrong bearer token"))
            .build();
        doc.paths
            .add_path_operation(path, vec![method(m)], operation);
    }
}

/// Documents the plain routes the router mounts.
pub fn add_plain_routes(doc: &mut OpenApi, with_scim: bool, with_sync: bool) {
    if with_scim {
        add(doc, SCIM_ROUTES, "scim", SCIM_TOKEN);
    }
    add(doc, MAPPING_ROUTES, "mappings", ADMIN_TOKEN);
    add(doc, LDAP_ROUTES, "ldap", ADMIN_TOKEN);
    add(doc, TIB_ROUTES, "tib", ADMIN_TOKEN);
    if with_sync {
        add(doc, SYNC_ROUTES, "sync", ADMIN_TOKEN);
    }
}

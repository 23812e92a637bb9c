//! The OpenAPI 3.1 document, generated from the same `OpenApiRouter` that
//! builds the routes (utoipa-axum), so the two cannot drift apart.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};

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

//! The admin API under `/admin/v1`, protected by its own bearer token
//! (separate from the SCIM tokens). Each boundary contributes its routes;
//! this module owns the authentication in front of all of them.

mod auth;
mod config;
pub mod status;
mod tokens;

use std::sync::Arc;

use crate::http::ApiRouter;

pub use auth::{AdminAuth, require_admin_token};
pub use config::AdminConfig;
pub use status::{StatusResponse, collect as collect_status};

/// Every `/admin/v1` route, behind the admin-token middleware. `routes`
/// are the other boundaries' admin routes, relative to `/admin/v1`.
pub fn router(auth: AdminAuth, routes: ApiRouter) -> ApiRouter {
    ApiRouter::new()
        .nest(
            "/admin/v1",
            routes.merge(status::router()).merge(tokens::router()),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(auth),
            require_admin_token,
        ))
}

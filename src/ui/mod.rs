//! The operator console under `/ui/`: server-rendered HTML (maud) over the
//! same services the admin API calls, with server-side sessions
//! ([`session`]), CSRF tokens on every state-changing form, and its one
//! stylesheet embedded in the binary (no CDN, no frontend build). Reading
//! needs no JavaScript.

mod audit;
mod error;
mod failures;
mod layout;
mod ldap;
mod login;
mod mappings;
mod people;
mod preview;
mod runs;
pub mod session;
mod status;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::admin::AdminAuth;
use crate::http::SharedState;

/// Login attempts a client may make per minute (wrong or right).
pub const LOGIN_ATTEMPTS_PER_MINUTE: u32 = 5;

/// What every console handler sees.
#[derive(Clone)]
pub struct UiState {
    pub app: SharedState,
    auth: AdminAuth,
    /// For the status page's reachability check.
    tyk: Option<crate::tyk::TykClient>,
    login_attempts: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    ldap: crate::ldap::schedule::LdapPollers,
    /// Wakes the TIB re-render after a rule change (with a `[tib]` section).
    tib_wakeup: Option<Arc<tokio::sync::Notify>>,
}

impl UiState {
    /// After a mapping rule changed: the sync worker and the TIB re-render
    /// run now, as after the admin mapping API's writes.
    fn rules_changed(&self) {
        self.app.sync_wakeup.notify_one();
        if let Some(tib) = &self.tib_wakeup {
            tib.notify_one();
        }
    }
}

/// The console's routes, full paths under `/ui`.
pub fn router(
    app: SharedState,
    auth: AdminAuth,
    ldap: crate::ldap::schedule::LdapPollers,
    tib_wakeup: Option<Arc<tokio::sync::Notify>>,
) -> Router {
    let per_minute = NonZeroU32::new(LOGIN_ATTEMPTS_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
    let tyk = app
        .config
        .tyk
        .as_ref()
        .and_then(|c| crate::tyk::TykClient::new(c).ok());
    let state = UiState {
        app,
        auth,
        tyk,
        login_attempts: Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))),
        ldap,
        tib_wakeup,
    };
    Router::new()
        .route(
            "/ui",
            get(|| async { axum::response::Redirect::to("/ui/") }),
        )
        .route("/ui/", get(status::page))
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .route("/ui/people", get(people::search))
        .route("/ui/people/{email}", get(people::detail))
        .route("/ui/people/{email}/sync", post(people::sync_now))
        .route(
            "/ui/people/{email}/retry",
            post(failures::retry_from_person),
        )
        .route("/ui/failures", get(failures::list))
        .route("/ui/failures/retry", post(failures::retry_all))
        .route(
            "/ui/failures/{email}/retry",
            post(failures::retry_from_failures),
        )
        .route("/ui/runs", get(runs::list))
        .route("/ui/runs/{id}", get(runs::detail))
        .route("/ui/runs/{id}/approve", post(runs::approve))
        .route("/ui/runs/{id}/reject", post(runs::reject))
        .route("/ui/mappings", get(mappings::list))
        .route("/ui/mappings/new", get(mappings::new_rule))
        .route("/ui/mappings/save", post(mappings::save))
        .route("/ui/mappings/{id}/edit", get(mappings::edit))
        .route("/ui/mappings/{id}/delete", post(mappings::delete))
        .route("/ui/audit", get(audit::search))
        .route("/ui/ldap", get(ldap::list))
        .route("/ui/ldap/{source}/poll", post(ldap::poll))
        .route("/ui/assets/console.css", get(stylesheet))
        .with_state(state)
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/console.css"),
    )
}

//! `GET/POST /ui/login` and `POST /ui/logout`. The form posts the admin
//! token (field `token`) and a CSRF token matched against a short-lived
//! cookie; the token is checked by the admin API's own constant-time
//! check. Attempts are rate-limited per client address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Extension;
use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::UiState;
use super::error::UiError;
use super::layout::{self, csrf_field};
use super::session::{
    self, LOGIN_COOKIE, Operator, SESSION_COOKIE, SESSION_TTL, cookie, random_token, set_cookie,
    tokens_match,
};

/// How long a login form stays valid.
const LOGIN_FORM_TTL: Duration = Duration::from_secs(3600);

fn login_page(csrf: &str, error: Option<&str>) -> layout::Page {
    layout::bare(
        "Log in",
        html! {
            h1 { "tyk-idsync console" }
            p { "Log in with the service's admin token (" code { "admin.token" } ")." }
            @if let Some(error) = error {
                p class="error" role="alert" id="login-error" { (error) }
            }
            form method="post" action="/ui/login" {
                (csrf_field(csrf))
                label for="token" { "Admin token" }
                input type="password" id="token" name="token" autocomplete="current-password"
                    required autofocus aria-describedby=[error.map(|_| "login-error")];
                label for="name" { "Your name (optional; the audit log records it with what you do)" }
                input type="text" id="name" name="name" autocomplete="name" maxlength="64";
                p { button type="submit" { "Log in" } }
            }
        },
    )
}

/// The form with a fresh CSRF cookie.
fn fresh_form(headers: &HeaderMap, status: StatusCode, error: Option<&str>) -> Response {
    let csrf = random_token();
    let cookie = set_cookie(headers, LOGIN_COOKIE, &csrf, LOGIN_FORM_TTL);
    (
        status,
        [(header::SET_COOKIE, cookie)],
        login_page(&csrf, error),
    )
        .into_response()
}

pub async fn form(headers: HeaderMap) -> Response {
    fresh_form(&headers, StatusCode::OK, None)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

fn client_address(connection: Option<Extension<ConnectInfo<SocketAddr>>>) -> IpAddr {
    connection.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.0.ip())
}

pub async fn submit(
    State(state): State<UiState>,
    connection: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Form(login): Form<LoginForm>,
) -> Result<Response, UiError> {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !tokens_match(expected, &login.csrf) {
        return Err(UiError::Csrf);
    }
    state.login_attempts.retain_recent();
    if state
        .login_attempts
        .check_key(&client_address(connection))
        .is_err()
    {
        tracing::warn!("console login attempts over the limit");
        let error = "Too many login attempts from your address; wait a minute and try again.";
        return Ok(fresh_form(
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            Some(error),
        ));
    }
    if !state.auth.accepts(login.token.trim()) {
        tracing::info!("console login with a wrong admin token");
        let error = "That is not the admin token.";
        return Ok(fresh_form(&headers, StatusCode::UNAUTHORIZED, Some(error)));
    }
    let name = session::clean_name(&login.name);
    let id = session::open(&state, name.as_deref()).await?;
    let cookies = [
        set_cookie(&headers, SESSION_COOKIE, &id, SESSION_TTL),
        set_cookie(&headers, LOGIN_COOKIE, "", Duration::ZERO),
    ];
    let mut response = Redirect::to("/ui/").into_response();
    for value in cookies {
        if let Ok(value) = value.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn logout(
    State(state): State<UiState>,
    operator: Operator,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    operator.check_csrf(&form.csrf)?;
    session::close(&state, operator.session_id()).await?;
    let cookie = set_cookie(&headers, SESSION_COOKIE, "", Duration::ZERO);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/ui/login")).into_response())
}

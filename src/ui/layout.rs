//! The page shell every console page shares: head, navigation, the
//! logout form, and the embedded stylesheet's address.

use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

/// A rendered page (implements `IntoResponse`).
pub struct Page(pub Markup);

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = Html(self.0.into_string()).into_response();
        // Pages show personal data: never cached, never framed.
        let headers = response.headers_mut();
        headers.insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
        headers.insert(
            "x-frame-options",
            axum::http::HeaderValue::from_static("DENY"),
        );
        headers.insert(
            "content-security-policy",
            axum::http::HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                 frame-ancestors 'none'; base-uri 'none'",
            ),
        );
        response
    }
}

/// The navigation entries: path and label.
const NAV: [(&str, &str); 7] = [
    ("/ui/", "Status"),
    ("/ui/people", "People"),
    ("/ui/failures", "Failures"),
    ("/ui/runs", "Runs"),
    ("/ui/mappings", "Mappings"),
    ("/ui/audit", "Audit"),
    ("/ui/ldap", "LDAP sources"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · tyk-idsync" }
            link rel="stylesheet" href="/ui/assets/console.css";
        }
    }
}

/// A page with the navigation (the logged-in pages). `current` is the
/// navigation path the page belongs to.
pub fn page(title: &str, current: &str, csrf: &str, body: Markup) -> Page {
    Page(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    p class="brand" { "tyk-idsync console" }
                    nav aria-label="Main" {
                        ul {
                            @for (path, label) in NAV {
                                li {
                                    @if path == current {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    form method="post" action="/ui/logout" class="logout" {
                        (csrf_field(csrf))
                        button type="submit" { "Log out" }
                    }
                }
                main id="main" { (body) }
            }
        }
    })
}

/// A page without navigation (login, errors).
pub fn bare(title: &str, body: Markup) -> Page {
    Page(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body class="bare" { main id="main" { (body) } }
        }
    })
}

/// The hidden CSRF field every state-changing form carries.
pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// An RFC 3339 timestamp, or a dash.
pub fn when(at: Option<&str>) -> Markup {
    match at {
        Some(at) => html! { time datetime=(at) { (at) } },
        None => html! { "—" },
    }
}

/// A status badge: `ok` true → "OK", else the text given, marked as a problem.
pub fn badge(ok: bool, problem: &str) -> Markup {
    if ok {
        html! { span class="badge ok" { "OK" } }
    } else {
        html! { span class="badge bad" { (problem) } }
    }
}

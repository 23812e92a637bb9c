//! The operator console over the real app on a random port: login and its
//! refusals, the session cookie, CSRF, and each page's HTML.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use crate::both_backends;
use crate::support::Db;
use crate::support::app::{ADMIN_TOKEN, spawn_app};
use crate::support::stack::{Stack, spawn_stack_configured};

/// A browser-like client: no automatic redirects, cookies kept by hand.
pub struct Console {
    base: String,
    client: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

/// The value of `name="csrf"` in a page's first form.
pub fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    html[at..]
        .split('"')
        .next()
        .expect("csrf value")
        .to_string()
}

impl Console {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_string(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: BTreeMap::new(),
        }
    }

    fn keep_cookies(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(SET_COOKIE) {
            let text = value.to_str().expect("cookie text");
            let pair = text.split(';').next().expect("pair");
            let (name, value) = pair.split_once('=').expect("name=value");
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn get(&mut self, path: &str) -> (StatusCode, String, reqwest::header::HeaderMap) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .expect("GET");
        self.keep_cookies(&response);
        let (status, headers) = (response.status(), response.headers().clone());
        (status, response.text().await.expect("body"), headers)
    }

    pub async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String, reqwest::header::HeaderMap) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .expect("POST");
        self.keep_cookies(&response);
        let (status, headers) = (response.status(), response.headers().clone());
        (status, response.text().await.expect("body"), headers)
    }

    /// Logs in with `token`; the answer to the form's POST.
    pub async fn login_with(
        &mut self,
        token: &str,
    ) -> (StatusCode, String, reqwest::header::HeaderMap) {
        self.login_named(token, "").await
    }

    /// Logs in with `token`, giving `name` for the audit log.
    pub async fn login_named(
        &mut self,
        token: &str,
        name: &str,
    ) -> (StatusCode, String, reqwest::header::HeaderMap) {
        let (status, form, _) = self.get("/ui/login").await;
        assert_eq!(status, StatusCode::OK, "{form}");
        let csrf = csrf_in(&form);
        self.post(
            "/ui/login",
            &[("token", token), ("csrf", &csrf), ("name", name)],
        )
        .await
    }

    pub async fn login(&mut self) {
        let (status, body, headers) = self.login_with(ADMIN_TOKEN).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
        assert_eq!(headers[LOCATION], "/ui/");
    }

    /// A page that must answer 200; its HTML.
    pub async fn page(&mut self, path: &str) -> String {
        let (status, body, _) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }
}

#[tokio::test]
async fn the_console_without_a_session_redirects_to_the_login_form() {
    let app = spawn_app(Db::Sqlite).await;
    let mut console = Console::new(&app.address);
    for path in [
        "/ui/",
        "/ui/people?q=a",
        "/ui/runs",
        "/ui/people/a@example.org",
        "/ui/failures",
    ] {
        let (status, _, headers) = console.get(path).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(headers[LOCATION], "/ui/login", "{path}");
    }
    let form = console.page("/ui/login").await;
    assert!(
        form.contains("<form method=\"post\" action=\"/ui/login\">"),
        "{form}"
    );
    assert!(form.contains("name=\"token\""), "{form}");
    assert!(form.contains("<label for=\"token\">"), "{form}");
}

async fn logging_in_sets_a_strict_http_only_session_that_logout_ends(db: Db) {
    let app = spawn_app(db).await;
    let mut console = Console::new(&app.address);
    let (status, _, headers) = console.login_with(ADMIN_TOKEN).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let session = headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("text").to_string())
        .find(|c| c.starts_with("tyk_idsync_session="))
        .expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: {session}");
    let id = session["tyk_idsync_session=".len()..]
        .split(';')
        .next()
        .expect("id")
        .to_string();
    // The store keeps the hash only.
    let stored: Vec<String> = sqlx::query_scalar("SELECT id_hash FROM ui_sessions")
        .fetch_all(app.state.store.pool())
        .await
        .expect("sessions");
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], id);
    assert_eq!(stored[0], tyk_idsync::ui::session::id_hash(&id));

    let status_page = console.page("/ui/").await;
    assert!(status_page.contains("<h1>Status</h1>"), "{status_page}");
    let csrf = csrf_in(&status_page);
    let (status, _, headers) = console.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/ui/login");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ui_sessions")
        .fetch_one(app.state.store.pool())
        .await
        .expect("count");
    assert_eq!(left, 0);
    // The old cookie no longer opens a page.
    let mut replay = Console::new(&app.address);
    replay.cookies.insert("tyk_idsync_session".into(), id);
    let (status, _, _) = replay.get("/ui/").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}
both_backends!(
    ui_login_session,
    logging_in_sets_a_strict_http_only_session_that_logout_ends
);

#[tokio::test]
async fn the_login_page_snapshot() {
    let app = spawn_app(Db::Sqlite).await;
    let mut console = Console::new(&app.address);
    let form = console.page("/ui/login").await;
    let csrf = csrf_in(&form);
    insta::assert_snapshot!(form.replace(&csrf, "[csrf]").replace("><", ">\n<"));
}

#[tokio::test]
async fn a_session_past_its_expiry_is_refused() {
    let app = spawn_app(Db::Sqlite).await;
    let mut console = Console::new(&app.address);
    console.login().await;
    sqlx::query("UPDATE ui_sessions SET expires_at = 1")
        .execute(app.state.store.pool())
        .await
        .expect("expire");
    let (status, _, headers) = console.get("/ui/").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/ui/login");
}

#[tokio::test]
async fn the_session_cookie_is_secure_behind_a_tls_proxy() {
    let app = spawn_app(Db::Sqlite).await;
    let mut console = Console::new(&app.address);
    let (_, form, _) = console.get("/ui/login").await;
    let csrf = csrf_in(&form);
    let response = console
        .client
        .post(app.url("/ui/login"))
        .header(COOKIE, console.cookie_header())
        .header("x-forwarded-proto", "https")
        .form(&[("token", ADMIN_TOKEN), ("csrf", csrf.as_str())])
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()[SET_COOKIE].to_str().expect("text");
    assert!(cookie.ends_with("; Secure"), "{cookie}");
}

#[tokio::test]
async fn a_wrong_token_shows_the_form_again_with_an_error_and_is_rate_limited() {
    let app = spawn_app(Db::Sqlite).await;
    let mut console = Console::new(&app.address);
    let limit = tyk_idsync::ui::LOGIN_ATTEMPTS_PER_MINUTE;
    for _ in 0..limit {
        let (status, body, _) = console.login_with("not-the-admin-token").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body.contains("role=\"alert\""), "{body}");
        assert!(body.contains("That is not the admin token."), "{body}");
        assert!(body.contains("name=\"token\""), "the form again: {body}");
    }
    // Over the limit, even the right token waits.
    let (status, body, _) = console.login_with(ADMIN_TOKEN).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body.contains("Too many login attempts"), "{body}");
    let (status, _, _) = console.get("/ui/").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "no session was opened");
}

#[tokio::test]
async fn forms_without_the_right_csrf_token_are_refused_with_403() {
    let app = spawn_app(Db::Sqlite).await;
    let mut console = Console::new(&app.address);
    // Login without the form's token (a cross-site post).
    let (status, body, _) = console.post("/ui/login", &[("token", ADMIN_TOKEN)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("Request refused"), "{body}");
    console.login().await;
    // Logout with a wrong and with no token: refused, the session lives.
    for form in [vec![("csrf", "0".repeat(64))], vec![]] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body, _) = console.post("/ui/logout", &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("nothing was changed"), "{body}");
    }
    console.page("/ui/").await;
    let (status, body, _) = console
        .post("/ui/people/a@example.org/sync", &[("csrf", "x")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn the_stylesheet_is_served_from_the_binary() {
    let app = spawn_app(Db::Sqlite).await;
    let mut console = Console::new(&app.address);
    let (status, css, headers) = console.get("/ui/assets/console.css").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/css")
    );
    assert!(css.contains("tyk-idsync operator console"), "{css}");
}

/// A stack whose guard holds any run removing more than one person.
pub async fn guarded_stack(db: Db) -> Stack {
    spawn_stack_configured(db, |c| {
        c.sync.guard = tyk_idsync::sync::GuardConfig {
            min_count: 1,
            max_percent: 10,
            ..Default::default()
        };
        // Read Tyk, even right after our own writes: tests change it by hand.
        c.sync.trust_own_writes = Duration::ZERO;
    })
    .await
}

/// Four people in Developers → API Developers; their SCIM ids and the group's.
pub async fn four_developers(stack: &Stack) -> (Vec<String>, String) {
    stack
        .add_rule("API Developers", 10, &["okta:Developers"])
        .await;
    let mut ids = Vec::new();
    for name in ["ada", "grace", "edsger", "barbara"] {
        ids.push(
            stack
                .create_user(name, &format!("{name}@example.org"))
                .await,
        );
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let group = stack.create_group("Developers", &refs).await;
    stack
        .until("all four are in API Developers", |s| {
            ["ada", "grace", "edsger", "barbara"]
                .iter()
                .all(|n| s.in_group(&format!("{n}@example.org"), "API Developers"))
        })
        .await;
    stack.until_outbox_empty(Duration::from_secs(10)).await;
    (ids, group)
}

async fn the_status_page_reports_sources_and_tyk_and_turns_on_a_held_run(db: Db) {
    let stack = guarded_stack(db).await;
    let (ids, group) = four_developers(&stack).await;
    let mut console = Console::new(&stack.app.address);
    console.login().await;
    let page = console.page("/ui/").await;
    assert!(page.contains("<strong>OK</strong>"), "{page}");
    assert!(page.contains("reachable"), "{page}");
    assert!(page.contains("<th scope=\"row\">okta</th>"), "{page}");

    stack.patch_members(&group, &[], &[&ids[0], &ids[1]]).await;
    stack.until_outbox_empty(Duration::from_secs(10)).await;
    let page = console.page("/ui/").await;
    assert!(
        !page.contains("<strong>OK</strong>"),
        "never OK while a run is held: {page}"
    );
    assert!(page.contains("Attention needed"), "{page}");
    assert!(page.contains("held by the mass-change guard"), "{page}");

    // Tyk down: said so, not OK.
    let mut standin = stack.standin;
    standin.stop();
    let page = console.page("/ui/").await;
    assert!(page.contains("Tyk is not reachable"), "{page}");
}
both_backends!(
    ui_status_page,
    the_status_page_reports_sources_and_tyk_and_turns_on_a_held_run
);

async fn people_search_explain_and_sync_now(db: Db) {
    let stack = guarded_stack(db).await;
    four_developers(&stack).await;
    let mut console = Console::new(&stack.app.address);
    console.login().await;
    let page = console.page("/ui/people?q=GRACE").await;
    assert!(
        page.contains("href=\"/ui/people/grace%40example.org\""),
        "{page}"
    );
    assert!(!page.contains("ada@example.org"), "{page}");
    let page = console.page("/ui/people?q=100%25_").await;
    assert!(page.contains("Nobody matches."), "{page}");

    let page = console.page("/ui/people/grace%40example.org").await;
    assert!(page.contains("<h1>grace@example.org</h1>"), "{page}");
    assert!(page.contains("API Developers"), "{page}");
    assert!(page.contains("<strong>wins</strong>"), "{page}");
    assert!(page.contains("create_user"), "recent audit: {page}");

    // Someone changed Grace by hand in Tyk: sync now puts her back.
    let grace = stack.tyk_user("grace@example.org").expect("grace");
    stack.standin.with_directory(|d| {
        if let Some(user) = d.user_mut(&grace.id) {
            user.active = false;
        }
    });
    let csrf = csrf_in(&page);
    let (status, page, _) = console
        .post("/ui/people/grace%40example.org/sync", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("<h1>Synced grace@example.org</h1>"), "{page}");
    assert!(
        page.contains("reactivate"),
        "the step and its result: {page}"
    );
    assert!(stack.tyk_user("grace@example.org").expect("grace").active);

    // Tyk down: a clear page, never a 500 — 502 when this request's run
    // met the outage, or "still waiting" when the worker's own loop took
    // the event first and released it for a retry.
    let mut standin = stack.standin;
    standin.stop();
    let (status, page, _) = console
        .post("/ui/people/grace%40example.org/sync", &[("csrf", &csrf)])
        .await;
    match status {
        StatusCode::BAD_GATEWAY => assert!(page.contains("Tyk did not answer"), "{page}"),
        StatusCode::OK => assert!(page.contains("still waiting in the outbox"), "{page}"),
        other => panic!("{other}: {page}"),
    }
}
both_backends!(ui_people, people_search_explain_and_sync_now);

async fn a_held_run_is_shown_by_kind_and_approved_with_a_reason(db: Db) {
    let stack = guarded_stack(db).await;
    let (ids, group) = four_developers(&stack).await;
    stack.patch_members(&group, &[], &[&ids[0], &ids[1]]).await;
    stack.until_outbox_empty(Duration::from_secs(10)).await;
    let mut console = Console::new(&stack.app.address);
    let (status, _, _) = console.login_named(ADMIN_TOKEN, " Dana Scully\u{7} ").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let runs = console.page("/ui/runs").await;
    let at = runs.find("href=\"/ui/runs/").expect("a held run link") + 6;
    let href = runs[at..].split('"').next().expect("href").to_string();
    assert!(runs.contains("Held "), "{runs}");
    let run = console.page(&href).await;
    assert!(run.contains("<h3>deactivate (2)</h3>"), "{run}");
    assert!(run.contains("ada@example.org"), "{run}");
    let csrf = csrf_in(&run);
    // No reason: refused, nothing applied.
    let (status, _, _) = console
        .post(
            &format!("{href}/approve"),
            &[("csrf", &csrf), ("reason", " ")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(stack.tyk_user("ada@example.org").expect("ada").active);
    let (status, body, _) = console
        .post(
            &format!("{href}/approve"),
            &[("csrf", &csrf), ("reason", "Ada and Grace left")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert!(!stack.tyk_user("ada@example.org").expect("ada").active);
    let run = console.page(&href).await;
    assert!(run.contains("Ada and Grace left"), "who and why: {run}");
    let (_, audit) = stack
        .admin_request(
            reqwest::Method::GET,
            "/admin/v1/sync/audit?email=ada@example.org",
        )
        .await;
    let actor = audit["entries"][0]["actor"].as_str().expect("actor");
    assert!(actor.starts_with("ui:Dana Scully ["), "who: {audit}");
    assert!(actor.ends_with("]: Ada and Grace left"), "why: {audit}");
}
both_backends!(
    ui_runs_approve,
    a_held_run_is_shown_by_kind_and_approved_with_a_reason
);

async fn a_held_run_is_rejected_with_a_reason_and_nothing_is_applied(db: Db) {
    let stack = guarded_stack(db).await;
    let (ids, group) = four_developers(&stack).await;
    stack.patch_members(&group, &[], &[&ids[0], &ids[1]]).await;
    stack.until_outbox_empty(Duration::from_secs(10)).await;
    let mut console = Console::new(&stack.app.address);
    console.login().await;
    let runs = console.page("/ui/runs").await;
    let at = runs.find("href=\"/ui/runs/").expect("a held run link") + 6;
    let href = runs[at..].split('"').next().expect("href").to_string();
    let run = console.page(&href).await;
    assert!(run.contains("<h2>Reject</h2>"), "{run}");
    let metrics = stack.app.metrics_text().await;
    assert!(
        metrics.contains("tyk_idsync_sync_held_would_remove 2"),
        "the held run's removals: {metrics}"
    );
    let csrf = csrf_in(&run);
    let (status, _, _) = console
        .post(
            &format!("{href}/reject"),
            &[("csrf", "forged"), ("reason", "no")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body, _) = console
        .post(
            &format!("{href}/reject"),
            &[("csrf", &csrf), ("reason", "They are on leave, not gone")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let run = console.page(&href).await;
    assert!(run.contains("run rejected</h1>"), "{run}");
    assert!(run.contains("They are on leave, not gone"), "{run}");
    assert!(!run.contains("Approve and apply"), "{run}");
    assert!(
        stack.tyk_user("ada@example.org").expect("ada").active,
        "nothing applied"
    );
    // Decided once: neither a second rejection nor an approval.
    for action in ["reject", "approve"] {
        let (status, body, _) = console
            .post(
                &format!("{href}/{action}"),
                &[("csrf", &csrf), ("reason", "again")],
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{action}: {body}");
        assert!(body.contains("not held"), "{body}");
    }
    let metrics = stack.app.metrics_text().await;
    assert!(
        metrics.contains("tyk_idsync_sync_held_would_remove 0"),
        "nothing held after the rejection"
    );
    let (_, audit) = stack
        .admin_request(reqwest::Method::GET, "/admin/v1/sync/audit?step=reject_run")
        .await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["message"], "They are on leave, not gone", "{audit}");
    assert!(
        entry["actor"].as_str().expect("actor").starts_with("ui:"),
        "{audit}"
    );
}
both_backends!(
    ui_runs_reject,
    a_held_run_is_rejected_with_a_reason_and_nothing_is_applied
);

async fn sessions_are_found_until_they_expire(db: Db) {
    use tyk_idsync::domain::Timestamp;
    use tyk_idsync::store::ui_sessions;
    let (store, _guard) = crate::support::fresh_store(db).await;
    let mut conn = store.pool().acquire().await.expect("conn");
    ui_sessions::create(
        &mut conn,
        "live",
        Some("Dana"),
        Timestamp(1_000),
        Timestamp(5_000),
    )
    .await
    .expect("create");
    ui_sessions::create(&mut conn, "old", None, Timestamp(1_000), Timestamp(2_000))
        .await
        .expect("create");
    let live = ui_sessions::find_live(&mut conn, "live", Timestamp(3_000))
        .await
        .expect("find")
        .expect("live");
    assert_eq!(live.operator_name.as_deref(), Some("Dana"));
    for (hash, at) in [("old", 3_000), ("live", 5_000), ("unknown", 0)] {
        let found = ui_sessions::find_live(&mut conn, hash, Timestamp(at))
            .await
            .expect("find");
        assert_eq!(found, None, "{hash} at {at}");
    }
    assert_eq!(
        ui_sessions::delete_expired(&mut conn, Timestamp(3_000))
            .await
            .expect("expire"),
        1
    );
    ui_sessions::delete(&mut conn, "live")
        .await
        .expect("delete");
    ui_sessions::delete(&mut conn, "live")
        .await
        .expect("twice is fine");
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ui_sessions")
        .fetch_one(&mut *conn)
        .await
        .expect("count");
    assert_eq!(left, 0);
}
both_backends!(ui_session_store, sessions_are_found_until_they_expire);

#[tokio::test]
async fn hostile_paths_and_queries_get_clear_4xx_pages_never_a_500() {
    let app = spawn_app(Db::Sqlite).await;
    let mut console = Console::new(&app.address);
    console.login().await;
    let page = console
        .page("/ui/people/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .await;
    assert!(!page.contains("<script>"), "escaped: {page}");
    assert!(page.contains("&lt;script&gt;"), "{page}");
    let page = console.page("/ui/people?q=%25%27%22%3Cb%3E").await;
    assert!(!page.contains("<b>"), "{page}");
    for path in [
        "/ui/runs/not-a-uuid",
        "/ui/runs/00000000-0000-0000-0000-000000000000",
        "/ui/mappings/nope/edit",
        "/ui/audit?before_id=abc",
        "/ui/audit?run=x",
    ] {
        let (status, body, _) = console.get(path).await;
        assert!(status.is_client_error(), "{path}: {status} {body}");
    }
    let page = console.page("/ui/").await;
    let csrf = csrf_in(&page);
    // No Tyk configured: sync now and approve say so.
    let (status, body, _) = console
        .post("/ui/people/a%40example.org/sync", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("no Tyk Dashboard is configured"), "{body}");
    assert!(page.contains("not configured: no sync"), "{page}");
    // Failures without Tyk: listed from the store; retrying nobody is a 404.
    let failures = console.page("/ui/failures").await;
    assert!(
        failures.contains("Nobody is quarantined or skipped."),
        "{failures}"
    );
    let (status, body, _) = console
        .post("/ui/failures/%00%3Cb%3E/retry", &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(!body.contains("<b>"), "{body}");
    let (status, _, headers) = console.post("/ui/failures/retry", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[LOCATION], "/ui/failures");
    let page = console.page("/ui/audit?source=%25_%5C%27").await;
    assert!(page.contains("<h2>0 row(s)</h2>"), "{page}");
}

/// Sessions live in the store: a replica on the same database serves a
/// session another one opened, and a logout on one ends it on both.
#[tokio::test]
async fn a_session_opened_on_one_replica_is_served_by_another() {
    let (config, guard) = crate::support::app::test_config(Db::Postgres).await;
    let first = crate::support::app::spawn_app_with(config.clone(), guard).await;
    let second = crate::support::app::spawn_app_with(config, None).await;
    let mut on_first = Console::new(&first.address);
    on_first.login().await;
    let mut on_second = Console::new(&second.address);
    on_second.cookies = on_first.cookies.clone();
    let page = on_second.page("/ui/").await;
    assert!(page.contains("<h1>Status</h1>"), "{page}");
    let csrf = csrf_in(&page);
    let (status, _, _) = on_second.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = on_first.get("/ui/").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "logged out everywhere");
}

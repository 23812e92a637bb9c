//! The HTTP edge against slow, idle, greedy and oversized clients (issue
//! #16): a head that never ends and an idle connection are closed, the
//! connection cap holds further clients back, an oversized body is read
//! before its 413 so the client sees the answer, and token lifetimes are
//! bounded the same way in the admin API and the CLI.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tyk_idsync::scim::ScimSourceConfig;

use crate::support::Db;
use crate::support::app::{ADMIN_TOKEN, TestApp, spawn_app_with, test_config};

async fn app_with(tune: impl FnOnce(&mut tyk_idsync::config::Config)) -> TestApp {
    let (mut config, guard) = test_config(Db::Sqlite).await;
    config.scim.enabled = true;
    config
        .scim
        .sources
        .insert("a".into(), ScimSourceConfig::default());
    tune(&mut config);
    spawn_app_with(config, guard).await
}

fn host_port(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_string()
}

/// Reads until the peer closes (Ok(0)) or resets; the bytes read.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_head_that_never_ends_is_cut_off() {
    let app = app_with(|c| c.server.header_read_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(host_port(&app)).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    let started = Instant::now();
    let seen = read_until_closed(&mut stream, Duration::from_secs(15))
        .await
        .expect("the server must close a connection whose head never ends");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "closed only after {:?}",
        started.elapsed()
    );
    // Whatever it said (hyper may answer 408), it served nothing.
    assert!(!String::from_utf8_lossy(&seen).contains("200 OK"));
    // …and it still serves others.
    let ok = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("get");
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_connection_that_says_nothing_is_closed() {
    let app = app_with(|c| {
        c.server.header_read_timeout = Duration::from_secs(1);
        c.server.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut stream = TcpStream::connect(host_port(&app)).await.expect("connect");
    assert!(
        read_until_closed(&mut stream, Duration::from_secs(15))
            .await
            .is_some(),
        "a connection that never sends a byte must be closed"
    );
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let app = app_with(|c| {
        c.server.idle_timeout = Duration::from_secs(1);
        c.server.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let mut stream = TcpStream::connect(host_port(&app)).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    read_until_closed(&mut stream, Duration::from_secs(15))
        .await
        .expect("an idle keep-alive connection must be closed");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn clients_beyond_the_connection_cap_wait_for_a_free_slot() {
    let app = app_with(|c| c.server.max_connections = 2).await;
    let first = TcpStream::connect(host_port(&app)).await.expect("connect");
    let second = TcpStream::connect(host_port(&app)).await.expect("connect");
    // Let the server take both before the third arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = TcpStream::connect(host_port(&app)).await.expect("connect");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    assert!(
        tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection must not be served while two hold both slots"
    );
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(second);
}

async fn issue_token(app: &TestApp, expires: Value) -> reqwest::Response {
    app.client
        .post(app.url("/admin/v1/tokens"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"source": "a", "expires": expires}))
        .send()
        .await
        .expect("post")
}

/// Sends `body_len` bytes to `path` in full before reading, as a careless
/// client does; the status line it then reads.
async fn send_whole_body_then_read(
    app: &TestApp,
    path: &str,
    auth: &str,
    body_len: usize,
) -> String {
    let mut stream = TcpStream::connect(host_port(app)).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/scim+json\r\n{auth}Content-Length: {body_len}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent < body_len {
        let n = chunk.len().min(body_len - sent);
        stream
            .write_all(&chunk[..n])
            .await
            .expect("the server must read the whole body, not reset the connection");
        sent += n;
    }
    let seen = read_until_closed(&mut stream, Duration::from_secs(20))
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&seen).to_string();
    text.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_client_sending_a_body_over_the_limit_reads_the_413() {
    let app = app_with(|_| {}).await;
    let created: Value = issue_token(&app, json!("1d"))
        .await
        .json()
        .await
        .expect("json");
    let token = created["token"].as_str().expect("token").to_string();
    let auth = format!("Authorization: Bearer {token}\r\nConnection: close\r\n");
    let status = send_whole_body_then_read(&app, "/scim/v2/Users", &auth, 12 * 1024 * 1024).await;
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");
    // Answered before the body (no token): the client still reads the 401.
    let status = send_whole_body_then_read(
        &app,
        "/scim/v2/Users",
        "Connection: close\r\n",
        12 * 1024 * 1024,
    )
    .await;
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    // The admin API's JSON limit too.
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}\r\nConnection: close\r\n");
    let status = send_whole_body_then_read(&app, "/admin/v1/tokens", &auth, 12 * 1024 * 1024).await;
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");
    let ok = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("get");
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn token_lifetimes_are_bounded_and_listed_as_issued() {
    let app = app_with(|_| {}).await;
    for absurd in [
        json!(9_223_372_036_854_775_807u64),
        json!("1000000000d"),
        json!("3651d"),
        json!("0s"),
        json!(0),
    ] {
        let response = issue_token(&app, absurd.clone()).await;
        assert_eq!(response.status(), 400, "{absurd}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["field"], "expires", "{absurd}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("10 years"),
            "{body}"
        );
    }
    let response = issue_token(&app, json!("3650d")).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.expect("json");
    let expires = chrono::DateTime::parse_from_rfc3339(created["expires"].as_str().expect("s"))
        .expect("rfc3339");
    let days = (expires.timestamp() - chrono::Utc::now().timestamp()) / (24 * 3600);
    assert!((3649..=3650).contains(&days), "3650 days ahead: {expires}");
    let listed: Value = app
        .admin_get("/admin/v1/tokens")
        .await
        .json()
        .await
        .expect("json");
    let token = listed["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["id"] == created["id"])
        .expect("listed")
        .clone();
    assert_eq!(token["expires"], created["expires"]);
    assert_eq!(token["active"], true);
}

#[test]
fn the_cli_applies_the_same_lifetime_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (expires, says) in [
        ("0s", "too short"),
        ("3651d", "too long"),
        ("soon", "not a duration"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tyk-idsync"))
            .args(["token", "create", "--source", "a", "--expires", expires])
            .current_dir(dir.path())
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{expires}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(says) && stderr.contains("10 years"),
            "{stderr}"
        );
    }
}

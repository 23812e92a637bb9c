//! The console end to end in a real headless browser: Debian's chromium,
//! driven by playwright-core from tools/ui_e2e.mjs, against the real app
//! and the Tyk stand-in. The script logs in, reads the status, finds a
//! person, retries a quarantined one from the Failures page, previews a
//! mapping change, approves a held run and logs out; this test prepares
//! the quarantine and the held run and checks that the stand-in changed.
//! Screenshots land in `<target>/ui-screenshots` (or `UI_SCREENSHOTS`);
//! docs/screenshots holds the ones the README shows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::Db;
use crate::support::app::ADMIN_TOKEN;
use crate::support::install_hint;
use crate::ui::{four_developers, guarded_stack};

const CHROMIUM: &str = "/usr/bin/chromium";

fn screenshots_dir() -> PathBuf {
    match std::env::var_os("UI_SCREENSHOTS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
            .join("ui-screenshots"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_end_to_end_in_headless_chromium() {
    // A console not tested in a browser is not done: no skipping.
    assert!(
        Path::new(CHROMIUM).exists(),
        "{}",
        install_hint("chromium (/usr/bin/chromium)", "chromium")
    );
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools");
    assert!(
        tools
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "playwright-core not installed: run `npm ci --prefix tools` (scripts/test.sh does this)"
    );
    let stack = guarded_stack(Db::Sqlite).await;
    let (ids, group) = four_developers(&stack).await;
    // Tyk refuses one more developer: quarantined after one attempt.
    let refused = "refused@example.org";
    stack
        .standin
        .with_directory(|d| d.refused_emails.insert(refused.to_string()));
    let refused_id = stack.create_user("refused", refused).await;
    stack.patch_members(&group, &[&refused_id], &[]).await;
    stack.until_outbox_empty(Duration::from_secs(10)).await;
    let (_, status) = stack
        .admin_request(reqwest::Method::GET, "/admin/v1/status")
        .await;
    assert_eq!(status["failures"]["quarantined"], 1, "{status}");
    // Tyk would take them now; only the operator's Retry lets them through.
    stack
        .standin
        .with_directory(|d| d.refused_emails.remove(refused));
    // Two of four leave: the guard holds the run for approval.
    stack.patch_members(&group, &[], &[&ids[0], &ids[1]]).await;
    stack.until_outbox_empty(Duration::from_secs(10)).await;
    assert!(stack.tyk_user("ada@example.org").expect("ada").active);

    let shots = screenshots_dir();
    let output = tokio::process::Command::new("node")
        .arg(tools.join("ui_e2e.mjs"))
        .env("UI_URL", &stack.app.address)
        .env("UI_TOKEN", ADMIN_TOKEN)
        .env("UI_SCREENSHOTS", &shots)
        .env("UI_PERSON", "edsger@example.org")
        .env("UI_QUARANTINED", refused)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), output)
        .await
        .expect("the browser script finished within 5 minutes")
        .expect("node runs (install nodejs: scripts/test.sh does)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tools/ui_e2e.mjs failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("ok - logged out"), "{stdout}");

    // The approval reached Tyk: Ada and Grace are deactivated, the others not.
    for (email, active) in [
        ("ada@example.org", false),
        ("grace@example.org", false),
        ("edsger@example.org", true),
        ("barbara@example.org", true),
    ] {
        let user = stack.tyk_user(email).expect("user");
        assert_eq!(user.active, active, "{email}");
    }
    // The retried person reached Tyk.
    stack
        .until("the retried person is in Tyk", |s| {
            s.in_group(refused, "API Developers")
        })
        .await;
    // The audit log names who approved, and why.
    let (_, audit) = stack
        .admin_request(
            reqwest::Method::GET,
            "/admin/v1/sync/audit?email=ada@example.org&step=deactivate",
        )
        .await;
    let actor = audit["entries"][0]["actor"].as_str().unwrap_or_default();
    assert!(
        actor.starts_with("ui:Dana Scully [")
            && actor.ends_with("They left the Developers group on purpose"),
        "{audit}"
    );
    // The mapping preview saved nothing.
    let rules = tyk_idsync::mapping::service::list(&stack.app.state.store)
        .await
        .expect("rules");
    assert_eq!(
        rules[0].rule.mappings_sso,
        vec!["okta:Developers".to_string()]
    );
    for name in [
        "login",
        "status-attention",
        "failures",
        "person-quarantined",
        "people",
        "person",
        "sync-now",
        "mappings",
        "mapping-preview",
        "runs",
        "run-held",
        "status",
        "audit",
        "ldap",
        "status-phone",
    ] {
        let file = shots.join(format!("{name}.png"));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", file.display());
    }
}

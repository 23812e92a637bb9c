//! `tyk-idsync tib render [--json]` and `tyk-idsync tib push`.

use std::fmt::Write;

use serde_json::Value;

use super::profile::redact;
use super::push::TibError;
use super::service::{Rendered, TibService};

/// The text `tib render` prints, and whether every profile rendered.
pub fn render_output(rendered: &Rendered, json: bool, show_secrets: bool) -> (String, bool) {
    let all_ok = rendered.iter().all(|(_, r)| r.is_ok());
    let shown = |profile: &Value| {
        if show_secrets {
            profile.clone()
        } else {
            redact(profile)
        }
    };
    if json {
        let profiles: Vec<Value> = rendered
            .iter()
            .filter_map(|(_, r)| r.as_ref().ok().map(|p| shown(&p.profile)))
            .collect();
        let mut text = serde_json::to_string_pretty(&profiles).unwrap_or_default();
        text.push('\n');
        return (text, all_ok);
    }
    let mut out = String::new();
    for (id, result) in rendered {
        let p = match result {
            Ok(p) => p,
            Err(e) => {
                let _ = writeln!(out, "Profile {id}: NOT RENDERED: {e}\n");
                continue;
            }
        };
        let _ = writeln!(
            out,
            "Profile {} (source {}, org {})",
            p.id, p.source, p.org_id
        );
        let _ = writeln!(
            out,
            "  DefaultUserGroupID {} = {:?} ({})",
            p.default_group.tyk_group_id, p.default_group.name, p.default_group.chosen
        );
        let _ = writeln!(
            out,
            "  SSOOnlyForRegisteredUsers {}, CustomUserGroupField {}",
            p.profile["SSOOnlyForRegisteredUsers"], p.profile["CustomUserGroupField"]
        );
        let _ = writeln!(out, "  UserGroupMapping:");
        for group in &p.groups {
            let id = group
                .tyk_group_id
                .as_deref()
                .unwrap_or("(no Tyk group yet)");
            let _ = writeln!(
                out,
                "    {:?} priority {} → {id}: {}",
                group.name,
                group.priority,
                if group.keys.is_empty() {
                    "(no IdP group of this source)".to_string()
                } else {
                    group
                        .keys
                        .iter()
                        .map(|k| format!("{k:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
        }
        for note in &p.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out.push('\n');
    }
    (out, all_ok)
}

/// `tib push`: the report as JSON and whether it succeeded.
pub async fn push(service: &TibService) -> Result<(String, bool), TibError> {
    let report = service.push("cli:tib-push").await?;
    let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
    text.push('\n');
    Ok((text, report.ok))
}

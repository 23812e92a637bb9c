//! `/ui/mappings`: the rules by organisation and priority. API rules are
//! created, edited and deleted through [`crate::mapping::service`] (the
//! admin API's service); config-file rules are shown read-only. Every
//! change is previewed first ([`super::preview`]): who would be created,
//! moved or deprovisioned.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::UiState;
use super::error::UiError;
use super::layout::{self, Page, csrf_field};
use super::people::person_href;
use super::preview::{PersonChange, diff};
use super::session::Operator;
use crate::mapping::service::{self, MappingError};
use crate::mapping::{MappingRule, RuleError};
use crate::store::mappings::{self, RuleOrigin, StoredRule};

fn mapping_error(e: MappingError) -> UiError {
    match e {
        MappingError::NotFound(id) => UiError::NotFound(format!("no mapping rule {id}")),
        MappingError::Conflict(why) => UiError::BadRequest(why),
        MappingError::ConfigOwned(id) => UiError::BadRequest(format!(
            "rule {id} comes from the config file; change it there"
        )),
        MappingError::Invalid(errors) => UiError::BadRequest(
            errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        other => UiError::Internal(format!("mapping: {other}")),
    }
}

pub async fn list(State(state): State<UiState>, operator: Operator) -> Result<Page, UiError> {
    let rules = service::list(&state.app.store)
        .await
        .map_err(mapping_error)?;
    let mut by_org: BTreeMap<&str, Vec<&StoredRule>> = BTreeMap::new();
    for stored in &rules {
        by_org
            .entry(stored.rule.org_id.as_str())
            .or_default()
            .push(stored);
    }
    for rules in by_org.values_mut() {
        rules.sort_by(|a, b| {
            b.rule
                .priority
                .cmp(&a.rule.priority)
                .then(a.rule.name.cmp(&b.rule.name))
        });
    }
    let body = html! {
        h1 { "Mappings" }
        p { a href="/ui/mappings/new" { "New rule" } }
        @if by_org.is_empty() { p class="muted" { "No mapping rule yet." } }
        @for (org, rules) in &by_org {
            h2 { "Organisation " code { (org) } }
            div class="scroll" { table {
                thead { tr {
                    th scope="col" { "Priority" } th scope="col" { "Tyk group" } th scope="col" { "Identity-provider groups" }
                    th scope="col" { "Permissions" } th scope="col" { "Origin" } th scope="col" { span class="muted" { "Actions" } }
                } }
                tbody { @for stored in rules { tr {
                    td { (stored.rule.priority) }
                    th scope="row" { (stored.rule.name) }
                    td { @for sso in &stored.rule.mappings_sso { code { (sso) } br; } }
                    td { @for (k, v) in &stored.rule.permissions { (k) ": " (v) br; } }
                    td { @if stored.origin == RuleOrigin::Config { span class="badge" { "config file (read-only)" } } @else { "API" } }
                    td {
                        @if stored.origin == RuleOrigin::Api {
                            a href={ "/ui/mappings/" (stored.rule.id) "/edit" } aria-label={ "Edit " (stored.rule.name) } { "Edit" }
                            " "
                            form class="inline" method="post" action={ "/ui/mappings/" (stored.rule.id) "/delete" } {
                                (csrf_field(&operator.csrf))
                                input type="hidden" name="action" value="preview";
                                button type="submit" class="secondary" aria-label={ "Delete " (stored.rule.name) } { "Delete…" }
                            }
                        }
                    }
                } } }
            } }
        }
    };
    Ok(layout::page(
        "Mappings",
        "/ui/mappings",
        &operator.csrf,
        body,
    ))
}

/// The rule form's fields, as posted.
#[derive(Debug, Default, Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    org_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    priority: String,
    /// One `mappingsSSO` entry per line.
    #[serde(default)]
    mappings_sso: String,
    /// One `section: value` per line.
    #[serde(default)]
    permissions: String,
    /// `preview` or `save`.
    #[serde(default)]
    action: String,
}

impl RuleForm {
    fn from_rule(rule: &MappingRule) -> Self {
        Self {
            id: rule.id.clone(),
            org_id: rule.org_id.clone(),
            name: rule.name.clone(),
            description: rule.description.clone().unwrap_or_default(),
            priority: rule.priority.to_string(),
            mappings_sso: rule.mappings_sso.join("\n"),
            permissions: rule
                .permissions
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("\n"),
            ..Self::default()
        }
    }

    /// The rule, or the problems with the form.
    fn to_rule(&self, extra_keys: &[String]) -> Result<MappingRule, Vec<RuleError>> {
        let mut errors = Vec::new();
        let priority = match self.priority.trim() {
            "" => 0,
            text => text.parse().unwrap_or_else(|_| {
                errors.push(RuleError::new("priority", "must be a whole number"));
                0
            }),
        };
        let mut permissions = BTreeMap::new();
        for line in self
            .permissions
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            match line.split_once(':').or_else(|| line.split_once('=')) {
                Some((k, v)) => {
                    permissions.insert(k.trim().to_string(), v.trim().to_string());
                }
                None => errors.push(RuleError::new(
                    "permissions",
                    format!("{line:?} is not `section: read|write|deny`"),
                )),
            }
        }
        let description = self.description.trim();
        let rule = MappingRule {
            id: self.id.trim().to_string(),
            org_id: self.org_id.trim().to_string(),
            name: self.name.trim().to_string(),
            description: (!description.is_empty()).then(|| description.to_string()),
            priority,
            mappings_sso: self
                .mappings_sso
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
            permissions,
        };
        errors.extend(rule.validate(extra_keys));
        if errors.is_empty() {
            Ok(rule)
        } else {
            Err(errors)
        }
    }
}

fn rule_form(form: &RuleForm, csrf: &str, errors: &[RuleError], previewed: bool) -> Markup {
    let error_for = |field: &str| -> Vec<&str> {
        errors
            .iter()
            .filter(|e| e.field == field || e.field.starts_with(&format!("{field}[")))
            .map(|e| e.message.as_str())
            .collect()
    };
    let field_errors = |field: &str, id: &str| {
        html! {
            @for message in error_for(field) { p class="error" id=(id) { (message) } }
        }
    };
    html! {
        @if !errors.is_empty() {
            div class="summary bad" role="alert" {
                p { "The rule is not valid:" }
                ul { @for e in errors { li { (e.field) ": " (e.message) } } }
            }
        }
        form method="post" action="/ui/mappings/save" {
            (csrf_field(csrf))
            input type="hidden" name="id" value=(form.id);
            label for="org_id" { "Tyk organisation id" }
            input type="text" id="org_id" name="org_id" value=(form.org_id) required;
            (field_errors("orgId", "org_id-error"))
            label for="name" { "Tyk user group" }
            input type="text" id="name" name="name" value=(form.name) required;
            (field_errors("name", "name-error"))
            label for="priority" { "Priority (higher wins)" }
            input type="number" id="priority" name="priority" value=(form.priority);
            (field_errors("priority", "priority-error"))
            label for="mappings_sso" { "Identity-provider groups, one per line (" code { "source:group" } ")" }
            textarea id="mappings_sso" name="mappings_sso" rows="4" { (form.mappings_sso) }
            (field_errors("mappingsSSO", "mappings_sso-error"))
            label for="permissions" { "Permissions, one per line (" code { "apis: read" } ")" }
            textarea id="permissions" name="permissions" rows="4" { (form.permissions) }
            (field_errors("permissions", "permissions-error"))
            label for="description" { "Description" }
            input type="text" id="description" name="description" value=(form.description);
            p class="row" {
                button type="submit" name="action" value="preview" class=[previewed.then_some("secondary")] {
                    @if previewed { "Preview again" } @else { "Preview" }
                }
                @if previewed {
                    button type="submit" name="action" value="save" { "Save" }
                }
            }
        }
    }
}

pub async fn new_rule(State(state): State<UiState>, operator: Operator) -> Page {
    let form = RuleForm {
        org_id: mapping_config(&state).default_org_id.unwrap_or_default(),
        priority: "0".into(),
        ..RuleForm::default()
    };
    let body = html! { h1 { "New mapping rule" } (rule_form(&form, &operator.csrf, &[], false)) };
    layout::page("New rule", "/ui/mappings", &operator.csrf, body)
}

pub async fn edit(
    State(state): State<UiState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Page, UiError> {
    let stored = service::get(&state.app.store, &id)
        .await
        .map_err(mapping_error)?;
    if stored.origin == RuleOrigin::Config {
        return Err(mapping_error(MappingError::ConfigOwned(id)));
    }
    let body = html! {
        h1 { "Edit " (stored.rule.name) }
        (rule_form(&RuleForm::from_rule(&stored.rule), &operator.csrf, &[], false))
    };
    Ok(layout::page(
        "Edit rule",
        "/ui/mappings",
        &operator.csrf,
        body,
    ))
}

fn mapping_config(state: &UiState) -> crate::mapping::MappingConfig {
    state
        .app
        .mapping
        .read()
        .map(|c| c.clone())
        .unwrap_or_else(|p| p.into_inner().clone())
}

/// Who a change from the stored rules to `proposed` would create, move or
/// deprovision.
async fn preview(
    state: &UiState,
    proposed: impl FnOnce(Vec<MappingRule>) -> Vec<MappingRule>,
) -> Result<BTreeMap<(String, String), PersonChange>, UiError> {
    let options = mapping_config(state).resolve_options();
    let mut conn = state.app.store.pool().acquire().await?;
    let people = crate::mapping::input::load_people(&mut conn).await?;
    let rules = mappings::list_rules(&mut conn).await?;
    drop(conn);
    let before = crate::mapping::desired_state(&people, &rules, &options);
    let after = crate::mapping::desired_state(&people, &proposed(rules), &options);
    Ok(diff(&before, &after))
}

fn render_changes(changes: &BTreeMap<(String, String), PersonChange>) -> Markup {
    let group = |g: &Option<String>| g.clone().unwrap_or_else(|| "(no group)".into());
    let mut created = Vec::new();
    let mut moved = Vec::new();
    let mut removed = Vec::new();
    for ((org, email), change) in changes {
        match change {
            PersonChange::Created { group: g } => created.push((org, email, group(g))),
            PersonChange::Moved { from, to } => {
                moved.push((org, email, format!("{} → {}", group(from), group(to))))
            }
            PersonChange::Deprovisioned { group: g } => removed.push((org, email, group(g))),
        }
    }
    let section = |title: &str, rows: &[(&String, &String, String)]| {
        html! {
            h3 { (title) " (" (rows.len()) ")" }
            @if rows.is_empty() { p class="muted" { "Nobody." } } @else {
                ul { @for (org, email, what) in rows { li { a href=(person_href(email)) { (email) } " — " (what) " in " code { (org) } } } }
            }
        }
    };
    html! {
        section aria-labelledby="preview-heading" {
            h2 id="preview-heading" { "Preview: what saving would do" }
            @if changes.is_empty() { p role="status" { "Nobody's access would change." } }
            (section("Would be created", &created))
            (section("Would be moved", &moved))
            (section("Would be deprovisioned", &removed))
        }
    }
}

pub async fn save(
    State(state): State<UiState>,
    operator: Operator,
    Form(form): Form<RuleForm>,
) -> Result<Response, UiError> {
    operator.check_csrf(&form.csrf)?;
    let extra = mapping_config(&state).extra_permission_keys;
    let title = if form.id.trim().is_empty() {
        "New mapping rule".to_string()
    } else {
        format!("Edit {}", form.name.trim())
    };
    let rule = match form.to_rule(&extra) {
        Ok(rule) => rule,
        Err(errors) => {
            let body = html! { h1 { (title) } (rule_form(&form, &operator.csrf, &errors, false)) };
            return Ok((
                StatusCode::BAD_REQUEST,
                layout::page(&title, "/ui/mappings", &operator.csrf, body),
            )
                .into_response());
        }
    };
    if form.action == "save" {
        let store = &state.app.store;
        if rule.id.is_empty() {
            service::create(store, rule, &extra)
                .await
                .map_err(mapping_error)?;
        } else {
            service::update(store, rule, &extra)
                .await
                .map_err(mapping_error)?;
        }
        state.rules_changed();
        return Ok(Redirect::to("/ui/mappings").into_response());
    }
    let changes = preview(&state, |mut rules| {
        let proposed = MappingRule {
            id: if rule.id.is_empty() {
                "(new rule)".into()
            } else {
                rule.id.clone()
            },
            ..rule.clone()
        };
        rules.retain(|r| r.id != proposed.id);
        rules.push(proposed);
        rules
    })
    .await?;
    let body = html! {
        h1 { (title) }
        (render_changes(&changes))
        h2 { "The rule" }
        (rule_form(&form, &operator.csrf, &[], true))
    };
    Ok(layout::page(&title, "/ui/mappings", &operator.csrf, body).into_response())
}

#[derive(Debug, Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
}

pub async fn delete(
    State(state): State<UiState>,
    operator: Operator,
    Path(id): Path<String>,
    Form(form): Form<DeleteForm>,
) -> Result<Response, UiError> {
    operator.check_csrf(&form.csrf)?;
    let stored = service::get(&state.app.store, &id)
        .await
        .map_err(mapping_error)?;
    if stored.origin == RuleOrigin::Config {
        return Err(mapping_error(MappingError::ConfigOwned(id)));
    }
    if form.action == "delete" {
        service::delete(&state.app.store, &id)
            .await
            .map_err(mapping_error)?;
        state.rules_changed();
        return Ok(Redirect::to("/ui/mappings").into_response());
    }
    let changes = preview(&state, |mut rules| {
        rules.retain(|r| r.id != id);
        rules
    })
    .await?;
    let body = html! {
        h1 { "Delete " (stored.rule.name) "?" }
        (render_changes(&changes))
        form method="post" action={ "/ui/mappings/" (stored.rule.id) "/delete" } class="row" {
            (csrf_field(&operator.csrf))
            input type="hidden" name="action" value="delete";
            button type="submit" class="danger" { "Delete the rule" }
            a href="/ui/mappings" { "Cancel" }
        }
    };
    Ok(layout::page("Delete rule", "/ui/mappings", &operator.csrf, body).into_response())
}

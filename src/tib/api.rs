//! `GET /admin/v1/tib/profiles`: the profiles as they would be pushed now
//! (secrets redacted) and the last push result.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::profile::redact;
use super::service::TibService;
use crate::store::Store;

#[derive(Clone)]
pub struct TibApiState {
    pub store: Store,
    pub config: Option<super::TibConfig>,
    pub service: Option<Arc<TibService>>,
}

pub fn router(state: TibApiState) -> Router {
    Router::new()
        .route("/admin/v1/tib/profiles", get(profiles))
        .with_state(state)
}

async fn profiles(State(state): State<TibApiState>) -> Json<Value> {
    let Some(service) = &state.service else {
        return Json(json!({"enabled": false, "profiles": [], "last_push": null}));
    };
    let (profiles, render_error) = match service.render().await {
        Ok(rendered) => (
            rendered
                .into_iter()
                .map(|(id, r)| match r {
                    Ok(p) => {
                        let mut v = serde_json::to_value(&p).unwrap_or(Value::Null);
                        v["profile"] = redact(&p.profile);
                        v
                    }
                    Err(e) => json!({"id": id, "error": e}),
                })
                .collect::<Vec<_>>(),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let last_push = super::service::last_push(&state.store).await.ok().flatten();
    Json(json!({
        "enabled": true,
        "profiles": profiles,
        "render_error": render_error,
        "last_push": last_push,
        "status": super::service::status(&state.store, state.config.as_ref()).await.ok().flatten(),
    }))
}

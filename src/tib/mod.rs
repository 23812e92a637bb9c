//! Tyk Identity Broker (TIB) profiles generated from the mapping table.
//!
//! TIB picks a Dashboard user's group at login from its profile's
//! `UserGroupMapping` (IdP group → Tyk group id). tyk-idsync renders those
//! profiles from the rules of the profile's organisation and the Tyk group
//! ids it knows ([`render`]), pushes them to TIB's REST API and/or profiles
//! file ([`push`]), and keeps them current from a leader-only background
//! task ([`task`]) that also corrects hand edits. See the README, "Tyk Identity Broker (TIB) profiles".

pub mod api;
pub mod cli;
pub mod config;
pub mod profile;
pub mod push;
pub mod render;
pub mod service;
pub mod task;

pub use config::{Template, TibConfig, TibProfileConfig};
pub use push::{Change, TibClient, TibError};
pub use render::{RenderError, RenderInput, RenderedProfile, render};
pub use service::{PushReport, TibService, TibStatus};

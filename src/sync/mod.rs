//! The sync layer: plan changes to Tyk from the desired and actual state,
//! guard against mass removals, apply the plan safely and record it.

pub mod actual;
pub mod admin;
pub mod apply;
pub mod cli;
pub mod config;
#[cfg(test)]
mod fake_tyk;
pub mod fenced;
pub mod guard;
pub mod metrics;
pub mod on_demand;
pub mod ownership;
pub mod person;
pub mod plan;
pub mod quarantine;
pub mod reject;
pub mod render;
pub mod retry;
pub mod scope;
pub mod service;
pub mod step;
pub mod stream_plan;
pub mod tyk_gateway;
pub mod worker;
pub mod writer;

pub use actual::{ActualGroup, ActualState, ActualUser};
pub use apply::{Applier, ApplyContext, ApplyLimits, ApplyReport};
pub use config::SyncConfig;
pub use guard::{GuardConfig, GuardVerdict, guard};
pub use ownership::{Deprovision, ManagedGroup, ManagedUser, Ownership, SyncPolicy};
pub use plan::plan;
pub use retry::{Pacer, RetryPolicy};
pub use scope::{plan_for_people, restrict_to_people};
pub use step::{
    DeprovisionReason, GroupRef, Permissions, Plan, PlanStep, PlanSummary, Profile, SkipReason,
    Skipped,
};
pub use worker::{
    ActualScope, LoadError, Outcome, StateSource, SyncError, SyncStatus, SyncWorker, Trigger,
};
pub use writer::{GroupRecord, TykWriter, UserRecord, WriteError};

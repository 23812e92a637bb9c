//! Types shared by every boundary: identities and groups as the sources know
//! them, and the identity-change events the sync worker consumes. No I/O here.

mod desired;
pub mod email;
mod event;
pub mod fold;
mod identity;
mod time;

pub use desired::{DesiredGroup, DesiredState, DesiredUser};
pub use email::{EmailProblem, email_key, primary_email};
pub use event::{EventKind, IdentityEvent, NewIdentityEvent};
pub use fold::fold_key;
pub use identity::{GroupMember, IdentityGroup, IdentityUser, MemberKind, SourceName};
pub use time::{Timestamp, now_millis};

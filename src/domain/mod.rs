//! Types shared by every boundary: identities and groups as the sources know
//! them, and the identity-change events the sync worker consumes. No I/O here.

mod desired;
mod event;
mod identity;
mod time;

pub use desired::{DesiredGroup, DesiredState, DesiredUser};
pub use event::{EventKind, IdentityEvent, NewIdentityEvent};
pub use identity::{GroupMember, IdentityGroup, IdentityUser, MemberKind, SourceName};
pub use time::{Timestamp, now_millis};

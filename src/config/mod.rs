//! Configuration: defaults, an optional TOML file, then environment
//! overrides (`TYK_IDSYNC__SECTION__KEY`), validated at start-up.

mod problem;

pub use problem::{ConfigProblem, check_readable_file, require_secret, resolve_secret};

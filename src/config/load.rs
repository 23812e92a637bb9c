//! Loading: built-in defaults, then an optional TOML file, then environment
//! variables `TYK_IDSYNC__<SECTION>__<KEY>` (double underscores separate the
//! levels). Every problem becomes a [`ConfigProblem`] naming the key.

use std::path::Path;

use figment::error::Kind;
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::{Config, ConfigProblem};

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "TYK_IDSYNC__";

/// All problems found while loading or validating, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "config error: {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads from the file (if any) and the process environment, then validates.
pub fn load(file: Option<&Path>) -> Result<Config, ConfigErrors> {
    load_with_env(file, std::env::vars())
}

/// As [`load`], with explicit environment variables (for tests).
pub fn load_with_env(
    file: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    let mut base = Figment::new();
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigErrors(vec![
                ConfigProblem::new("--config", format!("{} does not exist", path.display()))
                    .hint("pass an existing TOML file, or omit --config to use the defaults"),
            ]));
        }
        base = base.merge(Toml::file_exact(path));
    }
    // Environment values are typed by their look (`8080` is a number), so a
    // numeric-looking secret or name would not fit a string key: such keys
    // are retried with the raw text.
    let mut as_text: Vec<Vec<String>> = Vec::new();
    let config: Config = loop {
        let env = EnvOverrides::from_vars(&vars, &as_text);
        match base.clone().merge(env).extract::<Config>() {
            Ok(config) => break config,
            Err(err) => match wants_text(&err) {
                Some(path) if !as_text.contains(&path) => as_text.push(path),
                _ => return Err(from_figment(err)),
            },
        }
    };
    let problems = config.validate();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(problems))
    }
}

fn from_figment(err: figment::Error) -> ConfigErrors {
    ConfigErrors(err.into_iter().map(problem_from_figment).collect())
}

fn problem_from_figment(err: figment::Error) -> ConfigProblem {
    let mut key = dotted_key(&err.path);
    let origin = err.metadata.as_ref().map(|md| match &md.source {
        Some(source) => source.to_string(),
        // Environment values: name the exact variable.
        None => format!("environment variable {}", env_var_name(&err.path)),
    });
    // Figment's path sometimes already ends with the offending field.
    let join = |key: &str, field: &str| {
        if key.is_empty() {
            field.to_string()
        } else if key == field || key.ends_with(&format!(".{field}")) {
            key.to_string()
        } else {
            format!("{key}.{field}")
        }
    };
    let (problem, hint) = match &err.kind {
        Kind::UnknownField(field, expected) => {
            key = join(&key, field);
            (
                "is not a known key".to_string(),
                Some(format!("known keys here: {}", expected.join(", "))),
            )
        }
        Kind::MissingField(field) => {
            key = join(&key, field);
            ("is required but not set".to_string(), None)
        }
        Kind::InvalidType(actual, expected) => (
            format!("has the wrong type: found {actual}, expected {expected}"),
            None,
        ),
        Kind::InvalidValue(actual, expected) => (
            format!("has an invalid value: found {actual}, expected {expected}"),
            None,
        ),
        Kind::UnknownVariant(actual, expected) => (
            format!("has an unknown value {actual:?}"),
            Some(format!("use one of: {}", expected.join(", "))),
        ),
        Kind::DuplicateField(field) => {
            key = join(&key, field);
            ("is given twice".to_string(), None)
        }
        Kind::Message(msg) => (one_line(msg), None),
        other => (other.to_string(), None),
    };
    let problem = match origin {
        Some(origin) => format!("{problem} (in {origin})"),
        None => problem,
    };
    let key = if key.is_empty() {
        "(file)".to_string()
    } else {
        key
    };
    ConfigProblem { key, problem, hint }
}

/// `tib.profiles.0.id` as the validation names it: `tib.profiles[0].id`.
fn dotted_key(path: &[String]) -> String {
    let mut key = String::new();
    for segment in path {
        if !key.is_empty() && segment.chars().all(|c| c.is_ascii_digit()) {
            key.push_str(&format!("[{segment}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment);
        }
    }
    key
}

/// The environment variable that sets a key path.
fn env_var_name(path: &[String]) -> String {
    format!("{ENV_PREFIX}{}", path.join("__").to_uppercase())
}

/// Multi-line messages (TOML parse errors) folded into one line.
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|') && !l.contains(" | "))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `TYK_IDSYNC__SECTION__KEY=value` variables as a figment provider.
///
/// Values are parsed as figment's `Env` does (numbers, booleans, arrays),
/// except for the key paths in `as_text`, which keep the raw text.
struct EnvOverrides {
    dict: Dict,
}

impl EnvOverrides {
    fn from_vars(vars: &[(String, String)], as_text: &[Vec<String>]) -> Self {
        let mut dict = Dict::new();
        let mut vars = vars.to_vec();
        vars.sort();
        for (name, raw) in vars {
            let path: Vec<String> = name[ENV_PREFIX.len()..]
                .split("__")
                .map(str::to_lowercase)
                .collect();
            if path.iter().any(String::is_empty) {
                continue;
            }
            let value = if as_text.contains(&path) {
                Value::from(raw.clone())
            } else {
                raw.parse::<Value>()
                    .unwrap_or_else(|_| Value::from(raw.clone()))
            };
            if let Value::Dict(_, nested) = figment::util::nest(&path.join("."), value) {
                merge_dicts(&mut dict, nested);
            }
        }
        Self { dict }
    }
}

/// The key path of an environment value that was parsed as a number or a
/// boolean where a string is wanted.
fn wants_text(err: &figment::Error) -> Option<Vec<String>> {
    let from_env = err
        .metadata
        .as_ref()
        .is_some_and(|md| md.name == "environment");
    match &err.kind {
        Kind::InvalidType(_, expected) if from_env && expected.contains("string") => {
            Some(err.path.clone())
        }
        _ => None,
    }
}

fn merge_dicts(into: &mut Dict, from: Dict) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Dict(_, existing)), Value::Dict(_, incoming)) => {
                merge_dicts(existing, incoming)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

impl Provider for EnvOverrides {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut map = Map::new();
        map.insert(Profile::Default, self.dict.clone());
        Ok(map)
    }
}

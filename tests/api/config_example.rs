//! The documented example config must stay true: it parses, it equals the
//! built-in defaults, and it mentions every key.

use std::collections::BTreeSet;

use tyk_idsync::config::{self, Config};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/config/tyk-idsync.example.toml"
);

fn keys(value: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let toml::Value::Table(table) = value {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(_) => keys(v, &key, out),
                _ => {
                    out.insert(key);
                }
            }
        }
    }
}

#[test]
fn the_example_config_loads_and_equals_the_defaults() {
    let loaded = config::load_with_env(Some(std::path::Path::new(EXAMPLE)), Vec::new())
        .unwrap_or_else(|e| panic!("example config does not load: {e}"));
    assert_eq!(
        loaded.to_redacted_toml(),
        Config::default().to_redacted_toml(),
        "the example must document the defaults"
    );
}

#[test]
fn the_example_config_mentions_every_key() {
    let text = std::fs::read_to_string(EXAMPLE).expect("read example");
    let defaults: toml::Value =
        toml::from_str(&Config::default().to_redacted_toml()).expect("defaults as TOML");
    let mut all = BTreeSet::new();
    keys(&defaults, "", &mut all);
    for key in all {
        let leaf = key.rsplit('.').next().unwrap_or(&key);
        assert!(
            text.contains(&format!("{leaf} =")),
            "config/tyk-idsync.example.toml does not document `{key}`"
        );
    }
}

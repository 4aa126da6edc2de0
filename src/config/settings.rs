//! The configuration as a flat list of `section.key = value` settings without secrets: what
//! `/readyz` identifies (the configuration identity), what a reload compares to name the changed
//! keys that need a restart, and what the startup warning about environment overrides names.
//!
//! Secrets never enter a [`Settings`]: they serialize as a fixed marker (their `_file` paths,
//! which are not secret, are kept), so the identity is not a hash over any secret.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::raw::RawConfig;
use super::reference;

/// Every key of a configuration, rendered as TOML values, secrets masked. Keys are
/// `section.key`; deeper tables (`oidc.auth_params`, `groups.rename`, `groups.rules`) are one
/// setting each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings(BTreeMap<String, String>);

impl Settings {
    /// The settings of a raw configuration, defaults included.
    pub(crate) fn from_raw(raw: &RawConfig) -> Self {
        let mut settings = BTreeMap::new();
        if let Ok(Value::Object(sections)) = serde_json::to_value(raw) {
            for (section, keys) in sections {
                let Value::Object(keys) = keys else {
                    continue;
                };
                for (key, value) in keys {
                    settings.insert(format!("{section}.{key}"), toml_value(&value));
                }
            }
        }
        Self(settings)
    }

    /// The value of `section.key`, rendered as TOML (`"unset"` values are absent optional keys).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Every `(key, value)`, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Lowercase hex SHA-256 over the `key = value` lines: equal for two bridges exactly when
    /// their settings (secrets aside) are equal. Shown on `/readyz` and by `check`.
    pub fn identity(&self) -> String {
        let mut digest = Sha256::new();
        for (key, value) in &self.0 {
            digest.update(key.as_bytes());
            digest.update(b" = ");
            digest.update(value.as_bytes());
            digest.update(b"\n");
        }
        hex::encode(digest.finalize())
    }

    /// The keys whose values differ between `self` and `other`, sorted.
    pub fn changed_keys(&self, other: &Settings) -> Vec<String> {
        let mut keys: Vec<String> = self
            .0
            .iter()
            .filter(|(key, value)| other.0.get(*key) != Some(*value))
            .map(|(key, _)| key.clone())
            .collect();
        keys.extend(
            other
                .0
                .keys()
                .filter(|key| !self.0.contains_key(*key))
                .cloned(),
        );
        keys.sort();
        keys.dedup();
        keys
    }

    /// What is active after a live reload to `newer`: the keys a running bridge applies live
    /// (see [`reference::Reload`]) from `newer`, every other key from `self`.
    pub fn with_live_from(&self, newer: &Settings) -> Settings {
        let mut active: BTreeMap<String, String> = self
            .0
            .iter()
            .filter(|(key, _)| !reference::is_live(key))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        active.extend(
            newer
                .0
                .iter()
                .filter(|(key, _)| reference::is_live(key))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        Settings(active)
    }
}

/// Renders a JSON value as a TOML value: strings quoted, tables inline, `null` as `unset`.
pub(crate) fn toml_value(value: &Value) -> String {
    match value {
        Value::Null => "unset".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        // JSON string escaping is valid in TOML basic strings for everything JSON escapes.
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_value).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) if map.is_empty() => "{}".to_owned(),
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{} = {}", toml_key(k), toml_value(v)))
                .collect();
            format!("{{ {} }}", entries.join(", "))
        }
    }
}

/// A bare TOML key when it can be one, a quoted one otherwise.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn toml_values_render_like_the_config_file() {
        let value = serde_json::json!({
            "a": "x\"y", "b": [1, true], "c": null, "d": {"template": "{{ sub }}"}, "odd key": 1
        });
        assert_eq!(
            toml_value(&value),
            r#"{ a = "x\"y", b = [1, true], d = { template = "{{ sub }}" }, "odd key" = 1 }"#
        );
    }

    #[test]
    fn a_live_reload_takes_only_live_keys_and_the_identity_follows() {
        let running = settings(&[("limits.login_per_minute", "60"), ("groups.mode", "\"a\"")]);
        let file = settings(&[("limits.login_per_minute", "5"), ("groups.mode", "\"b\"")]);
        let active = running.with_live_from(&file);
        assert_eq!(active.get("limits.login_per_minute"), Some("60"));
        assert_eq!(active.get("groups.mode"), Some("\"b\""));
        assert_eq!(
            running.changed_keys(&file),
            ["groups.mode", "limits.login_per_minute"]
        );
        assert_ne!(active.identity(), running.identity());
        assert_ne!(active.identity(), file.identity());
        assert_eq!(active.identity(), active.clone().identity());
    }
}

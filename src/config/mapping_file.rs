//! Mapping-only files: a TOML file holding nothing but `[mapping]`, `[groups]` and `[access]`
//! (the sections `docs/mapping.md` describes), as used to try a mapping with `explain`,
//! `check` and `demo --config` before it goes into the full configuration.

use std::collections::BTreeMap;
use std::path::Path;

use figment::Figment;
use figment::providers::{Format as _, Toml};

use crate::mapping::{AccessConfig, GroupsConfig, MappingConfig};

/// The sections a mapping consists of.
pub const MAPPING_SECTIONS: [&str; 3] = ["mapping", "groups", "access"];

/// The three sections of a mapping, each its default when absent.
pub type MappingSections = (MappingConfig, GroupsConfig, AccessConfig);

/// True when `toml` has at least one section and every top-level key is a mapping section.
pub fn is_mapping_only(toml: &str) -> bool {
    let figment = Figment::from(Toml::string(toml));
    match figment.extract::<BTreeMap<String, figment::value::Value>>() {
        Ok(top) => !top.is_empty() && top.keys().all(|k| MAPPING_SECTIONS.contains(&k.as_str())),
        Err(_) => false,
    }
}

/// Reads `[mapping]`, `[groups]` and `[access]` from TOML text; a missing section is the
/// default and every other section is ignored. Every problem is reported, one per line.
pub fn mapping_sections(toml: &str) -> Result<MappingSections, String> {
    let figment = Figment::from(Toml::string(toml));
    fn section<T: serde::de::DeserializeOwned + Default>(
        figment: &Figment,
        key: &str,
    ) -> Result<T, String> {
        if figment.contains(key) {
            figment
                .extract_inner(key)
                .map_err(|e| format!("[{key}]: {e}"))
        } else {
            Ok(T::default())
        }
    }
    let mut problems = Vec::new();
    let mapping = section::<MappingConfig>(&figment, "mapping").map_err(|e| problems.push(e));
    let groups = section::<GroupsConfig>(&figment, "groups").map_err(|e| problems.push(e));
    let access = section::<AccessConfig>(&figment, "access").map_err(|e| problems.push(e));
    match (mapping, groups, access) {
        (Ok(mapping), Ok(groups), Ok(access)) => Ok((mapping, groups, access)),
        _ => Err(problems.join("\n")),
    }
}

/// The mapping sections of the file at `path` when it is a mapping-only file; `None` when it
/// cannot be read or holds other sections too (then it is a full configuration).
pub fn read_mapping_only(path: &Path) -> Option<Result<MappingSections, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    is_mapping_only(&text).then(|| mapping_sections(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_of_mapping_sections_are_mapping_only() {
        assert!(is_mapping_only(
            "[mapping]\nusername = \"preferred_username\"\n"
        ));
        assert!(is_mapping_only(
            "[access]\nallowed_groups = [\"staff\"]\n[groups]\n"
        ));
        assert!(!is_mapping_only(""));
        assert!(!is_mapping_only(
            "[mapping]\n[server]\nlisten = \"0.0.0.0:1\"\n"
        ));
        assert!(!is_mapping_only("not toml ["));
    }
}

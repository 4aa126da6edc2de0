//! Claim mapping: turns verified OpenID Connect claims into a DiscourseConnect payload through
//! the operator's `[mapping]`, `[groups]` and `[access]` rules. Pure: no I/O, no clock.

use serde::{Deserialize, Serialize};

use crate::config::ConfigProblem;

/// `[mapping]` as written by the operator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {}

/// `[groups]` as written by the operator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsConfig {}

/// `[access]` as written by the operator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {}

/// The compiled mapping rules.
#[derive(Debug, Clone)]
pub struct Mapper {
    warnings: Vec<String>,
}

impl Mapper {
    /// Compiles the three sections, reporting every problem at once.
    pub fn compile(
        _mapping: &MappingConfig,
        _groups: &GroupsConfig,
        _access: &AccessConfig,
    ) -> Result<Mapper, Vec<ConfigProblem>> {
        Ok(Mapper {
            warnings: Vec::new(),
        })
    }

    /// Things that are allowed but probably wrong (e.g. `external_id` from a mutable claim).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

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

/// Interim built-in mapping (replaced by the mapping engine when it lands).
#[derive(Debug)]
pub enum Outcome {
    Allowed(Mapped),
    Denied(Denial),
}

/// A mapped user.
#[derive(Debug)]
pub struct Mapped {
    pub payload: crate::discourse::connect::Payload,
}

/// A refusal.
#[derive(Debug)]
pub struct Denial {
    pub rule: String,
    pub message: String,
    pub contact: Option<String>,
}

impl Mapper {
    /// Interim: sub, verified email, preferred_username, name, picture.
    pub fn map(&self, claims: &serde_json::Map<String, serde_json::Value>) -> Outcome {
        use crate::discourse::connect::{Field, Payload};
        let text = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let mut payload = Payload::new();
        let Some(sub) = text("sub") else {
            return Outcome::Denied(Denial {
                rule: "mapping.external_id".into(),
                message: "no sub".into(),
                contact: None,
            });
        };
        payload.set(Field::ExternalId, sub);
        let verified = matches!(
            claims.get("email_verified"),
            Some(serde_json::Value::Bool(true))
        ) || claims.get("email_verified").and_then(|v| v.as_str()) == Some("true");
        if let Some(email) = text("email") {
            if !verified {
                return Outcome::Denied(Denial {
                    rule: "mapping.email_verified".into(),
                    message: "Your email address is not verified.".into(),
                    contact: None,
                });
            }
            payload.set(Field::Email, email);
        }
        for (claim, field) in [
            ("preferred_username", Field::Username),
            ("name", Field::Name),
            ("picture", Field::AvatarUrl),
        ] {
            if let Some(v) = text(claim) {
                payload.set(field, v);
            }
        }
        Outcome::Allowed(Mapped { payload })
    }
}

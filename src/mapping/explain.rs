//! What `discourse-oidc-bridge explain` prints: the payload a login would send (DiscourseConnect
//! fields, `nonce` excepted), the group changes and roles, the access decision, and which rule
//! produced each output; as text for people and as a serde [`Report`] for `--json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{Outcome, TraceEntry};
use crate::discourse::connect::Field;

/// A refusal as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DenialReport {
    pub rule: String,
    pub message: String,
    pub contact: Option<String>,
}

/// A group name that was not sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedGroup {
    pub name: String,
    pub reason: String,
}

/// The machine-readable explanation of one mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub allowed: bool,
    /// Set when the login is refused; nothing is sent to Discourse then.
    pub denial: Option<DenialReport>,
    /// Every payload key and value (`custom.*` included), empty when refused.
    pub payload: BTreeMap<String, String>,
    pub add_groups: Vec<String>,
    pub remove_groups: Vec<String>,
    /// The full list in `mode = "full"`; `None` when not sent.
    pub groups: Option<Vec<String>>,
    /// `None` when not sent (the role is not managed, or the groups are unknown).
    pub admin: Option<bool>,
    pub moderator: Option<bool>,
    pub dropped_groups: Vec<DroppedGroup>,
    pub trace: Vec<TraceEntry>,
}

fn split_groups(value: Option<&str>) -> Vec<String> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

fn dropped(list: &[(String, String)]) -> Vec<DroppedGroup> {
    list.iter()
        .map(|(name, reason)| DroppedGroup {
            name: name.clone(),
            reason: reason.clone(),
        })
        .collect()
}

impl From<&Outcome> for Report {
    fn from(outcome: &Outcome) -> Self {
        match outcome {
            Ok(mapped) => {
                let p = &mapped.payload;
                Report {
                    allowed: true,
                    denial: None,
                    payload: p
                        .pairs()
                        .map(|(k, v)| (k.into_owned(), v.to_owned()))
                        .collect(),
                    add_groups: split_groups(p.get(Field::AddGroups)),
                    remove_groups: split_groups(p.get(Field::RemoveGroups)),
                    groups: p.get(Field::Groups).map(|v| split_groups(Some(v))),
                    admin: p.get_bool(Field::Admin),
                    moderator: p.get_bool(Field::Moderator),
                    dropped_groups: dropped(&mapped.dropped_groups),
                    trace: mapped.trace.clone(),
                }
            }
            Err(denial) => Report {
                allowed: false,
                denial: Some(DenialReport {
                    rule: denial.rule.clone(),
                    message: denial.message.clone(),
                    contact: denial.contact.clone(),
                }),
                payload: BTreeMap::new(),
                add_groups: Vec::new(),
                remove_groups: Vec::new(),
                groups: None,
                admin: None,
                moderator: None,
                dropped_groups: dropped(&denial.dropped_groups),
                trace: denial.trace.clone(),
            },
        }
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join(", ")
    }
}

fn role(value: Option<bool>) -> String {
    match value {
        Some(v) => v.to_string(),
        None => "not sent (unchanged in Discourse)".to_owned(),
    }
}

/// The explanation for people: decision, payload, groups, roles, then the trace.
pub fn render_text(outcome: &Outcome) -> String {
    let report = Report::from(outcome);
    let mut out = String::new();
    match &report.denial {
        None => out.push_str("Login: ALLOWED\n"),
        Some(denial) => {
            let _ = writeln!(out, "Login: DENIED by {}", denial.rule);
            let _ = writeln!(out, "  Message shown to the user: {}", denial.message);
            if let Some(contact) = &denial.contact {
                let _ = writeln!(out, "  Contact shown to the user: {contact}");
            }
            out.push_str("  Nothing is sent to Discourse.\n");
        }
    }
    if report.allowed {
        out.push_str("\nPayload (the login adds the nonce):\n");
        let width = report.payload.keys().map(String::len).max().unwrap_or(0);
        for (key, value) in &report.payload {
            let _ = writeln!(out, "  {key:<width$} = {value}");
        }
        out.push_str("\nGroups and roles:\n");
        match &report.groups {
            Some(groups) => {
                let _ = writeln!(out, "  groups (full list) : {}", list(groups));
            }
            None => {
                let _ = writeln!(out, "  add_groups         : {}", list(&report.add_groups));
                let _ = writeln!(
                    out,
                    "  remove_groups      : {}",
                    list(&report.remove_groups)
                );
            }
        }
        let _ = writeln!(out, "  admin              : {}", role(report.admin));
        let _ = writeln!(out, "  moderator          : {}", role(report.moderator));
    }
    if !report.dropped_groups.is_empty() {
        out.push_str("\nGroups not sent:\n");
        for group in &report.dropped_groups {
            let _ = writeln!(out, "  {}: {}", group.name, group.reason);
        }
    }
    out.push_str("\nTrace (output <- rule: how):\n");
    for entry in &report.trace {
        let value = match &entry.value {
            Some(v) => format!(" = {v}"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {}{} <- {}: {}",
            entry.output, value, entry.rule, entry.note
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{
        AccessConfig, GroupRule, GroupsConfig, Mapper, MappingConfig, OneOrMany, PathMode,
    };
    use serde_json::{Map, Value, json};

    fn mapper(access: AccessConfig) -> Mapper {
        Mapper::compile(
            &MappingConfig::default(),
            &GroupsConfig {
                paths: PathMode::Leaf,
                rules: vec![
                    GroupRule {
                        group: Some("admins".to_owned()),
                        admin: true,
                        ..GroupRule::default()
                    },
                    GroupRule {
                        pattern: Some("^team-(.+)$".to_owned()),
                        to: Some(OneOrMany::One("team_$1".to_owned())),
                        ..GroupRule::default()
                    },
                ],
                managed: vec!["team_blue".to_owned(), "team_red".to_owned()],
                ..GroupsConfig::default()
            },
            &access,
        )
        .unwrap()
    }

    fn claims() -> Map<String, Value> {
        match json!({
            "sub": "42",
            "email": "jane@example.com",
            "email_verified": true,
            "name": "Jane Doe",
            "groups": ["/teams/team-blue", "/it/admins", "/x/weird name"]
        }) {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn report_of_an_allowed_login() {
        let report = Report::from(&mapper(AccessConfig::default()).map(&claims()));
        assert!(report.allowed);
        assert_eq!(report.add_groups, ["team_blue"]);
        assert_eq!(report.remove_groups, ["team_red"]);
        assert_eq!(report.admin, Some(true));
        assert_eq!(report.moderator, None);
        assert_eq!(
            report.payload.get("external_id").map(String::as_str),
            Some("42")
        );
        assert_eq!(report.dropped_groups.len(), 1);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["allowed"], json!(true));
        assert_eq!(json["payload"]["add_groups"], json!("team_blue"));

        let text = render_text(&mapper(AccessConfig::default()).map(&claims()));
        assert!(text.starts_with("Login: ALLOWED\n"), "{text}");
        assert!(
            text.contains("  add_groups         : team_blue\n"),
            "{text}"
        );
        assert!(text.contains("  admin              : true\n"), "{text}");
        assert!(
            text.contains("weird name: no rename or rule matches"),
            "{text}"
        );
        assert!(
            text.contains("name = Jane Doe <- mapping.name[0]: claim `name`"),
            "{text}"
        );
    }

    #[test]
    fn report_of_a_denied_login() {
        let outcome = mapper(AccessConfig {
            allowed_groups: vec!["members".to_owned()],
            contact: Some("it-help@example.com".to_owned()),
            ..AccessConfig::default()
        })
        .map(&claims());
        let report = Report::from(&outcome);
        assert!(!report.allowed);
        assert_eq!(
            report.denial.as_ref().map(|d| d.rule.as_str()),
            Some("access.allowed_groups")
        );
        assert!(report.payload.is_empty());
        let text = render_text(&outcome);
        assert!(
            text.starts_with("Login: DENIED by access.allowed_groups\n"),
            "{text}"
        );
        assert!(
            text.contains("Contact shown to the user: it-help@example.com"),
            "{text}"
        );
        assert!(!text.contains("Payload"), "{text}");
    }
}

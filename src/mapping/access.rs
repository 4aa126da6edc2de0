//! `[access]`: who may log in at all. Every configured rule must pass: membership in any of
//! some Discourse groups, a verified email in any of some domains, or a Google Workspace `hd`
//! claim (from the verified ID token, never the `hd` request parameter) equal to a value.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::TraceEntry;
use super::groups::{CompiledGroups, Glob, GroupsOutcome};
use crate::problem::ConfigProblem;

/// `[access]` as written by the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// The user must be in at least one of these Discourse groups (names or `*`/`?` patterns),
    /// as produced by `[groups]`.
    pub allowed_groups: Vec<String>,
    /// The user's verified email must be in one of these domains; `*.example.com` also
    /// accepts every subdomain.
    pub allowed_email_domains: Vec<String>,
    /// Google Workspace: the ID token's `hd` claim must equal one of these.
    pub hosted_domains: Vec<String>,
    /// Whom a refused user should ask, shown on the refusal page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
}

#[derive(Debug, Clone)]
enum DomainPattern {
    Exact(String),
    /// `*.example.com`: any subdomain of `example.com`, not `example.com` itself.
    Subdomains(String),
}

impl DomainPattern {
    fn matches(&self, domain: &str) -> bool {
        match self {
            DomainPattern::Exact(d) => domain.eq_ignore_ascii_case(d),
            DomainPattern::Subdomains(parent) => domain
                .len()
                .checked_sub(parent.len() + 1)
                .and_then(|dot| domain.get(dot..))
                .is_some_and(|tail| {
                    tail.starts_with('.') && tail[1..].eq_ignore_ascii_case(parent)
                }),
        }
    }
}

/// The compiled `[access]` section.
#[derive(Debug, Clone)]
pub struct CompiledAccess {
    allowed_groups: Vec<Glob>,
    allowed_email_domains: Vec<DomainPattern>,
    hosted_domains: Vec<String>,
    contact: Option<String>,
}

/// A refusal by an access rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: String,
    pub message: String,
}

/// What the access rules need to know about the login being decided.
#[derive(Debug)]
pub struct Subject<'a> {
    pub claims: &'a Map<String, Value>,
    /// The email that would be sent, if any, and whether it counts as verified.
    pub email: Option<(&'a str, bool)>,
    pub groups: &'a GroupsOutcome,
}

fn valid_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
}

impl CompiledAccess {
    /// Whether a rule needs the login's groups.
    pub(super) fn reads_groups(&self) -> bool {
        !self.allowed_groups.is_empty()
    }

    /// Whether a rule reads Google's `hd` claim.
    pub(super) fn reads_hosted_domain(&self) -> bool {
        !self.hosted_domains.is_empty()
    }

    /// Compiles `[access]`.
    pub fn compile(
        config: &AccessConfig,
        groups: &CompiledGroups,
        problems: &mut Vec<ConfigProblem>,
        warnings: &mut Vec<String>,
    ) -> CompiledAccess {
        let mut allowed_groups = Vec::new();
        for (index, pattern) in config.allowed_groups.iter().enumerate() {
            let key = format!("access.allowed_groups[{index}]");
            match Glob::new(pattern) {
                Ok(glob) => {
                    if glob.is_literal() && groups.can_produce(pattern) == Some(false) {
                        warnings.push(format!(
                            "{key}: no rename or group rule produces `{pattern}` (and \
                             groups.unmatched is \"drop\"), so this entry never admits anyone"
                        ));
                    }
                    allowed_groups.push(glob);
                }
                Err(message) => problems.push(ConfigProblem::new(key, message)),
            }
        }
        let mut allowed_email_domains = Vec::new();
        for (index, entry) in config.allowed_email_domains.iter().enumerate() {
            let key = format!("access.allowed_email_domains[{index}]");
            let entry = entry.trim().to_lowercase();
            let pattern = match entry.strip_prefix("*.") {
                Some(parent) => DomainPattern::Subdomains(parent.to_owned()),
                None => DomainPattern::Exact(entry.clone()),
            };
            let domain = match &pattern {
                DomainPattern::Exact(d) | DomainPattern::Subdomains(d) => d,
            };
            if entry.contains('@') {
                problems.push(ConfigProblem::new(
                    key,
                    format!("`{entry}` is an address; write only the domain after `@`"),
                ));
            } else if !valid_domain(domain) {
                problems.push(ConfigProblem::new(
                    key,
                    format!(
                        "`{entry}` is not a domain name such as `example.com` or `*.example.com`"
                    ),
                ));
            } else {
                allowed_email_domains.push(pattern);
            }
        }
        let mut hosted_domains = Vec::new();
        for (index, domain) in config.hosted_domains.iter().enumerate() {
            let domain = domain.trim().to_lowercase();
            if valid_domain(&domain) {
                hosted_domains.push(domain);
            } else {
                problems.push(ConfigProblem::new(
                    format!("access.hosted_domains[{index}]"),
                    format!("`{domain}` is not a domain name such as `example.com`"),
                ));
            }
        }
        let contact = config
            .contact
            .as_ref()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty());
        CompiledAccess {
            allowed_groups,
            allowed_email_domains,
            hosted_domains,
            contact,
        }
    }

    /// Whom a refused user should ask.
    pub fn contact(&self) -> Option<&str> {
        self.contact.as_deref()
    }

    /// Checks every rule (so `explain` shows them all); returns the first refusal.
    pub fn check(&self, subject: &Subject<'_>, trace: &mut Vec<TraceEntry>) -> Option<Refusal> {
        let mut refusal = None;
        let mut refuse = |rule: &str, message: &str, note: String, trace: &mut Vec<TraceEntry>| {
            trace.push(TraceEntry::new(
                "access",
                Some("denied".to_owned()),
                rule,
                note,
            ));
            if refusal.is_none() {
                refusal = Some(Refusal {
                    rule: rule.to_owned(),
                    message: message.to_owned(),
                });
            }
        };

        if !self.hosted_domains.is_empty() {
            let rule = "access.hosted_domains";
            match subject.claims.get("hd").and_then(Value::as_str) {
                Some(hd)
                    if self
                        .hosted_domains
                        .iter()
                        .any(|d| d.eq_ignore_ascii_case(hd)) =>
                {
                    trace.push(TraceEntry::new(
                        "access",
                        Some("allowed".to_owned()),
                        rule,
                        format!("claim `hd` is `{hd}`"),
                    ));
                }
                found => refuse(
                    rule,
                    "This forum only accepts accounts of its own organisation. Log in with your \
                     organisation account.",
                    match found {
                        Some(hd) => format!("claim `hd` is `{hd}`, not an allowed domain"),
                        None => "claim `hd` is absent (not a Google Workspace account)".to_owned(),
                    },
                    trace,
                ),
            }
        }

        if !self.allowed_email_domains.is_empty() {
            let rule = "access.allowed_email_domains";
            match subject.email {
                Some((email, true)) => {
                    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
                    if self.allowed_email_domains.iter().any(|p| p.matches(domain)) {
                        trace.push(TraceEntry::new(
                            "access",
                            Some("allowed".to_owned()),
                            rule,
                            format!("verified email domain `{domain}` is allowed"),
                        ));
                    } else {
                        refuse(
                            rule,
                            "Your email address is not in a domain this forum accepts.",
                            format!("email domain `{domain}` is not allowed"),
                            trace,
                        );
                    }
                }
                Some((_, false)) => refuse(
                    rule,
                    "Your email address is not verified at the identity provider, so this forum \
                     cannot check its domain. Verify it there and try again.",
                    "the email is not verified, so its domain proves nothing".to_owned(),
                    trace,
                ),
                None => refuse(
                    rule,
                    "The identity provider did not share an email address for your account, so \
                     this forum cannot check its domain.",
                    "no email from the IdP".to_owned(),
                    trace,
                ),
            }
        }

        if !self.allowed_groups.is_empty() {
            let rule = "access.allowed_groups";
            match subject.groups {
                GroupsOutcome::Known { names, .. } => {
                    match names
                        .iter()
                        .find(|n| self.allowed_groups.iter().any(|g| g.matches(n)))
                    {
                        Some(name) => trace.push(TraceEntry::new(
                            "access",
                            Some("allowed".to_owned()),
                            rule,
                            format!("member of `{name}`"),
                        )),
                        None => refuse(
                            rule,
                            "Your account is not in any group that may use this forum.",
                            "not a member of any allowed group".to_owned(),
                            trace,
                        ),
                    }
                }
                GroupsOutcome::Unknown { .. } | GroupsOutcome::Refused { .. } => refuse(
                    rule,
                    "Your group memberships could not be read from the identity provider, so \
                     this forum cannot check whether you may use it.",
                    "the user's groups are unknown".to_owned(),
                    trace,
                ),
            }
        }
        refusal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::groups::GroupsConfig;
    use crate::mapping::username::NameRules;
    use serde_json::json;

    fn compile(config: AccessConfig) -> CompiledAccess {
        let mut problems = Vec::new();
        let groups = CompiledGroups::compile(
            &GroupsConfig::default(),
            NameRules {
                min_length: 3,
                max_length: 20,
                unicode: false,
            },
            &mut problems,
            &mut Vec::new(),
        );
        let access = CompiledAccess::compile(&config, &groups, &mut problems, &mut Vec::new());
        assert_eq!(problems, []);
        access
    }

    fn known(names: &[&str]) -> GroupsOutcome {
        GroupsOutcome::Known {
            names: names.iter().map(|s| (*s).to_owned()).collect(),
            admin: false,
            moderator: false,
        }
    }

    fn decide(
        access: &CompiledAccess,
        claims: Value,
        email: Option<(&str, bool)>,
        groups: &GroupsOutcome,
    ) -> Option<String> {
        let Value::Object(claims) = claims else {
            unreachable!()
        };
        access
            .check(
                &Subject {
                    claims: &claims,
                    email,
                    groups,
                },
                &mut Vec::new(),
            )
            .map(|r| r.rule)
    }

    #[test]
    fn no_rules_allow_everyone() {
        let access = compile(AccessConfig::default());
        assert_eq!(decide(&access, json!({}), None, &known(&[])), None);
    }

    #[test]
    fn allowed_groups_any_of_with_patterns() {
        let access = compile(AccessConfig {
            allowed_groups: vec!["members".to_owned(), "team_*".to_owned()],
            ..AccessConfig::default()
        });
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["members"], None),
            (&["Team_Blue", "x"], None),
            (&["guests"], Some("access.allowed_groups")),
            (&[], Some("access.allowed_groups")),
        ];
        for (groups, expected) in cases {
            assert_eq!(
                decide(&access, json!({}), None, &known(groups)).as_deref(),
                *expected,
                "{groups:?}"
            );
        }
        let unknown = GroupsOutcome::Unknown {
            reason: "overage".to_owned(),
        };
        assert_eq!(
            decide(&access, json!({}), None, &unknown).as_deref(),
            Some("access.allowed_groups")
        );
    }

    #[test]
    fn email_domains_need_a_verified_email() {
        let access = compile(AccessConfig {
            allowed_email_domains: vec!["Example.com".to_owned(), "*.example.org".to_owned()],
            ..AccessConfig::default()
        });
        let cases: &[(Option<(&str, bool)>, bool)] = &[
            (Some(("a@example.com", true)), true),
            (Some(("a@EXAMPLE.COM", true)), true),
            (Some(("a@mail.example.org", true)), true),
            (Some(("a@example.org", true)), false),
            (Some(("a@badexample.org", true)), false),
            (Some(("a@example.com.evil.net", true)), false),
            (Some(("a@example.com", false)), false),
            (None, false),
        ];
        for (email, allowed) in cases {
            assert_eq!(
                decide(&access, json!({}), *email, &known(&[])).is_none(),
                *allowed,
                "{email:?}"
            );
        }
    }

    #[test]
    fn hosted_domain_claim() {
        let access = compile(AccessConfig {
            hosted_domains: vec!["example.com".to_owned()],
            ..AccessConfig::default()
        });
        let cases = [
            (json!({"hd": "example.com"}), true),
            (json!({"hd": "other.com"}), false),
            (json!({}), false),
            (json!({"hd": ["example.com"]}), false),
        ];
        for (claims, allowed) in cases {
            assert_eq!(
                decide(&access, claims.clone(), None, &known(&[])).is_none(),
                allowed,
                "{claims}"
            );
        }
    }

    #[test]
    fn first_failing_rule_is_reported_but_all_are_traced() {
        let access = compile(AccessConfig {
            allowed_groups: vec!["members".to_owned()],
            hosted_domains: vec!["example.com".to_owned()],
            ..AccessConfig::default()
        });
        let Value::Object(claims) = json!({}) else {
            unreachable!()
        };
        let mut trace = Vec::new();
        let refusal = access.check(
            &Subject {
                claims: &claims,
                email: None,
                groups: &known(&[]),
            },
            &mut trace,
        );
        assert_eq!(
            refusal.map(|r| r.rule).as_deref(),
            Some("access.hosted_domains")
        );
        assert_eq!(trace.len(), 2);
    }

    #[test]
    fn warns_about_allowed_groups_nobody_can_have() {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let groups = CompiledGroups::compile(
            &GroupsConfig {
                rename: [(
                    "forum-user".to_owned(),
                    crate::mapping::OneOrMany::One("members".to_owned()),
                )]
                .into(),
                managed: vec!["members".to_owned()],
                ..GroupsConfig::default()
            },
            NameRules {
                min_length: 3,
                max_length: 20,
                unicode: false,
            },
            &mut problems,
            &mut warnings,
        );
        CompiledAccess::compile(
            &AccessConfig {
                allowed_groups: vec!["Members".to_owned(), "staff_team".to_owned()],
                ..AccessConfig::default()
            },
            &groups,
            &mut problems,
            &mut warnings,
        );
        assert_eq!(problems, []);
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert!(warnings[0].starts_with(
            "access.allowed_groups[1]: no rename or group rule produces `staff_team`"
        ));
    }

    #[test]
    fn rejects_malformed_domains() {
        let mut problems = Vec::new();
        let groups = CompiledGroups::compile(
            &GroupsConfig::default(),
            NameRules {
                min_length: 3,
                max_length: 20,
                unicode: false,
            },
            &mut problems,
            &mut Vec::new(),
        );
        CompiledAccess::compile(
            &AccessConfig {
                allowed_email_domains: vec!["user@example.com".to_owned(), "localhost".to_owned()],
                hosted_domains: vec!["".to_owned()],
                ..AccessConfig::default()
            },
            &groups,
            &mut problems,
            &mut Vec::new(),
        );
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "access.allowed_email_domains[0]",
                "access.allowed_email_domains[1]",
                "access.hosted_domains[0]"
            ]
        );
    }
}

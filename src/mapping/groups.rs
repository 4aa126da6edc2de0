//! `[groups]`: turns the IdP's group and role claims into Discourse group names and the
//! `admin`/`moderator` flags, following DiscourseConnect's group semantics (`add_groups` /
//! `remove_groups`, or the full `groups` list under `discourse_connect_overrides_groups`) and
//! Discourse's group-name rules. Handles Keycloak full group paths and Entra ID object ids and
//! groups overage (Microsoft identity platform "groups overage claim").

use std::collections::{BTreeMap, BTreeSet};

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::TraceEntry;
use super::claims::ClaimPath;
use super::username::NameRules;
use crate::discourse::connect::{Field, Payload};
use crate::problem::ConfigProblem;

/// A single string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, in order.
    pub fn as_slice(&self) -> &[String] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }
}

/// How Keycloak-style full group paths (`/parent/child`) are turned into names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMode {
    /// Leave paths as they are (renames and rules then see `/parent/child`).
    #[default]
    Keep,
    /// Keep the last segment: `/staff/admins` → `admins`.
    Leaf,
    /// Join the segments with `path_separator`: `/staff/admins` → `staff-admins`.
    Flatten,
    /// One name per ancestor, each flattened: `/staff/admins` → `staff`, `staff-admins`.
    Expand,
}

/// Case folding of group names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseMode {
    /// Lower-case every name (Discourse compares group names case-insensitively anyway).
    #[default]
    Lower,
    /// Keep names as the IdP and the config spell them.
    Keep,
}

/// What happens to an IdP group that no rename or rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// Ignore it (default: only groups the config names reach Discourse).
    #[default]
    Drop,
    /// Send it under its (transformed) IdP name.
    Keep,
}

/// How groups reach Discourse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupMode {
    /// `add_groups` for the user's groups, `remove_groups` for managed groups they are not in.
    #[default]
    AddRemove,
    /// One `groups` list; needs `discourse_connect_overrides_groups`, which removes the user
    /// from every non-automatic group not listed.
    Full,
}

/// What to do when the user's groups cannot be known (Entra overage, or no group claim).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownGroups {
    /// Refuse the login.
    Deny,
    /// Log in, but send no group changes and no `admin`/`moderator`.
    Unknown,
    /// Treat the user as a member of no group (only for a missing claim).
    Empty,
}

/// One `[[groups.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRule {
    /// A regular expression matched against the whole (transformed) IdP group name,
    /// case-insensitively. Exactly one of `pattern` and `group` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// An exact IdP group name (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Discourse group name(s) to add; `$1`, `${name}` refer to the pattern's captures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<OneOrMany>,
    /// Members are Discourse admins (and `admin=false` is sent to everyone else).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
    /// Members are Discourse moderators (and `moderator=false` is sent to everyone else).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub moderator: bool,
}

/// `[groups]` as written by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupsConfig {
    /// Claim paths holding group or role names (a list or a single string each).
    pub sources: OneOrMany,
    pub paths: PathMode,
    pub path_separator: String,
    /// Prefixes removed from IdP names (the first that matches, case-insensitively).
    pub strip_prefixes: Vec<String>,
    pub case: CaseMode,
    /// Exact renames, IdP name (or Entra object id) → Discourse name(s).
    pub rename: BTreeMap<String, OneOrMany>,
    pub rules: Vec<GroupRule>,
    pub unmatched: Unmatched,
    pub mode: GroupMode,
    /// Discourse groups owned by the IdP (names or `*`/`?` patterns): removed when the user is
    /// no longer in them. Other groups are never removed in `add_remove` mode.
    pub managed: Vec<String>,
    /// Entra groups overage: `deny` or `unknown`; defaults to `unknown` in `add_remove` mode
    /// and `deny` in `full` mode (where sending no list would empty the user's groups).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overage: Option<UnknownGroups>,
    /// No group claim at all: `empty` (default), `unknown` or `deny`.
    pub missing: UnknownGroups,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        Self {
            sources: OneOrMany::Many(vec!["groups".to_owned()]),
            paths: PathMode::Keep,
            path_separator: "-".to_owned(),
            strip_prefixes: Vec::new(),
            case: CaseMode::Lower,
            rename: BTreeMap::new(),
            rules: Vec::new(),
            unmatched: Unmatched::Drop,
            mode: GroupMode::AddRemove,
            managed: Vec::new(),
            overage: None,
            missing: UnknownGroups::Empty,
        }
    }
}

/// A `*`/`?` pattern over Discourse group names, case-insensitive.
#[derive(Debug, Clone)]
pub struct Glob {
    text: String,
    regex: Regex,
}

impl Glob {
    /// Compiles a pattern; `*` matches any run of characters, `?` one character.
    pub fn new(text: &str) -> Result<Glob, String> {
        let mut pattern = String::from("^");
        for c in text.chars() {
            match c {
                '*' => pattern.push_str(".*"),
                '?' => pattern.push('.'),
                other => pattern.push_str(&regex::escape(&other.to_string())),
            }
        }
        pattern.push('$');
        RegexBuilder::new(&pattern)
            .case_insensitive(true)
            .build()
            .map(|regex| Glob {
                text: text.to_owned(),
                regex,
            })
            .map_err(|e| e.to_string())
    }

    /// Whether the pattern has wildcards (otherwise it is a plain name).
    pub fn is_literal(&self) -> bool {
        !self.text.contains(['*', '?'])
    }

    pub fn matches(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[derive(Debug, Clone)]
struct CompiledRule {
    key: String,
    regex: Regex,
    to: Vec<String>,
    admin: bool,
    moderator: bool,
}

/// The compiled `[groups]` section.
#[derive(Debug, Clone)]
pub struct CompiledGroups {
    sources: Vec<ClaimPath>,
    reads_groups_claim: bool,
    paths: PathMode,
    separator: String,
    strip_prefixes: Vec<String>,
    case: CaseMode,
    /// Lower-cased IdP name → (config key, targets).
    rename: BTreeMap<String, (String, Vec<String>)>,
    rules: Vec<CompiledRule>,
    unmatched: Unmatched,
    mode: GroupMode,
    /// Managed names this config knows, for `remove_groups`.
    removable: Vec<String>,
    overage: UnknownGroups,
    missing: UnknownGroups,
    manages_admin: bool,
    manages_moderator: bool,
    names: NameRules,
    /// Whether the config can send any group at all.
    produces_groups: bool,
    /// Literal names the config can produce (rename targets, capture-free rule targets).
    known_names: BTreeSet<String>,
    /// Whether some rule builds names from captures (or unmatched groups are kept).
    open_ended: bool,
}

/// The user's groups, as far as they can be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupsOutcome {
    /// The Discourse groups (valid names, sorted, deduplicated) and roles.
    Known {
        names: Vec<String>,
        admin: bool,
        moderator: bool,
    },
    /// The groups could not be read; nothing about groups or roles is sent.
    Unknown { reason: String },
    /// The groups could not be read and the config says to refuse the login.
    Refused {
        rule: String,
        message: String,
        reason: String,
    },
}

impl CompiledGroups {
    /// Compiles `[groups]`; names are checked with the username rules from `[mapping]`.
    pub fn compile(
        config: &GroupsConfig,
        names: NameRules,
        problems: &mut Vec<ConfigProblem>,
        warnings: &mut Vec<String>,
    ) -> CompiledGroups {
        let mut sources = Vec::new();
        let source_list = config.sources.as_slice();
        for (index, path) in source_list.iter().enumerate() {
            let key = match config.sources {
                OneOrMany::One(_) => "groups.sources".to_owned(),
                OneOrMany::Many(_) => format!("groups.sources[{index}]"),
            };
            match ClaimPath::parse(path) {
                Ok(path) => sources.push(path),
                Err(message) => problems.push(ConfigProblem::new(key, message)),
            }
        }
        let reads_groups_claim = sources.iter().any(|p| p.as_str() == "groups");

        if config.path_separator.is_empty()
            && matches!(config.paths, PathMode::Flatten | PathMode::Expand)
        {
            problems.push(ConfigProblem::new(
                "groups.path_separator",
                "must not be empty when groups.paths is `flatten` or `expand`",
            ));
        }
        for (index, prefix) in config.strip_prefixes.iter().enumerate() {
            if prefix.is_empty() {
                problems.push(ConfigProblem::new(
                    format!("groups.strip_prefixes[{index}]"),
                    "an empty prefix strips nothing",
                ));
            }
        }

        let fold = |name: &str| match config.case {
            CaseMode::Lower => name.to_lowercase(),
            CaseMode::Keep => name.to_owned(),
        };
        let mut known_names = BTreeSet::new();
        let mut rename = BTreeMap::new();
        for (from, to) in &config.rename {
            let key = format!("groups.rename.{}", quote_key(from));
            if to.as_slice().is_empty() {
                problems.push(ConfigProblem::new(
                    &key,
                    "renames to no group; remove the entry, or leave unmatched = \"drop\"",
                ));
            }
            let mut targets = Vec::new();
            for target in to.as_slice() {
                let target = fold(target);
                if let Err(why) = names.check_group_name(&target) {
                    problems.push(ConfigProblem::new(
                        &key,
                        format!("`{target}` is not a valid Discourse group name: {why}"),
                    ));
                }
                known_names.insert(target.clone());
                targets.push(target);
            }
            if rename
                .insert(from.to_lowercase(), (key.clone(), targets))
                .is_some()
            {
                problems.push(ConfigProblem::new(
                    key,
                    "duplicates another rename that differs only in case",
                ));
            }
        }

        let mut rules = Vec::new();
        let mut open_ended = config.unmatched == Unmatched::Keep;
        for (index, rule) in config.rules.iter().enumerate() {
            let key = format!("groups.rules[{index}]");
            let regex = match (&rule.pattern, &rule.group) {
                // Checked as written (for readable errors), then anchored so that a rule
                // always matches whole names: `team` must not match `a-team-b`.
                (Some(pattern), None) => Regex::new(pattern)
                    .and_then(|_| {
                        RegexBuilder::new(&format!("^(?:{pattern})$"))
                            .case_insensitive(true)
                            .build()
                    })
                    .map_err(|e| {
                        ConfigProblem::new(
                            format!("{key}.pattern"),
                            format!("invalid regex: {}", one_line(&e.to_string())),
                        )
                    }),
                (None, Some(group)) => RegexBuilder::new(&format!("^{}$", regex::escape(group)))
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| ConfigProblem::new(format!("{key}.group"), e.to_string())),
                (Some(_), Some(_)) => Err(ConfigProblem::new(
                    &key,
                    "set either `pattern` (a regex) or `group` (an exact name), not both",
                )),
                (None, None) => Err(ConfigProblem::new(
                    &key,
                    "needs `pattern` (a regex) or `group` (an exact name)",
                )),
            };
            let to: Vec<String> = rule
                .to
                .as_ref()
                .map(|t| t.as_slice().to_vec())
                .unwrap_or_default();
            if to.is_empty() && !rule.admin && !rule.moderator {
                problems.push(ConfigProblem::new(
                    &key,
                    "does nothing: give it `to`, `admin = true` or `moderator = true`",
                ));
            }
            let regex = match regex {
                Ok(regex) => regex,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            for target in &to {
                match check_replacement(target, &regex) {
                    Err(message) => problems.push(ConfigProblem::new(format!("{key}.to"), message)),
                    Ok(true) => open_ended = true,
                    Ok(false) => {
                        let target = fold(target);
                        if let Err(why) = names.check_group_name(&target) {
                            problems.push(ConfigProblem::new(
                                format!("{key}.to"),
                                format!("`{target}` is not a valid Discourse group name: {why}"),
                            ));
                        }
                        known_names.insert(target);
                    }
                }
            }
            rules.push(CompiledRule {
                key,
                regex,
                to,
                admin: rule.admin,
                moderator: rule.moderator,
            });
        }

        let mut managed = Vec::new();
        for (index, pattern) in config.managed.iter().enumerate() {
            let key = format!("groups.managed[{index}]");
            match Glob::new(pattern) {
                Ok(glob) => {
                    if glob.is_literal() {
                        let literal = fold(pattern);
                        if let Err(why) = names.check_group_name(&literal) {
                            problems.push(ConfigProblem::new(
                                &key,
                                format!("`{literal}` is not a valid Discourse group name: {why}"),
                            ));
                        }
                    }
                    managed.push(glob);
                }
                Err(message) => problems.push(ConfigProblem::new(key, message)),
            }
        }
        let mut removable: BTreeSet<String> = managed
            .iter()
            .filter(|g| g.is_literal())
            .map(|g| fold(g.as_str()))
            .collect();
        for name in &known_names {
            if managed.iter().any(|g| g.matches(name)) {
                removable.insert(name.clone());
            }
        }
        for glob in managed.iter().filter(|g| !g.is_literal()) {
            if !known_names.iter().any(|n| glob.matches(n)) {
                warnings.push(format!(
                    "groups.managed: pattern `{}` matches none of the group names this config \
                     can produce (rename targets and rule targets without captures), so nothing \
                     is ever removed for it; list such groups by name",
                    glob.as_str()
                ));
            }
        }

        let overage = match (config.overage, config.mode) {
            (Some(UnknownGroups::Empty), _) => {
                problems.push(ConfigProblem::new(
                    "groups.overage",
                    "must be `deny` or `unknown`: an overage token does not mean the user has no groups",
                ));
                UnknownGroups::Deny
            }
            (Some(policy), _) => policy,
            (None, GroupMode::AddRemove) => UnknownGroups::Unknown,
            (None, GroupMode::Full) => UnknownGroups::Deny,
        };
        if config.mode == GroupMode::Full {
            for (key, policy) in [
                ("groups.overage", overage),
                ("groups.missing", config.missing),
            ] {
                if policy == UnknownGroups::Unknown {
                    problems.push(ConfigProblem::new(
                        key,
                        "`unknown` cannot work with mode = \"full\": Discourse treats a missing \
                         `groups` list as \"no groups\" and would empty the user's groups; use `deny`",
                    ));
                }
            }
        }

        let manages_admin = config.rules.iter().any(|r| r.admin);
        let manages_moderator = config.rules.iter().any(|r| r.moderator);
        let produces_groups = open_ended || !known_names.is_empty();
        match config.mode {
            GroupMode::Full => {
                warnings.push(
                    "groups.mode: \"full\" needs Discourse's discourse_connect_overrides_groups \
                     setting, and then removes the user from every group not listed, including \
                     groups added by hand in Discourse"
                        .to_owned(),
                );
                if !config.managed.is_empty() {
                    warnings.push(
                        "groups.managed: ignored with mode = \"full\", where every listed group is \
                         managed by the IdP"
                            .to_owned(),
                    );
                }
            }
            GroupMode::AddRemove => {
                if produces_groups && config.managed.is_empty() {
                    warnings.push(
                        "groups.managed: empty, so groups are only ever added; a user who leaves \
                         a group in the IdP stays in the Discourse group. List the groups the IdP \
                         owns in groups.managed"
                            .to_owned(),
                    );
                }
            }
        }

        CompiledGroups {
            sources,
            reads_groups_claim,
            paths: config.paths,
            separator: config.path_separator.clone(),
            strip_prefixes: config.strip_prefixes.clone(),
            case: config.case,
            rename,
            rules,
            unmatched: config.unmatched,
            mode: config.mode,
            removable: removable.into_iter().collect(),
            overage,
            missing: config.missing,
            manages_admin,
            manages_moderator,
            names,
            produces_groups,
            known_names,
            open_ended,
        }
    }

    /// Whether `name` (a Discourse group name) could ever be produced by this config; `None`
    /// when rules with captures or `unmatched = "keep"` make that unknowable.
    pub fn can_produce(&self, name: &str) -> Option<bool> {
        if self.open_ended {
            None
        } else {
            Some(
                self.known_names
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(name)),
            )
        }
    }

    /// The claims the groups are read from.
    pub(super) fn claim_paths(&self) -> &[ClaimPath] {
        &self.sources
    }

    /// Whether any group change or role can reach Discourse.
    pub fn is_active(&self) -> bool {
        self.produces_groups
            || self.manages_admin
            || self.manages_moderator
            || !self.removable.is_empty()
    }

    /// Runs the pipeline over the claims.
    pub fn evaluate(
        &self,
        claims: &Map<String, Value>,
        trace: &mut Vec<TraceEntry>,
        dropped: &mut Vec<(String, String)>,
    ) -> GroupsOutcome {
        if !self.is_active() {
            return GroupsOutcome::Known {
                names: Vec::new(),
                admin: false,
                moderator: false,
            };
        }
        if self.reads_groups_claim && claims.get("groups").is_none_or(Value::is_null) {
            let overage = claims
                .get("_claim_names")
                .and_then(Value::as_object)
                .is_some_and(|names| names.contains_key("groups"))
                || claims
                    .get("hasgroups")
                    .and_then(super::claims::as_bool)
                    .unwrap_or(false);
            if overage {
                let reason = "the IdP sent a groups overage marker (`_claim_names.groups` or \
                              `hasgroups`) instead of the groups: the user is in too many groups \
                              for the token"
                    .to_owned();
                return self.unknown("groups.overage", self.overage, reason, trace);
            }
        }

        let mut raw: Vec<(String, String)> = Vec::new();
        let mut any_source = false;
        for path in &self.sources {
            let Some(value) = path.lookup(claims) else {
                continue;
            };
            any_source = true;
            collect_names(&value, path.as_str(), &mut raw, dropped);
        }
        if !any_source && self.missing != UnknownGroups::Empty {
            let reason = "none of the group claims in groups.sources is present".to_owned();
            return self.unknown("groups.missing", self.missing, reason, trace);
        }
        if !any_source {
            trace.push(TraceEntry::new(
                "groups",
                None,
                "groups.missing",
                "none of the group claims in groups.sources is present; treated as no groups",
            ));
        }

        let mut out: BTreeMap<String, String> = BTreeMap::new();
        let mut admin = false;
        let mut moderator = false;
        for (source, original) in raw {
            for name in self.transform(&original) {
                let mut produced = Vec::new();
                let mut rules_used = Vec::new();
                let mut grants_admin = false;
                let mut grants_moderator = false;
                if let Some((key, targets)) = self.rename.get(&name.to_lowercase()) {
                    produced.extend(targets.iter().cloned());
                    rules_used.push(key.clone());
                }
                for rule in &self.rules {
                    let Some(captures) = rule.regex.captures(&name) else {
                        continue;
                    };
                    rules_used.push(rule.key.clone());
                    grants_admin |= rule.admin;
                    grants_moderator |= rule.moderator;
                    for target in &rule.to {
                        let mut expanded = String::new();
                        captures.expand(target, &mut expanded);
                        produced.push(self.fold(&expanded));
                    }
                }
                admin |= grants_admin;
                moderator |= grants_moderator;
                let rule_label = if rules_used.is_empty() {
                    if self.unmatched == Unmatched::Keep {
                        produced.push(name.clone());
                    }
                    "groups.unmatched".to_owned()
                } else {
                    rules_used.join(", ")
                };
                let mut sent = Vec::new();
                let mut invalid = Vec::new();
                for candidate in produced {
                    match self.names.check_group_name(&candidate) {
                        Ok(()) => {
                            sent.push(candidate.clone());
                            out.entry(candidate.to_lowercase()).or_insert(candidate);
                        }
                        Err(why) => {
                            dropped.push((
                                candidate.clone(),
                                format!(
                                    "from IdP group `{original}`: not a valid Discourse group name: {why}"
                                ),
                            ));
                            invalid.push(format!("`{candidate}`"));
                        }
                    }
                }
                let mut described = if name == original {
                    format!("IdP group `{original}` (from claim `{source}`)")
                } else {
                    format!("IdP group `{original}` as `{name}` (from claim `{source}`)")
                };
                for (granted, role) in [(grants_admin, "admin"), (grants_moderator, "moderator")] {
                    if granted {
                        described.push_str(&format!("; grants {role}"));
                    }
                }
                if !invalid.is_empty() {
                    described.push_str(&format!(
                        "; not sent, invalid in Discourse: {}",
                        invalid.join(", ")
                    ));
                }
                if rules_used.is_empty() && self.unmatched == Unmatched::Drop {
                    dropped.push((
                        original.clone(),
                        "no rename or rule matches it and groups.unmatched = \"drop\"".to_owned(),
                    ));
                    trace.push(TraceEntry::new(
                        "idp_group",
                        None,
                        rule_label,
                        format!("{described}: no rename or rule matches; dropped"),
                    ));
                } else {
                    let value = (!sent.is_empty()).then(|| sent.join(","));
                    trace.push(TraceEntry::new("idp_group", value, rule_label, described));
                }
            }
        }
        GroupsOutcome::Known {
            names: out.into_values().collect(),
            admin,
            moderator,
        }
    }

    fn unknown(
        &self,
        rule: &str,
        policy: UnknownGroups,
        reason: String,
        trace: &mut Vec<TraceEntry>,
    ) -> GroupsOutcome {
        match policy {
            UnknownGroups::Deny => {
                trace.push(TraceEntry::new(
                    "groups",
                    None,
                    rule,
                    format!("{reason}; login refused"),
                ));
                GroupsOutcome::Refused {
                    rule: rule.to_owned(),
                    message: "Your group memberships could not be read from the identity \
                              provider, and this forum needs them to log you in."
                        .to_owned(),
                    reason,
                }
            }
            UnknownGroups::Unknown | UnknownGroups::Empty => {
                trace.push(TraceEntry::new(
                    "groups",
                    None,
                    rule,
                    format!("{reason}; groups unknown, so no group or role changes are sent"),
                ));
                GroupsOutcome::Unknown { reason }
            }
        }
    }

    fn fold(&self, name: &str) -> String {
        match self.case {
            CaseMode::Lower => name.to_lowercase(),
            CaseMode::Keep => name.to_owned(),
        }
    }

    /// Path handling, prefix stripping and case folding, in that order.
    fn transform(&self, original: &str) -> Vec<String> {
        let mut names = Vec::new();
        if original.starts_with('/') {
            let segments: Vec<&str> = original.split('/').filter(|s| !s.is_empty()).collect();
            if segments.is_empty() {
                return names;
            }
            match self.paths {
                PathMode::Keep => names.push(original.to_owned()),
                PathMode::Leaf => names.extend(segments.last().map(|s| (*s).to_owned())),
                PathMode::Flatten => names.push(segments.join(&self.separator)),
                PathMode::Expand => {
                    for end in 1..=segments.len() {
                        names.push(segments[..end].join(&self.separator));
                    }
                }
            }
        } else {
            names.push(original.to_owned());
        }
        names
            .into_iter()
            .map(|name| {
                let stripped = self
                    .strip_prefixes
                    .iter()
                    .find_map(|prefix| strip_prefix_ignore_case(&name, prefix))
                    .filter(|rest| !rest.is_empty())
                    .unwrap_or(&name)
                    .to_owned();
                self.fold(&stripped)
            })
            .collect()
    }

    /// Writes the groups outcome into the payload.
    pub fn apply(
        &self,
        outcome: &GroupsOutcome,
        payload: &mut Payload,
        trace: &mut Vec<TraceEntry>,
    ) {
        let GroupsOutcome::Known {
            names,
            admin,
            moderator,
        } = outcome
        else {
            return;
        };
        match self.mode {
            GroupMode::Full => {
                if self.produces_groups {
                    payload.set_groups(Field::Groups, names);
                    trace.push(TraceEntry::new(
                        "groups",
                        Some(names.join(",")),
                        "groups.mode",
                        "mode = \"full\": the complete list of the user's Discourse groups",
                    ));
                }
            }
            GroupMode::AddRemove => {
                if !names.is_empty() {
                    payload.set_groups(Field::AddGroups, names);
                    trace.push(TraceEntry::new(
                        "add_groups",
                        Some(names.join(",")),
                        "groups.mode",
                        "every group the user is in",
                    ));
                }
                let remove: Vec<&String> = self
                    .removable
                    .iter()
                    .filter(|m| !names.iter().any(|n| n.eq_ignore_ascii_case(m)))
                    .collect();
                if !remove.is_empty() {
                    payload.set_groups(Field::RemoveGroups, &remove);
                    trace.push(TraceEntry::new(
                        "remove_groups",
                        Some(
                            remove
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(","),
                        ),
                        "groups.managed",
                        "managed groups the user is not in",
                    ));
                }
            }
        }
        for (managed, field, value, what) in [
            (self.manages_admin, Field::Admin, *admin, "admin"),
            (
                self.manages_moderator,
                Field::Moderator,
                *moderator,
                "moderator",
            ),
        ] {
            if managed {
                payload.set_bool(field, value);
                trace.push(TraceEntry::new(
                    what,
                    Some(value.to_string()),
                    "groups.rules",
                    if value {
                        format!("a group rule with {what} = true matched")
                    } else {
                        format!(
                            "no group rule with {what} = true matched; false is sent so that a \
                             revoked role is removed in Discourse"
                        )
                    },
                ));
            }
        }
    }
}

/// Flattens a claim value into IdP group names; values that are not text are dropped.
fn collect_names(
    value: &Value,
    source: &str,
    out: &mut Vec<(String, String)>,
    dropped: &mut Vec<(String, String)>,
) {
    match value {
        Value::String(s) => {
            if !s.trim().is_empty() {
                out.push((source.to_owned(), s.trim().to_owned()));
            }
        }
        Value::Number(n) => out.push((source.to_owned(), n.to_string())),
        Value::Array(items) => {
            for item in items {
                collect_names(item, source, out, dropped);
            }
        }
        Value::Null => {}
        other => dropped.push((
            other.to_string(),
            format!("claim `{source}` holds a value that is not a group name"),
        )),
    }
}

fn strip_prefix_ignore_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
}

/// Writes a TOML key the way an operator would, quoted when needed.
fn quote_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks that `$1` / `${name}` references in a replacement exist in the regex; `Ok(true)` when
/// the replacement uses captures at all.
fn check_replacement(replacement: &str, regex: &Regex) -> Result<bool, String> {
    let names: Vec<&str> = regex.capture_names().flatten().collect();
    let groups = regex.captures_len();
    let mut uses = false;
    let mut rest = replacement;
    while let Some(dollar) = rest.find('$') {
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
            continue;
        }
        let (reference, remaining) = if let Some(braced) = rest.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => return Err(format!("unclosed `${{` in `{replacement}`")),
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        rest = remaining;
        if reference.is_empty() {
            return Err(format!(
                "a `$` in `{replacement}` is not followed by a capture name or number (write `$$` for a dollar sign)"
            ));
        }
        uses = true;
        let exists = match reference.parse::<usize>() {
            Ok(index) => index < groups,
            Err(_) => names.contains(&reference),
        };
        if !exists {
            let hint = match reference.find(|c: char| !c.is_ascii_digit()) {
                Some(end) if end > 0 => format!(
                    "; `${reference}` names the whole `{reference}`, write `${{{}}}{}` for group {} followed by text",
                    &reference[..end],
                    &reference[end..],
                    &reference[..end]
                ),
                _ => String::new(),
            };
            return Err(format!(
                "`{replacement}` refers to capture `{reference}`, which the pattern does not have \
                 (it has {} numbered group(s){}){hint}",
                groups - 1,
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" and named group(s) {}", names.join(", "))
                }
            ));
        }
    }
    Ok(uses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RULES: NameRules = NameRules {
        min_length: 3,
        max_length: 20,
        unicode: false,
    };

    fn compile(config: GroupsConfig) -> CompiledGroups {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let compiled = CompiledGroups::compile(&config, RULES, &mut problems, &mut warnings);
        assert_eq!(problems, [], "unexpected problems");
        compiled
    }

    fn problems(config: GroupsConfig) -> Vec<String> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        CompiledGroups::compile(&config, RULES, &mut problems, &mut warnings);
        problems.into_iter().map(|p| p.to_string()).collect()
    }

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn names(compiled: &CompiledGroups, value: Value) -> Vec<String> {
        let mut trace = Vec::new();
        let mut dropped = Vec::new();
        match compiled.evaluate(&claims(value), &mut trace, &mut dropped) {
            GroupsOutcome::Known { names, .. } => names,
            other => panic!("expected known groups, got {other:?}"),
        }
    }

    fn keep_all() -> GroupsConfig {
        GroupsConfig {
            unmatched: Unmatched::Keep,
            ..GroupsConfig::default()
        }
    }

    #[test]
    fn keycloak_path_modes() {
        let groups = json!({"groups": ["/corp/writers", "/corp", "/eng/backend/dbas", "plain"]});
        let cases: &[(PathMode, &[&str])] = &[
            (PathMode::Leaf, &["corp", "dbas", "plain", "writers"]),
            (
                PathMode::Flatten,
                &["corp", "corp-writers", "eng-backend-dbas", "plain"],
            ),
            (
                PathMode::Expand,
                &[
                    "corp",
                    "corp-writers",
                    "eng",
                    "eng-backend",
                    "eng-backend-dbas",
                    "plain",
                ],
            ),
        ];
        for (mode, expected) in cases {
            let compiled = compile(GroupsConfig {
                paths: *mode,
                ..keep_all()
            });
            assert_eq!(names(&compiled, groups.clone()), *expected, "{mode:?}");
        }
    }

    #[test]
    fn full_paths_kept_are_reported_invalid_never_sent() {
        let compiled = compile(keep_all());
        let mut trace = Vec::new();
        let mut dropped = Vec::new();
        let outcome = compiled.evaluate(
            &claims(json!({"groups": ["/staff/admins", "members"]})),
            &mut trace,
            &mut dropped,
        );
        assert_eq!(
            outcome,
            GroupsOutcome::Known {
                names: vec!["members".to_owned()],
                admin: false,
                moderator: false
            }
        );
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].0, "/staff/admins");
        assert!(dropped[0].1.contains("`/`"), "{}", dropped[0].1);
    }

    #[test]
    fn leaf_and_plain_duplicates_collapse() {
        let compiled = compile(GroupsConfig {
            paths: PathMode::Leaf,
            ..keep_all()
        });
        assert_eq!(
            names(&compiled, json!({"groups": ["/x/devs", "devs", "DEVS"]})),
            ["devs"]
        );
    }

    #[test]
    fn prefix_strip_and_case() {
        let cases: &[(CaseMode, &[&str])] = &[
            (CaseMode::Lower, &["readers", "writers"]),
            (CaseMode::Keep, &["Readers", "writers"]),
        ];
        for (case, expected) in cases {
            let compiled = compile(GroupsConfig {
                strip_prefixes: vec!["discourse-".to_owned(), "app_".to_owned()],
                case: *case,
                ..keep_all()
            });
            assert_eq!(
                names(
                    &compiled,
                    json!({"groups": ["Discourse-Readers", "app_writers", "discourse-"]})
                ),
                *expected,
                "{case:?}"
            );
        }
    }

    #[test]
    fn renames_one_to_many_and_guids() {
        let compiled = compile(GroupsConfig {
            rename: BTreeMap::from([
                (
                    "0B8A9C52-1111-4e6e-9a1b-2f6f0c4d5e6f".to_owned(),
                    OneOrMany::One("engineering".to_owned()),
                ),
                (
                    "staff".to_owned(),
                    OneOrMany::Many(vec!["staff_team".to_owned(), "announcements".to_owned()]),
                ),
            ]),
            ..GroupsConfig::default()
        });
        assert_eq!(
            names(
                &compiled,
                json!({"groups": ["0b8a9c52-1111-4e6e-9a1b-2f6f0c4d5e6f", "Staff", "other"]})
            ),
            ["announcements", "engineering", "staff_team"]
        );
    }

    #[test]
    fn regex_rules_with_captures_and_roles() {
        let compiled = compile(GroupsConfig {
            rules: vec![
                GroupRule {
                    pattern: Some("^team-(.+)$".to_owned()),
                    to: Some(OneOrMany::One("team_$1".to_owned())),
                    ..GroupRule::default()
                },
                GroupRule {
                    pattern: Some("^(?P<site>[a-z]+)-admins$".to_owned()),
                    to: Some(OneOrMany::One("${site}_staff".to_owned())),
                    admin: true,
                    ..GroupRule::default()
                },
                GroupRule {
                    group: Some("Forum-Mods".to_owned()),
                    moderator: true,
                    ..GroupRule::default()
                },
            ],
            ..GroupsConfig::default()
        });
        let mut trace = Vec::new();
        let mut dropped = Vec::new();
        let outcome = compiled.evaluate(
            &claims(
                json!({"groups": ["team-blue", "forum-admins", "forum-mods", "misc", "xteam-red"]}),
            ),
            &mut trace,
            &mut dropped,
        );
        assert_eq!(
            outcome,
            GroupsOutcome::Known {
                names: vec!["forum_staff".to_owned(), "team_blue".to_owned()],
                admin: true,
                moderator: true
            }
        );
        let dropped_names: Vec<_> = dropped.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(dropped_names, ["misc", "xteam-red"]);
    }

    #[test]
    fn unanchored_patterns_still_match_whole_names() {
        let compiled = compile(GroupsConfig {
            rules: vec![GroupRule {
                pattern: Some("team".to_owned()),
                to: Some(OneOrMany::One("team".to_owned())),
                ..GroupRule::default()
            }],
            ..GroupsConfig::default()
        });
        assert_eq!(
            names(&compiled, json!({"groups": ["team", "a-team-b"]})),
            ["team"]
        );
    }

    #[test]
    fn sources_accept_lists_single_strings_and_several_claims() {
        let compiled = compile(GroupsConfig {
            sources: OneOrMany::Many(vec![
                "groups".to_owned(),
                "realm_access.roles".to_owned(),
                "department".to_owned(),
            ]),
            ..keep_all()
        });
        assert_eq!(
            names(
                &compiled,
                json!({"groups": "writers", "realm_access": {"roles": ["editor"]}, "department": "sales"})
            ),
            ["editor", "sales", "writers"]
        );
    }

    #[test]
    fn entra_overage_policies() {
        let overage = json!({"_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {}}});
        let cases = [
            (None, "unknown"),
            (Some(UnknownGroups::Unknown), "unknown"),
            (Some(UnknownGroups::Deny), "refused"),
        ];
        for (policy, expected) in cases {
            let compiled = compile(GroupsConfig {
                overage: policy,
                ..keep_all()
            });
            let mut trace = Vec::new();
            let mut dropped = Vec::new();
            let outcome = compiled.evaluate(&claims(overage.clone()), &mut trace, &mut dropped);
            let kind = match outcome {
                GroupsOutcome::Known { .. } => "known",
                GroupsOutcome::Unknown { .. } => "unknown",
                GroupsOutcome::Refused { .. } => "refused",
            };
            assert_eq!(kind, expected, "{policy:?}");
        }
        // `hasgroups` is the implicit-flow form of the same marker.
        let compiled = compile(keep_all());
        let outcome = compiled.evaluate(
            &claims(json!({"hasgroups": "true"})),
            &mut Vec::new(),
            &mut Vec::new(),
        );
        assert!(matches!(outcome, GroupsOutcome::Unknown { .. }));
    }

    #[test]
    fn missing_claim_policies() {
        let cases = [
            (UnknownGroups::Empty, "known"),
            (UnknownGroups::Unknown, "unknown"),
            (UnknownGroups::Deny, "refused"),
        ];
        for (policy, expected) in cases {
            let compiled = compile(GroupsConfig {
                missing: policy,
                ..keep_all()
            });
            let outcome = compiled.evaluate(&claims(json!({})), &mut Vec::new(), &mut Vec::new());
            let kind = match outcome {
                GroupsOutcome::Known { .. } => "known",
                GroupsOutcome::Unknown { .. } => "unknown",
                GroupsOutcome::Refused { .. } => "refused",
            };
            assert_eq!(kind, expected, "{policy:?}");
        }
    }

    fn apply(compiled: &CompiledGroups, value: Value) -> Payload {
        let mut trace = Vec::new();
        let outcome = compiled.evaluate(&claims(value), &mut trace, &mut Vec::new());
        let mut payload = Payload::new();
        compiled.apply(&outcome, &mut payload, &mut trace);
        payload
    }

    #[test]
    fn add_and_remove_managed_groups() {
        let compiled = compile(GroupsConfig {
            rename: BTreeMap::from([
                ("a".to_owned(), OneOrMany::One("team_a".to_owned())),
                ("b".to_owned(), OneOrMany::One("team_b".to_owned())),
                ("c".to_owned(), OneOrMany::One("readers".to_owned())),
            ]),
            managed: vec!["team_*".to_owned(), "alumni".to_owned()],
            ..GroupsConfig::default()
        });
        let payload = apply(&compiled, json!({"groups": ["a", "c"]}));
        assert_eq!(payload.get(Field::AddGroups), Some("readers,team_a"));
        assert_eq!(payload.get(Field::RemoveGroups), Some("alumni,team_b"));
        assert_eq!(payload.get(Field::Groups), None);
        assert_eq!(payload.get(Field::Admin), None);
    }

    #[test]
    fn full_mode_sends_the_whole_list_even_when_empty() {
        let compiled = compile(GroupsConfig {
            mode: GroupMode::Full,
            ..keep_all()
        });
        assert_eq!(
            apply(&compiled, json!({"groups": ["bbb", "aaa"]})).get(Field::Groups),
            Some("aaa,bbb")
        );
        assert_eq!(
            apply(&compiled, json!({"groups": []})).get(Field::Groups),
            Some("")
        );
    }

    #[test]
    fn managed_roles_are_sent_as_explicit_false() {
        let compiled = compile(GroupsConfig {
            rules: vec![GroupRule {
                group: Some("forum-admins".to_owned()),
                admin: true,
                ..GroupRule::default()
            }],
            ..GroupsConfig::default()
        });
        let admin = apply(&compiled, json!({"groups": ["forum-admins"]}));
        assert_eq!(admin.get(Field::Admin), Some("true"));
        assert_eq!(admin.get(Field::Moderator), None);
        let demoted = apply(&compiled, json!({"groups": ["users"]}));
        assert_eq!(demoted.get(Field::Admin), Some("false"));
        // Unknown groups (overage) leave the role alone.
        let unknown = apply(&compiled, json!({"_claim_names": {"groups": "src1"}}));
        assert_eq!(unknown.get(Field::Admin), None);
    }

    #[test]
    fn config_problems_have_dotted_keys() {
        let config = GroupsConfig {
            rename: BTreeMap::from([(
                "/staff/x".to_owned(),
                OneOrMany::One("bad name".to_owned()),
            )]),
            rules: vec![
                GroupRule {
                    pattern: Some("([".to_owned()),
                    to: Some(OneOrMany::One("x".to_owned())),
                    ..GroupRule::default()
                },
                GroupRule {
                    pattern: Some("^a-(.+)$".to_owned()),
                    to: Some(OneOrMany::One("a_$2".to_owned())),
                    ..GroupRule::default()
                },
                GroupRule {
                    pattern: Some("x".to_owned()),
                    group: Some("x".to_owned()),
                    to: Some(OneOrMany::One("xxx".to_owned())),
                    ..GroupRule::default()
                },
                GroupRule {
                    group: Some("x".to_owned()),
                    ..GroupRule::default()
                },
            ],
            mode: GroupMode::Full,
            overage: Some(UnknownGroups::Unknown),
            ..GroupsConfig::default()
        };
        let found = problems(config);
        let keys: Vec<&str> = found
            .iter()
            .map(|p| p.split(": ").next().unwrap_or(""))
            .collect();
        assert_eq!(
            keys,
            [
                "groups.rename.\"/staff/x\"",
                "groups.rules[0].pattern",
                "groups.rules[1].to",
                "groups.rules[2]",
                "groups.rules[3]",
                "groups.overage"
            ],
            "{found:#?}"
        );
        assert!(found[1].contains("invalid regex"));
    }

    #[test]
    fn replacement_references_are_checked() {
        let regex = Regex::new("^(?P<a>x)(y)$").unwrap();
        assert_eq!(check_replacement("plain", &regex), Ok(false));
        assert_eq!(check_replacement("${1}_${2}_${a}_$$", &regex), Ok(true));
        // Like the regex crate, `$1_` means the group named `1_`; the error says so.
        let error = check_replacement("$1_x", &regex).unwrap_err();
        assert!(error.contains("${1}"), "{error}");
        assert!(check_replacement("$3", &regex).is_err());
        assert!(check_replacement("${b}", &regex).is_err());
        assert!(check_replacement("cost$", &regex).is_err());
    }

    #[test]
    fn globs() {
        let glob = Glob::new("team_*").unwrap();
        assert!(glob.matches("team_blue"));
        assert!(glob.matches("TEAM_x"));
        assert!(!glob.matches("ateam_x"));
        assert!(Glob::new("a?c").unwrap().matches("abc"));
        assert!(Glob::new("a.c").unwrap().is_literal());
        assert!(!Glob::new("a.c").unwrap().matches("abc"));
    }
}

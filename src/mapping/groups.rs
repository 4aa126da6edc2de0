//! `[groups]`: turns the IdP's group and role claims into Discourse group names and the
//! `admin`/`moderator` flags, following DiscourseConnect's group semantics (`add_groups` /
//! `remove_groups`, or the full `groups` list under `discourse_connect_overrides_groups`) and
//! Discourse's group-name rules. Reads every common claim shape (see [`super::shapes`]), group
//! paths with or without a leading delimiter (Keycloak `/a/b`, GitLab `a/b`), Entra ID object
//! ids and the groups overage marker (Microsoft identity platform "groups overage claim"),
//! optionally resolved through Microsoft Graph by the login flow.
//!
//! Fail safe: when a source is present but cannot be read, or the overage cannot be resolved,
//! the groups are *unknown*: nothing about groups or roles is sent (or the login is refused
//! where sending nothing would empty the user's groups), never "no groups".

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::TraceEntry;
use super::claims::ClaimPath;
use super::shapes::{self, SourceShape};
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

/// How group paths (`/parent/child`, `parent/child`) are turned into names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMode {
    /// Leave paths as they are: renames and rules see `/parent/child`; a path that reaches
    /// Discourse unrenamed is flattened, the only valid form of it.
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

/// What to do when the user's groups cannot be known (no group claim, or a shape that cannot
/// be read).
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

/// What to do with an Entra ID groups overage marker (`_claim_names.groups` / `hasgroups`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overage {
    /// Refuse the login.
    Deny,
    /// Log in, but send no group changes and no `admin`/`moderator`.
    Unknown,
    /// Ask Microsoft Graph for the user's transitive group memberships with the login's
    /// access token; when that fails, the groups are unknown (refused in `full` mode).
    Graph,
}

/// The user's groups as Microsoft Graph answered them, for an overage login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphGroups {
    /// Group object ids of every group the user is a member of, directly or transitively.
    Fetched(Vec<String>),
    /// Graph could not be asked or refused; the reason, without tokens or claim values.
    Failed(String),
}

/// Where and how long to ask Microsoft Graph (`groups.graph_url`, `groups.graph_timeout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphSettings {
    /// The Graph API root, e.g. `https://graph.microsoft.com/v1.0` (no trailing slash).
    pub base_url: url::Url,
    /// The whole lookup, every page and retry included.
    pub timeout: Duration,
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
    /// Claim paths holding group or role names, in any shape `shapes` can read.
    pub sources: OneOrMany,
    /// Per source (keyed by its path as written in `sources`): how to read shapes that cannot
    /// be recognised by themselves (delimited strings, the name field of objects, the path
    /// delimiter).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub shapes: BTreeMap<String, SourceShape>,
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
    /// Entra groups overage: `deny`, `unknown` or `graph`; defaults to `unknown` in
    /// `add_remove` mode and `deny` in `full` mode (where sending no list would empty the
    /// user's groups).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overage: Option<Overage>,
    /// A source present in a shape that cannot be read: `unknown` or `deny`; defaults like
    /// `overage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<UnknownGroups>,
    /// No group claim at all: `empty` (default), `unknown` or `deny`.
    pub missing: UnknownGroups,
    /// Microsoft Graph API root for `overage = "graph"` (national clouds have their own).
    pub graph_url: String,
    /// Time allowed for the whole Graph lookup (all pages), e.g. `5s`.
    pub graph_timeout: String,
}

/// Microsoft Graph's global endpoint, version 1.0.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";

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
            unreadable: None,
            missing: UnknownGroups::Empty,
            shapes: BTreeMap::new(),
            graph_url: DEFAULT_GRAPH_URL.to_owned(),
            graph_timeout: "5s".to_owned(),
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

/// One compiled source: where it is and how to read it.
#[derive(Debug, Clone)]
struct CompiledSource {
    path: ClaimPath,
    shape: SourceShape,
    /// The path delimiter (`/` unless the shape says otherwise).
    delimiter: String,
}

/// The compiled `[groups]` section.
#[derive(Debug, Clone)]
pub struct CompiledGroups {
    sources: Vec<CompiledSource>,
    /// The paths of `sources`, for [`CompiledGroups::claim_paths`].
    source_paths: Vec<ClaimPath>,
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
    overage: Overage,
    /// What an unresolved overage (Graph failed, or not asked) becomes.
    overage_fallback: UnknownGroups,
    graph: Option<GraphSettings>,
    unreadable: UnknownGroups,
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
            let shape = config.shapes.get(path).cloned().unwrap_or_default();
            match ClaimPath::parse(path) {
                Ok(path) => sources.push(CompiledSource {
                    path,
                    delimiter: shape
                        .path_delimiter
                        .clone()
                        .unwrap_or_else(|| "/".to_owned()),
                    shape,
                }),
                Err(message) => problems.push(ConfigProblem::new(key, message)),
            }
        }
        for (name, shape) in &config.shapes {
            let key = format!("groups.shapes.{}", quote_key(name));
            if !source_list.contains(name) {
                problems.push(ConfigProblem::new(
                    &key,
                    "is not one of groups.sources (write the source exactly as listed there)",
                ));
            }
            for (field, value) in [
                ("separator", &shape.separator),
                ("name_field", &shape.name_field),
                ("path_delimiter", &shape.path_delimiter),
            ] {
                if value.as_deref() == Some("") {
                    problems.push(ConfigProblem::new(
                        format!("{key}.{field}"),
                        "must not be empty (use \" \" for whitespace)",
                    ));
                }
            }
            if let Some(delimiter) = &shape.path_delimiter
                && delimiter.trim().is_empty()
                && !delimiter.is_empty()
            {
                problems.push(ConfigProblem::new(
                    format!("{key}.path_delimiter"),
                    "must be visible text such as `/` or `:`",
                ));
            }
            if shape.separator.is_some() && shape.separator == shape.path_delimiter {
                problems.push(ConfigProblem::new(
                    format!("{key}.separator"),
                    "is also the path_delimiter; a name could not be told from a path segment",
                ));
            }
        }
        let source_paths: Vec<ClaimPath> = sources.iter().map(|s| s.path.clone()).collect();
        let reads_groups_claim = source_paths.iter().any(|p| p.as_str() == "groups");

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

        let mode_default = match config.mode {
            GroupMode::AddRemove => UnknownGroups::Unknown,
            GroupMode::Full => UnknownGroups::Deny,
        };
        let overage = config.overage.unwrap_or(match config.mode {
            GroupMode::AddRemove => Overage::Unknown,
            GroupMode::Full => Overage::Deny,
        });
        let unreadable = match config.unreadable {
            Some(UnknownGroups::Empty) => {
                problems.push(ConfigProblem::new(
                    "groups.unreadable",
                    "must be `deny` or `unknown`: a claim that cannot be read does not mean the \
                     user has no groups",
                ));
                UnknownGroups::Deny
            }
            Some(policy) => policy,
            None => mode_default,
        };
        let graph = compile_graph(config, overage, reads_groups_claim, problems, warnings);
        let overage_as_unknown = match overage {
            Overage::Deny => UnknownGroups::Deny,
            Overage::Unknown => UnknownGroups::Unknown,
            Overage::Graph => mode_default,
        };
        if config.mode == GroupMode::Full {
            for (key, policy) in [
                ("groups.overage", overage_as_unknown),
                ("groups.unreadable", unreadable),
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

        never_matching_rules(config, &sources, warnings);
        for (index, pattern) in config.managed.iter().enumerate() {
            let literal = fold(pattern);
            if config.mode == GroupMode::AddRemove
                && !open_ended
                && !pattern.contains(['*', '?'])
                && !known_names.contains(&literal)
            {
                warnings.push(format!(
                    "groups.managed[{index}]: no rename or group rule produces `{literal}` (and \
                     groups.unmatched is \"drop\"), so it is removed from every user at each \
                     login and never added"
                ));
            }
        }

        CompiledGroups {
            sources,
            source_paths,
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
            overage_fallback: overage_as_unknown,
            graph,
            unreadable,
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

    /// Whether some name this config can produce matches `glob`; `None` when rules with
    /// captures or `unmatched = "keep"` make that unknowable.
    pub fn can_produce_match(&self, glob: &Glob) -> Option<bool> {
        if self.open_ended {
            None
        } else {
            Some(self.known_names.iter().any(|n| glob.matches(n)))
        }
    }

    /// The claims the groups are read from.
    pub(super) fn claim_paths(&self) -> &[ClaimPath] {
        &self.source_paths
    }

    /// Whether these claims carry the Entra groups overage marker in place of `groups`.
    fn has_overage_marker(&self, claims: &Map<String, Value>) -> bool {
        self.reads_groups_claim
            && claims.get("groups").is_none_or(Value::is_null)
            && (claims
                .get("_claim_names")
                .and_then(Value::as_object)
                .is_some_and(|names| names.contains_key("groups"))
                || claims
                    .get("hasgroups")
                    .and_then(super::claims::as_bool)
                    .unwrap_or(false))
    }

    /// Where to ask Microsoft Graph for this login's groups: set when `overage = "graph"`, the
    /// groups matter, and the claims carry the overage marker.
    pub fn graph_lookup(&self, claims: &Map<String, Value>) -> Option<&GraphSettings> {
        if self.overage != Overage::Graph {
            return None;
        }
        self.graph
            .as_ref()
            .filter(|_| self.has_overage_marker(claims))
    }

    /// Whether any group change or role can reach Discourse.
    pub fn is_active(&self) -> bool {
        self.produces_groups
            || self.manages_admin
            || self.manages_moderator
            || !self.removable.is_empty()
    }

    /// Runs the pipeline over the claims; `graph` is Microsoft Graph's answer when the login
    /// flow asked it (see [`CompiledGroups::graph_lookup`]).
    pub fn evaluate(
        &self,
        claims: &Map<String, Value>,
        graph: Option<&GraphGroups>,
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
        let mut claims = Cow::Borrowed(claims);
        let mut from_graph = false;
        if self.has_overage_marker(&claims) {
            let marker = "the IdP sent a groups overage marker (`_claim_names.groups` or \
                          `hasgroups`) instead of the groups: the user is in too many groups \
                          for the token";
            let policy = match self.overage {
                Overage::Deny => UnknownGroups::Deny,
                Overage::Unknown => UnknownGroups::Unknown,
                Overage::Graph => match graph {
                    Some(GraphGroups::Fetched(ids)) => {
                        trace.push(TraceEntry::new(
                            "groups",
                            Some(format!("{} group(s)", ids.len())),
                            "groups.overage",
                            format!(
                                "{marker}; Microsoft Graph listed the user's groups (transitive \
                                 membership, as object ids) for claim `groups`"
                            ),
                        ));
                        let ids = ids.iter().map(|id| Value::String(id.clone())).collect();
                        claims
                            .to_mut()
                            .insert("groups".to_owned(), Value::Array(ids));
                        from_graph = true;
                        UnknownGroups::Empty
                    }
                    Some(GraphGroups::Failed(why)) => {
                        let reason = format!("{marker}; asking Microsoft Graph failed: {why}");
                        count_unknown("graph_failed");
                        return self.unknown(
                            "groups.overage",
                            self.overage_fallback,
                            reason,
                            trace,
                        );
                    }
                    None => {
                        let reason = format!(
                            "{marker}; overage = \"graph\", but Microsoft Graph was not asked \
                             (explain has no access token)"
                        );
                        return self.unknown(
                            "groups.overage",
                            self.overage_fallback,
                            reason,
                            trace,
                        );
                    }
                },
            };
            if !from_graph {
                count_unknown("overage");
                return self.unknown("groups.overage", policy, marker.to_owned(), trace);
            }
        }

        // (source, delimiter, name), deduplicated per source.
        let mut raw: Vec<(&CompiledSource, String)> = Vec::new();
        let mut any_source = false;
        for source in &self.sources {
            let Some(value) = source.path.lookup(&claims) else {
                continue;
            };
            any_source = true;
            match shapes::read(&value, &source.shape) {
                Ok(names) => {
                    let mut seen = BTreeSet::new();
                    for name in names {
                        if seen.insert(name.clone()) {
                            raw.push((source, name));
                        }
                    }
                }
                Err(unreadable) => {
                    let claim = source.path.as_str();
                    tracing::warn!(
                        claim,
                        json_type = unreadable.json_type,
                        "a group claim has a shape the bridge cannot read; the user's groups \
                         are unknown"
                    );
                    count_unknown("unreadable");
                    let reason = format!(
                        "claim `{claim}` is a JSON {} the bridge cannot read as group names ({}); \
                         see groups.shapes",
                        unreadable.json_type, unreadable.why
                    );
                    return self.unknown("groups.unreadable", self.unreadable, reason, trace);
                }
            }
        }
        if !any_source && self.missing != UnknownGroups::Empty {
            let reason = "none of the group claims in groups.sources is present".to_owned();
            count_unknown("missing");
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
            let claim = source.path.as_str();
            for name in self.transform(&original, &source.delimiter) {
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
                    let candidate = self.sanitize(candidate, &source.delimiter);
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
                    format!("IdP group `{original}` (from claim `{claim}`)")
                } else {
                    format!("IdP group `{original}` as `{name}` (from claim `{claim}`)")
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
    /// A name holding `delimiter` is a group path, with or without a leading delimiter.
    fn transform(&self, original: &str, delimiter: &str) -> Vec<String> {
        let mut names = Vec::new();
        if original.contains(delimiter) {
            let segments: Vec<&str> = original
                .split(delimiter)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
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

    /// The documented repair of a produced name: a group path that reached Discourse as it
    /// is (`paths = "keep"`, or a rename target) becomes its segments joined with
    /// `path_separator`, the same name `paths = "flatten"` gives. Other invalid names are not
    /// guessed at; they are dropped with the reason.
    fn sanitize(&self, candidate: String, delimiter: &str) -> String {
        let candidate = candidate.trim();
        if !candidate.contains(delimiter) || self.separator.is_empty() {
            return candidate.to_owned();
        }
        candidate
            .split(delimiter)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(&self.separator)
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

/// Counts a login whose groups could not be known, by why.
fn count_unknown(reason: &'static str) {
    metrics::counter!("bridge_groups_unknown_total", "reason" => reason).increment(1);
}

/// Validates the Microsoft Graph settings; they are only needed with `overage = "graph"`.
fn compile_graph(
    config: &GroupsConfig,
    overage: Overage,
    reads_groups_claim: bool,
    problems: &mut Vec<ConfigProblem>,
    warnings: &mut Vec<String>,
) -> Option<GraphSettings> {
    let base_url = match url::Url::parse(config.graph_url.trim_end_matches('/')) {
        Ok(url)
            if url.scheme() == "https"
                || (url.scheme() == "http"
                    && url.host().is_some_and(|host| match host {
                        url::Host::Domain(name) => name == "localhost",
                        url::Host::Ipv4(ip) => ip.is_loopback(),
                        url::Host::Ipv6(ip) => ip.is_loopback(),
                    })) =>
        {
            if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
                problems.push(ConfigProblem::new(
                    "groups.graph_url",
                    "must be a plain API root such as https://graph.microsoft.com/v1.0 (no \
                     query, fragment or user)",
                ));
                None
            } else {
                Some(url)
            }
        }
        Ok(_) => {
            problems.push(ConfigProblem::new(
                "groups.graph_url",
                "must be an https URL (http only on a loopback address, for tests): the access \
                 token travels with every request",
            ));
            None
        }
        Err(e) => {
            problems.push(ConfigProblem::new(
                "groups.graph_url",
                format!("not a URL: {e}"),
            ));
            None
        }
    };
    let timeout = match humantime::parse_duration(config.graph_timeout.trim()) {
        Ok(timeout) if !timeout.is_zero() && timeout <= Duration::from_secs(60) => Some(timeout),
        Ok(_) => {
            problems.push(ConfigProblem::new(
                "groups.graph_timeout",
                "must be more than 0 and at most 60s: the user's browser waits for it",
            ));
            None
        }
        Err(e) => {
            problems.push(ConfigProblem::new(
                "groups.graph_timeout",
                format!("not a duration such as `5s`: {e}"),
            ));
            None
        }
    };
    if overage == Overage::Graph && !reads_groups_claim {
        warnings.push(
            "groups.overage: \"graph\" replaces the `groups` claim, which is not in \
             groups.sources, so the Graph answer is never used"
                .to_owned(),
        );
    }
    Some(GraphSettings {
        base_url: base_url?,
        timeout: timeout?,
    })
}

/// Why an IdP name written in a rename or a `group = …` rule can never be seen by it, if so:
/// the steps before renames and rules (paths, prefix stripping) never leave such a name.
fn unreachable_name(
    config: &GroupsConfig,
    sources: &[CompiledSource],
    name: &str,
) -> Option<String> {
    if config.paths != PathMode::Keep
        && let Some(source) = sources.iter().find(|s| name.contains(s.delimiter.as_str()))
    {
        let (mode, hint) = match config.paths {
            PathMode::Leaf => ("leaf", "write only the last segment"),
            PathMode::Flatten => (
                "flatten",
                "write the segments joined with groups.path_separator",
            ),
            _ => (
                "expand",
                "write the segments joined with groups.path_separator",
            ),
        };
        return Some(format!(
            "`{name}` is a path, but groups.paths = \"{mode}\" turns paths from claim `{}` into \
             names without `{}`; {hint}",
            source.path.as_str(),
            source.delimiter
        ));
    }
    config
        .strip_prefixes
        .iter()
        .find(|prefix| {
            !prefix.is_empty()
                && strip_prefix_ignore_case(name, prefix).is_some_and(|rest| !rest.is_empty())
        })
        .map(|prefix| {
            format!(
                "`{name}` starts with `{prefix}`, which groups.strip_prefixes removes before \
                 renames and rules see the name; write it without the prefix"
            )
        })
}

/// Warns about renames and `group = …` rules that can never match (see [`unreachable_name`]).
fn never_matching_rules(
    config: &GroupsConfig,
    sources: &[CompiledSource],
    warnings: &mut Vec<String>,
) {
    for from in config.rename.keys() {
        if let Some(why) = unreachable_name(config, sources, from) {
            warnings.push(format!(
                "groups.rename.{}: {why}, so this rename never applies",
                quote_key(from)
            ));
        }
    }
    for (index, rule) in config.rules.iter().enumerate() {
        if let Some(group) = &rule.group
            && let Some(why) = unreachable_name(config, sources, group)
        {
            warnings.push(format!(
                "groups.rules[{index}].group: {why}, so this rule never matches"
            ));
        }
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
        match compiled.evaluate(&claims(value), None, &mut trace, &mut dropped) {
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
    fn full_paths_kept_are_flattened_when_sent() {
        let compiled = compile(keep_all());
        let mut trace = Vec::new();
        let mut dropped = Vec::new();
        let outcome = compiled.evaluate(
            &claims(json!({"groups": ["/staff/admins", "members"]})),
            None,
            &mut trace,
            &mut dropped,
        );
        assert_eq!(
            outcome,
            GroupsOutcome::Known {
                names: vec!["members".to_owned(), "staff-admins".to_owned()],
                admin: false,
                moderator: false
            }
        );
        assert_eq!(dropped, []);
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
            None,
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
            (Some(Overage::Unknown), "unknown"),
            (Some(Overage::Deny), "refused"),
            (Some(Overage::Graph), "unknown"),
        ];
        for (policy, expected) in cases {
            let compiled = compile(GroupsConfig {
                overage: policy,
                ..keep_all()
            });
            let mut trace = Vec::new();
            let mut dropped = Vec::new();
            let outcome =
                compiled.evaluate(&claims(overage.clone()), None, &mut trace, &mut dropped);
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
            None,
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
            let outcome =
                compiled.evaluate(&claims(json!({})), None, &mut Vec::new(), &mut Vec::new());
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
        let outcome = compiled.evaluate(&claims(value), None, &mut trace, &mut Vec::new());
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
            overage: Some(Overage::Unknown),
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

    #[test]
    fn group_paths_with_and_without_leading_delimiter() {
        let compiled = compile(GroupsConfig {
            paths: PathMode::Expand,
            ..keep_all()
        });
        assert_eq!(
            names(
                &compiled,
                json!({"groups": ["platform/backend", "/platform/backend/", " docs / api "]})
            ),
            ["docs", "docs-api", "platform", "platform-backend"]
        );
        let colon = compile(GroupsConfig {
            paths: PathMode::Leaf,
            shapes: BTreeMap::from([(
                "groups".to_owned(),
                SourceShape {
                    path_delimiter: Some(":".to_owned()),
                    ..SourceShape::default()
                },
            )]),
            ..keep_all()
        });
        assert_eq!(names(&colon, json!({"groups": ["org:eng:dbas"]})), ["dbas"]);
    }

    #[test]
    fn unreadable_sources_make_the_groups_unknown() {
        let compiled = compile(GroupsConfig {
            sources: OneOrMany::Many(vec!["groups".to_owned(), "roles".to_owned()]),
            rules: vec![GroupRule {
                group: Some("admins".to_owned()),
                admin: true,
                ..GroupRule::default()
            }],
            managed: vec!["writers".to_owned()],
            ..keep_all()
        });
        let mut trace = Vec::new();
        let outcome = compiled.evaluate(
            &claims(json!({"groups": ["admins"], "roles": {"a": ["b"]}})),
            None,
            &mut trace,
            &mut Vec::new(),
        );
        assert!(
            matches!(outcome, GroupsOutcome::Unknown { .. }),
            "{outcome:?}"
        );
        let entry = trace.iter().find(|t| t.output == "groups").unwrap();
        assert_eq!(entry.rule, "groups.unreadable");
        assert!(
            entry.note.contains("claim `roles` is a JSON object"),
            "{}",
            entry.note
        );
        let payload = apply(&compiled, json!({"groups": ["admins", false]}));
        assert_eq!(payload.get(Field::Admin), None);
        assert_eq!(payload.get(Field::RemoveGroups), None);
        assert_eq!(payload.get(Field::AddGroups), None);

        let full = compile(GroupsConfig {
            mode: GroupMode::Full,
            ..keep_all()
        });
        let outcome = full.evaluate(
            &claims(json!({"groups": true})),
            None,
            &mut Vec::new(),
            &mut Vec::new(),
        );
        assert!(
            matches!(outcome, GroupsOutcome::Refused { ref rule, .. } if rule == "groups.unreadable")
        );
    }

    #[test]
    fn graph_answers_replace_the_overage_marker() {
        let compiled = compile(GroupsConfig {
            overage: Some(Overage::Graph),
            rename: BTreeMap::from([(
                "0b8a9c52-6a7e-4e6e-9a1b-2f6f0c4d5e6f".to_owned(),
                OneOrMany::One("engineering".to_owned()),
            )]),
            managed: vec!["engineering".to_owned(), "sales".to_owned()],
            ..GroupsConfig::default()
        });
        let overage = claims(json!({"_claim_names": {"groups": "src1"}}));
        assert!(compiled.graph_lookup(&overage).is_some());
        assert!(
            compiled
                .graph_lookup(&claims(json!({"groups": ["x"]})))
                .is_none()
        );
        let fetched = GraphGroups::Fetched(vec!["0B8A9C52-6A7E-4E6E-9A1B-2F6F0C4D5E6F".to_owned()]);
        let outcome = compiled.evaluate(&overage, Some(&fetched), &mut Vec::new(), &mut Vec::new());
        assert_eq!(
            outcome,
            GroupsOutcome::Known {
                names: vec!["engineering".to_owned()],
                admin: false,
                moderator: false
            }
        );
        let failed = GraphGroups::Failed("Graph answered 403".to_owned());
        let mut trace = Vec::new();
        let outcome = compiled.evaluate(&overage, Some(&failed), &mut trace, &mut Vec::new());
        assert!(matches!(outcome, GroupsOutcome::Unknown { .. }));
        assert!(trace[0].note.contains("Graph answered 403"), "{trace:?}");
    }

    #[test]
    fn graph_settings_are_validated() {
        for (url, timeout, expected) in [
            ("https://graph.microsoft.us/v1.0", "5s", vec![]),
            ("http://127.0.0.1:9/v1.0", "1s", vec![]),
            (
                "http://graph.example.com/v1.0",
                "5s",
                vec!["groups.graph_url"],
            ),
            (
                "https://graph.microsoft.com/v1.0?x=1",
                "0s",
                vec!["groups.graph_url", "groups.graph_timeout"],
            ),
            (
                "nonsense",
                "five",
                vec!["groups.graph_url", "groups.graph_timeout"],
            ),
        ] {
            let found = problems(GroupsConfig {
                overage: Some(Overage::Graph),
                graph_url: url.to_owned(),
                graph_timeout: timeout.to_owned(),
                ..GroupsConfig::default()
            });
            let keys: Vec<&str> = found
                .iter()
                .map(|p| p.split(": ").next().unwrap_or(""))
                .collect();
            assert_eq!(keys, expected, "{url} {timeout}: {found:?}");
        }
    }

    #[test]
    fn shapes_must_name_a_source() {
        let found = problems(GroupsConfig {
            shapes: BTreeMap::from([
                ("roles".to_owned(), SourceShape::default()),
                (
                    "groups".to_owned(),
                    SourceShape {
                        separator: Some(String::new()),
                        ..SourceShape::default()
                    },
                ),
            ]),
            ..GroupsConfig::default()
        });
        let keys: Vec<&str> = found
            .iter()
            .map(|p| p.split(": ").next().unwrap_or(""))
            .collect();
        assert_eq!(
            keys,
            ["groups.shapes.groups.separator", "groups.shapes.roles"],
            "{found:?}"
        );
    }

    #[test]
    fn warns_about_entries_that_can_never_match() {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        CompiledGroups::compile(
            &GroupsConfig {
                paths: PathMode::Leaf,
                rules: vec![GroupRule {
                    group: Some("/staff/admins".to_owned()),
                    admin: true,
                    ..GroupRule::default()
                }],
                rename: BTreeMap::from([
                    ("x".to_owned(), OneOrMany::One("xxx".to_owned())),
                    ("app_y".to_owned(), OneOrMany::One("yyy".to_owned())),
                ]),
                strip_prefixes: vec!["app_".to_owned()],
                managed: vec!["xxx".to_owned(), "gone".to_owned()],
                ..GroupsConfig::default()
            },
            RULES,
            &mut problems,
            &mut warnings,
        );
        assert_eq!(problems, []);
        let keys: Vec<&str> = warnings
            .iter()
            .map(|w| w.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            keys,
            [
                "groups.rename.app_y",
                "groups.rules[0].group",
                "groups.managed[1]"
            ],
            "{warnings:#?}"
        );
    }

    /// The warning for an unreadable claim names the claim and its JSON type, never a value.
    #[test]
    fn unreadable_claim_warning_shows_no_values() {
        #[derive(Clone, Default)]
        struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let compiled = compile(keep_all());
        tracing::subscriber::with_default(subscriber, || {
            compiled.evaluate(
                &claims(json!({"groups": {"secret-team": ["secret-member"]}})),
                None,
                &mut Vec::new(),
                &mut Vec::new(),
            );
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("WARN"), "{log}");
        assert!(log.contains("claim=\"groups\""), "{log}");
        assert!(log.contains("json_type=\"object\""), "{log}");
        assert!(!log.contains("secret"), "{log}");
    }

    mod fail_safe {
        use super::*;
        use crate::mapping::shapes;
        use proptest::prelude::*;

        fn arbitrary_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                (-1e6f64..1e6).prop_map(|f| json!(f)),
                "[ -~]{0,12}".prop_map(Value::String),
                prop::sample::select(vec![
                    "forum-admin",
                    "forum-staff",
                    "a/b",
                    "/x/y",
                    ";",
                    "",
                    " ",
                    "name",
                    "id"
                ])
                .prop_map(|s| json!(s)),
            ];
            leaf.prop_recursive(3, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map(
                        prop::sample::select(vec![
                            "name",
                            "displayName",
                            "value",
                            "id",
                            "forum-admin",
                            "x",
                            " "
                        ])
                        .prop_map(str::to_owned),
                        inner,
                        0..4
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn config(mode: GroupMode) -> GroupsConfig {
            GroupsConfig {
                rename: BTreeMap::from([(
                    "forum-staff".to_owned(),
                    OneOrMany::One("forum_staff".to_owned()),
                )]),
                rules: vec![
                    GroupRule {
                        group: Some("forum-admin".to_owned()),
                        admin: true,
                        ..GroupRule::default()
                    },
                    GroupRule {
                        group: Some("forum-mod".to_owned()),
                        moderator: true,
                        ..GroupRule::default()
                    },
                ],
                managed: vec!["forum_staff".to_owned(), "alumni".to_owned()],
                mode,
                ..GroupsConfig::default()
            }
        }

        fn run(compiled: &CompiledGroups, groups: Value) -> (GroupsOutcome, Payload) {
            let mut trace = Vec::new();
            let outcome = compiled.evaluate(
                &claims(json!({ "groups": groups })),
                None,
                &mut trace,
                &mut Vec::new(),
            );
            let mut payload = Payload::new();
            compiled.apply(&outcome, &mut payload, &mut trace);
            (outcome, payload)
        }

        proptest! {
            /// Whatever JSON the group claim holds, `remove_groups`, `groups` and a `false`
            /// role are only sent when the value was read.
            #[test]
            fn nothing_is_taken_away_unless_understood(value in arbitrary_json()) {
                let understood = match ClaimPath::parse("groups").unwrap().lookup(&claims(json!({"groups": value.clone()}))) {
                    None => true,
                    Some(present) => shapes::read(&present, &SourceShape::default()).is_ok(),
                };
                for mode in [GroupMode::AddRemove, GroupMode::Full] {
                    let compiled = compile(config(mode));
                    let (outcome, payload) = run(&compiled, value.clone());
                    if !understood {
                        prop_assert!(!matches!(outcome, GroupsOutcome::Known { .. }), "{:?}", outcome);
                        prop_assert_eq!(payload.get(Field::RemoveGroups), None);
                        prop_assert_eq!(payload.get(Field::Groups), None);
                        prop_assert_eq!(payload.get(Field::Admin), None);
                        prop_assert_eq!(payload.get(Field::Moderator), None);
                        prop_assert_eq!(payload.get(Field::AddGroups), None);
                    }
                }
            }

            /// A user who is in the admin and staff groups is never demoted or removed, whatever
            /// else the claim holds beside them.
            #[test]
            fn members_keep_their_rights_beside_any_value(value in arbitrary_json(), object in any::<bool>()) {
                let compiled = compile(config(GroupMode::AddRemove));
                let groups = if object {
                    json!({"forum-admin": {"1": "example.com"}, "forum-staff": value})
                } else {
                    json!(["forum-admin", value, "forum-staff"])
                };
                let (_, payload) = run(&compiled, groups);
                prop_assert_ne!(payload.get(Field::Admin), Some("false"));
                let removed = payload.get(Field::RemoveGroups).unwrap_or("");
                prop_assert!(!removed.split(',').any(|g| g == "forum_staff"), "{}", removed);
            }
        }
    }
}

//! The two configuration layers, the TOML file and `BRIDGE_<SECTION>__<KEY>` environment
//! variables, merged into one table and deserialized into [`RawConfig`]. Every key
//! remembers where it came from, so that a problem can name the file or the variable.
//!
//! Environment values are kept as strings (converted to a boolean or number only where the key
//! needs one), except that a value written as `[a, b]` is read as a TOML-style array, and an
//! empty value, which unsets the key. Secrets are always taken verbatim.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use figment::error::Kind;
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::ConfigProblem;
use super::raw::RawConfig;

/// Prefix of every configuration environment variable.
pub(crate) const ENV_PREFIX: &str = "BRIDGE_";
/// Separates section and key (and deeper table levels) in a variable name.
pub(crate) const ENV_SEPARATOR: &str = "__";

/// Keys whose values are secrets: never shown in messages, never parsed as arrays from the
/// environment, and each also readable from `<key>_file`.
pub(crate) const SECRET_KEYS: [(&str, &str); 6] = [
    ("discourse", "connect_secret"),
    ("discourse", "api_key"),
    ("oidc", "client_secret"),
    ("session", "secret"),
    ("store", "url"),
    ("scim", "token"),
];

/// The environment variable that sets `section.key`, e.g. `BRIDGE_OIDC__CLIENT_SECRET`.
pub fn env_var_name(dotted_key: &str) -> String {
    let upper = dotted_key.to_ascii_uppercase().replace('.', ENV_SEPARATOR);
    format!("{ENV_PREFIX}{upper}")
}

/// Where each key of the merged configuration came from.
#[derive(Debug, Default)]
pub(crate) struct Provenance {
    /// The config file as the operator named it, if there is one.
    file: Option<PathBuf>,
    /// The file's table, kept to tell whether a key was written there.
    file_table: Dict,
    /// Every configuration variable: its key path and its name.
    env: Vec<(Vec<String>, String)>,
}

impl Provenance {
    /// Says where `dotted_key` (as used in a [`ConfigProblem`]) was set, if anywhere.
    pub(crate) fn describe(&self, dotted_key: &str) -> Option<String> {
        let path = key_path(dotted_key);
        if path.is_empty() {
            return None;
        }
        // A variable that sets this key or a table above it replaced whatever the file said.
        let covering: Vec<&str> = self
            .env
            .iter()
            .filter(|(var_path, _)| path.starts_with(var_path))
            .map(|(_, name)| name.as_str())
            .collect();
        if !covering.is_empty() {
            return Some(name_variables(&covering));
        }
        let inside: Vec<&str> = self
            .env
            .iter()
            .filter(|(var_path, _)| var_path.starts_with(&path))
            .map(|(_, name)| name.as_str())
            .collect();
        let in_file = self
            .file
            .as_ref()
            .filter(|_| table_reaches(&self.file_table, &path));
        match (in_file, inside.is_empty()) {
            (Some(file), true) => Some(format!("in {}", file.display())),
            (Some(file), false) => Some(format!(
                "in {} and {}",
                file.display(),
                name_variables(&inside)
            )),
            (None, false) => Some(name_variables(&inside)),
            (None, true) => None,
        }
    }

    /// Appends where the problem's key was set to its message.
    pub(crate) fn annotate(&self, mut problem: ConfigProblem) -> ConfigProblem {
        if let Some(source) = self.describe(&problem.key) {
            problem.message = format!("{} ({source})", problem.message);
        }
        problem
    }
}

fn name_variables(names: &[&str]) -> String {
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    let list = unique.into_iter().collect::<Vec<_>>().join(", ");
    if names.len() == 1 {
        format!("set by environment variable {list}")
    } else {
        format!("set by environment variables {list}")
    }
}

/// `"oidc.scopes[1]"` → `["oidc", "scopes"]`: list positions are dropped because sources are
/// tracked per key, not per list item.
pub(crate) fn key_path(dotted_key: &str) -> Vec<String> {
    dotted_key
        .split('.')
        .map(|segment| segment.split('[').next().unwrap_or(segment))
        .filter(|segment| !segment.is_empty())
        .map(str::to_owned)
        .collect()
}

/// True when `table` holds `path`, or holds a non-table value part-way along it (the key was
/// written there, even if with the wrong shape).
fn table_reaches(table: &Dict, path: &[String]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return true;
    };
    match table.get(first) {
        None => false,
        Some(Value::Dict(_, inner)) => table_reaches(inner, rest),
        Some(_) => true,
    }
}

/// The merged layers, ready to be deserialized.
#[derive(Debug)]
pub(crate) struct Layers {
    pub(crate) table: Dict,
    pub(crate) provenance: Provenance,
    /// File keys an environment variable replaced with a different value.
    pub(crate) overrides: Vec<EnvOverride>,
}

/// A key written in the config file whose value an environment variable replaced (with a
/// different value), e.g. `server.listen` by `BRIDGE_SERVER__LISTEN`: `serve` and `check` warn
/// about each, so that a file edit that has no effect does not go unnoticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvOverride {
    /// Dotted key as written in the file (for a secret, the form the file used).
    pub key: String,
    /// The environment variable that replaced it.
    pub variable: String,
}

/// Parses the config file's text. `file` names it in messages.
pub(crate) fn parse_file(file: &Path, text: &str) -> Result<Dict, ConfigProblem> {
    let mut profiles = Toml::string(text).data().map_err(|error| {
        ConfigProblem::new(
            file.display().to_string(),
            format!("is not valid TOML: {}", one_line(&error.kind.to_string())),
        )
    })?;
    Ok(profiles.remove(&Profile::Default).unwrap_or_default())
}

/// Folds the TOML parser's multi-line message into one line, leaving out its quote of the
/// offending line (`1 | [server` and the `^` marker under it).
fn one_line(message: &str) -> String {
    let is_quote = |line: &&str| {
        let after_number = line
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start();
        after_number.starts_with('|') || line.chars().all(|c| matches!(c, '^' | ' '))
    };
    let mut lines = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    let heading = lines.next().unwrap_or_default().to_owned();
    let details: Vec<&str> = lines.filter(|line| !is_quote(line)).collect();
    if details.is_empty() {
        heading
    } else {
        format!("{heading}: {}", details.join("; "))
    }
}

/// Overlays the configuration variables in `env` on the file's table. Variables without the
/// `BRIDGE_` prefix or without a `__` (such as `BRIDGE_CONFIG`, the config path) are not
/// configuration keys and are skipped.
pub(crate) fn merge(
    file: Option<(&Path, Dict)>,
    env: impl IntoIterator<Item = (String, String)>,
    problems: &mut Vec<ConfigProblem>,
) -> Layers {
    let (file_path, file_table) = match file {
        Some((path, table)) => (Some(path.to_path_buf()), table),
        None => (None, Dict::new()),
    };
    let mut table = file_table.clone();
    let mut provenance = Provenance {
        file: file_path,
        file_table,
        env: Vec::new(),
    };

    // Sorted so that the outcome never depends on the order the OS lists variables in.
    let mut variables: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| {
            name.strip_prefix(ENV_PREFIX)
                .is_some_and(|rest| rest.contains(ENV_SEPARATOR))
        })
        .collect();
    variables.sort();

    let mut overrides = Vec::new();
    for (name, text) in variables {
        let rest = name.get(ENV_PREFIX.len()..).unwrap_or_default();
        let path: Vec<String> = rest
            .split(ENV_SEPARATOR)
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            problems.push(ConfigProblem::new(
                name.clone(),
                "is not a valid configuration variable name: expected BRIDGE_<SECTION>__<KEY>, \
                 e.g. BRIDGE_OIDC__CLIENT_ID",
            ));
            continue;
        }
        let value = env_value(&path, &text);
        let replaced_in_file = std::iter::once(path.clone())
            .chain(secret_sibling(&path))
            .find(|key| match lookup(&provenance.file_table, key) {
                Some(Value::String(_, written)) => *written != text,
                Some(_) => true,
                None => false,
            });
        if let Some(key) = replaced_in_file {
            overrides.push(EnvOverride {
                key: dotted(&key),
                variable: name.clone(),
            });
        }
        if text.trim().is_empty() {
            // An empty value unsets the key (and a secret's other form): the file's value is
            // dropped and the key's default applies, or a required key is reported missing.
            remove(&mut table, &path);
            if let Some(sibling) = secret_sibling(&path) {
                remove(&mut table, &sibling);
            }
            provenance.env.push((path, name));
            continue;
        }
        if let Some(sibling) = secret_sibling(&path) {
            // The environment replaces the file's secret in whichever form the file gave it;
            // both forms set in the environment stay a problem for validation to report.
            let sibling_from_env = provenance.env.iter().any(|(set, _)| *set == sibling);
            if !sibling_from_env {
                remove(&mut table, &sibling);
            }
        }
        if let Err(blocked_at) = insert(&mut table, &path, value) {
            problems.push(ConfigProblem::new(
                blocked_at.join("."),
                format!("is not a table, so {name} cannot set a key inside it"),
            ));
            continue;
        }
        provenance.env.push((path, name));
    }
    Layers {
        table,
        provenance,
        overrides,
    }
}

/// The value at `path` in `table`, if there is one.
fn lookup<'a>(table: &'a Dict, path: &[String]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut current = table;
    for segment in parents {
        match current.get(segment)? {
            Value::Dict(_, inner) => current = inner,
            _ => return None,
        }
    }
    current.get(last)
}

fn is_secret(path: &[String]) -> bool {
    SECRET_KEYS
        .iter()
        .any(|(section, key)| path.len() == 2 && path[0] == *section && path[1] == *key)
}

/// For a secret's key path (`discourse.api_key` or `discourse.api_key_file`), the path of the
/// other form.
fn secret_sibling(path: &[String]) -> Option<Vec<String>> {
    let [section, key] = path else {
        return None;
    };
    SECRET_KEYS.iter().find_map(|(secret_section, secret_key)| {
        if section != secret_section {
            return None;
        }
        let file_key = format!("{secret_key}_file");
        if key == secret_key {
            Some(vec![section.clone(), file_key])
        } else if *key == file_key {
            Some(vec![section.clone(), (*secret_key).to_owned()])
        } else {
            None
        }
    })
}

/// An environment value as configuration value: `[a, b]` is an array, anything else a string
/// (which lossy deserialization turns into a boolean or number where the key needs one).
fn env_value(path: &[String], text: &str) -> Value {
    let trimmed = text.trim();
    if !is_secret(path) && trimmed.starts_with('[') && trimmed.ends_with(']') {
        let parsed = trimmed.parse::<Value>();
        if let Ok(array @ Value::Array(..)) = parsed {
            return array;
        }
    }
    Value::from(text.to_owned())
}

/// Sets `path` in `table`, creating tables on the way. Fails with the path of a non-table
/// value that is in the way.
fn insert(table: &mut Dict, path: &[String], value: Value) -> Result<(), Vec<String>> {
    let mut current = table;
    for (depth, segment) in path.iter().enumerate() {
        if depth + 1 == path.len() {
            current.insert(segment.clone(), value);
            return Ok(());
        }
        let entry = current
            .entry(segment.clone())
            .or_insert_with(|| Value::from(Dict::new()));
        match entry {
            Value::Dict(_, inner) => current = inner,
            _ => return Err(path[..=depth].to_vec()),
        }
    }
    Ok(())
}

/// Removes `path` from `table`; a list item on the path removes the whole list. Returns whether
/// anything was removed.
fn remove(table: &mut Dict, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => table.remove(last).is_some(),
        [first, rest @ ..] => match table.get_mut(first) {
            Some(Value::Dict(_, inner)) => remove(inner, rest),
            Some(_) => table.remove(first).is_some(),
            None => false,
        },
    }
}

/// Serves the merged table to figment, which does the (lossy) deserialization and reports the
/// path of the key that failed.
struct MergedTable<'a>(&'a Dict);

impl Provider for MergedTable<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::named("bridge configuration")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

/// Deserializes the merged table. serde stops at the first error, so after each error the
/// offending key is reported, removed (its default applies) and deserialization is retried: this
/// reports every unknown key and every wrongly typed value in one run. Returns `None` only when
/// an error cannot be attributed to a removable key.
pub(crate) fn deserialize(mut table: Dict, problems: &mut Vec<ConfigProblem>) -> Option<RawConfig> {
    // Each round removes at least one key, so this bound is never reached by a finite table;
    // it only guards against a deserializer that keeps failing the same way.
    for _ in 0..1000 {
        let errors = match Figment::from(MergedTable(&table)).extract_lossy::<RawConfig>() {
            Ok(raw) => return Some(raw),
            Err(errors) => errors,
        };
        let mut removed_any = false;
        for error in errors {
            let (problem, culprit) = explain(&error.path, &error.kind);
            problems.push(problem);
            removed_any |= remove(&mut table, &culprit);
        }
        if !removed_any {
            return None;
        }
    }
    None
}

/// Renders a key path as `oidc.scopes[1]`.
pub(crate) fn dotted(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if segment.parse::<usize>().is_ok() && !out.is_empty() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

/// Turns one deserialization error into a problem, and names the key to remove before retrying.
fn explain(path: &[String], kind: &Kind) -> (ConfigProblem, Vec<String>) {
    let key = dotted(path);
    let secret = is_secret(path);
    let message = match kind {
        Kind::UnknownField(found, expected) => {
            let what = if path.len() <= 1 { "section" } else { "key" };
            match closest(found, expected) {
                Some(near) => format!("unknown {what}; did you mean `{near}`?"),
                None if expected.is_empty() => format!("unknown {what}"),
                None => format!("unknown {what}; expected one of: {}", expected.join(", ")),
            }
        }
        Kind::MissingField(field) => {
            let mut full = path.to_vec();
            full.push(field.to_string());
            return (
                ConfigProblem::new(dotted(&full), "is required"),
                path.to_vec(),
            );
        }
        Kind::UnknownVariant(found, expected) => {
            format!("`{found}` is not one of: {}", expected.join(", "))
        }
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) if secret => {
            format!("expected {}", plain_expected(expected))
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!("expected {}, found {actual}", plain_expected(expected))
        }
        other if secret => format!("is not valid ({})", kind_name(other)),
        other => other.to_string(),
    };
    (ConfigProblem::new(key, message), path.to_vec())
}

/// serde's names for what it expected, in an operator's words.
fn plain_expected(expected: &str) -> &str {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number",
        "a sequence" => "a list",
        "a map" => "a table",
        other => other,
    }
}

/// A value-free description of an error kind, for secrets.
fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::InvalidLength(..) => "wrong length",
        Kind::ISizeOutOfRange(..) | Kind::USizeOutOfRange(..) => "number out of range",
        _ => "wrong type",
    }
}

/// The known name within edit distance 2 of `found`, to suggest for a typo.
fn closest<'a>(found: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (strsim::levenshtein(found, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn lookup<'a>(table: &'a Dict, dotted_key: &str) -> Option<&'a Value> {
        let mut current = table;
        let mut segments = dotted_key.split('.').peekable();
        while let Some(segment) = segments.next() {
            let value = current.get(segment)?;
            if segments.peek().is_none() {
                return Some(value);
            }
            current = value.as_dict()?;
        }
        None
    }

    #[test]
    fn env_var_names_follow_section_and_key() {
        assert_eq!(
            env_var_name("oidc.client_secret"),
            "BRIDGE_OIDC__CLIENT_SECRET"
        );
        assert_eq!(
            env_var_name("discourse.connect_secret_file"),
            "BRIDGE_DISCOURSE__CONNECT_SECRET_FILE"
        );
    }

    #[test]
    fn env_values_stay_strings_except_bracketed_arrays() {
        let mut problems = Vec::new();
        let layers = merge(
            None,
            env(&[
                ("BRIDGE_OIDC__USERINFO", "false"),
                ("BRIDGE_LIMITS__MAX_BODY_BYTES", "4096"),
                ("BRIDGE_OIDC__SCOPES", "[openid, email, \"groups\"]"),
                ("BRIDGE_SERVER__TRUSTED_PROXIES", "[10.0.0.0/8, ::1/128]"),
                ("BRIDGE_OIDC__CLIENT_SECRET", "[not-an-array]"),
                ("BRIDGE_OIDC__AUTH_PARAMS__PROMPT", "login"),
            ]),
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let t = &layers.table;
        assert_eq!(
            lookup(t, "oidc.userinfo"),
            Some(&Value::from("false".to_owned()))
        );
        assert_eq!(
            lookup(t, "limits.max_body_bytes"),
            Some(&Value::from("4096".to_owned()))
        );
        let scopes = lookup(t, "oidc.scopes").and_then(Value::as_array);
        let scopes: Vec<_> = scopes
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(scopes, ["openid", "email", "groups"]);
        let proxies = lookup(t, "server.trusted_proxies").and_then(Value::as_array);
        let proxies: Vec<_> = proxies
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(proxies, ["10.0.0.0/8", "::1/128"]);
        assert_eq!(
            lookup(t, "oidc.client_secret"),
            Some(&Value::from("[not-an-array]".to_owned()))
        );
        assert_eq!(
            lookup(t, "oidc.auth_params.prompt"),
            Some(&Value::from("login".to_owned()))
        );
    }

    #[test]
    fn variables_without_double_underscore_are_not_keys() {
        let mut problems = Vec::new();
        let layers = merge(
            None,
            env(&[
                ("BRIDGE_CONFIG", "/etc/bridge.toml"),
                ("BRIDGE_LOG", "debug"),
                ("PATH", "/usr/bin"),
                ("OTHER__THING", "x"),
            ]),
            &mut problems,
        );
        assert!(problems.is_empty());
        assert!(layers.table.is_empty());
    }

    #[test]
    fn malformed_variable_names_are_problems() {
        let mut problems = Vec::new();
        merge(
            None,
            env(&[("BRIDGE_OIDC____ISSUER", "x"), ("BRIDGE___X", "y")]),
            &mut problems,
        );
        let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["BRIDGE_OIDC____ISSUER", "BRIDGE___X"]);
    }

    #[test]
    fn a_variable_cannot_reach_inside_a_scalar() {
        let mut problems = Vec::new();
        let file = parse_file(Path::new("t.toml"), "[oidc]\nscopes = [\"openid\"]\n");
        let file = file.unwrap_or_default();
        merge(
            Some((Path::new("t.toml"), file)),
            env(&[("BRIDGE_OIDC__SCOPES__EXTRA", "x")]),
            &mut problems,
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "oidc.scopes");
        assert!(problems[0].message.contains("BRIDGE_OIDC__SCOPES__EXTRA"));
    }

    #[test]
    fn provenance_names_file_variable_or_both() {
        let file = parse_file(
            Path::new("bridge.toml"),
            "[oidc]\nissuer = \"https://idp\"\n[bogus]\na = 1\n",
        )
        .unwrap_or_default();
        let mut problems = Vec::new();
        let layers = merge(
            Some((Path::new("bridge.toml"), file)),
            env(&[
                ("BRIDGE_OIDC__ISSUER", "https://other"),
                ("BRIDGE_BOGUS__B", "2"),
            ]),
            &mut problems,
        );
        let p = &layers.provenance;
        assert_eq!(
            p.describe("oidc.issuer").as_deref(),
            Some("set by environment variable BRIDGE_OIDC__ISSUER")
        );
        assert_eq!(
            p.describe("bogus").as_deref(),
            Some("in bridge.toml and set by environment variable BRIDGE_BOGUS__B")
        );
        assert_eq!(p.describe("oidc.client_id"), None);
    }

    #[test]
    fn toml_syntax_errors_are_one_line() {
        let problem = parse_file(Path::new("broken.toml"), "[oidc\nissuer = 1\n").err();
        let problem = problem.map(|p| p.to_string()).unwrap_or_default();
        assert_eq!(
            problem,
            "broken.toml: is not valid TOML: TOML parse error at line 1, column 6: invalid table \
             header; expected `.`, `]`"
        );
        assert!(!problem.contains('\n'), "{problem}");
    }

    #[test]
    fn every_type_error_and_unknown_key_is_reported() {
        let file = parse_file(
            Path::new("t.toml"),
            "[oidc]\nuserinfo = \"maybe\"\nissuerr = \"x\"\n[limits]\nlogin_per_minute = \"lots\"\n\
             [session]\nsecret = 12345678\n[nonsense]\n",
        )
        .unwrap_or_default();
        let mut problems = Vec::new();
        let raw = deserialize(file, &mut problems);
        assert!(raw.is_some());
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 5, "{lines:#?}");
        assert!(lines.contains(&"oidc.issuerr: unknown key; did you mean `issuer`?".to_owned()));
        assert!(lines.contains(&"nonsense: unknown section; expected one of: server, discourse, oidc, session, logout, store, log, limits, pages, mapping, groups, access, scim".to_owned()), "{lines:#?}");
        assert!(
            lines
                .iter()
                .any(|l| l
                    == "oidc.userinfo: expected true, false or \"auto\", found string \"maybe\""),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("limits.login_per_minute: expected"))
        );
        // The secret's value is not repeated back.
        let secret_line = lines.iter().find(|l| l.starts_with("session.secret"));
        assert_eq!(
            secret_line.map(String::as_str),
            Some("session.secret: expected a string")
        );
    }

    #[test]
    fn a_wrongly_typed_list_item_drops_the_whole_list() {
        let file = parse_file(Path::new("t.toml"), "[oidc]\nscopes = [\"openid\", 5]\n")
            .unwrap_or_default();
        let mut problems = Vec::new();
        let raw = deserialize(file, &mut problems);
        assert_eq!(
            problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["oidc.scopes[1]: expected a string, found signed int `5`"]
        );
        // The list took its default, so the rest of the configuration can still be checked.
        assert_eq!(raw.map(|raw| raw.oidc.scopes.len()), Some(3));
    }

    #[test]
    fn unknown_variants_list_the_choices() {
        let file = parse_file(
            Path::new("t.toml"),
            "[oidc]\ntoken_auth_method = \"basic\"\n",
        )
        .unwrap_or_default();
        let mut problems = Vec::new();
        deserialize(file, &mut problems);
        assert_eq!(
            problems[0].to_string(),
            "oidc.token_auth_method: `basic` is not one of: auto, client_secret_basic, client_secret_post, private_key_jwt, tls_client_auth, none"
        );
    }

    #[test]
    fn dotted_renders_list_positions() {
        let path = ["oidc", "scopes", "1"].map(str::to_owned);
        assert_eq!(dotted(&path), "oidc.scopes[1]");
        assert_eq!(key_path("oidc.scopes[1]"), ["oidc", "scopes"]);
    }

    #[test]
    fn a_typo_within_two_edits_is_suggested() {
        let known = ["issuer", "scopes", "client_id"];
        assert_eq!(closest("isuer", &known), Some("issuer"));
        assert_eq!(closest("scope", &known), Some("scopes"));
        assert_eq!(closest("issuer", &known), Some("issuer"));
        assert_eq!(closest("unrelated", &known), None);
    }
}

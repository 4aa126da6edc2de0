//! Runs the realistic claim sets in `tests/fixtures/claims/<idp>/` through the claim mapping and
//! compares the result with what each case expects.
//!
//! Each IdP directory holds `config.toml` (the `[mapping]`, `[groups]` and `[access]` sections),
//! and per case `<case>.claims.json` (merged ID-token + userinfo claims) with
//! `<case>.expected.json`:
//! - `allowed`: whether the login goes ahead;
//! - `denial`: `{rule, message, contact}` when refused;
//! - `payload`: every payload key and value when allowed (nonce excepted);
//! - `dropped_groups`: the group names not sent, in order;
//! - `rules` (optional): output → the config key the trace names for it;
//! - `warnings` (optional): the keys of the config warnings.
//!
//! A case may also have `<case>.graph.json`, Microsoft Graph's answer for an Entra overage login
//! as the login flow would pass it: `{"fetched": [group object ids]}` or `{"failed": "reason"}`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use discourse_oidc_bridge::mapping::explain::{Report, render_text};
use discourse_oidc_bridge::mapping::{
    AccessConfig, GraphGroups, GroupsConfig, Mapper, MappingConfig,
};
use figment::Figment;
use figment::providers::{Format, Toml};
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Deserialize)]
struct Sections {
    #[serde(default)]
    mapping: MappingConfig,
    #[serde(default)]
    groups: GroupsConfig,
    #[serde(default)]
    access: AccessConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    allowed: bool,
    #[serde(default)]
    denial: Option<Value>,
    #[serde(default)]
    payload: BTreeMap<String, String>,
    dropped_groups: Vec<String>,
    #[serde(default)]
    rules: BTreeMap<String, String>,
    #[serde(default)]
    warnings: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum GraphAnswer {
    Fetched(Vec<String>),
    Failed(String),
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/claims")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compile(dir: &Path) -> Mapper {
    let sections: Sections = Figment::from(Toml::file(dir.join("config.toml")))
        .extract()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    Mapper::compile(&sections.mapping, &sections.groups, &sections.access)
        .unwrap_or_else(|problems| panic!("{}: {problems:#?}", dir.display()))
}

/// Case names of an IdP directory, sorted.
fn cases(dir: &Path) -> Vec<String> {
    let mut cases: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".claims.json").map(str::to_owned)
        })
        .collect();
    cases.sort();
    cases
}

/// Checks every case of one IdP directory; returns the case names checked.
fn check_idp(idp: &str) -> Vec<String> {
    let dir = fixtures_dir().join(idp);
    let mapper = compile(&dir);
    let cases = cases(&dir);
    assert!(!cases.is_empty(), "{idp} has no cases");
    for case in &cases {
        let claims: Map<String, Value> =
            serde_json::from_str(&read(&dir.join(format!("{case}.claims.json")))).unwrap();
        let expected: Expected =
            serde_json::from_str(&read(&dir.join(format!("{case}.expected.json"))))
                .unwrap_or_else(|e| panic!("{idp}/{case}.expected.json: {e}"));
        let graph_path = dir.join(format!("{case}.graph.json"));
        let graph = graph_path.exists().then(|| {
            match serde_json::from_str::<GraphAnswer>(&read(&graph_path))
                .unwrap_or_else(|e| panic!("{idp}/{case}.graph.json: {e}"))
            {
                GraphAnswer::Fetched(ids) => GraphGroups::Fetched(ids),
                GraphAnswer::Failed(why) => GraphGroups::Failed(why),
            }
        });
        if graph.is_some() {
            assert!(
                mapper.graph_lookup(&claims).is_some(),
                "{idp}/{case}: a Graph answer for a login that would not ask Graph"
            );
        }
        let outcome = mapper.map_with(&claims, graph.as_ref());
        let report = Report::from(&outcome);
        let context = format!("{idp}/{case}\n{}", render_text(&outcome));

        assert_eq!(report.allowed, expected.allowed, "{context}");
        let denial = report
            .denial
            .as_ref()
            .map(|d| serde_json::to_value(d).unwrap());
        assert_eq!(denial, expected.denial, "{context}");
        assert_eq!(report.payload, expected.payload, "{context}");
        let dropped: Vec<&str> = report
            .dropped_groups
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(dropped, expected.dropped_groups, "{context}");
        for (output, rule) in &expected.rules {
            let entry = report
                .trace
                .iter()
                .find(|t| &t.output == output)
                .unwrap_or_else(|| panic!("no trace entry for {output}\n{context}"));
            assert_eq!(&entry.rule, rule, "trace rule of {output}\n{context}");
        }
        if let Some(warnings) = &expected.warnings {
            let keys: Vec<&str> = mapper
                .warnings()
                .iter()
                .map(|w| w.split(':').next().unwrap_or(""))
                .collect();
            assert_eq!(keys, *warnings, "{idp} warnings: {:#?}", mapper.warnings());
        }
    }
    cases
}

#[test]
fn keycloak_full_group_paths_realm_and_client_roles() {
    assert_eq!(
        check_idp("keycloak"),
        ["former-admin", "member", "outsider"]
    );
}

#[test]
fn google_workspace_hosted_domain() {
    assert_eq!(check_idp("google"), ["personal-account", "workspace"]);
}

#[test]
fn entra_group_object_ids_and_overage() {
    assert_eq!(
        check_idp("entra"),
        ["member", "no-edov", "no-mailbox", "overage"]
    );
}

#[test]
fn okta_full_group_sync_and_custom_fields() {
    assert_eq!(check_idp("okta"), ["member"]);
}

#[test]
fn authentik_unverified_email_requires_activation() {
    assert_eq!(check_idp("authentik"), ["unverified"]);
}

/// Issue 13, first input: Zitadel's roles object (keys are the role names).
#[test]
fn zitadel_project_roles_objects() {
    assert_eq!(
        check_idp("zitadel"),
        ["project-roles", "project-specific", "unreadable"]
    );
}

/// Issue 13, second input: GitLab's nested group paths without a leading slash.
#[test]
fn gitlab_group_paths_without_leading_slash() {
    assert_eq!(check_idp("gitlab"), ["left-backend", "nested"]);
}

#[test]
fn delimited_string_groups() {
    assert_eq!(check_idp("delimited"), ["member"]);
}

#[test]
fn lists_of_group_objects() {
    assert_eq!(check_idp("objects"), ["ambiguous", "member"]);
}

#[test]
fn entra_overage_resolved_through_graph() {
    assert_eq!(
        check_idp("entra-graph"),
        ["graph-failed", "graph-not-asked", "overage-resolved"]
    );
}

/// Every fixture directory is covered by a test above.
#[test]
fn no_fixture_is_left_unchecked() {
    let mut dirs: Vec<String> = fs::read_dir(fixtures_dir())
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            entry
                .file_type()
                .ok()?
                .is_dir()
                .then(|| entry.file_name().into_string().ok())?
        })
        .collect();
    dirs.sort();
    assert_eq!(
        dirs,
        [
            "authentik",
            "delimited",
            "entra",
            "entra-graph",
            "gitlab",
            "google",
            "keycloak",
            "objects",
            "okta",
            "zitadel"
        ]
    );
}

/// The Keycloak, Google and Entra fixtures use exactly the examples in the example config, so
/// the documented examples are the tested ones.
#[test]
fn fixture_configs_are_the_documented_examples() {
    let example = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/bridge.example.toml"));
    for (title, idp) in [
        ("Keycloak", "keycloak"),
        ("Google Workspace", "google"),
        ("Entra ID", "entra"),
    ] {
        let block = example
            .split(&format!("# === Example: {title} ===\n"))
            .nth(1)
            .and_then(|rest| rest.split("# === End ===").next())
            .unwrap_or_else(|| panic!("no {title} example"));
        let documented: Vec<&str> = block
            .lines()
            .filter_map(|line| line.strip_prefix("#>"))
            .map(|line| line.strip_prefix(' ').unwrap_or(line))
            .collect();
        let fixture = read(&fixtures_dir().join(idp).join("config.toml"));
        let tested: Vec<&str> = fixture.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            tested, documented,
            "{idp}/config.toml differs from the {title} example"
        );
    }
}

//! The command-line interface as an operator uses it: `check`, `explain` and their exit codes,
//! run as the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BASE: &str = r#"
[server]
public_url = "https://login.example.com"

[discourse]
url = "https://forum.example.com"
connect_secret = "an-example-discourse-connect-secret"

[oidc]
issuer = "https://idp.example.com/realms/main"
client_id = "discourse"
client_secret = "an-example-client-secret"

[session]
secret = "an-example-session-secret-of-at-least-32-bytes"
"#;

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_discourse-oidc-bridge"));
    command.env_remove("BRIDGE_CONFIG");
    command
}

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/claims")
        .join(path)
}

/// A complete config file: the base sections plus an IdP fixture's mapping.
/// `explain --config CONFIG --claims CLAIMS`, its output.
fn explain(config: impl AsRef<OsStr>, claims: impl AsRef<OsStr>) -> Output {
    bin()
        .args(["explain", "--config"])
        .arg(config)
        .arg("--claims")
        .arg(claims)
        .output()
        .unwrap()
}

/// The same with `--json`.
fn explain_json(config: impl AsRef<OsStr>, claims: impl AsRef<OsStr>) -> Output {
    bin()
        .args(["explain", "--json", "--config"])
        .arg(config)
        .arg("--claims")
        .arg(claims)
        .output()
        .unwrap()
}

fn config_with_mapping(dir: &tempfile::TempDir, idp: &str) -> PathBuf {
    let mapping = std::fs::read_to_string(fixture(&format!("{idp}/config.toml"))).unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, format!("{BASE}\n{mapping}")).unwrap();
    path
}

#[test]
fn check_refuses_the_example_placeholders_until_real_secrets_are_given() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/bridge.example.toml");
    let out = bin()
        .arg("check")
        .arg("--config")
        .arg(&example)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    for key in [
        "discourse.connect_secret",
        "oidc.client_secret",
        "session.secret",
    ] {
        assert!(
            report.contains(&format!("error: {key}: is a placeholder")),
            "{key}:\n{report}"
        );
    }
    assert!(
        !report.contains("change-me"),
        "values are never printed:\n{report}"
    );

    let out = bin()
        .arg("check")
        .arg("--config")
        .arg(&example)
        .env(
            "BRIDGE_DISCOURSE__CONNECT_SECRET",
            "3c1f0e5d9a8b7c6d5e4f3a2b1c0d9e8f",
        )
        .env(
            "BRIDGE_OIDC__CLIENT_SECRET",
            "Zq8-real-client-secret-from-the-idp",
        )
        .env(
            "BRIDGE_SESSION__SECRET",
            "7e3d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d",
        )
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.starts_with("OK"), "{report}");
    // The file's values were replaced, and check says so for each.
    assert!(
        report.contains(
            "warning: discourse.connect_secret in the config file is replaced by environment \
             variable BRIDGE_DISCOURSE__CONNECT_SECRET"
        ),
        "{report}"
    );
}

/// The committed references are exactly what the commands print.
#[test]
fn committed_references_match_the_commands() {
    for (args, file) in [
        (["config", "reference"], "docs/configuration.md"),
        (["metrics", "reference"], "docs/metrics.md"),
    ] {
        let out = bin().args(args).output().unwrap();
        assert!(out.status.success());
        let printed = String::from_utf8(out.stdout).unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            printed == committed,
            "{file} is out of date: run `cargo run -- {} > {file}`",
            args.join(" ")
        );
    }
}

#[test]
fn check_names_every_mistake_in_one_run_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let bad = BASE
        .replace("https://forum.example.com", "not a url")
        .replace("an-example-discourse-connect-secret", "short")
        .replace("[session]", "[session]\nlogin_timout = \"5m\"");
    std::fs::write(&path, bad).unwrap();
    let out = bin()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    for key in [
        "discourse.url",
        "discourse.connect_secret",
        "session.login_timout",
    ] {
        assert!(report.contains(key), "{key} missing from:\n{report}");
    }
    assert!(
        !report.contains("short"),
        "secret values are never printed:\n{report}"
    );
}

#[test]
fn check_reads_the_path_from_bridge_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = config_with_mapping(&dir, "keycloak");
    let out = bin()
        .arg("check")
        .env("BRIDGE_CONFIG", &path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn explain_shows_the_payload_and_exits_0_for_an_allowed_login() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_mapping(&dir, "keycloak");
    let out = explain_json(&config, fixture("keycloak/member.claims.json"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["allowed"], true);
    assert!(report["payload"]["external_id"].is_string());

    let text = explain(&config, fixture("keycloak/member.claims.json"));
    assert_eq!(text.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&text.stdout).contains("external_id"));
}

#[test]
fn explain_exits_3_when_the_login_would_be_denied() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_mapping(&dir, "keycloak");
    let out = explain_json(&config, fixture("keycloak/outsider.claims.json"));
    assert_eq!(out.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["allowed"], false);
    assert_eq!(report["denial"]["rule"], "access.allowed_groups");
}

#[test]
fn explain_exits_2_for_a_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, format!("{BASE}\n[groups]\nmode = \"sometimes\"\n")).unwrap();
    let out = explain(&path, fixture("keycloak/member.claims.json"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("groups.mode"));
}

#[test]
fn an_empty_bridge_config_means_the_environment_alone() {
    let out = Command::new(env!("CARGO_BIN_EXE_discourse-oidc-bridge"))
        .arg("check")
        .env("BRIDGE_CONFIG", "")
        .env("BRIDGE_SERVER__PUBLIC_URL", "https://login.example.com")
        .env("BRIDGE_DISCOURSE__URL", "https://forum.example.com")
        .env(
            "BRIDGE_DISCOURSE__CONNECT_SECRET",
            "an-example-discourse-connect-secret",
        )
        .env("BRIDGE_OIDC__ISSUER", "https://idp.example.com")
        .env("BRIDGE_OIDC__CLIENT_ID", "discourse")
        .env("BRIDGE_OIDC__CLIENT_SECRET", "an-example-client-secret")
        .env(
            "BRIDGE_SESSION__SECRET",
            "an-example-session-secret-of-at-least-32-bytes",
        )
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.starts_with("OK: environment only"), "{report}");
}

#[test]
fn explain_and_check_accept_a_mapping_only_file() {
    // The IdP fixtures' config.toml hold only [mapping], [groups] and [access], as
    // docs/mapping.md suggests trying a mapping.
    let mapping = fixture("keycloak/config.toml");
    let out = explain_json(&mapping, fixture("keycloak/member.claims.json"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["allowed"], true);

    let out = bin()
        .args(["check", "--config"])
        .arg(&mapping)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.starts_with("OK") && stdout.contains("mapping-only"),
        "{stdout}"
    );

    // A broken mapping-only file is reported as such.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("mapping.toml");
    std::fs::write(&bad, "[groups]\nmode = \"sometimes\"\n").unwrap();
    let out = bin()
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("groups"));
}

#[test]
fn check_renders_replacement_templates_and_message_files() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    let locales = dir.path().join("locales");
    std::fs::create_dir(&templates).unwrap();
    std::fs::create_dir(&locales).unwrap();
    std::fs::write(
        templates.join("error.html"),
        "{% extends \"base.html\" %}{% block title %}{{ t(kind ~ \"-title\") }}{% endblock %}\
         {% block body %}<h1>{{ t(kind ~ \"-title\") }}</h1>{% endblock %}",
    )
    .unwrap();
    std::fs::write(locales.join("it.ftl"), "denied-title = Accesso negato\n").unwrap();
    let config = dir.path().join("bridge.toml");
    let pages = format!(
        "\n[pages]\nforum_name = \"Forum\"\ntemplates_dir = \"{}\"\nlocales_dir = \"{}\"\n",
        templates.display(),
        locales.display()
    );
    std::fs::write(&config, format!("{BASE}{pages}")).unwrap();
    let out = bin()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A template that fails to render in any language is an error now, not at a user's page.
    std::fs::write(templates.join("error.html"), "{{ t() }}").unwrap();
    std::fs::write(locales.join("it.ftl"), "denied-title = { $\n").unwrap();
    let out = bin()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("it.ftl"), "{stdout}");
    std::fs::write(locales.join("it.ftl"), "denied-title = Accesso negato\n").unwrap();
    let out = bin()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("error.html"), "{stdout}");
}

#[test]
fn explain_accepts_a_scim_user() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(
        &config,
        format!("{BASE}\n[groups]\nunmatched = \"keep\"\nmanaged = [\"engineering\"]\n"),
    )
    .unwrap();
    let user = dir.path().join("user.json");
    std::fs::write(
        &user,
        serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "2819c223",
            "externalId": "00u1alice",
            "userName": "alice@example.com",
            "displayName": "Alice Example",
            "emails": [{"value": "alice@example.com", "primary": true}],
            "groups": [{"value": "g1", "display": "Engineering"}]
        })
        .to_string(),
    )
    .unwrap();
    let out = explain_json(&config, &user);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["payload"]["external_id"], "00u1alice");
    assert_eq!(report["payload"]["email"], "alice@example.com");
    assert_eq!(report["payload"]["name"], "Alice Example");
    assert_eq!(report["payload"]["add_groups"], "engineering");
}

/// Issue 13's two failing inputs through the real `explain` command: Zitadel's roles object and
/// GitLab's nested paths without a leading slash give the right groups and roles, and the
/// report is the one the fixture expects.
#[test]
fn explain_reads_zitadel_roles_and_gitlab_paths() {
    let dir = tempfile::tempdir().unwrap();
    for (idp, case, add, admin) in [
        ("zitadel", "project-roles", "forum_staff", Some(true)),
        ("gitlab", "nested", "platform,platform-backend", None),
    ] {
        let config = config_with_mapping(&dir, idp);
        let out = explain_json(&config, fixture(&format!("{idp}/{case}.claims.json")));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["payload"]["add_groups"], add, "{idp}: {report:#}");
        assert!(
            report["remove_groups"].as_array().unwrap().is_empty(),
            "{idp}"
        );
        assert_eq!(report["admin"].as_bool(), admin, "{idp}");
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(&format!("{idp}/{case}.expected.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(report["payload"], expected["payload"], "{idp}");
    }
}

/// A claim nobody can read: `explain` says why the groups are unknown, naming the claim and its
/// JSON type, and sends nothing about groups or roles.
#[test]
fn explain_names_an_unreadable_group_claim() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_mapping(&dir, "zitadel");
    let out = explain(&config, fixture("zitadel/unreadable.claims.json"));
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("groups <- groups.unreadable: claim `urn:zitadel:iam:org:project:roles` is a JSON boolean"),
        "{text}"
    );
    assert!(
        text.contains("  UNKNOWN (rule groups.unreadable)"),
        "{text}"
    );
    assert!(text.contains("admin              : not sent"), "{text}");
    assert!(text.contains("remove_groups      : (none)"), "{text}");
}

/// `check` warns about group entries that can never match what the sources and rules produce.
#[test]
fn check_warns_about_group_entries_that_can_never_match() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(
        &path,
        format!(
            "{BASE}\n[groups]\npaths = \"leaf\"\nmanaged = [\"writers\", \"alumni\"]\n\
             [groups.rename]\n\"forum-writers\" = \"writers\"\n\
             [[groups.rules]]\ngroup = \"/staff/admins\"\nadmin = true\n\
             [access]\nallowed_groups = [\"members\", \"team_*\", \"writ*\"]\n"
        ),
    )
    .unwrap();
    let out = bin()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for key in [
        "groups.rules[0].group",
        "groups.managed[1]",
        "access.allowed_groups[0]",
        "access.allowed_groups[1]",
    ] {
        assert!(stdout.contains(key), "{key}: {stdout}");
    }
    assert!(!stdout.contains("groups.managed[0]"), "{stdout}");
    assert!(!stdout.contains("access.allowed_groups[2]"), "{stdout}");
}

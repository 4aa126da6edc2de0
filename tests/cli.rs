//! The command-line interface as an operator uses it: `check`, `explain` and their exit codes,
//! run as the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

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
fn config_with_mapping(dir: &tempfile::TempDir, idp: &str) -> PathBuf {
    let mapping = std::fs::read_to_string(fixture(&format!("{idp}/config.toml"))).unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, format!("{BASE}\n{mapping}")).unwrap();
    path
}

#[test]
fn check_accepts_the_example_configuration() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/bridge.example.toml");
    let out = bin()
        .arg("check")
        .arg("--config")
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK"));
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
    let out = bin()
        .args(["explain", "--json", "--config"])
        .arg(&config)
        .arg("--claims")
        .arg(fixture("keycloak/member.claims.json"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["allowed"], true);
    assert!(report["payload"]["external_id"].is_string());

    let text = bin()
        .args(["explain", "--config"])
        .arg(&config)
        .arg("--claims")
        .arg(fixture("keycloak/member.claims.json"))
        .output()
        .unwrap();
    assert_eq!(text.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&text.stdout).contains("external_id"));
}

#[test]
fn explain_exits_3_when_the_login_would_be_denied() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_mapping(&dir, "keycloak");
    let out = bin()
        .args(["explain", "--json", "--config"])
        .arg(&config)
        .arg("--claims")
        .arg(fixture("keycloak/outsider.claims.json"))
        .output()
        .unwrap();
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
    let out = bin()
        .args(["explain", "--config"])
        .arg(&path)
        .arg("--claims")
        .arg(fixture("keycloak/member.claims.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("groups.mode"));
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
    let out = bin()
        .args(["explain", "--json", "--config"])
        .arg(&config)
        .arg("--claims")
        .arg(&user)
        .output()
        .unwrap();
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

//! Loading and checking configurations the way `discourse-oidc-bridge check` does: the example
//! file, problems collected in one run, environment overrides, secret files and secret hygiene.
//! The environment is passed as pairs, never set on the test process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use discourse_oidc_bridge::config::{
    Config, ConfigErrors, LogFormat, TokenAuthMethod, UserinfoMode, check_report, load_from,
    load_from_str,
};
use secrecy::ExposeSecret;

/// A small valid configuration; tests change it through the environment or by editing lines.
const VALID: &str = r#"
[server]
public_url = "https://login.example.com"

[discourse]
url = "https://forum.example.com"
connect_secret = "discourse-connect-secret-0123"

[oidc]
issuer = "https://idp.example.com/realms/main"
client_id = "bridge"
client_secret = "oidc-client-secret-0123"

[session]
secret = "0123456789abcdef0123456789abcdef-session"
"#;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/bridge.example.toml")
}

fn problems(result: Result<Config, ConfigErrors>) -> Vec<String> {
    match result {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

fn keys(result: &Result<Config, ConfigErrors>) -> Vec<&str> {
    match result {
        Ok(_) => Vec::new(),
        Err(errors) => errors.0.iter().map(|p| p.key.as_str()).collect(),
    }
}

fn secret_file(content: &str) -> std::io::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::NamedTempFile::new()?;
    file.write_all(content.as_bytes())?;
    Ok(file)
}

/// Real-looking secrets for the example file, whose own are placeholders.
fn real_secrets() -> Vec<(String, String)> {
    env(&[
        (
            "BRIDGE_DISCOURSE__CONNECT_SECRET",
            "3c1f0e5d9a8b7c6d5e4f3a2b1c0d9e8f",
        ),
        (
            "BRIDGE_OIDC__CLIENT_SECRET",
            "Zq8-real-client-secret-from-the-idp",
        ),
        (
            "BRIDGE_SESSION__SECRET",
            "7e3d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d",
        ),
    ])
}

#[test]
fn the_example_file_refuses_its_placeholder_secrets() {
    let result = load_from(Some(&example_path()), no_env());
    let lines = problems(result);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for (line, key) in lines.iter().zip([
        "discourse.connect_secret",
        "oidc.client_secret",
        "session.secret",
    ]) {
        assert!(
            line.starts_with(&format!("{key}: is a placeholder")),
            "{line}"
        );
        assert!(!line.contains("change-me"), "{line}");
    }
}

#[test]
fn placeholders_are_refused_from_secret_files_too() {
    let file = secret_file("CHANGE-ME\n").unwrap();
    let text = VALID.replace(
        "secret = \"0123456789abcdef0123456789abcdef-session\"",
        &format!("secret_file = \"{}\"", file.path().display()),
    );
    assert_eq!(keys(&load_from_str(&text, no_env())), ["session.secret"]);
}

#[test]
fn an_environment_variable_replacing_a_file_key_is_warned_about() {
    let text = format!("{VALID}\n[store]\npath = \"/var/lib/bridge\"\n")
        .replace("[server]\n", "[server]\nlisten = \"127.0.0.1:8095\"\n");
    let config = load_from_str(
        &text,
        env(&[
            ("BRIDGE_SERVER__LISTEN", "0.0.0.0:8080"),
            ("BRIDGE_STORE__PATH", "/data"),
            ("BRIDGE_OIDC__CLIENT_ID", "bridge"),
            ("BRIDGE_LOG__LEVEL", "debug"),
        ]),
    )
    .unwrap();
    let overridden: Vec<(&str, &str)> = config
        .source
        .env_overrides
        .iter()
        .map(|o| (o.key.as_str(), o.variable.as_str()))
        .collect();
    assert_eq!(
        overridden,
        [
            ("server.listen", "BRIDGE_SERVER__LISTEN"),
            ("store.path", "BRIDGE_STORE__PATH"),
        ]
    );
    let warnings = config.warnings();
    assert!(
        warnings.iter().any(|w| w
            == "server.listen in the config file is replaced by environment variable \
                BRIDGE_SERVER__LISTEN: the file's value is not used"),
        "{warnings:#?}"
    );
}

#[test]
fn the_config_identity_covers_settings_but_no_secret() {
    let base = load_from_str(VALID, no_env()).unwrap();
    let other_secret = load_from_str(
        VALID,
        env(&[(
            "BRIDGE_OIDC__CLIENT_SECRET",
            "a-different-client-secret-9876",
        )]),
    )
    .unwrap();
    let other_limit =
        load_from_str(VALID, env(&[("BRIDGE_LIMITS__LOGIN_PER_MINUTE", "7")])).unwrap();
    assert_eq!(base.source.identity().len(), 64);
    assert_eq!(base.source.identity(), other_secret.source.identity());
    assert_ne!(base.source.identity(), other_limit.source.identity());
    assert_eq!(
        base.source.settings.get("oidc.client_secret"),
        Some("\"(secret)\"")
    );
    let (report, _) = check_report(&Ok(base.clone()));
    assert!(
        report.contains(&format!("config identity {}", base.source.identity())),
        "{report}"
    );
}

#[test]
fn the_example_file_loads_and_checks_ok() {
    let result = load_from(Some(&example_path()), real_secrets());
    let (report, ok) = check_report(&result);
    assert!(ok, "{report}");
    assert!(report.starts_with("OK: "), "{report}");

    let config = result.unwrap();
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(
        config.oidc.issuer_exact,
        "https://idp.example.com/realms/main"
    );
    assert_eq!(config.oidc.scopes, ["openid", "email", "profile"]);
    assert_eq!(config.session.login_timeout, Duration::from_secs(600));
    assert_eq!(
        config.source.path.as_deref(),
        Some(example_path().as_path())
    );
    assert_eq!(config.source.sha256.len(), 64);
    // The example leaves the admin API unset, so the relay-off warning is expected.
    assert!(
        report.contains("warning: the logout relay is off"),
        "{report}"
    );
}

#[test]
fn defaults_fill_every_optional_key() {
    let config = load_from_str(VALID, no_env()).unwrap();
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:8080");
    assert!(config.server.trusted_proxies.is_empty());
    assert_eq!(
        config
            .server
            .metrics_listen
            .map(|a| a.to_string())
            .as_deref(),
        Some("127.0.0.1:9090"),
        "metrics stay off the public listener unless asked"
    );
    assert!(config.discourse.api_key.is_none());
    assert_eq!(config.oidc.scopes, ["openid", "email", "profile"]);
    assert!(config.oidc.auth_params.is_empty());
    assert_eq!(config.oidc.userinfo, UserinfoMode::Auto);
    assert_eq!(config.oidc.token_auth_method, TokenAuthMethod::Auto);
    assert_eq!(config.oidc.clock_skew, Duration::from_secs(60));
    assert_eq!(config.oidc.http_timeout, Duration::from_secs(10));
    assert_eq!(
        config.oidc.jwks_min_refresh_interval,
        Duration::from_secs(60)
    );
    assert_eq!(config.session.login_timeout, Duration::from_secs(600));
    assert!(!config.logout.strict_typ);
    assert!(!config.logout.allow_missing_exp);
    assert_eq!(config.logout.max_token_age, Duration::from_secs(300));
    assert_eq!(config.logout.relay_retry_for, Duration::from_secs(86_400));
    assert!(config.logout.rp_initiated);
    assert_eq!(config.store.path, PathBuf::from("data"));
    assert_eq!(config.store.commit_interval, Duration::from_millis(100));
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.level, "info");
    assert_eq!(config.limits.login_per_minute, 600);
    assert_eq!(config.limits.backchannel_per_minute, 600);
    assert_eq!(config.limits.max_body_bytes, 16_384);
    assert_eq!(config.limits.request_timeout, Duration::from_secs(30));
    assert_eq!(config.source.path, None);
}

#[test]
fn the_derived_urls_are_built_on_the_origins() {
    let config = load_from_str(
        VALID,
        env(&[
            (
                "BRIDGE_SERVER__PUBLIC_URL",
                "https://login.example.com:8443/",
            ),
            ("BRIDGE_DISCOURSE__URL", "https://forum.example.com/"),
        ]),
    )
    .unwrap();
    assert_eq!(
        config.callback_url().as_str(),
        "https://login.example.com:8443/callback"
    );
    assert_eq!(
        config.post_logout_url().as_str(),
        "https://login.example.com:8443/logged-out"
    );
    assert_eq!(
        config.sso_login_prefix().as_str(),
        "https://forum.example.com/session/sso_login"
    );
}

#[test]
fn the_store_commit_interval_is_bounded() {
    let zero = load_from_str(VALID, env(&[("BRIDGE_STORE__COMMIT_INTERVAL", "0s")])).unwrap();
    assert_eq!(zero.store.commit_interval, Duration::ZERO);
    let result = load_from_str(VALID, env(&[("BRIDGE_STORE__COMMIT_INTERVAL", "1m")]));
    assert_eq!(keys(&result), ["store.commit_interval"]);
    let (report, _) = check_report(&result);
    assert!(report.contains("longer than 10s"), "{report}");
}

#[test]
fn three_mistakes_are_all_reported_in_one_run() {
    let text = VALID
        .replace("https://forum.example.com", "forum.example.com")
        .replace("discourse-connect-secret-0123", "short")
        .replace("[session]", "[session]\nlogin_timeout = \"45m\"");
    let result = load_from_str(&text, no_env());
    assert_eq!(
        keys(&result),
        [
            "discourse.url",
            "discourse.connect_secret",
            "session.login_timeout"
        ]
    );
    let (report, ok) = check_report(&result);
    assert!(!ok);
    assert_eq!(report.lines().count(), 4, "{report}");
    assert!(report.starts_with("3 configuration problems:"), "{report}");
    assert!(report.contains("is not a URL"), "{report}");
    assert!(report.contains("at least 10 characters"), "{report}");
    assert!(report.contains("longer than 30m"), "{report}");
}

#[test]
fn three_mistakes_in_a_file_fail_check() {
    let text = VALID
        .replace(
            "https://login.example.com",
            "https://login.example.com/bri%20dge",
        )
        .replace("\"bridge\"", "\"\"")
        .replace("[session]", "[session]\nlogin_timeout = \"ten minutes\"");
    let file = secret_file(&text).unwrap();
    let result = load_from(Some(file.path()), no_env());
    let lines = problems(result);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].starts_with("server.public_url: has the path /bri%20dge, which may only consist"),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("oidc.client_id: is required"));
    assert!(lines[1].contains("BRIDGE_OIDC__CLIENT_ID"));
    assert!(lines[2].starts_with("session.login_timeout: \"ten minutes\" is not a duration"));
    // Each names the file the value came from (the missing client_id was written there as "").
    let file_name = file.path().display().to_string();
    assert!(
        lines[0].ends_with(&format!("(in {file_name})")),
        "{}",
        lines[0]
    );
}

#[test]
fn unknown_keys_in_the_file_and_the_environment_are_all_reported() {
    let text = VALID
        .replace("[oidc]", "[oidc]\nissuerr = \"typo\"\nscope = \"openid\"")
        .replace("[server]", "[server]\nport = 8080")
        + "\n[sesion]\nsecret = \"x\"\n";
    let result = load_from_str(
        &text,
        env(&[
            ("BRIDGE_OIDC__NOPE", "1"),
            ("BRIDGE_MAPPING__NO_SUCH_KEY", "x"),
        ]),
    );
    let lines = problems(result);
    let expected_starts = [
        "oidc.issuerr: unknown key; did you mean `issuer`?",
        "oidc.nope: unknown key",
        "oidc.scope: unknown key; did you mean `scopes`?",
        "server.port: unknown key",
        "sesion: unknown section; did you mean `session`?",
        "mapping.no_such_key: unknown key",
    ];
    for start in expected_starts {
        assert!(
            lines.iter().any(|line| line.starts_with(start)),
            "missing {start:?} in {lines:#?}"
        );
    }
    assert_eq!(lines.len(), expected_starts.len(), "{lines:#?}");
    let from_env = lines.iter().find(|l| l.starts_with("oidc.nope")).unwrap();
    assert!(
        from_env.ends_with("(set by environment variable BRIDGE_OIDC__NOPE)"),
        "{from_env}"
    );
    let mapping = lines.iter().find(|l| l.starts_with("mapping.")).unwrap();
    assert!(mapping.contains("BRIDGE_MAPPING__NO_SUCH_KEY"), "{mapping}");
}

#[test]
fn an_unknown_section_from_the_environment_names_the_variable() {
    let lines = problems(load_from_str(VALID, env(&[("BRIDGE_SERVR__LISTEN", "x")])));
    assert_eq!(
        lines,
        [
            "servr: unknown section; did you mean `server`? (set by environment variable BRIDGE_SERVR__LISTEN)"
        ]
    );
}

#[test]
fn bridge_config_and_variables_without_double_underscore_are_not_keys() {
    let result = load_from_str(
        VALID,
        env(&[
            ("BRIDGE_CONFIG", "/etc/discourse-oidc-bridge/bridge.toml"),
            ("BRIDGE_LOG", "debug"),
            ("BRIDGE_", ""),
            ("HOME", "/root"),
        ]),
    );
    assert!(result.is_ok(), "{:?}", problems(result));
}

#[test]
fn the_environment_beats_the_file() {
    let config = load_from_str(
        VALID,
        env(&[
            ("BRIDGE_SERVER__PUBLIC_URL", "https://sso.example.org"),
            ("BRIDGE_SERVER__LISTEN", "127.0.0.1:9000"),
            ("BRIDGE_SERVER__TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1"),
            ("BRIDGE_OIDC__SCOPES", "[openid, email, groups]"),
            ("BRIDGE_OIDC__USERINFO", "false"),
            ("BRIDGE_OIDC__TOKEN_AUTH_METHOD", "client_secret_post"),
            ("BRIDGE_OIDC__AUTH_PARAMS__PROMPT", "login"),
            ("BRIDGE_OIDC__CLIENT_SECRET", "from-the-environment"),
            ("BRIDGE_LIMITS__MAX_BODY_BYTES", "65536"),
            ("BRIDGE_LOG__FORMAT", "json"),
            ("BRIDGE_SESSION__LOGIN_TIMEOUT", "15m"),
        ]),
    )
    .unwrap();
    assert_eq!(
        config.server.public_url.as_str(),
        "https://sso.example.org/"
    );
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:9000");
    let proxies: Vec<String> = config
        .server
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(proxies, ["10.0.0.0/8", "192.0.2.1/32"]);
    assert_eq!(config.oidc.scopes, ["openid", "email", "groups"]);
    assert_eq!(config.oidc.userinfo, UserinfoMode::Never);
    assert_eq!(
        config.oidc.token_auth_method,
        TokenAuthMethod::ClientSecretPost
    );
    assert_eq!(
        config.oidc.auth_params.get("prompt").map(String::as_str),
        Some("login")
    );
    let client_secret = config.oidc.client_secret.as_ref().unwrap();
    assert_eq!(client_secret.expose_secret(), "from-the-environment");
    assert_eq!(config.limits.max_body_bytes, 65_536);
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.session.login_timeout, Duration::from_secs(900));
}

#[test]
fn an_empty_variable_clears_an_optional_key() {
    let text = VALID.replace(
        "[discourse]",
        "[discourse]\napi_key = \"admin-key\"\napi_username = \"system\"",
    );
    let with_api = load_from_str(&text, no_env()).unwrap();
    assert!(with_api.discourse.admin_api().is_some());
    let cleared = load_from_str(
        &text,
        env(&[
            ("BRIDGE_DISCOURSE__API_KEY", ""),
            ("BRIDGE_DISCOURSE__API_USERNAME", ""),
        ]),
    )
    .unwrap();
    assert!(cleared.discourse.admin_api().is_none());
}

#[test]
fn wrongly_typed_environment_values_name_the_variable() {
    let lines = problems(load_from_str(
        VALID,
        env(&[
            ("BRIDGE_OIDC__USERINFO", "maybe"),
            ("BRIDGE_LIMITS__LOGIN_PER_MINUTE", "lots"),
        ]),
    ));
    assert_eq!(
        lines,
        [
            "oidc.userinfo: expected true, false or \"auto\", found string \"maybe\" (set by \
             environment variable BRIDGE_OIDC__USERINFO)",
            "limits.login_per_minute: expected a whole number, found string \"lots\" (set by \
             environment variable BRIDGE_LIMITS__LOGIN_PER_MINUTE)",
        ]
    );
}

#[test]
fn a_configuration_can_come_from_the_environment_alone() {
    let config = load_from(
        None,
        env(&[
            ("BRIDGE_SERVER__PUBLIC_URL", "https://login.example.com"),
            ("BRIDGE_DISCOURSE__URL", "https://forum.example.com"),
            (
                "BRIDGE_DISCOURSE__CONNECT_SECRET",
                "discourse-connect-secret",
            ),
            ("BRIDGE_OIDC__ISSUER", "https://idp.example.com"),
            ("BRIDGE_OIDC__CLIENT_ID", "bridge"),
            ("BRIDGE_OIDC__TOKEN_AUTH_METHOD", "none"),
            ("BRIDGE_SESSION__SECRET", "0123456789abcdef0123456789abcdef"),
        ]),
    )
    .unwrap();
    assert_eq!(config.source.path, None);
    // The digest of no bytes.
    assert_eq!(
        config.source.sha256,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // The issuer keeps its exact spelling even though the parsed URL gains a slash.
    assert_eq!(config.oidc.issuer_exact, "https://idp.example.com");
    assert_eq!(config.oidc.issuer.as_str(), "https://idp.example.com/");
    assert!(config.oidc.client_secret.is_none());
}

#[test]
fn every_missing_required_key_is_named() {
    let lines = problems(load_from(None, no_env()));
    let keys: Vec<&str> = lines
        .iter()
        .map(|line| line.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        [
            "server.public_url",
            "discourse.url",
            "discourse.connect_secret",
            "oidc.issuer",
            "oidc.client_id",
            "oidc.client_secret",
            "session.secret",
        ]
    );
    assert!(
        lines[2].contains("BRIDGE_DISCOURSE__CONNECT_SECRET_FILE"),
        "{}",
        lines[2]
    );
    assert!(lines[6].contains("openssl rand -hex 32"), "{}", lines[6]);
}

#[test]
fn the_file_digest_is_the_sha256_of_its_bytes() {
    let file = secret_file(VALID).unwrap();
    let config = load_from(Some(file.path()), no_env()).unwrap();
    // Lowercase hex of the digest of exactly the file's bytes (what `sha256sum` prints).
    use sha2::{Digest, Sha256};
    let expected = hex::encode(Sha256::digest(VALID.as_bytes()));
    assert_eq!(config.source.sha256, expected);
    assert_eq!(config.source.path.as_deref(), Some(file.path()));
}

#[test]
fn secrets_are_read_from_files_with_one_newline_trimmed() {
    let connect = secret_file("connect-secret-from-file\n").unwrap();
    let session = secret_file("session-secret-from-a-file-0123456789abcdef\r\n").unwrap();
    let client = secret_file("client secret ends in a space \n").unwrap();
    let api_key = secret_file("admin-api-key").unwrap();
    let text = VALID
        .replace(
            "connect_secret = \"discourse-connect-secret-0123\"",
            &format!("connect_secret_file = {:?}", connect.path()),
        )
        .replace(
            "secret = \"0123456789abcdef0123456789abcdef-session\"",
            &format!("secret_file = {:?}", session.path()),
        )
        .replace("client_secret = \"oidc-client-secret-0123\"", "");
    let config = load_from_str(
        &text,
        env(&[
            (
                "BRIDGE_OIDC__CLIENT_SECRET_FILE",
                client.path().to_str().unwrap(),
            ),
            (
                "BRIDGE_DISCOURSE__API_KEY_FILE",
                api_key.path().to_str().unwrap(),
            ),
            ("BRIDGE_DISCOURSE__API_USERNAME", "system"),
        ]),
    )
    .unwrap();
    assert_eq!(
        config.discourse.connect_secret.expose_secret(),
        "connect-secret-from-file"
    );
    assert_eq!(
        config.session.secret.expose_secret(),
        "session-secret-from-a-file-0123456789abcdef"
    );
    let client_secret = config.oidc.client_secret.as_ref().unwrap();
    assert_eq!(
        client_secret.expose_secret(),
        "client secret ends in a space "
    );
    let (key, user) = config.discourse.admin_api().unwrap();
    assert_eq!((key.expose_secret(), user), ("admin-api-key", "system"));
}

#[test]
fn a_secret_and_its_file_together_are_a_problem() {
    let file = secret_file("connect-secret-from-file").unwrap();
    let text = VALID.replace(
        "[discourse]",
        &format!("[discourse]\nconnect_secret_file = {:?}", file.path()),
    );
    let lines = problems(load_from_str(&text, no_env()));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with(
            "discourse.connect_secret: is set both directly and as connect_secret_file"
        ),
        "{}",
        lines[0]
    );
}

#[test]
fn an_environment_secret_file_replaces_the_secret_in_the_file() {
    let file = secret_file("connect-secret-from-env-file\n").unwrap();
    let config = load_from_str(
        VALID,
        env(&[(
            "BRIDGE_DISCOURSE__CONNECT_SECRET_FILE",
            file.path().to_str().unwrap(),
        )]),
    )
    .unwrap();
    assert_eq!(
        config.discourse.connect_secret.expose_secret(),
        "connect-secret-from-env-file"
    );
}

#[test]
fn a_malformed_secret_file_key_is_one_problem() {
    let text = VALID.replace(
        "connect_secret = \"discourse-connect-secret-0123\"",
        "connect_secret_file = 42",
    );
    let lines = problems(load_from_str(&text, no_env()));
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with("discourse.connect_secret_file: expected"));
}

#[test]
fn an_unreadable_secret_file_names_the_key_and_the_path() {
    let missing = tempfile::tempdir().unwrap().path().join("no-such-secret");
    let empty = secret_file("").unwrap();
    let lines = problems(load_from_str(
        VALID,
        env(&[
            ("BRIDGE_SESSION__SECRET_FILE", missing.to_str().unwrap()),
            ("BRIDGE_SESSION__SECRET", ""),
            (
                "BRIDGE_OIDC__CLIENT_SECRET_FILE",
                empty.path().to_str().unwrap(),
            ),
            ("BRIDGE_OIDC__CLIENT_SECRET", ""),
        ]),
    ));
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with(&format!(
            "oidc.client_secret_file: {} is empty",
            empty.path().display()
        )),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!(
            "session.secret_file: cannot read {}",
            missing.display()
        )),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with("(set by environment variable BRIDGE_SESSION__SECRET_FILE)"));
}

#[test]
fn secrets_never_appear_in_debug_output_or_problems() {
    let config = load_from_str(VALID, no_env()).unwrap();
    let debug = format!("{config:?}");
    for secret in [
        "discourse-connect-secret-0123",
        "oidc-client-secret-0123",
        "0123456789abcdef0123456789abcdef-session",
    ] {
        assert!(!debug.contains(secret), "{secret} leaked into Debug");
    }

    // Broken secrets of every kind: too short, reused, of the wrong type.
    let text = VALID
        .replace("discourse-connect-secret-0123", "tiny-sec")
        .replace("0123456789abcdef0123456789abcdef-session", "tiny-sec")
        .replace(
            "client_secret = \"oidc-client-secret-0123\"",
            "client_secret = 98765432109876",
        );
    let result = load_from_str(&text, env(&[("BRIDGE_DISCOURSE__API_KEY", "[7777777777]")]));
    let errors = result.as_ref().err().unwrap();
    let shown = format!("{errors}\n{errors:?}\n{}", check_report(&result).0);
    assert_eq!(errors.0.len(), 4, "{shown}");
    for secret in ["tiny-sec", "98765432109876", "7777777777"] {
        assert!(!shown.contains(secret), "{secret} leaked into: {shown}");
    }
    let reused = load_from_str(
        &VALID
            .replace(
                "0123456789abcdef0123456789abcdef-session",
                "discourse-connect-secret-0123-and-more-to-be-long",
            )
            .replace(
                "discourse-connect-secret-0123\"",
                "discourse-connect-secret-0123-and-more-to-be-long\"",
            ),
        no_env(),
    );
    let lines = problems(reused);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with("session.secret: must differ from discourse.connect_secret"));
    assert!(!lines[0].contains("and-more-to-be-long"));
}

#[test]
fn cross_key_rules_are_enforced() {
    let cases: [(&[(&str, &str)], &str); 17] = [
        (
            &[("BRIDGE_OIDC__CLIENT_SECRET", "")],
            "oidc.client_secret: is required unless oidc.token_auth_method is \"private_key_jwt\"",
        ),
        (
            &[("BRIDGE_DISCOURSE__API_KEY", "admin-key")],
            "discourse.api_username: is required when discourse.api_key is set",
        ),
        (
            &[("BRIDGE_DISCOURSE__API_USERNAME", "system")],
            "discourse.api_key: is required when discourse.api_username is set",
        ),
        (
            &[(
                "BRIDGE_OIDC__AUTH_PARAMS__REDIRECT_URI",
                "https://evil.example",
            )],
            "oidc.auth_params.redirect_uri: is set by the bridge itself",
        ),
        (
            &[("BRIDGE_OIDC__SCOPES", "email profile")],
            "oidc.scopes: must include \"openid\"",
        ),
        (
            &[("BRIDGE_SERVER__METRICS_LISTEN", "127.0.0.1:8080")],
            "server.metrics_listen: 127.0.0.1:8080 would bind the same port as server.listen",
        ),
        (
            &[
                ("BRIDGE_SERVER__METRICS_LISTEN", "127.0.0.1:9191"),
                ("BRIDGE_SERVER__METRICS_PUBLIC", "true"),
            ],
            "server.metrics_listen: is set together with server.metrics_public = true",
        ),
        (
            &[("BRIDGE_PAGES__ACCENT_COLOR", "red;}body{display:none")],
            "pages.accent_color: \"red;}body{display:none\" is not a colour",
        ),
        (
            &[("BRIDGE_PAGES__LOGO_URL", "http://cdn.example.com/logo.png")],
            "pages.logo_url: \"http://cdn.example.com/logo.png\" is not an https URL",
        ),
        (
            &[("BRIDGE_LIMITS__REQUEST_TIMEOUT", "5s")],
            "limits.request_timeout: 5s must be longer than oidc.http_timeout (10s)",
        ),
        (
            &[("BRIDGE_OIDC__TOKEN_AUTH_METHOD", "private_key_jwt")],
            "oidc.client_key_file: is required with oidc.token_auth_method = \"private_key_jwt\"",
        ),
        (
            &[
                ("BRIDGE_OIDC__TOKEN_AUTH_METHOD", "tls_client_auth"),
                ("BRIDGE_OIDC__CLIENT_KEY_FILE", "/nonexistent/key.pem"),
            ],
            "oidc.client_cert_file: is required with oidc.token_auth_method = \"tls_client_auth\"",
        ),
        (
            &[("BRIDGE_OIDC__CLIENT_KEY_FILE", "/nonexistent/key.pem")],
            "oidc.token_auth_method: is \"auto\", which uses neither",
        ),
        (
            &[("BRIDGE_OIDC__CA_FILE", "/nonexistent/ca.pem")],
            "oidc.ca_file: cannot read /nonexistent/ca.pem",
        ),
        (
            &[("BRIDGE_SERVER__TRUST_STORE", "windows")],
            "server.trust_store: `windows` is not one of: builtin, os",
        ),
        (
            &[("BRIDGE_SERVER__OUTBOUND_PROXY", "socks5://proxy:1080")],
            "server.outbound_proxy: SOCKS proxies are not supported",
        ),
        (
            &[(
                "BRIDGE_DISCOURSE__URL",
                "https://forum.example.com/forum/../x",
            )],
            "discourse.url: has the path /x",
        ),
    ];
    for (variables, expected) in cases {
        let lines = problems(load_from_str(VALID, env(variables)));
        assert_eq!(lines.len(), 1, "{variables:?}: {lines:#?}");
        assert!(
            lines[0].starts_with(expected),
            "{variables:?}: {}",
            lines[0]
        );
    }
}

#[test]
fn addresses_and_urls_that_do_not_parse_are_problems() {
    let lines = problems(load_from_str(
        VALID,
        env(&[
            ("BRIDGE_SERVER__LISTEN", "localhost:8080"),
            (
                "BRIDGE_SERVER__TRUSTED_PROXIES",
                "10.0.0.0/8,proxy.internal",
            ),
            ("BRIDGE_OIDC__ISSUER", "ftp://idp.example.com"),
            ("BRIDGE_DISCOURSE__URL", "https://forum.example.com/?x=1"),
            ("BRIDGE_LOG__LEVEL", "verbose=="),
        ]),
    ));
    let keys: Vec<&str> = lines
        .iter()
        .map(|line| line.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        [
            "server.listen",
            "server.trusted_proxies[1]",
            "discourse.url",
            "oidc.issuer",
            "log.level",
        ],
        "{lines:#?}"
    );
    assert!(lines[1].ends_with("(set by environment variable BRIDGE_SERVER__TRUSTED_PROXIES)"));
}

#[test]
fn warnings_point_out_risky_but_valid_settings() {
    let config = load_from_str(
        VALID,
        env(&[
            ("BRIDGE_SERVER__PUBLIC_URL", "http://login.example.com"),
            ("BRIDGE_OIDC__ISSUER", "http://127.0.0.1:9000"),
            ("BRIDGE_SERVER__TRUSTED_PROXIES", "0.0.0.0/0"),
            ("BRIDGE_OIDC__CLOCK_SKEW", "10m"),
        ]),
    )
    .unwrap();
    // The two keys VALID writes and the environment replaces are warned about first.
    let all = config.warnings();
    let (overrides, warnings): (Vec<String>, Vec<String>) = all
        .into_iter()
        .partition(|w| w.contains("is replaced by environment variable"));
    assert_eq!(overrides.len(), 2, "{overrides:#?}");
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
    assert!(warnings[0].starts_with("server.public_url uses http://"));
    assert!(warnings[1].starts_with("the logout relay is off"));
    assert!(warnings[2].starts_with("oidc.clock_skew is 10m"));
    assert!(warnings[3].starts_with("server.trusted_proxies trusts every address"));
    let (report, ok) = check_report(&Ok(config));
    assert!(ok);
    assert_eq!(report.matches("\nwarning: ").count(), 6, "{report}");
}

/// Issue 15, fault 4: behind a proxy the bridge does not trust, every user has the proxy's
/// address and shares one rate limit; `check` says so when the bridge listens beyond loopback.
#[test]
fn an_empty_trusted_proxies_list_on_a_public_listener_is_a_warning() {
    let public = load_from_str(
        VALID,
        env(&[
            ("BRIDGE_SERVER__LISTEN", "0.0.0.0:8080"),
            ("BRIDGE_SERVER__TRUSTED_PROXIES", ""),
        ]),
    )
    .unwrap();
    assert!(
        public.warnings().iter().any(|w| w.starts_with(
            "server.trusted_proxies is empty while the bridge listens on 0.0.0.0:8080"
        )),
        "{:#?}",
        public.warnings()
    );
    for (listen, proxies) in [("127.0.0.1:8080", ""), ("0.0.0.0:8080", "10.1.2.3")] {
        let config = load_from_str(
            VALID,
            env(&[
                ("BRIDGE_SERVER__LISTEN", listen),
                ("BRIDGE_SERVER__TRUSTED_PROXIES", proxies),
            ]),
        )
        .unwrap();
        assert!(
            !config
                .warnings()
                .iter()
                .any(|w| w.starts_with("server.trusted_proxies is empty")),
            "{listen} {proxies}"
        );
    }
}

#[test]
fn invalid_toml_is_one_problem_naming_the_file() {
    let file = secret_file("[server\npublic_url = 1\n").unwrap();
    let result = load_from(Some(file.path()), no_env());
    let lines = problems(result);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with(&format!("{}: is not valid TOML", file.path().display())),
        "{}",
        lines[0]
    );
    let missing = load_from(Some(Path::new("/nonexistent/bridge.toml")), no_env());
    assert_eq!(
        problems(missing)[0].split(": ").take(2).collect::<Vec<_>>(),
        ["/nonexistent/bridge.toml", "cannot read the config file"]
    );
}

#[test]
fn an_empty_variable_unsets_any_key_whatever_its_type() {
    let text = VALID.replace("[server]\n", "[server]\nlisten = \"127.0.0.1:8095\"\n");
    let config = load_from_str(
        &format!("{text}\n[limits]\nlogin_per_minute = 5\n"),
        env(&[
            ("BRIDGE_SERVER__LISTEN", ""),
            ("BRIDGE_LIMITS__LOGIN_PER_MINUTE", " "),
            ("BRIDGE_OIDC__USERINFO", ""),
        ]),
    )
    .unwrap();
    // The defaults, not the file's values and not a type error.
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(config.limits.login_per_minute, 600);
    assert_eq!(config.oidc.userinfo, UserinfoMode::Auto);
    // A required key unset this way is missing, and the message says which variable did it.
    let lines = problems(load_from_str(VALID, env(&[("BRIDGE_OIDC__ISSUER", "")])));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("oidc.issuer: is required"),
        "{lines:?}"
    );
    assert!(lines[0].contains("BRIDGE_OIDC__ISSUER"), "{lines:?}");
}

#[test]
fn scim_is_validated_and_off_without_its_section() {
    let config = load_from_str(VALID, no_env()).unwrap();
    assert!(config.scim.is_none(), "SCIM is off without [scim]");

    let with_api = format!(
        "{VALID}\n[scim]\ntoken = \"short\"\nsubject_attribute = \"no such path!\"\nsuspend_for = \"0s\"\n"
    )
    .replace(
        "[oidc]",
        "api_key = \"discourse-api-key-0123\"\napi_username = \"system\"\n\n[oidc]",
    );
    let result = load_from_str(&with_api, no_env());
    let found = keys(&result);
    for key in ["scim.token", "scim.subject_attribute", "scim.suspend_for"] {
        assert!(found.contains(&key), "{key} missing from {found:?}");
    }
    assert!(
        !problems(result).iter().any(|p| p.contains("short")),
        "the token is never printed"
    );

    // The admin API is required; the token can come from the environment.
    let token = "scim-token-0123456789abcdef0123456789";
    let result = load_from_str(
        &format!("{VALID}\n[scim]\n"),
        env(&[("BRIDGE_SCIM__TOKEN", token)]),
    );
    assert_eq!(keys(&result), vec!["scim"]);

    let file = secret_file(&format!(
        "# rotation\n{token}\nscim-token-new-0123456789abcdef01234\n"
    ))
    .unwrap();
    let config = load_from_str(
        &with_api
            .replace("token = \"short\"\n", "")
            .replace("subject_attribute = \"no such path!\"\n", "")
            .replace("suspend_for = \"0s\"\n", "on_deactivate = \"suspend\"\n"),
        env(&[("BRIDGE_SCIM__TOKEN_FILE", file.path().to_str().unwrap())]),
    )
    .unwrap();
    let scim = config.scim.unwrap();
    assert_eq!(scim.tokens.len(), 2, "every line of the file is a token");
    assert_eq!(scim.tokens[0].expose_secret(), token);
    assert_eq!(scim.subject_attribute, "externalId");
    assert_eq!(
        scim.on_deactivate,
        discourse_oidc_bridge::scim::OnDeactivate::Suspend
    );
}

#[test]
fn the_shared_store_url_is_checked_offline_and_never_repeated() {
    // Unset: the embedded store.
    let config = load_from_str(VALID, no_env()).unwrap();
    assert!(config.store.postgres.is_none());
    assert_eq!(config.store.relay_lease, Duration::from_secs(120));
    assert_eq!(config.store.poll_interval, Duration::from_secs(1));

    let url = "postgres://bridge:s3cret-pw@db.example:5432/bridge?sslmode=verify-full";
    let config = load_from_str(VALID, env(&[("BRIDGE_STORE__URL", url)])).unwrap();
    let postgres = config.store.postgres.expect("the PostgreSQL store");
    assert_eq!(postgres.url.expose_secret(), url);
    assert_eq!(postgres.pool_size, 8);

    // From a file, like every secret.
    let file = secret_file(&format!("{url}\n")).unwrap();
    let path = file.path().display().to_string();
    let config = load_from_str(VALID, env(&[("BRIDGE_STORE__URL_FILE", path.as_str())])).unwrap();
    assert_eq!(config.store.postgres.unwrap().url.expose_secret(), url);

    for (bad, complaint) in [
        (
            "postgres://bridge:s3cret-pw@db.example/bridge",
            "sslmode=verify-full",
        ),
        (
            "postgres://bridge:s3cret-pw@db.example/bridge?sslmode=allow",
            "not supported",
        ),
        ("mysql://bridge:s3cret-pw@db.example/bridge", "scheme"),
    ] {
        let result = load_from_str(VALID, env(&[("BRIDGE_STORE__URL", bad)]));
        assert_eq!(keys(&result), ["store.url"], "{bad}");
        let text = problems(result).join("\n");
        assert!(text.contains(complaint), "{bad}: {text}");
        assert!(
            !text.contains("s3cret-pw"),
            "the password is never shown: {text}"
        );
    }

    let result = load_from_str(
        VALID,
        env(&[("BRIDGE_STORE__URL", url), ("BRIDGE_STORE__POOL_SIZE", "0")]),
    );
    assert_eq!(keys(&result), ["store.pool_size"]);
    let result = load_from_str(VALID, env(&[("BRIDGE_STORE__CA_FILE", "/nonexistent.pem")]));
    assert_eq!(keys(&result), ["store.ca_file"], "ca_file without url");
    let result = load_from_str(
        VALID,
        env(&[
            ("BRIDGE_STORE__URL", url),
            ("BRIDGE_STORE__CA_FILE", "/nonexistent.pem"),
        ]),
    );
    assert_eq!(keys(&result), ["store.ca_file"]);
    let result = load_from_str(VALID, env(&[("BRIDGE_STORE__RELAY_LEASE", "100ms")]));
    assert_eq!(keys(&result), ["store.relay_lease"]);
}

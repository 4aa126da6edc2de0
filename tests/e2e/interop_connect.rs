//! Interop of the DiscourseConnect codec with independent implementations: the npm package
//! `discourse-sso` and Node's own crypto, Base64 and URL encoding (driven through
//! `tests/node/connect-interop.mjs`), in both directions.

use std::collections::BTreeMap;
use std::error::Error;
use std::io::Write;
use std::process::{Command, Stdio};

use discourse_oidc_bridge::discourse::connect::{
    ConnectError, ConnectSecret, Field, Payload, SsoRequest, parse_sso_query,
};
use serde_json::{Value, json};

use crate::support::node::node_dir;

type TestResult = Result<(), Box<dyn Error>>;

const SECRET: &str = "interop-secret-0123456789";

/// Runs the commands through one `node` process and returns its results, one per command.
fn run_node(commands: &[Value]) -> Result<Vec<Value>, Box<dyn Error>> {
    let mut child = Command::new("node")
        .arg("connect-interop.mjs")
        .current_dir(node_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or("node stdin is not piped")?
        .write_all(&serde_json::to_vec(commands)?)?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        return Err(format!(
            "connect-interop.mjs failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let results: Vec<Value> = serde_json::from_slice(&output.stdout)?;
    if results.len() != commands.len() {
        return Err(format!("{} results for {} commands", results.len(), commands.len()).into());
    }
    Ok(results)
}

/// The payload's pairs as they go on the wire, as JSON strings (Node's shape for one value).
fn wire_fields(payload: &Payload) -> BTreeMap<String, Value> {
    payload
        .pairs()
        .map(|(key, value)| (key.into_owned(), Value::String(value.to_owned())))
        .collect()
}

/// The value of `name` in a `sso=...&sig=...` query, still percent-encoded.
fn raw_parameter<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

fn awkward_payloads() -> Vec<Payload> {
    let mut everything = Payload::new();
    for field in Field::ALL {
        everything.set(field, format!("{} value ~+&=%/?", field.key()));
    }
    everything
        .set(Field::Nonce, "cb68251eefb5211e58c00ff1395f0c0b")
        .set(Field::Name, "Zoë Ångström-山田 🦀")
        .set(Field::Username, "zoë_山田")
        .set(Field::Email, "zoe+forum@example.org")
        .set(Field::Bio, "line one\nline two")
        .set_bool(Field::Admin, false)
        .set_groups(Field::Groups, &["staff", "trust_level_2"])
        .set_custom("user_field_1", "a~b+c&d=e")
        .set_custom("ünïcode", "値");

    let mut minimal = Payload::new();
    minimal
        .set(Field::Nonce, "0123456789abcdef0123456789abcdef")
        .set(Field::ExternalId, "42")
        .set(Field::Email, "a@example.org");
    vec![everything, minimal]
}

#[test]
fn payload_signed_here_is_valid_for_discourse_sso() -> TestResult {
    let secret = ConnectSecret::new(SECRET);
    let payloads = awkward_payloads();
    let signed: Vec<_> = payloads
        .iter()
        .map(|payload| payload.sign(&secret).query_string())
        .collect();
    let mut commands = Vec::new();
    for query in &signed {
        let sso = raw_parameter(query, "sso").ok_or("no sso")?;
        let sig = raw_parameter(query, "sig").ok_or("no sig")?;
        commands.push(json!({"op": "validate", "secret": SECRET, "sso": sso, "sig": sig}));
    }
    // The peer must also notice a payload signed with another secret.
    let foreign = payloads[1].sign(&ConnectSecret::new("some-other-secret"));
    commands
        .push(json!({"op": "validate", "secret": SECRET, "sso": foreign.sso, "sig": foreign.sig}));

    let results = run_node(&commands)?;
    for (payload, result) in payloads.iter().zip(&results) {
        assert_eq!(result["valid"], json!(true), "{result}");
        assert_eq!(result["nonce"], json!(payload.get(Field::Nonce)));
        let fields: BTreeMap<String, Value> = serde_json::from_value(result["fields"].clone())?;
        assert_eq!(fields, wire_fields(payload));
    }
    assert_eq!(results[2]["valid"], json!(false));
    Ok(())
}

#[test]
fn login_string_from_discourse_sso_decodes_here() -> TestResult {
    let mut cases = vec![json!({
        "nonce": "cb68251eefb5211e58c00ff1395f0c0b",
        "external_id": "hello123",
        "email": "test@test.com",
        "username": "samsam",
        "name": "sam",
        "require_activation": "true",
    })];
    // Node's querystring leaves `~ ! ' ( )` unescaped, so this Base64 holds `+` or `/`, which
    // only survive because the outer query escapes them.
    cases.push(json!({
        "nonce": "~~~0123456789abcdef",
        "external_id": "id ~+&=%/?",
        "email": "zoe+forum@example.org",
        "name": "Zoë O'Brien (山田) ~!* 🦀",
        "groups": "staff,trust_level_2",
        "admin": "false",
        "bio": "line one\nline two",
        "custom.user_field_1": "x+y&z=w~",
        "prompt": "none",
        "foo": "bar",
    }));
    let commands: Vec<Value> = cases
        .iter()
        .map(|params| json!({"op": "build", "secret": SECRET, "params": params}))
        .collect();
    let results = run_node(&commands)?;

    let secret = ConnectSecret::new(SECRET);
    let mut saw_url_sensitive_base64 = false;
    for (params, result) in cases.iter().zip(&results) {
        let login = result["login"].as_str().ok_or("no login string")?;
        let (sso, sig) = parse_sso_query(login)?;
        saw_url_sensitive_base64 |= sso.contains(['+', '/']);
        let payload = Payload::decode(&sso, &sig, &secret)?;

        // Discourse's keys and `custom.*` come back; keys Discourse ignores are dropped.
        let mut expected: BTreeMap<String, Value> = serde_json::from_value(params.clone())?;
        expected.retain(|key, _| Field::from_key(key).is_some() || key.starts_with("custom."));
        assert_eq!(wire_fields(&payload), expected);

        // Signed with another secret, the same login string is a signature mismatch.
        let error = Payload::decode(&sso, &sig, &ConnectSecret::new("wrong-secret-0000"));
        assert_eq!(error, Err(ConnectError::SignatureMismatch));
    }
    assert!(saw_url_sensitive_base64);
    Ok(())
}

#[test]
fn request_signed_like_discourse_in_node_verifies_here() -> TestResult {
    let requests = [
        SsoRequest {
            nonce: "cb68251eefb5211e58c00ff1395f0c0b".to_owned(),
            return_sso_url: "http://forum.example/session/sso_login".to_owned(),
        },
        SsoRequest {
            nonce: "0f1e2d3c4b5a69788796a5b4c3d2e1f0".to_owned(),
            // Percent-escapes, a query and `~` in the URL's canonical form (the bridge refuses a
            // `return_sso_url` whose text is not canonical: raw spaces or non-ASCII).
            return_sso_url: "https://forum.example/sub%20folder/session/sso_login?lang=de~%C3%BC"
                .to_owned(),
        },
    ];
    let connect_urls = [
        "https://bridge.example/sso",
        "https://bridge.example/sso?tenant=forum",
    ];
    let commands: Vec<Value> = requests
        .iter()
        .zip(connect_urls)
        .map(|(request, connect_url)| {
            json!({
                "op": "request",
                "secret": SECRET,
                "nonce": request.nonce,
                "return_sso_url": request.return_sso_url,
                "connect_url": connect_url,
            })
        })
        .collect();
    let results = run_node(&commands)?;

    let secret = ConnectSecret::new(SECRET);
    for ((request, connect_url), result) in requests.iter().zip(connect_urls).zip(&results) {
        let url = url::Url::parse(result["url"].as_str().ok_or("no url")?)?;
        let query = url.query().ok_or("no query")?;
        assert_eq!(&SsoRequest::verify(query, &secret)?, request);

        // What we sign as Discourse is byte for byte what Node signed, URL included.
        let ours = request.sign(&secret);
        assert_eq!(json!(ours.sso), result["sso"]);
        assert_eq!(json!(ours.sig), result["sig"]);
        assert_eq!(json!(ours.redirect_url(connect_url)), result["url"]);
    }
    Ok(())
}

//! Criterion benchmarks of the bridge's CPU-only steps: DiscourseConnect verify/sign/decode and
//! the claim mapping of a Keycloak-like user. Run: `cargo bench --bench codec`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use discourse_oidc_bridge::config;
use discourse_oidc_bridge::discourse::connect::{ConnectSecret, Field, Payload, SsoRequest};
use discourse_oidc_bridge::mapping::Mapper;

fn codec(c: &mut Criterion) {
    let secret = ConnectSecret::new("a-realistic-discourse-connect-secret-0123456789");
    let request = SsoRequest {
        nonce: "cb68251eefb5211e58c00ff1395f0c0b".into(),
        return_sso_url: "https://forum.example.com/session/sso_login".into(),
    }
    .sign(&secret);
    let query = request.query_string();
    c.bench_function("verify Discourse request", |b| {
        b.iter(|| SsoRequest::verify(black_box(&query), &secret).unwrap())
    });

    let mut answer = Payload::new();
    answer
        .set(Field::Nonce, "cb68251eefb5211e58c00ff1395f0c0b")
        .set(Field::ExternalId, "f3b0c6a2-41d2-4a55-9d7e-5d9a0f1c2b3e")
        .set(Field::Email, "alice.liddell@example.com")
        .set(Field::Username, "alice")
        .set(Field::Name, "Alice Liddell")
        .set(Field::AvatarUrl, "https://avatars.example.com/alice.png")
        .set_bool(Field::Admin, false)
        .set_bool(Field::Moderator, true)
        .set_groups(
            Field::AddGroups,
            &["staff_team", "engineering", "backend", "oncall", "readers"],
        )
        .set_groups(Field::RemoveGroups, &["alumni", "contractors"])
        .set_custom("user_field_1", "Platform")
        .set_custom("department", "R&D ~ Core");
    c.bench_function("sign answer + redirect URL", |b| {
        b.iter(|| {
            black_box(&answer)
                .sign(&secret)
                .redirect_url("https://forum.example.com/session/sso_login")
        })
    });
    let signed = answer.sign(&secret);
    c.bench_function("decode answer", |b| {
        b.iter(|| Payload::decode(black_box(&signed.sso), &signed.sig, &secret).unwrap())
    });
}

fn mapping(c: &mut Criterion) {
    let root = env!("CARGO_MANIFEST_DIR");
    let mapping =
        std::fs::read_to_string(format!("{root}/tests/fixtures/claims/keycloak/config.toml"))
            .unwrap();
    let base = r#"
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
    let cfg = config::load_from_str(&format!("{base}\n{mapping}"), Vec::new()).unwrap();
    let mapper = Mapper::compile(&cfg.mapping, &cfg.groups, &cfg.access).unwrap();
    let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{root}/tests/fixtures/claims/keycloak/member.claims.json"
        ))
        .unwrap(),
    )
    .unwrap();
    c.bench_function("map Keycloak claims", |b| {
        b.iter(|| mapper.map(black_box(&claims)))
    });
}

criterion_group!(benches, codec, mapping);
criterion_main!(benches);

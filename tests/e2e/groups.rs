//! Group claim shapes end to end (issue 13): the real OpenID provider issues the claims in the
//! shapes real IdPs use (Zitadel's roles object, GitLab's slash-less paths, a shape nobody can
//! read, an Entra overage marker) and the forum receives the right groups and roles, with the
//! same configurations as the fixtures in `tests/fixtures/claims/`. The Entra overage is
//! resolved through the in-test Microsoft Graph, including its failures.

use std::collections::BTreeMap;
use std::path::Path;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::graph::{GraphFault, TestGraph};
use crate::support::{Browser, ForumOptions, IdpOptions, TestBridge, TestForum, TestIdp};

fn fixture_config(idp: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/claims")
        .join(idp)
        .join("config.toml");
    std::fs::read_to_string(path).unwrap()
}

/// The claims of a fixture case, without the registered claims the OP sets itself.
fn fixture_claims(idp: &str, case: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/claims")
        .join(idp)
        .join(format!("{case}.claims.json"));
    let mut claims: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for registered in ["iss", "aud", "sub", "iat", "exp", "nbf", "auth_time", "ver"] {
        claims.remove(registered);
    }
    Value::Object(claims)
}

/// Logs `user` in with a fresh browser and returns the payload the forum received.
async fn login(forum: &TestForum, user: &str) -> BTreeMap<String, String> {
    let browser = Browser::new();
    let before = forum.logins().len();
    let to_bridge = browser.get(forum.sso_start_url("/")).await;
    let at_bridge = browser.step(&to_bridge).await;
    let authorize = browser.follow(&at_bridge);
    let callback = browser.login_at_idp(&authorize, user).await;
    let answer = browser.get(&callback).await;
    assert_eq!(
        answer.status(),
        StatusCode::FOUND,
        "bridge answered the forum"
    );
    browser.step(&answer).await;
    let logins = forum.logins();
    assert_eq!(logins.len(), before + 1, "the forum accepted the login");
    logins.last().unwrap().payload.clone()
}

fn get<'a>(payload: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    payload.get(key).map(String::as_str)
}

/// Issue 13's two failing inputs, through a real login: Zitadel's roles object and GitLab's
/// nested paths without a leading slash.
#[tokio::test]
async fn zitadel_roles_and_gitlab_paths_through_a_real_login() {
    let idp = TestIdp::start(
        IdpOptions::default().user("zitadel-jane", fixture_claims("zitadel", "project-roles")),
    )
    .await;
    // Users added after start, one with a claim name the OP did not know at start.
    idp.set_user("zitadel-kim", fixture_claims("zitadel", "unreadable"))
        .await;
    idp.set_user("gitlab-lee", fixture_claims("gitlab", "nested"))
        .await;
    let forum = TestForum::start(ForumOptions::default()).await;

    let zitadel = TestBridge::start(&idp, &forum, &fixture_config("zitadel")).await;
    let jane = login(&forum, "zitadel-jane").await;
    assert_eq!(get(&jane, "admin"), Some("true"), "{jane:?}");
    assert_eq!(get(&jane, "add_groups"), Some("forum_staff"), "{jane:?}");
    assert_eq!(get(&jane, "remove_groups"), None, "{jane:?}");

    // A shape nobody can read: the login goes ahead and changes nothing about groups or roles.
    let kim = login(&forum, "zitadel-kim").await;
    for key in [
        "admin",
        "moderator",
        "add_groups",
        "remove_groups",
        "groups",
    ] {
        assert_eq!(get(&kim, key), None, "{key}: {kim:?}");
    }
    drop(zitadel);

    let _gitlab = TestBridge::start(&idp, &forum, &fixture_config("gitlab")).await;
    let lee = login(&forum, "gitlab-lee").await;
    assert_eq!(
        get(&lee, "add_groups"),
        Some("platform,platform-backend"),
        "{lee:?}"
    );
    assert_eq!(get(&lee, "remove_groups"), None, "{lee:?}");
}

/// A delimited string and lists of objects, through a real login, with the fixtures' configs.
#[tokio::test]
async fn delimited_strings_and_object_lists_through_a_real_login() {
    let idp = TestIdp::start(IdpOptions::default()).await;
    idp.set_user("mia", fixture_claims("delimited", "member"))
        .await;
    idp.set_user("noor", fixture_claims("objects", "member"))
        .await;
    let forum = TestForum::start(ForumOptions::default()).await;

    let delimited = TestBridge::start(&idp, &forum, &fixture_config("delimited")).await;
    let mia = login(&forum, "mia").await;
    assert_eq!(get(&mia, "add_groups"), Some("sales,writers"), "{mia:?}");
    assert_eq!(get(&mia, "remove_groups"), Some("editors"), "{mia:?}");
    assert_eq!(get(&mia, "moderator"), Some("true"), "{mia:?}");
    drop(delimited);

    let _objects = TestBridge::start(&idp, &forum, &fixture_config("objects")).await;
    let noor = login(&forum, "noor").await;
    assert_eq!(
        get(&noor, "add_groups"),
        Some("team_green,team_red,writers"),
        "{noor:?}"
    );
    assert_eq!(get(&noor, "remove_groups"), Some("team_blue"), "{noor:?}");
    assert_eq!(get(&noor, "admin"), Some("true"), "{noor:?}");
}

/// The bridge's configuration for the Entra fixture, pointed at the in-test Graph.
fn entra_graph_config(graph: &TestGraph, timeout: &str) -> String {
    fixture_config("entra-graph").replace(
        "graph_timeout = \"5s\"",
        &format!(
            "graph_timeout = \"{timeout}\"\ngraph_url = \"{}\"",
            graph.base_url()
        ),
    )
}

fn entra_idp() -> IdpOptions {
    IdpOptions::default().user("priya", fixture_claims("entra-graph", "overage-resolved"))
}

const ENGINEERING: &str = "0b8a9c52-6a7e-4e6e-9a1b-2f6f0c4d5e6f";
const SALES: &str = "5d2e7f10-3c4b-4a59-8e21-9f0a1b2c3d4e";
const OTHER: &str = "f1f2f3f4-0000-4000-8000-000000000001";

/// An overage token: the bridge pages through Graph with the login's access token, waits out a
/// 429 whose Retry-After fits the timeout, and maps the object ids with the renames.
#[tokio::test]
async fn entra_overage_is_resolved_through_graph() {
    let idp = TestIdp::start(entra_idp()).await;
    let graph = TestGraph::start(idp.url("/me").as_str(), 2).await;
    graph.set_groups("priya", &[ENGINEERING, OTHER, SALES]);
    graph.fault_next(GraphFault::Throttle { retry_after: 0 });
    let forum = TestForum::start(ForumOptions::default()).await;
    let _bridge = TestBridge::start(&idp, &forum, &entra_graph_config(&graph, "5s")).await;

    let priya = login(&forum, "priya").await;
    assert_eq!(
        get(&priya, "add_groups"),
        Some("engineering,sales"),
        "{priya:?}"
    );
    assert_eq!(
        get(&priya, "remove_groups"),
        Some("contractors"),
        "{priya:?}"
    );
    // `roles` came in the token beside the overage marker.
    assert_eq!(get(&priya, "admin"), Some("true"), "{priya:?}");

    let requests = graph.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    // Three groups and one directory role, two a page.
    assert_eq!(statuses, [429, 200, 200], "{requests:#?}");
    assert!(requests.iter().all(|r| r.had_bearer_token));
    assert!(
        requests[0]
            .path_and_query
            .starts_with("/v1.0/me/transitiveMemberOf?"),
        "{requests:#?}"
    );
    assert!(
        requests[2].path_and_query.contains("$skiptoken=2"),
        "{requests:#?}"
    );
}

/// Every Graph failure leaves the groups unknown: the login goes ahead with no group or role
/// changes at all.
#[tokio::test]
async fn graph_failures_leave_the_groups_unknown() {
    let idp = TestIdp::start(entra_idp()).await;
    let graph = TestGraph::start(idp.url("/me").as_str(), 100).await;
    graph.set_groups("priya", &[ENGINEERING]);
    let forum = TestForum::start(ForumOptions::default()).await;
    let _bridge = TestBridge::start(&idp, &forum, &entra_graph_config(&graph, "2s")).await;

    for fault in [
        GraphFault::Forbidden,
        GraphFault::Unauthorized,
        GraphFault::Throttle { retry_after: 3600 },
        GraphFault::Hang,
    ] {
        graph.fault_next(fault.clone());
        let payload = login(&forum, "priya").await;
        for key in [
            "admin",
            "moderator",
            "add_groups",
            "remove_groups",
            "groups",
        ] {
            assert_eq!(get(&payload, key), None, "{fault:?} {key}: {payload:?}");
        }
    }
    // The stand-in itself accepts the bridge's token: without a fault, the groups arrive.
    let payload = login(&forum, "priya").await;
    assert_eq!(
        get(&payload, "add_groups"),
        Some("engineering"),
        "{payload:?}"
    );
}

//! Claim mapping end to end: group claims issued by the real OpenID provider arrive at the
//! forum as the mapped `add_groups`/`remove_groups` and roles, and a live reload of the mapping
//! takes effect without a restart while a broken edit changes nothing.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Browser, ForumOptions, IdpOptions, TestBridge, TestForum, TestIdp};

const MAPPING: &str = r#"
[groups]
sources = ["groups"]
paths = "leaf"
unmatched = "keep"
managed = ["employees", "mods", "engineering"]

# `staff` and `moderators` are Discourse's own automatic groups, so they are renamed.
[groups.rename]
"staff" = "employees"
"moderators" = "mods"

[[groups.rules]]
group = "forum-admins"
admin = true

[[groups.rules]]
group = "moderators"
moderator = true
"#;

fn idp_options() -> IdpOptions {
    IdpOptions::default().user(
        "carol",
        json!({
            "email": "carol@example.test",
            "email_verified": true,
            "name": "Carol",
            "preferred_username": "carol",
            "groups": ["/engineering"],
        }),
    )
}

/// Logs `user` in with a fresh browser and returns the payload the forum received.
async fn login(
    forum: &TestForum,
    bridge: &TestBridge,
    user: &str,
) -> std::collections::BTreeMap<String, String> {
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
    assert!(
        answer.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(&forum.return_sso_url())
    );
    let _ = bridge;
    browser.step(&answer).await;
    let logins = forum.logins();
    assert_eq!(logins.len(), before + 1);
    logins.last().unwrap().payload.clone()
}

fn list(payload: &std::collections::BTreeMap<String, String>, key: &str) -> Vec<String> {
    let mut items: Vec<String> = payload
        .get(key)
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    items.sort();
    items
}

#[tokio::test]
async fn idp_groups_become_discourse_groups_and_roles() {
    let idp = TestIdp::start(idp_options()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let bridge = TestBridge::start(&idp, &forum, MAPPING).await;

    let alice = login(&forum, &bridge, "alice").await;
    // forum-admins only grants the admin role (its rule has no `to`), so it is not a group.
    assert_eq!(list(&alice, "add_groups"), ["employees", "mods"]);
    assert_eq!(list(&alice, "remove_groups"), ["engineering"]);
    assert_eq!(alice.get("admin").map(String::as_str), Some("true"));
    assert_eq!(alice.get("moderator").map(String::as_str), Some("true"));

    // Carol is not in the admin or moderator groups: both roles are sent as false, so an
    // admin removed from the IdP group is demoted at the next login.
    let carol = login(&forum, &bridge, "carol").await;
    assert_eq!(list(&carol, "add_groups"), ["engineering"]);
    assert_eq!(list(&carol, "remove_groups"), ["employees", "mods"]);
    assert_eq!(carol.get("admin").map(String::as_str), Some("false"));
    assert_eq!(carol.get("moderator").map(String::as_str), Some("false"));
}

#[tokio::test]
async fn a_mapping_edit_is_applied_live_and_a_broken_edit_changes_nothing() {
    let idp = TestIdp::start(idp_options()).await;
    let forum = TestForum::start(ForumOptions::default()).await;
    let bridge = TestBridge::start_from_file(&idp, &forum, MAPPING).await;
    let client = reqwest::Client::new();
    let readyz = || async {
        let body: serde_json::Value = client
            .get(bridge.url("/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["config_identity"].as_str().unwrap().to_owned()
    };
    let original_hash = readyz().await;
    assert_eq!(original_hash.len(), 64);
    let carol = login(&forum, &bridge, "carol").await;
    assert_eq!(list(&carol, "add_groups"), ["engineering"]);

    // Rename engineering to builders: applied without a restart.
    let path = bridge.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replace(
        "\"moderators\" = \"mods\"",
        "\"moderators\" = \"mods\"\n\"engineering\" = \"builders\"",
    );
    assert_ne!(edited, text);
    std::fs::write(&path, &edited).unwrap();
    let mut new_hash = original_hash.clone();
    for _ in 0..40 {
        new_hash = readyz().await;
        if new_hash != original_hash {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_ne!(new_hash, original_hash, "the reload was picked up");
    let carol = login(&forum, &bridge, "carol").await;
    assert_eq!(list(&carol, "add_groups"), ["builders"]);

    // A broken edit (invalid regex) is rejected; the active mapping and hash stay.
    let rejected_before = rejected_reloads(&client, &bridge).await;
    std::fs::write(
        &path,
        format!("{edited}\n[[groups.rules]]\npattern = \"([unclosed\"\nto = \"x\"\n"),
    )
    .unwrap();
    let mut rejected = rejected_before;
    for _ in 0..40 {
        rejected = rejected_reloads(&client, &bridge).await;
        if rejected > rejected_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(rejected > rejected_before, "the broken edit was looked at");
    assert_eq!(readyz().await, new_hash, "the broken edit is not active");
    let carol = login(&forum, &bridge, "carol").await;
    assert_eq!(list(&carol, "add_groups"), ["builders"]);
}

/// How many configuration changes were rejected so far, from `/metrics`.
async fn rejected_reloads(client: &reqwest::Client, bridge: &TestBridge) -> u64 {
    let text = client
        .get(bridge.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|line| line.starts_with("bridge_config_reloads_total{outcome=\"rejected\"}"))
        .and_then(|line| line.rsplit(' ').next())
        .map_or(0, |count| count.parse().unwrap())
}

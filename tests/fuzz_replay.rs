//! Replays every committed fuzz input on stable: each file of `fuzz/corpus/<target>/` and of
//! `fuzz/regressions/<target>/` (past crashes, kept so a fixed crash stays fixed) goes through
//! the target's property function in `discourse_oidc_bridge::fuzzing`, exactly as the cargo-fuzz
//! target runs it (docs/security.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use discourse_oidc_bridge::fuzzing::TARGETS;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .filter(|path| {
            !path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Seeds that must be accepted, so the properties behind acceptance keep being exercised.
const MUST_ACCEPT: [(&str, &str); 14] = [
    ("connect", "seed-request"),
    ("connect", "seed-inner-request"),
    ("mapping", "seed-defaults"),
    ("mapping", "seed-configured"),
    ("id_token", "seed-eddsa"),
    ("id_token", "seed-hs256-allowed"),
    ("id_token", "seed-aud-array"),
    ("logout_token", "seed-eddsa"),
    ("logout_token", "seed-hs256-allowed"),
    ("config", "seed-minimal"),
    ("config", "seed-limits"),
    ("scim", "seed-filter-username"),
    ("scim", "seed-patch-entra"),
    ("scim", "seed-patch-members"),
];

/// Inputs that must be refused: HS256 outside the policy, the crash inputs, a
/// `return_sso_url` with a raw line break, a header that is not UTF-8 JSON.
const MUST_REFUSE: [(&str, &str); 9] = [
    ("id_token", "seed-hs256-refused"),
    ("id_token", "seed-aud-untrusted"),
    ("id_token", "seed-nonce-wrong"),
    ("id_token", "seed-expired"),
    ("id_token", "seed-raw-short-mac"),
    ("logout_token", "seed-raw-short-mac"),
    ("connect", "seed-inner-crlf-url"),
    // Signed by the IdP, but its JOSE header holds invalid UTF-8 (RFC 7515 §5.2).
    ("id_token", "campaign-header-not-utf8"),
    ("config", "seed-bad"),
];

fn replay(kind: &str, minimum_per_target: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind);
    for (target, property) in TARGETS {
        let files = inputs(&root.join(target));
        assert!(
            files.len() >= minimum_per_target,
            "fuzz/{kind}/{target} holds {} inputs",
            files.len()
        );
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| property(&data));
            assert!(outcome.is_ok(), "{target} fails on {}", file.display());
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let accepted = outcome.unwrap();
            if MUST_ACCEPT.contains(&(target, name.as_str())) {
                assert!(accepted, "{target}: {name} is no longer accepted");
            }
            if MUST_REFUSE.contains(&(target, name.as_str())) {
                assert!(!accepted, "{target}: {name} is accepted");
            }
        }
    }
    // A directory for a target that does not exist would never be replayed.
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    TARGETS.iter().any(|(target, _)| *target == name),
                    "fuzz/{kind}/{name} is no fuzz target"
                );
            }
        }
    }
}

#[test]
fn every_committed_corpus_input_keeps_its_properties() {
    replay("corpus", 1);
}

#[test]
fn every_past_crash_input_stays_fixed() {
    replay("regressions", 0);
}

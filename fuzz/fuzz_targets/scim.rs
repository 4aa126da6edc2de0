//! Fuzz target `scim`: feeds libFuzzer's bytes to `discourse_oidc_bridge::fuzzing::scim`, which
//! asserts the target's properties (docs/security.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    discourse_oidc_bridge::fuzzing::scim(data);
});

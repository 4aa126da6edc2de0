//! Visible skips for tests whose real component (PostgreSQL, Chromium) is not installed here.
//!
//! libtest captures `print!`/`eprint!` of passing tests, so a skip written that way would pass
//! silently. [`skip`] writes straight to the process's standard error, which libtest does not
//! capture, so `cargo test` shows every skip. When `BRIDGE_TEST_REQUIRE` names the component
//! (`.ci/run` sets it), a missing component fails the test instead of skipping it.

use std::io::Write as _;

/// Reports that `test` cannot run because `component` is missing (`why` says how to get it),
/// or fails the test when `BRIDGE_TEST_REQUIRE` (comma-separated names) lists `component`.
#[allow(
    dead_code,
    reason = "called by the tests that need PostgreSQL or Chromium, when either is missing"
)]
pub fn skip(test: &str, component: &str, why: &str) {
    let required = std::env::var("BRIDGE_TEST_REQUIRE").unwrap_or_default();
    if required
        .split(',')
        .any(|name| name.trim().eq_ignore_ascii_case(component))
    {
        panic!("{test}: {component} is required (BRIDGE_TEST_REQUIRE) but missing: {why}");
    }
    let line = format!("SKIPPED {test}: {component} not available: {why}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

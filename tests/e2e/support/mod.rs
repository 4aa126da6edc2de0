//! Test harness shared by the end-to-end tests: real peers (Node OpenID provider, DiscourseConnect
//! reference implementation), an in-test Discourse stand-in and a headless browser.
// Test support code: a failed expectation here is a failed test, and the peers' logs belong on the
// test's stderr, so the production-code lints against panicking and printing don't apply.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

pub mod bridge;
pub mod browser;
pub mod chromium;
pub mod forum;
pub mod idp;
pub mod node;
pub mod postgres;
pub mod proxy;
pub mod skip;
pub mod tls;

// Re-exports for the flow tests.
pub use bridge::TestBridge;
pub use browser::{Browser, query_param, redirect_target};
pub use forum::{AdminEndpoint, ForumOptions, TestForum};
pub use idp::{IdTokenMutation, IdpClient, IdpOptions, Signer, TestIdp};

//! Test harness shared by the end-to-end tests: real peers (Node OpenID provider, DiscourseConnect
//! reference implementation), an in-test Discourse stand-in and a headless browser.
#![allow(dead_code)]

pub mod node;

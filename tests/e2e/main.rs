//! End-to-end tests: the real bridge against real peers started by the harness.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod admin;
mod binary;
mod corporate;
#[cfg(feature = "demo")]
mod demo;
mod harness_selftest;
mod interop_connect;
mod login;
mod logout;
mod mapping;
mod ops;
mod pages;
mod replicas;
mod scim;
mod store_suite;
mod support;

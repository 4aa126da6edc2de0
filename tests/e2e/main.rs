//! End-to-end tests: the real bridge against real peers started by the harness.

mod harness_selftest;
mod support;

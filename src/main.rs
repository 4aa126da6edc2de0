//! Binary entry point: parses the command line and hands over to the library.

use clap::Parser as _;

/// mimalloc instead of the C library's allocator: a login allocates a few hundred small,
/// short-lived objects across threads, which glibc's malloc serves markedly slower (see
/// docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    discourse_oidc_bridge::cli::run(discourse_oidc_bridge::cli::Cli::parse())
}

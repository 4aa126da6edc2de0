//! Binary entry point: parses the command line and hands over to the library.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    discourse_oidc_bridge::cli::run(discourse_oidc_bridge::cli::Cli::parse())
}

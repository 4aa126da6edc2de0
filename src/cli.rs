//! Command-line interface: `serve`, `check`, `explain`, `demo`, `healthcheck` and the admin commands.

//! The running service: `AppState`, start-up (discovery, store, keys) and the HTTP server with graceful shutdown.

//! HTTP routes, middleware and thin handlers.

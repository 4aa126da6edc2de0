//! discourse-oidc-bridge: lets an OpenID Connect identity provider log people into a Discourse
//! forum through DiscourseConnect, and relays the provider's back-channel logout into Discourse.
//!
//! Layers, each depending only on the ones below it:
//! - `cli`, `app`: the command line and the running service (workers, serving, shutdown);
//! - `http`: the HTTP edge (router, middleware, cookies, pages, handlers);
//! - `login`, `logout`: the flows as services, free of HTTP types;
//! - the protocol core: `discourse` (DiscourseConnect codec, admin API), `oidc`, `mapping`, and
//!   the logout subsystem's `store`, `relay` and `login_writer`;
//! - leaves: `config`, `problem`, `routes`, `clock`, `error`, `telemetry`.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod discourse;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod i18n;
pub mod login;
pub mod login_writer;
pub mod logout;
pub mod mapping;
pub mod metrics_catalog;
pub mod oidc;
pub mod outbound;
pub mod problem;
pub mod relay;
pub mod routes;
pub mod scim;
pub mod store;
pub mod telemetry;

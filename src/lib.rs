//! discourse-oidc-bridge: lets an OpenID Connect identity provider log people into a Discourse
//! forum through DiscourseConnect, and relays the provider's back-channel logout into Discourse.

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod discourse;
pub mod error;
pub mod flow;
pub mod http;
pub mod login_writer;
pub mod mapping;
pub mod metrics_catalog;
pub mod oidc;
pub mod pages;
pub mod relay;
pub mod store;
pub mod telemetry;

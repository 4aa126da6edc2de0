//! Everything that speaks to Discourse: the DiscourseConnect codec and the admin API client.

pub mod api;
pub mod connect;

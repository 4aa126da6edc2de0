//! Discourse admin API client (user lookup by external id, log out, sync_sso) over the shared HTTP client.

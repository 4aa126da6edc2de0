//! The configuration reference: every key the bridge reads, with its type, default, environment
//! variable, whether a running bridge applies a change without a restart, and what it does.
//! `discourse-oidc-bridge config reference` prints it as Markdown (committed as
//! `docs/configuration.md`).
//!
//! The keys are checked against the deserializer (a key it accepts without an entry here fails a
//! test), and the defaults are not written here at all: they are read from the code's own
//! defaults, so they cannot drift.

use std::fmt::Write as _;

use serde_json::Value;

use super::layers::env_var_name;
use super::raw::{RawConfig, RawScim};
use super::settings::toml_value;
use crate::mapping::GroupRule;

/// When a changed value takes effect in a running bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// On the next reload: the file is polled every 2 seconds, and SIGHUP reloads at once.
    Live,
    /// Only after a restart; a reload that finds it changed logs the key.
    Restart,
}

/// Sections whose keys a running bridge reloads live.
const LIVE_SECTIONS: [&str; 3] = ["mapping", "groups", "access"];

/// Whether `section.key` (or a deeper key) is applied live.
pub fn is_live(key: &str) -> bool {
    reload_of(key) == Reload::Live
}

/// When a change of `key` takes effect.
pub fn reload_of(key: &str) -> Reload {
    let section = key.split(['.', '[']).next().unwrap_or(key);
    if LIVE_SECTIONS.contains(&section) {
        Reload::Live
    } else {
        Reload::Restart
    }
}

/// One key's documentation. The default and the reload behaviour come from the code.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    /// Dotted key; `groups.rules[].pattern` is a key of every `[[groups.rules]]` entry.
    pub key: &'static str,
    /// What the value must be.
    pub kind: &'static str,
    /// Must be given (no default).
    pub required: bool,
    /// What the key does.
    pub description: &'static str,
}

const fn key(key: &'static str, kind: &'static str, description: &'static str) -> KeyDoc {
    KeyDoc {
        key,
        kind,
        required: false,
        description,
    }
}

const fn required(key: &'static str, kind: &'static str, description: &'static str) -> KeyDoc {
    KeyDoc {
        key,
        kind,
        required: true,
        description,
    }
}

const DURATION: &str = "duration (\"90s\", \"10m\", \"24h\", \"1h 30m\")";
const SOURCE: &str = "source (claim path, { template }, { value }, constant, or a list of them)";
const FILE: &str = "path of a file holding the secret";

/// Every key, in the order of `config/bridge.example.toml`.
pub const KEYS: &[KeyDoc] = &[
    // [server]
    key(
        "server.listen",
        "IP address and port",
        "Address the HTTP server binds. All interfaces by default, as suits a container; use \
         127.0.0.1:8080 when a reverse proxy on the same machine forwards to the bridge.",
    ),
    required(
        "server.public_url",
        "URL (scheme, host, port; no path)",
        "The address browsers use to reach the bridge. The IdP redirect URI is this + \
         /callback, the post-logout redirect URI this + /logged-out, and Discourse's \
         discourse_connect_url this + /sso. Use https; http only makes sense on localhost.",
    ),
    key(
        "server.trusted_proxies",
        "list of IP networks or addresses",
        "Reverse proxies whose X-Forwarded-For / Forwarded headers are believed. Empty: the \
         connecting address is the client (rate limits are per client address).",
    ),
    key(
        "server.metrics_listen",
        "IP address and port",
        "The address /metrics is served on, apart from the public one. Unset: 127.0.0.1:9090, \
         unless metrics_public is set. In a container use 0.0.0.0:9090 and scrape the pod \
         address. Must not bind the same port as server.listen.",
    ),
    key(
        "server.metrics_public",
        "boolean",
        "Serve /metrics on server.listen instead of its own listener (leave metrics_listen \
         unset then).",
    ),
    key(
        "server.header_read_timeout",
        "duration, at most 60s",
        "Longest wait for a complete request head (request line and headers), from the accept \
         and again after each response on a keep-alive connection; a client that sends half a \
         request, or nothing, is disconnected after it.",
    ),
    key(
        "server.max_connections",
        "whole number, 1 to 65536",
        "Most client connections open at once; further ones wait in the kernel's accept queue \
         until one closes. Keep it under the open-files limit.",
    ),
    key(
        "server.outbound_proxy",
        "URL of an HTTP proxy",
        "Proxy for every outgoing request (IdP, Discourse's admin API); HTTPS goes through it \
         with CONNECT. Unset: the standard HTTPS_PROXY / HTTP_PROXY / ALL_PROXY variables are \
         followed instead. NO_PROXY is honoured either way.",
    ),
    key(
        "server.trust_store",
        "\"builtin\" or \"os\"",
        "Which certificate authorities outgoing HTTPS trusts before any ca_file: the Mozilla \
         list built into the bridge, or the operating system's store (SSL_CERT_FILE / \
         SSL_CERT_DIR can point elsewhere).",
    ),
    // [discourse]
    required(
        "discourse.url",
        "URL (no path)",
        "The forum's base address. Discourse installs in a subfolder are not supported.",
    ),
    required(
        "discourse.connect_secret",
        "secret, at least 10 characters",
        "The same value as Discourse's discourse_connect_secret setting. Give it or \
         connect_secret_file. Known placeholders (such as the example's change-me-...) are \
         refused.",
    ),
    key(
        "discourse.connect_secret_file",
        FILE,
        "Reads discourse.connect_secret from this file (one trailing newline removed).",
    ),
    key(
        "discourse.api_key",
        "secret",
        "An admin API key (scopes users:show and users:log_out; users:sync_sso for `sync`). \
         With api_username it switches on the logout relay. Set both or neither.",
    ),
    key(
        "discourse.api_key_file",
        FILE,
        "Reads discourse.api_key from this file (one trailing newline removed).",
    ),
    key(
        "discourse.api_username",
        "Discourse username",
        "The user admin API calls are made as (e.g. system). Required when api_key is set.",
    ),
    key(
        "discourse.ca_file",
        "path of a PEM file",
        "Certificate authorities trusted for the forum's admin API, in addition to the \
         server.trust_store list (e.g. your company's root CA).",
    ),
    // [oidc]
    required(
        "oidc.issuer",
        "URL",
        "The issuer exactly as the IdP writes it in its discovery document (mind a trailing \
         slash). Discovery is read from <issuer>/.well-known/openid-configuration.",
    ),
    required(
        "oidc.client_id",
        "string",
        "The client registered for the bridge at the IdP.",
    ),
    key(
        "oidc.client_secret",
        "secret",
        "The client's secret. Required unless token_auth_method = \"none\". Give it or \
         client_secret_file. Known placeholders are refused.",
    ),
    key(
        "oidc.client_secret_file",
        FILE,
        "Reads oidc.client_secret from this file (one trailing newline removed).",
    ),
    key(
        "oidc.scopes",
        "list of scope names",
        "Scopes to request; must include openid. Add e.g. groups when the IdP puts group \
         membership behind a scope.",
    ),
    key(
        "oidc.auth_params",
        "table of strings",
        "Extra authorization request parameters (prompt, kc_idp_hint, hd...). The parameters \
         the bridge sets itself (response_type, client_id, redirect_uri, scope, state, nonce, \
         code_challenge, code_challenge_method) are refused.",
    ),
    key(
        "oidc.userinfo",
        "true, false or \"auto\"",
        "When to call the userinfo endpoint after a login (its claims are merged over the ID \
         token's): \"auto\" only when a claim the [mapping], [groups] or [access] rules read is \
         absent from the ID token, true on every login, false never. Never called when the IdP \
         advertises no userinfo endpoint.",
    ),
    key(
        "oidc.token_auth_method",
        "\"auto\", \"client_secret_basic\", \"client_secret_post\", \"private_key_jwt\", \
         \"tls_client_auth\" or \"none\"",
        "How the bridge authenticates at the token endpoint. \"auto\" picks from the discovery \
         document, preferring client_secret_basic; private_key_jwt signs a JWT with \
         client_key_file (RFC 7523); tls_client_auth uses mutual TLS with client_cert_file and \
         client_key_file (RFC 8705); \"none\" is a public client protected by PKCE alone.",
    ),
    key(
        "oidc.signing_algs",
        "list of JWS algorithm names",
        "Algorithms accepted for ID tokens and logout tokens: asymmetric ones by default; \
         HS256/HS384/HS512 (MACed with the client secret) only when listed.",
    ),
    key(
        "oidc.clock_skew",
        DURATION,
        "Tolerated clock difference with the IdP when checking token times. More than 5m is \
         warned about.",
    ),
    key(
        "oidc.http_timeout",
        DURATION,
        "Timeout of every request to the IdP (discovery, keys, token, userinfo) and to \
         Discourse's admin API.",
    ),
    key(
        "oidc.jwks_min_refresh_interval",
        DURATION,
        "Least time between two refetches of the IdP's signing keys caused by an unknown key \
         id, so forged tokens cannot make the bridge hammer the IdP.",
    ),
    key(
        "oidc.ca_file",
        "path of a PEM file",
        "Certificate authorities trusted for the IdP (discovery, keys, token, userinfo), in \
         addition to the server.trust_store list: an IdP behind the company's own CA.",
    ),
    key(
        "oidc.client_key_file",
        "path of a PEM private key",
        "The private key for private_key_jwt or tls_client_auth: unencrypted, RSA (2048 bits or \
         more) or EC P-256 / P-384. Register its public half (or the certificate) at the IdP; \
         `check` prints the public JWK.",
    ),
    key(
        "oidc.client_key_id",
        "string",
        "The kid sent with private_key_jwt assertions. Unset: the key's RFC 7638 JWK \
         thumbprint.",
    ),
    key(
        "oidc.client_cert_file",
        "path of a PEM certificate chain",
        "The client certificate for tls_client_auth (leaf first); `check` verifies that \
         client_key_file belongs to it.",
    ),
    // [session]
    required(
        "session.secret",
        "secret, at least 32 bytes",
        "Master secret the cookie keys are derived from; must differ from \
         discourse.connect_secret. Generate one with `openssl rand -hex 32`. Give it or \
         secret_file. Known placeholders are refused.",
    ),
    key(
        "session.secret_file",
        FILE,
        "Reads session.secret from this file (one trailing newline removed).",
    ),
    key(
        "session.login_timeout",
        DURATION,
        "How long a login may take from leaving Discourse to coming back; at most 30m \
         (Discourse forgets its nonce after 30 minutes, 10 in versions before March 2024).",
    ),
    // [logout]
    key(
        "logout.strict_typ",
        "boolean",
        "Require the logout token's typ header to be logout+jwt (Keycloak sends it since \
         version 25).",
    ),
    key(
        "logout.allow_missing_exp",
        "boolean",
        "Accept logout tokens without exp (ORY Hydra, LemonLDAP::NG, older Keycloak), bounding \
         their age by iat and max_token_age instead.",
    ),
    key(
        "logout.max_token_age",
        DURATION,
        "Oldest iat accepted for a logout token without exp.",
    ),
    key(
        "logout.relay_retry_for",
        DURATION,
        "How long the bridge keeps retrying to log a user out of Discourse before giving up.",
    ),
    key(
        "logout.rp_initiated",
        "boolean",
        "On /logout (Discourse's logout_redirect), also end the IdP session through its \
         end_session_endpoint.",
    ),
    // [store]
    key(
        "store.path",
        "directory path",
        "Directory of the embedded store (relative paths resolve against the working \
         directory). Keep it on a persistent volume: it holds pending logout relays and the \
         records that match logout tokens to forum accounts.",
    ),
    key(
        "store.commit_interval",
        DURATION,
        "Longest time a completed login waits to be committed together with others (group \
         commit), between 0s and 10s. A crash loses at most this interval's login records; 0s \
         makes every login wait for its own durable commit.",
    ),
    key(
        "store.url",
        "PostgreSQL URL (secret)",
        "The shared store for several replicas: postgres://USER:PASSWORD@HOST:PORT/DATABASE?\
         sslmode=MODE, sslmode one of verify-full, require or disable (required). When set, \
         store.path is not used and every replica must name the same database. Unset: the \
         embedded store.",
    ),
    key("store.url_file", FILE, "store.url read from this file."),
    key(
        "store.ca_file",
        "path of a PEM file",
        "A private CA that signed the PostgreSQL server's certificate. Only with store.url.",
    ),
    key(
        "store.pool_size",
        "integer, 1 to 1000",
        "Most PostgreSQL connections one replica opens.",
    ),
    key(
        "store.connect_timeout",
        DURATION,
        "Longest wait for a PostgreSQL connection (TCP, TLS and authentication, or a free \
         pooled one).",
    ),
    key(
        "store.query_timeout",
        DURATION,
        "Longest time one store call may take before it fails (a login keeps its records in \
         memory; a back-channel logout is answered 500 so that the IdP retries).",
    ),
    key(
        "store.login_buffer",
        "integer",
        "Most completed logins kept in memory while the store cannot be written; beyond it \
         the oldest are dropped (bridge_store_logins_dropped_total).",
    ),
    key(
        "store.relay_lease",
        DURATION,
        "How long a replica's relay worker holds a job it claimed before another replica may \
         take it over; must exceed one delivery. At least 1s.",
    ),
    key(
        "store.poll_interval",
        DURATION,
        "How often each relay worker looks for jobs it was not woken for (queued by another \
         replica or a command, or whose lease ended).",
    ),
    // [log]
    key(
        "log.format",
        "\"text\" or \"json\"",
        "Log line format: text for people, json for log collectors.",
    ),
    key(
        "log.level",
        "tracing filter",
        "A tracing filter such as info, debug or discourse_oidc_bridge=debug,info. RUST_LOG, \
         when set, takes precedence.",
    ),
    // [limits]
    key(
        "limits.login_per_minute",
        "whole number, at least 1",
        "Logins started per minute per client address at /sso (with a minute's burst); \
         /callback is never counted.",
    ),
    key(
        "limits.failures_per_minute",
        "whole number, at least 1",
        "Refused requests per minute per client address (bad signatures, unknown or replayed \
         state) before further ones get 429.",
    ),
    key(
        "limits.backchannel_per_minute",
        "whole number, at least 1",
        "Requests per minute per client address on /backchannel-logout.",
    ),
    key(
        "limits.max_body_bytes",
        "whole number, at least 4096",
        "Largest request body accepted, in bytes.",
    ),
    key(
        "limits.request_timeout",
        DURATION,
        "Longest time spent on one request; must be longer than oidc.http_timeout.",
    ),
    // [pages]
    key(
        "pages.forum_name",
        "text, at most 80 characters",
        "The forum's name, shown in every page's title and header. Unset: pages say \"Forum \
         login\" and \"Back to the forum\".",
    ),
    key(
        "pages.logo_url",
        "https URL",
        "The forum's logo, shown in the header. Unset: no logo.",
    ),
    key(
        "pages.accent_color",
        "#rgb or #rrggbb",
        "Colour of buttons and the header rule; button text is black or white, whichever reads \
         better. Unset: #0a66c2.",
    ),
    key(
        "pages.templates_dir",
        "directory path",
        "A directory whose base.html, error.html and/or logged_out.html replace the bundled \
         templates (see docs/pages.md); every template is rendered in every language at start \
         and by check.",
    ),
    key(
        "pages.locales_dir",
        "directory path",
        "A directory of <language>.ftl message files adding languages or replacing bundled \
         messages (en, de, fr, es are bundled).",
    ),
    key(
        "pages.default_language",
        "language tag",
        "The language used when Accept-Language names none of the available ones.",
    ),
    // [mapping]
    key(
        "mapping.external_id",
        SOURCE,
        "Discourse's account key; must never change for a person (sub, or Entra's oid). A \
         login without it is refused; `check` warns when it comes from a claim people can \
         change.",
    ),
    key(
        "mapping.email",
        SOURCE,
        "The user's email address. A login without one is refused unless synthetic_email is \
         set. Only the address's own verification flag (email_verified_claim) can make it \
         verified.",
    ),
    key(
        "mapping.email_verified",
        "\"require\", \"activate\" or \"trust\"",
        "What to do with an address the IdP does not call verified: refuse the login, log in \
         with require_activation (Discourse mails an activation link), or send it as verified \
         (warned about: whoever can set an unverified address at the IdP could take over the \
         Discourse account that has it).",
    ),
    key(
        "mapping.email_verified_claim",
        "claim path",
        "Where the verification flag is; true/false and \"true\"/\"false\" are read, anything \
         else counts as unverified.",
    ),
    key(
        "mapping.email_verified_when_absent",
        "boolean",
        "What an absent verification flag means. Only true for an IdP that verifies every \
         address it sends.",
    ),
    key(
        "mapping.synthetic_email",
        "template",
        "An address built from claims for users the IdP has no email for (e.g. Entra ID users \
         without a mailbox): \"{{ oid }}@users.forum.invalid\". It is the operator's address, \
         sent as verified, and never satisfies allowed_email_domains. Used only when \
         mapping.email gives nothing.",
    ),
    key(
        "mapping.username",
        SOURCE,
        "The suggested username, cleaned the way Discourse does. When nothing usable is left, \
         no username is sent and Discourse suggests one.",
    ),
    key(
        "mapping.username_min_length",
        "whole number",
        "Keep equal to Discourse's min_username_length.",
    ),
    key(
        "mapping.username_max_length",
        "whole number",
        "Keep equal to Discourse's max_username_length.",
    ),
    key(
        "mapping.unicode_usernames",
        "boolean",
        "Keep equal to Discourse's unicode_usernames.",
    ),
    key("mapping.name", SOURCE, "The user's full name."),
    key(
        "mapping.avatar_url",
        SOURCE,
        "Absolute http(s) URL of the user's avatar.",
    ),
    key(
        "mapping.avatar_force_update",
        SOURCE,
        "Boolean: make Discourse fetch the avatar again.",
    ),
    key("mapping.bio", SOURCE, "Profile \"about me\" text."),
    key(
        "mapping.website",
        SOURCE,
        "Absolute http(s) URL of the user's website.",
    ),
    key("mapping.location", SOURCE, "Profile location."),
    key("mapping.title", SOURCE, "User title."),
    key(
        "mapping.locale",
        SOURCE,
        "Interface locale (\"pt-BR\" is sent as \"pt_BR\").",
    ),
    key(
        "mapping.locale_force_update",
        SOURCE,
        "Boolean: apply locale on every login.",
    ),
    key(
        "mapping.profile_background_url",
        SOURCE,
        "Absolute http(s) URL of the profile background.",
    ),
    key(
        "mapping.card_background_url",
        SOURCE,
        "Absolute http(s) URL of the user card background.",
    ),
    key(
        "mapping.suppress_welcome_message",
        SOURCE,
        "Boolean: no welcome message for new accounts.",
    ),
    key(
        "mapping.custom",
        "table of sources",
        "custom.<name> fields, stored by Discourse as user custom fields on every login; a \
         Discourse user field is filled through custom.user_field_<id>.",
    ),
    // [groups]
    key(
        "groups.sources",
        "claim path or list of claim paths",
        "Claims holding the user's groups or roles (lists of names, or a single name).",
    ),
    key(
        "groups.paths",
        "\"keep\", \"leaf\", \"flatten\" or \"expand\"",
        "What to do with Keycloak full group paths (/parent/child).",
    ),
    key(
        "groups.path_separator",
        "string",
        "Joins path parts for paths = \"flatten\" and \"expand\".",
    ),
    key(
        "groups.strip_prefixes",
        "list of strings",
        "The first of these prefixes a group name starts with is removed (ignoring case).",
    ),
    key(
        "groups.case",
        "\"lower\" or \"keep\"",
        "Lowercase group names, or keep them.",
    ),
    key(
        "groups.rename",
        "table: IdP name = Discourse name or list of names",
        "Exact renames (compared ignoring case); Entra group object ids go here.",
    ),
    key(
        "groups.rules",
        "list of tables ([[groups.rules]])",
        "Rules that turn IdP names into Discourse groups and roles; every matching rule \
         applies. When any rule sets admin (moderator), every login sends admin (moderator) \
         explicitly, so removal at the IdP demotes.",
    ),
    key(
        "groups.rules[].pattern",
        "regular expression",
        "Matched against the whole name, ignoring case. Give pattern or group.",
    ),
    key(
        "groups.rules[].group",
        "string",
        "An exact name (ignoring case). Give pattern or group.",
    ),
    key(
        "groups.rules[].to",
        "string or list of strings",
        "Discourse group(s); $1, ${2}, ${name} are the pattern's captures.",
    ),
    key("groups.rules[].admin", "boolean", "Members are admins."),
    key(
        "groups.rules[].moderator",
        "boolean",
        "Members are moderators.",
    ),
    key(
        "groups.unmatched",
        "\"drop\" or \"keep\"",
        "What happens to a name no rename or rule matches.",
    ),
    key(
        "groups.mode",
        "\"add_remove\" or \"full\"",
        "add_remove sends add_groups and remove_groups (only managed groups are removed); full \
         sends one groups list, for sites with discourse_connect_overrides_groups.",
    ),
    key(
        "groups.managed",
        "list of names or * ? patterns",
        "Discourse groups owned by the IdP: removed when the user is no longer in them.",
    ),
    key(
        "groups.overage",
        "\"unknown\", \"deny\" or \"graph\"",
        "Entra ID group overage (_claim_names instead of groups): log in without group or role \
         changes, refuse, or ask Microsoft Graph (a failure makes the groups unknown). Unset means \"unknown\", or \"deny\" with mode = \"full\".",
    ),
    key(
        "groups.graph_url",
        "https URL",
        "Microsoft Graph base URL for overage = \"graph\" (national clouds, tests).",
    ),
    key(
        "groups.graph_timeout",
        "duration, at most 60s",
        "Time allowed for the whole Graph lookup: every page and Retry-After wait.",
    ),
    key(
        "groups.unreadable",
        "\"unknown\" or \"deny\"",
        "A source present in a shape that cannot be read as group names: log in without group \
         or role changes, or refuse. Unset means \"unknown\", or \"deny\" with mode = \"full\".",
    ),
    key(
        "groups.shapes",
        "table of tables keyed by source",
        "Per-source shape settings: separator (delimited strings), name_field (lists of \
         objects), path_delimiter (group paths).",
    ),
    key(
        "groups.missing",
        "\"empty\", \"unknown\" or \"deny\"",
        "When none of the sources is present: no groups (managed groups are removed), no group \
         or role changes, or refuse.",
    ),
    // [access]
    key(
        "access.allowed_groups",
        "list of names or * patterns",
        "The user must be in one of these Discourse groups (as produced by [groups]). Users \
         whose groups are unknown (Entra overage) are refused.",
    ),
    key(
        "access.allowed_email_domains",
        "list of domains (*.example.com for subdomains)",
        "The email must be verified (or email_verified = \"trust\") and in one of these \
         domains. A synthetic email never passes.",
    ),
    key(
        "access.hosted_domains",
        "list of domains",
        "Google Workspace: the ID token's hd claim must be one of these.",
    ),
    key(
        "access.contact",
        "string",
        "Who to ask, shown on the page that refuses a login.",
    ),
    // [scim]
    key(
        "scim.token",
        "secret, at least 32 characters",
        "Bearer token the identity provider sends to /scim/v2. [scim] switches SCIM on (see \
         docs/scim.md); it needs token or token_file, and discourse.api_key.",
    ),
    key(
        "scim.token_file",
        "path of a file holding tokens",
        "One token per line, all accepted (rotate by adding the new one first); lines starting \
         with # are ignored. May be combined with scim.token.",
    ),
    key(
        "scim.subject_attribute",
        "SCIM attribute name",
        "The SCIM attribute whose value is the user's subject (the external_id a login \
         produces): externalId, id, userName, or an Enterprise extension attribute.",
    ),
    key(
        "scim.subject_claim",
        "claim name",
        "The claim that value is put under; [mapping] external_id must read it (oid for Entra \
         ID).",
    ),
    key(
        "scim.email_verified",
        "boolean",
        "Whether pushed email addresses are sent as verified. Set false when users can change \
         their own address in the IdP.",
    ),
    key(
        "scim.on_deactivate",
        "\"log_out\" or \"suspend\"",
        "What deactivation (active false, DELETE, or a user [access] refuses) does besides \
         logging the user out.",
    ),
    key("scim.suspend_for", DURATION, "Length of a suspension."),
    key(
        "scim.suspend_reason",
        "text",
        "Reason stored with a suspension.",
    ),
    key(
        "scim.max_body_bytes",
        "integer, at least 1024",
        "Largest SCIM request body, in bytes; [limits] max_body_bytes does not apply to \
         /scim/v2.",
    ),
    key(
        "scim.max_results",
        "integer, 1 to 10000",
        "Largest page of a SCIM list.",
    ),
];

/// The environment variable that sets `key`, in the reference's words.
pub fn env_name(key: &str) -> String {
    match key {
        "oidc.auth_params" | "mapping.custom" | "groups.rename" => {
            format!("{}__<NAME>", env_var_name(key))
        }
        "groups.rules" => format!("{} (a TOML array of tables)", env_var_name(key)),
        _ if key.contains("[]") => "(part of groups.rules)".to_owned(),
        _ => env_var_name(key),
    }
}

/// Every key's default as the code has it, rendered as TOML (`unset` for optional keys).
pub fn default_of(key: &str) -> Option<String> {
    let (table, field) = match key.strip_prefix("groups.rules[].") {
        Some(field) => (serde_json::to_value(GroupRule::default()).ok()?, field),
        None => {
            let (section, field) = key.split_once('.')?;
            if section == "scim" {
                // Absent by default (SCIM off); its keys' defaults are those of an empty [scim].
                (serde_json::to_value(RawScim::default()).ok()?, field)
            } else {
                let sections = serde_json::to_value(RawConfig::default()).ok()?;
                (sections.get(section)?.clone(), field)
            }
        }
    };
    // Serialization leaves out some fields at their default (an unset option, a false flag).
    let value = match table.get(field) {
        Some(value) => value.clone(),
        None if KEYS
            .iter()
            .any(|doc| doc.key == key && doc.kind == "boolean") =>
        {
            Value::Bool(false)
        }
        None => Value::Null,
    };
    Some(toml_value(&value))
}

/// The reference as Markdown, exactly as committed in `docs/configuration.md`.
pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str(
        "# Configuration reference\n\n\
         <!-- Generated by `discourse-oidc-bridge config reference`; do not edit. A test fails \
         when this file differs from the command's output. -->\n\n\
         Every key the bridge reads. The configuration is one TOML file (`--config FILE` or \
         `BRIDGE_CONFIG`); each key can also be set by the environment variable shown, which \
         wins over the file (`serve` and `check` warn about each file key an environment \
         variable replaced). Secrets can be read from a file with `<key>_file`. \
         `discourse-oidc-bridge check` validates a configuration; \
         `config/bridge.example.toml` shows every key in context.\n\n\
         **Reload**: *live* keys take effect when the file changes (it is checked every 2 \
         seconds) or on SIGHUP, without a restart; *restart* keys need a restart, and a reload \
         that finds one changed logs its name. `/readyz` shows the identity of the \
         configuration in force (`config_identity`, a hash of every key except secrets), which \
         `check` prints too.\n",
    );
    let mut section = "";
    for doc in KEYS {
        let this_section = doc.key.split(['.', '[']).next().unwrap_or(doc.key);
        if this_section != section {
            section = this_section;
            let _ = write!(out, "\n## [{section}]\n");
        }
        let default = if doc.required {
            "required".to_owned()
        } else {
            match default_of(doc.key).as_deref() {
                Some("unset") | None => "unset".to_owned(),
                Some(value) => format!("`{value}`"),
            }
        };
        let reload = match reload_of(doc.key) {
            Reload::Live => "live",
            Reload::Restart => "restart",
        };
        let _ = write!(
            out,
            "\n### `{}`\n\n{}\n\n- Type: {}\n- Default: {}\n- Environment: `{}`\n- Reload: {}\n",
            doc.key,
            doc.description,
            doc.kind,
            default,
            env_name(doc.key),
            reload
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::Figment;
    use figment::error::Kind;
    use figment::providers::{Format, Toml};

    /// The field names serde accepts at `path`, read from the error a probe key provokes in a
    /// `deny_unknown_fields` struct.
    fn accepted_fields(toml: &str) -> Vec<String> {
        let errors = match Figment::from(Toml::string(toml)).extract_lossy::<RawConfig>() {
            Ok(_) => panic!("the probe key was accepted: {toml}"),
            Err(errors) => errors,
        };
        for error in errors {
            if let Kind::UnknownField(_, expected) = &error.kind {
                return expected.iter().map(|s| (*s).to_owned()).collect();
            }
        }
        panic!("no unknown-field error for {toml}")
    }

    #[test]
    fn every_key_the_deserializer_accepts_is_documented_and_nothing_else() {
        let documented: Vec<&str> = KEYS.iter().map(|doc| doc.key).collect();
        let mut accepted = Vec::new();
        for section in accepted_fields("zz_probe = 1\n") {
            for field in accepted_fields(&format!("[{section}]\nzz_probe = 1\n")) {
                accepted.push(format!("{section}.{field}"));
            }
        }
        for field in accepted_fields("[[groups.rules]]\nzz_probe = 1\n") {
            accepted.push(format!("groups.rules[].{field}"));
        }
        let mut missing: Vec<&String> = accepted
            .iter()
            .filter(|key| !documented.contains(&key.as_str()))
            .collect();
        missing.sort();
        assert!(
            missing.is_empty(),
            "keys without an entry in config::reference::KEYS: {missing:?}"
        );
        let unknown: Vec<&&str> = documented
            .iter()
            .filter(|key| !accepted.iter().any(|a| a == *key))
            .collect();
        assert!(
            unknown.is_empty(),
            "documented keys that do not exist: {unknown:?}"
        );
    }

    #[test]
    fn every_key_is_documented_once_with_a_default_unless_required() {
        for (index, doc) in KEYS.iter().enumerate() {
            assert!(
                !KEYS[..index].iter().any(|other| other.key == doc.key),
                "{} twice",
                doc.key
            );
            assert!(
                !doc.description.is_empty() && !doc.kind.is_empty(),
                "{}",
                doc.key
            );
            assert!(default_of(doc.key).is_some(), "no default for {}", doc.key);
        }
    }

    #[test]
    fn every_key_is_shown_in_the_example_file() {
        let example = include_str!("../../config/bridge.example.toml");
        for doc in KEYS {
            let field = doc.key.rsplit('.').next().unwrap_or(doc.key);
            let written = regex::Regex::new(&format!(r"(?m)^[#>\s]*{}\s*=", regex::escape(field)))
                .unwrap()
                .is_match(example);
            let table = example.contains(&format!("[{}]", doc.key));
            assert!(
                written || table,
                "{} is not shown in config/bridge.example.toml",
                doc.key
            );
        }
    }

    #[test]
    fn defaults_come_from_the_code() {
        assert_eq!(
            default_of("server.listen").as_deref(),
            Some("\"0.0.0.0:8080\"")
        );
        assert_eq!(default_of("oidc.userinfo").as_deref(), Some("\"auto\""));
        assert_eq!(
            default_of("limits.max_body_bytes").as_deref(),
            Some("16384")
        );
        assert_eq!(
            default_of("server.metrics_listen").as_deref(),
            Some("unset")
        );
        assert_eq!(
            default_of("mapping.name").as_deref(),
            Some("[\"name\", { template = \"{{ given_name }} {{ family_name }}\" }]")
        );
        assert_eq!(default_of("groups.rules[].admin").as_deref(), Some("false"));
        assert_eq!(
            env_name("oidc.auth_params"),
            "BRIDGE_OIDC__AUTH_PARAMS__<NAME>"
        );
        assert_eq!(reload_of("groups.rules[].to"), Reload::Live);
        assert_eq!(reload_of("limits.login_per_minute"), Reload::Restart);
    }
}

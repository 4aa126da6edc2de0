-- The bridge's shared store (several replicas on one PostgreSQL). Owned by the bridge: applied
-- at start under an advisory lock; never edit an applied migration, add a new file instead.

-- (iss, sub) -> every external_id sent to Discourse for that subject, with its last login.
CREATE TABLE bridge_logins_by_sub (
    iss text NOT NULL,
    sub text NOT NULL,
    external_id text NOT NULL,
    logged_in_at timestamptz NOT NULL,
    PRIMARY KEY (iss, sub, external_id)
);
CREATE INDEX bridge_logins_by_sub_logged_in_at ON bridge_logins_by_sub (logged_in_at);

-- (iss, sid) -> the external_id of the login whose ID token carried that sid.
CREATE TABLE bridge_logins_by_sid (
    iss text NOT NULL,
    sid text NOT NULL,
    external_id text NOT NULL,
    logged_in_at timestamptz NOT NULL,
    PRIMARY KEY (iss, sid)
);
CREATE INDEX bridge_logins_by_sid_logged_in_at ON bridge_logins_by_sid (logged_in_at);

-- Logout token jtis already processed (Back-Channel Logout 1.0 section 2.6).
CREATE TABLE bridge_seen_jtis (
    iss text NOT NULL,
    jti text NOT NULL,
    keep_until timestamptz NOT NULL,
    PRIMARY KEY (iss, jti)
);
CREATE INDEX bridge_seen_jtis_keep_until ON bridge_seen_jtis (keep_until);

-- SHA-256 of login states whose callback was handled: a replay is refused on every replica.
CREATE TABLE bridge_used_login_states (
    digest bytea PRIMARY KEY,
    keep_until timestamptz NOT NULL
);
CREATE INDEX bridge_used_login_states_keep_until ON bridge_used_login_states (keep_until);

-- Browser sessions: the ID token kept server-side for id_token_hint.
CREATE TABLE bridge_sessions (
    id text PRIMARY KEY,
    id_token text NOT NULL,
    iss text NOT NULL,
    sub text NOT NULL,
    sid text,
    external_id text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX bridge_sessions_expires_at ON bridge_sessions (expires_at);

-- Logout relay jobs. A worker claims due jobs with FOR UPDATE SKIP LOCKED and holds them until
-- locked_until; a holder that dies leaves a lease that ends, and another replica takes over.
CREATE TABLE bridge_relay_jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    external_id text NOT NULL,
    reason text NOT NULL,
    created_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error text,
    locked_until timestamptz,
    locked_by text
);
CREATE INDEX bridge_relay_jobs_due ON bridge_relay_jobs (next_attempt_at, id);

-- Jobs copied from an embedded store, so that copying twice does not queue a logout twice.
CREATE TABLE bridge_imported_jobs (
    source text PRIMARY KEY,
    imported_at timestamptz NOT NULL DEFAULT now()
);

-- Counters that outlive the rows they count (given_up_total).
CREATE TABLE bridge_counters (
    name text PRIMARY KEY,
    value bigint NOT NULL
);

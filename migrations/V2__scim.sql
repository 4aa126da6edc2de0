-- SCIM 2.0 provisioning (docs/scim.md): the users and groups an identity provider pushed, and
-- the payload of the Discourse calls a change causes.

-- (kind, id) -> the SCIM record as JSON text (owned by the bridge's scim module).
CREATE TABLE bridge_scim_resources (
    kind text NOT NULL,
    id text NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (kind, id)
);

-- What a SCIM relay job delivers (signed sync_sso payload, suspension reason and end).
ALTER TABLE bridge_relay_jobs ADD COLUMN payload text;

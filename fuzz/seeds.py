#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every fuzz target into fuzz/corpus/<target>/seed-*.

The layouts are those of `discourse_oidc_bridge::fuzzing` (docs/security.md): token targets
take a flags byte, then `header JSON \\0 payload JSON \\0 signature`; `mapping` takes one JSON
object; `config` TOML text; `connect` a query string. Run from the repository root; existing
seed files are overwritten, other corpus files are left alone.
"""
import base64
import hashlib
import hmac
import json
import pathlib
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parent / "corpus"
NOW = 1_700_000_000
ISSUER = "https://idp.fuzz.example"
CONNECT_SECRET = b"fuzzing discourse connect secret"
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def write(target, name, data):
    directory = ROOT / target
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (directory / f"seed-{name}").write_bytes(data)


def token(flags, header, payload, signature=b""):
    parts = [json.dumps(header).encode(), json.dumps(payload).encode(), signature]
    return bytes([flags]) + b"\0".join(parts)


def signed_query(inner):
    sso = base64.b64encode(inner.encode()).decode()
    sig = hmac.new(CONNECT_SECRET, sso.encode(), hashlib.sha256).hexdigest()
    return f"sso={urllib.parse.quote(sso, safe='')}&sig={sig}"


RETURN = urllib.parse.quote("https://forum.example/session/sso_login", safe="")
write("connect", "request", signed_query(f"nonce=cb68251eefb5211e58c00ff1395f0c0b&return_sso_url={RETURN}"))
write("connect", "inner-request", f"nonce=abc&return_sso_url={RETURN}")
write("connect", "inner-crlf-url", "nonce=abc&return_sso_url=https%3A%2F%2Fforum.example%2Fsession%2Fsso%0D%0A_login")
write("connect", "payload", "external_id=u1&email=a%40b.example&username=a+b&name=%E2%9C%93&admin=true"
      "&add_groups=x%2Cy&custom.team=blue&avatar_force_update=false&nonce=n")
write("connect", "repeated", "nonce=a&nonce=b")
write("connect", "unsigned-query", "sso=bm9uY2U9YQ%3D%3D&sig=" + "0" * 64)

id_claims = {"iss": ISSUER, "aud": "bridge", "sub": "user-1", "exp": NOW + 300, "iat": NOW,
             "nonce": "fuzz-nonce", "sid": "s1", "email": "a@b.example"}
write("id_token", "eddsa", token(1, {"alg": "EdDSA", "kid": "ed", "typ": "JWT"}, id_claims))
write("id_token", "hs256-allowed", token(6, {"alg": "HS256"}, id_claims))
write("id_token", "hs256-refused", token(2, {"alg": "HS256"}, id_claims))
write("id_token", "rs256-garbage", token(0, {"alg": "RS256", "kid": "rsa"}, id_claims, b"\x01" * 256))
write("id_token", "es256-garbage", token(0, {"alg": "ES256", "kid": "ec"}, id_claims, b"\x01" * 64))
write("id_token", "aud-array", token(1, {"alg": "EdDSA"}, {**id_claims, "aud": ["bridge"], "azp": "bridge"}))
write("id_token", "aud-untrusted", token(1, {"alg": "EdDSA"}, {**id_claims, "aud": ["bridge", "x"], "azp": "bridge"}))
write("id_token", "nonce-wrong", token(1, {"alg": "EdDSA"}, {**id_claims, "nonce": "other"}))
write("id_token", "expired", token(1, {"alg": "EdDSA"}, {**id_claims, "exp": NOW - 61}))
write("id_token", "raw-short-mac", bytes([12]) + b"eyJhbGciOiAiSFMyNTYifQ..h4g")

logout_claims = {"iss": ISSUER, "aud": "bridge", "iat": NOW, "exp": NOW + 120, "jti": "j1",
                 "events": {LOGOUT_EVENT: {}}, "sid": "s1", "sub": "user-1"}
write("logout_token", "eddsa", token(1, {"alg": "EdDSA", "kid": "ed", "typ": "logout+jwt"}, logout_claims))
write("logout_token", "hs256-allowed", token(6, {"alg": "HS256", "typ": "logout+jwt"}, logout_claims))
write("logout_token", "no-exp", token(1, {"alg": "EdDSA"}, {k: v for k, v in logout_claims.items() if k != "exp"}))
write("logout_token", "rs256-garbage", token(0, {"alg": "RS256", "kid": "rsa"}, logout_claims, b"\x02" * 256))
write("logout_token", "raw-short-mac", bytes([12]) + b"eyJhbGciOiAiSFMyNTYifQ..h4g")
write("logout_token", "raw-jwe", bytes([8]) + b"a.b.c.d.e")

claims = {"sub": "user-1", "email": "a@b.example", "email_verified": True, "name": "A B",
          "preferred_username": "ab", "groups": ["/Team/Blue", "admins"], "given_name": "A",
          "family_name": "B", "picture": "https://img.example/a.png", "hd": "b.example"}
write("mapping", "defaults", json.dumps({"claims": claims}))
write("mapping", "configured", json.dumps({
    "mapping": {"external_id": "sub", "username": ["preferred_username", {"template": "{{ sub }}"}],
                "name": ["name", {"template": "{{ given_name }} {{ family_name }}"}],
                "email_verified": "trust", "custom": {"team": {"template": "{{ groups | join(\",\") }}"}}},
    "groups": {"sources": ["groups"], "paths": "leaf", "case": "lower", "mode": "add_remove",
               "unmatched": "keep", "rename": {"blue": "team_blue"},
               "rules": [{"pattern": "^team-(.+)$", "to": "t_$1"},
                         {"group": "admins", "admin": True}]},
    "access": {"allowed_groups": ["team_blue"], "allowed_email_domains": ["b.example"]},
    "claims": claims}))
write("mapping", "unverified", json.dumps({"claims": {**claims, "email_verified": "false"}}))

MINIMAL = """[server]
public_url = "https://sso.example.com"
[discourse]
url = "https://forum.example.com"
connect_secret = "0123456789abcdef0123456789abcdef"
[oidc]
issuer = "https://idp.example.com/realms/forum"
client_id = "bridge"
client_secret = "client-secret"
signing_algs = ["RS256", "HS256"]
[session]
secret = "fedcba9876543210fedcba9876543210xyz"
"""
write("config", "minimal", MINIMAL)
write("config", "limits", MINIMAL + "[limits]\nlogin_per_minute = 600\n[logout]\nallow_missing_exp = true\n")
write("config", "example", (pathlib.Path(__file__).resolve().parent.parent / "config" / "bridge.example.toml").read_text())
write("config", "bad", "[oidc]\nsigning_algs = [\"none\", \"HS256\"]\nscopes = \"email\"\n")

# SCIM (RFC 7644): filters and PATCH messages as Entra ID, Okta and authentik send them.
write("scim", "filter-username", 'userName eq "alice@example.com"')
write("scim", "filter-value-path", 'emails[type eq "work" and value co "alice"] or not (active eq false)')
write("scim", "filter-enterprise", 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "R&D"')
write("scim", "path-value-filter", 'members[value eq "u1"]')
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
write("scim", "patch-entra", json.dumps({"schemas": [PATCH], "Operations": [
    {"op": "Replace", "path": "active", "value": "False"},
    {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "new@example.com"},
    {"op": "replace", "value": {"name.givenName": "Al", "displayName": "Al Smith"}}]}))
write("scim", "patch-members", json.dumps({"schemas": [PATCH], "Operations": [
    {"op": "add", "path": "members", "value": [{"value": "u3"}]},
    {"op": "remove", "path": "members[value eq \"u1\"]"},
    {"op": "remove", "path": "members", "value": [{"value": "u2"}]}]}))
write("scim", "user-body", json.dumps({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "userName": "bob", "active": "True", "emails": [{"value": "bob@example.com", "primary": True}]}))

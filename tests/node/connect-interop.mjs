// Runs DiscourseConnect operations with independent Node implementations, for the interop tests
// in tests/e2e/interop_connect.rs.
//
// Reads one JSON array of commands on stdin and prints one JSON array of results, in order:
//   {"op": "validate", "secret", "sso", "sig"}
//       discourse-sso checks the signature; the payload is decoded with Node's querystring.
//       -> {"valid": bool, "nonce": string|null, "fields": {key: value|[values]}}
//   {"op": "build", "secret", "params": {key: value}}
//       discourse-sso's buildLoginString. -> {"login": "sso=...&sig=..."}
//   {"op": "request", "secret", "nonce", "return_sso_url", "connect_url"}
//       Signs a login request the way Discourse's `/session/sso` does, with Node's own crypto,
//       Base64 and URL encoding. -> {"url": string, "sso": string, "sig": string}

import { createHmac } from "node:crypto";
import querystring from "node:querystring";
import DiscourseSSO from "discourse-sso";

function validate({ secret, sso, sig }) {
  const peer = new DiscourseSSO(secret);
  const valid = peer.validate(sso, sig);
  let nonce = null;
  try {
    nonce = peer.getNonce(sso);
  } catch {
    nonce = null;
  }
  const inner = Buffer.from(querystring.unescape(sso), "base64").toString("utf8");
  return { valid, nonce, fields: querystring.parse(inner) };
}

function build({ secret, params }) {
  return { login: new DiscourseSSO(secret).buildLoginString(params) };
}

function request({ secret, nonce, return_sso_url, connect_url }) {
  // URLSearchParams form-encodes like Rack's build_query: space as `+`, `~` as `%7E`.
  const inner = new URLSearchParams({ nonce, return_sso_url }).toString();
  const sso = Buffer.from(inner, "utf8").toString("base64");
  const sig = createHmac("sha256", secret).update(sso).digest("hex");
  const separator = connect_url.includes("?") ? "&" : "?";
  const url = `${connect_url}${separator}sso=${encodeURIComponent(sso)}&sig=${sig}`;
  return { url, sso, sig };
}

const operations = { validate, build, request };

const chunks = [];
for await (const chunk of process.stdin) {
  chunks.push(chunk);
}
const commands = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const results = commands.map((command) => {
  const operation = operations[command.op];
  if (!operation) {
    throw new Error(`unknown op ${command.op}`);
  }
  return operation(command);
});
process.stdout.write(JSON.stringify(results));

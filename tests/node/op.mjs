// A real OpenID Provider for the end-to-end tests: npm `oidc-provider` (panva, pinned in
// package-lock.json) on 127.0.0.1, configured from one JSON document, plus a few test-control
// endpoints under /__test/ so tests can make the OP misbehave on purpose.
//
// Usage: node op.mjs '<json>'   (or the JSON in the OP_CONFIG environment variable)
//   {
//     "port": 0,                          0 = any free port
//     "kid": "test-rs256",                kid of the first RS256 signing key
//     "conformIdTokenClaims": false,      true: scope claims go to userinfo only (oidc-provider default)
//     "pkceRequired": true,
//     "autoConsent": true,                false: the consent page is shown and must be submitted
//     "rpInitiatedLogout": true,          false: no end_session_endpoint in discovery
//     "backchannelLogout": true,
//     "tls": { "cert": "<path>", "key": "<path>", "clientCa": "<path>" }
//                                         optional: serve HTTPS with this PEM certificate; the
//                                         issuer becomes https://<host>:<port>. Client
//                                         certificates are requested (not required) and verified
//                                         against clientCa, for tls_client_auth (RFC 8705; a
//                                         client registers tls_client_auth_san_dns).
//     "host": "127.0.0.1",                the issuer's host name (the OP listens on 127.0.0.1)
//     "mtlsAliases": false,               with tls: a second HTTPS listener that requires client
//                                         certificates, published as mtls_endpoint_aliases
//                                         (token, userinfo) in discovery (RFC 8705 §5); only
//                                         there does tls_client_auth find a certificate
//     "clients": [{ "client_id", "client_secret", "redirect_uris", "post_logout_redirect_uris",
//                   "backchannel_logout_uri", "backchannel_logout_session_required",
//                   "token_endpoint_auth_method", ... any other client metadata }],
//     "users": { "<sub>": { "email", "email_verified", "name", "preferred_username", "picture",
//                           "groups", ... any other claim } }
//   }
// When listening it prints one line on stdout:
//   {"ready":true,"issuer":"http://127.0.0.1:<port>","port":<port>,"kid":"<kid>"}
// Everything else (oidc-provider's warnings, request errors) goes to stderr. The OP exits when
// its stdin reaches end-of-file, so a test process that dies never leaves it behind.
//
// Claims and scopes: scopes openid, email (email, email_verified), profile (name,
// preferred_username, picture, ...), groups (groups). Any other claim a user has is put in the
// openid scope, so it is always released. With conformIdTokenClaims false (the default here) the
// ID token carries every claim of the granted scopes; ID tokens always carry `sid` for clients
// with backchannel_logout_session_required.
//
// Login: oidc-provider's devInteractions form (login = the user's sub, any password). A login
// that is not a configured user is answered 400 so a typo fails loudly.
//
// Tricks, each kept small:
// - Loopback back-channel logout: oidc-provider 9 sends its outgoing requests through an undici
//   dispatcher that refuses special-use addresses (127.0.0.0/8 included). The `fetch` option
//   below drops that dispatcher so the logout POST can reach a relying party on 127.0.0.1.
// - Storage: a small Map adapter instead of the built-in LRU one, so nothing (clients, sessions)
//   is evicted during long runs, and so the test endpoints can find a user's sessions.
// - Clients live in that adapter (not in the static `clients` option), so POST /__test/client can
//   add or replace one after start (the relying party's URL is often known only later).
// - Key rotation reaches into oidc-provider's private per-instance state through
//   `lib/helpers/weak_cache.js` (version pinned): the new key becomes the only one in the
//   published JWKS and the one used for signing; old keys stay in the internal key store only, so
//   an old id_token_hint still validates at the end_session endpoint.
// - Token response mutation is a koa middleware around POST /token that replaces `id_token` in
//   the JSON body with a re-signed copy (jose, with the OP's own private key, no key, or a
//   foreign key). The same for the userinfo JSON body.
// - Denial: a koa middleware in front of the devInteractions form submission finishes the
//   interaction with error=access_denied, exactly what the form's "abort" link does.
//
// Test-control endpoints (loopback callers only; JSON in, JSON out):
//   POST /__test/client                  {client metadata}   add or replace a client
//   POST /__test/backchannel-logout      {sub, sid?, client_id?, keep_session?}
//        Ends the user's OP sessions (all, or the one with that sid) unless keep_session, then
//        POSTs a real logout token to each client's backchannel_logout_uri: one per session
//        (with its sid), or one with the given sid, or one without sid when the user has no
//        session. Answers {"results":[{client_id, sub, sid, ok, error?}]}.
//   GET  /__test/backchannel-log          every back-channel outcome so far, including the ones
//        sent by a real RP-initiated logout: {"entries":[{client_id, sub, sid, ok, error?}]}
//   POST /__test/rotate-keys              {kid?} → {"kid": new kid, "previous": old kid}
//   POST /__test/mutate-next-id-token     {claims?, header?, sign?: "default"|"none"|"foreign-key"}
//        Queues a change for the next token response that has an id_token. A claim set to null
//        is removed. Header fields are merged into the protected header.
//   POST /__test/mutate-next-userinfo     {claims} queued change for the next userinfo answer
//   POST /__test/deny-next                {count?} the next interaction submission(s) end with
//        error=access_denied instead of logging in (needs an interaction: a browser without an
//        OP session).
//   POST /__test/sign                     {header?, claims, sign?} → {"jwt"} a compact JWS made
//        with the OP's key (for hand-crafted logout tokens the relying party will trust).
//   POST /__test/delay-next               {path, ms} the next request to that path (e.g. /token,
//        /jwks, /me) waits ms before being served: an IdP that hangs.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { promisify } from 'node:util';

const generateKeyPair = promisify(crypto.generateKeyPair);

const config = JSON.parse(process.argv[2] ?? process.env.OP_CONFIG ?? '{}');

// Key generation runs on the thread pool while oidc-provider loads on the main thread.
async function newSigningKey(kid) {
  const { privateKey } = await generateKeyPair('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  return { kid, privateKey, jwk };
}
const firstKid = config.kid ?? 'test-rs256';
const firstKeyPromise = newSigningKey(firstKid);

const [{ default: Provider }, { default: internals }, jose] = await Promise.all([
  import('oidc-provider'),
  import('oidc-provider/lib/helpers/weak_cache.js'),
  import('jose'),
]);

const publicJwk = ({ kty, n, e, kid, alg, use }) => ({ kty, n, e, kid, alg, use });

// ---------------------------------------------------------------------------------------------
// Storage adapter: one Map for every model, entries expire after their TTL.
const store = new Map();
const storeKey = (model, id) => `${model}:${id}`;

class MapAdapter {
  constructor(model) {
    this.model = model;
  }

  #get(key) {
    const entry = store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      store.delete(key);
      return undefined;
    }
    return entry.payload;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
    store.set(storeKey(this.model, id), { model: this.model, id, payload, expiresAt });
  }

  async find(id) {
    return this.#get(storeKey(this.model, id));
  }

  async findByUid(uid) {
    for (const entry of store.values()) {
      if (entry.model === this.model && entry.payload.uid === uid) {
        return this.#get(storeKey(this.model, entry.id));
      }
    }
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const entry of store.values()) {
      if (entry.model === this.model && entry.payload.userCode === userCode) {
        return this.#get(storeKey(this.model, entry.id));
      }
    }
    return undefined;
  }

  async consume(id) {
    const payload = this.#get(storeKey(this.model, id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(storeKey(this.model, id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, entry] of store) {
      if (entry.payload.grantId === grantId) store.delete(key);
    }
  }
}

const storedSessions = () => [...store.values()].filter((entry) => entry.model === 'Session');

// ---------------------------------------------------------------------------------------------
// Accounts and claims.
const users = config.users ?? {};
const scopeClaims = {
  email: ['email', 'email_verified'],
  profile: ['name', 'preferred_username', 'picture', 'given_name', 'family_name', 'nickname',
    'locale', 'website', 'zoneinfo', 'updated_at'],
  groups: ['groups'],
};
const scoped = new Set(Object.values(scopeClaims).flat());
const extraClaims = [...new Set(Object.values(users).flatMap((claims) => Object.keys(claims)))]
  .filter((name) => name !== 'sub' && !scoped.has(name));

async function findAccount(_ctx, sub) {
  const claims = users[sub];
  if (!claims) return undefined;
  return { accountId: sub, claims: async () => ({ ...claims, sub }) };
}

const allScopes = ['openid', 'offline_access', ...Object.keys(scopeClaims)];

async function loadExistingGrant(ctx) {
  const grantId = ctx.oidc.result?.consent?.grantId
    || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
  if (grantId) return ctx.oidc.provider.Grant.find(grantId);
  if (config.autoConsent === false) return undefined;
  const grant = new ctx.oidc.provider.Grant({
    clientId: ctx.oidc.client.clientId,
    accountId: ctx.oidc.session.accountId,
  });
  grant.addOIDCScope(allScopes.join(' '));
  await grant.save();
  return grant;
}

// ---------------------------------------------------------------------------------------------
// Clients, keys, provider.
const clientDefaults = {
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: 'client_secret_basic',
  id_token_signed_response_alg: 'RS256',
};
const clients = new Map();
async function putClient(metadata) {
  if (!metadata?.client_id) throw new Error('client_id is required');
  const full = { ...clientDefaults, ...metadata };
  // Validate first so a bad client is reported to the caller instead of failing a later login.
  await provider.Client.validate(full);
  clients.set(full.client_id, full);
  await new MapAdapter('Client').upsert(full.client_id, full);
  return full;
}

const server = config.tls
  ? https.createServer({
    cert: fs.readFileSync(config.tls.cert),
    key: fs.readFileSync(config.tls.key),
    ca: config.tls.clientCa ? fs.readFileSync(config.tls.clientCa) : undefined,
    requestCert: true,
    rejectUnauthorized: false,
  })
  : http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(config.port ?? 0, '127.0.0.1', resolve);
});
const { port } = server.address();

// RFC 8705 §5 aliases: the same OP behind a listener that insists on client certificates.
let aliasPort;
if (config.tls && config.mtlsAliases) {
  const aliasServer = https.createServer({
    cert: fs.readFileSync(config.tls.cert),
    key: fs.readFileSync(config.tls.key),
    ca: config.tls.clientCa ? fs.readFileSync(config.tls.clientCa) : undefined,
    requestCert: true,
    rejectUnauthorized: true,
  });
  await new Promise((resolve, reject) => {
    aliasServer.once('error', reject);
    aliasServer.listen(0, '127.0.0.1', resolve);
  });
  aliasPort = aliasServer.address().port;
  aliasServer.on('request', (req, res) => provider.callback()(req, res));
}
const onAliasListener = (ctx) => !config.mtlsAliases || ctx.socket?.localPort === aliasPort;
const issuer = `${config.tls ? 'https' : 'http'}://${config.host ?? '127.0.0.1'}:${port}`;

let signingKeys = [await firstKeyPromise];
const currentKey = () => signingKeys[0];
const backchannelLog = [];

const provider = new Provider(issuer, {
  adapter: MapAdapter,
  findAccount,
  loadExistingGrant,
  jwks: { keys: [currentKey().jwk] },
  claims: {
    acr: null,
    auth_time: null,
    iss: null,
    sid: null,
    openid: ['sub', ...extraClaims],
    ...scopeClaims,
  },
  scopes: allScopes,
  conformIdTokenClaims: config.conformIdTokenClaims ?? false,
  clientAuthMethods: [
    'client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt', 'none',
    ...(config.tls ? ['tls_client_auth'] : []),
  ],
  pkce: { required: () => config.pkceRequired ?? true },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: config.backchannelLogout ?? true },
    rpInitiatedLogout: { enabled: config.rpInitiatedLogout ?? true },
    revocation: { enabled: false },
    // RFC 8705 tls_client_auth: the certificate the client presented in this TLS connection.
    mTLS: {
      enabled: Boolean(config.tls),
      tlsClientAuth: true,
      certificateBoundAccessTokens: false,
      getCertificate(ctx) {
        if (!onAliasListener(ctx)) return undefined;
        return ctx.socket?.getPeerX509Certificate?.()?.toString();
      },
      certificateAuthorized(ctx) {
        return ctx.socket?.authorized === true;
      },
      certificateSubjectMatches(ctx, property, expected) {
        const names = (ctx.socket?.getPeerX509Certificate?.()?.subjectAltName ?? '').split(', ');
        return property === 'tls_client_auth_san_dns' && names.includes(`DNS:${expected}`);
      },
    },
  },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    Grant: 86400,
    IdToken: 3600,
    Interaction: 600,
    Session: 86400,
  },
  clientBasedCORS: () => false,
  // See the header: lets back-channel logout reach loopback relying parties.
  fetch: (url, options) => {
    delete options.dispatcher;
    return globalThis.fetch(url, options);
  },
});

provider.on('backchannel.success', (_ctx, client, sub, sid) => {
  backchannelLog.push({ client_id: client.clientId, sub, sid, ok: true });
});
provider.on('backchannel.error', (_ctx, err, client, sub, sid) => {
  backchannelLog.push({ client_id: client.clientId, sub, sid, ok: false, error: err.message });
});
provider.on('server_error', (_ctx, err) => console.error('op server_error:', err));
// Refused token requests (client authentication included) show up in the test's OP log.
provider.on('grant.error', (_ctx, err) => {
  console.error('op grant.error:', err.message, err.error_description ?? '', err.error_detail ?? '');
});

// ---------------------------------------------------------------------------------------------
// Signing helpers shared by the mutation and sign endpoints.
let foreignKey;
function decodeSegment(segment) {
  return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
}
function applyClaims(payload, changes = {}) {
  const out = { ...payload };
  for (const [name, value] of Object.entries(changes)) {
    if (value === null) delete out[name];
    else out[name] = value;
  }
  return out;
}
async function signCompact(header, payload, sign = 'default') {
  const body = new TextEncoder().encode(JSON.stringify(payload));
  if (sign === 'none') {
    const h = Buffer.from(JSON.stringify({ ...header, alg: 'none' })).toString('base64url');
    return `${h}.${Buffer.from(body).toString('base64url')}.`;
  }
  let key;
  if (sign === 'foreign-key') {
    foreignKey ??= await newSigningKey(`foreign-${crypto.randomBytes(4).toString('hex')}`);
    key = foreignKey;
  } else if (sign === 'default') {
    key = currentKey();
  } else {
    throw new Error(`unknown sign mode ${sign}`);
  }
  return new jose.CompactSign(body)
    .setProtectedHeader({ alg: 'RS256', kid: key.kid, ...header })
    .sign(key.privateKey);
}

// ---------------------------------------------------------------------------------------------
// Test-control endpoints and response rewriting.
const idTokenMutations = [];
const userinfoMutations = [];
let denyNext = 0;
const delays = [];

const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);

async function readBody(req, limit = 1 << 20) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

async function backchannelLogout({ sub, sid, client_id: clientId, keep_session: keepSession }) {
  if (typeof sub !== 'string' || !sub) throw new Error('sub is required');
  const wanted = [...clients.values()].filter(
    (c) => c.backchannel_logout_uri && (!clientId || c.client_id === clientId),
  );
  const sessions = storedSessions().filter((entry) => entry.payload.accountId === sub
    && (sid === undefined || Object.values(entry.payload.authorizations ?? {})
      .some((authorization) => authorization.sid === sid)));

  const targets = [];
  if (sid !== undefined || sessions.length === 0) {
    for (const c of wanted) targets.push({ clientId: c.client_id, sid });
  } else {
    for (const entry of sessions) {
      for (const [id, authorization] of Object.entries(entry.payload.authorizations ?? {})) {
        if (wanted.some((c) => c.client_id === id)) targets.push({ clientId: id, sid: authorization.sid });
      }
    }
  }
  if (!keepSession) {
    for (const entry of sessions) store.delete(storeKey('Session', entry.id));
  }

  return Promise.all(targets.map(async (target) => {
    const client = await provider.Client.find(target.clientId);
    try {
      await client.backchannelLogout(sub, target.sid);
      provider.emit('backchannel.success', undefined, client, sub, target.sid);
      return { client_id: target.clientId, sub, sid: target.sid, ok: true };
    } catch (err) {
      provider.emit('backchannel.error', undefined, err, client, sub, target.sid);
      return { client_id: target.clientId, sub, sid: target.sid, ok: false, error: err.message };
    }
  }));
}

async function rotateKeys({ kid } = {}) {
  const previous = currentKey().kid;
  const fresh = await newSigningKey(kid ?? `test-rs256-${crypto.randomBytes(4).toString('hex')}`);
  signingKeys = [fresh, ...signingKeys];
  const state = internals(provider);
  state.keystore.clear();
  for (const key of signingKeys) state.keystore.add(structuredClone(key.jwk));
  state.jwks = { keys: [publicJwk(fresh.jwk)] };
  return { kid: fresh.kid, previous };
}

const testRoutes = {
  'POST /__test/client': async (body) => ({ client: await putClient(body) }),
  'POST /__test/backchannel-logout': async (body) => ({ results: await backchannelLogout(body) }),
  'GET /__test/backchannel-log': async () => ({ entries: backchannelLog }),
  'POST /__test/rotate-keys': rotateKeys,
  'POST /__test/mutate-next-id-token': async (body) => {
    idTokenMutations.push({ claims: body.claims ?? {}, header: body.header ?? {}, sign: body.sign ?? 'default' });
    return { queued: idTokenMutations.length };
  },
  'POST /__test/mutate-next-userinfo': async (body) => {
    userinfoMutations.push({ claims: body.claims ?? {} });
    return { queued: userinfoMutations.length };
  },
  'POST /__test/deny-next': async (body) => {
    denyNext += body.count ?? 1;
    return { pending: denyNext };
  },
  'POST /__test/delay-next': async ({ path, ms }) => {
    if (typeof path !== 'string' || typeof ms !== 'number') throw new Error('path and ms are required');
    delays.push({ path, ms });
    return { pending: delays.length };
  },
  'POST /__test/sign': async (body) => ({
    jwt: await signCompact(body.header ?? {}, body.claims ?? {}, body.sign ?? 'default'),
  }),
};

provider.use(async (ctx, next) => {
  if (ctx.path.startsWith('/__test/')) {
    if (!LOOPBACK.has(ctx.req.socket.remoteAddress)) {
      ctx.status = 403;
      ctx.body = { error: 'test endpoints are loopback only' };
      return;
    }
    const route = testRoutes[`${ctx.method} ${ctx.path}`];
    if (!route) {
      ctx.status = 404;
      ctx.body = { error: 'no such test endpoint' };
      return;
    }
    try {
      const raw = ctx.method === 'POST' ? (await readBody(ctx.req)).toString('utf8') : '';
      ctx.body = await route(raw ? JSON.parse(raw) : {});
    } catch (err) {
      ctx.status = 400;
      ctx.body = { error: err.message };
    }
    return;
  }

  const delay = delays.findIndex((d) => d.path === ctx.path);
  if (delay !== -1) {
    const [{ ms }] = delays.splice(delay, 1);
    await new Promise((resolve) => { setTimeout(resolve, ms); });
  }

  // The devInteractions form submission: check the login, or deny on request.
  if (ctx.method === 'POST' && /^\/interaction\/[^/]+$/.test(ctx.path)) {
    const raw = await readBody(ctx.req, 64 * 1024);
    ctx.req.body = raw.toString('utf8'); // oidc-provider reads an already-read body from here
    const form = new URLSearchParams(ctx.req.body);
    if (denyNext > 0) {
      denyNext -= 1;
      const returnTo = await provider.interactionResult(ctx.req, ctx.res, {
        error: 'access_denied',
        error_description: 'End-User denied the request',
      }, { mergeWithLastSubmission: false });
      ctx.status = 303;
      ctx.redirect(returnTo);
      return;
    }
    if (form.get('prompt') === 'login' && !users[form.get('login')]) {
      ctx.status = 400;
      ctx.type = 'text';
      ctx.body = `op.mjs: unknown test user ${JSON.stringify(form.get('login'))}`;
      return;
    }
  }

  await next();

  if (aliasPort && ctx.path === '/.well-known/openid-configuration' && ctx.status === 200) {
    const base = `https://${config.host ?? '127.0.0.1'}:${aliasPort}`;
    ctx.body = {
      ...ctx.body,
      mtls_endpoint_aliases: { token_endpoint: `${base}/token`, userinfo_endpoint: `${base}/me` },
    };
  }
  if (ctx.method === 'POST' && ctx.path === '/token' && ctx.status === 200
      && ctx.body?.id_token && idTokenMutations.length > 0) {
    const { claims, header, sign } = idTokenMutations.shift();
    const [h, p] = ctx.body.id_token.split('.');
    const { alg: _alg, kid: _kid, ...keptHeader } = decodeSegment(h);
    ctx.body = {
      ...ctx.body,
      id_token: await signCompact({ ...keptHeader, ...header }, applyClaims(decodeSegment(p), claims), sign),
    };
  }
  if (ctx.path === '/me' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object'
      && userinfoMutations.length > 0) {
    const { claims } = userinfoMutations.shift();
    ctx.body = applyClaims(ctx.body, claims);
  }
});

for (const metadata of config.clients ?? []) {
  await putClient(metadata);
}

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ ready: true, issuer, port, kid: currentKey().kid })}\n`);

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
// The test process holds our stdin open; when it goes away (even killed), so do we.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

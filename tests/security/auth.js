// JWT auth on the wire (issue 4, "JWT auth"): three daemons, configured for HS256, RS256 and
// ES256, and tokens minted now by the openssl CLI (lib.js), so none of pollcast's code makes
// them. No token: 401 with WWW-Authenticate: Bearer; a valid token via the Authorization
// header, the access_token query parameter or the cookie: 200 and the snapshot; expired, not
// yet valid, forged, tampered, alg none, algorithm confusion (HS256 signed with the RSA or EC
// public key), DER ECDSA signatures, wrong audience or issuer: 401 with error="invalid_token";
// a valid token whose claim lacks the stream or URL: 403 with error="insufficient_scope"
// (RFC 6750) and a problem+json body; health needs no token.
'use strict';

const path = require('node:path');
const fs = require('node:fs');
const L = require('./lib');
const { assert, T, log } = L;

const SECRET = 'security-suite-secret-0123456789-abcdefghijklmnopq';
const OTHER_SECRET = 'not-the-secret-the-server-was-given-0123456789ab';
const AUD = 'pollcast-wire';
const ISS = 'https://issuer.wire/';
const KEYS = path.join(L.AUTH_DATA, 'keys');

function claims(extra = {}) {
  const n = L.now();
  return { sub: 'alice', iss: ISS, aud: AUD, iat: n - 10, exp: n + 3600,
    'pollcast.subscribe': ['prices'], ...extra };
}

// GET path with headers; resolves {status, headers, body, events...} reading at most the first
// event of a stream.
async function probe(base, p, headers = {}) {
  const s = new L.RawStream(base + p, { headers, name: p });
  await L.within(s.opened, T(5000), `GET ${p}`);
  if (s.status === 200) {
    await s.waitEvent('data', T(5000));
  } else {
    await s.until((f) => f.closed, T(5000), 'the end of the error answer');
  }
  s.close();
  return s;
}

async function expect401(base, p, headers, what, detailRe) {
  const s = await probe(base, p, headers);
  assert.equal(s.status, 401, `${what}: status (${s.body})`);
  assert.match(String(s.headers['www-authenticate']), /^Bearer/, `${what}: WWW-Authenticate`);
  const j = JSON.parse(s.body);
  assert.equal(j.status, 401, `${what}: problem status`);
  if (detailRe) assert.match(j.detail, detailRe, `${what}: detail`);
  return j;
}

// A valid token that does not grant the stream or URL: 403 with the RFC 6750 challenge
// (error="insufficient_scope") and a problem+json body.
async function expect403(base, p, headers, what, detailRe) {
  const s = await probe(base, p, headers);
  assert.equal(s.status, 403, `${what}: status (${s.body})`);
  assert.equal(s.headers['www-authenticate'], 'Bearer error="insufficient_scope"',
    `${what}: WWW-Authenticate`);
  assert.match(String(s.headers['content-type']), /^application\/problem\+json/, `${what}: type`);
  const j = JSON.parse(s.body);
  assert.equal(j.status, 403, `${what}: problem status`);
  if (detailRe) assert.match(j.detail, detailRe, `${what}: detail`);
  return j;
}

async function expect200(base, p, headers, what) {
  const s = await probe(base, p, headers);
  assert.equal(s.status, 200, `${what}: status (${s.body})`);
  assert.equal(s.count('data'), 1, `${what}: the snapshot`);
  return s;
}

L.run('security.auth', async (t) => {
  const up = await L.startUpstream();
  const doc = { price: 12.5 };
  await up.put('/prices', doc);
  await up.put('/orders', { orders: [] });
  await up.put('/v1/x', { adhoc: true });
  const upstreams = {
    prices: { url: up.url('/prices'), interval: '1s' },
    orders: { url: up.url('/orders'), interval: '1s' },
  };
  const allow = { url_prefix: [`http://localhost:${up.port}/`], cidr: ['127.0.0.0/8', '::1/128'] };
  const auth = (a) => `\n[auth]\n${Object.entries(a).map(([k, v]) => `${k} = ${v}`).join('\n')}\n`;
  // Header room for the 12 KB token, so that it reaches the token check (401), not the header
  // size limit (431).
  const server = { max_header_bytes: '32KiB', max_url_length: 16384 };
  const start = (name, a) =>
    L.startPollcast(L.configText({ server, upstreams, allow }) + auth(a), { name });

  const hs = await start('pollcast-hs256', { algorithm: 'HS256', secret: SECRET, audience: AUD,
    issuer: ISS, leeway: '5s' });
  const rs = await start('pollcast-rs256', { algorithm: 'RS256',
    public_key_file: path.join(KEYS, 'rsa_public.pem'), audience: AUD, issuer: ISS });
  const es = await start('pollcast-es256', { algorithm: 'ES256',
    public_key_file: path.join(KEYS, 'ec_public.pem'), audience: AUD, issuer: ISS });

  const good = L.jwt('HS256', SECRET, claims());
  const bearer = (tok) => ({ Authorization: `Bearer ${tok}` });

  await t.step('HS256: no token is 401 with WWW-Authenticate, for known and unknown streams',
    async () => {
      for (const p of ['/streams/prices', '/streams/nonexistent', '/proxy?url=' +
        encodeURIComponent(`http://localhost:${up.port}/v1/x`)]) {
        const s = await probe(hs.base, p);
        assert.equal(s.status, 401, `${p}: ${s.body}`);
        assert.equal(s.headers['www-authenticate'], 'Bearer', `${p}: WWW-Authenticate`);
        assert.match(JSON.parse(s.body).detail, /token is required/);
      }
      // Health, readiness and metrics need none.
      for (const p of ['/healthz', '/readyz', '/metrics']) {
        const r = await L.request('GET', hs.base + p);
        assert.equal(r.status, 200, p);
      }
    });

  await t.step('HS256: a valid token in the header, the query or the cookie: 200', async () => {
    await expect200(hs.base, '/streams/prices', bearer(good), 'Authorization: Bearer');
    await expect200(hs.base, `/streams/prices?access_token=${good}`, {}, 'access_token');
    await expect200(hs.base, '/streams/prices', { Cookie: `other=1; pollcast_token=${good}; x=2` },
      'cookie');
    const s = await expect200(hs.base, '/streams/prices', bearer(good), 'doc');
    assert.deepEqual(s.doc, doc);
  });

  await t.step('HS256: invalid tokens are 401 with error="invalid_token"', async () => {
    const n = L.now();
    const [h64, p64] = good.split('.');
    const other = L.jwt('HS256', SECRET, claims({ 'pollcast.subscribe': ['orders'] }));
    const cases = [
      ['expired', L.jwt('HS256', SECRET, claims({ exp: n - 3600 })), /expired/],
      ['expired beyond the leeway', L.jwt('HS256', SECRET, claims({ exp: n - 60 })), /expired/],
      ['nbf in the future', L.jwt('HS256', SECRET, claims({ nbf: n + 3600 })), /not valid yet/],
      ['signed with another secret', L.jwt('HS256', OTHER_SECRET, claims()), /signature/],
      ['payload of one, signature of another', `${h64}.${p64}.${other.split('.')[2]}`,
        /signature/],
      ['payload edited', `${h64}.${L.b64url(JSON.stringify(claims({ 'pollcast.subscribe':
        ['prices', 'orders'] })))}.${good.split('.')[2]}`, /signature/],
      ['no signature', `${h64}.${p64}.`, /signature|malformed/],
      ['alg none', L.jwt('none', '', claims(), { alg: 'none' }), /algorithm/],
      ['alg None', L.jwt('none', '', claims(), { alg: 'None' }), /algorithm/],
      ['alg none with a signature', L.jwt('HS256', SECRET, claims(), { alg: 'none' }),
        /algorithm/],
      ['alg HS512', L.jwt('HS256', SECRET, claims(), { alg: 'HS512' }), /algorithm/],
      ['wrong audience', L.jwt('HS256', SECRET, claims({ aud: 'someone-else' })), /audience/],
      ['no audience', L.jwt('HS256', SECRET, claims({ aud: undefined })), /audience/],
      ['wrong issuer', L.jwt('HS256', SECRET, claims({ iss: 'https://evil.wire/' })), /issuer/],
      ['no exp', L.jwt('HS256', SECRET, claims({ exp: undefined })), /exp/],
      ['not a JWT', 'not-a-jwt', null],
      ['three empty parts', '..', null],
      ['huge token', 'a'.repeat(6000) + '.' + 'b'.repeat(6000) + '.c', null],
    ];
    for (const [what, tok, re] of cases) {
      const j = await expect401(hs.base, '/streams/prices', bearer(tok), what, re);
      log(`${what}: 401 ${j.detail}`);
    }
    // The same tokens by query and cookie are refused the same way.
    await expect401(hs.base, `/streams/prices?access_token=${cases[0][1]}`, {}, 'query, expired',
      /expired/);
    await expect401(hs.base, '/streams/prices', { Cookie: `pollcast_token=${cases[3][1]}` },
      'cookie, forged', /signature/);
    const s = await probe(hs.base, '/streams/prices', bearer(cases[0][1]));
    assert.match(s.headers['www-authenticate'], /error="invalid_token"/);
  });

  await t.step('HS256: a valid token whose claim lacks the stream or URL: 403 insufficient_scope',
    async () => {
      const orders = L.jwt('HS256', SECRET, claims({ 'pollcast.subscribe': ['orders'] }));
      await expect403(hs.base, '/streams/prices', bearer(orders), 'another stream',
        /does not grant this stream/);
      await expect403(hs.base, `/streams/prices?access_token=${orders}`, {}, 'by query');
      await expect200(hs.base, '/streams/orders', bearer(orders), 'the granted stream');
      const none = L.jwt('HS256', SECRET, claims({ 'pollcast.subscribe': [] }));
      await expect403(hs.base, '/streams/prices', bearer(none), 'an empty claim');
      const noClaim = L.jwt('HS256', SECRET, claims({ 'pollcast.subscribe': undefined }));
      await expect403(hs.base, '/streams/prices', bearer(noClaim), 'no pollcast.subscribe claim');
      // Ad-hoc URLs: granted by URL prefix only.
      const url = `/proxy?url=${encodeURIComponent(`http://localhost:${up.port}/v1/x`)}`;
      await expect403(hs.base, url, bearer(good), 'stream names grant no URL',
        /does not grant this URL/);
      const byUrl = L.jwt('HS256', SECRET, claims({ 'pollcast.subscribe':
        [`http://localhost:${up.port}/v1/`] }));
      await expect200(hs.base, url, bearer(byUrl), 'URL prefix grant');
      const other = L.jwt('HS256', SECRET, claims({ 'pollcast.subscribe':
        [`http://localhost:${up.port}/v2/`] }));
      await expect403(hs.base, url, bearer(other), 'another prefix');
      await expect403(hs.base, '/streams/prices', bearer(byUrl), 'a URL grant is no stream grant');
      // Still 401 (not 403) without a token or with an invalid one, with the matching challenge.
      const n = await probe(hs.base, '/streams/prices');
      assert.equal(n.status, 401);
      assert.equal(n.headers['www-authenticate'], 'Bearer', 'no token: a bare challenge');
      const bad = await probe(hs.base, '/streams/prices', bearer(L.jwt('HS256', OTHER_SECRET, claims())));
      assert.equal(bad.status, 401);
      assert.equal(bad.headers['www-authenticate'], 'Bearer error="invalid_token"');
      assert.match(String(bad.headers['content-type']), /^application\/problem\+json/);
    });

  await t.step('RS256: valid 200; other key, alg none, HS256 with the public key: 401', async () => {
    const priv = path.join(KEYS, 'rsa_private.pem');
    const ok = L.jwt('RS256', priv, claims());
    await expect200(rs.base, '/streams/prices', bearer(ok), 'RS256');
    await expect200(rs.base, `/streams/prices?access_token=${ok}`, {}, 'RS256 query');
    const pub = fs.readFileSync(path.join(KEYS, 'rsa_public.pem'));
    const cases = [
      ['signed with another RSA key', L.jwt('RS256', path.join(KEYS, 'rsa_other_private.pem'),
        claims()), /signature/],
      ['expired', L.jwt('RS256', priv, claims({ exp: L.now() - 3600 })), /expired/],
      ['alg none', L.jwt('none', '', claims(), { alg: 'none' }), /algorithm/],
      ['confusion: HS256 keyed with the RSA public key PEM', L.jwt('HS256', pub, claims()),
        /algorithm/],
      ['confusion: HS256 keyed with the PEM minus its last newline',
        L.jwt('HS256', pub.subarray(0, pub.length - 1), claims()), /algorithm/],
      ['confusion: header says RS256, HMAC signature with the public key',
        L.jwt('HS256', pub, claims(), { alg: 'RS256' }), /signature/],
      ['ES256 token', L.jwt('ES256', path.join(KEYS, 'ec_private.pem'), claims()), /algorithm/],
      ['HS256 token with the server-less secret', good, /algorithm/],
      ['wrong issuer', L.jwt('RS256', priv, claims({ iss: 'x' })), /issuer/],
    ];
    for (const [what, tok, re] of cases) {
      const j = await expect401(rs.base, '/streams/prices', bearer(tok), `RS256 ${what}`, re);
      log(`RS256 ${what}: 401 ${j.detail}`);
    }
    const orders = L.jwt('RS256', priv, claims({ 'pollcast.subscribe': ['orders'] }));
    assert.equal((await probe(rs.base, '/streams/prices', bearer(orders))).status, 403);
  });

  await t.step('ES256: valid 200; DER signature, other key, confusion: 401', async () => {
    const priv = path.join(KEYS, 'ec_private.pem');
    const ok = L.jwt('ES256', priv, claims());
    await expect200(es.base, '/streams/prices', bearer(ok), 'ES256');
    await expect200(es.base, '/streams/prices', { Cookie: `pollcast_token=${ok}` }, 'ES256 cookie');
    const pub = fs.readFileSync(path.join(KEYS, 'ec_public.pem'));
    const cases = [
      ['DER signature instead of R||S', L.jwt('ES256-DER', priv, claims()), /signature/],
      ['signed with another EC key', L.jwt('ES256', path.join(KEYS, 'ec_other_private.pem'),
        claims()), /signature/],
      ['nbf in the future', L.jwt('ES256', priv, claims({ nbf: L.now() + 3600 })),
        /not valid yet/],
      ['wrong audience', L.jwt('ES256', priv, claims({ aud: ['a', 'b'] })), /audience/],
      ['alg none', L.jwt('none', '', claims(), { alg: 'none' }), /algorithm/],
      ['confusion: HS256 keyed with the EC public key PEM', L.jwt('HS256', pub, claims()),
        /algorithm/],
      ['RS256 token', L.jwt('RS256', path.join(KEYS, 'rsa_private.pem'), claims()),
        /algorithm/],
    ];
    for (const [what, tok, re] of cases) {
      const j = await expect401(es.base, '/streams/prices', bearer(tok), `ES256 ${what}`, re);
      log(`ES256 ${what}: 401 ${j.detail}`);
    }
  });

  await t.step('healthy after all that', async () => {
    for (const pc of [hs, rs, es]) await L.assertHealthy(pc);
  });
}, { timeoutMs: 120000 });

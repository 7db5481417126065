// Helpers of the push tests: the publishers' secret, a JWT signer for [auth] tests, a publish
// request, and a config with push streams.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const h = require('../integration/harness');

const SECRET = 'orders-publisher-secret+/=';
const AUTH_SECRET = 'an-hs256-secret-of-at-least-32-bytes-long';

function b64url(s) {
  return Buffer.from(s).toString('base64url');
}

function jwt(claims) {
  const input = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.` +
    b64url(JSON.stringify({ exp: Math.floor(Date.now() / 1000) + 600, ...claims }));
  const sig = crypto.createHmac('sha256', AUTH_SECRET).update(input).digest('base64url');
  return `${input}.${sig}`;
}

function pub(pc, method, name, body, { token = SECRET, headers = {} } = {}) {
  const hd = { ...headers };
  if (token) hd.Authorization = `Bearer ${token}`;
  if (method === 'PATCH' && !hd['Content-Type']) hd['Content-Type'] = 'application/json-patch+json';
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return h.requestJson(method, `${pc.base}/streams/${name}`, { headers: hd, body: text });
}

function streamConfig(dir, extra = '') {
  const tokenFile = path.join(dir, 'publisher.token');
  fs.writeFileSync(tokenFile, `${SECRET}\n`);
  return h.configText({
    extra: `[stream orders]\npublish_token_file = ${tokenFile}\n\n` +
      `[stream small]\npublish_token_file = ${tokenFile}\nmax_body = 1KiB\n\n` +
      `[stream kept]\npublish_token_file = ${tokenFile}\n` +
      `state_file = ${path.join(dir, 'kept.json')}\n\n${extra}`,
  });
}

module.exports = { SECRET, AUTH_SECRET, jwt, pub, streamConfig };

// Helpers of the security suite, on top of the integration harness: known-bug markers (xfail),
// raw TCP requests, JWTs minted with the openssl CLI (independent of pollcast's auth.c), a
// self-signed TLS upstream, and a health probe (liveness plus a fresh subscriber served).
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const https = require('node:https');
const net = require('node:net');
const path = require('node:path');
const h = require('../integration/harness');

const { assert, T, log } = h;
const AUTH_DATA = path.join(h.SRC, 'tests', 'data', 'auth');

// ---- known bugs ------------------------------------------------------------------------------

// A check that is known to fail because of a daemon bug reported to the lead. It runs fn: when
// fn fails, the failure is printed as "XFAIL <id>: ..." and the test goes on; when fn passes,
// the test FAILS with "XPASS <id>" so that the marker is removed once the bug is fixed (a known
// bug never passes silently). POLLCAST_SECURITY_STRICT=1 turns every xfail into a failure.
const xfails = [];
async function xfail(id, what, fn) {
  let err = null;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  if (!err) {
    throw new Error(`XPASS ${id}: "${what}" passes now: the bug is fixed, remove the xfail marker`);
  }
  if (process.env.POLLCAST_SECURITY_STRICT === '1') throw err;
  const msg = String(err && err.message ? err.message : err).split('\n').slice(0, 8).join(' | ');
  xfails.push(`${id}: ${what}: ${msg}`);
  log(`XFAIL ${id}: ${what}: ${msg}`);
}
// A check that was once an xfail: runs fn; its failure fails the test, with the rule named.
async function check(id, what, fn) {
  try {
    await fn();
  } catch (e) {
    e.message = `${id}: ${what}: ${e.message}`;
    throw e;
  }
  log(`ok ${id}: ${what}`);
}
h.defer(() => {
  if (xfails.length) {
    log(`known bugs (expected failures, see tests/security/tests.cmake):\n  ` +
      xfails.join('\n  '));
  }
});

// ---- raw TCP -----------------------------------------------------------------------------------

// Sends data (string or Buffer, or an array of chunks sent gapMs apart) on a fresh connection
// and collects what comes back until the server closes or ms pass. Resolves {text, status
// (number or null), closed (the server ended or reset the connection), error (code), ms}.
function raw(port, data, { ms = T(5000), gapMs = 0 } = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const sock = net.connect(port, '127.0.0.1');
    const chunks = [];
    let error = null;
    let closed = false;
    let timer = null;
    const done = () => {
      clearTimeout(timer);
      sock.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ text, status: m ? Number(m[1]) : null, closed, error, ms: Date.now() - t0 });
    };
    sock.on('data', (c) => chunks.push(c));
    sock.on('end', () => {
      closed = true;
      done();
    });
    sock.on('error', (e) => {
      error = e.code || e.message;
      closed = true;
      done();
    });
    sock.on('connect', async () => {
      const parts = Array.isArray(data) ? data : [data];
      for (const p of parts) {
        if (sock.destroyed) return;
        sock.write(p);
        if (gapMs) await h.sleep(gapMs);
      }
    });
    timer = setTimeout(done, ms);
  });
}

// ---- JWT minted with the openssl CLI -----------------------------------------------------------

const b64url = (buf) => Buffer.from(buf).toString('base64').replace(/\+/g, '-')
  .replace(/\//g, '_').replace(/=+$/, '');

// JOSE wants ES256 signatures as R || S (32 bytes each); openssl gives DER. A minimal DER
// reader: SEQUENCE { INTEGER r, INTEGER s }.
function derToJose(der) {
  let i = 2;
  if (der[1] & 0x80) i = 2 + (der[1] & 0x7f);
  const ints = [];
  for (let k = 0; k < 2; k++) {
    assert.equal(der[i], 0x02, 'DER INTEGER');
    const len = der[i + 1];
    let v = der.subarray(i + 2, i + 2 + len);
    while (v.length > 32 && v[0] === 0) v = v.subarray(1);
    ints.push(Buffer.concat([Buffer.alloc(32 - v.length), v]));
    i += 2 + len;
  }
  return Buffer.concat(ints);
}

// Signs input (a string) with `openssl dgst`: alg 'HS256' (key: the secret, a string or Buffer),
// 'RS256' / 'ES256' (key: a PEM private key file), 'ES256-DER' (the DER signature JOSE refuses),
// 'none' (no signature).
function sign(alg, key, input) {
  if (alg === 'none') return Buffer.alloc(0);
  let args;
  if (alg === 'HS256') {
    args = ['dgst', '-sha256', '-mac', 'HMAC', '-macopt', `hexkey:${Buffer.from(key).toString('hex')}`,
      '-binary'];
  } else {
    args = ['dgst', '-sha256', '-sign', key, '-binary'];
  }
  const sig = execFileSync('openssl', args, { input });
  return alg === 'ES256' ? derToJose(sig) : sig;
}

// A JWT: header (object; alg defaults to the signing algorithm) and claims (object), signed
// with alg and key as in sign().
function jwt(alg, key, claims, header = {}) {
  const hdr = { alg: alg === 'ES256-DER' ? 'ES256' : alg, typ: 'JWT', ...header };
  const input = `${b64url(JSON.stringify(hdr))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${b64url(sign(alg, key, input))}`;
}

function now() {
  return Math.floor(Date.now() / 1000);
}

// ---- a TLS upstream with a self-signed certificate ----------------------------------------------

// Generates a self-signed certificate for 127.0.0.1 with `openssl req -x509` and serves body
// (JSON text) over HTTPS on an OS-chosen loopback port. Resolves {port, certFile, close}.
async function startTlsUpstream(body) {
  const dir = h.tmpDir();
  const keyFile = path.join(dir, 'tls-key.pem');
  const certFile = path.join(dir, 'tls-cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile,
    '-out', certFile, '-days', '2', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const stats = { count: 0, paths: {} }; // requests, in all and by path
  const server = https.createServer({ key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) },
    (req, res) => {
      stats.count++;
      stats.paths[req.url] = (stats.paths[req.url] || 0) + 1;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(body);
    });
  // Handshakes that fail (pollcast refusing the certificate) are expected here.
  server.on('tlsClientError', () => {});
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const close = () => new Promise((resolve) => {
    server.closeAllConnections && server.closeAllConnections();
    server.close(() => resolve());
  });
  h.defer(close);
  return { port: server.address().port, certFile, stats, close };
}

// ---- health ------------------------------------------------------------------------------------

// Asserts that pollcast is alive and serving: /healthz answers 200, and when stream is given
// (a path such as /streams/x), a new subscriber gets a data event (equal to doc when given).
async function assertHealthy(pc, stream, doc) {
  assert.ok(!pc.exitInfo, `${pc.name} exited: ${JSON.stringify(pc.exitInfo)}`);
  const r = await h.request('GET', `${pc.base}/healthz`);
  assert.equal(r.status, 200, '/healthz');
  if (!stream) return null;
  const s = await h.openRaw(pc.base, stream, { name: `health ${stream}` });
  try {
    assert.equal(s.status, 200, `health subscriber of ${stream}: status`);
    const ev = await s.waitEvent('data', T(5000));
    if (doc !== undefined) assert.deepEqual(JSON.parse(ev.data), doc, `snapshot of ${stream}`);
    return s;
  } finally {
    s.close();
  }
}

// The whole body of a problem answer as JSON (or undefined).
function problem(r) {
  try {
    return JSON.parse(r.body);
  } catch {
    return undefined;
  }
}

module.exports = { ...h, h, xfail, check, raw, jwt, sign, now, b64url, AUTH_DATA, startTlsUpstream,
  assertHealthy, problem };

// CORS for publishers and plain readers (issue 12): a browser page on an allowed origin that
// PUTs or PATCHes a push stream (Authorization, Content-Type, If-Match) or POSTs a refresh sends
// a preflight first; curl -X OPTIONS with Access-Control-Request-Method/-Headers stands in for
// it here. The publish routes allow those methods and headers, other routes GET only, other
// origins nothing; answers to an allowed origin expose ETag (the id of plain reads and
// publishes) and Retry-After.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { execFile } = require('node:child_process');
const h = require('../integration/harness');
const { assert } = h;
const { SECRET, pub } = require('./lib');

const ORIGIN = 'https://app.example';

// curl -X OPTIONS: {status, headers (lower-case names)}.
function preflight(url, { origin = ORIGIN, method, headers = null }) {
  const argv = ['-sS', '-o', '/dev/null', '-D', '-', '-X', 'OPTIONS', '-H', `Origin: ${origin}`,
    '-H', `Access-Control-Request-Method: ${method}`, '--max-time', '10'];
  if (headers) argv.push('-H', `Access-Control-Request-Headers: ${headers}`);
  argv.push(url);
  return new Promise((resolve, reject) => {
    execFile('curl', argv, (err, stdout) => {
      if (err) return reject(err);
      const lines = stdout.split('\r\n');
      const status = Number(lines[0].split(' ')[1]);
      const hd = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) hd[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status, headers: hd });
    });
  });
}

const list = (v) => (v || '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);

h.run('push.cors', async (t) => {
  const dir = h.tmpDir();
  const tokenFile = path.join(dir, 'publisher.token');
  fs.writeFileSync(tokenFile, `${SECRET}\n`);
  const up = await h.startUpstream();
  await up.put('/r', { r: 1 });
  const pc = await h.startPollcast(h.configText({
    server: { cors_origin: ORIGIN },
    upstreams: { r: { url: up.url('/r'), interval: '30s', publish_token_file: tokenFile } },
    extra: `[stream orders]\npublish_token_file = ${tokenFile}\n`,
  }));

  await t.step('preflight of PUT and PATCH on /streams/NAME', async () => {
    for (const method of ['PUT', 'PATCH']) {
      const r = await preflight(`${pc.base}/streams/orders`,
        { method, headers: 'authorization, content-type, if-match' });
      assert.equal(r.status, 204);
      assert.equal(r.headers['access-control-allow-origin'], ORIGIN);
      const methods = list(r.headers['access-control-allow-methods']);
      for (const m of ['get', 'put', 'patch']) assert.ok(methods.includes(m), `${m}: ${methods}`);
      const allowed = list(r.headers['access-control-allow-headers']);
      for (const x of ['authorization', 'content-type', 'if-match', 'if-none-match']) {
        assert.ok(allowed.includes(x), `${x}: ${allowed}`);
      }
    }
  });

  await t.step('preflight of POST on /streams/NAME/refresh', async () => {
    const r = await preflight(`${pc.base}/streams/r/refresh`,
      { method: 'POST', headers: 'authorization, content-type' });
    assert.equal(r.status, 204);
    assert.equal(r.headers['access-control-allow-origin'], ORIGIN);
    assert.ok(list(r.headers['access-control-allow-methods']).includes('post'));
    const allowed = list(r.headers['access-control-allow-headers']);
    assert.ok(allowed.includes('authorization') && allowed.includes('content-type'), `${allowed}`);
  });

  await t.step('other routes GET only; other origins nothing', async () => {
    const r = await preflight(`${pc.base}/streams`, { method: 'PUT' });
    assert.deepEqual(list(r.headers['access-control-allow-methods']), ['get', 'options']);
    const evil = await preflight(`${pc.base}/streams/orders`,
      { origin: 'https://evil.example', method: 'PUT', headers: 'authorization' });
    assert.equal(evil.headers['access-control-allow-origin'], undefined);
    assert.equal(evil.headers['access-control-allow-methods'], undefined);
  });

  await t.step('publishes, refreshes and plain reads expose ETag to the origin', async () => {
    const put = await pub(pc, 'PUT', 'orders', { n: 1 }, { headers: { Origin: ORIGIN } });
    assert.equal(put.status, 200, put.body);
    assert.equal(put.headers['access-control-allow-origin'], ORIGIN);
    assert.ok(list(put.headers['access-control-expose-headers']).includes('etag'));
    const read = await h.request('GET', `${pc.base}/streams/orders`,
      { headers: { Origin: ORIGIN, Accept: 'application/json' } });
    assert.equal(read.status, 200);
    assert.equal(read.headers.etag, `"${put.json.id}"`);
    assert.equal(read.headers['access-control-allow-origin'], ORIGIN);
    assert.ok(list(read.headers['access-control-expose-headers']).includes('etag'));
    const rf = await pub(pc, 'POST', 'r/refresh', '', { headers: { Origin: ORIGIN } });
    assert.equal(rf.status, 202);
    assert.equal(rf.headers['access-control-allow-origin'], ORIGIN);
    const other = await h.request('GET', `${pc.base}/streams/orders`,
      { headers: { Origin: 'https://evil.example', Accept: 'application/json' } });
    assert.equal(other.headers['access-control-expose-headers'], undefined);
  });
});

// Plain reads (issue 12, section 4): GET with Accept: application/json on /streams/NAME, /proxy
// and the Streamdata.io form answers the current document from the shared poller's snapshot,
// with ETag "<id>" (the id the events carry), If-None-Match answered by 304 and Cache-Control:
// max-age from the interval. The first read of a new topic waits for the first poll (504 when
// the upstream gives nothing within the poll timeout). 200 clients reading concurrently, round
// after round over several ticks, cost the upstream one request per tick.
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const h = require('../integration/harness');
const { assert, T } = h;
const { SECRET, pub } = require('./lib');

const JSON_ACCEPT = { Accept: 'application/json' };

h.run('push.plain_reads', async (t) => {
  const dir = h.tmpDir();
  const tokenFile = path.join(dir, 'publisher.token');
  fs.writeFileSync(tokenFile, `${SECRET}\n`);
  const up = await h.startUpstream();
  await up.put('/v1/many', { n: 1 });
  await up.put('/v1/slow', { n: 2 });
  await up.put('/v1/cached', { c: 1 });
  await up.put('/v1/adhoc', { a: 1 });
  await up.mode('/v1/slow', 'hang');
  const INTERVAL = 500;
  const pc = await h.startPollcast(h.configText({
    server: { streamdata_compat: true, adhoc_grace: '30s' },
    upstreams: {
      many: { url: up.url('/v1/many'), interval: `${INTERVAL}ms`, min_interval: '100ms' },
      slow: { url: up.url('/v1/slow'), interval: '1s' },
      cached: { url: up.url('/v1/cached'), interval: '3s' },
    },
    allow: { url_prefix: up.url('/v1/'), cidr: '127.0.0.0/8', interval: '1s' },
    extra: `[stream pushed]\npublish_token_file = ${tokenFile}\n`,
  }));

  await t.step('200 concurrent readers, several ticks: one upstream request per tick', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 200 });
    h.defer(() => agent.destroy());
    const read = () => new Promise((resolve, reject) => {
      const req = http.get(`${pc.base}/streams/many`, { agent, headers: JSON_ACCEPT }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
      });
      req.on('error', reject);
    });
    const CLIENTS = 200;
    const ROUNDS = h.scaled(8, 4);
    const started = Date.now();
    let changes = 0;
    const seen = new Set();
    for (let round = 0; round < ROUNDS; round++) {
      const answers = await Promise.all(Array.from({ length: CLIENTS }, read));
      for (const a of answers) {
        assert.equal(a.status, 200, a.body);
        assert.equal(a.headers['content-type'], 'application/json');
        const doc = JSON.parse(a.body);
        assert.equal(a.headers.etag, `"${a.headers.etag.slice(1, -1)}"`);
        seen.add(`${a.headers.etag} ${doc.n}`);
      }
      if (round === 0) {
        // Every one of the first 200 readers waited for the same first poll.
        assert.equal((await up.stats('/v1/many')).count, 1, 'the first round: one poll');
      }
      await up.put('/v1/many', { n: round + 2 });
      changes++;
      await h.sleep(INTERVAL / 2);
    }
    const elapsed = Date.now() - started;
    const s = await up.stats('/v1/many');
    const ticks = Math.ceil(elapsed / INTERVAL) + 1;
    h.log(`${CLIENTS * ROUNDS} plain reads in ${elapsed} ms: ${s.count} upstream requests ` +
      `(${ticks} ticks at most), ${seen.size} versions seen`);
    assert.ok(s.count <= ticks, `${s.count} upstream requests for ${ticks} ticks`);
    assert.ok(s.count >= 2, 'the poller went on polling');
    assert.ok(seen.size >= 2, 'readers saw the document change');
    // One ETag per version: a version is never served with two documents.
    const byTag = new Map();
    for (const v of seen) {
      const [tag, n] = v.split(' ');
      assert.ok(!byTag.has(tag) || byTag.get(tag) === n, `${tag} with two documents`);
      byTag.set(tag, n);
    }
    assert.ok(changes > 0);
  });

  await t.step('ETag is the stream\'s id; If-None-Match gets 304; max-age from the interval',
    async () => {
      const s = await h.openRaw(pc.base, '/streams/cached', { name: 'cached-sse' });
      h.defer(() => s.close());
      await s.waitDoc({ c: 1 });
      const r = await h.requestJson('GET', `${pc.base}/streams/cached`, { headers: JSON_ACCEPT });
      assert.equal(r.status, 200);
      assert.deepEqual(r.json, { c: 1 });
      assert.equal(r.headers.etag, `"${s.lastId.id}"`);
      assert.equal(r.headers['cache-control'], 'max-age=3');
      const nm = await h.request('GET', `${pc.base}/streams/cached`,
        { headers: { ...JSON_ACCEPT, 'If-None-Match': r.headers.etag } });
      assert.equal(nm.status, 304);
      assert.equal(nm.body, '');
      assert.equal(nm.headers.etag, r.headers.etag);
      const other = await h.request('GET', `${pc.base}/streams/cached`,
        { headers: { ...JSON_ACCEPT, 'If-None-Match': '"0.1", W/"x"' } });
      assert.equal(other.status, 200);
      // The SSE answer is unchanged for other Accept values.
      const sse = await h.openRaw(pc.base, '/streams/cached',
        { name: 'accept-any', headers: { Accept: '*/*' } });
      h.defer(() => sse.close());
      await sse.waitEvent('data');
      const es = await h.openRaw(pc.base, '/streams/cached',
        { name: 'accept-both', headers: { Accept: 'text/event-stream, application/json' } });
      h.defer(() => es.close());
      await es.waitEvent('data');
    });

  await t.step('/proxy and the Streamdata.io form read the same way', async () => {
    const url = up.url('/v1/adhoc');
    const r = await h.requestJson('GET', `${pc.base}/proxy?url=${encodeURIComponent(url)}`,
      { headers: JSON_ACCEPT });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(r.json, { a: 1 });
    assert.equal(r.headers['cache-control'], 'max-age=1');
    assert.match(r.headers.etag, /^"[0-9a-z]+\.[0-9a-z]+"$/);
    const c = await h.requestJson('GET', `${pc.base}/${url}`, { headers: JSON_ACCEPT });
    assert.equal(c.status, 200, c.body);
    assert.deepEqual(c.json, { a: 1 });
    const refused = await h.request('GET', `${pc.base}/proxy?url=${encodeURIComponent(
      'http://127.0.0.1:1/elsewhere')}`, { headers: JSON_ACCEPT });
    assert.equal(refused.status, 403, 'the allow rules still apply');
  });

  await t.step('a first read waits at most the poll timeout: 504', async () => {
    const start = Date.now();
    const r = await h.requestJson('GET', `${pc.base}/streams/slow`, { headers: JSON_ACCEPT });
    const ms = Date.now() - start;
    assert.equal(r.status, 504, r.body);
    assert.equal(r.headers['content-type'], 'application/problem+json');
    assert.ok(ms >= 900 && ms < T(4000), `answered after ${ms} ms (timeout 1 s)`);
  });

  await t.step('a push stream reads its last publish', async () => {
    let r = await h.request('GET', `${pc.base}/streams/pushed`, { headers: JSON_ACCEPT });
    assert.equal(r.status, 404, 'nothing published yet');
    const p = await pub(pc, 'PUT', 'pushed', { p: [1, 2] });
    assert.equal(p.status, 200);
    r = await h.requestJson('GET', `${pc.base}/streams/pushed`, { headers: JSON_ACCEPT });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { p: [1, 2] });
    assert.equal(r.headers.etag, `"${p.json.id}"`);
    assert.equal(r.headers['cache-control'], 'no-cache');
  });
});

// Push streams in cluster mode (issue 12, section 1): two nodes and one redis-server. A publish
// on either node is a compare-and-append in Redis (store/redis.c, script_publish), so both nodes
// serve the same ids: PUT and PATCH alternately on node A and node B reach subscribers on both
// nodes with the same ids, and their documents (patches applied with fast-json-patch) converge
// to the published one; two publishers racing from the two nodes with If-Match, trying again on
// 412 or 409, lose no update, and so do PATCHes without If-Match, several at once per node
// (queued on the node, never 503); a late subscriber on either node gets the current snapshot; a
// state_file is refused in cluster mode; with Redis gone, a publish gets 503 problem+json with
// Retry-After instead of ids the other node never sees. A polled stream is still refreshed.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const c = require('../cluster/lib');
const { h } = c;
const { assert, T } = h;
const { SECRET, pub } = require('./lib');

// The ids of a follower's data and patch events, in order.
function ids(f) {
  return f.events.filter((e) => e.event === 'data' || e.event === 'patch').map((e) => e.id);
}

h.run('push.cluster', async (t) => {
  const dir = h.tmpDir();
  const tokenFile = path.join(dir, 'publisher.token');
  fs.writeFileSync(tokenFile, `${SECRET}\n`);
  const redis = await c.startRedis();
  const up = await h.startUpstream();
  await up.put('/r', { r: 1 });
  const config = (id) => c.nodeConfig(redis, id, {
    upstreams: { r: { url: up.url('/r'), interval: '30s', publish_token_file: tokenFile } },
  }) + `\n[stream orders]\npublish_token_file = ${tokenFile}\n`;

  await t.step('state_file is refused in cluster mode', async () => {
    const file = h.writeConfig(`${config('node-x')}state_file = ${path.join(dir, 'o.json')}\n`);
    const r = await h.runPollcast(['check-config', file]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /state_file is not used in cluster mode/);
  });

  const a = await h.startPollcast(config('node-a'), { name: 'node-a' });
  const b = await h.startPollcast(config('node-b'), { name: 'node-b' });
  await c.waitReady(a);
  await c.waitReady(b);

  const sa = await h.openRaw(a.base, '/streams/orders', { name: 'sub-a' });
  const sb = await h.openRaw(b.base, '/streams/orders', { name: 'sub-b' });
  h.defer(() => sa.close());
  h.defer(() => sb.close());
  assert.equal(sa.status, 200);
  assert.equal(sb.status, 200);

  // The stream loads from Redis once the node is up: the first publish may get 503 for a moment.
  const first = async (pc, body) => {
    const end = Date.now() + T(5000);
    for (;;) {
      const r = await pub(pc, 'PUT', 'orders', body);
      if (r.status !== 503 || Date.now() > end) return r;
      await h.sleep(20);
    }
  };

  let doc = { orders: [{ id: 1, qty: 2 }], total: 90071992547409, note: 'a' };
  await t.step('PUT and PATCH alternately on both nodes: same ids, same document', async () => {
    let r = await first(a, doc);
    assert.equal(r.status, 200, r.body);
    // Both subscribers came before the stream had a document: each reads the current one as
    // its data event when it is next written, so a publish before that read would fold the first
    // version into a later snapshot (correct, but not the sequence this step checks).
    for (const s of [sa, sb]) {
      await s.until((f) => f.lastId && f.lastId.id === r.json.id, T(5000), `id ${r.json.id}`);
    }
    const steps = [
      [b, 'PATCH', [{ op: 'add', path: '/orders/-', value: { id: 2, qty: 1 } }]],
      [a, 'PUT', { orders: [{ id: 2, qty: 1 }, { id: 1, qty: 3 }], total: 3, note: 'a\u0000b' }],
      [b, 'PUT', { orders: [], total: 0.1, extra: { deep: [1, 2, { x: null }] } }],
      [a, 'PATCH', [{ op: 'replace', path: '/total', value: 12 }, { op: 'remove', path: '/extra' }]],
      [b, 'PATCH', [{ op: 'add', path: '/note', value: '\ud83d\ude00' }]],
      [a, 'PUT', { orders: [{ id: 9 }], total: 1 }],
    ];
    const published = [r.json.id];
    for (const [pc, method, body] of steps) {
      const prev = published[published.length - 1];
      r = await pub(pc, method, 'orders', body);
      assert.equal(r.status, 200, `${pc.name} ${method}: ${r.body}`);
      assert.ok(h.idLess(h.parseId(prev), h.parseId(r.json.id)), `${r.json.id} after ${prev}`);
      published.push(r.json.id);
      doc = method === 'PUT' ? body : h.jsonpatch.applyPatch(h.clone(doc), body, true, false)
        .newDocument;
      for (const s of [sa, sb]) {
        await s.until((f) => f.lastId && f.lastId.id === r.json.id, T(5000), `id ${r.json.id}`);
        assert.ok(s.hasDoc(doc), `${s.name}: ${JSON.stringify(s.doc)} != ${JSON.stringify(doc)}`);
      }
    }
    assert.deepEqual(ids(sa), published, 'node A served the published ids, each once');
    assert.deepEqual(ids(sb), published, 'node B served the published ids, each once');
    assert.equal(sa.count('data'), 1, 'one data event, then patches');
    assert.equal(sb.count('data'), 1);
    // The same document again, on the other node: 204 with the current id as ETag.
    r = await pub(b, 'PUT', 'orders', doc);
    assert.equal(r.status, 204, r.body);
    assert.equal(r.headers.etag, `"${published[published.length - 1]}"`);
  });

  await t.step('two publishers racing from the two nodes lose no update', async () => {
    let r = await pub(a, 'PUT', 'orders', { n: 0, a: [], b: [] });
    assert.equal(r.status, 200, r.body);
    const N = h.scaled(25, 8);
    const refused = { 409: 0, 412: 0 };
    const publisher = async (who, pc) => {
      // A real client: it follows the stream on its node to know the current version.
      const f = await h.openRaw(pc.base, '/streams/orders', { name: `publisher-${who}` });
      h.defer(() => f.close());
      await f.until((x) => x.doc && x.lastId && x.doc.n !== undefined, T(5000), 'the doc');
      let cur = h.clone(f.doc);
      let id = f.lastId.id;
      for (let i = 0; i < N;) {
        const next = h.clone(cur);
        next.n += 1;
        next[who].push(i);
        const w = await pub(pc, 'PUT', 'orders', next, { headers: { 'If-Match': `"${id}"` } });
        if (w.status === 200) {
          cur = next;
          id = w.json.id;
          i++;
          continue;
        }
        assert.ok(w.status === 412 || w.status === 409, `${who}: ${w.status} ${w.body}`);
        assert.equal(w.headers['content-type'], 'application/problem+json');
        refused[w.status]++;
        // Someone else wrote: read the newer version from the stream, then redo.
        const want = w.json.id || id;
        await f.until((x) => x.lastId && h.idLess(h.parseId(id), h.parseId(x.lastId.id)) &&
          !h.idLess(h.parseId(x.lastId.id), h.parseId(want)), T(5000), `a version after ${id}`);
        cur = h.clone(f.doc);
        id = f.lastId.id;
      }
    };
    await Promise.all([publisher('a', a), publisher('b', b)]);
    const seq = Array.from({ length: N }, (_, i) => i);
    const want = { n: 2 * N, a: seq, b: seq };
    for (const s of [sa, sb]) await s.waitDoc(want, T(5000), 'both publishers\' changes');
    assert.deepEqual(ids(sa), ids(sb), 'both nodes served the same ids');
    h.log(`race: ${2 * N} writes from two nodes, ${refused[412]} answered 412, ` +
      `${refused[409]} answered 409, retried`);
  });

  await t.step('PATCHes racing from the two nodes without If-Match: every one applies', async () => {
    // Each node re-applies a PATCH that another node's publish overtook to the newer version
    // (up to 3 attempts, then 409, which the client tries again).
    let r = await pub(b, 'PUT', 'orders', { a: [], b: [] });
    assert.equal(r.status, 200, r.body);
    const N = h.scaled(40, 10);
    let conflicts = 0;
    const patcher = async (who, pc) => {
      for (let i = 0; i < N;) {
        const w = await pub(pc, 'PATCH', 'orders', [{ op: 'add', path: `/${who}/-`, value: i }]);
        if (w.status === 200) {
          i++;
          continue;
        }
        assert.equal(w.status, 409, `${who}: ${w.status} ${w.body}`);
        conflicts++;
      }
    };
    await Promise.all([patcher('a', a), patcher('b', b)]);
    const seq = Array.from({ length: N }, (_, i) => i);
    doc = { a: seq, b: seq };
    for (const s of [sa, sb]) await s.waitDoc(doc, T(5000), 'every PATCH');
    assert.deepEqual(ids(sa), ids(sb), 'both nodes served the same ids');
    const taken = c.metricSum(await a.metrics(), 'pollcast_cluster_publish_conflicts_total') +
      c.metricSum(await b.metrics(), 'pollcast_cluster_publish_conflicts_total');
    h.log(`patch race: ${2 * N} PATCHes from two nodes, ${conflicts} answered 409, retried; ` +
      `${taken} publishes overtaken in Redis since the start (both races)`);
  });

  await t.step('concurrent publishes on each node queue: no 503, every one applies', async () => {
    // Eight clients per node PATCH at once: a node sends one publish of a stream to Redis at a
    // time, and the others wait for it instead of getting 503.
    let r = await pub(a, 'PUT', 'orders', { a: [], b: [] });
    assert.equal(r.status, 200, r.body);
    const K = 8;
    let conflicts = 0;
    const client = async (who, pc, i) => {
      for (;;) {
        const w = await pub(pc, 'PATCH', 'orders', [{ op: 'add', path: `/${who}/-`, value: i }]);
        if (w.status === 200) return;
        assert.equal(w.status, 409, `${who}${i}: ${w.status} ${w.body}`);
        conflicts++;
      }
    };
    const all = [];
    for (let i = 0; i < K; i++) all.push(client('a', a, i), client('b', b, i));
    await Promise.all(all);
    for (const s of [sa, sb]) {
      await s.until((f) => f.doc && f.doc.a && f.doc.a.length === K && f.doc.b.length === K,
        T(5000), 'every concurrent PATCH');
      const seq = Array.from({ length: K }, (_, i) => i);
      assert.deepEqual([...s.doc.a].sort((x, y) => x - y), seq);
      assert.deepEqual([...s.doc.b].sort((x, y) => x - y), seq);
    }
    assert.deepEqual(ids(sa), ids(sb), 'both nodes served the same ids');
    doc = sa.doc;
    h.log(`concurrent: ${2 * K} PATCHes at once on two nodes, ${conflicts} answered 409, retried`);
  });

  await t.step('a late subscriber on either node gets the current snapshot', async () => {
    const last = sa.lastId.id;
    for (const pc of [a, b]) {
      const s = await h.openRaw(pc.base, '/streams/orders', { name: `late-${pc.name}` });
      h.defer(() => s.close());
      const ev = await s.waitEvent('data', T(5000));
      assert.equal(ev.id, last);
      assert.deepEqual(JSON.parse(ev.data), doc);
      const r = await h.request('GET', `${pc.base}/streams/orders`,
        { headers: { Accept: 'application/json' } });
      assert.equal(r.status, 200);
      assert.equal(r.headers.etag, `"${last}"`);
      assert.deepEqual(JSON.parse(r.body), doc);
    }
  });

  await t.step('a polled stream is served and refreshed by its polling node', async () => {
    const s = await h.openRaw(a.base, '/streams/r', { name: 'r' });
    h.defer(() => s.close());
    await s.waitDoc({ r: 1 });
    await up.put('/r', { r: 2 });
    await c.waitFor(async () => {
      const n = (await pub(a, 'POST', 'r/refresh', '')).json.refreshed;
      const m = (await pub(b, 'POST', 'r/refresh', '')).json.refreshed;
      return n + m === 1;
    }, T(5000), 'one node to poll r');
    await s.waitDoc({ r: 2 }, T(5000), 'the refreshed document (interval 30 s)');
  });

  await t.step('Redis gone: a publish gets 503 with Retry-After, no id is handed out', async () => {
    const last = sa.lastId.id;
    await redis.stop('SIGKILL');
    await c.waitFor(async () => (await c.readyz(a)).json.cluster === 'degraded', T(15000),
      'node A to notice');
    const r = await pub(a, 'PUT', 'orders', { after: 'redis' });
    assert.equal(r.status, 503, r.body);
    assert.equal(r.headers['content-type'], 'application/problem+json');
    assert.equal(r.headers['retry-after'], '1');
    await h.sleep(T(300));
    assert.equal(sa.lastId.id, last, 'no new version on node A');
    assert.ok(sa.hasDoc(doc), 'node A still serves the document');
  });
});

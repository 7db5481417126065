// Push streams (issue 12, section 1): a backend PUTs documents to a [stream NAME] or PATCHes
// them, and pollcast diffs and fans out as for a poll. Subscribers' patches, applied with
// fast-json-patch (validating), turn each previous document into the published one exactly;
// PATCH is atomic (a failed test: 409, an op that cannot apply: 422, naming the op, nothing
// published); If-Match makes writes conditional, so two publishers doing read-modify-write
// concurrently lose no update; publishers authenticate with the stream's secret or a JWT with a
// pollcast.publish claim (a subscriber's token gets 403); bodies over max_body get 413; bad JSON
// gets 400 with the byte offset; state_file keeps the last document across a restart.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const h = require('../integration/harness');
const { assert, T } = h;

const { SECRET, pub, streamConfig } = require('./lib');

h.run('push.publish', async (t) => {
  const dir = h.tmpDir();
  const pc = await h.startPollcast(streamConfig(dir));

  await t.step('no data before the first publish; PUT then PATCH reach subscribers exactly',
    async () => {
      const s = await h.openRaw(pc.base, '/streams/orders', { name: 'sub1' });
      h.defer(() => s.close());
      assert.equal(s.status, 200);
      await h.sleep(T(300));
      assert.equal(s.count('data'), 0, 'a data event before any publish');
      const docs = [
        { orders: [{ id: 1, qty: 2 }, { id: 2, qty: 1 }], total: 90071992547409, note: 'a' },
        { orders: [{ id: 2, qty: 1 }, { id: 3, qty: 7 }, { id: 1, qty: 2 }], total: 3,
          note: 'a\u0000b', extra: { deep: [1, 2, { x: null }] } },
        { orders: [], total: 0.1, note: '\ud83d\ude00' },
      ];
      let lastId = null;
      for (const d of docs) {
        const r = await pub(pc, 'PUT', 'orders', d);
        assert.equal(r.status, 200, r.body);
        assert.match(r.json.id, h.ID_RE);
        assert.equal(r.headers.etag, `"${r.json.id}"`);
        if (lastId) assert.ok(h.idLess(h.parseId(lastId), h.parseId(r.json.id)), 'ids increase');
        lastId = r.json.id;
        await s.until((f) => f.lastId && f.lastId.id === r.json.id, T(5000), `id ${r.json.id}`);
      }
      assert.ok(s.list('data').length === 1, 'one data event, then patches');
      assert.equal(s.count('patch'), 2);
      assert.ok(s.hasDoc(docs[2]));
      // The same document again: 204, no event.
      const same = await pub(pc, 'PUT', 'orders', docs[2]);
      assert.equal(same.status, 204);
      assert.equal(same.headers.etag, `"${lastId}"`);
      // PATCH: applied to the current document, published as a patch event.
      const ops = [{ op: 'add', path: '/orders/-', value: { id: 9, qty: 1 } },
        { op: 'replace', path: '/total', value: 12 }, { op: 'remove', path: '/note' }];
      const r = await pub(pc, 'PATCH', 'orders', ops);
      assert.equal(r.status, 200, r.body);
      const want = h.jsonpatch.applyPatch(h.clone(docs[2]), ops, true, false).newDocument;
      await s.until((f) => f.lastId.id === r.json.id, T(5000), 'the PATCH id');
      assert.ok(s.hasDoc(want), `after PATCH: ${JSON.stringify(s.doc)}`);
      // A late subscriber gets the current document at once.
      const late = await h.openRaw(pc.base, '/streams/orders', { name: 'late' });
      h.defer(() => late.close());
      await late.waitDoc(want);
      assert.equal(late.list('data')[0].id, r.json.id);
      const m = await pc.metrics();
      assert.equal(m['pollcast_publishes_total{outcome="changed"}'], 4);
      assert.equal(m['pollcast_publishes_total{outcome="unchanged"}'], 1);
    });

  await t.step('a PATCH that fails changes nothing: 409 for a test, 422 for an op', async () => {
    const s = await h.openRaw(pc.base, '/streams/orders', { name: 'sub2' });
    h.defer(() => s.close());
    await s.waitEvent('data');
    const before = h.clone(s.doc);
    const id = s.lastId.id;
    let r = await pub(pc, 'PATCH', 'orders', [{ op: 'replace', path: '/total', value: 99 },
      { op: 'test', path: '/total', value: 12 }]);
    assert.equal(r.status, 409, r.body);
    assert.equal(r.headers['content-type'], 'application/problem+json');
    assert.equal(r.json.op, 1);
    r = await pub(pc, 'PATCH', 'orders', [{ op: 'add', path: '/a', value: 1 },
      { op: 'remove', path: '/missing' }]);
    assert.equal(r.status, 422, r.body);
    assert.equal(r.json.op, 1);
    assert.match(r.json.detail, /missing/);
    r = await pub(pc, 'PATCH', 'orders', [{ op: 'add', path: '/a', value: 1 }],
      { headers: { 'Content-Type': 'application/json' } });
    assert.equal(r.status, 415, r.body);
    r = await pub(pc, 'PATCH', 'orders', '[{"op":"add",');
    assert.equal(r.status, 400, r.body);
    r = await pub(pc, 'PUT', 'orders', '{"a": [1, 2,, 3]}');
    assert.equal(r.status, 400, r.body);
    assert.equal(r.json.offset, 12);
    assert.match(r.json.detail, /byte 12/);
    await h.sleep(T(200));
    assert.equal(s.lastId.id, id, 'an event after failed publishes');
    assert.ok(s.hasDoc(before));
    const g = await pub(pc, 'PUT', 'orders', before);
    assert.equal(g.status, 204, 'the document is unchanged');
  });

  await t.step('two publishers racing with If-Match lose no update', async () => {
    const start = { n: 0, a: [], b: [] };
    let r = await pub(pc, 'PUT', 'orders', start);
    assert.equal(r.status, 200);
    const N = h.scaled(25, 8);
    let conflicts = 0;
    const publisher = async (who) => {
      // A real client: it follows the stream to know the current document and version.
      const f = await h.openRaw(pc.base, '/streams/orders', { name: `publisher-${who}` });
      h.defer(() => f.close());
      await f.until((x) => x.doc && x.lastId && x.doc.n !== undefined, T(5000), 'the doc');
      let doc = h.clone(f.doc);
      let id = f.lastId.id;
      for (let i = 0; i < N;) {
        const next = h.clone(doc);
        next.n += 1;
        next[who].push(i);
        const w = await pub(pc, 'PUT', 'orders', next, { headers: { 'If-Match': `"${id}"` } });
        if (w.status === 200) {
          doc = next;
          id = w.json.id;
          i++;
          continue;
        }
        assert.equal(w.status, 412, w.body);
        conflicts++;
        // Someone else wrote: read the version the 412 names from the stream, then redo.
        await f.until((x) => x.lastId.id === w.json.id || !h.idLess(h.parseId(x.lastId.id),
          h.parseId(w.json.id)), T(5000), `version ${w.json.id}`);
        doc = h.clone(f.doc);
        id = f.lastId.id;
      }
    };
    await Promise.all([publisher('a'), publisher('b')]);
    const s = await h.openRaw(pc.base, '/streams/orders', { name: 'check' });
    h.defer(() => s.close());
    const seq = Array.from({ length: N }, (_, i) => i);
    await s.waitDoc({ n: 2 * N, a: seq, b: seq }, T(5000), 'both publishers\' changes');
    h.log(`race: ${2 * N} writes, ${conflicts} conflicts retried`);
    // A stale If-Match is refused, and a PATCH obeys it too.
    r = await pub(pc, 'PATCH', 'orders', [{ op: 'replace', path: '/n', value: 0 }],
      { headers: { 'If-Match': '"0.1"' } });
    assert.equal(r.status, 412);
    r = await pub(pc, 'PATCH', 'orders', [{ op: 'replace', path: '/n', value: 0 }],
      { headers: { 'If-Match': `W/"${s.lastId.id}", "${s.lastId.id}"` } });
    assert.equal(r.status, 200, r.body);
  });

  await t.step('publishers authenticate; subscribers and polled streams cannot publish',
    async () => {
      let r = await pub(pc, 'PUT', 'orders', { x: 1 }, { token: null });
      assert.equal(r.status, 401);
      assert.equal(r.headers['www-authenticate'], 'Bearer');
      r = await pub(pc, 'PUT', 'orders', { x: 1 }, { token: 'wrong-secret' });
      assert.equal(r.status, 401);
      r = await pub(pc, 'PUT', 'orders', { x: 1 }, { token: `${SECRET}x` });
      assert.equal(r.status, 401);
      r = await pub(pc, 'PUT', 'nosuch', { x: 1 });
      assert.equal(r.status, 404);
      r = await h.request('DELETE', `${pc.base}/streams/orders`);
      assert.equal(r.status, 405);
      r = await h.request('POST', `${pc.base}/streams/orders`, { body: '{}' });
      assert.equal(r.status, 405);
    });

  await t.step('bodies over max_body get 413, with or without Content-Length', async () => {
    const big = JSON.stringify({ pad: 'x'.repeat(2000) });
    let r = await pub(pc, 'PUT', 'small', big,
      { headers: { 'Content-Length': String(Buffer.byteLength(big)) } });
    assert.equal(r.status, 413, r.body);
    r = await pub(pc, 'PUT', 'small', big);
    assert.equal(r.status, 413, r.body);
    r = await pub(pc, 'PUT', 'small', { pad: 'x'.repeat(900) });
    assert.equal(r.status, 200, r.body);
    const m = await pc.metrics();
    assert.equal(m['pollcast_requests_rejected_total{reason="too_large"}'], 2);
  });

  await t.step('state_file keeps the last document across a restart', async () => {
    // Text, not a JS value: the integer is beyond doubles and must survive as written.
    let r = await pub(pc, 'PUT', 'kept', '{"kept":[1,2,3],"big":12345678901234567890,"s":"é"}');
    assert.equal(r.status, 200);
    r = await pub(pc, 'PATCH', 'kept', [{ op: 'add', path: '/kept/-', value: 4 }]);
    assert.equal(r.status, 200);
    const file = path.join(dir, 'kept.json');
    assert.equal(fs.readFileSync(file, 'utf8'),
      '{"kept":[1,2,3,4],"big":12345678901234567890,"s":"é"}');
    assert.ok(!fs.existsSync(`${file}.tmp`), 'the temporary file is left behind');
    const e = await pc.stop();
    assert.equal(e.code, 0);
    const pc2 = await h.startPollcast(streamConfig(dir), { name: 'pollcast-restarted' });
    const s = await h.openRaw(pc2.base, '/streams/kept', { name: 'after-restart', keepRaw: true });
    h.defer(() => s.close());
    await s.waitEvent('data');
    assert.match(s.raw, /data: \{"kept":\[1,2,3,4\],"big":12345678901234567890,"s":"é"\}/);
    r = await pub(pc2, 'PATCH', 'kept', [{ op: 'remove', path: '/kept/0' }]);
    assert.equal(r.status, 200, r.body);
    await s.waitEvent('patch');
    assert.equal(s.doc.kept.join(), '2,3,4');
    // A stream without state_file starts empty: no data event.
    const o = await h.openRaw(pc2.base, '/streams/orders', { name: 'orders-after-restart' });
    h.defer(() => o.close());
    await h.sleep(T(300));
    assert.equal(o.count('data'), 0);
  });
});

// Resume across nodes (issue 9): a client reads a stream from node A, disconnects, misses some
// changes, and reconnects to node B with its last id (Last-Event-ID, then ?lastEventId=): it gets
// no fresh snapshot, only the patches it missed, with the ids node A gave them, and they apply
// (fast-json-patch) to the document it held. B serves no subscriber of the topic before the
// reconnection, so the missed patches can only come from the shared history in Redis. An id the
// cluster never gave still gets a fresh data snapshot.
'use strict';

const c = require('./lib');
const { h } = c;
const { assert, T, log } = h;

const INTERVAL = 200;

h.run('cluster.resume', async (t) => {
  const redis = await c.startRedis();
  const up = await h.startUpstream();
  let v = 0;
  const docOf = (n) => ({ v: n, items: Array.from({ length: 5 + (n % 4) }, (_, i) => ({ id: i,
    name: `item${i}`, qty: (n * 7 + i) % 11 })), tag: n % 2 ? 'odd' : 'even' });
  let doc = docOf(v);
  await up.put('/feed', doc);
  const [a, b, cNode] = await c.startNodes(redis, 3, {
    upstreams: { feed: { url: up.url('/feed'), interval: `${INTERVAL}ms` } },
  });
  const book = new c.IdBook();

  // Changes the upstream document and waits until `watcher` (a subscriber that stays) has it.
  const change = async (watcher) => {
    doc = docOf(++v);
    await up.put('/feed', doc);
    await watcher.waitDoc(doc, T(5000), `version ${v}`);
  };

  // A witness stays on A throughout, so that the topic keeps being polled while the client is
  // away, and records which ids the cluster gave.
  const witness = book.watch(await h.openRaw(a.base, '/streams/feed', { name: 'witness@A' }));
  h.defer(() => witness.close());
  await witness.waitDoc(doc, T(8000), 'the first snapshot');

  const first = await t.step('the client reads from node A, then disconnects', async () => {
    const s = book.watch(await h.openRaw(a.base, '/streams/feed', { name: 'client@A' }));
    await s.waitDoc(doc);
    for (let i = 0; i < 3; i++) await change(witness);
    await s.waitDoc(doc);
    assert.equal(s.count('data'), 1);
    assert.equal(s.count('patch'), 3);
    s.close();
    log(`client left A at ${s.lastId.id}`);
    return { id: s.lastId.id, doc: h.clone(s.doc) };
  });

  const missedOn = async (witnessFrom) => {
    for (let i = 0; i < 4; i++) await change(witness);
    return witness.list(null, witnessFrom).filter((e) => e.event === 'patch');
  };

  const second = await t.step('reconnected to node B with Last-Event-ID: only the missed ' +
    'patches, which apply', async () => {
    const mark = witness.events.length;
    const missed = await missedOn(mark);
    const s = book.watch(await h.openRaw(b.base, '/streams/feed', { name: 'client@B',
      headers: { 'Last-Event-ID': first.id }, doc: first.doc, after: first.id }));
    assert.equal(s.status, 200);
    await s.waitDoc(doc, T(5000), 'the current document from the missed patches');
    assert.equal(s.count('data'), 0, 'no fresh snapshot on B');
    assert.deepEqual(s.list('patch').map((e) => e.id), missed.map((e) => e.id),
      'the patches replayed on B are the ones A sent meanwhile, with the same ids');
    assert.deepEqual(s.list('patch').map((e) => e.data), missed.map((e) => e.data),
      'the same patch texts');
    log(`B replayed ${missed.length} patches after ${first.id}: ${missed.map((e) => e.id)}`);
    // It stays live on B.
    await change(witness);
    await s.waitDoc(doc, T(5000), 'a live change on B');
    s.close();
    return { id: s.lastId.id, doc: h.clone(s.doc) };
  });

  await t.step('reconnected to node C with ?lastEventId=: the same', async () => {
    const mark = witness.events.length;
    const missed = await missedOn(mark);
    const s = book.watch(await h.openRaw(cNode.base,
      `/streams/feed?lastEventId=${encodeURIComponent(second.id)}`,
      { name: 'client@C', doc: second.doc, after: second.id }));
    await s.waitDoc(doc, T(5000), 'the current document');
    assert.equal(s.count('data'), 0, 'no fresh snapshot on C');
    assert.deepEqual(s.list('patch').map((e) => e.id), missed.map((e) => e.id));
    s.close();
  });

  await t.step('an id the cluster never gave gets a fresh snapshot', async () => {
    const [epoch, seq] = h.parseId(witness.lastId.id);
    for (const bad of [`${(epoch + 1n).toString(36)}.1`, `${epoch.toString(36)}.${(seq + 1000n)
      .toString(36)}`]) {
      const s = await h.openRaw(b.base, '/streams/feed', { name: `bad ${bad}`,
        headers: { 'Last-Event-ID': bad } });
      const ev = await s.waitEvent('data', T(5000));
      assert.deepEqual(JSON.parse(ev.data), doc, `fresh data after ${bad}`);
      s.close();
    }
  });

  await t.step('no id stood for two documents', async () => book.check());
}, { timeoutMs: 90000 });

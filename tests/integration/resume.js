// Resume: a client that comes back with the id of the last event it saw (Last-Event-ID header,
// or ?lastEventId=) gets exactly the patches it missed when that id is still in the history,
// and a fresh data snapshot otherwise (id too old, expired by age, of another epoch or stream,
// from the future, malformed). Either way it converges; the stream is never refused.
'use strict';

const h = require('./harness');
const { assert, T, log, sleep } = h;

const HISTORY = 8;

h.run('resume', async (t) => {
  const up = await h.startUpstream();
  let v = 0;
  let doc = { v, items: [{ id: 1, n: 'a' }], note: 'start' };
  const docs = new Map(); // version -> document
  await up.put('/r', doc);
  await up.put('/other', { other: true });
  const pc = await h.startPollcast({
    server: { history_events: HISTORY, retry: '100ms', retry_jitter: '100ms' },
    upstreams: {
      r: { url: up.url('/r'), interval: '100ms' },
      other: { url: up.url('/other'), interval: '100ms' },
    },
  });
  const path = '/streams/r';

  // B follows the whole time: the reference for ids and event bytes.
  const b = await h.openRaw(pc.base, path, { name: 'B' });
  h.defer(() => b.close());
  await b.waitDoc(doc);
  docs.set(b.lastId.id, h.clone(doc));

  // One change, waited for until B has it. Returns the id B got for it.
  const change = async () => {
    v++;
    doc = { ...h.clone(doc), v, note: `change ${v}` };
    if (v % 2) doc.items.push({ id: v + 1, n: `item${v}` });
    else doc.items.unshift(doc.items.pop());
    await up.put('/r', doc);
    await b.waitDoc(doc, T(5000), `version ${v}`);
    docs.set(b.lastId.id, h.clone(doc));
    return b.lastId.id;
  };
  // B's patch events after id (exclusive).
  const patchesAfter = (id) => {
    const i = b.events.findIndex((e) => e.id === id);
    assert.ok(i >= 0, `B saw ${id}`);
    return b.events.slice(i + 1).filter((e) => e.event === 'patch');
  };
  // Events a resumed stream got that are not comments: exactly `expected` (id and bytes).
  const assertExactly = (s, expected, what) => {
    const got = s.events.map((e) => `${e.event} ${e.id} ${e.data}`);
    const want = expected.map((e) => `${e.event} ${e.id} ${e.data}`);
    assert.deepEqual(got, want, `${what}: events received`);
  };
  // Waits a little longer to see that nothing else comes.
  const quiet = () => sleep(T(400));

  let a;
  let idA;
  await t.step('A follows three changes, then disconnects', async () => {
    a = await h.openRaw(pc.base, path, { name: 'A' });
    await a.waitDoc(doc);
    for (let i = 0; i < 3; i++) await a.waitDoc(docs.get(await change()));
    idA = a.lastId.id;
    assert.equal(idA, b.lastId.id);
    a.close();
  });
  const docA = h.clone(a.doc);
  for (let i = 0; i < 4; i++) await change();

  await t.step('Last-Event-ID inside the history: exactly the missed patches', async () => {
    const missed = patchesAfter(idA);
    assert.equal(missed.length, 4);
    const s = await h.openRaw(pc.base, path, { name: 'A2', headers: { 'Last-Event-ID': idA },
      doc: docA, after: idA });
    h.defer(() => s.close());
    assert.equal(s.status, 200);
    await s.waitDoc(doc);
    await quiet();
    assertExactly(s, missed, 'resume by header');
    assert.equal(s.retries.length, 1, 'retry: sent on the resumed stream too');
    s.close();
  });

  await t.step('?lastEventId= in the query: the same replay', async () => {
    const s = await h.openRaw(pc.base, `${path}?lastEventId=${encodeURIComponent(idA)}`,
      { name: 'A3', doc: docA, after: idA });
    h.defer(() => s.close());
    await s.waitDoc(doc);
    await quiet();
    assertExactly(s, patchesAfter(idA), 'resume by query');
    s.close();
  });

  await t.step('curl -N with Last-Event-ID two events back: the last two patches', async () => {
    const missed = patchesAfter(idA).slice(2);
    const from = patchesAfter(idA)[1].id;
    const s = new h.CurlStream(pc.base + path, { headers: { 'Last-Event-ID': from },
      doc: docs.get(from), after: from });
    h.defer(() => s.close());
    await s.waitDoc(doc);
    await quiet();
    assertExactly(s, missed, 'curl resume');
    s.close();
  });

  await t.step('Last-Event-ID of the current version: nothing, then the next patch', async () => {
    const cur = b.lastId.id;
    const s = await h.openRaw(pc.base, path, { name: 'cur', headers: { 'Last-Event-ID': cur },
      doc, after: cur });
    h.defer(() => s.close());
    await quiet();
    assert.equal(s.events.length, 0, 'no event for a client that is up to date');
    const next = await change();
    await s.waitDoc(doc);
    assertExactly(s, patchesAfter(cur), 'next patch only');
    assert.equal(s.lastId.id, next);
    s.close();
  });

  await t.step('eventsource reconnects by itself with Last-Event-ID and catches up', async () => {
    const es = new h.EsStream(pc.base + path, { name: 'es' });
    h.defer(() => es.close());
    await es.waitDoc(doc);
    const seen = es.lastId.id;
    const before = es.events.length;
    es.drop();
    await change();
    await change();
    await es.waitDoc(doc, T(8000), 'the document after reconnecting');
    assert.ok(es.requests.length >= 2, 'reconnected');
    assert.equal(es.requests[1]['Last-Event-ID'], seen, 'reconnection sent Last-Event-ID');
    const after = es.events.slice(before);
    assert.deepEqual(after.map((e) => e.event), ['patch', 'patch'],
      'only the two missed patches after reconnecting');
    es.close();
  });

  // Ids of other streams and epochs, and ids that are not ids at all.
  const other = await h.openRaw(pc.base, '/streams/other', { name: 'other' });
  h.defer(() => other.close());
  await other.waitEvent('data');
  const otherId = other.lastId.id;
  other.close();
  const epoch = b.lastId.id.split('.')[0];
  const fresh = async (label, opts, pathQ = path) => {
    const s = await h.openRaw(pc.base, pathQ, { name: label, doc: { stale: true }, ...opts });
    h.defer(() => s.close());
    assert.equal(s.status, 200, `${label}: status`);
    await s.waitDoc(doc, T(5000), `${label}: a fresh snapshot`);
    await quiet();
    assert.deepEqual(s.events.map((e) => e.event), ['data'], `${label}: one data event only`);
    assert.equal(s.events[0].id, b.lastId.id, `${label}: the data event has the current id`);
    s.close();
  };

  await t.step('ids outside the history: a fresh data snapshot', async () => {
    const old = idA;
    // Push idA out of the history (HISTORY patch events are kept).
    for (let i = 0; i < HISTORY + 2; i++) await change();
    const cur = h.parseId(b.lastId.id);
    await Promise.all([
      fresh('too old', { headers: { 'Last-Event-ID': old } }),
      fresh('too old, query', {}, `${path}?lastEventId=${encodeURIComponent(old)}`),
      fresh('other stream', { headers: { 'Last-Event-ID': otherId } }),
      fresh('other epoch', { headers: { 'Last-Event-ID': `1.${cur[1].toString(36)}` } }),
      fresh('future seq',
        { headers: { 'Last-Event-ID': `${epoch}.${(cur[1] + 5n).toString(36)}` } }),
      fresh('seq 0', { headers: { 'Last-Event-ID': `${epoch}.0` } }),
    ]);
  });

  await t.step('malformed ids count as unknown: fresh data, never an error', async () => {
    const bad = ['garbage', 'not an id!', '1.2.3', '..', '.', `${epoch}.`, `.${epoch}`,
      `${epoch.toUpperCase()}.1`, 'zzzzzzzzzzzzzzzzzzzzzzzz.1', `${epoch}.-1`, 'x'.repeat(200),
      '%00', '\u00e9t\u00e9'];
    await Promise.all([
      ...bad.map((id) => fresh(`malformed ${JSON.stringify(id.slice(0, 30))}`,
        { headers: { 'Last-Event-ID': Buffer.from(id, 'utf8').toString('latin1') } })),
      fresh('empty query id', {}, `${path}?lastEventId=`),
      fresh('malformed query id', {}, `${path}?lastEventId=${encodeURIComponent('a b:c')}`),
    ]);
  });

  await t.step('snapshot mode: up to date gets nothing, behind gets one data', async () => {
    const s = await h.openRaw(pc.base, `${path}?mode=snapshot`,
      { name: 'snap-cur', headers: { 'Last-Event-ID': b.lastId.id } });
    h.defer(() => s.close());
    await quiet();
    assert.equal(s.events.length, 0, 'snapshot client already up to date');
    s.close();
    const prev = b.lastId.id;
    await change();
    await fresh('snapshot behind', { headers: { 'Last-Event-ID': prev } }, `${path}?mode=snapshot`);
  });

  await t.step('history_age: an id whose next patch expired gets a fresh snapshot', async () => {
    const pc2 = await h.startPollcast({
      server: { history_age: '1s' },
      upstreams: { r: { url: up.url('/r2'), interval: '100ms' } },
    }, { name: 'pollcast-age' });
    let d = { n: 0 };
    await up.put('/r2', d);
    const f = await h.openRaw(pc2.base, path, { name: 'age-follower' });
    h.defer(() => f.close());
    await f.waitDoc(d);
    const id0 = f.lastId.id;
    d = { n: 1 };
    await up.put('/r2', d);
    await f.waitDoc(d);
    // Within the age: a replay of that one patch.
    const s1 = await h.openRaw(pc2.base, path, { name: 'age-inside',
      headers: { 'Last-Event-ID': id0 }, doc: { n: 0 } });
    h.defer(() => s1.close());
    await s1.waitDoc(d);
    assert.deepEqual(s1.events.map((e) => e.event), ['patch'], 'replayed while young');
    s1.close();
    await sleep(1600);
    const s2 = await h.openRaw(pc2.base, path, { name: 'age-expired',
      headers: { 'Last-Event-ID': id0 }, doc: { n: 0 } });
    h.defer(() => s2.close());
    await s2.waitDoc(d);
    await quiet();
    assert.deepEqual(s2.events.map((e) => e.event), ['data'], 'expired: a fresh snapshot');
    s2.close();
  });

  log(`B saw ${b.count('patch')} patches, ${b.count('data')} data event(s), last id ${b.lastId.id}`);
  assert.equal(b.count('data'), 1, 'B was never reset');
  assert.ok(!b.closed, 'B stream still open');
}, { timeoutMs: 90000 });

// Fencing (issue 9): the owner is frozen with SIGSTOP while its poll is in flight, past its lease;
// another node takes the lease and publishes the next change under the next id; then the old
// owner is continued with SIGCONT and finds, in its socket, the older response it was waiting
// for. It must not append: the Redis stream (read with redis-cli XRANGE) never holds one id with
// two contents, every subscriber on every node (the old owner's included) sees each id stand for
// one document, and the old owner gives up the topic and does not poll it again.
'use strict';

const c = require('./lib');
const { h } = c;
const { assert, T, log } = h;

const INTERVAL = 500;
const LEASE = 1000;

// The pollcast id an entry of the Redis stream carries, and what it says, from the key layout
// of src/store/redis.c: the event id is a field of the entry.
function entryId(e) {
  for (const k of ['id', 'event_id', 'eid']) if (e.fields[k] !== undefined) return e.fields[k];
  return e.entry;
}
function entryContent(e) {
  const { data, event, type } = e.fields;
  return JSON.stringify([event || type || null, data !== undefined ? data : e.fields]);
}

h.run('cluster.fencing', async (t) => {
  const redis = await c.startRedis();
  const up = await h.startUpstream();
  const docOf = (n) => ({ v: n, board: Array.from({ length: 4 }, (_, i) => `${n}-${i}`),
    status: `status ${n}` });
  let doc = docOf(1);
  await up.put('/board', doc);
  const nodes = await c.startNodes(redis, 3, {
    lease: `${LEASE}ms`,
    upstreams: { board: { url: up.url('/board'), interval: `${INTERVAL}ms` } },
  });
  const book = new c.IdBook();
  const subs = new Map();
  for (const n of nodes) {
    const list = [];
    for (let i = 0; i < 3; i++) {
      list.push(book.watch(await h.openRaw(n.base, '/streams/board', { name: `${n.name}/s${i}` })));
    }
    subs.set(n, list);
  }
  const all = () => [...subs.values()].flat();
  h.defer(() => all().forEach((s) => s.close()));
  await Promise.all(all().map((s) => s.waitDoc(doc, T(8000), 'the first snapshot')));

  const owner = await c.waitOwner(nodes);
  const others = nodes.filter((n) => n !== owner);
  log(`owner: ${owner.name} (pid ${owner.pid})`);
  h.defer(() => {
    try {
      process.kill(owner.pid, 'SIGCONT');
    } catch {
      // gone
    }
  });

  await t.step('freeze the owner while its poll is in flight, past its lease', async () => {
    const before = (await up.stats('/board')).count;
    // The next request is answered 300 ms late (within the poll timeout), with whatever document is current then.
    await up.mode('/board', 'normal', { delay_ms: 300, times: 1 });
    await up.waitRequests('/board', before + 1, T(5000), 'the owner\'s next poll');
    c.signal(owner, 'SIGSTOP');
    const stoppedAt = Date.now();
    // The answer the frozen owner will find when it wakes up: version 2.
    doc = docOf(2);
    await up.put('/board', doc);
    await c.waitFor(async () => (await up.stats('/board')).inflight === 0, T(5000),
      'the delayed answer to be sent');
    // What the cluster publishes meanwhile: version 3, under the next id.
    doc = docOf(3);
    await up.put('/board', doc);
    const newOwner = await c.waitOwner(others, { ms: T(LEASE * 4 + 3000) });
    const keptSubs = others.flatMap((n) => subs.get(n));
    await Promise.all(keptSubs.map((s) => s.waitDoc(doc, T(6000), 'version 3 from the new owner')));
    log(`${newOwner.name} took over ${Date.now() - stoppedAt} ms after the SIGSTOP; ` +
      `survivors at ${keptSubs[0].lastId.id}`);
    // Past the lease for sure, then wake the old owner up.
    const frozen = Date.now() - stoppedAt;
    if (frozen < LEASE * 2) await h.sleep(LEASE * 2 - frozen);
    const count = (await up.stats('/board')).count;
    c.signal(owner, 'SIGCONT');
    return count;
  });

  await t.step('the old owner gives the topic up and does not append', async () => {
    await c.waitFor(async () => (await c.topicsOwned(owner)) === 0, T(LEASE + 3000),
      `${owner.name} to own no topic`);
    // Time for anything the old owner might still write.
    await h.sleep(Math.max(LEASE, 4 * INTERVAL));
    let owned = 0;
    for (const n of nodes) owned += await c.topicsOwned(n);
    assert.equal(owned, 1, 'one owner cluster-wide');
    const m = await owner.metrics();
    const cl = Object.entries(m).filter(([k]) => /^pollcast_cluster_/.test(k));
    log(`${owner.name} cluster metrics: ${JSON.stringify(Object.fromEntries(cl))}`);
  });

  await t.step('one change later, every subscriber on every node agrees', async () => {
    doc = docOf(4);
    await up.put('/board', doc);
    await Promise.all(all().map((s) => s.waitDoc(doc, T(8000), 'version 4')));
    book.check();
    for (const n of others) {
      for (const s of subs.get(n)) {
        assert.equal(s.count('data'), 1, `${s.name}: fresh data`);
        c.consecutiveIds(s);
      }
    }
    const oldView = subs.get(owner).map((s) => s.events.map((e) => `${e.event} ${e.id}`));
    log(`the old owner's subscriber saw: ${oldView[0].join(', ')}`);
  });

  await t.step('the Redis stream never holds one id with two contents', async () => {
    const entries = await redis.streamEntries();
    assert.ok(entries.length > 0, 'a Redis stream with the topic\'s events');
    const byId = new Map();
    const twice = [];
    for (const e of entries) {
      const id = entryId(e);
      const content = entryContent(e);
      if (!byId.has(id)) byId.set(id, content);
      else if (byId.get(id) !== content) twice.push(`${id}: ${byId.get(id)} / ${content}`);
    }
    log(`${entries.length} stream entries in ${new Set(entries.map((e) => e.key)).size} ` +
      `stream(s), ${byId.size} distinct ids; fields: ${Object.keys(entries[0].fields)}`);
    assert.deepEqual(twice, [], 'ids written twice with different contents');
    // Every id subscribers saw for a patch is in the stream with that same patch.
    for (const s of all()) {
      for (const ev of s.list('patch')) {
        if (!byId.has(ev.id)) continue; // trimmed, or an id of a local epoch
        const stored = byId.get(ev.id);
        assert.ok(stored.includes(JSON.stringify(ev.data).slice(1, -1)) ||
          stored.includes(ev.data), `${s.name}: patch ${ev.id} differs from the stream's`);
      }
    }
  });
}, { timeoutMs: 90000 });

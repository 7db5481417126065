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

// The pollcast id of an entry of a topic's Redis stream and the frame it holds, from the key
// layout of src/store/redis.c: fields k (kind), s (seq), e (epoch, decimal), f (the SSE frame as
// sent), t (the writer's lease token, "<node_id>:<hex>"). upstream-error and -recovered (s 0)
// have no id.
function entryId(e) {
  const { s, e: epoch } = e.fields;
  assert.ok(s !== undefined && epoch !== undefined, `stream entry without s or e: ${
    JSON.stringify(e.fields)}`);
  if (s === '0') return null;
  return `${BigInt(epoch).toString(36)}.${BigInt(s).toString(36)}`;
}

// The data of an SSE frame.
function frameData(f) {
  return f.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.replace(/^data: ?/, ''))
    .join('\n');
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
    // The next request is answered 300 ms late (within the poll timeout), with whatever
    // document is current then.
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
    c.signal(owner, 'SIGCONT');
  });

  await t.step('the old owner gives the topic up and does not append', async () => {
    const before = await up.stats('/board');
    const started = Date.now();
    await c.waitFor(async () => (await c.topicsOwned(owner)) === 0, T(LEASE + 3000),
      `${owner.name} to own no topic`);
    // Time for anything the old owner might still write.
    await h.sleep(Math.max(LEASE, 4 * INTERVAL));
    let owned = 0;
    for (const n of nodes) owned += await c.topicsOwned(n);
    assert.equal(owned, 1, 'one owner cluster-wide');
    // The old owner learnt that it lost the lease (on its renewal or its fenced append), and
    // polls no more: the upstream still sees one poller.
    const lost = await c.waitLog(owner, /lease lost/, T(3000));
    log(`${owner.name}: ${lost}`);
    const after = await up.stats('/board');
    const n = after.count - before.count;
    const ticks = (Date.now() - started) / INTERVAL;
    const times = after.times_ms.slice(-n);
    const close = times.slice(1).filter((x, i) => x - times[i] < INTERVAL / 2);
    log(`${n} upstream requests in ${ticks.toFixed(1)} ticks after the SIGCONT`);
    assert.ok(n <= ticks + 2, `${n} requests in ${ticks.toFixed(1)} ticks`);
    assert.ok(close.length <= 1, `${close.length} requests closer than ${INTERVAL / 2} ms`);
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
      if (id === null) continue;
      const content = e.fields.f;
      if (!byId.has(id)) byId.set(id, content);
      else if (byId.get(id) !== content) twice.push(`${id}: ${byId.get(id)} / ${content}`);
    }
    log(`${entries.length} stream entries in ${new Set(entries.map((e) => e.key)).size} ` +
      `stream(s), ${byId.size} distinct ids; writers: ${entries.map((e) => e.fields.t
        .split(':')[0]).join(' ')}`);
    assert.deepEqual(twice, [], 'ids written twice with different contents');
    // Every patch any subscriber saw is in the stream, under its id, with the same data.
    for (const s of all()) {
      for (const ev of s.list('patch')) {
        assert.ok(byId.has(ev.id), `${s.name}: patch ${ev.id} is not in the stream`);
        assert.equal(frameData(byId.get(ev.id)), ev.data, `${s.name}: patch ${ev.id}`);
      }
    }
    // Nothing the old owner wrote comes after the first entry of the node that took over.
    const writers = entries.map((e) => e.fields.t.split(':')[0]);
    const firstOld = writers.indexOf(owner.nodeId);
    const firstNew = writers.findIndex((w, i) => i > firstOld && w !== owner.nodeId);
    assert.ok(firstOld >= 0 && firstNew > firstOld, `entries of ${owner.name}, then of the ` +
      `node that took over: ${writers}`);
    const late = writers.slice(firstNew).filter((w) => w === owner.nodeId);
    assert.equal(late.length, 0, `${owner.name} appended ${late.length} entries after the ` +
      `takeover: ${writers.join(' ')}`);
  });
}, { timeoutMs: 90000 });

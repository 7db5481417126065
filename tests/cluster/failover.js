// Failover (issue 9): the node that polls a topic (found through pollcast_cluster_topics_owned on
// /metrics) is killed with SIGKILL, so it releases nothing. Another node with subscribers polls
// within lease + one interval, and goes on with the same epoch and the next seq: subscribers on
// the surviving nodes see neither a fresh data event nor a gap nor a duplicate id, and their
// documents follow the upstream. The killed node's subscribers reconnect to a survivor with
// their last id and get only what they missed. Afterwards, one poller again.
'use strict';

const c = require('./lib');
const { h } = c;
const { assert, T, log } = h;

const INTERVAL = 300;
const LEASE = 1000;
const PER_NODE = h.scaled(10, 4);

h.run('cluster.failover', async (t) => {
  const redis = await c.startRedis();
  const up = await h.startUpstream();
  let v = 0;
  const docOf = (n) => ({ v: n, quotes: Array.from({ length: 6 }, (_, i) => ({ id: i,
    px: ((n + 1) * (i + 3)) % 97 })), state: n % 3 ? 'open' : 'halted' });
  let doc = docOf(v);
  await up.put('/quotes', doc);
  const nodes = await c.startNodes(redis, 3, {
    lease: `${LEASE}ms`,
    upstreams: { quotes: { url: up.url('/quotes'), interval: `${INTERVAL}ms` } },
  });
  const book = new c.IdBook();
  const subs = new Map(nodes.map((n) => [n, []]));
  h.defer(() => [...subs.values()].flat().forEach((s) => s.close()));
  for (const n of nodes) {
    for (let i = 0; i < PER_NODE; i++) {
      subs.get(n).push(book.watch(await h.openRaw(n.base, '/streams/quotes',
        { name: `${n.name}/s${i}` })));
    }
  }
  const all = () => [...subs.values()].flat();
  const change = async (who) => {
    doc = docOf(++v);
    await up.put('/quotes', doc);
    await Promise.all(who.map((s) => s.waitDoc(doc, T(6000), `version ${v}`)));
  };
  await Promise.all(all().map((s) => s.waitDoc(doc, T(8000), 'the first snapshot')));
  for (let i = 0; i < 3; i++) await change(all());

  const owner = await t.step('find the owner through pollcast_cluster_topics_owned', async () => {
    const o = await c.waitOwner(nodes);
    log(`owner: ${o.name} (pid ${o.pid})`);
    return o;
  });
  const survivors = nodes.filter((n) => n !== owner);
  const orphans = subs.get(owner);
  const kept = survivors.flatMap((n) => subs.get(n));

  await t.step('kill -9 the owner: another node polls within lease + one interval', async () => {
    const before = (await up.stats('/quotes')).count;
    process.kill(owner.pid, 'SIGKILL');
    const killedAt = Date.now();
    await h.within(owner.exited, T(5000), 'the owner to die');
    // A change the survivors can only learn from the new owner.
    doc = docOf(++v);
    await up.put('/quotes', doc);
    await up.waitRequests('/quotes', before + 1, T(LEASE + INTERVAL + 5000), 'after the kill');
    const took = Date.now() - killedAt;
    log(`first upstream request after the kill: ${took} ms (lease ${LEASE} + interval ` +
      `${INTERVAL} ms)`);
    assert.ok(took <= T(LEASE + INTERVAL + 600), `the next poll came ${took} ms after the ` +
      `kill; lease + one interval is ${LEASE + INTERVAL} ms`);
    await Promise.all(kept.map((s) => s.waitDoc(doc, T(6000), 'the change after the kill')));
  });

  const newOwner = await t.step('one survivor owns the topic now', async () => {
    const o = await c.waitOwner(survivors);
    log(`new owner: ${o.name}`);
    return o;
  });

  await t.step('subscribers of the survivors: no fresh data, no gap, no duplicate id',
    async () => {
      for (let i = 0; i < 3; i++) await change(kept);
      for (const s of kept) {
        assert.equal(s.count('data'), 1, `${s.name}: a fresh data event after the failover`);
        const ids = c.consecutiveIds(s);
        assert.ok(ids.length >= 8, `${s.name}: ${ids.length} events`);
        assert.ok(!s.closed, `${s.name}: stream ended`);
      }
      log(`survivors went from ${kept[0].events[0].id} to ${kept[0].lastId.id} without a break`);
    });

  await t.step('the dead node\'s subscribers resume on a survivor with only what they missed',
    async () => {
      for (const s of orphans) assert.ok(s.closed, `${s.name}: stream cut by the kill`);
      const resumed = [];
      for (const s of orphans) {
        const r = book.watch(await h.openRaw(newOwner.base, '/streams/quotes', {
          name: `${s.name}->${newOwner.name}`, headers: { 'Last-Event-ID': s.lastId.id },
          doc: s.doc, after: s.lastId.id }));
        subs.get(newOwner).push(r);
        resumed.push(r);
      }
      await Promise.all(resumed.map((s) => s.waitDoc(doc, T(6000), 'the current document')));
      for (const s of resumed) {
        assert.equal(s.count('data'), 0, `${s.name}: fresh snapshot instead of the missed patches`);
        assert.ok(s.count('patch') >= 1, `${s.name}: missed patches`);
      }
    });

  await t.step('one poller again after the failover', async () => {
    const before = await up.stats('/quotes');
    const started = Date.now();
    await h.sleep(3000);
    const after = await up.stats('/quotes');
    const n = after.count - before.count;
    const ticks = (Date.now() - started) / INTERVAL;
    const times = after.times_ms.slice(-n);
    const close = times.slice(1).filter((x, i) => x - times[i] < INTERVAL / 2);
    log(`${n} requests in ${ticks.toFixed(1)} ticks after the failover`);
    assert.ok(n <= ticks + 2, `${n} requests in ${ticks.toFixed(1)} ticks`);
    assert.ok(close.length === 0, `${close.length} requests closer than ${INTERVAL / 2} ms`);
    book.check();
  });
}, { timeoutMs: 90000 });

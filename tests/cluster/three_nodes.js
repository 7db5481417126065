// Three nodes, one upstream (issue 9): subscribers spread over three pollcast nodes that share
// one Redis all converge to the upstream's last document through a run of varied changes; every
// node gives the same id to the same document; the upstream sees one request per tick (one
// poller cluster-wide, a handover allowed one extra request), not one per node; one node owns
// the topic; and Redis work per change does not grow with the number of subscribers.
'use strict';

const c = require('./lib');
const { h } = c;
const { assert, T, log } = h;

const INTERVAL = 300; // ms
const SECS = Number(process.env.POLLCAST_CLUSTER_SECS || 15);
// Not scaled under ASan: 120 subscribers are light, and the Redis check needs many more
// subscribers than Redis commands per change.
const PER_NODE = 40;

h.run('cluster.three_nodes', async (t) => {
  const redis = await c.startRedis();
  const up = await h.startUpstream();
  const r = h.rng(9);
  const docOf = (v) => ({
    v,
    prices: Object.fromEntries(['A', 'B', 'C', 'D', 'E'].map((k) => [k, r.int(10000) / 100])),
    orders: Array.from({ length: 3 + r.int(8) }, (_, i) => ({ id: v * 10 + i, qty: r.int(9) })),
    note: r() < 0.5 ? r.str(8) : undefined,
  });
  let doc = h.clone(docOf(0));
  await up.put('/prices', doc);
  const nodes = await c.startNodes(redis, 3, {
    server: { max_subscribers: 1000 },
    upstreams: { prices: { url: up.url('/prices'), interval: `${INTERVAL}ms` } },
  });

  const book = new c.IdBook();
  const subs = [];
  h.defer(() => subs.forEach((s) => s.close()));
  await t.step(`${PER_NODE} raw subscribers and one EventSource on each of 3 nodes`, async () => {
    const opened = [];
    for (const n of nodes) {
      for (let i = 0; i < PER_NODE; i++) {
        opened.push(h.openRaw(n.base, '/streams/prices', { name: `${n.name}/s${i}` })
          .then((s) => subs.push(book.watch(s))));
      }
      subs.push(book.watch(new h.EsStream(`${n.base}/streams/prices`, { name: `${n.name}/es` })));
    }
    await Promise.all(opened);
    await Promise.all(subs.map((s) => s.waitDoc(doc, T(10000), 'the first snapshot')));
  });

  const owner = await t.step('exactly one node owns the topic', async () => {
    const o = await c.waitOwner(nodes);
    log(`owner: ${o.name}`);
    return o;
  });

  const result = await t.step(`${SECS} s of changes; the upstream counts its requests`,
    async () => {
      const before = await up.stats('/prices');
      const cmds0 = await redis.commandStats();
      const started = Date.now();
      let changes = 0;
      while (Date.now() - started < SECS * 1000) {
        doc = h.clone(docOf(++changes));
        await up.put('/prices', doc);
        await h.sleep(INTERVAL * 2);
      }
      const elapsed = Date.now() - started;
      await Promise.all(subs.map((s) => s.waitDoc(doc, T(8000), 'the last document')));
      const after = await up.stats('/prices');
      const cmds1 = await redis.commandStats();
      return { before, after, elapsed, changes, cmds0, cmds1 };
    });

  await t.step('every subscriber on every node converged with the same ids', async () => {
    book.check();
    const last = subs[0].lastId.id;
    for (const s of subs) {
      assert.equal(s.count('data'), 1, `${s.name}: only the first snapshot`);
      c.consecutiveIds(s);
      assert.equal(s.lastId.id, last, `${s.name}: last id`);
      assert.equal(s.closed || false, false, `${s.name}: stream still open`);
    }
    log(`${subs.length} subscribers at ${last}; ${book.docs.size} distinct ids seen`);
  });

  await t.step('the upstream saw one request per tick, one poller cluster-wide', async () => {
    const { before, after, elapsed } = result;
    const requests = after.count - before.count;
    const ticks = elapsed / INTERVAL;
    const times = after.times_ms.slice(-requests);
    const gaps = times.slice(1).map((v, i) => v - times[i]);
    // A late tick followed by one on time makes one short gap; three pollers would make one
    // in every tick.
    const close = gaps.filter((g) => g < INTERVAL / 3);
    log(`${requests} requests in ${elapsed} ms (${ticks.toFixed(1)} ticks of ${INTERVAL} ms); ` +
      `gaps p0 ${Math.min(...gaps)} p50 ${h.percentile(gaps, 50)} max ${Math.max(...gaps)} ms; ` +
      `${close.length} under ${INTERVAL / 3} ms`);
    assert.ok(requests <= ticks + 2, `${requests} requests in ${ticks.toFixed(1)} ticks: more ` +
      'than one poller');
    const least = h.ASAN || h.WRAPPER.length ? 0.4 : 0.6;
    assert.ok(requests >= ticks * least, `only ${requests} requests in ${ticks.toFixed(1)} ticks`);
    assert.ok(close.length <= 2, `${close.length} requests less than ${INTERVAL / 3} ms after ` +
      `the previous one: ${JSON.stringify(close)}`);
    assert.ok(after.max_inflight <= 1, `max_inflight ${after.max_inflight}`);
  });

  await t.step('one owner, still; Redis work per change does not grow with subscribers',
    async () => {
      let owned = 0;
      let pollers = 0;
      for (const n of nodes) {
        owned += await c.topicsOwned(n);
        pollers += (await n.metrics()).pollcast_pollers;
      }
      assert.equal(owned, 1, 'topics owned summed over the nodes');
      assert.equal(pollers, 1, 'pollcast_pollers summed over the nodes');
      assert.equal(await c.topicsOwned(owner), 1, `${owner.name} still owns the topic`);
      const { cmds0, cmds1, changes } = result;
      const diff = {};
      let total = 0;
      for (const [k, v] of Object.entries(cmds1)) {
        const d = v - (cmds0[k] || 0);
        if (d > 0) diff[k] = d;
        total += d > 0 ? d : 0;
      }
      log(`Redis commands during the changes: ${JSON.stringify(diff)}; ${total} for ${changes} ` +
        `changes and ${subs.length} subscribers (${(total / changes).toFixed(1)} per change)`);
      assert.ok(total / changes < subs.length / 2, `${(total / changes).toFixed(1)} Redis ` +
        `commands per change for ${subs.length} subscribers`);
    });
}, { timeoutMs: 120000 });

// Redis restart (issue 9): redis-server is killed (SIGKILL, no persistence: it comes back empty)
// and restarted on the same port while three nodes stream to their subscribers. Streams stay
// open; subscribers follow changes made while Redis is down (each node then polls for its own
// subscribers) and after it is back; each transition costs a subscriber at most one fresh data;
// no id ever stands for two documents (an emptied Redis means a new epoch, never reused ids);
// each node logs both transitions, counts them in its metrics and says its state on /readyz.
'use strict';

const c = require('./lib');
const { h } = c;
const { assert, T, log } = h;

const INTERVAL = 300;
const LEASE = 1000;
const PER_NODE = h.scaled(6, 3);

// The pollcast_cluster_* samples of a node.
async function clusterMetrics(pc) {
  const m = await pc.metrics();
  return Object.fromEntries(Object.entries(m).filter(([k]) => k.startsWith('pollcast_cluster_')));
}

function changed(a, b) {
  const out = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (a[k] !== b[k]) out[k] = [a[k], b[k]];
  }
  return out;
}

h.run('cluster.redis_restart', async (t) => {
  const redis = await c.startRedis();
  const up = await h.startUpstream();
  let v = 0;
  const docOf = (n) => ({ v: n, lines: Array.from({ length: 3 + (n % 3) }, (_, i) => ({ id: i,
    text: `line ${i} of version ${n}` })) });
  let doc = docOf(v);
  await up.put('/news', doc);
  const nodes = await c.startNodes(redis, 3, {
    lease: `${LEASE}ms`,
    upstreams: { news: { url: up.url('/news'), interval: `${INTERVAL}ms` } },
  });
  const book = new c.IdBook();
  const subs = [];
  h.defer(() => subs.forEach((s) => s.close()));
  for (const n of nodes) {
    for (let i = 0; i < PER_NODE; i++) {
      subs.push(book.watch(await h.openRaw(n.base, '/streams/news', { name: `${n.name}/s${i}` })));
    }
  }
  const change = async (what) => {
    doc = docOf(++v);
    await up.put('/news', doc);
    await Promise.all(subs.map((s) => s.waitDoc(doc, T(10000), what)));
  };
  await Promise.all(subs.map((s) => s.waitDoc(doc, T(8000), 'the first snapshot')));
  await change('a change with Redis up');
  const firstEpoch = h.parseId(subs[0].lastId.id)[0];
  await c.waitOwner(nodes);

  const healthy = await t.step('healthy: /readyz and metrics of each node', async () => {
    const out = new Map();
    for (const n of nodes) {
      const r = await c.readyz(n);
      assert.equal(r.status, 200, `${n.name} /readyz: ${r.body}`);
      assert.equal(r.json.cluster, 'up', `${n.name} /readyz: ${r.body}`);
      assert.equal(r.json.node, n.nodeId, `${n.name} /readyz: ${r.body}`);
      out.set(n, { readyz: r.body, metrics: await clusterMetrics(n), lines: n.stderrLines.length });
    }
    log(`/readyz healthy: ${out.get(nodes[0]).readyz}`);
    return out;
  });

  await t.step('kill redis-server: streams stay open, changes still arrive', async () => {
    await redis.stop('SIGKILL');
    for (let i = 0; i < 2; i++) await change(`change ${i + 1} while Redis is down`);
    for (const s of subs) assert.ok(!s.closed, `${s.name}: stream closed while Redis was down`);
  });

  await t.step('each node logged and counted the loss; /readyz says so', async () => {
    for (const n of nodes) {
      const was = healthy.get(n);
      const line = await c.waitFor(() => c.logLines(n, /cluster: redis unreachable/, was.lines)[0],
        T(8000), `${n.name}: the "redis unreachable" line`);
      log(`${n.name}: ${line}`);
      assert.match(line,
        / warn cluster: redis unreachable; serving alone \(degraded\) .*node=node-/);
      const m = await clusterMetrics(n);
      log(`${n.name} metrics changed: ${JSON.stringify(changed(was.metrics, m))}`);
      assert.equal(m['pollcast_cluster_transitions_total{to="degraded"}'],
        was.metrics['pollcast_cluster_transitions_total{to="degraded"}'] + 1, 'to degraded');
      assert.equal(m.pollcast_cluster_redis_connected, 0, 'redis_connected');
      assert.equal(m['pollcast_cluster_state{state="degraded"}'], 1, 'state degraded');
      const r = await c.readyz(n);
      log(`${n.name} /readyz while Redis is down: ${r.status} ${r.body}`);
      assert.equal(r.status, 200, 'a degraded node still serves');
      assert.equal(r.json.cluster, 'degraded', `${n.name}: /readyz ${r.body}`);
    }
  });

  await t.step('restart redis-server on the same port (empty): the nodes rejoin', async () => {
    await redis.start();
    for (const n of nodes) {
      const r = await c.waitFor(async () => {
        const x = await c.readyz(n);
        return x.json && x.json.cluster === 'up' ? x : null;
      }, T(20000), `${n.name}: /readyz "cluster":"up" again`);
      assert.equal(r.body, healthy.get(n).readyz);
      const line = await c.waitFor(() => c.logLines(n, /cluster: redis is back; rejoining/,
        healthy.get(n).lines)[0], T(5000), `${n.name}: the "redis is back" line`);
      log(`${n.name}: ${line}`);
      const m = await clusterMetrics(n);
      const was = healthy.get(n).metrics;
      assert.equal(m['pollcast_cluster_transitions_total{to="up"}'],
        was['pollcast_cluster_transitions_total{to="up"}'] + 1, 'to up');
      assert.equal(m.pollcast_cluster_redis_connected, 1, 'redis_connected');
    }
    await c.waitOwner(nodes, { ms: T(10000) });
  });

  await t.step('after the return: every subscriber converges, streams open, one poller',
    async () => {
      for (let i = 0; i < 2; i++) await change(`change ${i + 1} after Redis is back`);
      for (const s of subs) {
        assert.ok(!s.closed, `${s.name}: stream closed`);
        assert.ok(s.count('data') <= 3, `${s.name}: ${s.count('data')} data events for two ` +
          'transitions');
      }
      const lastEpoch = h.parseId(subs[0].lastId.id)[0];
      assert.notEqual(lastEpoch, firstEpoch, 'an emptied Redis starts a new epoch');
      const ids = new Set(subs.map((s) => s.lastId.id));
      assert.equal(ids.size, 1, `every node gives the same id again: ${[...ids]}`);
      book.check();
      const before = await up.stats('/news');
      await h.sleep(2000);
      const after = await up.stats('/news');
      const n = after.count - before.count;
      const times = after.times_ms.slice(-n);
      const close = times.slice(1).filter((x, i) => x - times[i] < INTERVAL / 2);
      log(`${n} upstream requests in 2 s after the return; data events per subscriber: ` +
        `${[...new Set(subs.map((s) => s.count('data')))]}`);
      assert.ok(close.length <= 1, `${close.length} requests closer than ${INTERVAL / 2} ms: ` +
        'one poller cluster-wide again (one handover allowed)');
      for (const node of nodes) {
        const diff = changed(healthy.get(node).metrics, await clusterMetrics(node));
        log(`${node.name} metrics since healthy: ${JSON.stringify(diff)}`);
      }
    });
}, { timeoutMs: 120000 });

// Refresh in cluster mode (issue 12, section 2): two nodes and a real redis-server; only the node
// holding a topic's lease polls it, and a load balancer may send POST /streams/NAME/refresh to
// either. A refresh on the node that does not poll is passed on through Redis (PUBLISH on
// pollcast:refresh:<db>, store/redis.c) and makes the owner fetch at once: the upstream gets one
// more request and the subscribers the new document well before the next tick (interval 30 s),
// whether the non-owner serves the stream itself or not. 50 concurrent refreshes on the non-owner
// while the upstream takes 400 ms cost one request per 400 ms of burst at most, never two in
// flight. A refresh on the owner polls there. With Redis gone, the answer says so
// ("forwarded":false, "cluster":"degraded") and the node, polling alone, refreshes itself.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const c = require('../cluster/lib');
const { h } = c;
const { assert, T } = h;
const { SECRET, pub } = require('./lib');

h.run('push.cluster_refresh', async (t) => {
  const dir = h.tmpDir();
  const tokenFile = path.join(dir, 'publisher.token');
  fs.writeFileSync(tokenFile, `${SECRET}\n`);
  const redis = await c.startRedis();
  const up = await h.startUpstream();
  await up.put('/r', { r: 1 });
  const config = (id) => c.nodeConfig(redis, id, {
    upstreams: { r: { url: up.url('/r'), interval: '30s', publish_token_file: tokenFile } },
  });
  const a = await h.startPollcast(config('node-a'), { name: 'node-a' });
  const b = await h.startPollcast(config('node-b'), { name: 'node-b' });
  await c.waitReady(a);
  await c.waitReady(b);
  const refresh = (pc) => pub(pc, 'POST', 'r/refresh', '');
  const count = async () => (await up.stats('/r')).count;

  // Only node A serves r: it takes the lease and polls; node B has no topic for it at all.
  const sa = await h.openRaw(a.base, '/streams/r', { name: 'sub-a' });
  h.defer(() => sa.close());
  await sa.waitDoc({ r: 1 });
  assert.equal(await c.waitOwner([a, b]), a, 'node A polls r');

  let version = 1;
  await t.step('a refresh on the node that does not poll reaches the one that does', async () => {
    for (let i = 0; i < 3; i++) {
      const before = await count();
      await up.put('/r', { r: ++version });
      const started = Date.now();
      const r = await refresh(b);
      assert.equal(r.status, 202, r.body);
      assert.deepEqual(r.json, { refreshed: 0, forwarded: true });
      await sa.waitDoc({ r: version }, T(5000), 'the refreshed document (interval 30 s)');
      const ms = Date.now() - started;
      h.log(`refresh on node B (no topic): the document reached node A's subscriber in ${ms} ms`);
      assert.ok(ms < T(3000), `${ms} ms`);
      await h.sleep(T(200));
      assert.equal(await count(), before + 1, 'one upstream request per refresh');
    }
    const m = await a.metrics();
    assert.ok(c.metricSum(m, 'pollcast_cluster_refresh_received_total') >= 3);
    assert.ok(c.metricSum(await b.metrics(), 'pollcast_cluster_refresh_forwarded_total') >= 3);
  });

  const sb = await h.openRaw(b.base, '/streams/r', { name: 'sub-b' });
  h.defer(() => sb.close());
  await sb.waitDoc({ r: version });

  await t.step('50 concurrent refreshes on the non-owner: coalesced', async () => {
    assert.equal(await c.waitOwner([a, b]), a, 'node A still polls r');
    await up.put('/r', { r: ++version });
    await up.mode('/r', 'normal', { delay_ms: 400 });
    const before = await up.stats('/r');
    const sent0 = c.metricSum(await b.metrics(), 'pollcast_cluster_refresh_forwarded_total');
    const started = Date.now();
    const answers = await Promise.all(Array.from({ length: 50 }, () => refresh(b)));
    const burstMs = Date.now() - started;
    for (const r of answers) {
      assert.equal(r.status, 202, r.body);
      assert.deepEqual(r.json, { refreshed: 0, forwarded: true });
    }
    await sa.waitDoc({ r: version }, T(5000), 'the refreshed document on node A');
    await sb.waitDoc({ r: version }, T(5000), 'the refreshed document on node B');
    const ms = Date.now() - started;
    await h.sleep(T(800)); // any request the burst started has ended
    const after = await up.stats('/r');
    const extra = after.count - before.count;
    const sent = c.metricSum(await b.metrics(), 'pollcast_cluster_refresh_forwarded_total') - sent0;
    h.log(`50 refreshes on node B in ${burstMs} ms: ${sent} PUBLISH(es), ${extra} upstream ` +
      `request(s), max in flight ${after.max_inflight}, both subscribers had the document after ` +
      `${ms} ms`);
    assert.ok(sent >= 1 && sent <= 50, `${sent} PUBLISHes`);
    assert.equal(after.max_inflight, 1, 'never two upstream requests in flight');
    assert.ok(extra >= 1, 'a refresh polled');
    assert.ok(extra <= 1 + Math.floor(burstMs / 400), `${extra} requests for 50 refreshes`);
    await up.mode('/r', 'normal');
  });

  await t.step('a refresh on the owner polls there', async () => {
    const before = await count();
    await up.put('/r', { r: ++version });
    const r = await refresh(a);
    assert.equal(r.status, 202, r.body);
    assert.deepEqual(r.json, { refreshed: 1, forwarded: true });
    await sb.waitDoc({ r: version }, T(5000), 'the refreshed document on node B');
    await h.sleep(T(200));
    assert.equal(await count(), before + 1, 'one upstream request');
  });

  await t.step('Redis gone: the answer says so and the node refreshes itself', async () => {
    await redis.stop('SIGKILL');
    await c.waitFor(async () => (await c.readyz(b)).json.cluster === 'degraded', T(15000),
      'node B to notice');
    // Degraded, node B polls r alone (a first poll of its own epoch); then it is refreshed.
    await c.waitFor(async () => (await refresh(b)).json.refreshed === 1, T(5000),
      'node B to poll r alone');
    await h.sleep(T(600));
    const before = await count();
    await up.put('/r', { r: ++version });
    const r = await refresh(b);
    assert.equal(r.status, 202, r.body);
    assert.deepEqual(r.json, { refreshed: 1, forwarded: false, cluster: 'degraded' });
    await sb.waitDoc({ r: version }, T(5000), 'the refreshed document on node B');
    await h.sleep(T(200));
    assert.ok(await count() >= before + 1, 'node B polled');
  });
});

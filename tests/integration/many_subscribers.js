// 2,000 concurrent subscribers on one upstream (raw node:http SSE clients, cheaper than
// eventsource at this count) all get the snapshot and converge through every change; the
// upstream still sees one request per tick; when they leave, the subscriber gauge returns to 0
// (a stream waiting for events notices that its client left at its next writes: keepalive is
// 1 s here).
'use strict';

const fs = require('node:fs');
const h = require('./harness');
const { assert, T, log } = h;

const N = h.scaled(2000, 300);
const CHANGES = 5;
const INTERVAL = 250;
const CONNECT_BATCH = 200;

// The soft limit of open files of this process (each client is a descriptor).
function fdLimit() {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
  return !m || m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

h.run('many_subscribers', async (t) => {
  // node raises its soft limit to the hard one at start; a hard limit too low is a setup error.
  assert.ok(fdLimit() >= N + 200, `open files limit ${fdLimit()} is too low for ${N} ` +
    'clients: raise it (ulimit -n)');
  const up = await h.startUpstream();
  const r = h.rng(7);
  const docOf = (v) => ({
    v,
    prices: Object.fromEntries(['A', 'B', 'C', 'D'].map((k) => [k, Math.round(r() * 1e4) / 100])),
    orders: Array.from({ length: 20 }, (_, i) => ({ id: v * 3 + i, qty: r.int(9) })),
  });
  let doc = docOf(0);
  await up.put('/many', doc);
  const pc = await h.startPollcast({
    server: { max_connections: N + 500, max_subscribers: N + 100, listen_backlog: 4096,
      keepalive: '1s' },
    upstreams: { many: { url: up.url('/many'), interval: `${INTERVAL}ms` } },
  });

  const subs = [];
  h.defer(() => subs.forEach((s) => s.close()));
  await t.step(`${N} subscribers connect and get the snapshot`, async () => {
    const started = Date.now();
    for (let i = 0; i < N; i += CONNECT_BATCH) {
      const batch = [];
      for (let k = i; k < Math.min(N, i + CONNECT_BATCH); k++) {
        batch.push(h.openRaw(pc.base, '/streams/many', { name: `s${k}` }).then((s) => {
          subs.push(s);
          return s.waitDoc(doc, T(20000), 'the first snapshot');
        }));
      }
      await Promise.all(batch);
    }
    log(`${N} subscribers connected and got the snapshot in ${Date.now() - started} ms`);
    const m = await pc.metrics();
    assert.equal(m.pollcast_subscribers, N, 'subscribers gauge');
    assert.equal(m.pollcast_pollers, 1, 'one poller');
    for (const s of subs) assert.equal(s.status, 200, `${s.name}: status`);
  });

  const before = await up.stats('/many');
  const started = Date.now();
  await t.step(`${CHANGES} changes reach every subscriber`, async () => {
    for (let v = 1; v <= CHANGES; v++) {
      doc = docOf(v);
      const put = Date.now();
      await up.put('/many', doc);
      await Promise.all(subs.map((s) => s.waitDoc(doc, T(20000), `version ${v}`)));
      log(`version ${v} reached all ${N} subscribers ${Date.now() - put} ms after the PUT`);
    }
  });
  const elapsed = Date.now() - started;

  await t.step('all converged, one connection each, one upstream request per tick', async () => {
    const lastId = subs[0].lastId.id;
    for (const s of subs) {
      assert.ok(h.isDeepStrictEqual(s.doc, doc), `${s.name}: document`);
      assert.equal(s.count('data'), 1, `${s.name}: one snapshot`);
      assert.equal(s.count('patch'), CHANGES, `${s.name}: one patch per change`);
      assert.equal(s.lastId.id, lastId, `${s.name}: last id`);
      assert.ok(!s.closed, `${s.name}: stream closed`);
    }
    const after = await up.stats('/many');
    const requests = after.count - before.count;
    log(`${requests} upstream requests in ${elapsed} ms at ${INTERVAL} ms`);
    assert.ok(requests <= elapsed / INTERVAL + 3, `${requests} upstream requests`);
    assert.equal(after.max_inflight, 1);
  });

  await t.step('the subscribers leave; the gauge returns to 0', async () => {
    subs.forEach((s) => s.close());
    const end = Date.now() + T(10000);
    let m;
    for (;;) {
      m = await pc.metrics();
      if (m.pollcast_subscribers === 0 || Date.now() > end) break;
      await h.sleep(100);
    }
    assert.equal(m.pollcast_subscribers, 0, 'subscribers after everyone left');
  });
}, { timeoutMs: 150000 });

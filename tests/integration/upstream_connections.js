// Many pollers on one upstream host keep their connections: with N streams polled every second,
// after the first round the upstream sees requests on the connections it already has, not a
// new TCP (and, for https, TLS) connection for a share of the polls because libcurl's
// connection cache is smaller than the number of pollers.
'use strict';

const h = require('./harness');
const { assert, T, log } = h;

const N = h.scaled(400, 100);
const WINDOW_MS = 5000;

h.run('upstream_connections', async (t) => {
  const up = await h.startUpstream();
  const upstreams = {};
  for (let i = 0; i < N; i++) {
    await up.put(`/c/${i}`, { i, v: 0 });
    upstreams[`c${i}`] = { url: up.url(`/c/${i}`), interval: '1s' };
  }
  const pc = await h.startPollcast({
    server: { max_connections: N + 200, max_subscribers: N + 100 },
    upstreams,
  });
  const subs = [];
  h.defer(() => subs.forEach((s) => s.close()));
  await t.step(`${N} streams of ${N} upstreams start`, async () => {
    for (let i = 0; i < N; i += 50) {
      const batch = [];
      for (let k = i; k < Math.min(N, i + 50); k++) {
        batch.push(h.openRaw(pc.base, `/streams/c${k}`, { name: `c${k}` }).then((s) => {
          subs.push(s);
          return s.waitDoc({ i: k, v: 0 }, T(20000), 'the first snapshot');
        }));
      }
      await Promise.all(batch);
    }
    const m = await pc.metrics();
    assert.equal(m.pollcast_pollers, N, 'one poller per upstream');
  });

  await t.step('the polls of the next seconds reuse the connections', async () => {
    // One round first, so that every poller has made its first request.
    await new Promise((r) => setTimeout(r, 1500));
    const before = (await h.requestJson('GET', up.url('/_control/stats'))).json;
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const after = (await h.requestJson('GET', up.url('/_control/stats'))).json;
    const polls = after.total - before.total;
    const opened = after.connections - before.connections;
    log(`${polls} polls in ${WINDOW_MS} ms on ${opened} new connections ` +
      `(${after.connections} in all for ${N} pollers)`);
    assert.ok(polls >= N * (WINDOW_MS / 1000) * 0.6, `polls went on: ${polls}`);
    // A poll may still find its connection closed by the server now and then; a cache smaller
    // than the pollers makes it a steady share of every second's polls.
    assert.ok(opened <= Math.max(5, polls * 0.02),
      `${opened} new upstream connections for ${polls} polls: connections are not kept`);
  });
}, { timeoutMs: 120000 });

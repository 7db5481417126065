// Refresh on demand (issue 12, section 2): POST /streams/NAME/refresh makes the poller of a
// polled stream fetch now instead of at its next tick (an interval of a minute here), coalesced:
// 100 concurrent refresh calls while the upstream takes 400 ms to answer cause one extra request,
// never two in flight at once (the scripted upstream counts requests and requests in flight).
// Publisher-authenticated: no token 401, a push stream 405, an unknown stream 404.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const h = require('../integration/harness');
const { assert, T } = h;
const { SECRET } = require('./lib');

h.run('push.refresh', async (t) => {
  const dir = h.tmpDir();
  const tokenFile = path.join(dir, 'publisher.token');
  fs.writeFileSync(tokenFile, `${SECRET}\n`);
  const up = await h.startUpstream();
  await up.put('/r', { v: 1 });
  const pc = await h.startPollcast(h.configText({
    upstreams: { r: { url: up.url('/r'), interval: '60s', publish_token_file: tokenFile } },
    extra: `[stream pushed]\npublish_token_file = ${tokenFile}\n`,
  }));
  const refresh = (name, token = SECRET) => h.requestJson('POST',
    `${pc.base}/streams/${name}/refresh`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });

  await t.step('without subscribers there is nothing to refresh', async () => {
    const r = await refresh('r');
    assert.equal(r.status, 202, r.body);
    assert.deepEqual(r.json, { refreshed: 0 });
    assert.equal((await up.stats('/r')).count, 0);
  });

  await t.step('100 concurrent refresh calls: the change arrives now, one request at a time',
    async () => {
      const s = await h.openRaw(pc.base, '/streams/r', { name: 'sub' });
      h.defer(() => s.close());
      await s.waitDoc({ v: 1 });
      await up.put('/r', { v: 2 });
      await up.mode('/r', 'normal', { delay_ms: 400 });
      const before = await up.stats('/r');
      assert.equal(before.count, 1, 'the first poll only');
      const started = Date.now();
      const answers = await Promise.all(Array.from({ length: 100 }, () => refresh('r')));
      const burstMs = Date.now() - started;
      for (const a of answers) {
        assert.equal(a.status, 202, a.body);
        assert.deepEqual(a.json, { refreshed: 1 });
      }
      await s.waitDoc({ v: 2 }, T(5000), 'the refreshed document (the interval is 60 s)');
      await h.sleep(T(600)); // any request the burst started has ended
      const after = await up.stats('/r');
      const extra = after.count - before.count;
      h.log(`100 refreshes in ${burstMs} ms: ${extra} upstream request(s), ` +
        `max in flight ${after.max_inflight}`);
      assert.equal(after.max_inflight, 1, 'never two upstream requests in flight');
      assert.ok(extra >= 1, 'a refresh polled');
      // Coalesced: one request per 400 ms the burst lasted, at most.
      assert.ok(extra <= 1 + Math.floor(burstMs / 400), `${extra} requests for 100 refreshes`);
    });

  await t.step('refresh is for publishers, on polled streams', async () => {
    let r = await refresh('r', null);
    assert.equal(r.status, 401);
    r = await refresh('r', 'not-the-secret');
    assert.equal(r.status, 401);
    r = await refresh('pushed');
    assert.equal(r.status, 405);
    r = await refresh('nosuch');
    assert.equal(r.status, 404);
    r = await h.request('GET', `${pc.base}/streams/r/refresh`);
    assert.equal(r.status, 404);
  });
});

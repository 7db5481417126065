// Push streams in cluster mode (issue 12, section 1): a publish would have to go through the
// fenced store append that polls go through, which is not done yet, so every node refuses
// publishing (and serving) push streams with a clear 501 problem+json instead of serving ids the
// other nodes do not have; polled streams, and their refresh, work as before.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const c = require('../cluster/lib');
const { h } = c;
const { assert } = h;
const { SECRET, pub } = require('./lib');

h.run('push.cluster', async (t) => {
  const dir = h.tmpDir();
  const tokenFile = path.join(dir, 'publisher.token');
  fs.writeFileSync(tokenFile, `${SECRET}\n`);
  const redis = await c.startRedis();
  const up = await h.startUpstream();
  await up.put('/r', { r: 1 });
  const text = c.nodeConfig(redis, 'node-a', {
    upstreams: { r: { url: up.url('/r'), interval: '30s', publish_token_file: tokenFile } },
  }) + `\n[stream orders]\npublish_token_file = ${tokenFile}\n` +
    `state_file = ${path.join(dir, 'orders.json')}\n`;
  const pc = await h.startPollcast(text, { name: 'node-a' });
  await c.waitReady(pc);

  await t.step('PUT, PATCH and GET of a push stream: 501 problem+json', async () => {
    let r = await pub(pc, 'PUT', 'orders', { a: 1 });
    assert.equal(r.status, 501, r.body);
    assert.equal(r.headers['content-type'], 'application/problem+json');
    assert.match(r.json.detail, /cluster mode/);
    r = await pub(pc, 'PATCH', 'orders', [{ op: 'add', path: '/a', value: 1 }]);
    assert.equal(r.status, 501);
    r = await h.requestJson('GET', `${pc.base}/streams/orders`);
    assert.equal(r.status, 501);
    assert.ok(!fs.existsSync(path.join(dir, 'orders.json')), 'no state file written');
  });

  await t.step('a polled stream is served and refreshed by its polling node', async () => {
    const s = await h.openRaw(pc.base, '/streams/r', { name: 'r' });
    h.defer(() => s.close());
    await s.waitDoc({ r: 1 });
    await up.put('/r', { r: 2 });
    await c.waitFor(async () => (await pub(pc, 'POST', 'r/refresh', '')).json.refreshed === 1,
      h.T(5000), 'this node to poll r');
    await s.waitDoc({ r: 2 }, h.T(5000), 'the refreshed document (interval 30 s)');
  });
});

// Push streams' publishers (issue 12, section 1) with [auth]: a JWT whose pollcast.publish claim
// names the stream may publish, a subscriber's token (pollcast.subscribe) may not (403), a
// publisher's token grants no subscription; the stream's static secret works beside [auth]; a
// push stream nobody could publish to, or one with a url, is a config error.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const h = require('../integration/harness');
const { assert } = h;
const { SECRET, AUTH_SECRET, jwt, pub } = require('./lib');

h.run('push.auth', async (t) => {
  const dir = h.tmpDir();
  const tokenFile = path.join(dir, 'publisher.token');
  fs.writeFileSync(tokenFile, `${SECRET}\n`);
  const pc = await h.startPollcast(h.configText({
    extra: `[stream orders]\npublish_token_file = ${tokenFile}\n\n[stream jwtonly]\n\n` +
      `[auth]\nalgorithm = HS256\nsecret = ${AUTH_SECRET}\n`,
  }));
  await t.step('a JWT with pollcast.publish publishes; a subscriber token does not', async () => {
    const subscriber = jwt({ 'pollcast.subscribe': ['orders', 'jwtonly'] });
    const publisher = jwt({ 'pollcast.publish': ['jwtonly'] });
    let r = await pub(pc, 'PUT', 'jwtonly', { a: 1 }, { token: subscriber });
    assert.equal(r.status, 403, r.body);
    assert.match(r.headers['www-authenticate'], /insufficient_scope/);
    r = await pub(pc, 'PUT', 'orders', { a: 1 }, { token: publisher });
    assert.equal(r.status, 403, 'the publish claim names another stream');
    r = await pub(pc, 'PUT', 'jwtonly', { a: 1 }, { token: jwt({ 'pollcast.publish': 'jwtonly' }) });
    assert.equal(r.status, 401, 'a claim that is not an array');
    r = await pub(pc, 'PUT', 'jwtonly', { a: 1 }, { token: publisher });
    assert.equal(r.status, 200, r.body);
    r = await pub(pc, 'PUT', 'orders', { b: 2 });
    assert.equal(r.status, 200, 'the static secret still works beside [auth]');
    // Subscribing needs a subscriber token; a publisher's token grants no subscription.
    const s = await h.openRaw(pc.base, `/streams/jwtonly?access_token=${subscriber}`,
      { name: 'jwt-sub' });
    h.defer(() => s.close());
    await s.waitDoc({ a: 1 });
    const denied = await h.request('GET', `${pc.base}/streams/jwtonly?access_token=${publisher}`);
    assert.equal(denied.status, 403);
  });
  await t.step('a push stream nobody could publish to is a config error', async () => {
    const file = h.writeConfig(h.configText({ extra: '[stream lonely]\n' }));
    const r = await h.runPollcast(['check-config', file]);
    assert.equal(r.code, 2, r.stderr + r.stdout);
    assert.match(r.stderr + r.stdout, /nobody could publish/);
    const file2 = h.writeConfig(h.configText({ extra: '[stream s]\nurl = http://127.0.0.1:1/\n' }));
    const r2 = await h.runPollcast(['check-config', file2]);
    assert.equal(r2.code, 2);
    assert.match(r2.stderr + r2.stdout, /has no url/);
  });
});

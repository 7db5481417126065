// Reload with a changed definition (issue 9 item 8): two nodes serve "feed" with the same
// definition; node A is reloaded (SIGHUP) with another one (another secret header), as in a
// rolling deploy. A's streams of "feed" end; clients that come back to A get the new definition,
// a topic of its own (its own epoch, polled by A); B's subscribers go on with the old topic, ids
// continuing without a fresh data (B takes over its polling if A held it); no id stands for two
// documents anywhere; the upstream sees one poller per definition.
'use strict';

const fs = require('node:fs');
const c = require('./lib');
const { h } = c;
const { assert, T, log } = h;

const INTERVAL = 300;
const LEASE_WAIT = 5000; // ms for the old topic's lease to pass to B when A held it

h.run('cluster.reload', async (t) => {
  const redis = await c.startRedis();
  const up = await h.startUpstream();
  let v = 0;
  const docOf = (n) => ({ v: n, items: Array.from({ length: 4 }, (_, i) => `${n}.${i}`) });
  let doc = docOf(v);
  await up.put('/feed', doc);
  const def = (secret) => ({ upstreams: { feed: { url: up.url('/feed'),
    interval: `${INTERVAL}ms`, header: `Authorization: Bearer ${secret}` } }, lease: '1s' });
  const [a, b] = await c.startNodes(redis, 2, def('old-secret'));
  const book = new c.IdBook();
  const open = async (n, name) => book.watch(await h.openRaw(n.base, '/streams/feed', { name }));
  const onA = await open(a, 'A/old');
  const onB = [await open(b, 'B/old-0'), await open(b, 'B/old-1')];
  const all = [onA, ...onB];
  h.defer(() => all.forEach((s) => s.close()));
  const change = async (who) => {
    doc = docOf(++v);
    await up.put('/feed', doc);
    await Promise.all(who.map((s) => s.waitDoc(doc, T(6000), `version ${v}`)));
  };
  await Promise.all(all.map((s) => s.waitDoc(doc, T(8000), 'the snapshot')));
  await change(all);
  const owner = await c.waitOwner([a, b]);
  log(`owner of the old definition: ${owner.name}`);

  await t.step('SIGHUP node A with a changed definition: A\'s streams of feed end', async () => {
    fs.writeFileSync(a.configFile, c.nodeConfig(redis, a.nodeId, def('new-secret')));
    process.kill(a.pid, 'SIGHUP');
    await c.waitLog(a, /config reloaded/);
    await onA.until((s) => s.closed, T(5000), 'the end of its stream');
  });

  const fresh = await t.step('a client back on A gets the new definition\'s own topic', async () => {
    const s = await open(a, 'A/new');
    all.push(s);
    await s.waitDoc(doc, T(8000), 'the snapshot of the new topic');
    await c.waitFor(async () => (await c.topicsOwned(a)) === 1 && (await c.topicsOwned(b)) === 1,
      T(LEASE_WAIT), 'A to own the new topic and B the old one');
    assert.notEqual(h.parseId(s.lastId.id)[0], h.parseId(onB[0].lastId.id)[0],
      'the new definition has an epoch of its own');
    return s;
  });

  await t.step('B\'s subscribers go on with the old topic; one poller per definition', async () => {
    const before = await up.stats('/feed');
    const started = Date.now();
    for (let i = 0; i < 3; i++) await change([...onB, fresh]);
    for (const s of onB) {
      assert.equal(s.count('data'), 1, `${s.name}: a fresh data after A's reload`);
      c.consecutiveIds(s);
    }
    assert.equal(fresh.count('data'), 1);
    book.check();
    const seen = await up.stats('/feed');
    assert.equal(seen.headers.authorization.startsWith('Bearer '), true);
    // Two definitions: two pollers, one request per tick each.
    const n = seen.count - before.count;
    const ticks = (Date.now() - started) / INTERVAL;
    log(`${n} upstream requests in ${ticks.toFixed(1)} ticks for two definitions`);
    assert.ok(n <= 2 * ticks + 3, `${n} requests in ${ticks.toFixed(1)} ticks`);
    const keys = await redis.keys();
    assert.equal(keys.filter((k) => k.endsWith(':log')).length, 2, `two topics: ${keys}`);
  });
}, { timeoutMs: 60000 });

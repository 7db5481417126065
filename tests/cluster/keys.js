// Keys and secrets (issue 9): a named upstream with a secret header (header = Authorization:
// Bearer ...) and a forwarded client header, and an ad-hoc upstream whose URL carries a token in
// its query, served by two nodes. Then every key of the Redis database (redis-cli --scan) is read
// back (its name, its value by type: GET, HGETALL, XRANGE, ..., and its DUMP bytes, uncompressed)
// and searched for the secret, the forwarded header values and the token: none may appear in
// clear (nor base64-encoded). Every key must have a TTL, so that abandoned topics vanish. Both
// nodes derive the same keys: two tenants make two topics, a subscriber on either node shares
// the topic of its tenant; a node with another definition of the same name (another secret, as
// in a rolling reload) gets topics of its own and mixes nothing into the others'. A Redis
// password (redis://:PASSWORD@, in the file or POLLCAST_CLUSTER_REDIS) is used and never shown.
'use strict';

const crypto = require('node:crypto');
const c = require('./lib');
const { h } = c;
const { assert, T, log } = h;

const rand = () => crypto.randomBytes(9).toString('hex');

h.run('cluster.keys', async (t) => {
  const SECRET = `S3CRET${rand()}`;
  const TENANTS = [`tenant-${rand()}`, `tenant-${rand()}`];
  const TOKEN = `tok${rand()}`;
  const needles = [SECRET, ...TENANTS, TOKEN];
  const redis = await c.startRedis();
  const up = await h.startUpstream();
  let doc = { v: 1, rows: [1, 2, 3] };
  await up.put('/vault', doc);
  await up.put('/adhoc', { a: 1 });
  const opts = {
    upstreams: { vault: { url: up.url('/vault'), interval: '200ms',
      header: `Authorization: Bearer ${SECRET}`, forward_header: 'X-Tenant' } },
    allow: { url_prefix: `${up.base}/`, cidr: '127.0.0.0/8', interval: '200ms',
      min_interval: '200ms' },
  };
  const nodes = await c.startNodes(redis, 2, opts);
  const adhocUrl = `${up.base}/adhoc?token=${TOKEN}`;
  const subs = [];
  h.defer(() => subs.forEach((s) => s.close()));

  await t.step('subscribers of two tenants on both nodes, and an ad-hoc stream', async () => {
    for (const n of nodes) {
      for (const tenant of TENANTS) {
        subs.push(await h.openRaw(n.base, '/streams/vault', { name: `${n.name}/${tenant}`,
          headers: { 'X-Tenant': tenant } }));
      }
      subs.push(await h.openRaw(n.base, `/proxy?url=${encodeURIComponent(adhocUrl)}`,
        { name: `${n.name}/adhoc` }));
    }
    for (const s of subs) assert.equal(s.status, 200, `${s.name}: ${s.body}`);
    await Promise.all(subs.filter((s) => !/adhoc/.test(s.name))
      .map((s) => s.waitDoc(doc, T(8000), 'the snapshot')));
    await Promise.all(subs.filter((s) => /adhoc/.test(s.name))
      .map((s) => s.waitDoc({ a: 1 }, T(8000), 'the ad-hoc snapshot')));
    doc = { v: 2, rows: [1, 3, 4], secretless: true };
    await up.put('/vault', doc);
    await Promise.all(subs.filter((s) => !/adhoc/.test(s.name))
      .map((s) => s.waitDoc(doc, T(8000), 'a change')));
    const seen = await up.stats('/vault');
    assert.equal(seen.headers.authorization, `Bearer ${SECRET}`, 'the secret reached the upstream');
    assert.ok(TENANTS.includes(seen.headers['x-tenant']), 'the tenant header was forwarded');
    assert.equal((await up.stats('/adhoc')).count > 0, true);
  });

  await t.step('both nodes derive the same topic keys: one owner per topic', async () => {
    let owned = 0;
    for (const n of nodes) owned += await c.topicsOwned(n);
    assert.equal(owned, 3, 'two tenant topics and one ad-hoc topic, each owned once');
    for (const tenant of TENANTS) {
      const ids = subs.filter((s) => s.name.endsWith(tenant)).map((s) => s.lastId.id);
      assert.equal(new Set(ids).size, 1, `${tenant}: the same ids on both nodes: ${ids}`);
    }
  });

  await t.step('a node with another definition for the same name keeps apart', async () => {
    // As during a rolling reload: node-x has a changed definition of "vault" (another secret).
    const before = new Set(await redis.keys());
    const changedOpts = { ...opts, upstreams: { vault: { ...opts.upstreams.vault,
      header: `Authorization: Bearer ${SECRET}-rotated` } } };
    needles.push(`${SECRET}-rotated`);
    const x = await h.startPollcast(c.nodeConfig(redis, 'node-x', changedOpts), { name: 'node-x' });
    x.nodeId = 'node-x';
    await c.waitReady(x);
    const s = await h.openRaw(x.base, '/streams/vault', { name: `node-x/${TENANTS[0]}`,
      headers: { 'X-Tenant': TENANTS[0] } });
    subs.push(s);
    await s.waitDoc(doc, T(8000), 'the snapshot on node-x');
    await c.waitFor(async () => (await c.topicsOwned(x)) === 1, T(5000),
      'node-x to own its own topic');
    const added = (await redis.keys()).filter((k) => !before.has(k));
    log(`keys added by node-x: ${added.join(' ')}`);
    assert.equal(added.length, 3, 'a lease, a snapshot and a stream of its own');
    const old = subs.find((o) => o.name === `${nodes[0].name}/${TENANTS[0]}`);
    assert.notEqual(h.parseId(s.lastId.id)[0], h.parseId(old.lastId.id)[0],
      'the other definition has its own epoch');
    doc = { v: 3, rows: [9] };
    await up.put('/vault', doc);
    await Promise.all([s, old].map((f) => f.waitDoc(doc, T(8000), 'a change on both topics')));
    assert.equal(s.count('data'), 1);
    assert.equal(old.count('data'), 1, 'the old definition\'s subscribers saw nothing of node-x');
  });

  await t.step('no key, value or DUMP holds a secret, a forwarded value or a token', async () => {
    const keys = await redis.keys();
    assert.ok(keys.length >= 3, `${keys.length} keys in Redis`);
    log(`${keys.length} keys: ${keys.slice(0, 12).join(' ')}`);
    const found = [];
    const search = (where, bytes) => {
      for (const n of needles) {
        const forms = [n, Buffer.from(n).toString('base64').replace(/=+$/, ''),
          encodeURIComponent(n)];
        for (const f of forms) if (bytes.includes(Buffer.from(f))) found.push(`${where}: ${n}`);
      }
    };
    const types = {};
    for (const key of keys) {
      search(`key name ${key}`, Buffer.from(key));
      const type = (await redis.cli(['TYPE', key])).trim();
      types[type] = (types[type] || 0) + 1;
      const read = {
        string: ['GET', key],
        hash: ['HGETALL', key],
        stream: ['XRANGE', key, '-', '+'],
        list: ['LRANGE', key, '0', '-1'],
        set: ['SMEMBERS', key],
        zset: ['ZRANGE', key, '0', '-1', 'WITHSCORES'],
      }[type];
      assert.ok(read, `key ${key} of type ${type}`);
      search(`${type} ${key}`, await redis.cli(read, { raw: true }));
      search(`DUMP ${key}`, await redis.cli(['DUMP', key], { raw: true }));
    }
    log(`key types: ${JSON.stringify(types)}`);
    assert.deepEqual(found, [], 'secrets in Redis');
  });

  await t.step('every key has a TTL', async () => {
    const none = [];
    for (const key of await redis.keys()) {
      const ttl = Number((await redis.cli(['PTTL', key])).trim());
      if (!(ttl > 0)) none.push(`${key} (PTTL ${ttl})`);
    }
    assert.deepEqual(none, [], 'keys without a TTL');
  });

  await t.step('a Redis password stays out of logs, /metrics, /readyz and check-config', async () => {
    const PW = `pw${rand()}`;
    const locked = await c.startRedis({ password: PW });
    const ini = c.nodeConfig(locked, 'node-pw', opts);
    assert.ok(ini.includes(PW));
    const file = h.writeConfig(ini, 'password.ini');
    const check = await h.runPollcast(['check-config', file]);
    assert.equal(check.code, 0, check.stderr);
    // The file form, and the environment form that the README recommends.
    const fromFile = await h.startPollcast(ini, { name: 'node-pw' });
    const fromEnv = await h.startPollcast(c.nodeConfig(locked, 'node-pw-env', opts)
      .replace(/^redis = .*$/m, 'redis = redis://127.0.0.1:1/0'), { name: 'node-pw-env',
      env: { POLLCAST_CLUSTER_REDIS: locked.url } });
    for (const n of [fromFile, fromEnv]) {
      const r = await c.waitReady(n);
      assert.equal(r.json.cluster, 'up', `${n.name}: authenticated to Redis: ${r.body}`);
      const s = await h.openRaw(n.base, '/streams/vault', { name: `${n.name}/s`,
        headers: { 'X-Tenant': TENANTS[0] } });
      subs.push(s);
      await s.waitDoc(doc, T(8000), `the snapshot through ${n.name}`);
      const m = await h.request('GET', `${n.base}/metrics`);
      const seen = [['stderr', n.stderr()], ['/metrics', m.body], ['/readyz', r.body],
        ['check-config', check.stdout + check.stderr]].filter(([, text]) => text.includes(PW));
      assert.deepEqual(seen.map(([w]) => w), [], `${n.name}: the Redis password shown`);
    }
    assert.ok((await locked.keys()).length >= 3, 'the nodes wrote to the password-protected Redis');
  });
}, { timeoutMs: 60000 });

// Ids across instances (issue 10, bug 4): three pollcast instances behind one (imagined) load
// balancer serve the same named upstream, and make their topic epochs in the same millisecond
// (POLLCAST_TEST_EPOCH_CLOCK_MS, a fixed clock for tests): their ids still differ, by the random
// bits under the time. A client that read from instance 1 and reconnects to instance 2 or 3 with
// its Last-Event-ID gets a fresh data snapshot, never the other instance's patches, and goes on
// converging there.
'use strict';

const h = require('./harness');
const { assert, T, log } = h;

const RANDOM_BITS = 22n; // HUB_EPOCH_RANDOM_BITS
const BASE_MS = 1735689600000n; // HUB_EPOCH_BASE_MS

h.run('integration.resume_instances', async (t) => {
  const up = await h.startUpstream();
  const versions = [
    { v: 1, items: [{ id: 'a', n: 1 }, { id: 'b', n: 2 }] },
    { v: 2, items: [{ id: 'a', n: 10 }, { id: 'b', n: 2 }] },
    { v: 3, items: [{ id: 'b', n: 2 }, { id: 'c', n: 3 }] },
    { v: 4, items: [{ id: 'c', n: 30 }] },
  ];
  await up.put('/doc', versions[0]);
  const clock = Date.now();
  const cfg = { upstreams: { shared: { url: up.url('/doc'), interval: '200ms' } } };
  const env = { POLLCAST_TEST_EPOCH_CLOCK_MS: String(clock) };
  const pcs = await Promise.all([1, 2, 3].map((i) =>
    h.startPollcast(cfg, { name: `instance${i}`, env })));

  // One watcher per instance, to know what each has published.
  const watchers = [];
  for (const [i, pc] of pcs.entries()) {
    const s = await h.openRaw(pc.base, '/streams/shared', { name: `watcher${i + 1}` });
    h.defer(() => s.close());
    watchers.push(s);
  }
  const client = await h.openRaw(pcs[0].base, '/streams/shared', { name: 'client@1' });
  h.defer(() => client.close());

  await t.step('same millisecond, different epochs', async () => {
    for (const s of [...watchers, client]) await s.waitDoc(versions[0], T(5000));
    const epochs = watchers.map((s) => s.lastId.parsed[0]);
    log(`ids: ${watchers.map((s) => s.lastId.id).join(' ')}`);
    for (const e of epochs) {
      assert.equal(e >> RANDOM_BITS, BigInt(clock) - BASE_MS,
        'the epoch carries the (fixed) millisecond it was made in');
    }
    assert.equal(new Set(epochs.map(String)).size, 3, 'three different epochs');
    assert.equal(client.lastId.parsed[0], epochs[0], 'the client is on instance 1');
  });

  await t.step('the same versions published everywhere (same seqs, different ids)', async () => {
    for (const v of versions.slice(1, 3)) {
      await up.put('/doc', v);
      for (const s of [...watchers, client]) await s.waitDoc(v, T(5000));
    }
    const seqs = watchers.map((s) => s.lastId.parsed[1]);
    assert.deepEqual(seqs, [3n, 3n, 3n], 'every instance at version 3');
    assert.equal(client.count('patch'), 2, 'the client got patches from instance 1');
  });

  await t.step('Last-Event-ID of instance 1 on instances 2 and 3: a fresh data, no patch',
    async () => {
      const last = client.lastId.id;
      const [epoch1] = client.lastId.parsed;
      const older = `${epoch1.toString(36)}.2`;
      client.close();
      for (const [i, id] of [[1, last], [2, last], [1, older], [2, older]]) {
        const s = await h.openRaw(pcs[i].base, '/streams/shared',
          { name: `client@${i + 1} from ${id}`, headers: { 'Last-Event-ID': id },
            doc: versions[2] });
        h.defer(() => s.close());
        assert.equal(s.status, 200);
        await s.until((f) => f.events.length > 0, T(5000), 'a first event');
        assert.equal(s.events[0].event, 'data', `instance ${i + 1} answers ${id} with data`);
        assert.deepEqual(JSON.parse(s.events[0].data), versions[2]);
        assert.notEqual(s.lastId.parsed[0], epoch1, 'ids of this instance from now on');
        await h.sleep(T(300));
        assert.equal(s.count('patch'), 0, 'no patch of another instance');
        s.close();
      }
    });

  await t.step('the moved client converges on its new instance', async () => {
    const s = await h.openRaw(pcs[1].base, '/streams/shared',
      { name: 'moved client', headers: { 'Last-Event-ID': watchers[0].lastId.id },
        doc: versions[2] });
    h.defer(() => s.close());
    await s.until((f) => f.count('data') === 1, T(5000), 'the fresh data');
    await up.put('/doc', versions[3]);
    await s.waitDoc(versions[3], T(5000), 'version 4 by patch');
    assert.equal(s.count('data'), 1);
    assert.ok(s.count('patch') >= 1, 'patches of its new instance');
    s.close();
  });
}, { timeoutMs: 60000 });

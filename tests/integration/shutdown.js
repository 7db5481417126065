// SIGTERM with 500 connected clients while changes flow: pollcast stops accepting, every stream
// ends cleanly (the chunked terminator arrives, no event is cut in half), and the process exits
// with status 0 within 5 s. A client that stopped reading with a large snapshot pending cannot
// hold the exit past the shutdown grace. SIGINT behaves the same.
'use strict';

const net = require('node:net');
const h = require('./harness');
const { assert, T, log, sleep } = h;

const N = h.scaled(500, 100);
const EXIT_WITHIN_MS = 5000;

// Resolves true when a TCP connection to port is accepted, false when refused.
function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

h.run('shutdown', async (t) => {
  const up = await h.startUpstream();
  let v = 0;
  let doc = { v, list: [] };
  await up.put('/s', doc);
  // A 16 MiB document for the client that never reads: far more than socket buffers hold.
  await up.put('/huge', { pad: 'x'.repeat(16 * 1024 * 1024) });
  const config = {
    server: { max_connections: N + 200, max_subscribers: N + 100 },
    upstreams: {
      s: { url: up.url('/s'), interval: '100ms' },
      huge: { url: up.url('/huge'), interval: '10s', max_body: '64MiB' },
    },
  };
  const pc = await h.startPollcast(config);

  const subs = [];
  await t.step(`${N} clients connected`, async () => {
    for (let i = 0; i < N; i += 100) {
      const batch = [];
      for (let k = i; k < Math.min(N, i + 100); k++) {
        batch.push(h.openRaw(pc.base, '/streams/s', { name: `c${k}` }).then((s) => {
          subs.push(s);
          return s.waitDoc(doc, T(10000));
        }));
      }
      await Promise.all(batch);
    }
    h.defer(() => subs.forEach((s) => s.close()));
  });

  const stuck = await h.openRaw(pc.base, '/streams/huge', { name: 'stuck' });
  stuck.pause();
  h.defer(() => stuck.close());

  // Changes keep flowing until the signal, so that streams are busy when it comes.
  let flowing = true;
  const flow = (async () => {
    while (flowing) {
      v++;
      doc = { v, list: Array.from({ length: v % 50 }, (_, i) => ({ id: i, x: 'y'.repeat(v) })) };
      await up.put('/s', doc).catch(() => {});
      await sleep(50);
    }
  })();
  await subs[0].until((f) => f.count('patch') >= 5, T(5000), 'patches flowing');

  await t.step('SIGTERM: exit 0 within 5 s, every stream ended cleanly', async () => {
    const r = await pc.stop({ signal: 'SIGTERM', ms: T(EXIT_WITHIN_MS) + 3000 });
    flowing = false;
    await flow;
    log(`pollcast exited with ${r.code}/${r.signal} ${r.ms} ms after SIGTERM`);
    assert.equal(r.signal, null, 'killed by a signal');
    assert.equal(r.code, 0, 'exit status');
    assert.ok(r.ms <= T(EXIT_WITHIN_MS), `exit took ${r.ms} ms`);
    await Promise.all(subs.map((s) => s.until((f) => f.closed, T(3000), 'the end of the stream')));
    const sent = pc.exitInfo.at - r.ms;
    let clean = 0;
    for (const s of subs) {
      assert.ok(s.ended && !s.aborted, `${s.name}: stream cut (${s.aborted && s.aborted.message})`);
      assert.ok(!s.parser.partial(), `${s.name}: half an event at the end`);
      // Streams that read end at once, not when the grace runs out for the stuck one.
      assert.ok(s.endedAt - sent <= T(1500), `${s.name}: ended ${s.endedAt - sent} ms after SIGTERM`);
      clean++;
    }
    log(`${clean} of ${N} streams ended cleanly; the stuck client: ended ${stuck.ended}, ` +
      `aborted ${!!stuck.aborted}`);
    const err = pc.stderr();
    assert.match(err, /SIGTERM: stopping/);
    assert.ok(!h.SANITIZER_RE.test(err), 'sanitizer report');
  });

  await t.step('SIGINT the same way; no new stream once stopping', async () => {
    const pc2 = await h.startPollcast(config, { name: 'pollcast-sigint' });
    const clients = [];
    for (let i = 0; i < 20; i++) clients.push(await h.openRaw(pc2.base, '/streams/s'));
    h.defer(() => clients.forEach((c) => c.close()));
    await Promise.all(clients.map((c) => c.waitEvent('data')));
    const stuck2 = await h.openRaw(pc2.base, '/streams/huge', { name: 'stuck2' });
    stuck2.pause();
    h.defer(() => stuck2.close());
    await sleep(200);
    const sent = Date.now();
    process.kill(pc2.pid, 'SIGINT');
    // Once stopping, new connections are refused (the listening socket is closed), while the
    // process waits for the stuck stream.
    await sleep(300);
    const accepted = pc2.exitInfo ? false : await canConnect(pc2.port);
    const e = await h.within(pc2.exited, T(EXIT_WITHIN_MS) + 3000, 'exit after SIGINT');
    log(`SIGINT: exit ${e.code} after ${e.at - sent} ms; a new connection while stopping ` +
      `${accepted ? 'was accepted' : 'was refused'}`);
    assert.equal(e.code, 0);
    assert.ok(e.at - sent <= T(EXIT_WITHIN_MS), `exit took ${e.at - sent} ms`);
    assert.ok(!accepted, 'a new connection was accepted after SIGINT');
    await Promise.all(clients.map((c) => c.until((f) => f.closed, T(3000), 'end')));
    assert.ok(clients.every((c) => c.ended && !c.aborted), 'clean ends');
    assert.match(pc2.stderr(), /SIGINT: stopping/);
  });

  await t.step('with every client reading, the exit does not wait for the grace', async () => {
    const pc3 = await h.startPollcast(config, { name: 'pollcast-quick' });
    const clients = [];
    for (let i = 0; i < 50; i++) clients.push(await h.openRaw(pc3.base, '/streams/s'));
    h.defer(() => clients.forEach((c) => c.close()));
    await Promise.all(clients.map((c) => c.waitEvent('data')));
    const r = await pc3.stop({ signal: 'SIGTERM' });
    log(`exit ${r.code} ${r.ms} ms after SIGTERM`);
    assert.equal(r.code, 0);
    assert.ok(r.ms <= T(1500), `exit took ${r.ms} ms with no stuck client`);
    await Promise.all(clients.map((c) => c.until((f) => f.closed, T(3000), 'end')));
    assert.ok(clients.every((c) => c.ended && !c.aborted && !c.parser.partial()), 'clean ends');
  });
}, { timeoutMs: 90000 });

// A slow subscriber: one client stops reading (its socket paused: the kernel buffers fill, then
// pollcast's bounded queue) while 200 large changes flow at a 100 ms interval. The others keep
// receiving on time, pollcast's memory (VmRSS) stays bounded, the slow one is not dropped, and
// when it reads again it converges through a fresh data snapshot that replaced its backlog
// (counted by pollcast_subscribers_reset_total). Also: a patch larger than queue_bytes reaches a
// subscriber that keeps up as a patch, not as a reset.
'use strict';

const crypto = require('node:crypto');
const h = require('./harness');
const { assert, T, log, sleep } = h;

const CHANGES = h.scaled(200, 100);
const WARMUP = 10;
const BLOB = 150 * 1024; // bytes of fresh text per change: each patch is about this big
const FAST = 3;
const INTERVAL = 100;

function docOf(v) {
  return { v, blob: crypto.randomBytes(BLOB / 2).toString('hex'), tail: [v, v * 2, `n${v}`] };
}

h.run('slow_subscriber', async (t) => {
  const up = await h.startUpstream();
  let doc = docOf(0);
  await up.put('/big', doc);
  const pc = await h.startPollcast({
    server: { queue_events: 64, queue_bytes: '256KiB', history_events: 64,
      history_bytes: '1MiB' },
    upstreams: { big: { url: up.url('/big'), interval: `${INTERVAL}ms`, max_body: '4MiB' } },
  }, {
    // ASan's quarantine keeps freed memory for a while: keep it small so that RSS means
    // something in the ASan variant too.
    env: h.ASAN ? { ASAN_OPTIONS: `${process.env.ASAN_OPTIONS || ''}:quarantine_size_mb=16` } : {},
  });

  const fast = [];
  const seenAt = []; // per fast client: version -> time first held
  for (let i = 0; i < FAST; i++) {
    const f = await h.openRaw(pc.base, '/streams/big', { name: `fast${i}` });
    h.defer(() => f.close());
    const seen = new Map();
    f.onEventHooks.push(() => {
      if (f.doc && !seen.has(f.doc.v)) seen.set(f.doc.v, Date.now());
    });
    fast.push(f);
    seenAt.push(seen);
  }
  const slow = await h.openRaw(pc.base, '/streams/big', { name: 'slow' });
  h.defer(() => slow.close());
  await Promise.all([...fast, slow].map((f) => f.waitDoc(doc, T(5000), 'the first snapshot')));
  slow.pause();
  const slowEventsAtPause = slow.events.length;

  const putAt = new Map();
  const m0 = await pc.metrics();
  let baseline = 0;
  let peak = 0;
  const samples = [];
  const sampler = setInterval(() => {
    try {
      const rss = pc.rssKb();
      samples.push(rss);
      if (baseline) peak = Math.max(peak, rss);
    } catch {
      // the process is gone: the test fails elsewhere
    }
  }, 100);
  h.defer(() => clearInterval(sampler));

  await t.step(`${CHANGES} changes of ${BLOB >> 10} KiB every ${INTERVAL} ms, one subscriber ` +
    'not reading', async () => {
    for (let v = 1; v <= CHANGES; v++) {
      doc = docOf(v);
      const started = Date.now();
      await up.put('/big', doc);
      putAt.set(v, Date.now());
      if (v === WARMUP) {
        baseline = pc.rssKb();
        peak = baseline;
        log(`RSS after ${WARMUP} changes: ${baseline} KiB`);
      }
      await sleep(Math.max(0, INTERVAL - (Date.now() - started)));
    }
    await Promise.all(fast.map((f) => f.waitDoc(doc, T(5000), 'the last version')));
  });
  clearInterval(sampler);

  await t.step('the others kept receiving on time, and were never reset', async () => {
    const lat = [];
    seenAt.forEach((seen) => {
      for (const [v, at] of seen) if (putAt.has(v)) lat.push(at - putAt.get(v));
    });
    const versions = seenAt[0].size;
    log(`fast subscribers held ${versions} of ${CHANGES} versions; latency from upstream PUT: ` +
      `median ${h.percentile(lat, 50)} ms, p95 ${h.percentile(lat, 95)} ms, max ` +
      `${Math.max(...lat)} ms`);
    assert.ok(versions >= CHANGES * 0.5, `fast subscribers saw only ${versions} versions`);
    assert.ok(h.percentile(lat, 95) <= T(600), `p95 latency ${h.percentile(lat, 95)} ms`);
    assert.ok(Math.max(...lat) <= T(2500), `max latency ${Math.max(...lat)} ms`);
    for (const f of fast) {
      assert.equal(f.count('data'), 1, `${f.name} was reset to a snapshot`);
      assert.ok(!f.closed, `${f.name} stream closed`);
    }
  });

  await t.step('pollcast memory stayed bounded', async () => {
    const growth = peak - baseline;
    const flowed = (CHANGES - WARMUP) * BLOB / 1024;
    log(`RSS baseline ${baseline} KiB, peak ${peak} KiB, growth ${growth} KiB while ` +
      `${Math.round(flowed)} KiB of patches flowed (samples ${samples.length})`);
    // Well under what flowed (an unbounded queue would hold it all); ASan's allocator and
    // quarantine get some slack.
    const bound = Math.min(16 * 1024, flowed / 2) + (h.ASAN ? 6 * 1024 : 0);
    assert.ok(growth <= bound, `RSS grew by ${growth} KiB (bound ${bound} KiB)`);
  });

  await t.step('the slow subscriber, reading again, converges through a fresh snapshot', async () => {
    assert.ok(!slow.closed, 'the slow subscriber was not dropped');
    assert.equal(slow.events.length, slowEventsAtPause, 'paused: no event read');
    const m = await pc.metrics();
    const resets = m.pollcast_subscribers_reset_total - (m0.pollcast_subscribers_reset_total || 0);
    assert.ok(resets >= 1, `pollcast_subscribers_reset_total grew by ${resets}`);
    slow.resume();
    await slow.waitDoc(doc, T(20000), 'the last version');
    const types = slow.events.slice(slowEventsAtPause).map((e) => e.event);
    const datas = types.filter((x) => x === 'data').length;
    log(`slow subscriber read ${types.length} events after resuming: ` +
      `${types.filter((x) => x === 'patch').length} patches, ${datas} data`);
    assert.ok(datas >= 1, 'a fresh data snapshot replaced the backlog');
    assert.ok(types.length < CHANGES / 2, `the backlog was not replaced: ${types.length} events`);
    assert.ok(!slow.closed, 'still open');
    // It follows live changes again.
    doc = docOf(CHANGES + 1);
    await up.put('/big', doc);
    await slow.waitDoc(doc);
    assert.equal(slow.events[slow.events.length - 1].event, 'patch');
    log(`resets counted: ${resets}`);
  });

  await t.step('a patch larger than queue_bytes still reaches a reader as a patch', async () => {
    let d = { v: 0, blob: 'x' };
    await up.put('/wide', d);
    const pc2 = await h.startPollcast({
      server: { queue_bytes: '4KiB' },
      upstreams: { wide: { url: up.url('/wide'), interval: `${INTERVAL}ms` } },
    }, { name: 'pollcast-smallqueue' });
    const f = await h.openRaw(pc2.base, '/streams/wide', { name: 'wide' });
    h.defer(() => f.close());
    await f.waitDoc(d);
    for (let v = 1; v <= 3; v++) {
      d = { v, blob: crypto.randomBytes(8192).toString('hex') };
      await up.put('/wide', d);
      await f.waitDoc(d);
    }
    const m = await pc2.metrics();
    assert.deepEqual(f.events.map((e) => e.event), ['data', 'patch', 'patch', 'patch'],
      'a reader that keeps up gets patches');
    assert.equal(m.pollcast_subscribers_reset_total, 0, 'no reset');
  });
}, { timeoutMs: 150000 });

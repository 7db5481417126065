// Keepalive comments, now sent from a wheel of per-second lists (hub.c) instead of a walk of every
// subscriber each second: each stream is looked at when its interval ends, and gets the comment
// only if nothing was written to it for the whole interval. With keepalive = 2s:
// - a quiet stream gets a comment every 2 s (never sooner, at most one tick late);
// - a stream that gets an event every 500 ms gets no comment, and its first comment after the
//   last event comes 2 s after that event, not sooner;
// - 200 streams opened over 2 s each get their comments on their own schedule; half of them are
//   closed (a stream leaves the wheel: ASan sees any stale pointer) and the others go on.
'use strict';

const h = require('./harness');
const { assert, T, log, sleep } = h;

const KA_MS = 2000;
// The tick runs once a second: a comment may come up to one tick late, plus scheduling.
const LATE_MS = 1000;

// Times (ms) of the events and comments of a stream.
function watch(s) {
  const times = { events: [] };
  s.onEventHooks.push(() => times.events.push(Date.now()));
  return times;
}

// Gaps between consecutive comments, and the first comment's distance from a start time.
function gaps(comments) {
  const out = [];
  for (let i = 1; i < comments.length; i++) out.push(comments[i].t - comments[i - 1].t);
  return out;
}

function checkGaps(what, g) {
  for (const x of g) {
    assert.ok(x >= KA_MS - 50, `${what}: a keepalive ${x} ms after the previous one (keepalive ${KA_MS} ms)`);
    assert.ok(x <= T(KA_MS + LATE_MS + 300), `${what}: a keepalive ${x} ms after the previous one`);
  }
}

h.run('keepalive', async (t) => {
  const up = await h.startUpstream();
  await up.put('/quiet', { v: 0 });
  let v = 0;
  await up.put('/busy', { v });
  const config = {
    server: { keepalive: `${KA_MS / 1000}s` },
    upstreams: {
      quiet: { url: up.url('/quiet'), interval: '100ms' },
      busy: { url: up.url('/busy'), interval: '100ms' },
    },
  };
  const pc = await h.startPollcast(config);
  const base = `http://127.0.0.1:${pc.port}`;

  await t.step('a quiet stream gets a comment every interval', async () => {
    const s = await h.openRaw(base, '/streams/quiet', { name: 'quiet' });
    h.defer(() => s.close());
    await s.waitDoc({ v: 0 }, T(10000));
    const opened = Date.now();
    await s.until((f) => f.comments.length >= 3, T(3 * KA_MS + 3 * LATE_MS + 2000), 'three keepalive comments');
    const first = s.comments[0].t - opened;
    assert.ok(first >= KA_MS - 200 && first <= T(KA_MS + LATE_MS + 300), `first keepalive ${first} ms after the snapshot`);
    assert.equal(s.comments[0].text, 'keepalive');
    checkGaps('quiet', gaps(s.comments));
    log(`quiet: first ${first} ms, then ${gaps(s.comments).join(', ')} ms`);
    s.close();
  });

  await t.step('events every 500 ms: no comment; the first comes an interval after the last event', async () => {
    const s = await h.openRaw(base, '/streams/busy', { name: 'busy' });
    h.defer(() => s.close());
    await s.waitDoc({ v }, T(10000));
    const times = watch(s);
    const end = Date.now() + 3 * KA_MS;
    while (Date.now() < end) {
      await up.put('/busy', { v: ++v });
      await sleep(500);
    }
    await s.waitDoc({ v }, T(5000));
    assert.equal(s.comments.length, 0, `comments while events came every 500 ms: ${s.comments.length}`);
    const last = times.events[times.events.length - 1];
    await s.until((f) => f.comments.length >= 1, T(KA_MS + LATE_MS + 3000), 'a keepalive after the last event');
    const after = s.comments[0].t - last;
    assert.ok(after >= KA_MS - 50 && after <= T(KA_MS + LATE_MS + 300), `first keepalive ${after} ms after the last event`);
    log(`busy: ${times.events.length} events, no comment; the first ${after} ms after the last event`);
    s.close();
  });

  await t.step('200 streams on their own schedules; half close, the others go on', async () => {
    const n = h.scaled(200);
    const streams = [];
    for (let i = 0; i < n; i++) {
      const s = await h.openRaw(base, '/streams/quiet', { name: `many-${i}` });
      h.defer(() => s.close());
      streams.push(s);
      await sleep(2000 / n);
    }
    for (const s of streams) await s.waitDoc({ v: 0 }, T(10000));
    await sleep(2 * KA_MS + LATE_MS);
    for (const s of streams) checkGaps(s.name, gaps(s.comments));
    const counts = streams.map((s) => s.comments.length);
    assert.ok(Math.min(...counts) >= 1, `every stream had a comment: counts ${Math.min(...counts)}..${Math.max(...counts)}`);
    // Close every other stream, then check the rest keep their cadence.
    const kept = streams.filter((_, i) => i % 2 === 0);
    streams.filter((_, i) => i % 2 === 1).forEach((s) => s.close());
    const before = kept.map((s) => s.comments.length);
    await sleep(2 * KA_MS + LATE_MS + 300);
    kept.forEach((s, i) => {
      const more = s.comments.length - before[i];
      assert.ok(more >= 2, `${s.name}: ${more} keepalive comments in ${2 * KA_MS + LATE_MS + 300} ms after the others closed`);
      checkGaps(s.name, gaps(s.comments));
    });
    log(`${n} streams: ${Math.min(...counts)}..${Math.max(...counts)} comments each; ${kept.length} kept went on`);
    kept.forEach((s) => s.close());
  });
});

// Work sharing between the I/O threads (issue 13). Streams are dealt to the I/O threads in turn,
// and a publish wakes each thread for its own; a thread that has sent all of its own takes the
// ready streams of another that has not got to them yet. Shown with io_threads = 2 and the
// thread pollcast-io2 stopped (ptrace, by tests/integration/thread_stop.c, which stops that
// thread alone) while changes of 600 KB are published:
// - every subscriber still gets each change within a second or so (before, the streams of io2
//   waited for io2), and pollcast_stream_writes_shared_total counts the writes io1 made for them;
// - the outcomes that only the stream's own thread may act on (its loop's watches) wait for it:
//   clients that hang up meanwhile are let go once io2 runs again, and so are two clients that
//   stopped reading (their socket held bytes back; io1 hands the rest to io2), which converge
//   once they read again;
// - then every stream goes on in order (strict ids, patches applied with fast-json-patch), the
//   fast ones were never reset, and the gauge returns to 0.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const { spawn } = require('node:child_process');
const h = require('./harness');
const { assert, T, log, sleep } = h;

const FAST = h.scaled(24, 8) & ~1;
const CHANGES = 8;
const AFTER = 3;
const BLOB = 600 * 1024; // enough for the kernel buffers of a client that reads nothing to fill
const INTERVAL = 100;

function docOf(v, size = BLOB) {
  return { v, blob: crypto.randomBytes(size / 2).toString('hex'), tail: [v, `n${v}`] };
}

// The TID of the daemon's thread named name ("pollcast-io2").
function threadId(pid, name) {
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      if (fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() === name) return tid;
    } catch {
      // the thread ended meanwhile
    }
  }
  return null;
}

// Stops thread tid; resolves a function that lets it run again (and resolves once it does).
async function stopThread(tid) {
  const bin = process.env.POLLCAST_THREAD_STOP;
  assert.ok(bin, 'POLLCAST_THREAD_STOP (the thread_stop helper) is not set');
  const child = h.track(spawn(bin, [tid, '60'], { stdio: ['pipe', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  child.stdout.on('data', (c) => { out += c; });
  child.stderr.on('data', (c) => { err += c; });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  await h.within(new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      if (out.includes('stopped')) {
        clearInterval(timer);
        resolve();
      }
    }, 10);
    exited.then((code) => {
      clearInterval(timer);
      reject(new Error(`thread_stop exited (${code}) before stopping ${tid}: ${err}`));
    });
  }), T(5000), 'the thread to stop');
  let resumed = null;
  const resume = () => {
    if (!resumed) {
      child.stdin.end();
      resumed = exited.then((code) => assert.equal(code, 0, `thread_stop: ${err}`));
    }
    return resumed;
  };
  h.defer(resume);
  return resume;
}

async function gaugeReaches(pc, want, ms) {
  const end = Date.now() + ms;
  let m;
  for (;;) {
    m = await pc.metrics();
    if (m.pollcast_subscribers === want || Date.now() > end) return m.pollcast_subscribers;
    await sleep(50);
  }
}

h.run('io_share', async (t) => {
  const up = await h.startUpstream();
  let doc = docOf(0, 1024);
  await up.put('/big', doc);
  const pc = await h.startPollcast({
    server: { io_threads: 2, io_cpu_affinity: 'none', queue_events: 64, queue_bytes: '256KiB',
      history_events: 64, history_bytes: '1MiB', keepalive: '1s' },
    upstreams: { big: { url: up.url('/big'), interval: `${INTERVAL}ms`, max_body: '4MiB' } },
  });

  // One at a time, each after its snapshot: the streams are dealt to io1 and io2 in turn.
  const fast = [];
  const slow = [];
  h.defer(() => [...fast, ...slow].forEach((s) => s.close()));
  await t.step(`${FAST} subscribers and 2 that will stop reading connect`, async () => {
    for (let i = 0; i < FAST + 2; i++) {
      const s = await h.openRaw(pc.base, '/streams/big', { name: i < FAST ? `fast${i}` : `slow${i}` });
      (i < FAST ? fast : slow).push(s);
      await s.waitDoc(doc, T(5000), 'the first snapshot');
      await sleep(20);
    }
    assert.equal((await pc.metrics()).pollcast_subscribers, FAST + 2);
    slow.forEach((s) => s.pause());
  });

  const io2 = threadId(pc.pid, 'pollcast-io2');
  assert.ok(io2 && threadId(pc.pid, 'pollcast-io1'), 'threads pollcast-io1 and pollcast-io2');
  const m0 = await pc.metrics();
  const shared0 = m0.pollcast_stream_writes_shared_total;
  assert.equal(typeof shared0, 'number', 'pollcast_stream_writes_shared_total is exported');
  const resume = await stopThread(io2);
  log(`pollcast-io2 (TID ${io2}) stopped`);

  const lat = [];
  await t.step(`${CHANGES} changes of ${BLOB >> 10} KB reach every reading subscriber while ` +
    'io2 is stopped', async () => {
    for (let v = 1; v <= CHANGES; v++) {
      doc = docOf(v);
      const put = Date.now();
      await up.put('/big', doc);
      await Promise.all(fast.map((s) => s.waitDoc(doc, T(3000), `version ${v} (io2 stopped)`)));
      lat.push(Date.now() - put);
    }
    log(`each change reached all ${FAST} in ${lat.join(', ')} ms after the upstream PUT`);
    const shared = (await pc.metrics()).pollcast_stream_writes_shared_total - shared0;
    log(`pollcast_stream_writes_shared_total grew by ${shared}`);
    // About FAST / 2 streams are io2's, and each change is one write to each.
    assert.ok(shared >= CHANGES * FAST / 4, `shared writes ${shared} for ${CHANGES} changes`);
  });

  const gone = fast.splice(0, 4);
  await t.step('4 clients hang up while io2 is stopped; the others go on', async () => {
    gone.forEach((s) => s.close());
    for (let v = CHANGES + 1; v <= CHANGES + 2; v++) {
      doc = docOf(v);
      await up.put('/big', doc);
      await Promise.all(fast.map((s) => s.waitDoc(doc, T(3000), `version ${v} (io2 stopped)`)));
    }
  });

  await t.step('io2 runs again: it lets the clients that hung up go', async () => {
    await resume();
    log('pollcast-io2 runs again');
    const n = await gaugeReaches(pc, FAST - 4 + 2, T(5000));
    assert.equal(n, FAST - 4 + 2, 'subscribers after the hang-ups');
  });

  await t.step('every stream goes on in order; the ones that stopped reading converge', async () => {
    for (let v = CHANGES + 3; v < CHANGES + 3 + AFTER; v++) {
      doc = docOf(v);
      await up.put('/big', doc);
      await Promise.all(fast.map((s) => s.waitDoc(doc, T(3000), `version ${v}`)));
    }
    for (const s of fast) {
      assert.equal(s.count('data'), 1, `${s.name}: never reset`);
      assert.equal(s.count('patch'), CHANGES + 2 + AFTER, `${s.name}: one patch per change`);
      assert.ok(!s.closed, `${s.name}: stream closed`);
    }
    slow.forEach((s) => s.resume());
    await Promise.all(slow.map((s) => s.waitDoc(doc, T(20000), 'the last version')));
    for (const s of slow) {
      assert.ok(!s.closed, `${s.name}: stream closed`);
      log(`${s.name}: ${s.count('data')} data and ${s.count('patch')} patch events`);
    }
    const resets = (await pc.metrics()).pollcast_subscribers_reset_total;
    log(`pollcast_subscribers_reset_total ${resets}`);
  });

  await t.step('everyone leaves; the gauge returns to 0', async () => {
    [...fast, ...slow].forEach((s) => s.close());
    assert.equal(await gaugeReaches(pc, 0, T(10000)), 0, 'subscribers after everyone left');
  });
}, { timeoutMs: 120000 });

// The write is the only system call per subscriber per event (issue 13): with 50 parked
// subscribers, strace -c attached to the daemon while 5 changes reach them all counts at least
// one sendto per subscriber per change and no epoll_ctl per subscriber (the hang-up watch is
// registered once per stream, not at every park and wake: before, 2 per subscriber per event).
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const h = require('./harness');
const { assert, T, log } = h;

const N = 50;
const CHANGES = 5;

h.run('syscalls', async (t) => {
  const probe = spawnSync('strace', ['-V'], { encoding: 'utf8' });
  assert.equal(probe.status, 0, 'strace is needed (scripts/install-deps.sh installs it)');
  const up = await h.startUpstream();
  let doc = { v: 0, text: 'x'.repeat(200) };
  await up.put('/sys', doc);
  const pc = await h.startPollcast({
    upstreams: { sys: { url: up.url('/sys'), interval: '100ms' } },
  });
  const subs = [];
  h.defer(() => subs.forEach((s) => s.close()));
  for (let i = 0; i < N; i++) subs.push(await h.openRaw(pc.base, '/streams/sys', { name: `s${i}` }));
  await Promise.all(subs.map((s) => s.waitDoc(doc, T(10000), 'the snapshot')));

  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pollcast-strace-')), 'counts');
  const tracer = h.track(spawn('strace', ['-f', '-c', '-e', 'trace=epoll_ctl,sendto,write,writev',
    '-o', out, '-p', String(pc.pid)], { stdio: ['ignore', 'ignore', 'pipe'] }));
  let traceErr = '';
  tracer.stderr.on('data', (c) => (traceErr += c));
  const traced = new Promise((r) => tracer.on('exit', r));
  // strace says "Process N attached" once it traces every thread.
  await h.within(new Promise((resolve) => {
    const on = () => /attached/.test(traceErr) && resolve();
    tracer.stderr.on('data', on);
    on();
  }), T(10000), 'strace to attach');

  await t.step(`${CHANGES} changes reach ${N} parked subscribers`, async () => {
    for (let v = 1; v <= CHANGES; v++) {
      doc = { v, text: `${'y'.repeat(200)}${v}` };
      await up.put('/sys', doc);
      await Promise.all(subs.map((s) => s.waitDoc(doc, T(10000), `version ${v}`)));
      // Every stream parks again before the next change.
      await h.sleep(150);
    }
  });
  process.kill(tracer.pid, 'SIGINT');
  await h.within(traced, T(10000), 'strace to detach');

  await t.step('one write per subscriber per event, no epoll_ctl per subscriber', async () => {
    const text = fs.readFileSync(out, 'utf8');
    log(`strace -c:\n${text}`);
    const calls = (name) => {
      const m = new RegExp(`^\\s*[\\d.]+\\s+[\\d.]+\\s+\\d+\\s+(\\d+)\\s+(?:\\d+\\s+)?${name}$`, 'm').exec(text);
      return m ? Number(m[1]) : 0;
    };
    const writes = calls('sendto') + calls('write') + calls('writev');
    const ctl = calls('epoll_ctl');
    assert.ok(writes >= N * CHANGES, `${writes} writes: at least one per subscriber per change`);
    // The upstream's connection and the timers may add a few; per subscriber per event would be
    // 2 * N * CHANGES = 500.
    assert.ok(ctl < N, `${ctl} epoll_ctl calls for ${N * CHANGES} events to parked streams`);
  });
});

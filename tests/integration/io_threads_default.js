// io_threads = 0 (the default) starts one I/O thread per CPU pollcast may run on: its CPU
// affinity (taskset, a container's cpuset), not every CPU the machine has online. Before, a
// pollcast pinned to one CPU of a 2-core machine started 2 I/O threads. Checked by the number of
// threads of the running daemon (/proc/PID/task) against one with io_threads = 1 (the main
// thread, and whatever threads a sanitizer's runtime adds): under `taskset -c 0`, no more (the
// main thread writes every stream); under a mask of N >= 2 CPUs, N more; an explicit
// io_threads = 2 under one CPU is kept (2 more). Each daemon also serves a stream.
//
// io_cpu_affinity: with one I/O thread per CPU (the default) each I/O thread, named
// pollcast-ioN, is bound to a CPU of its own (/proc/PID/task/TID/status, Cpus_allowed_list) and
// the main thread is not; with io_cpu_affinity = none, or 3 threads on 2 CPUs, none is bound. The
// start-up log line says which.
'use strict';

const fs = require('node:fs');
const { spawn } = require('node:child_process');
const h = require('./harness');
const { assert, T, log } = h;

// The CPUs this test may run on, from its own affinity mask ("0-1,4" -> [0, 1, 4]).
function allowedCpus() {
  const m = /Cpus_allowed_list:\s*(\S+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  const cpus = [];
  for (const part of m[1].split(',')) {
    const [a, b] = part.split('-').map(Number);
    for (let c = a; c <= (b === undefined ? a : b); c++) cpus.push(c);
  }
  return cpus;
}

// Starts pollcast under `taskset -c cpus` with config text; resolves {pid, port}.
async function startPinned(cpus, text, name) {
  const file = h.writeConfig(text);
  const child = h.track(spawn('taskset', ['-c', cpus, h.BIN, '-c', file],
    { stdio: ['ignore', 'pipe', 'pipe'] }));
  let err = '';
  child.stderr.on('data', (c) => { err += c; });
  const stderr = () => err;
  h.defer(() => {
    try {
      process.kill(child.pid, 'SIGTERM');
    } catch {
      // gone
    }
  });
  const port = await h.within(new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c) => {
      out += c;
      const m = /listening on port (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`${name} exited (${code}): ${err}`)));
  }), T(15000), `${name} to listen`);
  return { pid: child.pid, port, stderr };
}

// The daemon's threads: [{tid, name, cpus}] (cpus: its Cpus_allowed_list).
function threadInfo(pid) {
  return fs.readdirSync(`/proc/${pid}/task`).map((tid) => ({
    tid,
    name: fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim(),
    cpus: /Cpus_allowed_list:\s*(\S+)/.exec(fs.readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'))[1],
  }));
}

function threads(pid) {
  return fs.readdirSync(`/proc/${pid}/task`).length;
}

h.run('io_threads_default', async (t) => {
  const up = await h.startUpstream();
  const doc = { v: 1 };
  await up.put('/d', doc);
  // Written by hand: the -ioN variants' environment must not set io_threads here.
  const config = (extra) => `[server]\nlisten = 127.0.0.1:0\nconnect_rate_per_ip = 0\n${extra}` +
    `\n[upstream d]\nurl = ${up.url('/d')}\ninterval = 100ms\n`;
  const cpus = allowedCpus();
  log(`this test may run on CPUs ${cpus.join(',')}`);

  // Starts a daemon, serves it a stream, returns its number of threads.
  const count = async (mask, extra, what) => {
    const pc = await startPinned(mask, config(extra), what);
    const s = await h.openRaw(`http://127.0.0.1:${pc.port}`, '/streams/d', { name: what });
    h.defer(() => s.close());
    await s.waitDoc(doc, T(10000));
    const n = threads(pc.pid);
    log(`${what}: ${n} threads`);
    return n;
  };
  let base;
  const check = async (mask, extra, more, what) => {
    assert.equal(await count(mask, extra, what), base + more, `${what}: threads of the daemon`);
  };

  await t.step('pinned to one CPU, the default starts no I/O thread', async () => {
    base = await count(String(cpus[0]), 'io_threads = 1', 'taskset one CPU, io_threads = 1');
    await check(String(cpus[0]), '', 0, 'taskset one CPU, io_threads default');
  });

  await t.step('an explicit io_threads is kept under one CPU', async () => {
    await check(String(cpus[0]), 'io_threads = 2', 2, 'taskset one CPU, io_threads = 2');
  });

  await t.step('under a mask of N >= 2 CPUs, the default starts N I/O threads', async () => {
    if (cpus.length < 2) {
      log('one CPU only: nothing more to check');
      return;
    }
    const n = Math.min(cpus.length, 64);
    await check(cpus.slice(0, n).join(','), '', n, `taskset ${n} CPUs, io_threads default`);
  });

  // Starts a daemon on the first two CPUs, serves it a stream; returns its threads and log.
  const placed = async (extra, what) => {
    const mask = cpus.slice(0, 2).join(',');
    const pc = await startPinned(mask, config(extra), what);
    const s = await h.openRaw(`http://127.0.0.1:${pc.port}`, '/streams/d', { name: what });
    h.defer(() => s.close());
    await s.waitDoc(doc, T(10000));
    const info = threadInfo(pc.pid);
    log(`${what}: ${info.map((x) => `${x.name} on ${x.cpus}`).join('; ')}`);
    const line = pc.stderr().split('\n').find((l) => / listening on /.test(l)) || '';
    return { io: info.filter((x) => /^pollcast-io\d+$/.test(x.name)), main: info.find((x) => x.tid === String(pc.pid)), line };
  };
  const both = () => `${cpus[0]}-${cpus[1]}`;
  const unbound = (x) => x.cpus === both() || x.cpus === `${cpus[0]},${cpus[1]}`;

  await t.step('one I/O thread per CPU: each bound to a CPU of its own, the main thread free', async () => {
    if (cpus.length < 2) {
      log('one CPU only: nothing to check');
      return;
    }
    const r = await placed('', 'taskset 2 CPUs, io_cpu_affinity default');
    assert.deepEqual(r.io.map((x) => x.name).sort(), ['pollcast-io1', 'pollcast-io2']);
    assert.deepEqual(r.io.map((x) => x.cpus).sort(), [String(cpus[0]), String(cpus[1])].sort(),
      'the I/O threads, each on one CPU of the two');
    assert.ok(unbound(r.main), `the main thread may run on both CPUs: ${r.main.cpus}`);
    assert.match(r.line, new RegExp(`2 I/O threads, on CPUs ${cpus[0]},${cpus[1]}\\)`));
  });

  await t.step('io_cpu_affinity = none, or more threads than CPUs: none is bound', async () => {
    if (cpus.length < 2) {
      log('one CPU only: nothing to check');
      return;
    }
    let r = await placed('io_cpu_affinity = none', 'taskset 2 CPUs, io_cpu_affinity = none');
    assert.equal(r.io.length, 2);
    for (const x of r.io) assert.ok(unbound(x), `${x.name} may run on both CPUs: ${x.cpus}`);
    assert.match(r.line, /2 I\/O threads, not bound to CPUs\)/);
    r = await placed('io_threads = 3', 'taskset 2 CPUs, io_threads = 3');
    assert.equal(r.io.length, 3);
    for (const x of r.io) assert.ok(unbound(x), `${x.name} may run on both CPUs: ${x.cpus}`);
    assert.match(r.line, /3 I\/O threads, not bound to CPUs\)/);
    r = await placed('io_threads = 1', 'taskset 2 CPUs, io_threads = 1');
    assert.equal(r.io.length, 0);
    assert.match(r.line, /the main thread writes the streams\)/);
  });
});

#!/usr/bin/env node
// Load scenarios for pollcast and for nginx + nchan, on loopback only. Started by run.sh, which
// raises the limits and builds the binaries. Each scenario starts what it needs on OS-chosen
// ports (an in-process JSON upstream or publisher, pollcast or nginx, the sseload client), stops
// it by PID, and prints one JSON line of results per run. Every run is bounded in time.
//
//   node run.mjs SCENARIO [--subs N] [--secs S] [--hz H] [--upstreams U] [--change]
//                         [--pollcast BIN] [--sseload BIN] [--rate CONN_PER_S] [--workers W]
//                         [--bystanders K] [--max-header-bytes SIZE] [--gap S]
//                         [--reconnect-rate CONN_PER_S] [--io-threads N]
//                         [--client-priority idle|normal] [--cpu-affinity auto|none]
//                         [--cpu-probe ROUNDS]
//
// --io-threads N (pollcast scenarios) writes io_threads = N into [server]; without it the key is
// left out and the line records io_threads "default". --workers N (nchan scenarios) is nginx's
// worker_processes (1 when not given); the line records workers.
//
// --client-priority: idle (the default) runs sseload as SCHED_IDLE, so that on a machine it
// shares with the server it takes only CPU time the server leaves (real subscribers are on other
// machines); normal runs it as any process. --cpu-affinity: auto (the default) leaves pollcast's
// io_cpu_affinity at its default (each I/O thread bound to a CPU of its own when there is one per
// CPU) and gives nginx the same (worker_cpu_affinity auto when there is one worker per CPU); none
// writes io_cpu_affinity = none and gives nginx no binding. Both are recorded on the line.
//
// --cpu-probe ROUNDS (1; 0 for none): cpuprobe, built beside sseload, measures before and after
// the run how much work the first two CPUs do at once against one alone; the line records both
// as machine.cpu_parallel (see cpuprobe.c).
//
// Scenarios:
//   fanout         one upstream, a new version on every poll, interval 1s (1 KB patches)
//   idle           one upstream that never changes; RSS per subscriber beyond the baseline
//   burst          upstream changes H times a second (default 20); pollcast polls at 100ms, its
//                  floor; every client must converge on the final version
//   pollers        U upstreams (default 1000) at 1s, one subscriber each; CPU and requests/tick
//   reconnect      fanout; SECS/3 in, every client drops, stays away --gap S and reconnects
//                  with Last-Event-ID at --reconnect-rate
//   nchan-fanout   the same payloads published to nchan at 1/s
//   nchan-idle     nchan, one message (every subscriber gets it on connecting)
//   nchan-burst    published H times a second
//   nchan-reconnect  the storm on nchan
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { performance } from 'node:perf_hooks';

const here = path.dirname(new URL(import.meta.url).pathname);
const args = process.argv.slice(2);
const scenario = args[0];
function opt(name, def) {
  const i = args.indexOf('--' + name);
  if (i < 0) return def;
  const v = args[i + 1];
  return typeof def === 'number' ? Number(v) : v;
}
const flag = (name) => args.includes('--' + name);

const SUBS = opt('subs', 1000);
const SECS = opt('secs', 30);
const HZ = opt('hz', scenario && scenario.includes('burst') ? 20 : 1);
const UPSTREAMS = opt('upstreams', 1000);
const RATE = opt('rate', 2000);
const BLOB = opt('blob', 1000);
const WORKERS = opt('workers', 1);
// pollcast's io_threads; '' (not given): the key is left out of the config, the daemon's default.
const IO_THREADS = opt('io-threads', '');
const CLIENT_PRIORITY = opt('client-priority', 'idle');
const CPU_AFFINITY = opt('cpu-affinity', 'auto');
const POLLCAST = opt('pollcast', path.join(here, '../../build-perf/pollcast'));
const SSELOAD = opt('sseload', path.join(here, 'sseload'));
const CPUPROBE = path.join(path.dirname(SSELOAD), 'cpuprobe');
const CPU_PROBE_ROUNDS = Number(opt('cpu-probe', '1'));
const SRC_IPS = opt('src-ips', 8);
// After the last change: how long to wait for every client to have the final version.
const TAIL = opt('tail', 30);
// How long pollcast gets to exit after SIGTERM before SIGKILL (longer under valgrind).
const STOP_MS = opt('stop-ms', 6000);
// Extra subscribers of a second upstream that never changes: suspended connections that a publish
// on the first must not cost anything for (fanout only).
const BYSTANDERS = opt('bystanders', 0);
// pollcast's max_header_bytes (one of the terms of its per-connection pool, see README.md); unset:
// the default.
const MAX_HEADER_BYTES = opt('max-header-bytes', '');
// reconnect: how long the clients stay away between dropping and reconnecting (0: at once), and
// how fast they come back (connections a second).
const GAP = opt('gap', 0);
const RECONNECT_RATE = opt('reconnect-rate', 10000);

// The code under test: POLLCAST_COMMIT (for a binary built elsewhere), else the last commit of
// this tree that changed src/, "-dirty" when src/ has uncommitted changes.
function pollcastCommit() {
  if (process.env.POLLCAST_COMMIT) return process.env.POLLCAST_COMMIT;
  const root = path.join(here, '../..');
  // The last commit that changed the daemon's code: later commits of docs or bench/ describe it.
  const head = spawnSync('git', ['-C', root, 'log', '-1', '--format=%h', '--', 'src', 'CMakeLists.txt'],
    { encoding: 'utf8' });
  if (head.status !== 0) return 'unknown';
  const dirty = spawnSync('git', ['-C', root, 'status', '--porcelain', '--', 'src', 'CMakeLists.txt'],
    { encoding: 'utf8' });
  return head.stdout.trim() + (dirty.stdout.trim() ? '-dirty' : '');
}

// nginx's version and the nchan package's (Debian), for the nchan lines.
function nchanVersion() {
  const ng = spawnSync('nginx', ['-v'], { encoding: 'utf8' });
  const pkg = spawnSync('dpkg-query', ['-W', '-f', '${Version}', 'libnginx-mod-nchan'], { encoding: 'utf8' });
  const v = ((ng.stderr || '') + (ng.stdout || '')).match(/nginx\/(\S+)/);
  return `nginx ${v ? v[1] : 'unknown'}, nchan ${pkg.status === 0 ? pkg.stdout.trim() : 'unknown'}`;
}

// The hard limit on open files, for nginx's worker_rlimit_nofile (asking for more than it is an
// alert in nginx's log and no raise).
function nofileHard() {
  const r = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' });
  const v = r.stdout.trim();
  return v === 'unlimited' ? 1048576 : Number(v) || 1024;
}

// CPU time of the whole machine and of given processes, in clock ticks: the difference over a
// run is what other work on the machine used (the load column), without this run's own load.
function machineTicks() {
  const l = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  const busy = l[0] + l[1] + l[2] + l[5] + l[6] + (l[7] || 0);
  const all = l.slice(0, 8).reduce((a, b) => a + (b || 0), 0);
  return { busy, all };
}
function pidTicks(pid) {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    // utime, stime, cutime, cstime (fields 14-17; f[0] is field 3).
    return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  } catch {
    return 0;
  }
}
// Starts measuring; returns a function that gives the other work's CPU, in cores, since.
function othersMeter(pids) {
  const list = () => [process.pid, ...pids()];
  const m0 = machineTicks();
  const own0 = new Map(list().map((p) => [p, pidTicks(p)]));
  return () => {
    const m1 = machineTicks();
    let own = 0;
    for (const p of list()) own += pidTicks(p) - (own0.get(p) || 0);
    const cores = os.cpus().length;
    const elapsed = (m1.all - m0.all) / cores;
    return elapsed > 0 ? Math.max(0, (m1.busy - m0.busy - own) / elapsed) : null;
  };
}

const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => process.stderr.write('run: ' + a.join(' ') + '\n');

// ---- children, stopped by PID ----------------------------------------------------------------
const children = new Set();
function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}
function stopAll() {
  for (const c of children) {
    try {
      process.kill(c.pid, 'SIGTERM');
    } catch {}
  }
}
process.on('exit', stopAll);
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => process.exit(1));
// Whatever happens, nothing outlives a bounded run.
const hardStop = setTimeout(() => {
  log('hard time limit reached');
  process.exit(1);
}, (SECS + 200) * 1000);
hardStop.unref();

async function stopChild(child, ms = 6000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {}
  const t = setTimeout(() => {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {}
  }, ms);
  await done;
  clearTimeout(t);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
    s.on('error', reject);
  });
}

// ---- the JSON upstream (pollcast's side) -----------------------------------------------------
// GET /doc/NAME serves {"seq":N,"t_us":T,"blob":"<hex>"}. In "request" mode every request while
// active makes a new version (t_us = when the response is built, i.e. when the poll completes);
// in "timer" mode the versions change HZ times a second while active; when frozen, nothing
// changes. ETag is the version, so unchanged polls are 304s.
function makeUpstream(mode) {
  const docs = new Map();
  const st = { active: false, requests: 0, perPath: new Map() };
  function version(name) {
    let d = docs.get(name);
    const seq = d ? d.seq + 1 : 1;
    const blob = crypto.randomBytes(BLOB / 2).toString('hex');
    const body = Buffer.from(`{"seq":${seq},"t_us":${nowUs()},"blob":"${blob}"}`);
    d = { seq, body, etag: `"${seq}"` };
    docs.set(name, d);
    return d;
  }
  const server = http.createServer((req, res) => {
    st.requests++;
    const name = req.url.split('?')[0];
    let pp = st.perPath.get(name);
    if (!pp) st.perPath.set(name, (pp = { count: 0, last: 0, ivals: [] }));
    const t = performance.now();
    if (pp.last && st.recordIntervals) pp.ivals.push(t - pp.last);
    pp.last = t;
    pp.count++;
    let d = docs.get(name);
    if (!d || (mode === 'request' && st.active && !name.startsWith('/doc/quiet'))) d = version(name);
    if (req.headers['if-none-match'] === d.etag) {
      res.writeHead(304, { ETag: d.etag });
      res.end();
      return;
    }
    res.writeHead(200, {
      'Content-Type': 'application/json',
      'Content-Length': d.body.length,
      ETag: d.etag,
    });
    res.end(d.body);
  });
  server.keepAliveTimeout = 60000;
  let timer = null;
  return {
    st,
    docs,
    server,
    listen: () => new Promise((r) => server.listen(0, '127.0.0.1', () => r(server.address().port))),
    start() {
      st.active = true;
      if (mode === 'timer')
        timer = setInterval(() => {
          for (const name of docs.keys()) version(name);
        }, 1000 / HZ);
    },
    freeze() {
      st.active = false;
      if (timer) clearInterval(timer);
      timer = null;
    },
    finalSeq: (name) => (docs.get(name) ? docs.get(name).seq : -1),
    close: () => new Promise((r) => server.close(r)),
  };
}

// ---- the nchan publisher: the same payload as pollcast's patch events ------------------------
function makePublisher(port, channel) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let seq = 0;
  let timer = null;
  let failures = 0;
  let inflight = 0;
  function publishOne() {
    seq++;
    const blob = crypto.randomBytes(BLOB / 2).toString('hex');
    const body =
      `[{"op":"replace","path":"/seq","value":${seq}},` +
      `{"op":"replace","path":"/t_us","value":${nowUs()}},` +
      `{"op":"replace","path":"/blob","value":"${blob}"}]`;
    inflight++;
    let done;
    const finished = new Promise((r) => (done = r));
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: '/pub/' + channel,
        method: 'POST',
        agent,
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
      },
      (res) => {
        if (res.statusCode >= 300) failures++;
        res.resume();
        res.on('end', () => {
          inflight--;
          done();
        });
      },
    );
    req.on('error', () => {
      failures++;
      inflight--;
      done();
    });
    req.end(body);
    return finished;
  }
  return {
    // Publishes exactly count messages, HZ a second, the first at once.
    start(count) {
      let left = count;
      const tick = () => {
        if (left-- > 0) publishOne();
        else clearInterval(timer);
      };
      tick();
      timer = setInterval(tick, 1000 / HZ);
    },
    freeze() {
      if (timer) clearInterval(timer);
      timer = null;
    },
    publishOne,
    finalSeq: () => seq,
    failures: () => failures,
    drain: async () => {
      for (let i = 0; i < TAIL * 100 && inflight > 0; i++) await sleep(10);
    },
  };
}

// ---- servers under test ------------------------------------------------------------------------
function waitLine(stream, re, ms, what) {
  return new Promise((resolve, reject) => {
    let acc = '';
    const t = setTimeout(() => reject(new Error(`${what}: no ${re} within ${ms} ms`)), ms);
    const on = (chunk) => {
      acc += chunk.toString();
      const m = acc.match(re);
      if (m) {
        clearTimeout(t);
        stream.off('data', on);
        resolve(m);
      }
    };
    stream.on('data', on);
  });
}

async function startPollcast(upstreamPort, names, intervalMs, tmp) {
  let ini =
    `[server]\nlisten = 127.0.0.1:0\nmax_connections = 100000\nmax_subscribers = 100000\n` +
    `max_subscribers_per_ip = 0\nconnect_rate_per_ip = 0\nlisten_backlog = 4096\n` +
    `max_pollers = ${Math.max(2048, names.length + 16)}\n` +
    `log_level = warn\naccess_log = false\n` +
    (MAX_HEADER_BYTES ? `max_header_bytes = ${MAX_HEADER_BYTES}\n` : '') +
    (IO_THREADS ? `io_threads = ${IO_THREADS}\n` : '') +
    (CPU_AFFINITY === 'none' ? 'io_cpu_affinity = none\n' : '');
  for (const n of names)
    ini +=
      `\n[upstream ${n}]\nurl = http://127.0.0.1:${upstreamPort}/doc/${n}\n` +
      `interval = ${intervalMs}ms\nmin_interval = 100ms\n`;
  const cfg = path.join(tmp, 'pollcast.ini');
  fs.writeFileSync(cfg, ini);
  const child = track(spawn(POLLCAST, ['-c', cfg], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const errLog = fs.createWriteStream(path.join(tmp, 'pollcast.log'));
  child.stderr.pipe(errLog);
  // A config the daemon refuses ends it at once: say why, not only that it never listened.
  const exited = new Promise((_, reject) =>
    child.once('exit', (code, sig) =>
      setTimeout(() => reject(new Error(`pollcast exited (${code ?? sig}) at start-up: ` +
        fs.readFileSync(path.join(tmp, 'pollcast.log'), 'utf8').slice(-500))), 200)));
  exited.catch(() => {});
  const m = await Promise.race([waitLine(child.stdout, /listening on port (\d+)/, 10000, 'pollcast'), exited]);
  return { child, port: Number(m[1]), pids: [child.pid] };
}

function childPids(ppid) {
  const out = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      if (Number(f[1]) === ppid) out.push(Number(d));
    } catch {}
  }
  return out;
}

// Open sockets of a process (its connections and listeners): how nginx's workers shared the
// subscribers.
function socketCount(pid) {
  let n = 0;
  try {
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`))
      try {
        if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) n++;
      } catch {}
  } catch {}
  return n;
}

function pssKb(pid) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').match(/\nPss:\s+(\d+)/);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

async function startNchan(tmp) {
  const port = await freePort();
  const mod = '/usr/lib/nginx/modules/ngx_nchan_module.so';
  if (!fs.existsSync(mod)) throw new Error('nchan is not installed (run.sh installs it)');
  fs.mkdirSync(path.join(tmp, 'ngx'), { recursive: true });
  const NOFILE = nofileHard();
  // nchan_subscriber_first_message -1: a new subscriber gets the channel's last message, as a
  // new pollcast subscriber gets the snapshot ("newest" would mean: the next one published).
  const conf = `load_module ${mod};
${process.getuid() === 0 ? 'user root;' : ''}
worker_processes ${WORKERS};
${nginxAffinity()}
worker_rlimit_nofile ${NOFILE};
daemon off;
master_process on;
pid ${tmp}/nginx.pid;
error_log ${tmp}/nginx-error.log warn;
events { worker_connections ${NOFILE}; use epoll; multi_accept on; }
http {
  access_log off;
  client_body_temp_path ${tmp}/ngx/body;
  proxy_temp_path ${tmp}/ngx/proxy;
  fastcgi_temp_path ${tmp}/ngx/fastcgi;
  uwsgi_temp_path ${tmp}/ngx/uwsgi;
  scgi_temp_path ${tmp}/ngx/scgi;
  nchan_shared_memory_size 256M;
  server {
    listen 127.0.0.1:${port} backlog=4096${WORKERS >= 2 ? ' reuseport' : ''};
    location ~ ^/pub/(\\w+)$ {
      nchan_publisher;
      nchan_channel_id $1;
      nchan_message_buffer_length 1024;
      nchan_message_timeout 1h;
    }
    location ~ ^/sub/(\\w+)$ {
      nchan_subscriber eventsource;
      nchan_channel_id $1;
      nchan_subscriber_first_message -1;
      nchan_eventsource_ping_interval 15;
    }
  }
}
`;
  const cfg = path.join(tmp, 'nginx.conf');
  fs.writeFileSync(cfg, conf);
  const child = track(
    spawn('nginx', ['-c', cfg, '-p', tmp, '-e', `${tmp}/nginx-error.log`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    }),
  );
  // Ready when the port answers.
  for (let i = 0; i < 100; i++) {
    await sleep(50);
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) break;
    if (child.exitCode !== null) throw new Error('nginx exited: ' + fs.readFileSync(`${tmp}/nginx-error.log`, 'utf8'));
  }
  // The workers must be up and done starting before the baseline memory is taken: wait until
  // there are WORKERS of them and their PSS holds still over 300 ms.
  let workers = [];
  let last = -1;
  for (let i = 0; i < 50; i++) {
    workers = childPids(child.pid);
    const pss = [child.pid, ...workers].reduce((a, p) => a + pssKb(p), 0);
    if (workers.length >= WORKERS && pss === last) break;
    last = pss;
    await sleep(300);
  }
  return { child, port, pids: [child.pid, ...workers] };
}

// With several workers the listening socket is reuseport (one per worker, the kernel spreads the
// connections evenly): with one shared socket and multi_accept, the first worker to wake took
// 987 of 1,000 connections in a run with the client at idle priority.
// worker_cpu_affinity auto when there is one worker per CPU of this process's affinity, as
// pollcast binds one I/O thread per CPU (io_cpu_affinity = auto); the line records it.
function nginxAffinity() {
  return nchanAffinity() === 'auto' ? 'worker_cpu_affinity auto;' : '';
}
function nchanAffinity() {
  const cpus = os.availableParallelism ? os.availableParallelism() : os.cpus().length;
  return CPU_AFFINITY === 'auto' && WORKERS >= 2 && WORKERS === cpus ? 'auto' : 'none';
}

// ---- the load client ---------------------------------------------------------------------------
function startLoad(urls, n, maxSecs, pids, extra = []) {
  const a = ['-n', String(n), '--rate', String(RATE), '--duration', String(maxSecs),
    '--src-ips', String(SRC_IPS), '--settle', '1', '--reconnect-rate', String(RECONNECT_RATE)];
  for (const u of urls) a.push('--url', u);
  for (const p of pids) a.push('--pid', String(p));
  if (CLIENT_PRIORITY === 'idle') a.push('--idle-priority');
  a.push(...extra);
  const child = track(spawn(SSELOAD, a, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  let errText = '';
  child.stderr.on('data', (c) => (errText += c));
  const ready = waitLine(child.stderr, /ready/, maxSecs * 1000, 'sseload');
  const progress = { max: -1, at: 0, alive: 0 };
  let partial = '';
  child.stderr.on('data', (c) => {
    const lines = (partial + c).split('\n');
    partial = lines.pop();
    for (const l of lines) {
      const m = l.match(/^progress (-?\d+) (\d+) (\d+)/);
      if (m) Object.assign(progress, { max: Number(m[1]), at: Number(m[2]), alive: Number(m[3]) });
    }
  });
  const done = new Promise((resolve) =>
    child.on('exit', (code) => {
      try {
        resolve(JSON.parse(out));
      } catch {
        resolve({ error: `sseload exit ${code}: ${errText.slice(-500)}` });
      }
    }),
  );
  // Waits until every live connection saw version seq, up to ms; returns the seconds it took,
  // or null when they did not get there.
  async function converge(seq, ms) {
    const t0 = performance.now();
    while (performance.now() - t0 < ms) {
      if (progress.max === seq && progress.at === progress.alive && progress.alive > 0)
        return (performance.now() - t0) / 1000;
      await sleep(100);
    }
    return null;
  }
  return { child, ready, done, converge };
}

// ---- the reconnect storm -----------------------------------------------------------------------
// SECS/3 into the window every client drops its connection (SIGUSR1 to sseload); GAP seconds
// later (while the changes go on, so that events are missed) all reconnect with Last-Event-ID at
// RECONNECT_RATE (SIGUSR2); the changes go on until SECS. sseload reports how long until every
// connection streamed again and whether each resumed from history or got fresh data.
async function reconnectStorm(load) {
  const t0 = performance.now();
  await sleep((SECS / 3) * 1000);
  process.kill(load.child.pid, 'SIGUSR1');
  await sleep(GAP * 1000);
  process.kill(load.child.pid, 'SIGUSR2');
  const rest = SECS * 1000 - (performance.now() - t0);
  if (rest > 0) await sleep(rest);
  return { gap_s: GAP, reconnect_rate: RECONNECT_RATE, dropped_at_s: SECS / 3 };
}

// ---- scenarios -----------------------------------------------------------------------------------
// cpuprobe (cpuprobe.c): two CPUs' work at once against one's alone, as a JSON object, or
// null without it. A virtual machine's two CPUs may do less than twice the work of one
// (threads of one host core, a busy host), and by how much changes from minute to minute; the
// 1-thread against 2-thread rows depend on it. --cpu-probe ROUNDS (1; 0: none), ~1.2 s a round.
function cpuProbe() {
  if (CPU_PROBE_ROUNDS === 0 || !fs.existsSync(CPUPROBE)) return null;
  const p = spawnSync(CPUPROBE, [String(CPU_PROBE_ROUNDS)], { encoding: 'utf8', timeout: 120000 });
  try {
    return p.status === 0 ? JSON.parse(p.stdout) : null;
  } catch {
    return null;
  }
}

function machine() {
  return {
    nproc: os.cpus().length,
    cpu: os.cpus()[0].model,
    kernel: os.release(),
    date: new Date().toISOString(),
  };
}

async function runPollcast(kind) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pollcast-load-'));
  const mode = kind === 'burst' ? 'timer' : kind === 'idle' ? 'static' : flag('change') || kind === 'fanout' || kind === 'reconnect' ? 'request' : 'static';
  const up = makeUpstream(mode);
  const uport = await up.listen();
  const names = kind === 'pollers' ? Array.from({ length: UPSTREAMS }, (_, i) => `p${i}`) : ['load'];
  if (BYSTANDERS) names.push('quiet');
  const intervalMs = kind === 'burst' ? 100 : 1000;
  const pc = await startPollcast(uport, names, intervalMs, tmp);
  const n = kind === 'pollers' ? UPSTREAMS : SUBS;
  const urls = kind === 'pollers' ? [`http://127.0.0.1:${pc.port}/streams/p%d`] : [`http://127.0.0.1:${pc.port}/streams/load`];
  const extra = kind === 'pollers' ? ['--paths', String(UPSTREAMS)] : [];
  const rampS = (n + BYSTANDERS) / RATE + 30;
  let bystanders = null;
  if (BYSTANDERS) {
    bystanders = startLoad([`http://127.0.0.1:${pc.port}/streams/quiet`], BYSTANDERS, rampS + SECS + 20, []);
    await bystanders.ready;
  }
  const load = startLoad(urls, n, rampS + SECS + 10, pc.pids, extra);
  let result;
  try {
    await load.ready;
    const others = othersMeter(() => [...pc.pids, load.child.pid, ...(bystanders ? [bystanders.child.pid] : [])]);
    up.st.recordIntervals = true;
    const counts0 = new Map([...up.st.perPath].map(([k, v]) => [k, v.count]));
    const req0 = up.st.requests;
    up.start();
    const storm = kind === 'reconnect' ? await reconnectStorm(load) : (await sleep(SECS * 1000), null);
    up.freeze();
    const counts1 = new Map([...up.st.perPath].map(([k, v]) => [k, v.count]));
    const req1 = up.st.requests;
    up.st.recordIntervals = false;
    // Let the last version reach everyone (pollcast may poll once more and find it), then end
    // the client.
    const convergeS = kind === 'pollers' || mode === 'static' ? null : await load.converge(up.finalSeq('/doc/load'), TAIL * 1000);
    const othersCores = others();
    await sleep(500);
    await stopChild(load.child);
    result = await load.done;
    result.others_cores = othersCores;
    if (storm) result.storm_plan = storm;
    const finals = names.map((x) => up.finalSeq('/doc/' + x));
    result.upstream = {
      mode,
      interval_ms: intervalMs,
      requests_in_window: req1 - req0,
      final_seq: names.length === 1 ? finals[0] : undefined,
    };
    if (kind === 'pollers') {
      const per = [...counts1].map(([k, c]) => c - (counts0.get(k) || 0));
      const ivals = [].concat(...[...up.st.perPath.values()].map((p) => p.ivals)).sort((a, b) => a - b);
      const q = (p) => ivals.length ? Math.round(ivals[Math.floor(p * (ivals.length - 1))]) : null;
      result.upstream.paths = per.length;
      result.upstream.per_path_requests = { min: Math.min(...per), max: Math.max(...per), expected: SECS * 1000 / intervalMs };
      result.upstream.interval_ms_observed = { min: q(0), p50: q(0.5), p99: q(0.99), max: q(1) };
    } else {
      result.converged = result.seq && result.seq.max === finals[0] && result.seq.at_max === result.alive_at_end;
      result.converge_s = convergeS;
    }
  } finally {
    await stopChild(load.child);
    if (bystanders) {
      await stopChild(bystanders.child);
      const b = await bystanders.done;
      if (result) result.bystanders = { subs: BYSTANDERS, alive_at_end: b.alive_at_end, errors: b.errors };
    }
    await stopChild(pc.child, STOP_MS);
    await up.close();
  }
  if (bystanders) {
    // Not the plain scenario: keep it apart in the summaries.
    kind = `${kind}+${BYSTANDERS}-idle`;
  }
  return { scenario: kind, server: 'pollcast', subs: n, secs: SECS,
    hz: kind === 'burst' ? HZ : kind === 'fanout' || kind === 'reconnect' ? 1 : 0,
    gap_s: kind === 'reconnect' ? GAP : undefined,
    max_header_bytes: MAX_HEADER_BYTES || undefined,
    // The value written into the config, or "default": the key left out (the daemon's default:
    // 1 before io_threads existed, the number of CPUs, machine.nproc, since).
    io_threads: IO_THREADS ? Number(IO_THREADS) : 'default',
    // io_cpu_affinity: "default" (the key left out: auto since it exists) or "none".
    cpu_affinity: CPU_AFFINITY === 'none' ? 'none' : 'default', ...result, tmp };
}

async function runNchan(kind) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nchan-load-'));
  const ng = await startNchan(tmp);
  const pub = makePublisher(ng.port, 'load');
  let result;
  // A first message, stored before the clients (and the memory baseline) start, so that every
  // subscriber gets it on connecting, as a pollcast subscriber gets the snapshot
  // (nchan_subscriber_first_message -1).
  await pub.publishOne();
  const load = startLoad([`http://127.0.0.1:${ng.port}/sub/load`], SUBS, SUBS / RATE + 30 + SECS + 10, ng.pids);
  try {
    await load.ready;
    const others = othersMeter(() => [...ng.pids, load.child.pid]);
    let storm = null;
    if (kind === 'reconnect') {
      pub.start(Math.round(SECS * HZ));
      storm = await reconnectStorm(load);
    } else {
      if (kind !== 'idle') pub.start(Math.round(SECS * HZ));
      await sleep(SECS * 1000);
    }
    pub.freeze();
    await pub.drain();
    const convergeS = kind === 'idle' ? null : await load.converge(pub.finalSeq(), TAIL * 1000);
    const othersCores = others();
    // Every worker's sockets while the clients are still connected: with several workers, both
    // must hold subscribers for the converged count to show nchan's delivery between them.
    const workerSockets = ng.pids.slice(1).map(socketCount);
    await sleep(500);
    await stopChild(load.child);
    result = await load.done;
    result.others_cores = othersCores;
    if (storm) result.storm_plan = storm;
    result.publisher = { final_seq: pub.finalSeq(), failures: pub.failures(), workers: WORKERS };
    result.worker_sockets = workerSockets;
    result.converged = result.seq && result.seq.max === pub.finalSeq() && result.seq.at_max === result.alive_at_end;
    result.converge_s = convergeS;
  } finally {
    await stopChild(load.child);
    await stopChild(ng.child);
  }
  return { scenario: kind, server: 'nchan', subs: SUBS, secs: SECS, hz: kind === 'idle' ? 0 : HZ,
    gap_s: kind === 'reconnect' ? GAP : undefined,
    // nginx's worker_processes: --workers, 1 when not given (workers_given false).
    workers: WORKERS, workers_given: flag('workers'), cpu_affinity: nchanAffinity(), ...result, tmp };
}

async function main() {
  const kinds = {
    fanout: () => runPollcast('fanout'),
    idle: () => runPollcast('idle'),
    reconnect: () => runPollcast('reconnect'),
    'nchan-reconnect': () => runNchan('reconnect'),
    burst: () => runPollcast('burst'),
    pollers: () => runPollcast('pollers'),
    'nchan-fanout': () => runNchan('fanout'),
    'nchan-idle': () => runNchan('idle'),
    'nchan-burst': () => runNchan('burst'),
  };
  if (!kinds[scenario]) {
    process.stderr.write(`usage: run.mjs {${Object.keys(kinds).join('|')}} [options]\n`);
    process.exit(2);
  }
  // Each option belongs to one server: a run that names the other's is refused, not mislabelled.
  const isNchan = scenario.startsWith('nchan-');
  const posInt = (v) => Number.isInteger(Number(v)) && Number(v) >= 1 && Number(v) <= 1024;
  if (flag('io-threads') && (isNchan || !posInt(IO_THREADS))) {
    process.stderr.write('run.mjs: --io-threads N (1..1024) is for pollcast scenarios\n');
    process.exit(2);
  }
  if (flag('workers') && (!isNchan || !posInt(WORKERS))) {
    process.stderr.write('run.mjs: --workers N (1..1024) is for nchan scenarios\n');
    process.exit(2);
  }
  if (!['idle', 'normal'].includes(CLIENT_PRIORITY) || !['auto', 'none'].includes(CPU_AFFINITY)) {
    process.stderr.write('run.mjs: --client-priority is idle or normal, --cpu-affinity auto or none\n');
    process.exit(2);
  }
  const load0 = os.loadavg();
  const probe0 = cpuProbe();
  const r = await kinds[scenario]();
  r.machine = machine();
  // How much two CPUs do at once against one alone, before and after the run (cpuprobe.c).
  r.machine.cpu_parallel = [probe0, cpuProbe()];
  r.client_priority = CLIENT_PRIORITY;
  // sseload yields the CPU every 32 events at idle priority (from 673d2fc on).
  r.client_yield = CLIENT_PRIORITY === 'idle';
  // The code under test: pollcast's commit, or nginx's and nchan's versions.
  if (r.server === 'pollcast') r.commit = pollcastCommit();
  else r.nchan_version = nchanVersion();
  // Other work on the machine competes for its cores: the 1-minute load average before the run
  // started (after it, it includes the run itself), and others_cores: the CPU that processes
  // other than this run's used during its window, in cores.
  r.machine.loadavg1 = [load0[0], os.loadavg()[0]];
  r.machine.loadavg_before = load0[0];
  process.stdout.write(JSON.stringify(r) + '\n');
  process.exit(0);
}

main().catch((e) => {
  log(e.stack || String(e));
  process.exit(1);
});

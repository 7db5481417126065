#!/usr/bin/env node
// The fan-out scenario of bench/load through several pollcast nodes in cluster mode (issue 9),
// against the same subscribers on one node. Loopback only, ports chosen by the OS, every process
// stopped by PID, every run bounded in time. Started by bench/cluster.sh, which raises the limits
// and builds the binaries. Prints one JSON line per run.
//
//   node bench/cluster.mjs [--nodes K] [--single] [--subs N] [--secs S] [--interval MS]
//                          [--pollcast BIN] [--sseload BIN] [--rate CONN_PER_S] [--lease D]
//
// One upstream whose document changes on every poll ({"seq","t_us","blob"}: a ~1.1 KB patch, as
// bench/load's fanout), polled every --interval (1000 ms). --nodes K (3) pollcast nodes share a
// redis-server started here ([cluster] redis = ...); --single runs one node without [cluster]
// instead (the in-process store). In both cases K sseload processes hold N/K subscribers each
// (node i's share goes to node i; with --single all go to the one node), so the client side is
// the same. Reported: per sseload, latency p50/p99 (payload's t_us, written when the owner's poll
// completes, to the kernel's receive timestamp at the client) and the CPU of the node it watches;
// redis-server's CPU (utime + stime from /proc/PID/stat over the window); Redis commands per
// change (INFO commandstats before and after the window, divided by the versions published).
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

const here = path.dirname(new URL(import.meta.url).pathname);
const args = process.argv.slice(2);
function opt(name, def) {
  const i = args.indexOf('--' + name);
  if (i < 0) return def;
  return typeof def === 'number' ? Number(args[i + 1]) : args[i + 1];
}
const flag = (name) => args.includes('--' + name);

const NODES = opt('nodes', 3);
const SINGLE = flag('single');
const SUBS = opt('subs', 3000);
const SECS = opt('secs', 20);
const INTERVAL = opt('interval', 1000);
const RATE = opt('rate', 2000);
const LEASE = opt('lease', '3s');
const BLOB = 1000;
const POLLCAST = opt('pollcast', path.join(here, '../build-perf/pollcast'));
const SSELOAD = opt('sseload', path.join(here, 'load/sseload'));
const TAIL = 20;

const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => process.stderr.write('cluster: ' + a.join(' ') + '\n');
const HZ = 100; // USER_HZ: the unit of utime and stime in /proc/PID/stat on Linux

// ---- children, stopped by PID ----------------------------------------------------------------
const children = new Set();
function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}
process.on('exit', () => {
  for (const c of children) {
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {}
  }
});
for (const s of ['SIGINT', 'SIGTERM']) process.on(s, () => process.exit(1));
setTimeout(() => {
  log('hard time limit reached');
  process.exit(1);
}, (SECS + SUBS / RATE + 180) * 1000).unref();

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

function waitLine(stream, re, ms, what) {
  return new Promise((resolve, reject) => {
    let acc = '';
    const t = setTimeout(() => reject(new Error(`${what}: no ${re} within ${ms} ms: ${acc}`)), ms);
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

function cpuTicks(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
}

// ---- the upstream: a new version on every request while active ------------------------------
function makeUpstream() {
  const st = { active: false, requests: 0, seq: 0, body: null, etag: null };
  const version = () => {
    st.seq++;
    const blob = crypto.randomBytes(BLOB / 2).toString('hex');
    st.body = Buffer.from(`{"seq":${st.seq},"t_us":${nowUs()},"blob":"${blob}"}`);
    st.etag = `"${st.seq}"`;
  };
  version();
  const server = http.createServer((req, res) => {
    st.requests++;
    if (st.active) version();
    if (req.headers['if-none-match'] === st.etag) {
      res.writeHead(304, { ETag: st.etag });
      res.end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': st.body.length,
      ETag: st.etag });
    res.end(st.body);
  });
  server.keepAliveTimeout = 60000;
  return {
    st,
    listen: () => new Promise((r) => server.listen(0, '127.0.0.1', () => r(server.address().port))),
    close: () => new Promise((r) => server.close(r)),
  };
}

// ---- redis-server --------------------------------------------------------------------------
async function startRedis(tmp) {
  const port = await freePort();
  const child = track(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--dir', tmp, '--logfile', ''],
  { stdio: ['ignore', 'pipe', 'pipe'] }));
  await waitLine(child.stdout, /Ready to accept connections/, 10000, 'redis-server');
  return { child, port, pid: child.pid };
}

function redisCli(port, ...a) {
  return new Promise((resolve, reject) => {
    const c = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...a]);
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`redis-cli ${a}`))));
  });
}

async function commandStats(port) {
  const stats = {};
  for (const l of (await redisCli(port, 'INFO', 'commandstats')).split(/\r?\n/)) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(l);
    if (m) stats[m[1]] = Number(m[2]);
  }
  return stats;
}

// ---- pollcast nodes --------------------------------------------------------------------------
async function startNode(tmp, i, upstreamPort, redisPort) {
  let ini =
    `[server]\nlisten = 127.0.0.1:0\nmax_connections = 100000\nmax_subscribers = 100000\n` +
    `max_subscribers_per_ip = 0\nconnect_rate_per_ip = 0\nlisten_backlog = 4096\n` +
    `log_level = warn\naccess_log = false\n\n` +
    `[upstream load]\nurl = http://127.0.0.1:${upstreamPort}/doc/load\n` +
    `interval = ${INTERVAL}ms\nmin_interval = 100ms\n`;
  if (redisPort) {
    ini += `\n[cluster]\nredis = redis://127.0.0.1:${redisPort}/0\nnode_id = bench-${i}\n` +
      `lease = ${LEASE}\n`;
  }
  const cfg = path.join(tmp, `node-${i}.ini`);
  fs.writeFileSync(cfg, ini);
  const child = track(spawn(POLLCAST, ['-c', cfg], { stdio: ['ignore', 'pipe', 'pipe'] }));
  child.stderr.pipe(fs.createWriteStream(path.join(tmp, `node-${i}.log`)));
  const m = await waitLine(child.stdout, /listening on port (\d+)/, 15000, `node ${i}`);
  return { child, port: Number(m[1]), pid: child.pid };
}

// ---- the load client ---------------------------------------------------------------------------
function startLoad(url, n, maxSecs, pid) {
  const a = ['-n', String(n), '--rate', String(RATE), '--duration', String(maxSecs),
    '--src-ips', '8', '--settle', '1', '--url', url, '--pid', String(pid)];
  const child = track(spawn(SSELOAD, a, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (err += c));
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
  // 'close', not 'exit': the report may still be in the pipe when the process has exited.
  const done = new Promise((resolve) => child.on('close', (code) => {
    try {
      resolve(JSON.parse(out));
    } catch {
      resolve({ error: `sseload exit ${code}: ${err.slice(-500)}` });
    }
  }));
  return { child, ready, done, progress };
}

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pollcast-cluster-bench-'));
  const load0 = os.loadavg()[0];
  const up = makeUpstream();
  const uport = await up.listen();
  const redis = SINGLE ? null : await startRedis(tmp);
  const nodes = [];
  for (let i = 0; i < (SINGLE ? 1 : NODES); i++) {
    nodes.push(await startNode(tmp, i, uport, redis && redis.port));
  }
  const share = Math.ceil(SUBS / NODES);
  const maxSecs = Math.ceil(SUBS / RATE) + SECS + TAIL + 30;
  const loads = [];
  for (let i = 0; i < NODES; i++) {
    const node = nodes[SINGLE ? 0 : i];
    loads.push(startLoad(`http://127.0.0.1:${node.port}/streams/load`,
      Math.min(share, SUBS - i * share), maxSecs, node.pid));
  }
  let result;
  try {
    await Promise.all(loads.map((l) => l.ready));
    const cmds0 = redis ? await commandStats(redis.port) : null;
    const rcpu0 = redis ? cpuTicks(redis.pid) : 0;
    const seq0 = up.st.seq;
    const t0 = performance.now();
    up.st.active = true;
    await sleep(SECS * 1000);
    up.st.active = false;
    const windowS = (performance.now() - t0) / 1000;
    const cmds1 = redis ? await commandStats(redis.port) : null;
    const rcpu1 = redis ? cpuTicks(redis.pid) : 0;
    const changes = up.st.seq - seq0;
    // Every client on the final version, then the report.
    const t1 = performance.now();
    let convergeS = null;
    while (performance.now() - t1 < TAIL * 1000) {
      if (loads.every((l) => l.progress.max === up.st.seq && l.progress.at === l.progress.alive)) {
        convergeS = (performance.now() - t1) / 1000;
        break;
      }
      await sleep(100);
    }
    await sleep(300);
    await Promise.all(loads.map((l) => stopChild(l.child)));
    const per = await Promise.all(loads.map((l) => l.done));
    const commands = {};
    let total = 0;
    if (redis) {
      for (const [k, v] of Object.entries(cmds1)) {
        const d = v - (cmds0[k] || 0) - (k === 'info' ? 1 : 0); // our own INFO
        if (d > 0) {
          commands[k] = d;
          total += d;
        }
      }
    }
    const worst = (f) => Math.max(...per.map((p) => (p.latency_ms ? p.latency_ms[f] : NaN)));
    result = {
      scenario: SINGLE ? 'fanout-single' : `fanout-cluster-${NODES}`,
      subs: SUBS,
      secs: SECS,
      interval_ms: INTERVAL,
      nodes: nodes.length,
      changes,
      final_seq: up.st.seq,
      upstream_requests: up.st.requests,
      converged: per.every((p) => p.seq && p.seq.max === up.st.seq &&
        p.seq.at_max === p.alive_at_end && p.alive_at_end === p.conns),
      converge_s: convergeS,
      latency_ms_worst_client: { p50: worst('p50'), p99: worst('p99'), max: worst('max') },
      clients: per.map((p, i) => ({ node: SINGLE ? 0 : i, conns: p.conns,
        alive_at_end: p.alive_at_end, errors: p.errors, id_gaps: p.id_gaps,
        data_events: p.data_events, latency_ms: p.latency_ms, seq: p.seq,
        events_per_s: p.events_per_s, node_cpu_pct: p.proc && p.proc.cpu_pct,
        node_rss_end_kb: p.proc && p.proc.rss_end_kb, error: p.error })),
      node_cpu_pct: SINGLE ? [per[0].proc && per[0].proc.cpu_pct] :
        per.map((p) => p.proc && p.proc.cpu_pct),
      redis: redis ? {
        cpu_pct: Math.round(((rcpu1 - rcpu0) / HZ / windowS) * 1000) / 10,
        commands,
        // INFO commandstats counts the commands scripts run too: all of them, and the ones
        // the nodes sent (EVAL for lease and append, XREAD for the readers).
        commands_per_change: changes ? Math.round((total / changes) * 10) / 10 : null,
        sent_per_change: changes ? Math.round((['eval', 'evalsha', 'xread', 'client', 'select',
          'ping', 'auth'].reduce((a, k) => a + (commands[k] || 0), 0) / changes) * 10) / 10 : null,
      } : null,
      window_s: Math.round(windowS * 100) / 100,
      tmp,
    };
  } finally {
    await Promise.all(loads.map((l) => stopChild(l.child)));
    for (const n of nodes) await stopChild(n.child);
    if (redis) await stopChild(redis.child);
    await up.close();
  }
  result.machine = { nproc: os.cpus().length, cpu: os.cpus()[0].model, kernel: os.release(),
    date: new Date().toISOString(), loadavg1: [load0, os.loadavg()[0]] };
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

main().catch((e) => {
  log(e.stack || String(e));
  process.exit(1);
});

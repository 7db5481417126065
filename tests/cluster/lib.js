// Shared pieces of the cluster suite (issue 9): a real redis-server per test on a free loopback
// port without persistence, stopped (or killed and restarted on the same port) by PID; pollcast
// nodes started with a generated [cluster] section through the integration harness
// (tests/integration/harness.js: readiness awaited, teardown by PID, sanitizer reports fail);
// redis-cli to read what the nodes wrote; and a book that checks that every event id any
// subscriber saw, on any node, stands for one document.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const h = require('../integration/harness');

const { assert, T, log, within } = h;

// ---- free ports -------------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

// ---- commands ---------------------------------------------------------------------------------

// Runs argv without a shell, bounded by ms; resolves {code, stdout (Buffer), stderr}.
function exec(argv, { ms = T(10000), input = null } = {}) {
  return new Promise((resolve, reject) => {
    const child = h.track(spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] }));
    const out = [];
    let err = '';
    child.stdout.on('data', (c) => out.push(c));
    child.stderr.on('data', (c) => (err += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`timeout after ${ms} ms: ${argv.join(' ')}`));
    }, ms);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${argv[0]}: ${e.message}`));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: err });
    });
    if (input !== null) child.stdin.end(input);
    else child.stdin.end();
  });
}

// ---- redis-server -----------------------------------------------------------------------------

class Redis {
  // password: the server then requires it (requirepass), and url carries it.
  constructor(port, dir, password = null) {
    this.port = port;
    this.dir = dir;
    this.password = password;
    this.url = `redis://${password ? `:${password}@` : ''}127.0.0.1:${port}/0`;
    this.child = null;
    this.pid = 0;
    this.starts = 0;
  }

  // Starts redis-server on this.port (the same port on a restart) and resolves once it accepts
  // connections. No persistence: a restart loses every key.
  async start() {
    this.starts++;
    const child = h.track(spawn('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', this.dir, '--dbfilename', `dump-${this.port}.rdb`, '--protected-mode', 'no',
      // DUMP then holds string payloads as they are, so that a grep of DUMP's bytes is a
      // grep of the values.
      '--rdbcompression', 'no', '--loglevel', 'notice', '--logfile', '',
      ...(this.password ? ['--requirepass', this.password] : []),
    ], { stdio: ['ignore', 'pipe', 'pipe'] }));
    this.child = child;
    this.pid = child.pid;
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => {
      resolve({ code, signal });
    }));
    let buf = '';
    await within(new Promise((resolve, reject) => {
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (c) => {
        buf += c;
        if (/Ready to accept connections/.test(buf)) resolve();
      });
      child.stderr.on('data', (c) => (buf += c));
      this.exited.then((e) => reject(new Error(`redis-server exited (${e.code}/${e.signal}) ` +
        `before it was ready:\n${buf}`)));
    }), T(10000), `redis-server on port ${this.port} to be ready`);
    this.log = () => buf;
    log(`redis-server pid ${this.pid} on port ${this.port} (start ${this.starts})`);
    return this;
  }

  // Stops redis-server with signal (SIGKILL: as a crash) and waits for its exit.
  async stop(signal = 'SIGTERM') {
    if (!this.child || this.child.exitCode !== null || this.child.signalCode !== null) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      // already gone
    }
    await within(this.exited, T(10000), `redis-server ${this.pid} to exit after ${signal}`);
  }

  // redis-cli with args; resolves its stdout as a string (or a Buffer with {raw: true}).
  async cli(args, { raw = false, json = false } = {}) {
    const argv = ['redis-cli', '-h', '127.0.0.1', '-p', String(this.port)];
    if (this.password) argv.push('-a', this.password, '--no-auth-warning');
    if (json) argv.push('--json');
    const r = await exec([...argv, ...args]);
    assert.equal(r.code, 0, `redis-cli ${args.join(' ')}: ${r.stderr}`);
    return raw ? r.stdout : r.stdout.toString('utf8');
  }

  async json(args) {
    const text = (await this.cli(args, { json: true })).trim();
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Error(`redis-cli --json ${args.join(' ')}: not JSON: ${text.slice(0, 300)}`);
    }
  }

  // Every key of database 0 (SCAN, as an operator would).
  async keys() {
    const out = await this.cli(['--scan']);
    return out.split('\n').filter(Boolean);
  }

  // {command: calls} from INFO commandstats.
  async commandStats() {
    const out = await this.cli(['INFO', 'commandstats']);
    const stats = {};
    for (const l of out.split(/\r?\n/)) {
      const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(l);
      if (m) stats[m[1]] = Number(m[2]);
    }
    return stats;
  }

  // Every entry of every stream key: [{key, entry, fields: {name: value}}], oldest first per key.
  async streamEntries() {
    const out = [];
    for (const key of await this.keys()) {
      if ((await this.cli(['TYPE', key])).trim() !== 'stream') continue;
      const entries = await this.json(['XRANGE', key, '-', '+']);
      for (const [entry, flat] of entries) {
        const fields = {};
        for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
        out.push({ key, entry, fields });
      }
    }
    return out;
  }
}

let redisDir = null;
async function startRedis({ password = null } = {}) {
  if (!redisDir) redisDir = fs.mkdtempSync(path.join(h.tmpDir(), 'redis-'));
  const r = new Redis(await freePort(), redisDir, password);
  await r.start();
  h.defer(() => r.stop('SIGKILL'));
  return r;
}

// ---- pollcast nodes ---------------------------------------------------------------------------

// INI text of one node: the harness's test [server] defaults, the upstreams, and [cluster].
function nodeConfig(redis, nodeId, { server = {}, upstreams = {}, allow = null, lease = '1s',
  cluster = {} } = {}) {
  const kv = { redis: redis.url, node_id: nodeId, lease, ...cluster };
  const extra = ['[cluster]', ...Object.entries(kv).map(([k, v]) => `${k} = ${v}`), ''].join('\n');
  return h.configText({ server: { keepalive: '1s', ...server }, upstreams, allow, extra });
}

// Starts `count` nodes (node-a, node-b, ...) with the same definitions; resolves once each
// listens and says on /readyz that it is ready.
async function startNodes(redis, count, opts = {}) {
  const nodes = [];
  for (let i = 0; i < count; i++) {
    const id = `node-${String.fromCharCode(97 + i)}`;
    const pc = await h.startPollcast(nodeConfig(redis, id, opts), { name: id });
    pc.nodeId = id;
    nodes.push(pc);
  }
  for (const pc of nodes) await waitReady(pc);
  return nodes;
}

// /readyz of a node: {status, body, json}.
async function readyz(pc) {
  const r = await h.requestJson('GET', `${pc.base}/readyz`);
  return { status: r.status, body: r.body, json: r.json };
}

async function waitReady(pc, ms = T(10000)) {
  const end = Date.now() + ms;
  let last = null;
  while (Date.now() < end) {
    last = await readyz(pc).catch((e) => ({ status: 0, body: e.message }));
    if (last.status === 200) return last;
    await h.sleep(50);
  }
  throw new Error(`${pc.name}: /readyz not 200 within ${ms} ms: ${last && last.status} ` +
    `${last && last.body}`);
}

// The value of one metric family summed over its samples (labels ignored), or NaN when absent.
function metricSum(m, family) {
  let sum = NaN;
  for (const [k, v] of Object.entries(m)) {
    if (k === family || k.startsWith(`${family}{`)) sum = (Number.isNaN(sum) ? 0 : sum) + v;
  }
  return sum;
}

async function topicsOwned(pc) {
  const v = metricSum(await pc.metrics(), 'pollcast_cluster_topics_owned');
  assert.ok(!Number.isNaN(v), `${pc.name}: /metrics has no pollcast_cluster_topics_owned`);
  return v;
}

// Resolves with the one node of `nodes` whose pollcast_cluster_topics_owned is `count` (the
// others own none), waiting up to ms for the cluster to settle.
async function waitOwner(nodes, { ms = T(8000), count = 1, not = null } = {}) {
  const end = Date.now() + ms;
  let seen = [];
  for (;;) {
    const live = nodes.filter((n) => !n.exitInfo && n !== not);
    seen = [];
    for (const n of live) seen.push([n, await topicsOwned(n).catch(() => NaN)]);
    const owners = seen.filter(([, v]) => v > 0);
    if (owners.length === 1 && owners[0][1] === count) return owners[0][0];
    if (Date.now() > end) {
      throw new Error(`no single owner within ${ms} ms: ` +
        seen.map(([n, v]) => `${n.name}=${v}`).join(' '));
    }
    await h.sleep(50);
  }
}

// ---- what subscribers saw ---------------------------------------------------------------------

// Every id any watched subscriber received maps to the document it led to; the same id with two
// documents anywhere (two nodes, a node before and after a failover) is recorded as a conflict.
class IdBook {
  constructor() {
    this.docs = new Map(); // id -> {doc: JSON text, by: subscriber name, event}
    this.conflicts = [];
  }

  watch(follower) {
    follower.onEventHooks.push((ev) => {
      if ((ev.event !== 'data' && ev.event !== 'patch') || follower.doc === undefined) return;
      this.note(ev.id, JSON.stringify(follower.doc), follower.name, ev.event);
    });
    return follower;
  }

  note(id, doc, by, event) {
    const had = this.docs.get(id);
    if (!had) this.docs.set(id, { doc, by, event });
    else if (had.doc !== doc) {
      this.conflicts.push(`id ${id}: ${had.by} (${had.event}) got ${had.doc.slice(0, 200)}, ` +
        `${by} (${event}) got ${doc.slice(0, 200)}`);
    }
  }

  check() {
    assert.deepEqual(this.conflicts.slice(0, 5), [], `${this.conflicts.length} ids stand for ` +
      'two different documents');
  }
}

// Checks a subscriber's id sequence: one epoch, and every seq after the first the previous + 1
// (no gap, no duplicate); returns the [epoch, seq] pairs.
function consecutiveIds(f, { from = 0 } = {}) {
  const ids = f.events.slice(from).filter((e) => e.event === 'data' || e.event === 'patch')
    .map((e) => ({ id: e.id, p: h.parseId(e.id) }));
  for (let i = 1; i < ids.length; i++) {
    const [a, b] = [ids[i - 1], ids[i]];
    assert.equal(b.p[0], a.p[0], `${f.name}: epoch changed from ${a.id} to ${b.id}`);
    assert.equal(b.p[1], a.p[1] + 1n, `${f.name}: ${b.id} does not follow ${a.id} (gap or ` +
      'duplicate)');
  }
  return ids;
}

// Waits until pred() is true (polled every 50 ms) or ms passes; returns the last value.
async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timeout after ${ms} ms waiting for ${what}`);
    await h.sleep(50);
  }
}

// Lines of a node's stderr matching re (from index `from`).
function logLines(pc, re, from = 0) {
  return pc.stderrLines.slice(from).filter((l) => re.test(l));
}

async function waitLog(pc, re, ms = T(8000)) {
  return waitFor(() => logLines(pc, re)[0], ms, `${pc.name}: a log line matching ${re}`);
}

// Sends SIGSTOP / SIGCONT to a node by PID.
function signal(pc, sig) {
  process.kill(pc.pid, sig);
  log(`${sig} -> ${pc.name} (pid ${pc.pid})`);
}

module.exports = {
  h, freePort, exec, Redis, startRedis, nodeConfig, startNodes, readyz, waitReady, metricSum,
  topicsOwned, waitOwner, IdBook, consecutiveIds, waitFor, logLines, waitLog, signal,
};

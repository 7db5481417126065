// Shared harness of pollcast's integration tests: starts the scripted upstream
// (upstream_server.js) and the real pollcast binary with a generated config, waits for each to say
// it is ready (never sleep-and-hope), connects real SSE clients (node `eventsource`, a raw
// node:http client, `curl -N`) that apply the patches they receive with fast-json-patch, and
// tears everything down by PID, even when a test fails or times out.
//
// A test script is `run(name, async (t) => {...}, {timeoutMs})`; the pollcast binary is the first
// command-line argument or $POLLCAST_BIN. A binary whose name ends in -asan (or
// POLLCAST_IT_ASAN=1) scales work down (SCALE) and stretches timing bounds (SLOW).
// POLLCAST_WRAPPER (optional) is a command line that prefixes every pollcast command, e.g.
// "valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99": the daemon
// then runs under it (same PID, signals and exit status pass through), work is scaled down and
// timing bounds are stretched further (POLLCAST_IT_SCALE, POLLCAST_IT_SLOW still override).
'use strict';

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const { createRequire } = require('node:module');
const os = require('node:os');
const path = require('node:path');
const { isDeepStrictEqual, inspect } = require('node:util');

const SRC = process.env.POLLCAST_SRC || path.resolve(__dirname, '..', '..');
const ORACLE_DIR = path.join(SRC, 'tests', 'oracle');

// ---- configuration of the run ---------------------------------------------------------------

const BIN = (() => {
  const arg = process.argv.slice(2).find((a) => !a.startsWith('--'));
  const bin = arg || process.env.POLLCAST_BIN;
  if (!bin) {
    process.stderr.write('FAIL: no pollcast binary: pass its path or set POLLCAST_BIN\n');
    process.exit(1);
  }
  try {
    fs.accessSync(bin, fs.constants.X_OK);
  } catch {
    process.stderr.write(`FAIL: pollcast binary ${bin} is missing or not executable\n`);
    process.exit(1);
  }
  return path.resolve(bin);
})();
const ASAN = /-asan$/.test(BIN) || process.env.POLLCAST_IT_ASAN === '1';
const WRAPPER = (process.env.POLLCAST_WRAPPER || '').split(/\s+/).filter(Boolean);
// Work multiplier (counts of subscribers, changes) and timing multiplier (bounds, timeouts).
const SCALE = Number(process.env.POLLCAST_IT_SCALE || (ASAN || WRAPPER.length ? 0.25 : 1));
const SLOW = Number(process.env.POLLCAST_IT_SLOW || (WRAPPER.length ? 8 : ASAN ? 3 : 1));

// spawn() of the pollcast binary with args, under POLLCAST_WRAPPER when it is set.
function spawnBin(args, opts) {
  if (!WRAPPER.length) return spawn(BIN, args, opts);
  return spawn(WRAPPER[0], [...WRAPPER.slice(1), BIN, ...args], opts);
}

function scaled(n, min = 1) {
  return Math.max(min, Math.round(n * SCALE));
}

// A duration bound stretched for slow variants.
function T(ms) {
  return Math.round(ms * SLOW);
}

const t0 = Date.now();
function log(...args) {
  const s = args.map((a) => (typeof a === 'string' ? a : inspect(a, { depth: 4 }))).join(' ');
  process.stdout.write(`[${((Date.now() - t0) / 1000).toFixed(2)}s] ${s}\n`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- npm oracles ----------------------------------------------------------------------------

const oracleRequire = createRequire(path.join(ORACLE_DIR, 'package.json'));
function npm(name) {
  try {
    return oracleRequire(name);
  } catch (e) {
    throw new Error(`npm package ${name} is not installed in tests/oracle/node_modules ` +
      `(run scripts/install-deps.sh): ${e.message}`);
  }
}
const jsonpatch = npm('fast-json-patch');
let EventSourceClass = null;
function EventSource() {
  if (!EventSourceClass) EventSourceClass = npm('eventsource').EventSource;
  return EventSourceClass;
}

// ---- processes and teardown -----------------------------------------------------------------

const children = new Set(); // live child processes, killed by PID on exit
const cleanups = []; // async (ok) => {}, run last-in first-out at the end of the test
const diagnostics = []; // () => string, printed when the test fails

function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

function killAll() {
  for (const c of children) {
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
process.on('exit', killAll);

function defer(fn) {
  cleanups.push(fn);
}

// Rejects with `what` when p has not settled within ms.
function within(p, ms, what) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// Runs a test: body(t) gets {step}; the whole test is bounded by timeoutMs (stretched by SLOW).
// Teardown always runs; the process exits 0 on success, 1 on failure.
async function run(name, body, { timeoutMs = 120000 } = {}) {
  log(`${name}: pollcast ${BIN}${ASAN ? ' (ASan: scale ' + SCALE + ', slow x' + SLOW + ')' : ''}` +
    (WRAPPER.length ? ` under ${WRAPPER.join(' ')} (scale ${SCALE}, slow x${SLOW})` : ''));
  let failure = null;
  const steps = [];
  const t = {
    async step(stepName, fn) {
      const s = Date.now();
      log(`-- ${stepName}`);
      const r = await fn();
      steps.push(stepName);
      log(`ok ${stepName} (${Date.now() - s} ms)`);
      return r;
    },
  };
  try {
    await within(body(t), T(timeoutMs), `whole test ${name}`);
  } catch (e) {
    failure = e;
  }
  while (cleanups.length) {
    const fn = cleanups.pop();
    try {
      await within(Promise.resolve().then(() => fn(!failure)), T(15000), 'teardown');
    } catch (e) {
      if (!failure) failure = e;
      else log(`teardown: ${e.message}`);
    }
  }
  killAll();
  if (failure) {
    for (const d of diagnostics) {
      try {
        process.stdout.write(d());
      } catch {
        // best effort
      }
    }
    process.stdout.write(`FAIL ${name}: ${failure && failure.stack ? failure.stack : failure}\n`);
    process.exit(1);
  }
  log(`PASS ${name}: ${steps.length} steps in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  process.exit(0);
}

// Calls onLine for each line of a readable stream.
function lines(stream, onLine) {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (c) => {
    buf += c;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  stream.on('end', () => {
    if (buf) onLine(buf);
  });
}

// ---- plain HTTP -----------------------------------------------------------------------------

// One request on a fresh connection. Resolves {status, headers, body (string)}.
function request(method, url, { headers = {}, body, timeoutMs = T(10000) } = {}) {
  return within(new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers,
        body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  }), timeoutMs, `${method} ${url}`);
}

async function requestJson(method, url, opts) {
  const r = await request(method, url, opts);
  try {
    r.json = JSON.parse(r.body);
  } catch {
    r.json = undefined;
  }
  return r;
}

// ---- the scripted upstream ------------------------------------------------------------------

class Upstream {
  constructor(child, port, host = '127.0.0.1') {
    this.child = child;
    this.port = port;
    this.host = host;
    this.base = `http://${host}:${port}`;
  }

  url(p) {
    return this.base + p;
  }

  // Serves body (a string as is, anything else as JSON) at path p.
  async put(p, body) {
    const text = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    const r = await requestJson('PUT', `${this.base}/_control/doc?path=${encodeURIComponent(p)}`,
      { body: text });
    assert.equal(r.status, 200, `upstream PUT ${p}: ${r.body}`);
    return r.json;
  }

  async remove(p) {
    await request('DELETE', `${this.base}/_control/doc?path=${encodeURIComponent(p)}`);
  }

  // Sets the mode of path p: mode(p, 'status', {status: 500}); mode(p, 'normal').
  async mode(p, mode, opts = {}) {
    const r = await requestJson('POST', `${this.base}/_control/mode`,
      { body: JSON.stringify({ path: p, mode, ...opts }) });
    assert.equal(r.status, 200, `upstream mode ${p} ${mode}: ${r.body}`);
  }

  // {count, inflight, max_inflight, headers, times_ms} of path p.
  async stats(p) {
    const r = await requestJson('GET', `${this.base}/_control/stats?path=${encodeURIComponent(p)}`);
    assert.equal(r.status, 200);
    return r.json;
  }

  // Resolves when path p has seen at least n requests; returns its stats.
  async waitRequests(p, n, ms, what = '') {
    const end = Date.now() + ms;
    for (;;) {
      const s = await this.stats(p);
      if (s.count >= n) return s;
      if (Date.now() > end) {
        throw new Error(`upstream ${p}: ${s.count} requests, waited for ${n} ${what}`);
      }
      await sleep(25);
    }
  }
}

// host: the loopback address it listens on (127.0.0.1 unless told, e.g. 127.0.0.2).
async function startUpstream({ host = '127.0.0.1' } = {}) {
  const child = track(spawn(process.execPath,
    [path.join(__dirname, 'upstream_server.js'), '--host', host],
    { stdio: ['pipe', 'pipe', 'pipe'] }));
  const errLines = [];
  lines(child.stderr, (l) => errLines.push(l));
  const port = await within(new Promise((resolve, reject) => {
    lines(child.stdout, (l) => {
      try {
        const m = JSON.parse(l);
        if (m.port) resolve(m.port);
      } catch {
        // not the port line
      }
    });
    child.on('exit', (code) => reject(new Error(`upstream server exited (${code}): ` +
      errLines.join('\n'))));
  }), T(10000), 'upstream server start');
  defer(() => {
    try {
      process.kill(child.pid, 'SIGTERM');
    } catch {
      // gone
    }
  });
  return new Upstream(child, port, host);
}

// ---- pollcast -------------------------------------------------------------------------------

// INI text from {server: {...}, upstreams: {name: {...}}, allow: {...}}. Values that are arrays
// become repeated keys. The server section gets test defaults: a free loopback port, no
// per-address limits (every client is 127.0.0.1), no access log, and io_threads from
// $POLLCAST_IT_IO_THREADS when it is set (the -io1 and -io2 variants of the stream tests).
function configText({ server = {}, upstreams = {}, allow = null, extra = '' } = {}) {
  const out = [];
  const section = (header, kv) => {
    out.push(header);
    for (const [k, v] of Object.entries(kv)) {
      for (const one of Array.isArray(v) ? v : [v]) out.push(`${k} = ${one}`);
    }
    out.push('');
  };
  section('[server]', {
    listen: '127.0.0.1:0',
    max_subscribers_per_ip: 0,
    connect_rate_per_ip: 0,
    access_log: false,
    ...(process.env.POLLCAST_IT_IO_THREADS ? { io_threads: process.env.POLLCAST_IT_IO_THREADS } : {}),
    ...server,
  });
  for (const [name, kv] of Object.entries(upstreams)) section(`[upstream ${name}]`, kv);
  if (allow) section('[allow]', allow);
  return out.join('\n') + extra;
}

let tmpRoot = null;
function tmpDir() {
  if (!tmpRoot) {
    tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'pollcast-it-'));
    defer(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));
  }
  return tmpRoot;
}

let configCount = 0;
function writeConfig(text, name) {
  const file = path.join(tmpDir(), name || `pollcast-${++configCount}.ini`);
  fs.writeFileSync(file, text);
  return file;
}

const SANITIZER_RE = /ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: \w+Sanitizer/;

class Pollcast {
  constructor(child, port, name) {
    this.child = child;
    this.pid = child.pid;
    this.port = port;
    this.name = name;
    this.base = `http://127.0.0.1:${port}`;
    this.stderrLines = [];
    this.exitInfo = null;
  }

  stderr() {
    return this.stderrLines.join('\n');
  }

  // VmRSS of the process in KiB.
  rssKb() {
    const s = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(s);
    return m ? Number(m[1]) : NaN;
  }

  // /metrics as {"name" or "name{labels}": number}.
  async metrics() {
    const r = await request('GET', `${this.base}/metrics`);
    assert.equal(r.status, 200, '/metrics');
    const m = {};
    for (const l of r.body.split('\n')) {
      if (!l || l.startsWith('#')) continue;
      const i = l.lastIndexOf(' ');
      m[l.slice(0, i)] = Number(l.slice(i + 1));
    }
    return m;
  }

  // Sends signal and waits for the exit; resolves {code, signal, ms}. Kills with SIGKILL and
  // rejects when it takes longer than ms.
  async stop({ signal = 'SIGTERM', ms = T(8000) } = {}) {
    if (this.exitInfo) return this.exitInfo;
    const sent = Date.now();
    try {
      process.kill(this.pid, signal);
    } catch {
      // already gone: exited resolves anyway
    }
    try {
      const e = await within(this.exited, ms, `${this.name} exit after ${signal}`);
      return { ...e, ms: e.at - sent };
    } catch (err) {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        // gone
      }
      throw err;
    }
  }
}

// Starts pollcast with the given config (INI text, or an object for configText) and resolves
// once it printed "listening on port N". At teardown of a passing test it is stopped with
// SIGTERM and must exit 0 without sanitizer reports.
async function startPollcast(config, { name = 'pollcast', env = {}, args = null, cwd } = {}) {
  const text = typeof config === 'string' ? config : configText(config);
  const file = writeConfig(text);
  const argv = args || ['-c', file];
  const child = track(spawnBin(argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
    cwd,
  }));
  const pc = new Pollcast(child, 0, name);
  pc.configFile = file;
  lines(child.stderr, (l) => {
    pc.stderrLines.push(l);
    if (pc.stderrLines.length > 4000) pc.stderrLines.splice(0, 1000);
  });
  pc.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      pc.exitInfo = { code, signal, at: Date.now() };
      resolve(pc.exitInfo);
    });
  });
  diagnostics.push(() => `---- ${name} (pid ${pc.pid}) stderr, last lines:\n` +
    pc.stderrLines.slice(-60).join('\n') + '\n');
  const port = await within(new Promise((resolve, reject) => {
    lines(child.stdout, (l) => {
      const m = /^listening on port (\d+)$/.exec(l);
      if (m) resolve(Number(m[1]));
    });
    pc.exited.then((e) => reject(new Error(`${name} exited (${e.code}/${e.signal}) before ` +
      `listening:\n${pc.stderr()}`)));
  }), T(15000), `${name} to print "listening on port N"`);
  pc.port = port;
  pc.base = `http://127.0.0.1:${port}`;
  defer(async (ok) => {
    if (pc.exitInfo) return;
    if (!ok) {
      try {
        process.kill(pc.pid, 'SIGKILL');
      } catch {
        // gone
      }
      return;
    }
    const e = await pc.stop();
    assert.equal(e.code, 0, `${name} exit status after SIGTERM at teardown`);
    assert.ok(!SANITIZER_RE.test(pc.stderr()), `${name}: sanitizer report:\n${pc.stderr()}`);
  });
  return pc;
}

// Runs pollcast to completion with args; resolves {code, signal, stdout, stderr}.
function runPollcast(args, { env = {}, ms = T(15000) } = {}) {
  return within(new Promise((resolve) => {
    const child = track(spawnBin(args, { stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env } }));
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  }), ms, `pollcast ${args.join(' ')}`);
}

// ---- SSE ------------------------------------------------------------------------------------

// An incremental text/event-stream parser (the WHATWG algorithm): calls onEvent({id, event,
// data, lastEventId}) for each dispatched event (id is undefined when the event had no id
// field), onComment(text) and onRetry(ms).
class SseParser {
  constructor({ onEvent, onComment = () => {}, onRetry = () => {} }) {
    this.onEvent = onEvent;
    this.onComment = onComment;
    this.onRetry = onRetry;
    this.buf = '';
    this.reset();
    this.lastEventId = '';
  }

  reset() {
    this.data = null;
    this.event = '';
    this.id = undefined;
    this.started = false;
  }

  // True when bytes of an unfinished event are pending (a cut stream).
  partial() {
    return this.buf.length > 0 || this.started;
  }

  feed(text) {
    this.buf += text;
    let start = 0;
    for (;;) {
      let i = start;
      const n = this.buf.length;
      while (i < n && this.buf[i] !== '\n' && this.buf[i] !== '\r') i++;
      if (i >= n) break;
      if (this.buf[i] === '\r' && i + 1 >= n) break; // \r\n may be split across chunks
      const line = this.buf.slice(start, i);
      start = i + (this.buf[i] === '\r' && this.buf[i + 1] === '\n' ? 2 : 1);
      this.line(line);
    }
    this.buf = this.buf.slice(start);
  }

  line(l) {
    if (l === '') {
      if (this.id !== undefined) this.lastEventId = this.id;
      if (this.data !== null) {
        this.onEvent({ id: this.id, event: this.event || 'message', data: this.data,
          lastEventId: this.lastEventId });
      }
      this.reset();
      return;
    }
    if (l[0] === ':') {
      this.onComment(l.slice(1).replace(/^ /, ''));
      return;
    }
    this.started = true;
    const c = l.indexOf(':');
    const field = c < 0 ? l : l.slice(0, c);
    let value = c < 0 ? '' : l.slice(c + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') this.data = this.data === null ? value : this.data + '\n' + value;
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.onRetry(Number(value));
  }
}

const ID_RE = /^[0-9A-Za-z._-]+$/;

// pollcast's ids are "<epoch base36>.<seq base36>": [epoch, seq] as BigInts.
function parseId(id) {
  const m = /^([0-9a-z]+)\.([0-9a-z]+)$/.exec(id || '');
  if (!m) return null;
  const b36 = (s) => [...s].reduce((v, ch) => v * 36n + BigInt(parseInt(ch, 36)), 0n);
  return [b36(m[1]), b36(m[2])];
}

function idLess(a, b) {
  return a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
}

// A subscriber's view of a stream: the document built from data and patch events (patches
// applied with fast-json-patch, validating), every event received, and checks that hold for
// every event (ids well-formed and strictly increasing, patches applicable). Transports feed it
// through handle(). Waits (until) fail at once when a check failed.
class Follower {
  // doc: the document the client already holds (a resuming client); after: its last id.
  constructor(name, { doc, after } = {}) {
    this.name = name;
    this.doc = doc === undefined ? undefined : clone(doc);
    this.events = [];
    this.comments = [];
    this.retries = [];
    this.counts = {};
    this.lastId = after ? { id: after, parsed: parseId(after) } : null;
    if (this.lastId && !this.lastId.parsed) this.lastId = null;
    this.failure = null;
    this.waiters = new Set();
    this.onEventHooks = [];
  }

  count(type) {
    return this.counts[type] || 0;
  }

  // Events of a type (all when omitted), from index `from` of the event list.
  list(type, from = 0) {
    return this.events.slice(from).filter((e) => !type || e.event === type);
  }

  fail(msg) {
    if (!this.failure) this.failure = new Error(`${this.name}: ${msg}`);
    this.notify();
  }

  handle(ev) {
    ev.t = Date.now();
    this.events.push(ev);
    this.counts[ev.event] = (this.counts[ev.event] || 0) + 1;
    if (ev.event === 'data' || ev.event === 'patch') {
      if (typeof ev.id !== 'string' || !ID_RE.test(ev.id) || ev.id.length > 40) {
        this.fail(`${ev.event} event with a bad id ${inspect(ev.id)}`);
      } else {
        const p = parseId(ev.id);
        if (!p) this.fail(`id ${ev.id} is not <epoch>.<seq>`);
        else if (this.lastId && !idLess(this.lastId.parsed, p)) {
          this.fail(`id ${ev.id} does not follow ${this.lastId.id}`);
        }
        this.lastId = { id: ev.id, parsed: p };
      }
      try {
        if (ev.event === 'data') {
          this.doc = JSON.parse(ev.data);
        } else {
          if (this.doc === undefined) throw new Error('a patch before any data event');
          const ops = JSON.parse(ev.data);
          if (!Array.isArray(ops)) throw new Error('patch data is not an array');
          this.doc = jsonpatch.applyPatch(this.doc, ops, true, true).newDocument;
        }
      } catch (e) {
        this.fail(`${ev.event} ${ev.id}: ${e.message} (data ${String(ev.data).slice(0, 300)})`);
      }
    } else if (ev.event === 'upstream-error' || ev.event === 'upstream-recovered' ||
      ev.event === 'stream-end') {
      try {
        ev.json = JSON.parse(ev.data);
      } catch (e) {
        this.fail(`${ev.event} data is not JSON: ${ev.data}`);
      }
    } else {
      this.fail(`unexpected event type ${inspect(ev.event)}`);
    }
    for (const h of this.onEventHooks) h(ev);
    this.notify();
  }

  comment(text) {
    this.comments.push({ text, t: Date.now() });
    this.notify();
  }

  retry(ms) {
    this.retries.push(ms);
    this.notify();
  }

  notify() {
    for (const w of this.waiters) w();
  }

  // Resolves with this when pred(this) holds; rejects when ms pass first or a check failed.
  until(pred, ms, what) {
    return new Promise((resolve, reject) => {
      let timer = null;
      const check = () => {
        let ok = false;
        let err = this.failure;
        if (!err) {
          try {
            ok = pred(this);
          } catch (e) {
            err = e;
          }
        }
        if (!ok && !err) return;
        this.waiters.delete(check);
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(this);
      };
      timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`${this.name}: timeout after ${ms} ms waiting for ${what}; ` +
          `${this.events.length} events, last: ` +
          inspect(this.events.slice(-3).map((e) => `${e.event} ${e.id || ''} ` +
            String(e.data).slice(0, 120))) +
          `; doc: ${JSON.stringify(this.doc === undefined ? null : this.doc).slice(0, 300)}`));
      }, ms);
      this.waiters.add(check);
      check();
    });
  }

  hasDoc(target) {
    return this.doc !== undefined && isDeepStrictEqual(this.doc, target);
  }

  waitDoc(target, ms = T(5000), what = 'the expected document') {
    return this.until((f) => f.hasDoc(target), ms, what);
  }

  waitEvent(type, ms = T(5000), from = 0) {
    return this.until((f) => f.list(type, from).length > 0, ms, `a ${type} event`)
      .then((f) => f.list(type, from)[0]);
  }
}

// A stream read with node:http: status and headers, then every event into the Follower.
// ended: the response ended cleanly (the chunked terminator arrived); aborted: it was cut.
class RawStream extends Follower {
  // keepRaw: also keep the body's text as received (this.raw).
  constructor(url, { headers = {}, name = url, doc, after, keepRaw = false } = {}) {
    super(name, { doc, after });
    this.url = url;
    this.keepRaw = keepRaw;
    this.raw = '';
    this.status = null;
    this.ended = false;
    this.aborted = null;
    this.body = '';
    this.parser = new SseParser({
      onEvent: (ev) => this.handle(ev),
      onComment: (c) => this.comment(c),
      onRetry: (ms) => this.retry(ms),
    });
    this.opened = new Promise((resolve, reject) => {
      this.req = http.get(url, { agent: false, headers: { Accept: 'text/event-stream',
        ...headers } }, (res) => {
        this.res = res;
        this.status = res.statusCode;
        this.headers = res.headers;
        res.setEncoding('utf8');
        res.on('data', (c) => {
          this.body += this.status === 200 ? '' : c;
          if (this.keepRaw) this.raw += c;
          if (this.status === 200) this.parser.feed(c);
        });
        res.on('end', () => {
          this.ended = res.complete;
          this.endedAt = Date.now();
          this.notify();
        });
        res.on('aborted', () => {
          this.aborted = this.aborted || new Error('response aborted');
          this.notify();
        });
        res.on('error', (e) => {
          this.aborted = this.aborted || e;
          this.notify();
        });
        resolve(this);
      });
      this.req.on('error', (e) => {
        this.aborted = this.aborted || e;
        this.notify();
        reject(e);
      });
    });
  }

  get closed() {
    return this.ended || !!this.aborted;
  }

  pause() {
    this.res.pause();
  }

  resume() {
    this.res.resume();
  }

  close() {
    this.req.destroy();
  }
}

// Opens a raw stream and resolves once its response headers are in.
async function openRaw(base, p, opts = {}) {
  const s = new RawStream(base + p, opts);
  await within(s.opened, T(10000), `response to GET ${p}`);
  return s;
}

// A stream read by `curl -sN` (a real command-line client), parsed like the others. args: more
// curl options (e.g. ['--http1.0']).
class CurlStream extends Follower {
  constructor(url, { headers = {}, name = `curl ${url}`, doc, after, args: more = [] } = {}) {
    super(name, { doc, after });
    const args = ['-sN', '--no-buffer', ...more];
    for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
    args.push(url);
    this.child = track(spawn('curl', args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    this.parser = new SseParser({
      onEvent: (ev) => this.handle(ev),
      onComment: (c) => this.comment(c),
      onRetry: (ms) => this.retry(ms),
    });
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (c) => this.parser.feed(c));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => {
      this.exitCode = code;
      this.notify();
      resolve(code);
    }));
  }

  close() {
    try {
      process.kill(this.child.pid, 'SIGTERM');
    } catch {
      // gone
    }
  }
}

// A stream read by the `eventsource` package (what browsers' EventSource does, in node),
// through a fetch wrapper that can add a first Last-Event-ID, records the headers of every
// request (reconnections included) and can cut the current response (drop()) so that the client
// reconnects by itself.
class EsStream extends Follower {
  constructor(url, { lastEventId = null, name = `es ${url}` } = {}) {
    super(name);
    this.url = url;
    this.requests = [];
    this.connErrors = [];
    this.opens = 0;
    let first = true;
    this.cut = null;
    const self = this;
    const wrappedFetch = async (u, init) => {
      const headers = { ...(init.headers || {}) };
      if (first && lastEventId !== null) headers['Last-Event-ID'] = lastEventId;
      first = false;
      self.requests.push(headers);
      const res = await fetch(u, { ...init, headers });
      if (!res.body) return res;
      const reader = res.body.getReader();
      let ctl;
      const body = new ReadableStream({
        start(c) {
          ctl = c;
        },
        async pull(c) {
          try {
            const { done, value } = await reader.read();
            if (done) c.close();
            else c.enqueue(value);
          } catch (e) {
            c.error(e);
          }
        },
        cancel() {
          reader.cancel().catch(() => {});
        },
      });
      self.cut = () => {
        reader.cancel().catch(() => {});
        try {
          ctl.close();
        } catch {
          // already closed
        }
      };
      return new Response(body, { status: res.status, headers: res.headers });
    };
    const ES = EventSource();
    this.es = new ES(url, { fetch: wrappedFetch });
    this.es.addEventListener('open', () => {
      this.opens++;
      this.notify();
    });
    this.es.addEventListener('error', (e) => {
      this.connErrors.push(e.message || 'error');
      this.notify();
    });
    for (const type of ['data', 'patch', 'upstream-error', 'upstream-recovered']) {
      this.es.addEventListener(type, (e) => this.handle({ id: e.lastEventId, event: type,
        data: e.data, lastEventId: e.lastEventId }));
    }
  }

  // Ends the current response as if the connection had dropped: the client reconnects after
  // its retry delay, sending Last-Event-ID.
  drop() {
    if (this.cut) this.cut();
  }

  close() {
    this.es.close();
  }
}

// ---- documents ------------------------------------------------------------------------------

// A small seeded PRNG (mulberry32).
function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  next.int = (n) => Math.floor(next() * n);
  next.pick = (arr) => arr[Math.floor(next() * arr.length)];
  next.str = (n, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789') => {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(next() * alphabet.length)];
    return s;
  };
  return next;
}

function clone(v) {
  return v === undefined ? undefined : JSON.parse(JSON.stringify(v));
}

// One raw client connection to port that sends request once connected: what it was sent
// (buf; text() as latin1), when a terminating chunk was first seen (endedAt) and when it closed
// (closedAt); until(pred, ms, what) waits for pred(this) or throws after ms.
class RawConn {
  constructor(port, request) {
    this.buf = Buffer.alloc(0);
    this.closedAt = null;
    this.endedAt = null;
    this.waiters = [];
    this.sock = net.connect(port, '127.0.0.1');
    this.sock.on('connect', () => this.sock.write(request));
    this.sock.on('data', (c) => {
      this.buf = Buffer.concat([this.buf, c]);
      if (this.endedAt === null && this.buf.includes('\r\n0\r\n\r\n')) this.endedAt = Date.now();
      this.notify();
    });
    this.sock.on('error', () => {});
    this.sock.on('close', () => {
      this.closedAt = Date.now();
      this.notify();
    });
  }

  notify() {
    for (const w of this.waiters.splice(0)) w();
  }

  async until(pred, ms, what) {
    const end = Date.now() + ms;
    while (!pred(this)) {
      const left = end - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await Promise.race([new Promise((r) => this.waiters.push(r)), sleep(Math.min(left, 100))]);
    }
  }

  text() {
    return this.buf.toString('latin1');
  }
}

function percentile(values, p) {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

module.exports = {
  assert, ASAN, WRAPPER, BIN, SCALE, SLOW, SRC, T, scaled, log, sleep, within, run, defer, track,
  request, requestJson, startUpstream, startPollcast, runPollcast, configText, writeConfig,
  tmpDir, SseParser, Follower, RawStream, RawConn, CurlStream, EsStream, openRaw, parseId, idLess,
  ID_RE, rng, clone, percentile, jsonpatch, isDeepStrictEqual, SANITIZER_RE,
};

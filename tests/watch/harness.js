// Process plumbing shared by the watch and browser tests: the scripted upstream
// (tests/integration/upstream_server.js), a pollcast started on an OS-chosen port with a generated
// config, a TCP relay between a client and pollcast that records requests and can cut
// connections or inject bytes, and child processes whose output lines can be awaited. No npm
// dependencies. Every process started here is stopped by its pid in stopAll().
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const http = require('http');

const SRC = process.env.POLLCAST_SRC || path.resolve(__dirname, '..', '..');
const children = [];
const servers = [];
const tempDirs = [];

function fail(msg) {
  const e = new Error(msg);
  e.testFailure = true;
  throw e;
}

// A child process whose stdout and stderr are collected line by line.
class Proc {
  constructor(cmd, args, opts = {}) {
    this.name = opts.name || path.basename(cmd);
    this.out = [];
    this.err = [];
    this.waiters = [];
    this.exited = null;
    this.child = spawn(cmd, args, {
      stdio: [opts.stdin || 'pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...(opts.env || {}) },
      cwd: opts.cwd,
    });
    children.push(this);
    const collect = (stream, into) => {
      let partial = '';
      stream.setEncoding('utf8');
      stream.on('data', (s) => {
        partial += s;
        let i;
        while ((i = partial.indexOf('\n')) >= 0) {
          into.push(partial.slice(0, i));
          partial = partial.slice(i + 1);
        }
        this.wake();
      });
      stream.on('end', () => {
        if (partial) into.push(partial);
        partial = '';
        this.wake();
      });
    };
    collect(this.child.stdout, this.out);
    collect(this.child.stderr, this.err);
    this.exitPromise = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exited = { code, signal };
        this.wake();
        resolve(this.exited);
      });
    });
  }

  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  // Resolves with the first line of stream ('out' or 'err') from index `from` matching re.
  async waitLine(re, { stream = 'out', from = 0, timeout = 5000 } = {}) {
    const lines = stream === 'out' ? this.out : this.err;
    const deadline = Date.now() + timeout;
    for (;;) {
      for (let i = from; i < lines.length; i++) if (re.test(lines[i])) return { line: lines[i], index: i };
      if (this.exited) fail(`${this.name} exited (${JSON.stringify(this.exited)}) before printing ${re}\n${this.dump()}`);
      const left = deadline - Date.now();
      if (left <= 0) fail(`${this.name}: no ${stream} line matching ${re} within ${timeout} ms\n${this.dump()}`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async waitExit(timeout = 5000) {
    let t;
    const r = await Promise.race([
      this.exitPromise,
      new Promise((resolve) => {
        t = setTimeout(() => resolve(null), timeout);
      }),
    ]);
    clearTimeout(t);
    if (r === null) fail(`${this.name} did not exit within ${timeout} ms\n${this.dump()}`);
    // Let the last output arrive.
    await new Promise((resolve) => setTimeout(resolve, 50));
    return r;
  }

  kill(sig = 'SIGTERM') {
    if (!this.exited && this.child.pid) {
      try {
        process.kill(this.child.pid, sig);
      } catch (e) {
        /* already gone */
      }
    }
  }

  dump() {
    const tail = (l) => l.slice(-40).map((s) => '  | ' + s).join('\n');
    return `--- ${this.name} stdout:\n${tail(this.out)}\n--- ${this.name} stderr:\n${tail(this.err)}`;
  }
}

function request(port, method, urlPath, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

// The scripted upstream: {port, setDoc(path, text), setMode(obj)}.
async function startUpstream() {
  const p = new Proc(process.execPath, [path.join(SRC, 'tests/integration/upstream_server.js')], { name: 'upstream' });
  const { line } = await p.waitLine(/^\{"port":\d+\}$/);
  const port = JSON.parse(line).port;
  return {
    proc: p,
    port,
    async setDoc(docPath, text) {
      const r = await request(port, 'PUT', '/_control/doc?path=' + encodeURIComponent(docPath), text);
      if (r.status !== 200) fail('upstream control: ' + r.body);
    },
    async setMode(mode) {
      const r = await request(port, 'POST', '/_control/mode', JSON.stringify(mode));
      if (r.status !== 200) fail('upstream control: ' + r.body);
    },
  };
}

// pollcast with the given config text (listen is added); resolves once it prints its port.
async function startPollcast(bin, configText, env = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pollcast-test-'));
  tempDirs.push(dir);
  const file = path.join(dir, 'pollcast.ini');
  fs.writeFileSync(file, '[server]\nlisten = 127.0.0.1:0\n' + configText);
  const p = new Proc(bin, ['serve', '-c', file], { name: 'pollcast', env });
  const { line } = await p.waitLine(/^listening on port \d+$/, { timeout: 10000 });
  return { proc: p, port: Number(line.split(' ').pop()), dir };
}

// A TCP relay to 127.0.0.1:target. Records each connection's request head and the bytes that
// came back; cut() ends every open connection; inject(text, match) adds bytes to the newest open
// connection whose request match(request) accepts, at a point where the stream is between two
// events.
async function startRelay(target) {
  const relay = { conns: [], requests: [], pendingInject: null };
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    const conn = { client, upstream, head: '', down: '', open: true };
    relay.conns.push(conn);
    client.on('data', (d) => {
      if (!conn.headDone) {
        conn.head += d.toString('latin1');
        if (conn.head.includes('\r\n\r\n')) {
          conn.headDone = true;
          conn.request = parseHead(conn.head);
          relay.requests.push(conn.request);
        }
      }
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      conn.down += d.toString('utf8');
      client.write(d);
      if (relay.pendingInject && relay.pendingInject.conn === conn && betweenEvents(conn)) {
        client.write(chunk(relay.pendingInject.text));
        relay.pendingInject = null;
      }
    });
    const end = () => {
      conn.open = false;
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  servers.push(server);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  relay.port = server.address().port;
  relay.cut = () => {
    for (const c of relay.conns) if (c.open) {
      c.open = false;
      c.client.destroy();
      c.upstream.destroy();
    }
  };
  relay.inject = (text, match = () => true) => {
    const open = relay.conns.filter((c) => c.open && c.request && match(c.request));
    const c = open[open.length - 1];
    if (!c) fail('no open connection to inject into');
    if (betweenEvents(c)) c.client.write(chunk(text));
    else relay.pendingInject = { conn: c, text };
  };
  // The ids the server sent on the connection so far, in order.
  relay.ids = (conn) => [...conn.down.matchAll(/^id: (.*)$/gm)].map((m) => m[1]);
  return relay;
}

// pollcast streams with chunked transfer encoding: an event ends a chunk's data.
function betweenEvents(conn) {
  return conn.down.endsWith('\n\n\r\n');
}

function chunk(text) {
  const b = Buffer.from(text);
  return Buffer.concat([Buffer.from(b.length.toString(16) + '\r\n'), b, Buffer.from('\r\n')]);
}

function parseHead(head) {
  const lines = head.split('\r\n');
  const [method, target] = lines[0].split(' ');
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { method, target, headers };
}

async function until(cond, what, timeout = 5000) {
  const deadline = Date.now() + timeout;
  while (!(await cond())) {
    if (Date.now() > deadline) fail('timed out waiting for ' + what);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function stopAll() {
  for (const c of children) c.kill('SIGKILL');
  for (const s of servers) s.close();
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
}

// Runs the async test body; prints "ok"/the failure and sets the exit status.
function main(name, body) {
  const timer = setTimeout(() => {
    console.error(`${name}: overall timeout`);
    stopAll();
    process.exit(1);
  }, 100000);
  body()
    .then(() => {
      console.log(`${name}: ok`);
      process.exitCode = 0;
    })
    .catch((e) => {
      console.error(`${name}: FAIL: ${e.testFailure ? e.message : e.stack}`);
      process.exitCode = 1;
    })
    .finally(() => {
      clearTimeout(timer);
      stopAll();
      setTimeout(() => process.exit(process.exitCode), 100).unref();
    });
}

module.exports = { Proc, request, startUpstream, startPollcast, startRelay, until, fail, main, SRC };

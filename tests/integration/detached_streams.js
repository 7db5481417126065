// Streams are written outside libmicrohttpd once parked (issue 13): after a stream first has
// nothing to send, its connection stays suspended and pollcast writes the events to the socket
// itself, framed in chunks for HTTP/1.1 and not at all for HTTP/1.0 (libmicrohttpd's choice,
// mirrored); at the stream's end the connection is resumed once and libmicrohttpd ends the
// response. Checked with curl --http1.1, curl --http1.0 and a raw socket client that checks
// every chunk's framing:
// - several changes reach every client, and strace sees no libmicrohttpd run per change (no
//   epoll_wait on libmicrohttpd's own epoll descriptor; before, one or more per change);
// - a reload that retires the upstream ends its streams properly: curl --http1.1 exits 0 (not 18,
//   "transfer closed with outstanding read data"), the raw 1.1 client sees the terminating chunk,
//   the 1.0 clients see the close after a whole event;
// - clients that stop reading (1.0 and 1.1) are held back by their sockets, reset by the queue
//   bound, and converge through a fresh snapshot when they read again;
// - SIGTERM ends the streams that are left cleanly (curl exits 0, terminating chunk seen).
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const h = require('./harness');
const { assert, T, log, sleep } = h;

const CHANGES = 6;

// A stream read from a plain socket with the given HTTP version. The body is de-chunked by a
// strict parser for HTTP/1.1 (every chunk "HEX CRLF data CRLF", the end "0 CRLF CRLF") and taken
// as it comes for HTTP/1.0; events go to a Follower. ended: the terminating chunk (1.1) or the
// close (1.0) came; cutMidEvent: the body ended inside an event.
class SocketStream extends h.Follower {
  constructor(port, p, version) {
    super(`${version} ${p}`);
    this.version = version;
    this.buf = Buffer.alloc(0);
    this.head = null;
    this.ended = false;
    this.closed = false;
    this.tail = '';
    this.parser = new h.SseParser({
      onEvent: (ev) => this.handle(ev),
      onComment: (c) => this.comment(c),
      onRetry: (ms) => this.retry(ms),
    });
    this.sock = net.connect(port, '127.0.0.1');
    this.sock.on('connect', () => this.sock.write(`GET ${p} HTTP/${version}\r\nHost: x\r\n` +
      'Accept: text/event-stream\r\n\r\n'));
    this.sock.on('data', (c) => this.data(c));
    this.sock.on('error', () => {});
    this.sock.on('close', () => {
      this.closed = true;
      if (this.version === '1.0' && this.head) this.ended = true;
      this.notify();
    });
  }

  body(text) {
    this.tail = (this.tail + text).slice(-2);
    this.parser.feed(text);
  }

  data(c) {
    this.buf = Buffer.concat([this.buf, c]);
    if (!this.head) {
      const i = this.buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      this.head = this.buf.subarray(0, i).toString('latin1');
      this.buf = this.buf.subarray(i + 4);
      this.notify();
    }
    if (this.version === '1.0') {
      this.body(this.buf.toString('utf8'));
      this.buf = Buffer.alloc(0);
      return;
    }
    for (;;) {
      if (this.ended) {
        if (this.buf.length) this.fail(`bytes after the terminating chunk: ${this.buf}`);
        return;
      }
      const i = this.buf.indexOf('\r\n');
      if (i < 0) return;
      const size = this.buf.subarray(0, i).toString('latin1');
      if (!/^[0-9a-f]+$/i.test(size)) return this.fail(`bad chunk size line ${JSON.stringify(size)}`);
      const n = parseInt(size, 16);
      if (n === 0) {
        if (this.buf.length < i + 4) return;
        if (this.buf.subarray(i + 2, i + 4).toString() !== '\r\n') return this.fail('bad last chunk');
        this.buf = this.buf.subarray(i + 4);
        this.ended = true;
        this.notify();
        continue;
      }
      if (this.buf.length < i + 2 + n + 2) return;
      if (this.buf.subarray(i + 2 + n, i + 4 + n).toString() !== '\r\n') {
        return this.fail(`chunk of ${n} bytes not followed by CRLF`);
      }
      this.body(this.buf.subarray(i + 2, i + 2 + n).toString('utf8'));
      this.buf = this.buf.subarray(i + 4 + n);
    }
  }

  get cutMidEvent() {
    return this.tail !== '\n\n';
  }

  pause() {
    this.sock.pause();
  }

  resume() {
    this.sock.resume();
  }

  close() {
    this.sock.destroy();
  }
}

// The epoll descriptors of pid and, for each, the descriptors it watches (from fdinfo).
function epolls(pid) {
  const out = new Map();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let target;
    try {
      target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (target !== 'anon_inode:[eventpoll]') continue;
    const info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    out.set(Number(fd), [...info.matchAll(/^tfd:\s+(\d+)/gm)].map((m) => Number(m[1])));
  }
  return out;
}

h.run('detached_streams', async (t) => {
  const probe = spawnSync('strace', ['-V'], { encoding: 'utf8' });
  assert.equal(probe.status, 0, 'strace is needed (scripts/install-deps.sh installs it)');
  const up = await h.startUpstream();
  let doc = { v: 0, text: 'x'.repeat(300) };
  await up.put('/d', doc);
  let rdoc = { r: 0 };
  await up.put('/r', rdoc);
  const blob = () => crypto.randomBytes(256 * 1024).toString('hex');
  let big = { v: 0, blob: blob() };
  await up.put('/big', big);
  const config = {
    server: { queue_events: 4, queue_bytes: '2MiB' },
    upstreams: {
      d: { url: up.url('/d'), interval: '100ms' },
      r: { url: up.url('/r'), interval: '100ms' },
      big: { url: up.url('/big'), interval: '100ms', max_body: '4MiB' },
    },
  };
  const pc = await h.startPollcast(config);
  const all = [];
  h.defer(() => all.forEach((s) => s.close()));
  const open = (s) => {
    all.push(s);
    return s;
  };

  const c11 = open(new h.CurlStream(`${pc.base}/streams/d`, { name: 'curl 1.1', args: ['--http1.1'] }));
  const c10 = open(new h.CurlStream(`${pc.base}/streams/d`, { name: 'curl 1.0', args: ['--http1.0'] }));
  const s11 = open(new SocketStream(pc.port, '/streams/d', '1.1'));
  const s10 = open(new SocketStream(pc.port, '/streams/d', '1.0'));
  const streams = [c11, c10, s11, s10];
  await Promise.all(streams.map((s) => s.waitDoc(doc, T(10000), 'the snapshot')));

  await t.step('HTTP/1.1 chunked, HTTP/1.0 close-delimited', async () => {
    assert.match(s11.head, /^HTTP\/1\.1 200/);
    assert.match(s11.head, /^Transfer-Encoding: chunked$/mi);
    assert.match(s10.head, /^HTTP\/1\.[01] 200/);
    assert.doesNotMatch(s10.head, /^Transfer-Encoding:/mi);
    assert.doesNotMatch(s10.head, /^Content-Length:/mi);
  });

  // libmicrohttpd's own epoll descriptor is the one the loop's epoll watches.
  const eps = epolls(pc.pid);
  let mhdFd = -1;
  for (const [fd, watched] of eps) {
    for (const other of eps.keys()) if (other !== fd && watched.includes(other)) mhdFd = other;
  }
  assert.ok(mhdFd >= 0, `libmicrohttpd's epoll descriptor among ${JSON.stringify([...eps])}`);

  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pollcast-strace-')), 'trace');
  const tracer = h.track(spawn('strace', ['-f', '-e', 'trace=epoll_wait,epoll_pwait', '-o', out,
    '-p', String(pc.pid)], { stdio: ['ignore', 'ignore', 'pipe'] }));
  let traceErr = '';
  tracer.stderr.on('data', (c) => (traceErr += c));
  const traced = new Promise((r) => tracer.on('exit', r));
  await h.within(new Promise((resolve) => {
    const on = () => /attached/.test(traceErr) && resolve();
    tracer.stderr.on('data', on);
    on();
  }), T(10000), 'strace to attach');

  await t.step(`${CHANGES} changes reach every client, written outside libmicrohttpd`, async () => {
    for (let v = 1; v <= CHANGES; v++) {
      doc = { v, text: `${'y'.repeat(300)}${v}` };
      await up.put('/d', doc);
      await Promise.all(streams.map((s) => s.waitDoc(doc, T(10000), `version ${v}`)));
      await sleep(150);
    }
    process.kill(tracer.pid, 'SIGINT');
    await h.within(traced, T(10000), 'strace to detach');
    const lines = fs.readFileSync(out, 'utf8').split('\n');
    const runs = lines.filter((l) => new RegExp(`epoll_p?wait\\(${mhdFd},`).test(l)).length;
    const loopWaits = lines.filter((l) => /epoll_p?wait\(/.test(l)).length - runs;
    log(`epoll_wait: ${runs} on libmicrohttpd's descriptor ${mhdFd}, ${loopWaits} others`);
    assert.ok(loopWaits > 0, 'strace saw the loop wait');
    // Before streams were detached, every change resumed them and ran libmicrohttpd once at least.
    assert.ok(runs < CHANGES / 2, `${runs} libmicrohttpd runs for ${CHANGES} changes`);
    for (const s of streams) {
      assert.ok(s.count('patch') >= CHANGES - 1, `${s.name}: ${s.count('patch')} patches`);
    }
  });

  await t.step('a reload that retires the upstream ends its streams with their end', async () => {
    const r11 = open(new h.CurlStream(`${pc.base}/streams/r`, { name: 'curl r 1.1',
      args: ['--http1.1'] }));
    const r10 = open(new h.CurlStream(`${pc.base}/streams/r`, { name: 'curl r 1.0',
      args: ['--http1.0'] }));
    const q11 = open(new SocketStream(pc.port, '/streams/r', '1.1'));
    const q10 = open(new SocketStream(pc.port, '/streams/r', '1.0'));
    const rs = [r11, r10, q11, q10];
    await Promise.all(rs.map((s) => s.waitDoc(rdoc, T(10000), 'the snapshot')));
    rdoc = { r: 1 };
    await up.put('/r', rdoc);
    await Promise.all(rs.map((s) => s.waitDoc(rdoc, T(10000), 'a patch')));
    await sleep(200);
    // A different URL is a different upstream: the old one's topic is retired.
    const cfg2 = { ...config, upstreams: { ...config.upstreams, r: { url: up.url('/r2'),
      interval: '100ms' } } };
    fs.writeFileSync(pc.configFile, h.configText(cfg2));
    process.kill(pc.pid, 'SIGHUP');
    const codes = await h.within(Promise.all([r11.exited, r10.exited]), T(10000),
      'curl to end after the reload');
    assert.deepEqual(codes, [0, 0], 'curl --http1.1 and --http1.0 exit status');
    await q11.until((s) => s.ended, T(10000), 'the terminating chunk');
    await q10.until((s) => s.ended, T(10000), 'the close');
    assert.ok(!q10.cutMidEvent, 'the HTTP/1.0 stream ends after a whole event');
    assert.ok(!q11.cutMidEvent, 'the HTTP/1.1 stream ends after a whole event');
    // The streams of d go on.
    doc = { v: 100, text: 'after the reload' };
    await up.put('/d', doc);
    await Promise.all(streams.map((s) => s.waitDoc(doc, T(10000), 'a change after the reload')));
  });

  await t.step('clients that stop reading are reset by the queue bound, then catch up',
    async () => {
      const fast = open(new SocketStream(pc.port, '/streams/big', '1.1'));
      const slow11 = open(new SocketStream(pc.port, '/streams/big', '1.1'));
      const slow10 = open(new SocketStream(pc.port, '/streams/big', '1.0'));
      await Promise.all([fast, slow11, slow10].map((s) => s.waitDoc(big, T(10000), 'the snapshot')));
      const reset0 = (await pc.metrics()).pollcast_subscribers_reset_total || 0;
      slow11.pause();
      slow10.pause();
      const dataBefore = [slow11.count('data'), slow10.count('data')];
      // 512 KiB patches until both are reset: far more than the socket buffers hold, then more
      // than queue_events.
      let reset = reset0;
      for (let v = 1; v <= 200 && reset < reset0 + 2; v++) {
        big = { v, blob: blob() };
        await up.put('/big', big);
        await fast.waitDoc(big, T(10000), `big version ${v}`);
        if (v % 5 === 0) reset = (await pc.metrics()).pollcast_subscribers_reset_total || 0;
      }
      assert.ok(reset >= reset0 + 2, `pollcast_subscribers_reset_total ${reset0} -> ${reset}`);
      slow11.resume();
      slow10.resume();
      await Promise.all([slow11, slow10].map((s) => s.waitDoc(big, T(20000), 'the latest version')));
      assert.ok(slow11.count('data') > dataBefore[0], 'the 1.1 client caught up by a snapshot');
      assert.ok(slow10.count('data') > dataBefore[1], 'the 1.0 client caught up by a snapshot');
    });

  await t.step('SIGTERM ends the streams cleanly', async () => {
    const e = await pc.stop();
    assert.equal(e.code, 0, 'exit status');
    const codes = await h.within(Promise.all([c11.exited, c10.exited]), T(10000), 'curl to end');
    assert.deepEqual(codes, [0, 0], 'curl --http1.1 and --http1.0 exit status');
    await s11.until((s) => s.ended, T(5000), 'the terminating chunk');
    assert.ok(!s11.cutMidEvent && !s10.cutMidEvent, 'whole events to the end');
    assert.ok(!h.SANITIZER_RE.test(pc.stderr()), `sanitizer report:\n${pc.stderr()}`);
  });
});

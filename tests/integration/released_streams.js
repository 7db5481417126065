// A stream under way no longer holds a libmicrohttpd connection: its socket is pollcast's and
// libmicrohttpd frees the connection and its pool (the memory an idle subscriber costs,
// bench/RESULTS.md). What the connection did must still hold:
// - max_connections counts those streams: with max_connections = 16 and 16 streams open, a 17th
//   connection is closed unanswered, and once a stream ends a new one is answered;
// - the access log's "stream closed" line comes when the stream ends (not when libmicrohttpd let
//   the connection go), with its duration and events;
// - HTTP/1.0 and HTTP/1.1 streams carry their events, and a client that leaves frees its socket
//   (the process's descriptors come back to where they were);
// - (plain build only) 300 idle streams, arriving ten at a time, add well under the ~12 KiB per
//   stream that libmicrohttpd's pool alone would hold: less than 6 KiB each.
'use strict';

const fs = require('node:fs');
const h = require('./harness');
const { assert, T, log, sleep } = h;

const LIMIT = 16; // the smallest max_connections the config accepts

// A raw connection, with the number of data and patch events it was sent.
class Conn extends h.RawConn {
  events() {
    return (this.text().match(/^event: (data|patch)$/gm) || []).length;
  }
}

const stream = (port, version) =>
  new Conn(port, `GET /streams/a HTTP/${version}\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
const healthz = (port) => new Conn(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
const fds = (pid) => fs.readdirSync(`/proc/${pid}/fd`).length;

h.run('released_streams', async (t) => {
  const up = await h.startUpstream();
  let v = 1;
  await up.put('/a', { v });
  const pc = await h.startPollcast({
    server: { max_connections: LIMIT, max_subscribers: 100, access_log: true },
    upstreams: { a: { url: up.url('/a'), interval: '100ms' } },
  });
  const before = fds(pc.pid);
  const streams = [];
  h.defer(() => streams.forEach((c) => c.sock.destroy()));

  await t.step(`${LIMIT} streams, HTTP/1.1 and 1.0, carry their events`, async () => {
    for (let i = 0; i < LIMIT; i++) streams.push(stream(pc.port, i % 2 ? '1.0' : '1.1'));
    for (const c of streams) await c.until((x) => x.events() >= 1, T(10000), 'the snapshot');
    await up.put('/a', { v: ++v });
    for (const c of streams) await c.until((x) => x.events() >= 2, T(10000), 'a patch');
  });

  await t.step(`a connection past max_connections = ${LIMIT} is closed unanswered`, async () => {
    const extra = healthz(pc.port);
    await extra.until((x) => x.closedAt !== null, T(5000), 'the extra connection to close');
    assert.equal(extra.text(), '', `the extra connection got: ${extra.text()}`);
  });

  let leftAt;
  await t.step('a stream that ends frees its place and writes its log line then', async () => {
    await sleep(500); // every stream open for a while, long let go by libmicrohttpd
    const quiet = pc.stderr().split('\n').filter((l) => l.includes('stream closed'));
    assert.equal(quiet.length, 0, `"stream closed" while every stream was open:\n${quiet.join('\n')}`);
    const gone = streams.shift();
    gone.sock.destroy();
    leftAt = Date.now();
    let line;
    const end = Date.now() + T(5000);
    while (!(line = pc.stderr().split('\n').find((l) => l.includes('stream closed')))) {
      assert.ok(Date.now() < end, 'no "stream closed" line after the client left');
      await sleep(50);
    }
    log(line);
    assert.match(line, /reason=client_gone/);
    const events = Number(/events=(\d+)/.exec(line)[1]);
    const duration = Number(/duration_ms=(\d+)/.exec(line)[1]);
    assert.ok(events >= 2, `events=${events}`);
    assert.ok(duration >= 500, `duration_ms=${duration}: logged when the connection was let go?`);
    let answered = null;
    while (Date.now() < end && !answered) {
      const c = healthz(pc.port);
      await c.until((x) => x.closedAt !== null, T(5000), 'the /healthz answer');
      if (/"status":"ok"/.test(c.text())) answered = c;
      else await sleep(100);
    }
    assert.ok(answered, 'no /healthz answer after a stream ended');
    log(`/healthz answered ${Date.now() - leftAt} ms after a stream ended`);
  });

  await t.step('clients that leave free their sockets', async () => {
    for (const c of streams.splice(0)) c.sock.destroy();
    const end = Date.now() + T(5000);
    // The poller's connection to the upstream may stay (curl keeps it for the next poll).
    while (fds(pc.pid) > before + 2) {
      assert.ok(Date.now() < end, `${fds(pc.pid)} descriptors, ${before} before the streams`);
      await sleep(50);
    }
  });

  await t.step('idle streams do not hold a libmicrohttpd connection each', async () => {
    if (h.ASAN || h.WRAPPER.length) {
      log('skipped: memory under a sanitizer or a wrapper says nothing about the pool');
      return;
    }
    const N = 300;
    const pc2 = await h.startPollcast({
      server: { max_connections: 1000, max_subscribers: 1000 },
      upstreams: { a: { url: up.url('/a'), interval: '100ms' } },
    });
    const idle = [];
    h.defer(() => idle.forEach((c) => c.sock.destroy()));
    const open = async (n) => {
      const batch = [];
      for (let i = 0; i < n; i++) batch.push(stream(pc2.port, '1.1'));
      idle.push(...batch);
      for (const c of batch) await c.until((x) => x.events() >= 1, T(10000), 'the snapshot');
    };
    // Ten at a time, as clients arrive over a while: the pools of requests being read at once
    // are freed to the allocator and used again by the next ones (a burst of N at once leaves
    // its N pools as free heap, reused later but counted in RSS).
    const ramp = async (n) => {
      for (let i = 0; i < n; i += 10) await open(Math.min(10, n - i));
    };
    await ramp(20); // the topic, its poller and the allocator's first growth
    await sleep(500);
    const base = pc2.rssKb();
    await ramp(N);
    await sleep(1000);
    const per = (pc2.rssKb() - base) / N;
    log(`${N} idle streams: ${per.toFixed(2)} KiB of RSS each`);
    assert.ok(per < 6, `${per.toFixed(2)} KiB per idle stream`);
  });
});

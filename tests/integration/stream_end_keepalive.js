// After a stream ends on a kept-alive HTTP/1.1 connection (here: a reload retires its upstream;
// also a token's expiry), the connection waits for its next request like any other: within
// request_timeout, or it is closed. A stream turns libmicrohttpd's inactivity timeout off for its
// life; before the fix it stayed off afterwards, and the request deadline (slowloris) only ever
// covered a connection's first request, so such a connection could sit idle, or drip a header
// byte now and then, for ever:
// - idle after the terminating chunk: closed within request_timeout (+ slack);
// - dripping one header byte every 300 ms: closed within request_timeout (+ slack);
// - a request sent at once after the end is still answered on the same connection.
'use strict';

const fs = require('node:fs');
const h = require('./harness');
const { assert, T, log, sleep } = h;

const REQUEST_TIMEOUT_MS = 1000;

// A raw HTTP/1.1 client of one connection: the stream's head and chunks, then whatever follows.
const conn = (port, p) => new h.RawConn(port, `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`);

h.run('stream_end_keepalive', async (t) => {
  const up = await h.startUpstream();
  await up.put('/keep', { v: 1 });
  for (const p of ['/idle', '/drip', '/next']) await up.put(p, { v: 1, p });
  const ups = (names) => Object.fromEntries(names.map((n) => [n, { url: up.url(`/${n}`),
    interval: '100ms' }]));
  const server = { request_timeout: `${REQUEST_TIMEOUT_MS}ms` };
  const config = { server, upstreams: ups(['keep', 'idle', 'drip', 'next']) };
  const pc = await h.startPollcast(config);

  let idle;
  let drip;
  let next;
  let ended;
  await t.step('a reload that retires their upstreams ends three streams', async () => {
    idle = conn(pc.port, '/streams/idle');
    drip = conn(pc.port, '/streams/drip');
    next = conn(pc.port, '/streams/next');
    h.defer(() => [idle, drip, next].forEach((c) => c.sock.destroy()));
    for (const c of [idle, drip, next]) {
      await c.until((x) => x.text().includes('event: data'), T(10000), 'the snapshot');
    }
    // Parked: the streams are written by pollcast's own writer by now.
    await sleep(300);
    fs.writeFileSync(pc.configFile, h.configText({ server, upstreams: ups(['keep']) }));
    process.kill(pc.pid, 'SIGHUP');
    for (const c of [idle, drip, next]) {
      await c.until((x) => x.endedAt !== null, T(10000), 'the terminating chunk');
    }
    ended = Date.now();
    next.sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    drip.sock.write('GET /healthz HTTP/1.1\r\n');
  });

  await t.step('a request right after the end is answered on the same connection', async () => {
    await next.until((x) => /\r\n0\r\n\r\nHTTP\/1\.1 200[^]*"status":"ok"/.test(x.text()),
      T(5000), 'the /healthz answer after the stream');
  });

  await t.step('the idle and the dripping connection are closed within request_timeout',
    async () => {
      let stop = false;
      (async () => {
        // One header byte every 300 ms: never inactive long enough for an inactivity timeout.
        while (!stop && drip.closedAt === null) {
          drip.sock.write('X');
          await sleep(300);
        }
      })();
      const limit = REQUEST_TIMEOUT_MS + T(2500);
      try {
        await Promise.all([
          idle.until((x) => x.closedAt !== null, limit + 2000, 'the idle connection to close'),
          drip.until((x) => x.closedAt !== null, limit + 2000, 'the dripping connection to close'),
        ]);
      } finally {
        stop = true;
      }
      log(`closed ${idle.closedAt - ended} ms (idle) and ${drip.closedAt - ended} ms ` +
        `(dripping) after the stream ended; request_timeout ${REQUEST_TIMEOUT_MS} ms`);
      assert.ok(idle.closedAt - ended <= limit, `idle closed after ${idle.closedAt - ended} ms`);
      assert.ok(drip.closedAt - ended <= limit, `dripping closed after ${drip.closedAt - ended} ms`);
    });
});

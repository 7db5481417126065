// The wire contract of PRODUCT.md, checked on the real daemon: stream headers, retry: first and
// jittered per connection, ids ([0-9A-Za-z._-], strictly increasing, the same for every
// subscriber of an upstream), keepalive comments, the statuses before a stream starts (404, 400,
// 405) as problem+json, CORS with preflight, /healthz, /readyz, /metrics, GET /streams,
// mode=snapshot, interval clamping that shares pollers, a new poller polling at once, fidelity
// of the upstream's text, configured upstream headers kept server-side, and the 200 + retry:
// answer to a subscriber over the limit.
'use strict';

const http = require('node:http');
const h = require('./harness');
const { assert, T, log, sleep } = h;

const ORIGIN = 'https://app.example.com';
const RETRY = 2000;
const JITTER = 2000;

// The upstream's exact text, with what cJSON alone gets wrong (PRODUCT.md, "Fidelity").
const FIDELITY = '{"id":9007199254740993,"big":1e400,"dec":0.1,"t":1.10,"nul":"a\\u0000b",' +
  '"emoji":"\u{1F600}","esc":"\\ud83d\\ude00","Key":1,"key":2,"z":0,"a":1,"s":"\\/x\\u00e9"}';

h.run('wire_contract', async (t) => {
  const up = await h.startUpstream();
  let doc = { v: 0, items: [{ id: 1 }] };
  await up.put('/w', doc);
  await up.put('/snap', { s: 0 });
  await up.put('/clamp', { c: 0 });
  await up.put('/slowpoll', { slow: true });
  await up.put('/fid', FIDELITY);
  await up.put('/keyed', { k: 1 });
  const pc = await h.startPollcast({
    server: { cors_origin: ORIGIN, keepalive: '1s', retry: `${RETRY}ms`,
      retry_jitter: `${JITTER}ms` },
    upstreams: {
      w: { url: up.url('/w'), interval: '100ms' },
      snap: { url: up.url('/snap'), interval: '100ms', mode: 'snapshot' },
      clamp: { url: up.url('/clamp'), interval: '1s', min_interval: '500ms',
        max_interval: '2s' },
      slowpoll: { url: up.url('/slowpoll'), interval: '10s' },
      fid: { url: up.url('/fid'), interval: '100ms' },
      keyed: { url: up.url('/keyed'), interval: '100ms',
        header: ['X-Api-Key: s3cr3t-value', 'X-Other: two'] },
    },
  });
  const open = (p, opts) => h.openRaw(pc.base, p, opts);
  const change = async (f) => {
    doc = { v: doc.v + 1, items: [...doc.items, { id: doc.v + 2 }] };
    await up.put('/w', doc);
    if (f) await f.waitDoc(doc);
  };

  await t.step('stream headers, retry: first, then the snapshot at once', async () => {
    const s = await open('/streams/w', { keepRaw: true });
    h.defer(() => s.close());
    assert.equal(s.status, 200);
    assert.equal(s.headers['content-type'], 'text/event-stream; charset=utf-8');
    assert.equal(s.headers['cache-control'], 'no-cache');
    assert.equal(s.headers['x-accel-buffering'], 'no');
    await s.waitDoc(doc, T(1000), 'the snapshot at once');
    assert.match(s.raw, /^retry: \d+\n\nid: [0-9A-Za-z._-]+\nevent: data\ndata: .*\n\n/,
      'retry: comes first, then the data event');
    s.close();
  });

  await t.step('retry: jittered per connection within [retry, retry + jitter]', async () => {
    const streams = await Promise.all(Array.from({ length: 12 }, () => open('/streams/w')));
    h.defer(() => streams.forEach((s) => s.close()));
    await Promise.all(streams.map((s) => s.waitEvent('data')));
    const values = streams.map((s) => s.retries[0]);
    log(`retry values: ${values}`);
    for (const v of values) {
      assert.ok(Number.isInteger(v) && v >= RETRY && v <= RETRY + JITTER, `retry ${v}`);
    }
    assert.ok(new Set(values).size >= 4, `retry values hardly vary: ${values}`);
    streams.forEach((s) => s.close());
  });

  await t.step('ids: short, [0-9A-Za-z._-], strictly increasing, the same for all', async () => {
    const a = await open('/streams/w', { name: 'ids-a' });
    const b = await open('/streams/w', { name: 'ids-b' });
    h.defer(() => a.close());
    h.defer(() => b.close());
    await a.waitDoc(doc);
    await b.waitDoc(doc);
    for (let i = 0; i < 5; i++) {
      await change(a);
      await b.waitDoc(doc);
    }
    const ids = (f) => f.events.map((e) => e.id);
    assert.deepEqual(ids(a), ids(b), 'same ids for the same events');
    for (const id of ids(a)) {
      assert.match(id, /^[0-9A-Za-z._-]{1,32}$/);
      assert.ok(!id.includes(':'));
    }
    // Follower checks strict increase on every event; a newcomer's snapshot has the last id.
    const c = await open('/streams/w', { name: 'ids-c' });
    h.defer(() => c.close());
    await c.waitDoc(doc);
    assert.equal(c.events[0].id, a.lastId.id, 'snapshot id = last patch id');
    a.close();
    b.close();
    c.close();
  });

  await t.step('keepalive comments on a quiet stream', async () => {
    const s = await open('/streams/slowpoll');
    h.defer(() => s.close());
    await s.until((f) => f.comments.length >= 2, T(4500), 'two keepalive comments');
    assert.equal(s.comments[0].text, 'keepalive');
    const gap = s.comments[1].t - s.comments[0].t;
    assert.ok(gap >= 700 && gap <= T(2500), `keepalive gap ${gap} ms for 1 s`);
    s.close();
  });

  await t.step('statuses before a stream starts: 404, 400, 405 as problem+json', async () => {
    const problem = async (method, p, status, what) => {
      const r = await h.requestJson(method, pc.base + p);
      assert.equal(r.status, status, `${what}: ${method} ${p}: ${r.body}`);
      return r;
    };
    for (const p of ['/streams/nope', '/nope', '/streams/w/extra']) {
      const r = await problem('GET', p, 404, 'unknown');
      assert.match(r.headers['content-type'], /^application\/problem\+json/);
      assert.equal(r.json.status, 404);
      assert.equal(typeof r.json.title, 'string');
    }
    for (const q of ['mode=x', 'mode=', 'mode=PATCH', 'interval=abc', 'interval=-1',
      'interval=0', 'interval=', 'interval=1e9', 'interval=nan', 'interval=5s']) {
      const r = await problem('GET', `/streams/w?${q}`, 400, 'bad option');
      assert.match(r.headers['content-type'], /^application\/problem\+json/);
      assert.equal(r.json.status, 400);
    }
    // With and without a body (a body must not cost the answer).
    for (const m of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      for (const body of [undefined, '{}', 'x'.repeat(1000)]) {
        const r = await h.request(m, `${pc.base}/streams/w`, { body });
        const what = `${m} with ${body === undefined ? 'no' : body.length + ' bytes of'} body`;
        assert.equal(r.status, 405, `${what}: status`);
        assert.match(r.headers.allow || '', /\bGET\b/, `${what}: Allow header`);
      }
    }
    // A large body announced with Expect: 100-continue is refused before it is sent.
    const big = await new Promise((resolve, reject) => {
      const req = http.request(`${pc.base}/streams/w`, { method: 'POST', agent: false,
        headers: { Expect: '100-continue', 'Content-Length': 1 << 24 } });
      req.on('continue', () => reject(new Error('100 Continue for a POST to a stream')));
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode);
        req.destroy();
      });
      req.on('error', reject);
      req.flushHeaders();
    });
    assert.equal(big, 405, 'large POST with Expect: 100-continue');
    const withBody = await h.request('GET', `${pc.base}/healthz`, { body: 'ignored' });
    assert.equal(withBody.status, 200, 'GET with a body');
    const head = await h.request('HEAD', `${pc.base}/streams/w`);
    assert.equal(head.status, 405, 'HEAD on a stream');
  });

  await t.step('CORS: preflight and stream headers for a configured origin only', async () => {
    const pre = await h.request('OPTIONS', `${pc.base}/streams/w`, { headers: {
      Origin: ORIGIN, 'Access-Control-Request-Method': 'GET',
      'Access-Control-Request-Headers': 'last-event-id, authorization' } });
    assert.ok(pre.status === 204 || pre.status === 200, `preflight status ${pre.status}`);
    assert.equal(pre.headers['access-control-allow-origin'], ORIGIN);
    assert.match(pre.headers['access-control-allow-methods'] || '', /\bGET\b/);
    const allowed = (pre.headers['access-control-allow-headers'] || '').toLowerCase();
    assert.ok(allowed.includes('last-event-id') && allowed.includes('authorization'),
      `Access-Control-Allow-Headers: ${allowed}`);
    const other = await h.request('OPTIONS', `${pc.base}/streams/w`, { headers: {
      Origin: 'https://evil.example', 'Access-Control-Request-Method': 'GET' } });
    assert.equal(other.headers['access-control-allow-origin'], undefined, 'other origin');
    const s = await open('/streams/w', { headers: { Origin: ORIGIN } });
    h.defer(() => s.close());
    assert.equal(s.headers['access-control-allow-origin'], ORIGIN, 'stream response');
    s.close();
    const s2 = await open('/streams/w', { headers: { Origin: 'https://evil.example' } });
    h.defer(() => s2.close());
    assert.equal(s2.status, 200);
    assert.equal(s2.headers['access-control-allow-origin'], undefined);
    s2.close();
  });

  await t.step('/healthz, /readyz, /metrics, GET /streams', async () => {
    const hz = await h.requestJson('GET', `${pc.base}/healthz`);
    assert.equal(hz.status, 200);
    assert.deepEqual(hz.json, { status: 'ok' });
    const rz = await h.requestJson('GET', `${pc.base}/readyz`);
    assert.equal(rz.status, 200);
    assert.deepEqual(rz.json, { status: 'ready' });
    const m = await h.request('GET', `${pc.base}/metrics`);
    assert.equal(m.status, 200);
    assert.match(m.headers['content-type'], /^text\/plain/);
    for (const name of ['pollcast_subscribers', 'pollcast_pollers', 'pollcast_polls_total',
      'pollcast_subscribers_reset_total']) {
      assert.match(m.body, new RegExp(`^# TYPE ${name} `, 'm'), `metric ${name}`);
    }
    const list = await h.requestJson('GET', `${pc.base}/streams`);
    assert.equal(list.status, 200);
    assert.deepEqual(list.json.streams.map((s) => s.name).sort(),
      ['clamp', 'fid', 'keyed', 'slowpoll', 'snap', 'w']);
  });

  await t.step('mode=snapshot: a data event per change, never a patch', async () => {
    const s = await open('/streams/w?mode=snapshot', { name: 'snapshot' });
    const p = await open('/streams/w', { name: 'patch' });
    h.defer(() => s.close());
    h.defer(() => p.close());
    await s.waitDoc(doc);
    await p.waitDoc(doc);
    for (let i = 0; i < 3; i++) {
      await change(s);
      await p.waitDoc(doc);
    }
    assert.deepEqual(s.events.map((e) => e.event), ['data', 'data', 'data', 'data']);
    assert.deepEqual(s.events.map((e) => e.id), p.events.map((e) => e.id),
      'same ids as the patch stream');
    // An upstream configured in snapshot mode; ?mode=patch asks for patches there.
    const cs = await open('/streams/snap', { name: 'snap-config' });
    const cp = await open('/streams/snap?mode=patch', { name: 'snap-patch' });
    h.defer(() => cs.close());
    h.defer(() => cp.close());
    await cs.waitDoc({ s: 0 });
    await up.put('/snap', { s: 1 });
    await cs.waitDoc({ s: 1 });
    await cp.waitDoc({ s: 1 });
    assert.deepEqual(cs.events.map((e) => e.event), ['data', 'data']);
    assert.deepEqual(cp.events.map((e) => e.event), ['data', 'patch']);
    [s, p, cs, cp].forEach((x) => x.close());
  });

  await t.step('interval clamping: values that clamp alike share one poller', async () => {
    const pollers = async () => (await pc.metrics()).pollcast_pollers;
    const p0 = await pollers();
    const n0 = (await up.stats('/clamp')).count;
    const t0 = Date.now();
    // 0.1 s, 0.3 s and 0.5 s all clamp to min_interval (500 ms): one poller.
    const low = [];
    for (const q of ['interval=0.1', 'interval=0.3', 'interval=0.5']) {
      const s = await open(`/streams/clamp?${q}`, { name: q });
      h.defer(() => s.close());
      await s.waitEvent('data');
      low.push(s);
    }
    assert.equal(await pollers(), p0 + 1, 'one poller for three clamped intervals');
    assert.ok(low.every((s) => s.events[0].id === low[0].events[0].id), 'same topic, same id');
    await sleep(2000);
    const requests = (await up.stats('/clamp')).count - n0;
    const elapsed = Date.now() - t0;
    log(`clamp: ${requests} requests in ${elapsed} ms at 500 ms`);
    assert.ok(requests <= elapsed / 500 + 2, `${requests} requests: more than one poller`);
    assert.ok(requests >= elapsed / 500 - 2, `${requests} requests: not polling every 500 ms`);
    // 100 s and 2 s clamp to max_interval (2 s): a second poller, shared.
    const high = [];
    for (const q of ['interval=100', 'interval=2']) {
      const s = await open(`/streams/clamp?${q}`, { name: q });
      h.defer(() => s.close());
      await s.waitEvent('data');
      high.push(s);
    }
    assert.equal(await pollers(), p0 + 2, 'a second poller for the clamped long intervals');
    assert.equal(high[0].events[0].id, high[1].events[0].id);
    assert.notEqual(high[0].events[0].id.split('.')[0], low[0].events[0].id.split('.')[0],
      'another poller, another epoch');
    [...low, ...high].forEach((s) => s.close());
  });

  await t.step('a new poller polls at once', async () => {
    const started = Date.now();
    const s = await open('/streams/slowpoll?interval=9', { name: 'new poller' });
    h.defer(() => s.close());
    await s.waitDoc({ slow: true }, T(1500), 'the first poll, at once');
    log(`first snapshot of a new 9 s poller after ${Date.now() - started} ms`);
    s.close();
  });

  await t.step("fidelity: the data event carries the upstream's text", async () => {
    const s = await open('/streams/fid', { name: 'fid' });
    h.defer(() => s.close());
    await s.waitEvent('data');
    assert.equal(s.events[0].data, FIDELITY, 'data event text = upstream text');
    const next = FIDELITY.replace('9007199254740993', '9007199254740995');
    await up.put('/fid', next);
    await s.waitEvent('patch');
    assert.equal(s.list('patch')[0].data,
      '[{"op":"replace","path":"/id","value":9007199254740995}]', 'a patch keeps digits');
    s.close();
  });

  await t.step('configured upstream headers stay server-side', async () => {
    const s = await open('/streams/keyed', { name: 'keyed', keepRaw: true });
    h.defer(() => s.close());
    await s.waitDoc({ k: 1 });
    const st = await up.stats('/keyed');
    assert.equal(st.headers['x-api-key'], 's3cr3t-value');
    assert.equal(st.headers['x-other'], 'two');
    assert.match(st.headers.accept || '', /application\/json/);
    assert.match(st.headers['user-agent'] || '', /pollcast/);
    assert.ok(!s.raw.includes('s3cr3t') && !JSON.stringify(s.headers).includes('s3cr3t'),
      'the secret reached a subscriber');
    assert.ok(!(await h.request('GET', `${pc.base}/metrics`)).body.includes('s3cr3t'));
    assert.ok(!pc.stderr().includes('s3cr3t'), 'the secret was logged');
    s.close();
  });

  await t.step('over max_subscribers: 200, a long retry:, and the end', async () => {
    const pc2 = await h.startPollcast({ server: { max_subscribers: 2, overload_retry: '45s' },
      upstreams: { w: { url: up.url('/w'), interval: '1s' } } }, { name: 'pollcast-small' });
    const a = await h.openRaw(pc2.base, '/streams/w');
    const b = await h.openRaw(pc2.base, '/streams/w');
    h.defer(() => a.close());
    h.defer(() => b.close());
    await a.waitEvent('data');
    const c = await h.openRaw(pc2.base, '/streams/w', { name: 'over', keepRaw: true });
    h.defer(() => c.close());
    await c.until((f) => f.closed, T(3000), 'the end of the stream');
    assert.equal(c.status, 200);
    assert.equal(c.headers['content-type'], 'text/event-stream; charset=utf-8');
    assert.equal(c.raw, 'retry: 45000\n\n');
    assert.ok(c.ended, 'ended cleanly');
    assert.equal(c.events.length, 0);
  });
}, { timeoutMs: 90000 });

// Upstream failures: 500, 429 with Retry-After (seconds and HTTP-date), invalid JSON, a body over
// max_body (plain and gzip bomb), a timeout, a closed connection, a missing document, and 304s.
// Each gives the documented events (upstream-error with status, title, detail, upstream_status,
// retry_in_ms; nothing for a 304 or an unchanged body) and polling behaviour (exponential
// backoff with jitter, visible in the upstream's request times; Retry-After honoured; back to the
// interval after recovery). The stream never closes, the last good snapshot stays, a subscriber
// joining during the trouble gets the snapshot and the error, recovery sends upstream-recovered
// and the subscribers converge. Every scenario has its own upstream and runs concurrently.
'use strict';

const h = require('./harness');
const { assert, T, log, sleep } = h;

const INTERVAL = 300;
const BACKOFF_MAX = 3000;
const ERROR_REPEAT = 1000;
// Request times are taken by the upstream's event loop, which other scenarios keep busy at
// times: a request may be stamped late by this much.
const EARLY = h.ASAN ? 250 : 150;

// The backoff scenarios: a failure mode kept until recovery.
const SCENARIOS = [
  { name: 'http500', mode: ['status', { status: 500 }], status: 502,
    detail: /^upstream answered 500$/, upstreamStatus: 500 },
  { name: 'http429', mode: ['status', { status: 429, retry_after: 2 }], status: 502,
    detail: /^upstream answered 429$/, upstreamStatus: 429, retryAfterMs: 2000 },
  { name: 'invalid', mode: ['invalid', {}], status: 502,
    detail: /^upstream sent invalid JSON at byte \d+/, upstreamStatus: 200 },
  { name: 'toobig', mode: ['huge', { bytes: 200000 }], config: { max_body: '1KiB' }, status: 502,
    detail: /^upstream body over 1024 bytes$/, upstreamStatus: 200 },
  { name: 'bomb', mode: ['gzip_bomb', { bytes: 1024 * 1024 }],
    config: { max_body: '1KiB' }, status: 502, detail: /^upstream body over 1024 bytes$/,
    upstreamStatus: 200 },
  { name: 'timeout', mode: ['hang', {}], config: { timeout: '500ms' }, status: 504,
    detail: /^timeout after 500 ms$/, upstreamStatus: null, failMs: 500 },
  // curl retries a request once on a fresh connection when a reused one dies without an
  // answer: requests that close together are one attempt.
  { name: 'closed', mode: ['close', {}], status: 502, retriedByCurl: true,
    detail: /^(upstream closed the connection without answering|connection lost while (receiving|sending the request))$/,
    upstreamStatus: null },
];

// The delay the poller may choose after its k-th failure in a row: [lo, hi].
function backoffRange(k) {
  const cap = Math.max(BACKOFF_MAX, INTERVAL);
  let base = INTERVAL;
  for (let i = 0; i < k && base < cap; i++) base *= 2;
  base = Math.min(base, cap);
  return [Math.max(INTERVAL, Math.floor(base / 2)), base];
}

function gapsOf(times) {
  return times.slice(1).map((x, i) => Math.round(x - times[i]));
}

// Request times with those that come within 100 ms of the previous one merged into it.
function attempts(times) {
  return times.filter((x, i) => i === 0 || x - times[i - 1] > 100);
}

function checkError(ev, sc, what) {
  const j = ev.json;
  what = `${what} ${ev.data}`;
  assert.equal(j.status, sc.status, `${what}: status`);
  assert.equal(j.title, 'Upstream request failed', `${what}: title`);
  assert.match(j.detail, sc.detail, `${what}: detail`);
  if (sc.upstreamStatus === null) {
    assert.ok(!('upstream_status' in j), `${what}: no upstream_status without an answer: ${ev.data}`);
  } else {
    assert.equal(j.upstream_status, sc.upstreamStatus, `${what}: upstream_status`);
  }
  assert.ok(Number.isInteger(j.retry_in_ms) && j.retry_in_ms >= INTERVAL,
    `${what}: retry_in_ms ${j.retry_in_ms}`);
  assert.ok(!ev.id, `${what}: upstream-error events carry no id`);
}

h.run('upstream_failures', async (t) => {
  const up = await h.startUpstream();
  const docs = {};
  const upstreams = {};
  const names = [...SCENARIOS.map((s) => s.name), 'date', 'nodoc', 'late', 'etag', 'lastmod',
    'same'];
  for (const name of names) {
    docs[name] = { scenario: name, v: 1, items: [1, 2, 3] };
    if (name !== 'nodoc') await up.put(`/${name}`, docs[name]);
    const sc = SCENARIOS.find((s) => s.name === name);
    upstreams[`f-${name}`] = { url: up.url(`/${name}`), interval: `${INTERVAL}ms`,
      error_repeat: `${ERROR_REPEAT}ms`, backoff_max: `${BACKOFF_MAX}ms`,
      ...(sc && sc.config) };
  }
  // No repeated upstream-error here: a late subscriber can only get the stored one.
  upstreams['f-late'].error_repeat = '1h';
  await up.mode('/lastmod', 'normal', { etag: false });
  await up.mode('/same', 'normal', { etag: false, last_modified: false });
  const pc = await h.startPollcast({ upstreams });
  const streamUrl = (name) => `${pc.base}/streams/f-${name}`;

  // Resolves right after path p got a request, with the request count: a mode set now applies
  // from the next request on, an interval away.
  const afterRequest = async (p) => {
    const n = (await up.stats(p)).count;
    return (await up.waitRequests(p, n + 1, T(3000), 'for a tick')).count;
  };

  const backoffScenario = async (sc) => {
    const p = `/${sc.name}`;
    const what = sc.name;
    const extra = sc.failMs || 0;
    const c1 = new h.EsStream(streamUrl(sc.name), { name: `${what}/es` });
    h.defer(() => c1.close());
    await c1.waitDoc(docs[sc.name], T(5000), 'first snapshot');

    const n0 = await afterRequest(p);
    await up.mode(p, ...sc.mode);
    const first = await c1.waitEvent('upstream-error', T(3000) + extra);
    checkError(first, sc, `${what}: first upstream-error`);
    if (sc.retryAfterMs) {
      assert.equal(first.json.retry_in_ms, sc.retryAfterMs, `${what}: Retry-After honoured`);
    } else {
      const [lo, hi] = backoffRange(1);
      assert.ok(first.json.retry_in_ms >= lo && first.json.retry_in_ms <= hi,
        `${what}: first retry_in_ms ${first.json.retry_in_ms} outside [${lo}, ${hi}]`);
    }

    // The failing requests: their spacing is the backoff (or Retry-After).
    const want = sc.retryAfterMs ? 3 : 4;
    let st;
    let times;
    for (let n = want; ; n++) {
      st = await up.waitRequests(p, n0 + n, T(15000), 'failing requests');
      times = st.times_ms.slice(n0);
      if (sc.retriedByCurl) times = attempts(times);
      if (times.length >= want) break;
    }
    const gaps = gapsOf(times.slice(0, want));
    log(`${what}: gaps between failing requests ${gaps} ms`);
    gaps.forEach((g, i) => {
      const [lo, hi] = sc.retryAfterMs ? [sc.retryAfterMs, sc.retryAfterMs] : backoffRange(i + 1);
      assert.ok(g >= extra + lo - EARLY && g <= extra + hi + T(600),
        `${what}: gap ${i + 1} is ${g} ms, expected ${extra} + [${lo}, ${hi}]`);
    });
    assert.ok(gaps[0] >= extra + first.json.retry_in_ms - EARLY &&
      gaps[0] <= extra + first.json.retry_in_ms + T(500),
    `${what}: the next request came ${gaps[0]} ms later, the event said ${first.json.retry_in_ms}`);
    assert.ok(st.max_inflight <= 1, `${what}: one request at a time`);

    // Events while failing: repeats at most once per error_repeat; nothing else.
    await sleep(50);
    const errors = c1.list('upstream-error');
    assert.ok(errors.length >= 2, `${what}: ${errors.length} upstream-error events while failing`);
    for (let i = 1; i < errors.length; i++) {
      checkError(errors[i], sc, `${what}: upstream-error ${i + 1}`);
      assert.ok(errors[i].t - errors[i - 1].t >= ERROR_REPEAT - 100,
        `${what}: upstream-error repeated after ${errors[i].t - errors[i - 1].t} ms`);
      // A repeat comes a second after the first failure at least, so from the second failure
      // in a row on (the third, unless the failures take time), whose backoff is [600, 1200]
      // or more.
      if (!sc.retryAfterMs) {
        const ms = errors[i].json.retry_in_ms;
        assert.ok(ms >= backoffRange(2)[0] && ms <= BACKOFF_MAX,
          `${what}: backoff did not grow: retry_in_ms ${errors.map((e) => e.json.retry_in_ms)}`);
      }
    }
    assert.deepEqual(c1.events.map((e) => e.event).filter((e) => e !== 'upstream-error'), ['data'],
      `${what}: only the first snapshot besides the errors`);
    assert.ok(c1.hasDoc(docs[sc.name]), `${what}: the last good snapshot stays`);

    // A subscriber that joins now gets the last good snapshot and the trouble.
    const c2 = await h.openRaw(pc.base, `/streams/f-${sc.name}`, { name: `${what}/late` });
    h.defer(() => c2.close());
    await c2.until((f) => f.events.length >= 2, T(3000), 'snapshot and error');
    assert.deepEqual(c2.events.slice(0, 2).map((e) => e.event), ['data', 'upstream-error'],
      `${what}: a late subscriber's first events`);
    assert.equal(c2.events[0].id, c1.lastId.id, `${what}: late snapshot id`);
    assert.ok(c2.hasDoc(docs[sc.name]));
    checkError(c2.events[1], sc, `${what}: late upstream-error`);

    // Recovery.
    const docB = { ...docs[sc.name], v: 2, recovered: true };
    await up.put(p, docB);
    await up.mode(p, 'normal');
    const nErrors = () => c1.list('upstream-error').length;
    for (const c of [c1, c2]) {
      await c.until((f) => f.hasDoc(docB) && f.count('upstream-recovered') === 1,
        T(BACKOFF_MAX + 5000) + extra, 'recovery');
    }
    const rec = c1.list('upstream-recovered')[0];
    assert.equal(rec.json.status, 200, `${what}: upstream-recovered status`);
    assert.equal(rec.json.title, 'Upstream recovered');
    assert.ok(rec.json.failed_for_ms >= 1000, `${what}: failed_for_ms ${rec.json.failed_for_ms}`);
    const recIndex = c1.events.indexOf(rec);
    assert.ok(c1.events.slice(recIndex).every((e) => e.event !== 'upstream-error'),
      `${what}: no upstream-error after upstream-recovered`);
    const errorsAtRecovery = nErrors();

    // Back to the interval: the backoff was reset (it was at [1500, 3000] ms or more). A tick
    // that finds the machine busy may be skipped, so the median tells, and none is long.
    const n1 = (await up.stats(p)).count;
    const st2 = await up.waitRequests(p, n1 + 6, T(5000), 'polls after recovery');
    const gaps2 = gapsOf(st2.times_ms.slice(n1, n1 + 6));
    assert.ok(h.percentile(gaps2, 50) <= INTERVAL + T(150) && Math.max(...gaps2) < 1400,
      `${what}: after recovery the gaps are ${gaps2}, the interval is ${INTERVAL}`);

    // And the stream goes on: a change is a patch.
    const docC = { ...docB, v: 3 };
    await up.put(p, docC);
    await c1.waitDoc(docC);
    await c2.waitDoc(docC);
    assert.equal(c1.events[c1.events.length - 1].event, 'patch');
    assert.equal(nErrors(), errorsAtRecovery, `${what}: no error after recovery`);
    assert.equal(c1.connErrors.length, 0, `${what}: the eventsource saw connection errors`);
    assert.equal(c1.opens, 1, `${what}: the eventsource reconnected`);
    assert.ok(!c2.closed, `${what}: the late stream was closed`);
    assert.equal(c1.count('data'), 1, `${what}: no data event besides the first`);
    log(`${what}: ok (${errors.length} errors while failing, recovered after ` +
      `${rec.json.failed_for_ms} ms)`);
  };

  // 503 with Retry-After as an HTTP-date, once: the next request waits until that date.
  const dateScenario = async () => {
    const p = '/date';
    const c = await h.openRaw(pc.base, '/streams/f-date', { name: 'date' });
    h.defer(() => c.close());
    await c.waitDoc(docs.date);
    const n0 = await afterRequest(p);
    const when = new Date(Math.floor((Date.now() + 3000) / 1000) * 1000);
    await up.mode(p, 'status', { status: 503, retry_after: when.toUTCString(), times: 1 });
    const ev = await c.waitEvent('upstream-error', T(3000));
    assert.equal(ev.json.upstream_status, 503);
    assert.equal(ev.json.detail, 'upstream answered 503');
    const ra = ev.json.retry_in_ms;
    assert.ok(ra >= 1400 && ra <= 3100, `date: retry_in_ms ${ra} for a date 2-3 s ahead`);
    const st = await up.waitRequests(p, n0 + 2, T(6000));
    const [gap] = gapsOf(st.times_ms.slice(n0, n0 + 2));
    assert.ok(gap >= ra - EARLY && gap <= ra + T(500),
      `date: next request after ${gap} ms, not ${ra}`);
    await c.until((f) => f.count('upstream-recovered') === 1, T(3000), 'recovery');
    assert.deepEqual(c.events.map((e) => e.event), ['data', 'upstream-error', 'upstream-recovered']);
    log(`date: ok (retry_in_ms ${ra}, gap ${gap})`);
  };

  // No document at first (404): the error comes without any snapshot; the first good poll
  // brings upstream-recovered and the data.
  const nodocScenario = async () => {
    const c = new h.EsStream(streamUrl('nodoc'), { name: 'nodoc' });
    h.defer(() => c.close());
    const ev = await c.waitEvent('upstream-error', T(3000));
    assert.equal(ev.json.upstream_status, 404);
    assert.equal(ev.json.detail, 'upstream answered 404');
    await sleep(INTERVAL * 2);
    assert.equal(c.count('data'), 0, 'nodoc: no snapshot before the first good poll');
    await up.put('/nodoc', docs.nodoc);
    await c.until((f) => f.hasDoc(docs.nodoc) && f.count('upstream-recovered') === 1,
      T(BACKOFF_MAX + 4000), 'the first snapshot after recovery');
    assert.equal(c.connErrors.length, 0);
    assert.equal(c.events[0].event, 'upstream-error');
    log('nodoc: ok');
  };

  // A subscriber that joins while the upstream fails, long after the error was published (no
  // repeat until error_repeat): the snapshot, then that error; then the recovery.
  const lateScenario = async () => {
    const p = '/late';
    const c1 = await h.openRaw(pc.base, '/streams/f-late', { name: 'late/first' });
    h.defer(() => c1.close());
    await c1.waitDoc(docs.late);
    await afterRequest(p);
    await up.mode(p, 'status', { status: 503 });
    const ev = await c1.waitEvent('upstream-error', T(3000));
    await up.waitRequests(p, (await up.stats(p)).count + 1, T(3000), 'a second failure');
    const c2 = await h.openRaw(pc.base, '/streams/f-late', { name: 'late/second' });
    h.defer(() => c2.close());
    await c2.until((f) => f.events.length >= 2, T(2000), 'the snapshot and the stored error');
    assert.deepEqual(c2.events.map((e) => e.event), ['data', 'upstream-error']);
    assert.equal(c2.events[1].data, ev.data, 'late: the stored upstream-error');
    assert.equal(c1.count('upstream-error'), 1, 'late: no repeat within error_repeat');
    await up.mode(p, 'normal');
    for (const c of [c1, c2]) {
      await c.until((f) => f.count('upstream-recovered') === 1, T(BACKOFF_MAX + 4000),
        'upstream-recovered');
    }
    assert.deepEqual(c2.events.map((e) => e.event), ['data', 'upstream-error', 'upstream-recovered']);
    log('late: ok');
  };

  // 304 (ETag, Last-Modified) and a byte-identical body: no event at all; a change afterwards
  // is a patch.
  const quietScenario = async (name, expectHeader) => {
    const p = `/${name}`;
    const c = await h.openRaw(pc.base, `/streams/f-${name}`, { name });
    h.defer(() => c.close());
    await c.waitDoc(docs[name]);
    const n0 = (await up.stats(p)).count;
    const st = await up.waitRequests(p, n0 + 5, T(4000));
    const hdr = st.headers;
    if (expectHeader === 'if-none-match') {
      const etag = (await up.put(p, docs[name])).etag; // same bytes, same ETag
      assert.equal(hdr['if-none-match'], etag, `${name}: conditional request by ETag`);
    } else if (expectHeader === 'if-modified-since') {
      assert.ok(hdr['if-modified-since'] && !hdr['if-none-match'],
        `${name}: conditional request by date: ${JSON.stringify(hdr)}`);
    } else {
      assert.ok(!hdr['if-none-match'] && !hdr['if-modified-since'], `${name}: unconditional`);
    }
    const gaps = gapsOf(st.times_ms.slice(n0, n0 + 5));
    assert.ok(gaps.every((g) => g >= INTERVAL - EARLY && g < 2 * INTERVAL + T(250)) &&
      h.percentile(gaps, 50) <= INTERVAL + T(150),
    `${name}: no backoff on 304 or unchanged bodies: gaps ${gaps}`);
    assert.deepEqual(c.events.map((e) => e.event), ['data'], `${name}: no event`);
    const next = { ...docs[name], v: 2 };
    await sleep(1100); // Last-Modified has one-second granularity
    await up.put(p, next);
    await c.waitDoc(next);
    assert.deepEqual(c.events.map((e) => e.event), ['data', 'patch'], `${name}: then a patch`);
    log(`${name}: ok`);
  };

  const m0 = await pc.metrics();
  await t.step(`${SCENARIOS.length + 6} scenarios, concurrently`, async () => {
    const all = [
      ...SCENARIOS.map(backoffScenario),
      dateScenario(),
      nodocScenario(),
      lateScenario(),
      quietScenario('etag', 'if-none-match'),
      quietScenario('lastmod', 'if-modified-since'),
      quietScenario('same', null),
    ];
    const results = await Promise.allSettled(all);
    const failed = results.filter((r) => r.status === 'rejected');
    if (failed.length) {
      for (const f of failed.slice(1)) log(`also failed: ${f.reason && f.reason.stack}`);
      throw failed[0].reason;
    }
  });

  await t.step('metrics count the outcomes', async () => {
    const m = await pc.metrics();
    const d = (k) => m[k] - (m0[k] || 0);
    log(`polls: changed ${d('pollcast_polls_total{outcome="changed"}')}, unchanged ` +
      `${d('pollcast_polls_total{outcome="unchanged"}')}, not_modified ` +
      `${d('pollcast_polls_total{outcome="not_modified"}')}, failed ` +
      `${d('pollcast_polls_total{outcome="failed"}')}, rejected ` +
      `${d('pollcast_polls_total{outcome="rejected"}')}`);
    assert.ok(d('pollcast_polls_total{outcome="not_modified"}') >= 10, 'not_modified polls');
    assert.ok(d('pollcast_polls_total{outcome="unchanged"}') >= 5, 'unchanged polls');
    assert.ok(d('pollcast_polls_total{outcome="failed"}') >= 20, 'failed polls');
    assert.ok(d('pollcast_polls_total{outcome="rejected"}') >= 3, 'rejected polls (invalid JSON)');
    assert.equal(m.pollcast_pollers, names.length);
  });
}, { timeoutMs: 120000 });

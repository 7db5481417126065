// /metrics through an independent, strict parser of the Prometheus text format (promparse.js),
// and its values moving as they must: subscribers and pollers gauges, polls by outcome, the
// upstream latency and patch size histograms (the patch sizes' sum equals the bytes of the patch
// events a client received), events delivered, bytes in and out, rejected requests by reason,
// build info; server.metrics = false answers 404. The parser is first shown to refuse broken
// expositions, so that a pass means something.
'use strict';

const { h, prom, metrics } = require('./util.js');
const { assert, T, log } = h;

const BAD = [
  'a 1', // no final line feed
  'a{b="x} 1\n',
  'a{b="\\q"} 1\n',
  '# TYPE a counter\na -1\n',
  'a 1\nb 1\na 2\n',
  'a 1\na 1\n',
  '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
  '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
  'a 1\n# TYPE a gauge\n',
  '1a 1\n',
  'a one\n',
];

h.run('ops.metrics', async (t) => {
  await t.step('the parser refuses broken expositions', async () => {
    for (const text of BAD) {
      assert.throws(() => prom.parse(text), undefined, `accepted ${JSON.stringify(text)}`);
    }
  });

  const up = await h.startUpstream();
  let doc = { n: 0, list: [{ id: 1, v: 'a' }] };
  await up.put('/m', doc);
  await up.put('/fail', { ok: true });
  const pc = await h.startPollcast({
    upstreams: {
      m: { url: up.url('/m'), interval: '100ms' },
      fail: { url: up.url('/fail'), interval: '100ms', backoff_max: '1s' },
    },
    allow: { url_prefix: up.url('/adhoc/'), cidr: '127.0.0.0/8' },
  });

  const m0 = await t.step('every family is there, with its type', async () => {
    const m = await metrics(pc);
    const types = {
      pollcast_build_info: 'gauge', pollcast_subscribers: 'gauge', pollcast_pollers: 'gauge',
      pollcast_polls_total: 'counter', pollcast_upstream_latency_seconds: 'histogram',
      pollcast_upstream_bytes_total: 'counter', pollcast_sent_bytes_total: 'counter',
      pollcast_patch_bytes: 'histogram', pollcast_events_delivered_total: 'counter',
      pollcast_events_published_total: 'counter', pollcast_subscribers_reset_total: 'counter',
      pollcast_requests_rejected_total: 'counter', pollcast_config_reloads_total: 'counter',
      pollcast_stream_writes_shared_total: 'counter',
    };
    for (const [name, type] of Object.entries(types)) {
      assert.ok(m.families[name], `family ${name} missing`);
      assert.equal(m.families[name].type, type, `type of ${name}`);
      assert.ok(m.families[name].help, `HELP of ${name}`);
    }
    const info = m.families.pollcast_build_info.samples[0];
    assert.match(info.labels.version, /^\d+\.\d+\.\d+/);
    assert.equal(info.value, 1);
    for (const reason of ['not_found', 'bad_request', 'forbidden', 'unauthorized', 'method',
      'overload', 'rate_limited']) {
      assert.equal(m.get('pollcast_requests_rejected_total', { reason }), 0, reason);
    }
    assert.equal(m.get('pollcast_subscribers'), 0);
    return m;
  });

  const clients = [];
  let failClient = null;
  await t.step('three subscribers, one poller; changes move polls, patches, events', async () => {
    assert.equal(m0.get('pollcast_pollers'), 0, 'named pollers start with their first subscriber');
    for (let i = 0; i < 3; i++) clients.push(await h.openRaw(pc.base, '/streams/m'));
    await Promise.all(clients.map((c) => c.waitDoc(doc)));
    failClient = await h.openRaw(pc.base, '/streams/fail');
    await failClient.waitDoc({ ok: true });
    let m = await metrics(pc);
    assert.equal(m.get('pollcast_subscribers'), 4);
    assert.equal(m.get('pollcast_pollers'), 2, 'pollers of m and fail');
    for (let i = 1; i <= 5; i++) {
      doc = { n: i, list: [...doc.list, { id: i + 1, v: 'x'.repeat(i * 50) }] };
      await up.put('/m', doc);
      await Promise.all(clients.map((c) => c.waitDoc(doc)));
    }
    m = await metrics(pc);
    const patches = clients[0].list('patch');
    assert.ok(patches.length >= 5, `${patches.length} patches`);
    const patchBytes = patches.reduce((s, e) => s + Buffer.byteLength(e.data), 0);
    const d = (name, labels) => m.get(name, labels) - (m0.get(name, labels) || 0);
    // Only topic m publishes patches (fail's document never changes).
    assert.equal(d('pollcast_patch_bytes_count'), patches.length, 'one observation per patch');
    assert.equal(d('pollcast_patch_bytes_sum'), patchBytes, 'patch sizes = bytes of the patches');
    assert.ok(d('pollcast_polls_total', { outcome: 'changed' }) >= 6, 'changed polls');
    assert.ok(d('pollcast_polls_total', { outcome: 'not_modified' }) +
      d('pollcast_polls_total', { outcome: 'unchanged' }) >= 1, 'polls without change');
    const polls = ['changed', 'unchanged', 'not_modified', 'failed', 'rejected']
      .reduce((s, o) => s + m.get('pollcast_polls_total', { outcome: o }), 0);
    const lat = m.get('pollcast_upstream_latency_seconds_count');
    // A scrape races the pollers by at most one poll each.
    assert.ok(Math.abs(lat - polls) <= 2, `latency observations ${lat} vs polls ${polls}`);
    assert.ok(m.get('pollcast_upstream_latency_seconds_sum') > 0);
    const events = clients.reduce((s, c) => s + c.list('data').length + c.list('patch').length, 0);
    assert.ok(d('pollcast_events_delivered_total') >= events + 1,
      `delivered ${d('pollcast_events_delivered_total')} >= ${events} received`);
    assert.ok(d('pollcast_sent_bytes_total') >= 3 * patchBytes, 'bytes out');
    assert.ok(d('pollcast_upstream_bytes_total') > 0, 'bytes in');
    assert.ok(d('pollcast_events_published_total') >= 6);
    log(`patches ${patches.length}, ${patchBytes} bytes; polls ${polls}`);
  });

  await t.step('a failing upstream counts failed polls', async () => {
    const before = (await metrics(pc)).get('pollcast_polls_total', { outcome: 'failed' });
    await up.mode('/fail', 'status', { status: 500 });
    const end = Date.now() + T(5000);
    let now = before;
    while (now < before + 2 && Date.now() < end) {
      await h.sleep(100);
      now = (await metrics(pc)).get('pollcast_polls_total', { outcome: 'failed' });
    }
    assert.ok(now >= before + 2, `failed polls ${before} -> ${now}`);
    await up.mode('/fail', 'invalid');
    const r0 = (await metrics(pc)).get('pollcast_polls_total', { outcome: 'rejected' });
    let r1 = r0;
    const end2 = Date.now() + T(5000);
    while (r1 === r0 && Date.now() < end2) {
      await h.sleep(100);
      r1 = (await metrics(pc)).get('pollcast_polls_total', { outcome: 'rejected' });
    }
    assert.ok(r1 > r0, 'rejected polls (invalid JSON)');
    await up.mode('/fail', 'normal');
  });

  await t.step('rejected requests by reason', async () => {
    const before = await metrics(pc);
    assert.equal((await h.request('GET', `${pc.base}/streams/nope`)).status, 404);
    assert.equal((await h.request('GET', `${pc.base}/streams/nope2`)).status, 404);
    assert.equal((await h.request('GET', `${pc.base}/streams/m?interval=abc`)).status, 400);
    assert.equal((await h.request('POST', `${pc.base}/streams/m`, { body: 'x' })).status, 405);
    const far = encodeURIComponent('http://203.0.113.9/x');
    assert.equal((await h.request('GET', `${pc.base}/proxy?url=${far}`)).status, 403);
    const m = await metrics(pc);
    const d = (reason) => m.get('pollcast_requests_rejected_total', { reason }) -
      before.get('pollcast_requests_rejected_total', { reason });
    assert.equal(d('not_found'), 2);
    assert.equal(d('bad_request'), 1);
    assert.equal(d('method'), 1);
    assert.equal(d('forbidden'), 1);
    assert.equal(d('unauthorized'), 0);
  });

  await t.step('subscribers leave: the gauge follows', async () => {
    for (const c of clients) c.close();
    failClient.close();
    const end = Date.now() + T(5000);
    let n;
    do {
      await h.sleep(50);
      n = (await metrics(pc)).get('pollcast_subscribers');
    } while (n !== 0 && Date.now() < end);
    assert.equal(n, 0);
  });

  await t.step('server.metrics = false: 404', async () => {
    const off = await h.startPollcast({ server: { metrics: false },
      upstreams: { m: { url: up.url('/m') } } }, { name: 'metrics-off' });
    const r = await h.request('GET', `${off.base}/metrics`);
    assert.equal(r.status, 404);
    assert.doesNotMatch(r.body, /pollcast_/);
  });
}, { timeoutMs: 90000 });

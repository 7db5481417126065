// Hostile upstreams (issue 4): each scenario is a named upstream on the scripted server (or a
// self-signed TLS server) that first serves a good document, then turns hostile. Each must give
// an upstream-error with a clear reason, keep the last good snapshot (nothing but the error
// reaches the subscriber; a new subscriber still gets the good document) and leave the process
// healthy. Valid but extreme documents (a number of 10,000 digits, a 512 KiB string, nesting at
// the limit) must be streamed byte-exact instead. All scenarios run concurrently.
'use strict';

const L = require('./lib');
const { assert, T, log } = L;

const DEPTH_LIMIT = 1000; // JSON_DEFAULT_MAX_DEPTH
const nest = (n) => '['.repeat(n) + ']'.repeat(n);
const digits = (n, seed) => {
  const r = L.rng(seed);
  let s = String(1 + r.int(9));
  while (s.length < n) s += String(r.int(10));
  return s;
};

L.run('security.hostile_upstreams', async (t) => {
  const up = await L.startUpstream();
  const good = (name) => ({ scenario: name, ok: true, items: [1, 2, 3] });
  // name: {mode: [mode, opts] | body: {text, contentType} , detail, config}
  const SCENARIOS = {
    bomb: { mode: ['gzip_bomb', { bytes: 64 * 1024 * 1024 }],
      detail: /^upstream body over 8388608 bytes$/ },
    bomb_small_cap: { mode: ['gzip_bomb', { bytes: 4 * 1024 * 1024 }], config: { max_body: '64KiB' },
      detail: /^upstream body over 65536 bytes$/ },
    endless: { mode: ['endless', {}], config: { max_body: '1MiB' },
      detail: /^upstream body over 1048576 bytes$/ },
    huge_declared: { mode: ['huge', { bytes: 64 * 1024 * 1024 }], config: { max_body: '1MiB' },
      detail: /^upstream body over 1048576 bytes$/ },
    // A drip of 10 bytes/s: below curl's low-speed limit (1024 bytes/s for 20 s). The interval
    // is long enough (30 s: a 24 s request timeout) for the low-speed limit to act first.
    drip: { mode: ['drip', { drip_ms: 100 }], config: { interval: '30s' }, slowMs: 60000,
      detail: /^upstream too slow: under 1024 bytes\/s for 20 s$/ },
    deep: { body: { text: nest(100000) }, detail: /^upstream sent invalid JSON at byte \d+: nesting too deep/ },
    deep_just_over: { body: { text: nest(DEPTH_LIMIT + 1) },
      detail: /^upstream sent invalid JSON at byte \d+: nesting too deep/ },
    deep_objects: { body: { text: '{"a":'.repeat(5000) + '1' + '}'.repeat(5000) },
      detail: /^upstream sent invalid JSON at byte \d+: nesting too deep/ },
    utf8: { body: { text: Buffer.concat([Buffer.from('{"s":"ab'), Buffer.from([0xff, 0xfe]),
      Buffer.from('"}')]) }, detail: /^upstream sent invalid JSON at byte 8: invalid UTF-8 in string/ },
    utf8_overlong: { body: { text: Buffer.concat([Buffer.from('{"s":"'), Buffer.from([0xc0, 0xaf]),
      Buffer.from('"}')]) }, detail: /invalid UTF-8/ },
    utf8_surrogate: { body: { text: Buffer.concat([Buffer.from('{"s":"'), Buffer.from([0xed, 0xa0, 0x80]),
      Buffer.from('"}')]) }, detail: /invalid UTF-8/ },
    huge_string: { body: { text: `{"s":"${'x'.repeat(2 * 1024 * 1024)}"}` }, config: { max_body: '1MiB' },
      detail: /^upstream body over 1048576 bytes$/ },
    html: { body: { text: '<html><body>{"not":"json"}</body></html>', contentType: 'text/html' },
      detail: /^upstream content type text\/html is not JSON \(see accept_any_content_type\)$/ },
    html_json_body: { body: { text: '{"looks":"like json"}', contentType: 'text/html; charset=utf-8' },
      detail: /^upstream content type text\/html; charset=utf-8 is not JSON \(see accept_any_content_type\)$/ },
    truncated: { mode: ['invalid', {}], detail: /^upstream sent invalid JSON at byte \d+/ },
    garbage: { body: { text: '\u0000\u0001binary\u0002' }, detail: /^upstream sent invalid JSON/ },
  };

  const upstreams = {};
  for (const [name, sc] of Object.entries(SCENARIOS)) {
    await up.put(`/${name}`, good(name));
    // A 2 s interval gives each poll a 1.6 s timeout: under a loaded CI (22 pollers starting at
    // once beside the ASan twin) a 1 s timeout made the first polls fail with "timeout", and with
    // error_repeat = 1h the scenario's own upstream-error was then never sent.
    upstreams[name] = { url: up.url(`/${name}`), interval: '2s', error_repeat: '1h',
      ...(sc.config || {}) };
  }
  // Valid extremes, streamed byte-exact.
  const bigNum = digits(10000, 1);
  const bigNum2 = digits(10000, 2);
  await up.put('/bignum', `{"n":${bigNum},"neg":-${bigNum}.${bigNum}e-99999}`);
  upstreams.bignum = { url: up.url('/bignum'), interval: '400ms' };
  const bigStr = 'ü€😀'.repeat(512 * 1024 / 9) + 'end';
  await up.put('/bigstr', JSON.stringify({ s: bigStr }));
  upstreams.bigstr = { url: up.url('/bigstr'), interval: '400ms' };
  await up.put('/deep_ok', nest(DEPTH_LIMIT));
  upstreams.deep_ok = { url: up.url('/deep_ok'), interval: '400ms' };
  // TLS with a certificate that does not verify.
  const tls = await L.startTlsUpstream(JSON.stringify({ tls: true }));
  upstreams.tls = { url: `https://127.0.0.1:${tls.port}/unverified`, interval: '400ms', error_repeat: '1h' };
  upstreams.tls_ca = { url: `https://127.0.0.1:${tls.port}/ca`, interval: '400ms',
    ca_file: tls.certFile };
  upstreams.tls_noverify = { url: `https://127.0.0.1:${tls.port}/noverify`, interval: '400ms',
    tls_verify: false };

  const pc = await L.startPollcast({ upstreams });

  const scenario = async (name, sc) => {
    const s = await L.openRaw(pc.base, `/streams/${name}`, { name });
    L.defer(() => s.close());
    assert.equal(s.status, 200, `${name}: status`);
    await s.waitDoc(good(name), T(5000), `${name}: the good document`);
    if (sc.mode) await up.mode(`/${name}`, ...sc.mode);
    else {
      const ct = sc.body.contentType ? `&content_type=${encodeURIComponent(sc.body.contentType)}` : '';
      const r = await L.request('PUT', `${up.base}/_control/doc?path=${encodeURIComponent('/' + name)}${ct}`,
        { body: sc.body.text });
      assert.equal(r.status, 200);
    }
    const from = s.events.length;
    const ev = await s.waitEvent('upstream-error', T(sc.slowMs || 8000), from);
    log(`${name}: ${ev.data.slice(0, 200)}`);
    assert.equal(ev.json.title, 'Upstream request failed', `${name}: title`);
    assert.match(ev.json.detail, sc.detail, `${name}: detail`);
    assert.ok(ev.json.status === 502 || ev.json.status === 504, `${name}: status ${ev.json.status}`);
    // The last good snapshot stays: nothing but errors after it, and the doc is unchanged.
    assert.deepEqual(s.list(null, from).map((e) => e.event).filter((e) => e !== 'upstream-error'),
      [], `${name}: no data or patch after the error`);
    assert.deepEqual(s.doc, good(name), `${name}: the document is the last good one`);
    // A new subscriber gets the last good snapshot and the stored error.
    const n = await L.openRaw(pc.base, `/streams/${name}`, { name: `${name}/late` });
    L.defer(() => n.close());
    await n.waitDoc(good(name), T(5000), `${name}: late subscriber's snapshot`);
    n.close();
    // s stays subscribed to the end, so that the topic (and its snapshot) lives on: a topic
    // without subscribers is dropped after a grace period, and a new poller starts afresh.
    return name;
  };

  await t.step('every hostile upstream: upstream-error with its reason, last good snapshot kept',
    async () => {
      const results = await Promise.allSettled(Object.entries(SCENARIOS).map(([n, sc]) =>
        scenario(n, sc)));
      const failed = results.filter((r) => r.status === 'rejected').map((r) => r.reason.message);
      assert.deepEqual(failed, [], 'scenarios');
    });

  await t.step('a TLS certificate that does not verify: upstream-error, nothing served', async () => {
    const s = await L.openRaw(pc.base, '/streams/tls', { name: 'tls' });
    L.defer(() => s.close());
    const ev = await s.waitEvent('upstream-error', T(5000));
    log(`tls: ${ev.data}`);
    assert.equal(ev.json.detail, 'TLS certificate did not verify');
    assert.equal(s.count('data'), 0);
    assert.equal(tls.stats.paths['/unverified'] || 0, 0,
      'no request was sent over the unverified connection');
    s.close();
  });

  await t.step('ca_file naming that certificate makes it verify; tls_verify = false', async () => {
    for (const name of ['tls_ca', 'tls_noverify']) {
      await L.check(name, `[upstream] ${name === 'tls_ca' ? 'ca_file' : 'tls_verify'} ` +
        'is applied to the poller', async () => {
        const s = await L.openRaw(pc.base, `/streams/${name}`, { name });
        L.defer(() => s.close());
        try {
          await s.waitDoc({ tls: true }, T(3000), 'the document over TLS');
        } finally {
          s.close();
        }
      });
    }
  });

  await t.step('numbers of 10,000 digits: streamed byte-exact, in data and in patches', async () => {
    const s = await L.openRaw(pc.base, '/streams/bignum', { name: 'bignum' });
    L.defer(() => s.close());
    const ev = await s.waitEvent('data', T(5000));
    assert.equal(ev.data, `{"n":${bigNum},"neg":-${bigNum}.${bigNum}e-99999}`, 'data byte-exact');
    await up.put('/bignum', `{"n":${bigNum2},"neg":-${bigNum}.${bigNum}e-99999}`);
    const p = await s.waitEvent('patch', T(5000));
    assert.equal(p.data, `[{"op":"replace","path":"/n","value":${bigNum2}}]`, 'patch byte-exact');
    s.close();
  });

  await t.step('a 512 KiB string of multibyte characters and nesting at the limit: exact',
    async () => {
      const s = await L.openRaw(pc.base, '/streams/bigstr', { name: 'bigstr' });
      L.defer(() => s.close());
      const ev = await s.waitEvent('data', T(5000));
      assert.equal(ev.data, JSON.stringify({ s: bigStr }));
      s.close();
      const d = await L.openRaw(pc.base, '/streams/deep_ok', { name: 'deep_ok' });
      L.defer(() => d.close());
      const e2 = await d.waitEvent('data', T(5000));
      assert.equal(e2.data, nest(DEPTH_LIMIT));
      d.close();
    });

  await t.step('the process stays healthy: /healthz and new subscribers served', async () => {
    // Every hostile upstream still serves its last good document to a new subscriber.
    for (const name of Object.keys(SCENARIOS)) await L.assertHealthy(pc, `/streams/${name}`, good(name));
    await L.assertHealthy(pc, '/streams/bignum');
    const rss = pc.rssKb();
    log(`pollcast RSS ${rss} KiB after the hostile upstreams`);
    assert.ok(rss < 512 * 1024, `RSS ${rss} KiB`);
  });
}, { timeoutMs: 150000 });

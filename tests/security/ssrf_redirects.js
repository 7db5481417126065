// SSRF through redirects (issue 10, bug 1): with [allow] follow_redirects = true, every hop of an
// ad-hoc poller (/proxy and the Streamdata.io form) passes the admission of the first URL: the
// canonical-URL prefix check against [allow] url_prefix and the address policy. A refused hop is
// an upstream-error whose detail says why and quotes neither the URL nor a forwarded header, and
// no request ever reaches it (the scripted upstreams' request counters prove it). Checked for a
// relative Location, an absolute one to another host (localhost) and to another port, a path
// outside the prefix, an IP literal refused by the address policy, a chain of three where only
// the third hop leaves, a chain longer than max_redirects, and a chain that stays inside (it
// streams).
'use strict';

const L = require('./lib');
const { AnyStream } = require('../ops/util');
const { assert, T, log } = L;

L.run('security.ssrf_redirects', async (t) => {
  const up = await L.startUpstream();
  const other = await L.startUpstream(); // the same host, another port
  const doc = { hello: 'redirects', n: 1 };
  const secret = { secret: 'must never be streamed' };
  const A = up.port;
  const inside = `http://127.0.0.1:${A}/api/`;

  await up.put('/secret', secret);
  await up.put('/other/doc', secret);
  await up.put('/api/viahost', secret);
  await up.put('/api/okdoc', doc);
  await up.put('/api/l5', doc);
  await up.put('/fwd/doc', secret);
  await other.put('/api/doc', secret);
  const redirects = {
    '/api/rel': '/secret?key=s3cr3t-query',
    '/api/host': `http://localhost:${A}/api/viahost`,
    '/api/port': `http://127.0.0.1:${other.port}/api/doc`,
    '/api/path': `http://127.0.0.1:${A}/other/doc`,
    '/api/meta': 'http://10.1.2.3/latest/meta-data/',
    '/api/c1': '/api/c2',
    '/api/c2': `http://127.0.0.1:${A}/api/c3`,
    '/api/c3': '../secret',
    '/api/ok': 'okdoc',
    '/api/l1': '/api/l2',
    '/api/l2': '/api/l3',
    '/api/l3': '/api/l4',
    '/api/l4': '/api/l5',
    '/api/fwd': `http://localhost:${A}/fwd/doc`,
  };
  for (const [from, location] of Object.entries(redirects)) {
    await up.mode(from, 'redirect', { status: from === '/api/path' ? 301 : 302, location });
  }

  // 10.1.2.3 and localhost are allowed prefixes too (for the literal and the forwarded-header
  // cases), so that what refuses them is the address policy or the origin rule.
  const pc = await L.startPollcast({
    server: { streamdata_compat: true },
    upstreams: {},
    allow: { url_prefix: [inside, 'http://10.1.2.3/', `http://localhost:${A}/fwd/`],
      cidr: '127.0.0.1/32', follow_redirects: true, max_redirects: 3, interval: '300ms',
      forward_header: 'X-Api-Key' },
  }, { name: 'pollcast' });
  const proxy = (url) => `/proxy?url=${encodeURIComponent(url)}`;

  // Opens path on pollcast, waits for its first upstream-error and checks it: detail matches re,
  // nothing secret in it, no data. Returns the event.
  const refused = async (path, re, name, opts = {}) => {
    const s = await L.openRaw(pc.base, path, { name, ...opts });
    L.defer(() => s.close());
    assert.equal(s.status, 200, `${name}: the first URL is admitted`);
    const ev = await s.waitEvent('upstream-error', T(5000));
    log(`${name}: ${ev.data}`);
    assert.match(ev.json.detail, re, `${name}: the reason`);
    assert.ok(!/s3cr3t|k-123|secret|localhost|:\/\//.test(ev.data),
      `${name}: no URL and no secret in the event`);
    assert.equal(s.count('data'), 0, `${name}: no document`);
    s.close();
    return ev;
  };
  // The same for the Streamdata.io form, whose trouble event is "error" {cause,status,message}.
  const refusedCompat = async (url, re, name, headers = {}) => {
    const s = new AnyStream(`${pc.base}/${url}`, { headers });
    L.defer(() => s.close());
    await s.opened;
    assert.equal(s.status, 200, `${name}: the first URL is admitted: ${s.body}`);
    await s.until((f) => f.list('error').length >= 1, T(5000), `${name}: error event`);
    const ev = s.list('error')[0];
    log(`${name}: ${ev.data}`);
    assert.match(JSON.parse(ev.data).message, re, `${name}: the reason`);
    assert.ok(!/s3cr3t|k-123|secret|localhost|:\/\//.test(ev.data),
      `${name}: no URL and no secret in the event`);
    assert.equal(s.list('data').length, 0, `${name}: no document`);
    s.close();
  };
  const counts = async () => ({
    secret: (await up.stats('/secret')).count,
    otherDoc: (await up.stats('/other/doc')).count,
    viahost: (await up.stats('/api/viahost')).count,
    fwd: (await up.stats('/fwd/doc')).count,
    port: (await L.requestJson('GET', `${other.base}/_control/stats`)).json.total,
  });

  await t.step('the target itself is refused with 403 (the rule the redirect went around)',
    async () => {
      const r = await L.requestJson('GET', pc.base + proxy(`http://127.0.0.1:${A}/secret`));
      assert.equal(r.status, 403, r.body);
    });

  const NO_RULE = /^redirect refused: the target matches no allow rule of this server$/;
  await t.step('relative Location outside the prefix: refused, never requested', async () => {
    await refused(proxy(`${inside}rel`), NO_RULE, 'relative');
  });

  await t.step('absolute Location to another host (localhost): refused, never requested',
    async () => {
      await refused(proxy(`${inside}host`), NO_RULE, 'other-host');
    });

  await t.step('absolute Location to another port: refused, never requested', async () => {
    await refused(proxy(`${inside}port`), NO_RULE, 'other-port');
  });

  await t.step('absolute Location to a path outside the prefix (301): refused', async () => {
    await refused(proxy(`${inside}path`), NO_RULE, 'other-path');
  });

  await t.step('Location to an allowed prefix at a private address literal: the address policy',
    async () => {
      await refused(proxy(`${inside}meta`), /^redirect refused: address 10\.1\.2\.3 is private$/,
        'literal');
    });

  await t.step('a chain of three where only the third hop leaves: every hop checked',
    async () => {
      const before = await Promise.all(['/api/c1', '/api/c2', '/api/c3'].map((p) => up.stats(p)));
      await refused(proxy(`${inside}c1`), NO_RULE, 'chain');
      const after = await Promise.all(['/api/c1', '/api/c2', '/api/c3'].map((p) => up.stats(p)));
      for (let i = 0; i < 3; i++) {
        assert.ok(after[i].count > before[i].count, `hop ${i + 1} inside the prefix was requested`);
      }
    });

  await t.step('more redirects than max_redirects: refused before the 4th hop', async () => {
    await refused(proxy(`${inside}l1`), /^more than 3 redirects$/, 'too-many');
    assert.equal((await up.stats('/api/l5')).count, 0, 'the hop past the limit was not requested');
  });

  await t.step('the Streamdata.io form: the same admission for every hop', async () => {
    await refusedCompat(`${inside}rel`, NO_RULE, 'compat-relative');
    await refusedCompat(`${inside}port`, NO_RULE, 'compat-other-port',
      { 'X-Sd-Header': 'X-Api-Key: k-123' });
  });

  await t.step('with a forwarded header, a hop to another allowed origin is refused', async () => {
    await refusedCompat(`${inside}fwd`,
      /^redirect refused: to another origin \(forwarded headers\)$/, 'compat-forwarded',
      { 'X-Sd-Header': 'X-Api-Key: k-123' });
  });

  await t.step('no refused hop was ever requested', async () => {
    await L.sleep(T(700)); // a retry or two of every refused poller
    const c = await counts();
    log(`requests at the refused targets: ${JSON.stringify(c)}`);
    assert.deepEqual(c, { secret: 0, otherDoc: 0, viahost: 0, fwd: 0, port: 0 });
  });

  await t.step('a chain that stays inside the prefix streams', async () => {
    const s = await L.openRaw(pc.base, proxy(`${inside}ok`), { name: 'inside' });
    L.defer(() => s.close());
    assert.equal(s.status, 200);
    await s.waitDoc(doc, T(5000), 'the document behind the redirect');
    assert.equal(s.count('upstream-error'), 0);
    s.close();
  });

  await t.step('still healthy', async () => {
    const r = await L.requestJson('GET', `${pc.base}/healthz`);
    assert.equal(r.status, 200);
  });
}, { timeoutMs: 90000 });

// SSRF on the wire (issue 4, "Upstream address policy"): GET /proxy?url= against the real
// binary. Non-public destinations written in every form (dotted, decimal, octal, hex, short,
// IPv6, IPv4-mapped IPv6) are refused with 403 and a reason naming the address class, although
// an allow prefix matches them (so the address policy is what refuses, not the prefix);
// userinfo, backslashes, escaped dot segments, CR/LF/NUL and other schemes are 400; URLs
// outside the allow prefixes (a look-alike host, another port, another scheme) are 403. A
// hostname that resolves to loopback is resolved at admission and refused with 403 at once
// (issue 10, gap 10), unless [allow] cidr covers it; the address policy at connect still refuses
// a name that resolves to loopback when it is reached without that lookup (a redirect hop: the
// DNS rebinding defence, the check on the address connected to); ad-hoc redirects are not
// followed by default; a named upstream at 127.0.0.1 (operator-trusted) is served.
'use strict';

const L = require('./lib');
const { assert, T, log } = L;

// [url, class regex]: refused by the address policy at request time (403).
const PRIVATE = [
  ['http://127.0.0.1/x', /127\.0\.0\.1 is loopback/],
  ['http://10.1.2.3/', /10\.1\.2\.3 is private/],
  ['http://172.16.5.4/', /172\.16\.5\.4 is private/],
  ['http://172.31.255.254/', /172\.31\.255\.254 is private/],
  ['http://192.168.1.1/', /192\.168\.1\.1 is private/],
  ['http://169.254.169.254/latest/meta-data/', /169\.254\.169\.254 is link-local \(cloud metadata\)/],
  ['http://100.64.0.1/', /100\.64\.0\.1 is carrier-grade NAT/],
  ['http://100.127.255.1/', /100\.127\.255\.1 is carrier-grade NAT/],
  ['http://[::1]/', /::1 is loopback/],
  ['http://[fc00::1]/', /fc00::1 is unique-local/],
  ['http://[fd12:3456::1]/', /fd12:3456::1 is unique-local/],
  ['http://[fe80::1]/', /fe80::1 is link-local/],
  ['http://0.0.0.0/', /0\.0\.0\.0 is unspecified/],
  ['http://[::]/', /:: is unspecified/],
  ['http://224.0.0.1/', /224\.0\.0\.1 is multicast/],
  ['http://239.255.255.250/', /239\.255\.255\.250 is multicast/],
  ['http://[ff02::1]/', /ff02::1 is multicast/],
  ['http://255.255.255.255/', /255\.255\.255\.255 is broadcast/],
  // Other spellings of 127.0.0.1: normalized first, then refused as loopback.
  ['http://2130706433/', /127\.0\.0\.1 is loopback/],
  ['http://0x7f.1/', /127\.0\.0\.1 is loopback/],
  ['http://0177.0.0.1/', /127\.0\.0\.1 is loopback/],
  ['http://127.1/', /127\.0\.0\.1 is loopback/],
  ['http://0x7F000001/', /127\.0\.0\.1 is loopback/],
  ['http://0xA9FEA9FE/', /169\.254\.169\.254 is link-local/],
  ['http://[::ffff:127.0.0.1]/', /loopback/],
  ['http://[::ffff:7f00:1]/', /loopback/],
  ['http://[::ffff:169.254.169.254]/', /link-local/],
  ['http://[64:ff9b::a00:1]/', /private/],
];

// Malformed or tricky URLs: 400.
const BAD = [
  'http://user@api.example.com/',
  'http://user:pass@api.example.com/',
  'http://api.example.com@evil.net/',
  'http://api.example.com%40evil.net/',
  'http://api.example.com\\@evil.net/',
  'http://api.example.com\\evil.net/',
  'http:\\\\api.example.com/',
  'http://api.example.com/a\\..\\..\\admin',
  'http://api.example.com/%2e%2e/admin',
  'http://api.example.com/v1/%2E%2E/%2e%2e/admin',
  'http://api.example.com/v1/.%2e/admin',
  'http://api.example.com/v1/..%2fadmin',
  'http://api.example.com/x\r\nX-Injected: 1',
  'http://api.example.com/x\r\n',
  'http://api.example.com/x\n',
  'http://api.example.com/\rx',
  'http://api.example.com/x y',
  'http://api.example.com\t/',
  'http://api.example.com/é',
  'http://exämple.com/',
  'http://[::1%25eth0]/',
  'http://api.example.com:0/',
  'http://api.example.com:65536/',
  'http://api.example.com:80a/',
  'http://256.0.0.1/',
  'http:///x',
  'http:api.example.com/',
  '//api.example.com/',
  'api.example.com/',
  'ftp://api.example.com/',
  'file:///etc/passwd',
  'gopher://api.example.com:70/_x',
  'dict://api.example.com:11211/stat',
  'javascript:alert(1)',
  'data:application/json,{}',
  'ws://api.example.com/',
  'http://api.example.com./',
];

// Well-formed URLs outside the allow prefixes: 403.
const OUTSIDE = [
  'http://api.example.com.evil.net/',
  'http://api.example.com.evil.net/v1/',
  'http://evil.net/',
  'http://api.example.co/',
  'http://api.example.com:8080/',
  'https://api.example.com/',
  'http://example.com/',
  'http://xapi.example.com/',
];

L.run('security.ssrf', async (t) => {
  const up = await L.startUpstream();
  const doc = { hello: 'ssrf', n: 1 };
  await up.put('/doc', doc);
  await up.put('/target', { never: 'reached' });
  await up.put('/rebind', doc);
  await up.mode('/redir', 'redirect', { status: 302, location: `http://localhost:${up.port}/target` });
  await up.mode('/redir-meta', 'redirect', { status: 301,
    location: 'http://169.254.169.254/latest/meta-data/' });

  // Every private host above also has an allow prefix, so that what refuses them is the
  // address policy, not the prefix rule.
  const prefixes = ['http://api.example.com/', `http://localhost:${up.port}/`,
    'http://127.0.0.1/', 'http://10.1.2.3/', 'http://172.16.5.4/', 'http://172.31.255.254/',
    'http://192.168.1.1/', 'http://169.254.169.254/', 'http://100.64.0.1/',
    'http://100.127.255.1/', 'http://[::1]/', 'http://[fc00::1]/', 'http://[fd12:3456::1]/',
    'http://[fe80::1]/', 'http://0.0.0.0/', 'http://[::]/', 'http://224.0.0.1/',
    'http://239.255.255.250/', 'http://[ff02::1]/', 'http://255.255.255.255/',
    'http://[::ffff:127.0.0.1]/', 'http://[::ffff:169.254.169.254]/', 'http://[64:ff9b::a00:1]/'];
  const cfg = {
    server: { streamdata_compat: true },
    upstreams: { local: { url: up.url('/doc'), interval: '300ms' } },
    allow: { url_prefix: prefixes, interval: '300ms' },
  };
  const pc = await L.startPollcast(cfg, { name: 'pollcast' });
  const proxy = (url, base = pc.base) => `${base}/proxy?url=${encodeURIComponent(url)}`;

  await t.step('non-public addresses in every spelling: 403 with the address class', async () => {
    const bad = [];
    for (const [url, re] of PRIVATE) {
      const r = await L.requestJson('GET', proxy(url));
      const ok = r.status === 403 && r.json && re.test(r.json.detail || '') &&
        r.headers['content-type'] === 'application/problem+json';
      if (!ok) bad.push(`${url}: ${r.status} ${r.body}`);
    }
    assert.deepEqual(bad, [], 'refusals');
    log(`${PRIVATE.length} private destinations refused`);
  });

  await t.step('userinfo, backslashes, escaped dot segments, CR/LF, other schemes: 400', async () => {
    const bad = [];
    for (const url of BAD) {
      const r = await L.requestJson('GET', proxy(url));
      if (r.status !== 400 || !r.json || r.json.status !== 400 || !r.json.detail) {
        bad.push(`${JSON.stringify(url)}: ${r.status} ${r.body}`);
      }
    }
    // NUL: %00 in the query parameter decodes to a NUL byte inside the URL.
    for (const q of ['http%3A%2F%2Fapi.example.com%2Fx%00y', 'http%3A%2F%2Fapi.example.com%00.evil.net%2F',
      'http%3A%2F%2Fapi.example.com%2F%00']) {
      const r = await L.requestJson('GET', `${pc.base}/proxy?url=${q}`);
      if (r.status !== 400) bad.push(`${q} (NUL): ${r.status} ${r.body}`);
    }
    // Missing or empty url.
    for (const p of ['/proxy', '/proxy?url=', '/proxy?uri=http://api.example.com/']) {
      const r = await L.requestJson('GET', `${pc.base}${p}`);
      if (r.status !== 400) bad.push(`${p}: ${r.status} ${r.body}`);
    }
    assert.deepEqual(bad, [], 'malformed URLs');
    log(`${BAD.length + 6} malformed URLs refused with 400`);
  });

  await t.step('URLs outside every allow prefix: 403', async () => {
    const bad = [];
    for (const url of OUTSIDE) {
      const r = await L.requestJson('GET', proxy(url));
      if (r.status !== 403 || !/allow rule/.test((r.json && r.json.detail) || '')) {
        bad.push(`${url}: ${r.status} ${r.body}`);
      }
    }
    assert.deepEqual(bad, [], 'outside the prefixes');
  });

  await t.step('a hostname that resolves to loopback: 403 at admission, naming the address',
    async () => {
      const pollers = async () => Number(/^pollcast_pollers (\d+)$/m
        .exec((await L.requestJson('GET', `${pc.base}/metrics`)).body)[1]);
      const p0 = await pollers();
      const t0 = Date.now();
      const r = await L.requestJson('GET', proxy(`http://localhost:${up.port}/rebind`));
      const ms = Date.now() - t0;
      log(`localhost: ${r.status} in ${ms} ms: ${r.body}`);
      assert.equal(r.status, 403, r.body);
      assert.equal(r.headers['content-type'], 'application/problem+json');
      assert.equal(r.json.status, 403);
      assert.match(r.json.detail,
        /^the host resolves to a refused address: address (127\.0\.0\.1|::1) is loopback$/);
      assert.ok(ms < T(3000), 'answered at once, within the lookup timeout');
      assert.equal((await up.stats('/rebind')).count, 0, 'no request reached the upstream');
      assert.equal(await pollers(), p0, 'no poller was started for it');
      // The Streamdata.io form: the same lookup, the same 403.
      const c = await L.requestJson('GET', `${pc.base}/http://localhost:${up.port}/rebind`);
      assert.equal(c.status, 403, c.body);
      assert.match(c.json.detail, /^the host resolves to a refused address: address /);
      assert.equal((await up.stats('/rebind')).count, 0);
    });

  await t.step('the check at connect still refuses a name resolving to loopback (a redirect hop)',
    async () => {
      // An upstream on 127.0.0.2 (allowed by cidr) redirects to localhost (allowed by a prefix,
      // a name, so only the address policy at connect can refuse it).
      const up2 = await L.startUpstream({ host: '127.0.0.2' });
      await up2.mode('/redir', 'redirect', { status: 302, location: `http://localhost:${up2.port}/target` });
      const pc3 = await L.startPollcast({
        upstreams: {},
        allow: { url_prefix: [`http://127.0.0.2:${up2.port}/`, `http://localhost:${up2.port}/`],
          cidr: '127.0.0.2/32', follow_redirects: true, interval: '300ms' },
      }, { name: 'pollcast-connect-check' });
      const s = await L.openRaw(pc3.base,
        `/proxy?url=${encodeURIComponent(`http://127.0.0.2:${up2.port}/redir`)}`, { name: 'hop' });
      L.defer(() => s.close());
      assert.equal(s.status, 200, 'the first URL is admitted');
      const ev = await s.waitEvent('upstream-error', T(5000));
      log(`upstream-error: ${ev.data}`);
      assert.match(ev.json.detail, /^upstream address refused: address (127\.0\.0\.1|::1) is loopback$/,
        'refused by the address policy at connect, not by a failed connection');
      assert.ok((await up2.stats('/redir')).count >= 1);
      assert.equal(s.count('data'), 0);
      s.close();
    });

  await t.step('the same URL streams with [allow] cidr = 127.0.0.0/8 and ::1/128', async () => {
    const pc2 = await L.startPollcast({
      upstreams: {},
      allow: { url_prefix: [`http://localhost:${up.port}/`], cidr: ['127.0.0.0/8', '::1/128'],
        interval: '300ms' },
    }, { name: 'pollcast-cidr' });
    const before = (await up.stats('/target')).count;
    const s = await L.openRaw(pc2.base, `/proxy?url=${encodeURIComponent(`http://localhost:${up.port}/rebind`)}`,
      { name: 'allowed-cidr' });
    L.defer(() => s.close());
    assert.equal(s.status, 200);
    await s.waitDoc(doc, T(5000), 'the document through the allowed range');
    assert.equal(s.count('upstream-error'), 0);
    assert.ok((await up.stats('/rebind')).count >= 1);
    s.close();

    // A URL holding an escaped CR/LF ("%0D%0A", the client encoded it twice) is polled with the
    // escape kept: the upstream sees it in the path, never as a header line.
    const inj = `/doc%0D%0AX-Injected:%201`;
    await up.put(decodeURIComponent(inj), doc).catch(() => {});
    const e = await L.openRaw(pc2.base, `/proxy?url=${encodeURIComponent(`http://localhost:${up.port}${inj}`)}`,
      { name: 'escaped-crlf' });
    L.defer(() => e.close());
    if (e.status === 200) {
      await e.until((f) => f.events.length > 0, T(5000), 'an event');
      const all = await L.requestJson('GET', `${up.base}/_control/stats`);
      const paths = Object.keys(all.json.paths);
      assert.ok(paths.includes(inj) || paths.some((p) => /%0D%0A/i.test(p)),
        `the escaped path reached the upstream escaped: ${paths}`);
      for (const [p, st] of Object.entries(all.json.paths)) {
        assert.ok(!('x-injected' in st.headers), `injected header at ${p}`);
      }
    } else {
      assert.equal(e.status, 400, 'refused as malformed, or polled escaped');
    }
    e.close();

    // Ad-hoc redirects are off by default: the 302 is an error, its target is never fetched,
    // even when the target is itself allowed.
    const r = await L.openRaw(pc2.base, `/proxy?url=${encodeURIComponent(`http://localhost:${up.port}/redir`)}`,
      { name: 'redirect' });
    L.defer(() => r.close());
    assert.equal(r.status, 200);
    const ev = await r.waitEvent('upstream-error', T(5000));
    log(`redirect: ${ev.data}`);
    assert.equal(ev.json.upstream_status, 302, 'the redirect is reported, not followed');
    assert.match(ev.json.detail, /upstream answered 302/);
    assert.equal(r.count('data'), 0);
    const m = await L.openRaw(pc2.base, `/proxy?url=${encodeURIComponent(`http://localhost:${up.port}/redir-meta`)}`,
      { name: 'redirect-meta' });
    L.defer(() => m.close());
    const ev2 = await m.waitEvent('upstream-error', T(5000));
    assert.equal(ev2.json.upstream_status, 301);
    await L.sleep(700);
    assert.equal((await up.stats('/target')).count, before, 'redirect target never requested');
    r.close();
    m.close();
  });

  await t.step('a named upstream at 127.0.0.1 is operator-trusted: it streams', async () => {
    const s = await L.openRaw(pc.base, '/streams/local', { name: 'named' });
    L.defer(() => s.close());
    assert.equal(s.status, 200);
    await s.waitDoc(doc, T(5000));
    assert.equal(s.count('upstream-error'), 0);
    s.close();
  });

  await t.step('still healthy', async () => {
    await L.assertHealthy(pc, '/streams/local', doc);
  });
}, { timeoutMs: 90000 });

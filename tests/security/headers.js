// Header hygiene (issue 4): configured upstream headers (secrets) reach the upstream and
// nothing else: not the events, not the error details (an upstream error, a refused redirect to
// another origin), not /metrics, /streams or the viewer, not the daemon's log (debug level,
// access log on). Client headers (Cookie, Authorization, anything else) are not forwarded
// upstream unless the upstream lists them in forward_header.
'use strict';

const crypto = require('node:crypto');
const L = require('./lib');
const { assert, T, log } = L;

L.run('security.headers', async (t) => {
  const up = await L.startUpstream();
  const key = `SEKRET-key-${crypto.randomBytes(12).toString('hex')}`;
  const bearer = `SEKRET-bearer-${crypto.randomBytes(12).toString('hex')}`;
  const secrets = [key, bearer, key.slice(7), bearer.slice(14)];
  const doc = { v: 1 };
  await up.put('/sec', doc);
  await up.put('/fwd', doc);
  await up.put('/elsewhere', { other: 'origin' });
  const pc = await L.startPollcast({
    server: { log_level: 'debug', access_log: true },
    upstreams: {
      sec: { url: up.url('/sec'), interval: '300ms', error_repeat: '1s',
        header: [`X-Api-Key: ${key}`, `Authorization: Bearer ${bearer}`] },
      fwd: { url: up.url('/fwd'), interval: '300ms', forward_header: 'X-Forward-Me' },
    },
  });

  const raws = [];
  const subscribe = async (p, headers) => {
    const s = await L.openRaw(pc.base, p, { headers, keepRaw: true, name: p });
    L.defer(() => s.close());
    raws.push(s);
    return s;
  };

  await t.step('the configured headers reach the upstream; client headers do not', async () => {
    const s = await subscribe('/streams/sec', { 'X-Not-Listed': 'client-value',
      Cookie: 'session=client-cookie', Authorization: 'Bearer client-token',
      'X-Forward-Me': 'not-listed-here' });
    await s.waitDoc(doc, T(5000));
    const st = await up.stats('/sec');
    assert.equal(st.headers['x-api-key'], key, 'configured X-Api-Key sent');
    assert.equal(st.headers.authorization, `Bearer ${bearer}`, 'configured Authorization, not the client\'s');
    for (const h of ['x-not-listed', 'cookie', 'x-forward-me']) {
      assert.ok(!(h in st.headers), `client header ${h} forwarded: ${JSON.stringify(st.headers)}`);
    }
    assert.match(st.headers['user-agent'], /^pollcast\//);
    assert.equal(st.headers.accept, 'application/json');
  });

  await t.step('forward_header passes the listed client header, and only it', async () => {
    const s = await subscribe('/streams/fwd', { 'X-Forward-Me': 'forwarded-value',
      'X-Other': 'nope', Cookie: 'c=1' });
    await s.waitDoc(doc, T(5000));
    const st = await up.waitRequests('/fwd', 1, T(3000));
    for (const h of ['x-other', 'cookie']) assert.ok(!(h in st.headers), `${h} forwarded`);
    await L.check('forward-header', 'forward_header = X-Forward-Me reaches the upstream',
      async () => {
        await L.sleep(T(700));
        const st2 = await up.stats('/fwd');
        assert.equal(st2.headers['x-forward-me'], 'forwarded-value',
          `upstream saw ${JSON.stringify(st2.headers)}`);
      });
  });

  await t.step('errors carry no secret: upstream failure and a cross-origin redirect', async () => {
    const s = raws[0];
    await up.mode('/sec', 'status', { status: 500, body: `{"echo":"${key}"}` });
    const e1 = await s.waitEvent('upstream-error', T(5000));
    assert.match(e1.json.detail, /^upstream answered 500$/);
    // A redirect to another origin (localhost, not 127.0.0.1): the configured headers must not
    // follow it; the poller refuses it.
    await up.mode('/sec', 'redirect', { status: 302, location: `http://localhost:${up.port}/elsewhere` });
    await s.until((f) => f.list('upstream-error').some((e) => /redirect/.test(e.json.detail)),
      T(8000), 'the refused redirect');
    const e2 = s.list('upstream-error').find((e) => /redirect/.test(e.json.detail));
    log(`redirect: ${e2.data}`);
    const el = await up.stats('/elsewhere');
    assert.ok(!('x-api-key' in el.headers) && !String(el.headers.authorization || '').includes(bearer),
      `the other origin got a secret: ${JSON.stringify(el.headers)}`);
    await up.mode('/sec', 'normal');
    await s.waitEvent('upstream-recovered', T(8000));
  });

  await t.step('no secret anywhere: events, /metrics, /streams, viewer, logs', async () => {
    const texts = {
      events: raws.map((s) => s.raw).join('\n'),
      metrics: (await L.request('GET', `${pc.base}/metrics`)).body,
      streams: (await L.request('GET', `${pc.base}/streams`)).body,
      viewer: (await L.request('GET', `${pc.base}/`)).body,
    };
    for (const s of raws) s.close();
    // Stop the daemon first, so that its log holds the shutdown lines too.
    const e = await pc.stop();
    assert.equal(e.code, 0);
    texts.log = pc.stderr();
    assert.ok(texts.log.length > 0, 'the log is not empty');
    log(`checked ${Object.entries(texts).map(([k, v]) => `${k} ${v.length} bytes`).join(', ')}`);
    for (const [where, text] of Object.entries(texts)) {
      for (const sec of secrets) {
        assert.ok(!text.includes(sec), `secret ${sec.slice(0, 12)}... found in ${where}`);
      }
    }
    assert.ok(texts.events.includes('upstream-error'), 'the events were captured');
  });
}, { timeoutMs: 90000 });

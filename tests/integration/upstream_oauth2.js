// OAuth2 client credentials (issue 12, section 3) against the scripted upstream's token endpoint
// (short-lived tokens, counted, credentials checked) and a resource that wants them:
// - the token request is a form POST with HTTP Basic client authentication, scope and audience;
// - 1,000 subscribers and two pollers of one upstream definition cost one token request per
//   expiry, renewed in the background (no poll waits, no error, no gap in the polls);
// - a revoked token gets a 401: pollcast fetches a new one once and retries the poll, subscribers
//   see nothing;
// - a token endpoint that answers 400 invalid_client (or 401 to a wrong secret) is an
//   upstream-error that says so, with backoff;
// - the client secret, the tokens and the query values appear in no event, no log line (JSON
//   logs at debug level with the access log) and no metric.
'use strict';

const h = require('./harness');
const { assert, T, log } = h;

const N = h.scaled(1000, 200);
const BATCH = 200;
const EXPIRES = 3; // seconds
const INTERVAL = 250;

h.run('integration.upstream_oauth2', async (t) => {
  const up = await h.startUpstream();
  const SECRET = 'cl1ent-S3CRET/with:odd&chars';
  const SECRET_Q = 'Qparam-S3CRET';
  const CLIENT = 'pollcast:client';
  await up.put('/api', { v: 0 });
  await up.mode('/api', 'normal', { require_token: true });
  await up.mode('/token', 'token', { client_id: CLIENT, client_secret: SECRET,
    expires_in: EXPIRES });
  await up.mode('/token_bad', 'token', { fail: 'invalid_client' });
  await up.mode('/token_wrong', 'token', { client_id: CLIENT, client_secret: 'another' });
  await up.mode('/token_post', 'token', { client_id: CLIENT, client_secret: SECRET,
    expires_in: 60 });

  const oauth = (tokenPath, extra = {}) => ({
    oauth2_token_url: up.url(tokenPath), oauth2_client_id: CLIENT,
    oauth2_client_secret: SECRET, ...extra });
  const pc = await h.startPollcast({
    server: { log_format: 'json', log_level: 'debug', access_log: true,
      max_connections: N + 500, max_subscribers: N + 100, keepalive: '1s' },
    upstreams: {
      api: { url: up.url('/api'), interval: `${INTERVAL}ms`, min_interval: '100ms',
        query: `key=${SECRET_Q}`,
        ...oauth('/token', { oauth2_scope: 'read write', oauth2_audience: 'https://api.example/' }) },
      bad: { url: up.url('/api'), interval: `${INTERVAL}ms`, ...oauth('/token_bad') },
      wrong: { url: up.url('/api'), interval: `${INTERVAL}ms`, ...oauth('/token_wrong') },
      redir: { url: up.url('/hop'), interval: `${INTERVAL}ms`, ...oauth('/token_post',
        { oauth2_client_auth: 'post' }) },
      post_auth: { url: up.url('/api'), interval: `${INTERVAL}ms`,
        ...oauth('/token_post', { oauth2_client_auth: 'post' }) },
    },
  });

  const subs = [];
  h.defer(() => subs.forEach((s) => s.close()));
  let doc = { v: 0 };

  await t.step('the token request: form POST, Basic client authentication, scope, audience',
    async () => {
      const s = await h.openRaw(pc.base, '/streams/api', { name: 'first', keepRaw: true });
      subs.push(s);
      await s.waitDoc(doc, T(5000));
      const tr = (await up.stats('/token')).requests;
      assert.equal(tr.length, 1, 'one token request');
      assert.equal(tr[0].method, 'POST');
      assert.equal(tr[0].content_type, 'application/x-www-form-urlencoded');
      assert.equal(tr[0].body,
        'grant_type=client_credentials&scope=read%20write&audience=https%3A%2F%2Fapi.example%2F');
      const basic = /^Basic (.+)$/.exec(tr[0].authorization);
      assert.ok(basic, 'HTTP Basic');
      const pair = Buffer.from(basic[1], 'base64').toString();
      assert.equal(pair, `${encodeURIComponent(CLIENT)}:${encodeURIComponent(SECRET)
        .replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())}`);
      const ar = (await up.stats('/api')).requests.pop();
      assert.match(ar.authorization, /^Bearer tok-1-/);
      assert.deepEqual(ar.query, { key: [SECRET_Q] });
    });

  await t.step(`${N} subscribers and two pollers: one token request per expiry, renewed in ` +
    'the background', async () => {
    for (let i = 0; i < N; i += BATCH) {
      const batch = [];
      for (let k = i; k < Math.min(N, i + BATCH); k++) {
        batch.push(h.openRaw(pc.base, k % 2 ? '/streams/api' : '/streams/api?interval=0.5',
          { name: `s${k}`, keepRaw: k < 4 }).then((s) => {
          subs.push(s);
          return s.waitDoc(doc, T(20000), 'the snapshot');
        }));
      }
      await Promise.all(batch);
    }
    const m = await pc.metrics();
    assert.equal(m.pollcast_subscribers, N + 1);
    assert.equal(m.pollcast_pollers, 2, 'two pollers (two intervals) of one definition');
    const t0 = Date.now();
    const before = (await up.stats('/token')).count;
    const apiBefore = (await up.stats('/api')).count;
    // Changes keep flowing across several expiries.
    const WINDOW = 4 * EXPIRES * 1000;
    for (let v = 1; Date.now() - t0 < WINDOW; v++) {
      doc = { v };
      await up.put('/api', doc);
      await Promise.all(subs.map((s) => s.waitDoc(doc, T(10000), `version ${v}`)));
      await h.sleep(400);
    }
    const elapsed = Date.now() - t0;
    const tokens = (await up.stats('/token')).count - before;
    const st = await up.stats('/api');
    log(`${tokens} token requests in ${elapsed} ms (expires_in ${EXPIRES} s), ` +
      `${st.count - apiBefore} resource requests, ${N + 1} subscribers, 2 pollers`);
    // Renewed at 3/4 of the lifetime: one per 2.25 s, never one per poller or subscriber.
    assert.ok(tokens >= Math.floor(elapsed / (EXPIRES * 1000)),
      `renewed before expiry: ${tokens}`);
    assert.ok(tokens <= Math.ceil(elapsed / (EXPIRES * 750)) + 1, `${tokens} token requests`);
    for (const s of subs) {
      assert.equal(s.count('upstream-error'), 0, `${s.name}: no upstream-error`);
      assert.equal(s.count('data'), 1, `${s.name}: one snapshot`);
    }
    // No poll waited for a token: no gap in the polls (the two pollers share the path).
    const times = st.times_ms.filter((x) => x >= st.times_ms[st.times_ms.length - 1] - elapsed);
    let gap = 0;
    for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i] - times[i - 1]);
    log(`largest gap between resource requests: ${gap} ms`);
    assert.ok(gap < h.SLOW * 600, `largest gap ${gap} ms`);
  });

  await t.step('a revoked token: 401, one new token, the poll retried, subscribers see nothing',
    async () => {
      const before = (await up.stats('/token')).count;
      const errorsBefore = subs.reduce((n, s) => n + s.count('upstream-error'), 0);
      await request('POST', up.url('/_control/revoke'));
      doc = { v: 'after revoke' };
      await up.put('/api', doc);
      await Promise.all(subs.map((s) => s.waitDoc(doc, T(10000), 'the change after revoke')));
      const after = (await up.stats('/token')).count;
      assert.ok(after - before >= 1 && after - before <= 2, `${after - before} new tokens`);
      const errors = subs.reduce((n, s) => n + s.count('upstream-error'), 0) - errorsBefore;
      assert.equal(errors, 0, 'no upstream-error');
    });

  await t.step('token endpoint failures are upstream-errors that say so, with backoff',
    async () => {
      const bad = await h.openRaw(pc.base, '/streams/bad', { name: 'bad', keepRaw: true });
      const wrong = await h.openRaw(pc.base, '/streams/wrong', { name: 'wrong', keepRaw: true });
      subs.push(bad, wrong);
      const e1 = await bad.waitEvent('upstream-error', T(5000));
      assert.equal(e1.json.detail, 'token endpoint answered 400 invalid_client');
      const e2 = await wrong.waitEvent('upstream-error', T(5000));
      assert.equal(e2.json.detail, 'token endpoint answered 401 invalid_client');
      const c0 = (await up.stats('/token_bad')).count;
      await h.sleep(3000);
      const c1 = (await up.stats('/token_bad')).count;
      log(`token_bad: ${c1 - c0} token requests in 3 s at interval ${INTERVAL} ms`);
      assert.ok(c1 - c0 <= 5, `backoff: ${c1 - c0} token requests in 3 s`);
      assert.equal(bad.count('data'), 0);
    });

  await t.step('oauth2_client_auth = post: the credentials in the form, no Basic', async () => {
    const s = await h.openRaw(pc.base, '/streams/post_auth', { name: 'post_auth',
      keepRaw: true });
    await s.waitDoc(doc, T(5000));
    s.close();
    const tr = (await up.stats('/token_post')).requests;
    assert.equal(tr.length, 1);
    assert.equal(tr[0].authorization, undefined);
    assert.equal(tr[0].body, 'grant_type=client_credentials&client_id=pollcast%3Aclient' +
      `&client_secret=${encodeURIComponent(SECRET)}`);
  });

  await t.step('a redirect to another origin does not carry the token there', async () => {
    // localhost and 127.0.0.1 are two origins: the hop is refused before it is requested.
    await up.mode('/hop', 'redirect', { status: 302, location: `http://localhost:${up.port}/api2` });
    await up.put('/api2', { other: true });
    const s = await h.openRaw(pc.base, '/streams/redir', { name: 'redir', keepRaw: true });
    subs.push(s);
    const ev = await s.waitEvent('upstream-error', T(5000));
    assert.equal(ev.json.detail, 'redirect to another origin refused (configured headers)');
    assert.equal((await up.stats('/api2')).count, 0, 'nothing reached the other origin');
  });

  await t.step('no secret in any event, log line or metric', async () => {
    const issued = new Set();
    for (const r of (await up.stats('/api')).requests) {
      const m = /^Bearer (.+)$/.exec(r.authorization || '');
      if (m) issued.add(m[1]);
    }
    assert.ok(issued.size >= 2, 'tokens seen');
    const secrets = [SECRET, encodeURIComponent(SECRET), SECRET_Q, ...issued,
      Buffer.from(`${encodeURIComponent(CLIENT)}:`).toString('base64').slice(0, 12)];
    const metrics = (await h.request('GET', `${pc.base}/metrics`)).body;
    const list = (await h.request('GET', `${pc.base}/streams`)).body;
    assert.match(list, /"api"/, '/streams lists the upstream');
    const texts = { metrics, list, log: pc.stderr() };
    for (const s of subs.filter((x) => x.keepRaw)) texts[s.name] = s.raw;
    for (const [where, text] of Object.entries(texts)) {
      for (const sec of secrets) {
        assert.ok(!text.includes(sec), `a secret (${sec.slice(0, 6)}...) in ${where}`);
      }
    }
    let json = 0;
    for (const l of pc.stderrLines) {
      if (!l.startsWith('{')) continue;
      JSON.parse(l);
      json++;
    }
    assert.ok(json > 20, `${json} JSON log lines checked`);
    assert.ok(pc.stderrLines.some((l) => l.includes('token endpoint answered 400')),
      'the failure is logged');
  });
}, { timeoutMs: 180000 });

function request(method, url) {
  return h.request(method, url);
}

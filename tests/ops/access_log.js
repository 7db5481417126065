// The log: with access_log = true, one "stream opened" and one "stream closed" line per stream
// (client address, stream name or ad-hoc URL without its query, status, duration, events and
// bytes sent, close reason), refused stream requests logged with their status; upstream state
// changes (failing, recovered) logged; in text and in JSON (every line parsed). Secrets never
// appear: configured header values, tokens in the query or in Authorization, URL userinfo,
// ad-hoc query strings.
'use strict';

const { h, jwt, waitLog } = require('./util.js');
const { assert, T } = h;

const HEADER_SECRET = 'hdr-secret-5f2c9a';
const AUTH_SECRET = 'auth-secret-0123456789abcdef0123456789abcdef';
const QUERY_SECRET = 'query-secret-77ab';
const PW_SECRET = 'pw-secret-31d0';

// Reads the structured fields of a line in either format.
function fields(line, json) {
  if (json) return JSON.parse(line);
  const out = {};
  const m = /^\S+ (\w+) (.*)$/.exec(line);
  out.level = m[1];
  let rest = m[2];
  const first = rest.search(/ [a-z_]+=/);
  out.msg = first < 0 ? rest : rest.slice(0, first);
  rest = first < 0 ? '' : rest.slice(first + 1);
  const re = /([a-z_]+)=("(?:[^"\\]|\\.)*"|\S+)/g;
  let f;
  while ((f = re.exec(rest))) {
    const v = f[2].startsWith('"') ? JSON.parse(f[2]) : f[2];
    out[f[1]] = /^-?\d+$/.test(v) ? Number(v) : v;
  }
  return out;
}

async function scenario(t, up, json) {
  const fmt = json ? 'json' : 'text';
  const token = jwt(AUTH_SECRET, { 'pollcast.subscribe': ['logged', 'flaky', up.url('/') ] });
  const pc = await h.startPollcast({
    server: { access_log: true, log_format: fmt },
    upstreams: {
      logged: { url: up.url('/logged'), interval: '100ms', header: `X-Api-Key: ${HEADER_SECRET}` },
      flaky: { url: up.url('/flaky'), interval: '100ms', backoff_max: '1s' },
    },
    allow: { url_prefix: up.url('/'), cidr: '127.0.0.0/8' },
    extra: `\n[auth]\nalgorithm = HS256\nsecret = ${AUTH_SECRET}\n`,
  }, { name: `pollcast-${fmt}` });
  const find = (msg, pred = () => true) => pc.stderrLines.map((l) => {
    try {
      return fields(l, json);
    } catch {
      return null;
    }
  }).filter((f) => f && f.msg === msg && pred(f));

  await t.step(`${fmt}: a stream opens and closes, with counts`, async () => {
    const s = await h.openRaw(pc.base, `/streams/logged?access_token=${token}`);
    assert.equal(s.status, 200);
    await s.waitDoc({ v: 1 });
    await up.put('/logged', { v: 2 });
    await s.waitDoc({ v: 2 });
    await waitLog(pc, /stream opened/);
    s.close();
    await waitLog(pc, /stream closed/);
    const open = find('stream opened', (f) => f.stream === 'logged')[0];
    assert.ok(open, 'stream opened line');
    assert.equal(open.client, '127.0.0.1');
    assert.equal(open.level, 'info');
    const closed = find('stream closed', (f) => f.stream === 'logged')[0];
    assert.equal(closed.status, 200);
    assert.equal(closed.client, '127.0.0.1');
    assert.equal(closed.reason, 'client_gone');
    assert.ok(closed.events >= 2, `events ${closed.events}`);
    const received = s.list('data').length + s.list('patch').length;
    assert.ok(closed.events >= received, `events ${closed.events} >= received ${received}`);
    assert.ok(closed.bytes > 20, `bytes ${closed.bytes}`);
    assert.ok(closed.duration_ms >= 0 && closed.duration_ms < T(10000));
  });

  await t.step(`${fmt}: refused stream requests, ad-hoc URLs without query or userinfo`,
    async () => {
      assert.equal((await h.request('GET', `${pc.base}/streams/missing?access_token=${token}`))
        .status, 404);
      assert.equal((await h.request('GET', `${pc.base}/streams/logged`)).status, 401);
      const adhoc = up.url(`/adhoc?access_token=${QUERY_SECRET}`);
      const s = await h.openRaw(pc.base, `/proxy?url=${encodeURIComponent(adhoc)}`,
        { headers: { Authorization: `Bearer ${token}` } });
      assert.equal(s.status, 200, s.body);
      await s.waitDoc({ adhoc: true });
      s.close();
      const pw = up.url('/adhoc').replace('http://', `http://user:${PW_SECRET}@`);
      await h.request('GET', `${pc.base}/proxy?url=${encodeURIComponent(pw)}`,
        { headers: { Authorization: `Bearer ${token}` } });
      await waitLog(pc, /stream closed.*adhoc[\s\S]*/);
      const missing = find('stream closed', (f) => f.stream === 'missing')[0];
      assert.equal(missing.status, 404);
      assert.equal(missing.reason, 'refused');
      assert.equal(missing.events, 0);
      const unauth = find('stream closed', (f) => f.stream === 'logged' && f.status === 401);
      assert.equal(unauth.length, 1, '401 logged');
      await h.sleep(100);
      const adhocLines = find('stream closed', (f) => /\/adhoc$/.test(f.stream));
      assert.ok(adhocLines.length >= 1, 'ad-hoc stream logged by URL');
      assert.equal(adhocLines[0].stream, up.url('/adhoc'));
    });

  await t.step(`${fmt}: upstream failing and recovered`, async () => {
    const s = await h.openRaw(pc.base, `/streams/flaky?access_token=${token}`);
    await s.waitDoc({ f: 1 });
    await up.mode('/flaky', 'status', { status: 503 });
    const failing = await waitLog(pc, /upstream failing/);
    const f = fields(failing, json);
    assert.equal(f.level, 'warn');
    assert.equal(f.stream, 'flaky');
    assert.equal(f.upstream_status, 503);
    await up.mode('/flaky', 'normal');
    const rec = fields(await waitLog(pc, /upstream recovered/, T(8000)), json);
    assert.equal(rec.stream, 'flaky');
    assert.ok(rec.failed_for_ms >= 0);
    s.close();
  });

  await t.step(`${fmt}: every line well formed, no secret anywhere`, async () => {
    await pc.stop();
    const all = pc.stderr();
    for (const secret of [HEADER_SECRET, AUTH_SECRET, QUERY_SECRET, PW_SECRET, token]) {
      assert.ok(!all.includes(secret), `secret ${secret.slice(0, 12)}... in the log`);
    }
    assert.ok(!/access_token/.test(all), 'access_token in the log');
    for (const line of pc.stderrLines) {
      if (json) {
        const o = JSON.parse(line);
        assert.match(o.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        assert.ok(['debug', 'info', 'warn', 'error'].includes(o.level), line);
        assert.equal(typeof o.msg, 'string');
      } else {
        assert.match(line, /^\d{4}-\d\d-\d\dT\S+Z (debug|info|warn|error) \S/, line);
      }
    }
  });
}

h.run('ops.access_log', async (t) => {
  const up = await h.startUpstream();
  await up.put('/logged', { v: 1 });
  await up.put('/flaky', { f: 1 });
  await up.put('/adhoc', { adhoc: true });
  await scenario(t, up, false);
  await up.put('/logged', { v: 1 });
  await scenario(t, up, true);
  await up.put('/logged', { v: 1 });
  await t.step('access_log = false: no stream lines', async () => {
    const pc = await h.startPollcast({ server: { access_log: false },
      upstreams: { logged: { url: up.url('/logged') } } }, { name: 'quiet' });
    const s = await h.openRaw(pc.base, '/streams/logged');
    await s.waitDoc({ v: 1 });
    s.close();
    await h.request('GET', `${pc.base}/streams/nope`);
    await pc.stop();
    assert.ok(!/stream (opened|closed)/.test(pc.stderr()), pc.stderr());
  });
}, { timeoutMs: 90000 });

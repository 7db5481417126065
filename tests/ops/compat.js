// The Streamdata.io form, server.streamdata_compat = true: GET /{absolute-url} with X-Sd-Token and
// repeatable X-Sd-Header, as query parameters (what Streamdata.io's JavaScript SDK sent) or as
// request headers (its Android and Java clients), both taken out of the upstream URL; the same
// allow rules and address policy as /proxy; headers sent upstream only when [allow]
// forward_header lists them; events data, patch and, on upstream trouble, "error" with
// {"cause","status","message"} (read by the SDK's error listener) and no upstream-recovered; the
// token checked when [auth] is set. Off by default: 404.
'use strict';

const { h, jwt, AnyStream, metrics } = require('./util.js');
const { assert, T } = h;

const SECRET = 'compat-secret-0123456789abcdef0123456789';

h.run('ops.compat', async (t) => {
  const up = await h.startUpstream();
  let doc = { prices: { ACME: 10 } };
  await up.put('/v1/prices', doc);
  await up.put('/v1/fail', { ok: 1 });
  const allow = { url_prefix: up.url('/v1/'), cidr: '127.0.0.0/8', forward_header: 'X-Api-Key',
    interval: '1s', min_interval: '100ms' };

  await t.step('off by default: 404', async () => {
    const pc = await h.startPollcast({ allow }, { name: 'compat-off' });
    const r = await h.request('GET', `${pc.base}/${up.url('/v1/prices')}`);
    assert.equal(r.status, 404);
  });

  const pc = await h.startPollcast({ server: { streamdata_compat: true }, allow });
  const target = (p, q = '') => `${pc.base}/${up.url(p)}${q}`;

  await t.step('data then patch; X-Sd-* taken out of the URL, the header forwarded', async () => {
    const s = new AnyStream(target('/v1/prices',
      '?x=1&X-Sd-Token=ignored&X-Sd-Header=' + encodeURIComponent('X-Api-Key: k-123')));
    await s.opened;
    assert.equal(s.status, 200, s.body);
    assert.match(s.headers['content-type'], /^text\/event-stream/);
    await s.until((f) => f.list('data').length === 1, T(5000), 'data');
    assert.deepEqual(JSON.parse(s.list('data')[0].data), doc);
    const st = await up.stats('/v1/prices');
    assert.equal(st.headers['x-api-key'], 'k-123', 'X-Sd-Header sent upstream');
    assert.equal(st.headers['x-sd-token'], undefined);
    assert.equal(st.headers['x-sd-header'], undefined);
    doc = { prices: { ACME: 10.5 } };
    await up.put('/v1/prices', doc);
    await s.until((f) => f.list('patch').length >= 1, T(5000), 'patch');
    assert.deepEqual(JSON.parse(s.list('patch')[0].data),
      [{ op: 'replace', path: '/prices/ACME', value: 10.5 }]);
    s.close();
  });

  await t.step('the upstream query is kept, the X-Sd-* parameters are not part of it', async () => {
    const p0 = (await metrics(pc)).get('pollcast_pollers');
    const open = async (q) => {
      const s = new AnyStream(target('/v1/prices', q));
      await s.opened;
      assert.equal(s.status, 200, s.body);
      await s.until((f) => f.list('data').length === 1, T(5000), 'data');
      return s;
    };
    const a = await open('?x=7&X-Sd-Token=one');
    const b = await open('?X-Sd-Token=two&x=7');
    assert.equal((await metrics(pc)).get('pollcast_pollers'), p0 + 1, 'one poller for x=7');
    const c = await open('?x=8');
    assert.equal((await metrics(pc)).get('pollcast_pollers'), p0 + 2, 'another for x=8');
    for (const s of [a, b, c]) s.close();
  });

  await t.step('X-Sd-Header as request headers too', async () => {
    await up.put('/v1/h', { h: 1 });
    const s = new AnyStream(target('/v1/h'), { headers: { 'X-Sd-Header': 'X-Api-Key: from-header' } });
    await s.opened;
    assert.equal(s.status, 200, s.body);
    await s.until((f) => f.list('data').length === 1, T(5000), 'data');
    assert.equal((await up.stats('/v1/h')).headers['x-api-key'], 'from-header');
    s.close();
  });

  await t.step('refusals: header not forwarded, URL not allowed, CR/LF, internal address',
    async () => {
      const notFwd = await h.request('GET', target('/v1/prices',
        '?X-Sd-Header=' + encodeURIComponent('Cookie: a=b')));
      assert.equal(notFwd.status, 403, notFwd.body);
      assert.match(notFwd.headers['content-type'], /problem\+json/);
      const crlf = await h.request('GET', target('/v1/prices',
        '?X-Sd-Header=' + encodeURIComponent('X-Api-Key: a\r\nHost: evil')));
      assert.equal(crlf.status, 400, crlf.body);
      const other = await h.request('GET', target('/v2/other'));
      assert.equal(other.status, 403, other.body);
      const meta = await h.request('GET', `${pc.base}/http://169.254.169.254/latest/meta-data/`);
      assert.equal(meta.status, 403);
    });

  await t.step('upstream trouble: an "error" event shaped as Streamdata.io sent it', async () => {
    const s = new AnyStream(target('/v1/fail'));
    await s.opened;
    await s.until((f) => f.list('data').length === 1, T(5000), 'data');
    await up.mode('/v1/fail', 'status', { status: 503 });
    await s.until((f) => f.list('error').length >= 1, T(5000), 'error event');
    const e = JSON.parse(s.list('error')[0].data);
    assert.equal(e.status, 502);
    assert.equal(typeof e.message, 'string');
    assert.match(e.message, /503/);
    assert.equal(e.cause, 'upstream');
    assert.equal(s.list('upstream-error').length, 0);
    await up.mode('/v1/fail', 'normal');
    await up.put('/v1/fail', { ok: 2 });
    await s.until((f) => f.list('patch').length >= 1, T(8000), 'patch after recovery');
    assert.equal(s.list('upstream-recovered').length, 0);
    s.close();
  });

  await t.step('the normal endpoints keep their event names', async () => {
    const s = new AnyStream(`${pc.base}/proxy?url=${encodeURIComponent(up.url('/v1/fail'))}`);
    await s.opened;
    await s.until((f) => f.list('data').length === 1, T(5000), 'data');
    await up.mode('/v1/fail', 'status', { status: 500 });
    await s.until((f) => f.list('upstream-error').length >= 1, T(5000), 'upstream-error');
    assert.equal(s.list('error').length, 0);
    await up.mode('/v1/fail', 'normal');
    s.close();
  });

  await t.step('with [auth]: X-Sd-Token is the token (query or header)', async () => {
    const apc = await h.startPollcast({ server: { streamdata_compat: true }, allow,
      extra: `\n[auth]\nalgorithm = HS256\nsecret = ${SECRET}\n` }, { name: 'compat-auth' });
    const url = `${apc.base}/${up.url('/v1/prices')}`;
    const good = jwt(SECRET, { 'pollcast.subscribe': [up.url('/v1/')] });
    const narrow = jwt(SECRET, { 'pollcast.subscribe': [up.url('/v2/')] });
    assert.equal((await h.request('GET', url)).status, 401);
    assert.equal((await h.request('GET', `${url}?X-Sd-Token=garbage`)).status, 401);
    assert.equal((await h.request('GET', `${url}?X-Sd-Token=${narrow}`)).status, 403);
    const q = new AnyStream(`${url}?X-Sd-Token=${good}`);
    await q.opened;
    assert.equal(q.status, 200, q.body);
    await q.until((f) => f.list('data').length === 1, T(5000), 'data');
    q.close();
    const hd = new AnyStream(url, { headers: { 'X-Sd-Token': good } });
    await hd.opened;
    assert.equal(hd.status, 200, hd.body);
    await hd.until((f) => f.list('data').length === 1, T(5000), 'data');
    hd.close();
  });
}, { timeoutMs: 90000 });

// Upstream requests (issue 12, section 3): method, body, body_file and content_type reach the
// scripted upstream exactly (recorded per request), conditional headers go only with GET and
// QUERY, injected query parameters are percent-encoded and merged with the URL's own and never
// show in events, logs (text, debug level, access log) or metrics; the body is part of the
// upstream's identity (a new body_file content ends the streams of that upstream on SIGHUP,
// another upstream's stream goes on); respect_cache_control makes max-age a floor on the interval,
// bounded by max_interval.
'use strict';

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./harness');
const { assert, T, log } = h;

async function waitLog(pc, re, ms, from = 0) {
  const end = Date.now() + ms;
  for (;;) {
    const l = pc.stderrLines.slice(from).find((x) => re.test(x));
    if (l) return l;
    if (Date.now() > end) throw new Error(`no log line matching ${re}`);
    await h.sleep(20);
  }
}

// The requests the upstream recorded at p since index `from`.
async function recorded(up, p, from = 0) {
  return (await up.stats(p)).requests.slice(from);
}

h.run('integration.upstream_requests', async (t) => {
  const up = await h.startUpstream();
  await up.put('/search', { hits: [1, 2] });
  await up.put('/q', { q: 'doc' });
  await up.put('/cc', { cc: 1 });
  await up.put('/cc_capped', { cc: 2 });
  await up.put('/cc_off', { cc: 3 });
  await up.mode('/cc', 'normal', { cache_control: 'public, max-age=3', age: 1 });
  await up.mode('/cc_capped', 'normal', { cache_control: 'max-age=60' });
  await up.mode('/cc_off', 'normal', { cache_control: 'max-age=60' });

  const dir = h.tmpDir();
  const bodyFile = path.join(dir, 'report-body.xml');
  // Bytes a line-based config could not hold: newlines, tabs, non-ASCII.
  const fileBody1 = '<?xml version="1.0"?>\n<report>\n\t<prop>é ✓</prop>\n</report>\n';
  const fileBody2 = '<?xml version="1.0"?>\n<report><prop>changed</prop></report>\n';
  fs.writeFileSync(bodyFile, fileBody1);
  const SECRET_Q = 'Qs3cr3t-value';
  const bodyA = '{"query":"{ hits(q: \\"a b\\") { id } }","variables":{"n":1}}';
  const bodyB = '{"q":"other"}';
  const upstreams = {
    post_a: { url: up.url('/search?fixed=1'), interval: '300ms', method: 'POST', body: bodyA },
    post_b: { url: up.url('/search?fixed=1'), interval: '300ms', method: 'POST', body: bodyB,
      content_type: 'application/vnd.api+json; charset=utf-8' },
    report: { url: up.url('/search'), interval: '300ms', method: 'REPORT', body_file: bodyFile,
      content_type: 'application/xml' },
    get_q: { url: up.url('/q?x=1&'), interval: '300ms',
      query: [`api_key=${SECRET_Q} &=/?`, 'empty=', 'ü=ö', 'flag='] },
    query_m: { url: up.url('/q'), interval: '300ms', method: 'QUERY', body: '{"select":"*"}',
      query: `token=${SECRET_Q}` },
    cc: { url: up.url('/cc'), interval: '250ms', respect_cache_control: true },
    cc_capped: { url: up.url('/cc_capped'), interval: '250ms', max_interval: '1s',
      respect_cache_control: true },
    cc_off: { url: up.url('/cc_off'), interval: '250ms' },
  };
  const pc = await h.startPollcast({
    server: { log_level: 'debug', access_log: true },
    upstreams,
  });
  const streams = [];
  const open = async (name, q = '') => {
    const s = await h.openRaw(pc.base, `/streams/${name}${q}`, { name, keepRaw: true });
    streams.push(s);
    h.defer(() => s.close());
    return s;
  };

  await t.step('POST bodies reach the upstream exactly, with their content types', async () => {
    const a = await open('post_a');
    const b = await open('post_b');
    await a.waitDoc({ hits: [1, 2] });
    await b.waitDoc({ hits: [1, 2] });
    await up.waitRequests('/search', 6, T(5000));
    const reqs = await recorded(up, '/search');
    const ofA = reqs.filter((r) => r.body === bodyA);
    const ofB = reqs.filter((r) => r.body === bodyB);
    assert.ok(ofA.length >= 2 && ofB.length >= 2, `both bodies polled: ${ofA.length}/${ofB.length}`);
    for (const r of ofA) {
      assert.equal(r.method, 'POST');
      assert.equal(r.target, '/search?fixed=1');
      assert.equal(r.content_type, 'application/json');
    }
    for (const r of ofB) {
      assert.equal(r.method, 'POST');
      assert.equal(r.content_type, 'application/vnd.api+json; charset=utf-8');
    }
    // Two definitions with the same URL are two pollers: each body is polled every tick.
    const m = await pc.metrics();
    assert.equal(m.pollcast_pollers, 2, 'one poller per body');
  });

  await t.step('POST is never conditional, though the upstream sends an ETag', async () => {
    const s = await up.stats('/search');
    assert.equal(s.headers['if-none-match'], undefined);
    assert.equal(s.headers['if-modified-since'], undefined);
    assert.equal(s.headers.expect, undefined, 'no Expect: 100-continue');
  });

  let report;
  await t.step('body_file: REPORT with the file\'s bytes, newlines and UTF-8 kept', async () => {
    const from = (await up.stats('/search')).requests.length;
    report = await open('report');
    await report.waitDoc({ hits: [1, 2] });
    const end = Date.now() + T(5000);
    let mine = [];
    while (mine.length < 2 && Date.now() < end) {
      mine = (await recorded(up, '/search', Math.max(0, from - 50))).filter(
        (r) => r.method === 'REPORT');
      await h.sleep(50);
    }
    assert.ok(mine.length >= 2, 'REPORT polled');
    for (const r of mine) {
      assert.equal(r.body, fileBody1);
      assert.equal(r.content_type, 'application/xml');
      assert.equal(r.target, '/search');
    }
  });

  await t.step('query: percent-encoded, merged with the URL\'s own, GET stays conditional',
    async () => {
      const s = await open('get_q');
      await s.waitDoc({ q: 'doc' });
      await up.waitRequests('/q', 3, T(5000));
      const reqs = (await recorded(up, '/q')).filter((r) => r.method === 'GET');
      assert.ok(reqs.length >= 2);
      for (const r of reqs) {
        assert.equal(r.target, `/q?x=1&api_key=${SECRET_Q}%20%26%3D%2F%3F&empty=&%C3%BC=%C3%B6&flag=`);
        assert.deepEqual(r.query, { x: ['1'], api_key: [`${SECRET_Q} &=/?`], empty: [''],
          ü: ['ö'], flag: [''] });
      }
      // The last GET carried the validator of an earlier answer.
      const st = await up.stats('/q');
      assert.match(String(st.headers['if-none-match']), /^"[0-9a-f]+"$/, 'If-None-Match');
    });

  await t.step('QUERY: body, query and conditions (a safe method)', async () => {
    // The scripted upstream is node's http server, whose parser knows QUERY from node 20 on
    // (Debian bookworm's node 18 answers 400 to it): there is nothing to receive it with here.
    if (!http.METHODS.includes('QUERY')) {
      log(`skipped: node ${process.version}'s http server does not parse the QUERY method`);
      return;
    }
    const s = await open('query_m');
    await s.waitDoc({ q: 'doc' });
    const end = Date.now() + T(5000);
    let mine = [];
    while (mine.length < 3 && Date.now() < end) {
      mine = (await recorded(up, '/q')).filter((r) => r.method === 'QUERY');
      await h.sleep(50);
    }
    assert.ok(mine.length >= 3, 'QUERY polled');
    for (const r of mine) {
      assert.equal(r.body, '{"select":"*"}');
      assert.equal(r.target, `/q?token=${SECRET_Q}`);
      assert.equal(r.content_type, 'application/json');
    }
  });

  await t.step('respect_cache_control: max-age (less Age) floors the interval, capped by ' +
    'max_interval; off by default', async () => {
    const s1 = await open('cc');
    const s2 = await open('cc_capped');
    const s3 = await open('cc_off');
    await Promise.all([s1.waitDoc({ cc: 1 }), s2.waitDoc({ cc: 2 }), s3.waitDoc({ cc: 3 })]);
    const c0 = await Promise.all(['/cc', '/cc_capped', '/cc_off'].map((p) => up.stats(p)));
    const WINDOW = 4500;
    await h.sleep(WINDOW);
    const c1 = await Promise.all(['/cc', '/cc_capped', '/cc_off'].map((p) => up.stats(p)));
    const n = c1.map((x, i) => x.count - c0[i].count);
    log(`requests in ${WINDOW} ms: max-age=3,Age=1: ${n[0]}; max-age=60 capped at 1s: ` +
      `${n[1]}; ignored: ${n[2]}`);
    // Fresh for 2 s: 2 or 3 polls in 4.5 s, against 18 at 250 ms.
    assert.ok(n[0] >= 1 && n[0] <= 3, `max-age floor: ${n[0]} requests`);
    // Capped at max_interval 1 s: 4 or 5 polls.
    assert.ok(n[1] >= 3 && n[1] <= 6, `max_interval cap: ${n[1]} requests`);
    assert.ok(n[2] >= 10, `without respect_cache_control: ${n[2]} requests`);
    const times = c1[0].times_ms.slice(-3);
    for (let i = 1; i < times.length; i++) {
      assert.ok(times[i] - times[i - 1] >= 1900, `gap ${times[i] - times[i - 1]} ms`);
    }
  });

  await t.step('an upstream error names no query value', async () => {
    const from = (await up.stats('/q')).requests.length;
    await up.mode('/q', 'status', { status: 503, times: 2 });
    const s = streams.find((x) => x.name === 'get_q');
    const ev = await s.waitEvent('upstream-error', T(5000));
    assert.match(ev.json.detail, /upstream answered 503/);
    await s.waitEvent('upstream-recovered', T(8000));
    assert.ok((await up.stats('/q')).requests.length > from);
  });

  await t.step('a new body_file content is a new upstream: its streams end on SIGHUP, the ' +
    'others go on', async () => {
    const a = streams.find((x) => x.name === 'post_a');
    fs.writeFileSync(bodyFile, fileBody2);
    const from = pc.stderrLines.length;
    process.kill(pc.pid, 'SIGHUP');
    const line = await waitLog(pc, /config reloaded/, T(5000), from);
    log(line);
    assert.match(line, /named_streams_ended=1/);
    await report.until((f) => f.ended, T(3000), 'the report stream to end');
    assert.ok(!a.closed, 'post_a goes on');
    const again = await open('report');
    await again.waitDoc({ hits: [1, 2] });
    const end = Date.now() + T(5000);
    let mine = [];
    while (mine.length < 1 && Date.now() < end) {
      mine = (await recorded(up, '/search')).filter((r) => r.method === 'REPORT' &&
        r.body === fileBody2);
      await h.sleep(50);
    }
    assert.ok(mine.length >= 1, 'the new body reached the upstream');
  });

  await t.step('query values absent from events, logs and metrics', async () => {
    const metrics = (await h.request('GET', `${pc.base}/metrics`)).body;
    const list = (await h.request('GET', `${pc.base}/streams`)).body;
    assert.match(list, /"get_q"/, '/streams lists the upstream');
    const all = [metrics, list, pc.stderr(), ...streams.map((s) => s.raw)];
    for (const text of all) {
      assert.ok(!text.includes(SECRET_Q), `secret query value in: ${text.slice(0, 300)}`);
      assert.ok(!text.includes('Qs3cr3t'), 'encoded forms too');
    }
    assert.ok(pc.stderrLines.length > 10, 'the debug log was written');
  });
}, { timeoutMs: 120000 });

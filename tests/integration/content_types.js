// Content types (issue 10, gap 9): by default only application/json, text/json, *+json (or no
// Content-Type) are taken; a JSON body served as text/plain or application/octet-stream is an
// upstream-error that names the type and the setting. With accept_any_content_type = true (per
// named upstream, and in [allow] for ad-hoc URLs) such bodies stream, while a body that is not
// JSON is still refused, whatever its type.
'use strict';

const h = require('./harness');
const { assert, T, log } = h;

h.run('integration.content_types', async (t) => {
  const up = await h.startUpstream();
  const doc = { served: 'as something else', n: [1, 2, 3] };
  for (const [p, type] of [['/plain', 'text/plain; charset=utf-8'],
    ['/octet', 'application/octet-stream'], ['/json', 'application/json']]) {
    await up.put(p, doc);
    await up.mode(p, 'normal', { content_type: type });
  }
  await up.put('/notjson', 'hello, not JSON');
  await up.mode('/notjson', 'normal', { content_type: 'text/plain' });

  const named = (p, any) => ({ url: up.url(p), interval: '300ms',
    ...(any === undefined ? {} : { accept_any_content_type: any }) });
  const allow = { url_prefix: up.url('/'), cidr: '127.0.0.0/8', interval: '300ms' };
  const pc = await h.startPollcast({
    upstreams: {
      plain: named('/plain'), octet: named('/octet'), json: named('/json'),
      any_plain: named('/plain', true), any_octet: named('/octet', true),
      any_notjson: named('/notjson', true), off_plain: named('/plain', false),
    },
    allow,
  }, { name: 'default' });
  const pcAny = await h.startPollcast({ allow: { ...allow, accept_any_content_type: true } },
    { name: 'allow-any' });
  const proxy = (base, p) => `/proxy?url=${encodeURIComponent(up.url(p))}`;

  const refused = async (base, path, re, name) => {
    const s = await h.openRaw(base, path, { name });
    h.defer(() => s.close());
    assert.equal(s.status, 200);
    const ev = await s.waitEvent('upstream-error', T(5000));
    log(`${name}: ${ev.data}`);
    assert.match(ev.json.detail, re, name);
    assert.equal(ev.json.upstream_status, 200);
    assert.equal(s.count('data'), 0, `${name}: no document`);
    s.close();
  };
  const streams = async (base, path, name) => {
    const s = await h.openRaw(base, path, { name });
    h.defer(() => s.close());
    assert.equal(s.status, 200);
    await s.waitDoc(doc, T(5000), `${name}: the document`);
    assert.equal(s.count('upstream-error'), 0, `${name}: no error`);
    s.close();
  };

  await t.step('default: text/plain and application/octet-stream refused with the reason',
    async () => {
      await refused(pc.base, '/streams/plain',
        /^upstream content type text\/plain; charset=utf-8 is not JSON \(see accept_any_content_type\)$/,
        'plain');
      await refused(pc.base, '/streams/octet',
        /^upstream content type application\/octet-stream is not JSON \(see accept_any_content_type\)$/,
        'octet');
      await refused(pc.base, '/streams/off_plain', /text\/plain.* is not JSON/, 'off_plain');
      await refused(pc.base, proxy(pc.base, '/octet'),
        /^upstream content type application\/octet-stream is not JSON/, 'adhoc-octet');
      await streams(pc.base, '/streams/json', 'json');
    });

  await t.step('accept_any_content_type = true: the same bodies stream', async () => {
    await streams(pc.base, '/streams/any_plain', 'any_plain');
    await streams(pc.base, '/streams/any_octet', 'any_octet');
  });

  await t.step('[allow] accept_any_content_type = true: ad-hoc URLs too', async () => {
    await streams(pcAny.base, proxy(pcAny.base, '/plain'), 'adhoc-any-plain');
    await streams(pcAny.base, proxy(pcAny.base, '/octet'), 'adhoc-any-octet');
  });

  await t.step('a body that is not JSON is still refused with the setting', async () => {
    await refused(pc.base, '/streams/any_notjson', /^upstream sent invalid JSON at byte 0/,
      'any_notjson');
    await refused(pcAny.base, proxy(pcAny.base, '/notjson'),
      /^upstream sent invalid JSON at byte 0/, 'adhoc-any-notjson');
  });
}, { timeoutMs: 60000 });

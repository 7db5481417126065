// String escapes on the wire (issue 10, bug 3): an upstream that sends "\u00e9" and then "é"
// (or "\/" then "/") has not changed its document, so subscribers get no patch; a string that
// really changes is patched with its value as the upstream wrote it (escapes kept), and a new
// subscriber's data event carries the upstream's latest text.
'use strict';

const h = require('./harness');
const { assert, T, log } = h;

h.run('integration.diff_escapes', async (t) => {
  const up = await h.startUpstream();
  const escaped = '{"name":"\\u00e9t\\u00e9","url":"http:\\/\\/example.com\\/a","tags":["caf\\u00e9","b"]}';
  const plain = '{"name":"été","url":"http://example.com/a","tags":["café","b"]}';
  const changed = '{"name":"\\u00e8te","url":"http://example.com/a","tags":["café","b"]}';
  await up.put('/doc', escaped);
  const pc = await h.startPollcast({ upstreams: { doc: { url: up.url('/doc'), interval: '200ms' } } });
  const s = await h.openRaw(pc.base, '/streams/doc', { name: 'subscriber', keepRaw: true });
  h.defer(() => s.close());
  await s.waitDoc(JSON.parse(escaped), T(5000), 'the first document');

  await t.step('the same values with other escapes: no patch', async () => {
    const before = (await up.stats('/doc')).count;
    await up.put('/doc', plain);
    // Three more polls of the new text.
    await up.waitRequests('/doc', before + 3, T(5000), 'polls of the re-escaped document');
    await h.sleep(T(100));
    assert.equal(s.count('patch'), 0, `no patch: ${s.list('patch').map((e) => e.data)}`);
    assert.equal(s.count('data'), 1);
    // A new subscriber gets the upstream's latest text.
    const n = await h.openRaw(pc.base, '/streams/doc', { name: 'newcomer', keepRaw: true });
    h.defer(() => n.close());
    await n.waitDoc(JSON.parse(plain), T(5000));
    assert.ok(n.raw.includes('"name":"été"'), `the new text: ${n.raw}`);
    n.close();
  });

  await t.step('a real change is patched with the value as written', async () => {
    await up.put('/doc', changed);
    await s.until((f) => f.count('patch') >= 1, T(5000), 'the patch');
    const p = s.list('patch')[0];
    log(`patch: ${p.data}`);
    assert.equal(p.data, '[{"op":"replace","path":"/name","value":"\\u00e8te"}]');
    assert.deepEqual(s.doc, JSON.parse(changed));
  });
}, { timeoutMs: 60000 });

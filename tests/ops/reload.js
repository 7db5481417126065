// SIGHUP reload on the real daemon: an unchanged upstream keeps its subscribers, and its event
// ids go on from where they were (same epoch, next version); a removed upstream's streams end
// cleanly and it answers 404; a changed one's streams end and reconnecting clients get the new
// definition (new epoch); a new upstream is served; ad-hoc streams no longer allowed end; a broken
// config is refused with a log line and the running one kept; a key that needs a restart
// (listen) is logged and ignored; log_format switches at once.
'use strict';

const fs = require('node:fs');
const { h, waitLog, metrics } = require('./util.js');
const { assert, T } = h;

h.run('ops.reload', async (t) => {
  const up = await h.startUpstream();
  await up.put('/keep', { k: 0 });
  await up.put('/gone', { g: 0 });
  await up.put('/change', { c: 0 });
  await up.put('/fresh', { f: 0 });
  await up.put('/adhoc/x', { a: 0 });
  const base = {
    upstreams: {
      keep: { url: up.url('/keep'), interval: '100ms' },
      gone: { url: up.url('/gone'), interval: '100ms' },
      change: { url: up.url('/change'), interval: '100ms' },
    },
    allow: { url_prefix: up.url('/adhoc/'), cidr: '127.0.0.0/8' },
  };
  const pc = await h.startPollcast(base);
  const file = pc.configFile;
  const hup = async (text, re) => {
    const from = pc.stderrLines.length;
    fs.writeFileSync(file, text);
    process.kill(pc.pid, 'SIGHUP');
    return waitLog(pc, re, T(5000), from);
  };

  const keep = await h.openRaw(pc.base, '/streams/keep');
  const keep2 = await h.openRaw(pc.base, '/streams/keep?mode=snapshot');
  const gone = await h.openRaw(pc.base, '/streams/gone');
  const change = await h.openRaw(pc.base, '/streams/change');
  const adhoc = await h.openRaw(pc.base, `/proxy?url=${encodeURIComponent(up.url('/adhoc/x'))}`);
  let lastKeepId;
  await t.step('streams up before the reload', async () => {
    await keep.waitDoc({ k: 0 });
    await keep2.waitDoc({ k: 0 });
    await gone.waitDoc({ g: 0 });
    await change.waitDoc({ c: 0 });
    await adhoc.waitDoc({ a: 0 });
    await up.put('/keep', { k: 1 });
    await keep.waitDoc({ k: 1 });
    lastKeepId = keep.lastId.parsed;
  });

  await t.step('SIGHUP with gone removed, change changed, fresh added, adhoc disallowed',
    async () => {
      const next = h.configText({
        upstreams: {
          keep: base.upstreams.keep,
          change: { url: up.url('/change'), interval: '200ms' },
          fresh: { url: up.url('/fresh'), interval: '100ms' },
        },
        allow: { url_prefix: up.url('/other/'), cidr: '127.0.0.0/8' },
      });
      const line = await hup(next, /config reloaded/);
      assert.match(line, /upstreams=3/);
      assert.match(line, /added=1/);
      assert.match(line, /named_streams_ended=2/);
      assert.match(line, /adhoc_streams_ended=1/);
    });

  await t.step('removed, changed and disallowed streams end cleanly', async () => {
    for (const s of [gone, change, adhoc]) {
      await s.until((f) => f.ended, T(3000), `${s.name} to end`);
      assert.ok(s.ended && !s.aborted, `${s.name} ended with the chunked terminator`);
    }
    assert.ok(!keep.closed && !keep2.closed, 'keep streams go on');
  });

  await t.step('the unchanged upstream keeps subscribers, history and ids', async () => {
    await up.put('/keep', { k: 2 });
    await keep.waitDoc({ k: 2 });
    await keep2.waitDoc({ k: 2 });
    const p = keep.lastId.parsed;
    assert.equal(p[0], lastKeepId[0], 'same epoch');
    assert.equal(p[1], lastKeepId[1] + 1n, 'the next version');
    assert.equal(keep.list('data').length, 1, 'no new snapshot for the kept subscriber');
    // The history survived: resuming from the id before the reload replays the patch.
    const resumed = await h.openRaw(pc.base, '/streams/keep', {
      headers: { 'Last-Event-ID': `${lastKeepId[0].toString(36)}.${lastKeepId[1].toString(36)}` },
      doc: { k: 1 },
    });
    await resumed.waitDoc({ k: 2 });
    assert.equal(resumed.list('data').length, 0, 'resumed from the history');
    resumed.close();
  });

  await t.step('gone is 404, fresh is served, change has a new epoch', async () => {
    assert.equal((await h.request('GET', `${pc.base}/streams/gone`)).status, 404);
    const fresh = await h.openRaw(pc.base, '/streams/fresh');
    await fresh.waitDoc({ f: 0 });
    fresh.close();
    const oldEpoch = change.lastId.parsed[0];
    const c2 = await h.openRaw(pc.base, '/streams/change', { after: change.lastId.id });
    await c2.waitDoc({ c: 0 });
    assert.equal(c2.list('data').length, 1, 'a fresh snapshot');
    assert.notEqual(c2.lastId.parsed[0], oldEpoch, 'a new topic');
    await up.put('/change', { c: 1 });
    await c2.waitDoc({ c: 1 });
    c2.close();
    const r = await h.request('GET', `${pc.base}/proxy?url=${encodeURIComponent(up.url('/adhoc/x'))}`);
    assert.equal(r.status, 403, 'the new allow rules apply');
  });

  await t.step('a broken config is refused; the running one stays', async () => {
    const before = pc.stderrLines.length;
    const line = await hup('[server]\nlisten = 127.0.0.1:0\nno_such_key = 1\n', /reload refused/);
    assert.match(line, /error/);
    assert.match(line, /no_such_key/);
    await up.put('/keep', { k: 3 });
    await keep.waitDoc({ k: 3 });
    assert.equal((await h.request('GET', `${pc.base}/streams/gone`)).status, 404);
    const fresh = await h.openRaw(pc.base, '/streams/fresh');
    await fresh.waitDoc({ f: 0 });
    fresh.close();
    const m = await metrics(pc);
    assert.equal(m.get('pollcast_config_reloads_total', { result: 'ok' }), 1);
    assert.equal(m.get('pollcast_config_reloads_total', { result: 'refused' }), 1);
    assert.ok(!pc.stderrLines.slice(before).some((l) => /config reloaded/.test(l)));
  });

  await t.step('listen needs a restart: logged, ignored; log_format switches', async () => {
    const next = h.configText({
      server: { listen: '127.0.0.1:1', log_format: 'json' },
      upstreams: { keep: base.upstreams.keep },
    });
    const from = pc.stderrLines.length;
    await hup(next, /config reloaded/);
    const lines = pc.stderrLines.slice(from).map((l) => JSON.parse(l));
    assert.ok(lines.some((o) => o.msg.includes('needs a restart') && o.key === 'listen'),
      JSON.stringify(lines));
    assert.equal((await h.request('GET', `${pc.base}/healthz`)).status, 200, 'same port');
    await up.put('/keep', { k: 4 });
    await keep.waitDoc({ k: 4 });
    keep.close();
    keep2.close();
  });
}, { timeoutMs: 90000 });

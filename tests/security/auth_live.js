// Tokens that stop being valid while their stream goes on (issue 10, gap 6), on the real daemon
// with tokens minted by the openssl CLI (lib.js): a token that expires 2 s after connect ends
// its stream within exp + leeway + a small bound, with a last "stream-end" event
// {"reason":"token_expired"}, counted in pollcast_streams_ended_total and logged with
// reason=token_expired; a reconnect with the same token gets 401; a long-lived token's stream
// is untouched. A SIGHUP that rotates the HS256 secret ends every stream of an old-key token
// (reason auth_changed) and keeps none that the new config would refuse; new-key tokens work.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const L = require('./lib');
const prom = require(path.join(__dirname, '..', 'ops', 'promparse.js'));
const { assert, T, log } = L;

const SECRET = 'auth-live-secret-0123456789-abcdefghijklmnopqrstu';
const NEW_SECRET = 'auth-live-rotated-9876543210-zyxwvutsrqponmlkjih';
const LEEWAY_S = 1;

function token(secret, expIn, grant = ['prices']) {
  const n = L.now();
  return L.jwt('HS256', secret, { sub: 'live', iat: n - 1, exp: n + expIn,
    'pollcast.subscribe': grant });
}

async function scrape(pc) {
  const r = await L.request('GET', `${pc.base}/metrics`);
  assert.equal(r.status, 200);
  const parsed = prom.parse(r.body);
  return (name, labels) => prom.value(parsed, name, labels);
}

function authText(secret) {
  return `\n[auth]\nalgorithm = HS256\nsecret = ${secret}\nleeway = ${LEEWAY_S}s\n`;
}

L.run('security.auth_live', async (t) => {
  const up = await L.startUpstream();
  const doc = { price: 1 };
  await up.put('/prices', doc);
  await up.put('/orders', { orders: 1 });
  const upstreams = {
    prices: { url: up.url('/prices'), interval: '200ms' },
    orders: { url: up.url('/orders'), interval: '200ms' },
  };
  const server = { access_log: true, keepalive: '1s' };
  const configText = (secret) => L.configText({ server, upstreams }) + authText(secret);
  const pc = await L.startPollcast(configText(SECRET), { name: 'pollcast-auth-live' });

  await t.step('a token that expires 2 s after connect ends its stream at exp + leeway', async () => {
    const short = token(SECRET, 2);
    const exp = JSON.parse(Buffer.from(short.split('.')[1], 'base64url')).exp;
    const long = token(SECRET, 3600);
    const s = await L.openRaw(pc.base, `/streams/prices?access_token=${short}`, { name: 'short' });
    const keep = await L.openRaw(pc.base, '/streams/prices', { name: 'long',
      headers: { Authorization: `Bearer ${long}` } });
    L.defer(() => s.close());
    L.defer(() => keep.close());
    await s.waitDoc(doc, T(5000));
    await keep.waitDoc(doc, T(5000));
    await s.until((f) => f.closed, T(10000), 'the end of the expiring stream');
    const endMs = s.endedAt - exp * 1000;
    log(`stream ended ${endMs} ms after exp (leeway ${LEEWAY_S * 1000} ms)`);
    // Not before exp + leeway (the client's clock reads the end a little after the server's),
    // soon after it.
    assert.ok(endMs >= LEEWAY_S * 1000, `ended ${endMs} ms after exp, before the leeway ran out`);
    assert.ok(endMs <= LEEWAY_S * 1000 + T(1500), `ended ${endMs} ms after exp`);
    assert.ok(s.ended, 'a clean end of the response (not a reset)');
    const last = s.events[s.events.length - 1];
    assert.equal(last.event, 'stream-end', `the last event: ${JSON.stringify(last)}`);
    assert.equal(last.json.reason, 'token_expired');
    assert.match(last.json.detail, /expired/);
    assert.equal(last.id, undefined, 'stream-end carries no id (Last-Event-ID stays on the document)');
    // What an EventSource does next: reconnect with the same URL, and get 401.
    const again = await L.openRaw(pc.base, `/streams/prices?access_token=${short}`, { name: 'again' });
    await again.until((f) => f.closed, T(5000), 'the refusal');
    assert.equal(again.status, 401, again.body);
    assert.match(String(again.headers['www-authenticate']), /error="invalid_token"/);
    assert.match(JSON.parse(again.body).detail, /expired/);
    // The long-lived token's stream goes on and still gets changes.
    assert.ok(!keep.closed, 'the long-lived stream is still open');
    await up.put('/prices', { price: 2 });
    await keep.waitDoc({ price: 2 }, T(5000), 'a change after the other stream ended');
    assert.equal(keep.count('stream-end'), 0);
    const m = await scrape(pc);
    assert.equal(m('pollcast_streams_ended_total', { reason: 'token_expired' }), 1);
    assert.equal(m('pollcast_streams_ended_total', { reason: 'auth_changed' }), 0);
    const line = pc.stderrLines.find((l) => /stream closed/.test(l) && /reason=token_expired/.test(l));
    assert.ok(line, `an access log line with reason=token_expired:\n${pc.stderrLines.slice(-10).join('\n')}`);
    assert.ok(!pc.stderr().includes(short.split('.')[2]), 'the token is not logged');
    keep.close();
    await up.put('/prices', doc);
  });

  await t.step('SIGHUP rotating the secret ends the old-key streams, none that would be refused',
    async () => {
      const olds = [];
      for (const [i, grant] of [['prices'], ['orders'], ['prices', 'orders']].entries()) {
        const tok = token(SECRET, 3600, grant);
        const s = await L.openRaw(pc.base, `/streams/${grant[0]}?access_token=${tok}`,
          { name: `old${i}` });
        L.defer(() => s.close());
        await s.waitEvent('data', T(5000));
        olds.push({ s, tok, path: `/streams/${grant[0]}` });
      }
      const m0 = await scrape(pc);
      assert.equal(m0('pollcast_subscribers'), 3);
      const from = pc.stderrLines.length;
      fs.writeFileSync(pc.configFile, configText(NEW_SECRET));
      process.kill(pc.pid, 'SIGHUP');
      for (const o of olds) {
        await o.s.until((f) => f.closed, T(5000), 'the end of an old-key stream');
        const last = o.s.events[o.s.events.length - 1];
        assert.equal(last.event, 'stream-end');
        assert.equal(last.json.reason, 'auth_changed');
        assert.match(last.json.detail, /signature/);
      }
      await L.sleep(200);
      const m = await scrape(pc);
      assert.equal(m('pollcast_subscribers'), 0, 'no old-key stream left');
      assert.equal(m('pollcast_streams_ended_total', { reason: 'auth_changed' }), 3);
      const logged = pc.stderrLines.slice(from).filter((l) => /stream closed/.test(l) &&
        /reason=auth_changed/.test(l));
      assert.equal(logged.length, 3, 'three access log lines with reason=auth_changed');
      // Every old token is refused now; new-key tokens are served, and a new-key stream is not
      // touched by a reload that keeps the key.
      for (const o of olds) {
        const r = await L.openRaw(pc.base, `${o.path}?access_token=${o.tok}`, { name: 'old again' });
        await r.until((f) => f.closed, T(5000), 'the refusal');
        assert.equal(r.status, 401);
      }
      const fresh = await L.openRaw(pc.base, `/streams/prices?access_token=${token(NEW_SECRET, 3600)}`,
        { name: 'new-key' });
      L.defer(() => fresh.close());
      await fresh.waitDoc(doc, T(5000));
      const from2 = pc.stderrLines.length;
      process.kill(pc.pid, 'SIGHUP');
      const end = Date.now() + T(5000);
      while (!pc.stderrLines.slice(from2).some((l) => /config reloaded/.test(l))) {
        assert.ok(Date.now() < end, 'the second reload');
        await L.sleep(20);
      }
      await L.sleep(300);
      assert.ok(!fresh.closed, 'a token the reloaded config accepts keeps its stream');
      // A reload that takes the grant away (the claim is read from another name now) ends the
      // stream too.
      fs.writeFileSync(pc.configFile, `${configText(NEW_SECRET)}claim = pollcast.other\n`);
      process.kill(pc.pid, 'SIGHUP');
      await fresh.until((f) => f.closed, T(5000), 'the end of the stream no longer granted');
      const last = fresh.events[fresh.events.length - 1];
      assert.equal(last.event, 'stream-end');
      assert.equal(last.json.reason, 'auth_changed');
      assert.match(last.json.detail, /does not grant this stream/);
      fresh.close();
    });
}, { timeoutMs: 120000 });

#!/usr/bin/env node
// The live viewer (GET /) in headless Chromium, driven by playwright-core, against a real
// pollcast polling the scripted upstream, through a TCP relay that records requests and can cut
// connections or inject events. Checks: the page served is web/viewer.html byte for byte; the
// stream list; the document as the upstream wrote it (64-bit integers, decimals, member order);
// an upstream change shown and highlighted within a second; upstream-error and recovery states;
// reconnection with Last-Event-ID after a cut; a fresh snapshot after a patch that does not
// apply; collapsing; switching streams. Writes a screenshot of the highlighted change to
// SCREENSHOT (a .png path) and prints the path. With [auth] on (a second daemon, tokens minted
// by the openssl CLI): /?access_token=TOKEN shows the live document, without a token or with a
// refused one the page says why, a token that expires ends the stream with the reason shown,
// and the token appears in neither the log nor /metrics. Installs nothing: without Debian's chromium or tests/browser/node_modules it
// fails and says what is missing.
// Usage: node viewer_test.js POLLCAST_BINARY SCREENSHOT
'use strict';

const assert = require('assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');
const h = require('../watch/harness');

// An HS256 JWT signed with the openssl CLI (independent of pollcast's own code).
function jwt(secret, claims) {
  const b64 = (b) => Buffer.from(b).toString('base64url');
  const input = `${b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64(JSON.stringify(claims))}`;
  const sig = execFileSync('openssl', ['dgst', '-sha256', '-mac', 'HMAC', '-macopt',
    `hexkey:${Buffer.from(secret).toString('hex')}`, '-binary'], { input });
  return `${input}.${b64(sig)}`;
}

const bin = process.argv[2];
const shot = path.resolve(process.argv[3] || path.join(h.SRC, 'build', 'browser', 'viewer.png'));
const CHROMIUM = process.env.POLLCAST_CHROMIUM || '/usr/bin/chromium';

h.main('viewer_test', async () => {
  if (!bin) h.fail('usage: viewer_test.js POLLCAST_BINARY SCREENSHOT');
  if (!fs.existsSync(CHROMIUM)) {
    h.fail(`Chromium is not installed at ${CHROMIUM}: install Debian's chromium package (scripts/install-deps.sh does)`);
  }
  let chromium;
  try {
    ({ chromium } = require('playwright-core'));
  } catch (e) {
    h.fail('playwright-core is not installed: run `npm ci` in tests/browser (scripts/install-deps.sh does)');
  }

  const up = await h.startUpstream();
  const prices = '{"prices":{"ACME":10.00,"GLOBX":20.50,"INITECH":39.90},"big":9007199254740993,"z":1,"a":2,"tiny":1e-7}';
  await up.setDoc('/prices', prices);
  await up.setDoc('/weather', '{"city":"Oslo","temp_c":-3.5}');
  const pc = await h.startPollcast(bin, `retry = 200ms
retry_jitter = 0s
[upstream prices]
url = http://127.0.0.1:${up.port}/prices
interval = 250ms
min_interval = 100ms
error_repeat = 1s
backoff_max = 1s
[upstream weather]
url = http://127.0.0.1:${up.port}/weather
interval = 250ms
min_interval = 100ms
`);
  const relay = await h.startRelay(pc.port);
  const base = `http://127.0.0.1:${relay.port}/`;

  // The page served is the HTML file, byte for byte (src/viewer.c is generated from it).
  const served = await h.request(pc.port, 'GET', '/');
  assert.strictEqual(served.status, 200);
  assert.match(served.headers['content-type'], /^text\/html/);
  assert.ok(served.body === fs.readFileSync(path.join(h.SRC, 'web/viewer.html'), 'utf8'),
    'GET / serves web/viewer.html: run `cmake -P web/embed.cmake` after editing it');

  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'pollcast-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1100, height: 700 },
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    const errors = [];
    page.on('pageerror', (e) => errors.push('pageerror: ' + e.message));
    page.on('console', (m) => { if (m.type() === 'error') errors.push('console: ' + m.text()); });
    const warnings = [];
    page.on('console', (m) => { if (m.type() === 'warning') warnings.push(m.text()); });

    await page.goto(base + '#stream=prices');
    await page.waitForFunction(() => window.pollcastViewer && window.pollcastViewer.state() === 'live' && window.pollcastViewer.json() !== null, null, { timeout: 10000 });
    assert.deepStrictEqual(await page.$$eval('#stream option', (o) => o.map((x) => x.value)), ['prices', 'weather']);
    assert.strictEqual(await page.$eval('#stream', (s) => s.value), 'prices');
    // The document exactly as the upstream wrote it, and on screen the same way.
    assert.strictEqual(await page.evaluate(() => window.pollcastViewer.json()), prices);
    assert.strictEqual(await page.textContent('[data-path="/big"] .num'), '9007199254740993');
    assert.strictEqual(await page.textContent('[data-path="/prices/ACME"] .num'), '10.00');
    assert.strictEqual(await page.textContent('[data-path="/tiny"] .num'), '1e-7');
    assert.deepStrictEqual(await page.$$eval('[data-path=""] > .children > .node > .line > .key', (k) => k.map((x) => x.textContent)),
      ['"prices"', '"big"', '"z"', '"a"', '"tiny"']);
    assert.notStrictEqual(await page.textContent('#last-id'), '-');

    // An upstream change: on the page, highlighted, within a second.
    const t0 = Date.now();
    const changed = '{"prices":{"ACME":10.10,"GLOBX":20.50,"INITECH":39.90},"big":9007199254740995,"z":1,"a":2,"tiny":1e-7}';
    await up.setDoc('/prices', changed);
    await page.waitForFunction(() => {
      const e = document.querySelector('[data-path="/prices/ACME"]');
      return e && e.textContent.includes('10.10') && e.classList.contains('changed');
    }, null, { timeout: 1000, polling: 'raf' });
    const shownMs = Date.now() - t0;
    assert.ok(shownMs < 1000, `change shown after ${shownMs} ms`);
    assert.strictEqual(await page.$eval('[data-path="/prices/GLOBX"]', (e) => e.classList.contains('changed')), false,
      'an unchanged value is not highlighted');
    assert.strictEqual(await page.evaluate(() => window.pollcastViewer.json()), changed);
    assert.match(await page.textContent('#changes'), /\/prices\/ACME 10\.10|\/prices \{"ACME":10\.10/);
    fs.mkdirSync(path.dirname(shot), { recursive: true });
    await page.screenshot({ path: shot, fullPage: true });
    // The highlight is brief.
    await page.waitForFunction(() => !document.querySelector('.changed'), null, { timeout: 3000 });

    // Collapsing a member survives the next update.
    await page.click('[data-path="/prices"] > .line > .toggle');
    assert.ok(await page.$eval('[data-path="/prices"]', (e) => e.classList.contains('collapsed')));
    await up.setDoc('/prices', changed.replace('"z":1', '"z":2'));
    await page.waitForFunction(() => document.querySelector('[data-path="/z"]').textContent.includes('2'), null, { timeout: 3000 });
    assert.ok(await page.$eval('[data-path="/prices"]', (e) => e.classList.contains('collapsed')));
    assert.match(await page.textContent('[data-path="/prices"] > .line'), /3 members/);
    await page.click('[data-path="/prices"] > .line > .toggle');

    // Upstream trouble: the state and the reason, the last good document kept.
    await up.setMode({ path: '/prices', mode: 'status', status: 503 });
    await page.waitForFunction(() => window.pollcastViewer.state() === 'upstream-error', null, { timeout: 5000 });
    assert.match(await page.textContent('#problem'), /503/);
    assert.ok(await page.isVisible('#problem'));
    await up.setMode({ path: '/prices', mode: 'normal' });
    await page.waitForFunction(() => window.pollcastViewer.state() === 'live', null, { timeout: 8000 });
    assert.ok(!(await page.isVisible('#problem')));

    // A cut connection: EventSource reconnects with Last-Event-ID, the page says so meanwhile.
    const streamConns = () => relay.requests.filter((r) => r.target === '/streams/prices');
    const before = streamConns().length;
    const lastId = await page.textContent('#last-id');
    relay.cut();
    await page.waitForFunction(() => window.pollcastViewer.state() === 'reconnecting', null, { timeout: 3000, polling: 10 });
    await h.until(() => streamConns().length > before, 'the page to reconnect');
    assert.strictEqual(streamConns()[before].headers['last-event-id'], lastId);
    await page.waitForFunction(() => window.pollcastViewer.state() === 'live', null, { timeout: 5000 });
    const after = changed.replace('"z":1', '"z":3');
    await up.setDoc('/prices', after);
    await page.waitForFunction((want) => window.pollcastViewer.json() === want, after, { timeout: 3000 });

    // A patch that does not apply: the page starts over from a fresh snapshot.
    const n = streamConns().length;
    relay.inject('id: bogus\nevent: patch\ndata: [{"op":"replace","path":"/no/such","value":1}]\n\n',
      (r) => r.target === '/streams/prices');
    await h.until(() => streamConns().length > n, 'a fresh connection after the bad patch');
    assert.strictEqual(streamConns()[n].headers['last-event-id'], undefined);
    await page.waitForFunction((want) => window.pollcastViewer.json() === want && window.pollcastViewer.state() === 'live', after, { timeout: 3000 });
    assert.ok(warnings.some((w) => /patch bogus did not apply/.test(w)), 'the resync is logged: ' + warnings.join('\n'));

    // Another stream, picked in the list.
    await page.selectOption('#stream', 'weather');
    await page.waitForFunction(() => window.pollcastViewer.json() === '{"city":"Oslo","temp_c":-3.5}', null, { timeout: 5000 });
    assert.match(page.url(), /#stream=weather$/);
    assert.strictEqual(await page.textContent('[data-path="/temp_c"] .num'), '-3.5');

    // With [auth]: the token of /?access_token= reaches the EventSource.
    const secret = 'viewer-test-secret-0123456789-abcdefghijklmnopq';
    const apc = await h.startPollcast(bin, `retry = 200ms
retry_jitter = 0s
access_log = true
[upstream prices]
url = http://127.0.0.1:${up.port}/prices
interval = 250ms
[upstream weather]
url = http://127.0.0.1:${up.port}/weather
interval = 250ms
[auth]
algorithm = HS256
secret = ${secret}
leeway = 0s
`);
    const abase = `http://127.0.0.1:${apc.port}/`;
    const now = Math.floor(Date.now() / 1000);
    const good = jwt(secret, { sub: 'viewer', exp: now + 3600, 'pollcast.subscribe': ['prices'] });
    await page.goto(`${abase}?access_token=${good}#stream=prices`);
    await page.waitForFunction((want) => window.pollcastViewer.state() === 'live' && window.pollcastViewer.json() === want, after, { timeout: 10000 });
    assert.ok(!(await page.isVisible('#problem')), 'no problem shown with a valid token');
    // Without a token: a clear error, no retry loop against the 401.
    await page.goto(`${abase}#stream=prices`);
    await page.waitForFunction(() => /401/.test(document.querySelector('#problem').textContent), null, { timeout: 10000 });
    assert.strictEqual(await page.evaluate(() => window.pollcastViewer.state()), 'closed');
    assert.strictEqual(await page.textContent('#state'), 'unauthorized');
    assert.match(await page.textContent('#problem'), /token is required.*\/\?access_token=TOKEN/);
    assert.strictEqual(await page.evaluate(() => window.pollcastViewer.json()), null);
    // A token that does not grant the stream: 403, said so.
    await page.goto(`${abase}?access_token=${good}#stream=weather`);
    await page.waitForFunction(() => /403/.test(document.querySelector('#problem').textContent), null, { timeout: 10000 });
    assert.match(await page.textContent('#problem'), /does not grant this stream/);
    // A token that expires while the page shows the stream: the end and its reason.
    const brief = jwt(secret, { sub: 'viewer', exp: Math.floor(Date.now() / 1000) + 2, 'pollcast.subscribe': ['prices'] });
    await page.goto(`${abase}?access_token=${brief}#stream=prices`);
    await page.waitForFunction(() => window.pollcastViewer.state() === 'live', null, { timeout: 10000 });
    await page.waitForFunction(() => /token expired/.test(document.querySelector('#problem').textContent), null, { timeout: 6000 });
    assert.strictEqual(await page.textContent('#state'), 'ended');
    assert.strictEqual(await page.evaluate(() => window.pollcastViewer.json()), after, 'the last document stays on the page');
    // The tokens are in neither the log nor /metrics.
    const metrics = await h.request(apc.port, 'GET', '/metrics');
    const logged = apc.proc.err.join('');
    assert.match(logged, /stream closed .*reason=token_expired/);
    for (const tok of [good, brief]) {
      const sig = tok.split('.')[2];
      assert.ok(!logged.includes(sig) && !logged.includes('access_token'), 'no token in the log');
      assert.ok(!metrics.body.includes(sig), 'no token in /metrics');
    }

    // The errors expected: Chromium's report of the connection the relay cut, and of the
    // refused stream requests of the auth part.
    const unexpected = errors.filter((e) => !/Failed to load resource: net::ERR_INCOMPLETE_CHUNKED_ENCODING|Failed to load resource: the server responded with a status of 40[13]/.test(e));
    assert.deepStrictEqual(unexpected, [], 'no errors in the page');
    console.log(`viewer_test: change shown and highlighted in ${shownMs} ms`);
    console.log(`viewer_test: screenshot ${shot}`);
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
});

#!/usr/bin/env node
// `pollcast watch` end to end: a real pollcast polling the scripted upstream, watch run as a
// subprocess through a TCP relay (which records the requests and can cut connections or inject
// events). Checks the --changes lines for upstream changes (numbers as the upstream wrote them),
// --jq selection, reconnection with Last-Event-ID after a cut, resynchronisation after a patch
// that does not apply, upstream-error / upstream-recovered status lines, HTTP refusals, --count
// and SIGINT. Usage: node watch_test.js POLLCAST_BINARY
'use strict';

const assert = require('assert');
const h = require('./harness');

const bin = process.argv[2];
const TIME = '\\d\\d:\\d\\d:\\d\\d';

h.main('watch_test', async () => {
  if (!bin) h.fail('usage: watch_test.js POLLCAST_BINARY');
  const up = await h.startUpstream();
  await up.setDoc('/prices', '{"prices":{"ACME":10.00,"GLOBX":20.50},"big":9007199254740993,"tags":["a"]}');
  const pc = await h.startPollcast(bin, `retry = 200ms
retry_jitter = 0s
[upstream prices]
url = http://127.0.0.1:${up.port}/prices
interval = 200ms
min_interval = 100ms
error_repeat = 1s
backoff_max = 1s
`);
  const relay = await h.startRelay(pc.port);
  const url = `http://127.0.0.1:${relay.port}/streams/prices`;

  // --changes: the snapshot line, then one line per leaf change.
  const w = new h.Proc(bin, ['watch', url, '--changes', '-H', 'X-Test: changes'], { name: 'watch --changes' });
  await w.waitLine(new RegExp(`^${TIME} snapshot "" \\{"prices":\\{"ACME":10\\.00,"GLOBX":20\\.50\\},"big":9007199254740993,"tags":\\["a"\\]\\}$`));
  await w.waitLine(/connecting to .*\/streams\/prices$/, { stream: 'err' });

  // A second watcher shows only one value, as a jq path, one version per change.
  const jq = new h.Proc(bin, ['watch', url, '--jq', '.prices.ACME', '--quiet'], { name: 'watch --jq' });
  await jq.waitLine(/^10\.00$/);

  let t0 = Date.now();
  await up.setDoc('/prices', '{"prices":{"ACME":10.10,"GLOBX":20.50},"big":9007199254740995,"tags":["a"]}');
  let m = await w.waitLine(new RegExp(`^${TIME} replace /prices/ACME 10\\.10$`));
  await w.waitLine(new RegExp(`^${TIME} replace /big 9007199254740995$`));
  const changeMs = Date.now() - t0;
  await jq.waitLine(/^10\.10$/, { from: 1 });
  assert.strictEqual(jq.out.filter((l) => l !== '').length, 2, 'jq watcher printed only the two versions:\n' + jq.dump());

  // Adds, removes and keys that need quoting.
  await up.setDoc('/prices', '{"prices":{"ACME":10.10},"big":9007199254740995,"tags":["a","b"],"a b":"\\u00e9"}');
  await w.waitLine(new RegExp(`^${TIME} remove /prices/GLOBX$`), { from: m.index });
  await w.waitLine(new RegExp(`^${TIME} add /tags/1 "b"$`), { from: m.index });
  m = await w.waitLine(new RegExp(`^${TIME} add "/a b" "\\\\u00e9"$`), { from: m.index });

  // Cut the connection: watch reconnects with the last id it saw and gets what it missed.
  await h.until(() => relay.requests.length === 2, 'both watchers connected');
  const first = relay.conns[0];
  const lastId = relay.ids(first).pop();
  assert.ok(lastId, 'the stream carried ids');
  relay.cut();
  await w.waitLine(/disconnected: .*; reconnecting in \d+\.\d s$/, { stream: 'err' });
  await up.setDoc('/prices', '{"prices":{"ACME":11.00},"big":9007199254740995,"tags":["a","b"],"a b":"\\u00e9"}');
  await h.until(() => relay.requests.length >= 4, 'both watchers reconnected');
  const resumed = relay.requests.slice(2).map((r) => r.headers['last-event-id']);
  assert.ok(resumed.includes(lastId), `a reconnect sent Last-Event-ID ${lastId}: ${JSON.stringify(relay.requests)}`);
  m = await w.waitLine(new RegExp(`^${TIME} replace /prices/ACME 11\\.00$`), { from: m.index });
  await w.waitLine(/connected, resuming after id /, { stream: 'err' });
  await jq.waitLine(/^11\.00$/);
  // No snapshot line again: the resume replayed patches or the snapshot matched.
  assert.strictEqual(w.out.filter((l) => / snapshot /.test(l)).length, 1, w.dump());

  // A patch that does not apply (injected by the relay) makes watch start over from a fresh
  // snapshot, without Last-Event-ID, and the document stays right.
  const before = relay.requests.length;
  relay.inject('id: bogus\nevent: patch\ndata: [{"op":"remove","path":"/no/such/member"}]\n\n',
    (r) => r.headers['x-test'] === 'changes');
  await w.waitLine(/patch bogus did not apply \(.*\); resynchronising$/, { stream: 'err' });
  await h.until(() => relay.requests.length > before, 'a reconnect after the bad patch');
  const fresh = relay.requests.slice(before).find((r) => r.headers['x-test'] === 'changes' && !r.headers['last-event-id']);
  assert.ok(fresh, 'the resync asked without Last-Event-ID: ' + JSON.stringify(relay.requests.slice(before)));
  await up.setDoc('/prices', '{"prices":{"ACME":11.50},"big":9007199254740995,"tags":["a","b"],"a b":"\\u00e9"}');
  m = await w.waitLine(new RegExp(`^${TIME} replace /prices/ACME 11\\.50$`), { from: m.index });

  // Upstream trouble: a status line on stderr, then recovery.
  await up.setMode({ path: '/prices', mode: 'status', status: 503 });
  await w.waitLine(/upstream error: .*503/, { stream: 'err' });
  await up.setMode({ path: '/prices', mode: 'normal' });
  await w.waitLine(/live \(upstream recovered\)$/, { stream: 'err', timeout: 8000 });

  // SIGINT ends it at once, with status 0.
  t0 = Date.now();
  w.kill('SIGINT');
  jq.kill('SIGINT');
  const ex = await w.waitExit(3000);
  assert.deepStrictEqual(ex, { code: 0, signal: null }, w.dump());
  assert.deepStrictEqual(await jq.waitExit(3000), { code: 0, signal: null }, jq.dump());
  assert.ok(Date.now() - t0 < 1500, 'SIGINT took ' + (Date.now() - t0) + ' ms');

  // --count: exits by itself.
  const once = new h.Proc(bin, ['watch', url, '-p', '/prices', '--count', '1', '-q'], { name: 'watch --count' });
  assert.deepStrictEqual(await once.waitExit(5000), { code: 0, signal: null }, once.dump());
  assert.deepStrictEqual(once.out, ['{', '  "ACME": 11.50', '}']);

  // Nothing at the pointer: nothing on stdout, a status line on stderr.
  const missing = new h.Proc(bin, ['watch', url, '-p', '/no/such'], { name: 'watch missing' });
  await missing.waitLine(/nothing at \/no\/such$/, { stream: 'err' });
  missing.kill('SIGINT');
  assert.deepStrictEqual(await missing.waitExit(3000), { code: 0, signal: null }, missing.dump());
  assert.deepStrictEqual(missing.out, []);

  // Refusals end the watch with status 1 and say why.
  const unknown = new h.Proc(bin, ['watch', `http://127.0.0.1:${pc.port}/streams/nope`], { name: 'watch 404' });
  assert.strictEqual((await unknown.waitExit(5000)).code, 1);
  await unknown.waitLine(/HTTP 404: no upstream of that name is configured/, { stream: 'err' });
  const notStream = new h.Proc(bin, ['watch', `http://127.0.0.1:${pc.port}/healthz`], { name: 'watch healthz' });
  assert.strictEqual((await notStream.waitExit(5000)).code, 1);
  await notStream.waitLine(/is not an event stream \(Content-Type: application\/json\)/, { stream: 'err' });
  const usage = new h.Proc(bin, ['watch', url, '--jq', '.a | .b'], { name: 'watch usage' });
  assert.strictEqual((await usage.waitExit(5000)).code, 2);
  const badUrl = new h.Proc(bin, ['watch', 'localhost:8080/streams/demo'], { name: 'watch bad url' });
  assert.strictEqual((await badUrl.waitExit(5000)).code, 2);

  // A server that is not there yet: watch keeps trying, backing off, until SIGINT.
  const dead = await h.startRelay(1); // port 1: every connection is refused
  const waiting = new h.Proc(bin, ['watch', `http://127.0.0.1:${dead.port}/streams/x`], { name: 'watch down' });
  await waiting.waitLine(/disconnected: .*; reconnecting in 3\.0 s$/, { stream: 'err' });
  waiting.kill('SIGINT');
  assert.deepStrictEqual(await waiting.waitExit(3000), { code: 0, signal: null }, waiting.dump());

  console.log(`watch_test: upstream change shown in ${changeMs} ms`);
});

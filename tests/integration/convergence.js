// Convergence: 50 subscribers (node `eventsource`, patches applied with fast-json-patch) follow
// one upstream through 50 varied changes; after each change every subscriber holds a document
// deep-equal to the upstream's, and the upstream saw one request per tick, not one per
// subscriber.
'use strict';

const h = require('./harness');
const { assert, T, log } = h;

const SUBSCRIBERS = h.scaled(50, 10);
const CHANGES = h.scaled(50, 20);
const INTERVAL_MS = 150;

// Applies one seeded, varied change to doc (a clone) and returns [newDoc, what].
function mutate(doc, r, step) {
  const d = h.clone(doc);
  const kinds = ['field', 'insert', 'remove', 'move', 'edit-in-array', 'reorder', 'add-key',
    'remove-key', 'type', 'deep', 'prims', 'unicode', 'swap', 'key-order', 'many'];
  // A root that is not an object gets an object back first.
  if (d === null || typeof d !== 'object' || Array.isArray(d)) {
    return [initial(r), 'root back to an object'];
  }
  if (step === 31) return [[1, 'two', { three: 3 }, null], 'root replaced by an array'];
  const kind = kinds[step % kinds.length];
  const items = d.items;
  switch (kind) {
    case 'field':
      d.price = Math.round(r() * 100000) / 100;
      d.updated = `t${step}`;
      break;
    case 'insert':
      items.splice(r.int(items.length + 1), 0, item(r, 1000 + step));
      break;
    case 'remove':
      if (items.length > 1) items.splice(r.int(items.length), 1);
      break;
    case 'move': {
      const [x] = items.splice(r.int(items.length), 1);
      items.splice(r.int(items.length + 1), 0, x);
      break;
    }
    case 'edit-in-array': {
      const x = r.pick(items);
      x.qty = r.int(100);
      x.tags.push(r.str(3));
      break;
    }
    case 'reorder':
      items.reverse();
      break;
    case 'add-key':
      d.extra = d.extra || {};
      d.extra[r.pick(['a/b', 'm~n', '', 'Case', 'case', 'k' + step])] = r.str(5);
      break;
    case 'remove-key':
      if (d.extra) delete d.extra[Object.keys(d.extra)[0]];
      else delete d.flag;
      break;
    case 'type':
      d.shape = r.pick([null, 42, 'str', [1, 2], { o: { p: true } }, false, [], {}]);
      break;
    case 'deep':
      d.nested.a.b.c.push({ n: step, deep: { deeper: [step, step + 1] } });
      d.nested.a.b.z = step;
      break;
    case 'prims':
      d.list.unshift(step);
      d.list.splice(r.int(d.list.length), 1);
      d.list.push(-step, 0.5, 'x');
      break;
    case 'unicode':
      d.text = r.pick(['héllo wörld', '日本語テキスト', 'emoji 😀 🎉', 'nul\u0000byte',
        'quote " and \\ backslash', 'tab\tnewline\n', 'esc \u001f']);
      break;
    case 'swap': {
      if (items.length > 2) {
        const i = r.int(items.length);
        const j = r.int(items.length);
        [items[i], items[j]] = [items[j], items[i]];
      }
      d.flag = !d.flag;
      break;
    }
    case 'key-order': {
      // Same value, other member order: nothing to send; the next change must still apply.
      const out = {};
      for (const k of Object.keys(d).reverse()) out[k] = d[k];
      return [out, kind];
    }
    case 'many':
      for (let k = 0; k < 5; k++) items.splice(r.int(items.length + 1), 0, item(r, 2000 + 10 * step + k));
      items.splice(0, 2);
      d.price = -d.price;
      break;
    default:
      break;
  }
  return [d, kind];
}

function item(r, id) {
  return { id, name: r.str(6), qty: r.int(50), tags: [r.str(2)] };
}

function initial(r) {
  const items = [];
  for (let i = 0; i < 12; i++) items.push(item(r, i + 1));
  return { symbol: 'ACME', price: 12.5, updated: 't0', flag: true, items, list: [1, 2, 3],
    nested: { a: { b: { c: [], z: 0 } } }, text: 'plain', shape: null };
}

h.run('convergence', async (t) => {
  const up = await h.startUpstream();
  const r = h.rng(20260601);
  let doc = initial(r);
  await up.put('/conv', doc);
  const pc = await h.startPollcast({
    upstreams: { conv: { url: up.url('/conv'), interval: `${INTERVAL_MS}ms` } },
  });
  const url = `${pc.base}/streams/conv`;

  const subs = await t.step(`${SUBSCRIBERS} eventsource subscribers get the snapshot`, async () => {
    const subs = [];
    for (let i = 0; i < SUBSCRIBERS; i++) subs.push(new h.EsStream(url, { name: `es${i}` }));
    h.defer(() => subs.forEach((s) => s.close()));
    await Promise.all(subs.map((s) => s.waitDoc(doc, T(10000), 'the first snapshot')));
    for (const s of subs) assert.equal(s.count('data'), 1, `${s.name}: one data event`);
    return subs;
  });

  const before = await up.stats('/conv');
  const started = Date.now();
  await t.step(`${CHANGES} varied changes, each reaches every subscriber`, async () => {
    const kinds = new Set();
    for (let step = 1; step <= CHANGES; step++) {
      const [next, kind] = mutate(doc, r, step);
      kinds.add(kind);
      doc = next;
      await up.put('/conv', doc);
      await Promise.all(subs.map((s) => s.waitDoc(doc, T(5000), `change ${step} (${kind})`)));
    }
    log(`kinds of change: ${[...kinds].join(', ')}`);
  });
  const elapsed = Date.now() - started;

  await t.step('every subscriber converged through patches, on one connection', async () => {
    const patches = subs[0].count('patch');
    // A key-order change costs no event; every other change is one patch.
    assert.ok(patches >= CHANGES - Math.ceil(CHANGES / 15) - 1,
      `patches received: ${patches} for ${CHANGES} changes`);
    for (const s of subs) {
      assert.ok(h.isDeepStrictEqual(s.doc, doc), `${s.name} holds the last document`);
      assert.equal(s.count('data'), 1, `${s.name}: no snapshot besides the first`);
      assert.equal(s.count('patch'), patches, `${s.name}: same patch count as es0`);
      assert.equal(s.connErrors.length, 0, `${s.name}: connection errors ${s.connErrors}`);
      assert.equal(s.opens, 1, `${s.name}: reconnected`);
      assert.equal(s.lastId.id, subs[0].lastId.id, `${s.name}: same last id as es0`);
    }
  });

  await t.step('the upstream saw one request per tick, not one per subscriber', async () => {
    const after = await up.stats('/conv');
    const requests = after.count - before.count;
    const ticks = elapsed / INTERVAL_MS;
    log(`${requests} upstream requests in ${elapsed} ms (${ticks.toFixed(1)} ticks of ` +
      `${INTERVAL_MS} ms) for ${SUBSCRIBERS} subscribers; ${after.count} in all`);
    assert.ok(requests <= ticks + 3, `${requests} requests in ${ticks.toFixed(1)} ticks`);
    // Fixed-rate polling: not far fewer than one per tick either (ticks are never early).
    assert.ok(requests >= Math.min(CHANGES, ticks * 0.5),
      `only ${requests} requests in ${ticks.toFixed(1)} ticks`);
    assert.equal(after.max_inflight, 1, 'one poller, one request at a time');
    // The time between two requests is the interval (never a burst of per-subscriber polls).
    const times = after.times_ms.slice(-Math.min(requests, after.times_ms.length));
    const gaps = times.slice(1).map((x, i) => x - times[i]);
    const short = gaps.filter((g) => g < INTERVAL_MS / 3);
    assert.ok(short.length <= 2, `requests closer than a third of the interval: ${short}`);
    const m = await pc.metrics();
    assert.equal(m.pollcast_pollers, 1, 'one poller');
    assert.equal(m.pollcast_subscribers, SUBSCRIBERS, 'subscribers gauge');
  });
}, { timeoutMs: 120000 });

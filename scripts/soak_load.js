#!/usr/bin/env node
// The load of scripts/soak.sh: keeps SUBSCRIBERS SSE subscribers on one pollcast stream, with
// CHURN of them leaving and as many new ones joining every second (spread evenly), and changes
// the scripted upstream's document every CHANGE_MS. Every SAMPLE_S it prints one line of JSON
// counters on stdout: {"t":s,"connected":n,"opened":n,"closed_by_us":n,"closed_by_server":n,
// "errors":n,"events":n,"changes":n}. Runs for SECONDS, then closes everything and exits.
//
// Usage: node scripts/soak_load.js STREAM_URL UPSTREAM_BASE  (settings from the environment:
// SOAK_SECONDS, SOAK_SUBSCRIBERS, SOAK_CHURN, SOAK_CHANGE_MS, SOAK_SAMPLE_S)
'use strict';

const http = require('node:http');

const [streamUrl, upstreamBase] = process.argv.slice(2);
if (!streamUrl || !upstreamBase) {
  process.stderr.write('usage: soak_load.js STREAM_URL UPSTREAM_BASE\n');
  process.exit(2);
}
const env = (k, d) => Number(process.env[k] || d);
const SECONDS = env('SOAK_SECONDS', 600);
const SUBSCRIBERS = env('SOAK_SUBSCRIBERS', 1000);
const CHURN = env('SOAK_CHURN', 100);
const CHANGE_MS = env('SOAK_CHANGE_MS', 200);
const SAMPLE_S = env('SOAK_SAMPLE_S', 10);

const c = { connected: 0, opened: 0, closed_by_us: 0, closed_by_server: 0, errors: 0, events: 0,
  changes: 0 };
const subs = new Set();
let stopping = false;

function open() {
  const s = { req: null, closing: false };
  c.opened++;
  s.req = http.get(streamUrl, { agent: false, headers: { Accept: 'text/event-stream' } }, (res) => {
    if (res.statusCode !== 200) c.errors++;
    else c.connected++;
    res.setEncoding('utf8');
    let tail = '';
    res.on('data', (d) => {
      // Count events by their blank-line terminators (an event may span chunks).
      const text = tail + d;
      let i = -1;
      while ((i = text.indexOf('\n\n', i + 1)) >= 0) c.events++;
      tail = text.slice(-1);
    });
    res.on('close', () => {
      if (res.statusCode === 200) c.connected--;
      if (!s.closing && !stopping) {
        c.closed_by_server++;
        subs.delete(s);
        open();
      }
    });
  });
  s.req.on('error', () => {
    if (!s.closing && !stopping) {
      c.errors++;
      subs.delete(s);
      setTimeout(open, 100);
    }
  });
  subs.add(s);
}

function closeOne() {
  // The oldest subscriber leaves (a Set iterates in insertion order).
  const s = subs.values().next().value;
  if (!s) return;
  subs.delete(s);
  s.closing = true;
  c.closed_by_us++;
  s.req.destroy();
}

function change() {
  const body = JSON.stringify({ t: Date.now(), n: c.changes, items: [c.changes % 7, c.changes % 13] });
  const req = http.request(`${upstreamBase}/_control/doc?path=/soak`, { method: 'PUT', agent: false },
    (res) => res.resume());
  req.on('error', () => c.errors++);
  req.end(body);
  c.changes++;
}

const t0 = Date.now();
(async () => {
  // Ramp up over a second or so, in batches, so that the start is not one SYN storm.
  for (let i = 0; i < SUBSCRIBERS; i++) {
    open();
    if (i % 100 === 99) await new Promise((r) => setTimeout(r, 50));
  }
  const changer = setInterval(change, CHANGE_MS);
  const churnEvery = CHURN > 0 ? 1000 / CHURN : 0;
  const churner = churnEvery ? setInterval(() => {
    closeOne();
    open();
  }, churnEvery) : null;
  const sample = () => process.stdout.write(JSON.stringify({ t: Math.round((Date.now() - t0) / 1000),
    ...c }) + '\n');
  const sampler = setInterval(sample, SAMPLE_S * 1000);
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  stopping = true;
  clearInterval(changer);
  if (churner) clearInterval(churner);
  clearInterval(sampler);
  for (const s of subs) s.req.destroy();
  process.exit(0);
})();

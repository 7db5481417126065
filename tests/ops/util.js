// Helpers of the ops suite on top of tests/integration/harness.js: HS256 tokens, waiting for a
// line on pollcast's stderr, /metrics through the strict parser, and a raw SSE reader that
// accepts any event name (the Streamdata.io form sends "error" events, which the harness's
// followers refuse on the normal endpoints).
'use strict';

const crypto = require('node:crypto');
const http = require('node:http');
const path = require('node:path');
const h = require(path.join(__dirname, '..', 'integration', 'harness.js'));
const prom = require('./promparse.js');

const { assert, T, within } = h;

const b64u = (b) => Buffer.from(b).toString('base64url');

// An HS256 JWT over claims, valid for an hour.
function jwt(secret, claims) {
  const head = b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const now = Math.floor(Date.now() / 1000);
  const body = b64u(JSON.stringify({ iat: now, exp: now + 3600, ...claims }));
  const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

// Resolves with the first stderr line of pc (from index `from` on) that matches re.
async function waitLog(pc, re, ms = T(5000), from = 0) {
  const end = Date.now() + ms;
  for (;;) {
    const hit = pc.stderrLines.slice(from).find((l) => re.test(l));
    if (hit) return hit;
    if (Date.now() > end) {
      throw new Error(`no stderr line matching ${re} within ${ms} ms; last lines:\n` +
        pc.stderrLines.slice(-20).join('\n'));
    }
    await h.sleep(20);
  }
}

// GET /metrics, checked by the strict parser; returns the parse with a get(name, labels).
async function metrics(pc) {
  const r = await h.request('GET', `${pc.base}/metrics`);
  assert.equal(r.status, 200, `/metrics: ${r.body}`);
  assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  const parsed = prom.parse(r.body);
  parsed.text = r.body;
  parsed.get = (name, labels) => prom.value(parsed, name, labels);
  return parsed;
}

// An SSE stream read with node:http that records every event, whatever its name.
class AnyStream {
  constructor(url, { headers = {} } = {}) {
    this.events = [];
    this.waiters = new Set();
    this.ended = false;
    this.parser = new h.SseParser({ onEvent: (ev) => this.push(ev) });
    this.opened = within(new Promise((resolve, reject) => {
      this.req = http.get(url, { agent: false, headers }, (res) => {
        this.status = res.statusCode;
        this.headers = res.headers;
        this.body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          if (res.statusCode === 200) this.parser.feed(c);
          else this.body += c;
        });
        res.on('end', () => {
          this.ended = true;
          this.notify();
        });
        res.on('error', () => {
          this.ended = true;
          this.notify();
        });
        resolve(this);
      });
      this.req.on('error', reject);
    }), T(10000), `GET ${url}`);
  }

  push(ev) {
    this.events.push(ev);
    this.notify();
  }

  notify() {
    for (const w of this.waiters) w();
  }

  list(name) {
    return this.events.filter((e) => e.event === name);
  }

  until(pred, ms, what) {
    return within(new Promise((resolve) => {
      const check = () => {
        if (pred(this)) {
          this.waiters.delete(check);
          resolve(this);
        }
      };
      this.waiters.add(check);
      check();
    }), ms, what);
  }

  close() {
    this.req.destroy();
  }
}

module.exports = { h, prom, jwt, waitLog, metrics, AnyStream };

#!/usr/bin/env node
// A scripted JSON upstream for pollcast's tests: serves documents set over a control API, can be
// told to misbehave per path (errors, Retry-After, invalid JSON, huge bodies, gzip bombs, slow
// drips, hangs), and counts the requests it sees. No npm dependencies; node >= 18.
//
// Start: node tests/integration/upstream_server.js [--host 127.0.0.1]
// It listens on an OS-chosen port and prints {"port":N} as its first stdout line. It exits when
// its stdin closes (so a test that dies does not leave it behind), and on SIGTERM or SIGINT.
//
// Served paths (any path not under /_control/): the query string is ignored; a path with no
// document answers 404. By default a document is served as 200 application/json with an ETag and
// a Last-Modified, and answers 304 to a matching If-None-Match (or, when the request has none, to
// an If-Modified-Since not older than the document).
//
// Control API:
//   PUT  /_control/doc?path=/x        body: the exact bytes to serve at /x (kept verbatim)
//   DELETE /_control/doc?path=/x      forget the document (404 again)
//   POST /_control/mode               body: JSON {"path":"/x","mode":M, ...options}
//        modes:  normal     the document (options: etag, last_modified: false to omit them;
//                           encoding: "gzip"|"deflate"|"br" compresses when the client accepts it;
//                           content_type)
//                status     answers `status` (default 500) with `body` (default a small JSON
//                           error) and a Retry-After when `retry_after` is given (a number of
//                           seconds, or any string, sent as is: an HTTP-date)
//                invalid    200 application/json with `body` (default: truncated JSON)
//                huge       200 with a valid JSON document of `bytes` bytes (default 16 MiB)
//                gzip_bomb  200, Content-Encoding: gzip, `bytes` (default 64 MiB) of spaces
//                           compressed to a few tens of KiB
//                drip       200, then one byte every `drip_ms` (default 100), `bytes` in all
//                           (default: forever)
//                hang       reads the request and never answers
//                close      destroys the connection without answering
//                redirect   `status` (default 302) to `location`
//                endless    200 application/json without a Content-Length: "[0,0,0,..." in
//                           64 KiB chunks for as long as the client reads (never ends)
//                token      an OAuth2 token endpoint (RFC 6749 4.4): answers a POST of
//                           application/x-www-form-urlencoded grant_type=client_credentials whose
//                           client authenticates with HTTP Basic (form-encoded id and secret) or
//                           in the body (client_secret_post) as `client_id` / `client_secret`
//                           with {"access_token","token_type":"Bearer","expires_in"}
//                           (`expires_in` seconds, default 3); `fail`: "invalid_client" answers
//                           400 {"error":"invalid_client"} (any other string: 400 with that
//                           error). Wrong credentials get 401 invalid_client.
//        options of normal: cache_control, age (sent as Cache-Control and Age);
//                           require_token: true answers 401 unless the request carries
//                           Authorization: Bearer T with T issued by a token path, not expired
//                           and not revoked
//        common options: delay_ms (wait before answering), times (apply the mode to the next N
//        requests only, then back to normal)
//   GET  /_control/stats[?path=/x]    {"total":N,"connections":N,"paths":{"/x":{"count":N,"inflight":N,
//                                      "max_inflight":N,"headers":{last request's headers},
//                                      "times_ms":[arrival times, ms since start]}}}
//                                      (with ?path=, that one path's entry)
//        each path's entry also has "requests": the last 50 requests as {method, target (path
//        and query as received), query: {name: [values]}, content_type, authorization, body
//        (as UTF-8 text)}
//   POST /_control/revoke             every token issued so far is refused from now on (the
//                                      next request that uses one gets 401)
//   POST /_control/reset              forget documents, modes, tokens and counts
'use strict';

const http = require('http');
const zlib = require('zlib');
const crypto = require('crypto');
const { performance } = require('perf_hooks');

const host = (() => {
  const i = process.argv.indexOf('--host');
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : '127.0.0.1';
})();

let docs = new Map(); // path -> {body: Buffer, etag, modified: Date, contentType}
let modes = new Map(); // path -> {mode, ...options, times}
let stats = new Map(); // path -> {count, inflight, max_inflight, headers, times_ms}
let total = 0;
let connections = 0; // TCP connections that carried a request for a document (not /_control/)
let tokens = new Map(); // access token -> {expires: ms since epoch, revoked}
let tokenSeq = 0;
const bombs = new Map(); // size -> gzip Buffer

function statsFor(path) {
  let s = stats.get(path);
  if (!s) {
    s = { count: 0, inflight: 0, max_inflight: 0, headers: {}, times_ms: [], requests: [] };
    stats.set(path, s);
  }
  return s;
}

function readBody(req, limit = 64 * 1024 * 1024) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let n = 0;
    req.on('data', (c) => {
      n += c.length;
      if (n > limit) {
        reject(new Error('control body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function sendJson(res, status, obj) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': body.length });
  res.end(body);
}

function setDoc(path, body, contentType) {
  const etag = '"' + crypto.createHash('sha1').update(body).digest('hex').slice(0, 20) + '"';
  // Last-Modified has one-second granularity: keep the time rounded so comparisons are exact.
  const modified = new Date(Math.floor(Date.now() / 1000) * 1000);
  docs.set(path, { body, etag, modified, contentType: contentType || 'application/json' });
}

async function control(req, res, url) {
  const what = url.pathname.slice('/_control/'.length);
  const path = url.searchParams.get('path');
  if (what === 'doc' && (req.method === 'PUT' || req.method === 'POST')) {
    if (!path) return sendJson(res, 400, { error: 'path= required' });
    const body = await readBody(req);
    setDoc(path, body, url.searchParams.get('content_type'));
    return sendJson(res, 200, { path, etag: docs.get(path).etag, bytes: body.length });
  }
  if (what === 'doc' && req.method === 'DELETE') {
    docs.delete(path);
    return sendJson(res, 200, { path });
  }
  if (what === 'doc' && req.method === 'GET') {
    const d = docs.get(path);
    if (!d) return sendJson(res, 404, { error: 'no document' });
    res.writeHead(200, { 'Content-Type': d.contentType, ETag: d.etag });
    return res.end(d.body);
  }
  if (what === 'mode' && req.method === 'POST') {
    let m;
    try {
      m = JSON.parse((await readBody(req)).toString('utf8'));
    } catch (e) {
      return sendJson(res, 400, { error: 'body must be JSON' });
    }
    if (!m || typeof m.path !== 'string' || typeof m.mode !== 'string') {
      return sendJson(res, 400, { error: '{"path":..., "mode":...} required' });
    }
    const known = ['normal', 'status', 'invalid', 'huge', 'gzip_bomb', 'drip', 'hang', 'close',
      'redirect', 'endless', 'token'];
    if (!known.includes(m.mode)) return sendJson(res, 400, { error: 'unknown mode ' + m.mode });
    // A bomb is compressed off the event loop before the mode takes effect: made on the first
    // request instead, 64 MiB at level 9 stalled every other path for over a second on a busy
    // machine (all of security.hostile_upstreams' concurrent polls timed out).
    if (m.mode === 'gzip_bomb') await bombReady(m.bytes || 64 * 1024 * 1024);
    modes.set(m.path, m);
    return sendJson(res, 200, m);
  }
  if (what === 'stats' && req.method === 'GET') {
    if (path) return sendJson(res, 200, statsFor(path));
    const paths = {};
    for (const [p, s] of stats) paths[p] = s;
    return sendJson(res, 200, { total, connections, paths });
  }
  if (what === 'revoke' && req.method === 'POST') {
    for (const t of tokens.values()) t.revoked = true;
    return sendJson(res, 200, { revoked: tokens.size });
  }
  if (what === 'reset' && req.method === 'POST') {
    tokens = new Map();
    docs = new Map();
    modes = new Map();
    stats = new Map();
    total = 0;
    connections = 0;
    return sendJson(res, 200, {});
  }
  return sendJson(res, 404, { error: 'unknown control endpoint' });
}

async function bombReady(size) {
  if (!bombs.has(size)) {
    const b = await new Promise((resolve, reject) => zlib.gzip(Buffer.alloc(size, 0x20),
      { level: 9 }, (err, out) => (err ? reject(err) : resolve(out))));
    bombs.set(size, b);
  }
}

function bomb(size) {
  let b = bombs.get(size);
  if (!b) {
    b = zlib.gzipSync(Buffer.alloc(size, 0x20), { level: 9 });
    bombs.set(size, b);
  }
  return b;
}

function acceptsEncoding(req, enc) {
  const ae = (req.headers['accept-encoding'] || '').toLowerCase();
  return ae.split(',').some((t) => t.trim().split(';')[0] === enc);
}

// True when the request carries a token this server issued, unexpired and not revoked.
function tokenValid(req) {
  const m = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/.exec(req.headers.authorization || '');
  const t = m && tokens.get(m[1]);
  return !!t && !t.revoked && t.expires > Date.now();
}

function serveToken(req, res, m, body) {
  const form = new URLSearchParams(body.toString('utf8'));
  const ct = (req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
  if (req.method !== 'POST' || ct !== 'application/x-www-form-urlencoded' ||
    form.get('grant_type') !== 'client_credentials') {
    return sendJson(res, 400, { error: 'invalid_request' });
  }
  if (typeof m.fail === 'string') return sendJson(res, 400, { error: m.fail });
  let id = form.get('client_id');
  let secret = form.get('client_secret');
  const basic = /^Basic ([A-Za-z0-9+/]+=*)$/.exec(req.headers.authorization || '');
  if (basic) {
    const pair = Buffer.from(basic[1], 'base64').toString('utf8');
    const i = pair.indexOf(':');
    const dec = (x) => decodeURIComponent(x.replace(/\+/g, ' '));
    id = i < 0 ? null : dec(pair.slice(0, i));
    secret = i < 0 ? null : dec(pair.slice(i + 1));
  }
  if (id !== m.client_id || secret !== m.client_secret) {
    return sendJson(res, 401, { error: 'invalid_client' });
  }
  const expiresIn = m.expires_in !== undefined ? m.expires_in : 3;
  const token = `tok-${++tokenSeq}-${crypto.randomBytes(9).toString('base64url')}`;
  tokens.set(token, { expires: Date.now() + expiresIn * 1000, revoked: false });
  return sendJson(res, 200, { access_token: token, token_type: 'Bearer', expires_in: expiresIn });
}

function serveDoc(req, res, path, m) {
  if (m.require_token && !tokenValid(req)) {
    res.writeHead(401, { 'Content-Type': 'application/json',
      'WWW-Authenticate': 'Bearer error="invalid_token"' });
    return res.end('{"error":"invalid_token"}');
  }
  const d = docs.get(path);
  if (!d) return sendJson(res, 404, { error: 'no document at ' + path });
  const headers = { 'Content-Type': m.content_type || d.contentType };
  if (m.cache_control !== undefined) headers['Cache-Control'] = m.cache_control;
  if (m.age !== undefined) headers.Age = String(m.age);
  const useEtag = m.etag !== false;
  const useLm = m.last_modified !== false;
  if (useEtag) headers.ETag = d.etag;
  if (useLm) headers['Last-Modified'] = d.modified.toUTCString();
  const inm = req.headers['if-none-match'];
  const ims = req.headers['if-modified-since'];
  let notModified = false;
  if (inm !== undefined) {
    notModified = useEtag && inm.split(',').map((t) => t.trim()).includes(d.etag);
  } else if (ims !== undefined && useLm) {
    const t = Date.parse(ims);
    notModified = !Number.isNaN(t) && d.modified.getTime() <= t;
  }
  if (notModified) {
    res.writeHead(304, headers);
    return res.end();
  }
  let body = d.body;
  const enc = m.encoding;
  if (enc && acceptsEncoding(req, enc)) {
    if (enc === 'gzip') body = zlib.gzipSync(body);
    else if (enc === 'deflate') body = zlib.deflateSync(body);
    else if (enc === 'br') body = zlib.brotliCompressSync(body);
    headers['Content-Encoding'] = enc;
    headers.Vary = 'Accept-Encoding';
  }
  headers['Content-Length'] = body.length;
  res.writeHead(200, headers);
  res.end(body);
}

function serveHuge(res, size) {
  // {"pad":"xxxx...x"}: valid JSON of exactly `size` bytes (at least 10), streamed with
  // backpressure so that a client that aborts stops it.
  const head = Buffer.from('{"pad":"');
  const tail = Buffer.from('"}');
  let left = Math.max(size, head.length + tail.length) - head.length - tail.length;
  const chunk = Buffer.alloc(64 * 1024, 0x78);
  res.writeHead(200, { 'Content-Type': 'application/json',
    'Content-Length': head.length + left + tail.length });
  res.write(head);
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      left -= n;
      if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
        res.once('drain', pump);
        return;
      }
    }
    res.end(tail);
  };
  res.on('close', () => {
    left = 0;
  });
  pump();
}

function serveDrip(res, m) {
  const every = m.drip_ms || 100;
  let left = m.bytes || Infinity;
  res.writeHead(200, { 'Content-Type': 'application/json' });
  const t = setInterval(() => {
    if (left <= 0 || res.destroyed) {
      clearInterval(t);
      if (!res.destroyed) res.end();
      return;
    }
    left--;
    res.write(' ');
  }, every);
  res.on('close', () => clearInterval(t));
}

function serveEndless(res) {
  const chunk = Buffer.from('0,'.repeat(32 * 1024));
  let open = true;
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.write('[');
  const pump = () => {
    while (open) {
      if (!res.write(chunk)) {
        res.once('drain', pump);
        return;
      }
    }
  };
  res.on('close', () => {
    open = false;
  });
  pump();
}

function serve(req, res, path, body) {
  let m = modes.get(path) || { mode: 'normal' };
  if (m.times !== undefined) {
    if (m.times <= 0) {
      modes.delete(path);
      m = { mode: 'normal' };
    } else {
      m.times--;
      if (m.times <= 0) modes.delete(path);
    }
  }
  switch (m.mode) {
    case 'status': {
      const status = m.status || 500;
      const headers = { 'Content-Type': 'application/json' };
      if (m.retry_after !== undefined) headers['Retry-After'] = String(m.retry_after);
      const body = Buffer.from(m.body !== undefined ? m.body : JSON.stringify({ error: status }));
      headers['Content-Length'] = body.length;
      res.writeHead(status, headers);
      return res.end(body);
    }
    case 'invalid': {
      const body = Buffer.from(m.body !== undefined ? m.body : '{"price": 12.5, "items": [1, 2');
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
      return res.end(body);
    }
    case 'huge':
      return serveHuge(res, m.bytes || 16 * 1024 * 1024);
    case 'gzip_bomb': {
      const body = bomb(m.bytes || 64 * 1024 * 1024);
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip',
        'Content-Length': body.length });
      return res.end(body);
    }
    case 'drip':
      return serveDrip(res, m);
    case 'hang':
      return undefined; // the request stays open until the client gives up
    case 'close':
      return req.socket.destroy();
    case 'endless':
      return serveEndless(res);
    case 'token':
      return serveToken(req, res, m, body);
    case 'redirect':
      res.writeHead(m.status || 302, { Location: m.location || '/', 'Content-Length': 0 });
      return res.end();
    default:
      return serveDoc(req, res, path, m);
  }
}

const started = performance.now();
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://upstream.invalid');
  if (url.pathname.startsWith('/_control/')) {
    control(req, res, url).catch((e) => {
      if (!res.headersSent) sendJson(res, 500, { error: String(e && e.message) });
    });
    return;
  }
  const path = url.pathname;
  const s = statsFor(path);
  total++;
  if (!req.socket.pollcastCounted) {
    req.socket.pollcastCounted = true;
    connections++;
  }
  s.count++;
  s.headers = req.headers;
  s.times_ms.push(Math.round((performance.now() - started) * 10) / 10);
  if (s.times_ms.length > 1000) s.times_ms.shift();
  s.inflight++;
  if (s.inflight > s.max_inflight) s.max_inflight = s.inflight;
  let done = false;
  const finished = () => {
    if (!done) {
      done = true;
      s.inflight--;
    }
  };
  // 'close' comes when the response is done or the connection goes (a hang ends that way).
  res.on('close', finished);
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size <= 1024 * 1024) chunks.push(c);
  });
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const query = {};
    for (const [k, v] of url.searchParams) (query[k] = query[k] || []).push(v);
    s.requests.push({ method: req.method, target: req.url, query,
      content_type: req.headers['content-type'], authorization: req.headers.authorization,
      body: body.toString('utf8') });
    if (s.requests.length > 50) s.requests.shift();
    const m = modes.get(path);
    const delay = m && m.delay_ms;
    if (delay) setTimeout(() => serve(req, res, path, body), delay);
    else serve(req, res, path, body);
  });
});
server.keepAliveTimeout = 30000;
server.headersTimeout = 35000;

function shutdown() {
  server.closeAllConnections && server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.stdin.on('end', shutdown);
process.stdin.on('close', shutdown);
process.stdin.on('error', shutdown);
process.stdin.resume();

server.listen(0, host, () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});

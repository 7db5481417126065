// Behind a load balancer (issue 9): a real nginx round-robins 3,000 SSE clients (raw node:http
// clients with the harness's SSE parser, patches applied with fast-json-patch) over three
// pollcast nodes that share one Redis. Every node gets its third; every client gets one snapshot
// and converges through a run of changes with the same ids as every other client; the upstream
// still sees one request per tick. The ASan variant keeps the 3,000 clients (about 8 s here);
// under valgrind (POLLCAST_WRAPPER) the count is scaled down (POLLCAST_IT_SCALE), since three
// nodes under valgrind share the machine's 2 cores.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');
const c = require('./lib');
const { h } = c;
const { assert, T, log } = h;

const N = h.WRAPPER.length ? h.scaled(3000, 300) : 3000;
const INTERVAL = 300;
const CHANGES = 5;
const BATCH = 250;

// The nginx config of the test: the upstream block the README shows ("Running several nodes"),
// on a free port, everything under dir, stopped by PID.
function nginxConfig(dir, port, nodes) {
  return `worker_processes 1;
worker_rlimit_nofile 20000;
master_process off;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 16000; }
http {
  access_log off;
  client_body_temp_path ${dir}/b; proxy_temp_path ${dir}/p;
  fastcgi_temp_path ${dir}/f; uwsgi_temp_path ${dir}/u; scgi_temp_path ${dir}/s;
  upstream pollcast {
${nodes.map((n) => `    server 127.0.0.1:${n.port};`).join('\n')}
    keepalive 16;
  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      proxy_pass http://pollcast;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_cache off;
      proxy_read_timeout 1h;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`;
}

function fdLimit() {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
  return !m || m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

h.run('cluster.load_balancer', async (t) => {
  assert.ok(fdLimit() >= N + 200, `open files limit ${fdLimit()} is too low for ${N} clients`);
  const redis = await c.startRedis();
  const up = await h.startUpstream();
  const r = h.rng(3);
  const docOf = (n) => ({ n, rows: Array.from({ length: 8 }, (_, i) => ({ id: i,
    v: r.int(1000) })), ts: `t${n}` });
  let doc = docOf(0);
  await up.put('/live', doc);
  const per = Math.ceil(N / 3) + 200;
  const nodes = await c.startNodes(redis, 3, {
    server: { max_subscribers: per, max_connections: per + 100, listen_backlog: 4096,
      keepalive: '5s' },
    upstreams: { live: { url: up.url('/live'), interval: `${INTERVAL}ms` } },
  });

  const lb = await t.step('nginx round-robin in front of the three nodes', async () => {
    const dir = fs.mkdtempSync(path.join(h.tmpDir(), 'nginx-'));
    const port = await c.freePort();
    const conf = path.join(dir, 'nginx.conf');
    fs.writeFileSync(conf, nginxConfig(dir, port, nodes));
    const test = await c.exec(['nginx', '-t', '-p', dir, '-c', conf]);
    assert.equal(test.code, 0, `nginx -t: ${test.stderr}`);
    const nginx = h.track(spawn('nginx', ['-p', dir, '-c', conf], { stdio: ['ignore', 'pipe',
      'pipe'] }));
    h.defer(() => {
      try {
        process.kill(nginx.pid, 'SIGTERM');
      } catch {
        // gone
      }
    });
    const base = `http://127.0.0.1:${port}`;
    await c.waitFor(() => h.request('GET', `${base}/healthz`).then((x) => x.status === 200,
      () => false), T(10000), `nginx to answer: ${dir}/error.log`);
    log(`nginx pid ${nginx.pid} on port ${port}`);
    return { base, dir };
  });

  const book = new c.IdBook();
  const subs = [];
  h.defer(() => subs.forEach((s) => s.close()));
  await t.step(`${N} clients through nginx get the snapshot`, async () => {
    const started = Date.now();
    for (let i = 0; i < N; i += BATCH) {
      const batch = [];
      for (let k = i; k < Math.min(N, i + BATCH); k++) {
        batch.push(h.openRaw(lb.base, '/streams/live', { name: `c${k}` }).then((s) => {
          subs.push(book.watch(s));
          return s.waitDoc(doc, T(30000), 'the snapshot');
        }));
      }
      await Promise.all(batch);
    }
    for (const s of subs) assert.equal(s.status, 200, `${s.name}: status`);
    log(`${N} clients connected in ${Date.now() - started} ms`);
  });

  await t.step('round-robin: each node serves about a third', async () => {
    const counts = [];
    for (const n of nodes) counts.push((await n.metrics()).pollcast_subscribers);
    log(`subscribers per node: ${counts.join(' / ')}`);
    assert.equal(counts.reduce((a, b) => a + b, 0), N, 'subscribers summed over the nodes');
    for (const k of counts) assert.ok(k >= N / 3 * 0.8, `a node serves only ${k} of ${N}`);
    await c.waitOwner(nodes);
  });

  await t.step(`${CHANGES} changes: every client converges with the same ids`, async () => {
    const before = await up.stats('/live');
    const started = Date.now();
    for (let i = 1; i <= CHANGES; i++) {
      doc = docOf(i);
      await up.put('/live', doc);
      await Promise.all(subs.map((s) => s.waitDoc(doc, T(20000), `version ${i}`)));
    }
    const ms = Date.now() - started;
    const after = await up.stats('/live');
    const requests = after.count - before.count;
    const ticks = ms / INTERVAL;
    log(`${CHANGES} changes reached all ${N} clients in ${ms} ms; ${requests} upstream ` +
      `requests in ${ticks.toFixed(1)} ticks`);
    assert.ok(requests <= ticks + 2, `${requests} upstream requests in ${ticks.toFixed(1)} ticks`);
    const last = subs[0].lastId.id;
    for (const s of subs) {
      assert.equal(s.count('data'), 1, `${s.name}: one snapshot`);
      assert.equal(s.count('patch'), CHANGES, `${s.name}: ${CHANGES} patches`);
      assert.equal(s.lastId.id, last, `${s.name}: last id`);
    }
    book.check();
  });
}, { timeoutMs: 150000 });

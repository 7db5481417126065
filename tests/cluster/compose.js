// compose.yaml (issues 9 and 11): parsed by a real Compose implementation (`docker-compose
// config`, Debian's docker-compose; podman-compose 1.0.3 has no `config` command and its
// --dry-run still creates networks), then checked: redis, three pollcast nodes built from this
// repository's Dockerfile as pollcast:latest, nginx in front; every file it mounts exists; the
// nodes' config passes `pollcast check-config` and points at the redis service; the nginx config
// it mounts passes `nginx -t` (on a copy whose upstream servers name 127.0.0.1, since nginx
// resolves them when it loads its config and the service names exist only inside compose) and
// round-robins over exactly the node services; and the README's "Running several nodes"
// snippets are the ones these files hold.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const c = require('./lib');
const { h } = c;
const { assert, log, BIN, SRC } = h;

// Host side of a "host:container[:mode]" volume, and its container side.
function volume(v) {
  if (typeof v === 'object') return { host: v.source, target: v.target, ro: !!v.read_only };
  const [host, target, mode] = v.split(':');
  return { host, target, ro: mode === 'ro' };
}

h.run('ops.compose', async (t) => {
  const file = path.join(SRC, 'compose.yaml');
  const dir = h.tmpDir();

  const cfg = await t.step('docker-compose config parses compose.yaml', async () => {
    const r = await c.exec(['docker-compose', '--project-directory', SRC, '-f', file, 'config']);
    assert.equal(r.code, 0, `docker-compose config: ${r.stderr}`);
    const j = await c.exec(['python3', '-c',
      'import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))'],
    { input: r.stdout });
    assert.equal(j.code, 0, j.stderr);
    return JSON.parse(j.stdout.toString('utf8'));
  });

  const services = cfg.services;
  const nodes = Object.keys(services).filter((s) => /^node-\d+$/.test(s)).sort();

  await t.step('redis, three pollcast nodes from the Dockerfile, nginx', async () => {
    log(`services: ${Object.keys(services).sort().join(', ')}`);
    assert.deepEqual(Object.keys(services).sort(), ['nginx', 'node-1', 'node-2', 'node-3',
      'redis']);
    assert.match(services.redis.image, /(^|\/)redis:7/);
    const rc = services.redis.command.join(' ');
    assert.match(rc, /--save\s+--appendonly no|--save '' --appendonly no/, `redis: ${rc}`);
    const dockerfile = fs.readFileSync(path.join(SRC, 'Dockerfile'), 'utf8');
    const ids = new Set();
    for (const n of nodes) {
      const s = services[n];
      assert.equal(s.image, 'pollcast:latest', `${n}: image`);
      assert.equal(path.resolve(s.build.context), path.resolve(SRC), `${n}: build context`);
      const df = path.join(s.build.context, s.build.dockerfile || 'Dockerfile');
      assert.ok(fs.existsSync(df), `${n}: ${df}`);
      const vols = (s.volumes || []).map(volume);
      const ini = vols.find((v) => v.target === '/etc/pollcast/pollcast.ini');
      assert.ok(ini && ini.ro, `${n}: a read-only config at /etc/pollcast/pollcast.ini`);
      assert.ok(dockerfile.includes('/etc/pollcast/pollcast.ini'), 'the path the image reads');
      assert.ok(fs.existsSync(ini.host), `${n}: mounted file ${ini.host}`);
      assert.ok(Object.keys(s.depends_on || {}).includes('redis') ||
        (Array.isArray(s.depends_on) && s.depends_on.includes('redis')), `${n}: after redis`);
      ids.add(s.environment.POLLCAST_CLUSTER_NODE_ID);
    }
    assert.equal(nodes.length, 3);
    assert.equal(ids.size, 3, 'three distinct node ids');
    assert.match(services.nginx.image, /(^|\/)nginx:/);
    const conf = (services.nginx.volumes || []).map(volume)
      .find((v) => v.target === '/etc/nginx/nginx.conf');
    assert.ok(conf && fs.existsSync(conf.host), 'nginx mounts an existing nginx.conf');
  });

  const iniPath = volume(services['node-1'].volumes[0]).host;
  await t.step('the nodes\' config passes check-config and names the redis service', async () => {
    for (const n of nodes) {
      const r = await h.runPollcast(['check-config', iniPath],
        { env: { POLLCAST_CLUSTER_NODE_ID: services[n].environment.POLLCAST_CLUSTER_NODE_ID } });
      assert.equal(r.code, 0, `check-config ${iniPath} (${n}): ${r.stdout}${r.stderr}`);
    }
    const ini = fs.readFileSync(iniPath, 'utf8');
    const m = /^redis\s*=\s*redis:\/\/([^:/]+):(\d+)/m.exec(ini);
    assert.ok(m, 'a [cluster] redis URL');
    assert.ok(services[m[1]], `the redis URL names the service ${m[1]}`);
    assert.ok(/^\[cluster\]$/m.test(ini), '[cluster] section');
  });

  const nginxConf = (services.nginx.volumes || []).map(volume)
    .find((v) => v.target === '/etc/nginx/nginx.conf').host;
  await t.step('nginx -t accepts the mounted nginx.conf; it round-robins the nodes', async () => {
    const text = fs.readFileSync(nginxConf, 'utf8');
    const up = /upstream\s+(\w+)\s*\{([^}]*)\}/.exec(text);
    assert.ok(up, 'an upstream block');
    const servers = [...up[2].matchAll(/^\s*server\s+([\w.-]+):(\d+)\s*;/gm)]
      .map((x) => [x[1], x[2]]);
    assert.deepEqual(servers.map((s) => s[0]).sort(), nodes, 'the upstream block lists the nodes');
    const port = /POLLCAST_SERVER_LISTEN=[\d.]+:(\d+)/.exec(
      fs.readFileSync(path.join(SRC, 'Dockerfile'), 'utf8'))[1];
    for (const [, p] of servers) assert.equal(p, port, 'the port the image listens on');
    assert.ok(!/\b(ip_hash|hash|least_conn|random)\b/.test(up[2]), 'round-robin');
    assert.match(text, new RegExp(`proxy_pass http://${up[1]};`));
    for (const d of ['proxy_buffering off;', 'proxy_http_version 1.1;',
      'proxy_set_header Connection "";']) assert.ok(text.includes(d), d);
    const published = services.nginx.ports.map((p) => (typeof p === 'object' ? p.target :
      String(p).split(':').pop()));
    assert.ok(published.map(String).includes(/listen\s+(\d+)/.exec(text)[1]),
      'nginx listens on the port compose publishes');
    // nginx resolves upstream servers when it loads the config, and the compose service names
    // resolve only inside compose: test a copy whose upstream servers name 127.0.0.1 instead
    // (the block itself was checked above), with a prefix for nginx's own files. (A mount
    // namespace with its own /etc/hosts does not work in a chroot, where / is no mount point.)
    const copy = path.join(dir, 'nginx.conf');
    fs.writeFileSync(copy, text.replace(up[0], up[0].replace(
      /^(\s*server\s+)[\w.-]+(:\d+\s*;)/gm, '$1127.0.0.1$2')));
    const prefix = fs.mkdtempSync(path.join(dir, 'nginx-'));
    const r = await c.exec(['nginx', '-t', '-p', prefix, '-c', copy]);
    log(`nginx -t: ${r.stderr.trim()}`);
    assert.equal(r.code, 0, `nginx -t -c ${copy} (of ${nginxConf}): ${r.stderr}`);
    assert.match(r.stderr, /test is successful/);
  });

  await t.step('the README shows these files', async () => {
    const readme = fs.readFileSync(path.join(SRC, 'README.md'), 'utf8');
    const sec = /^## Running several nodes\n([\s\S]*?)(?=^## )/m.exec(readme);
    assert.ok(sec, 'README.md has a "Running several nodes" section');
    const blocks = [...sec[1].matchAll(/<!-- test: ([\w-]+) -->\n```(\w*)\n([\s\S]*?)\n```/g)]
      .map((m) => ({ kind: m[1], lang: m[2], body: m[3] }));
    const norm = (s) => s.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    const confLines = new Set(norm(fs.readFileSync(nginxConf, 'utf8')));
    const ngx = blocks.filter((b) => b.lang === 'nginx');
    assert.ok(ngx.length >= 1, 'an nginx block in the section');
    for (const b of ngx) {
      for (const l of norm(b.body)) {
        if (/^server\s/.test(l) && /upstream/.test(b.body)) continue; // addresses are examples
        assert.ok(confLines.has(l), `README nginx line not in ${nginxConf}: ${l}`);
      }
    }
    assert.ok(blocks.some((b) => /podman-compose up|docker compose up/.test(b.body)),
      'the section says how to start compose.yaml');
    const ini = blocks.filter((b) => b.lang === 'ini');
    assert.ok(ini.some((b) => /^\[cluster\]/m.test(b.body)), 'a [cluster] example');
  });
}, { timeoutMs: 60000 });

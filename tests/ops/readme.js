// Every example of README.md, run: each fenced block must be preceded by a
// "<!-- test: KIND -->" line naming how this test exercises it (a block without one fails the
// test). Shell examples run against a real pollcast (the built-in demo on a free port:
// localhost:8080 is rewritten to it), the browser snippet runs in node with the eventsource
// package, INI snippets pass check-config, the nginx snippet runs in a real nginx in front of
// pollcast, the metrics list must equal the families /metrics serves, the log lines must have
// the fields real lines have, and the config reference between its markers must equal
// `pollcast check-config --print-reference`. Docker cannot run here: its block is checked
// against the Dockerfile and the environment variable it shows is tried on the binary.
'use strict';

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const vm = require('node:vm');
const { spawn } = require('node:child_process');
const { createRequire } = require('node:module');
const { h, metrics, waitLog } = require('./util.js');
const { assert, T, log, BIN, SRC } = h;

const README = fs.readFileSync(path.join(SRC, 'README.md'), 'utf8');
const KINDS = ['commands', 'sh-demo', 'sse-output', 'js-browser', 'ini', 'sh-config',
  'metrics-list', 'log-lines', 'sh-reload', 'docker', 'nginx', 'sh-engine', 'ini-push',
  'sh-push', 'ini-upstream', 'sh-upstream'];

function blocks() {
  const lines = README.split('\n');
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^```(\w*)$/.exec(lines[i]);
    if (!m) continue;
    const tag = /^<!-- test: ([\w-]+) -->$/.exec(lines[i - 1] || '');
    assert.ok(tag, `README.md:${i + 1}: a fenced block without a "<!-- test: KIND -->" line`);
    assert.ok(KINDS.includes(tag[1]), `README.md:${i}: unknown test kind ${tag[1]}`);
    let j = i + 1;
    while (j < lines.length && lines[j] !== '```') j++;
    assert.ok(j < lines.length, `README.md:${i + 1}: unterminated block`);
    out.push({ kind: tag[1], lang: m[1], line: i + 1, body: lines.slice(i + 1, j) });
    i = j;
  }
  return out;
}

// Runs argv (no shell) with a time limit; resolves {code, stdout, stderr, timedOut}.
function exec(argv, { cwd, ms = T(15000), env = {} } = {}) {
  return new Promise((resolve) => {
    const child = h.track(spawn(argv[0], argv.slice(1), { cwd, env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
    }, ms);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

h.run('ops.readme', async (t) => {
  const all = await t.step('every fenced block names its test', async () => {
    const b = blocks();
    log(`${b.length} blocks: ${b.map((x) => x.kind).join(', ')}`);
    assert.ok(b.length >= 12);
    return b;
  });
  const of = (kind) => all.filter((b) => b.kind === kind);
  const dir = h.tmpDir();

  await t.step('the config reference is the generated one', async () => {
    const r = await exec([BIN, 'check-config', '--print-reference']);
    assert.equal(r.code, 0);
    const m = /<!-- BEGIN config-reference -->\n([\s\S]*?)<!-- END config-reference -->/
      .exec(README);
    assert.ok(m, 'config reference markers');
    assert.equal(m[1], r.stdout.endsWith('\n') ? r.stdout : `${r.stdout}\n`,
      'README.md config reference differs from `pollcast check-config --print-reference`: ' +
      'paste its output between the markers');
  });

  await t.step('the two commands name what exists', async () => {
    const [b] = of('commands');
    assert.equal(b.body.length, 2);
    // The first command installs only what building needs; .ci/run installs the test toolchain.
    assert.match(b.body[0], /^bash scripts\/install-deps\.sh --build && /);
    assert.equal(b.body[1], 'bash .ci/run');
    assert.match(fs.readFileSync(path.join(SRC, '.ci', 'run'), 'utf8'),
      /^bash scripts\/install-deps\.sh \|\| exit 1$/m);
    for (const f of ['scripts/install-deps.sh', '.ci/run']) {
      fs.accessSync(path.join(SRC, f), fs.constants.R_OK);
    }
    assert.match(b.body[0], /&& cmake --install build && pollcast$/,
      'installs pollcast, then starts the demo from the PATH without a config');
  });

  await t.step('cmake --install puts pollcast and the example config in place', async () => {
    // The build tree of the binary under test; a scratch prefix instead of /usr/local.
    const prefix = path.join(dir, 'prefix');
    const r = await exec(['cmake', '--install', path.dirname(BIN), '--prefix', prefix],
      { ms: T(60000) });
    assert.equal(r.code, 0, `cmake --install: ${r.stdout}${r.stderr}`);
    const v = await exec([path.join(prefix, 'bin', 'pollcast'), '--version']);
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /^pollcast \d+\.\d+\.\d+/);
    for (const f of ['config.example.ini', 'README.md']) {
      assert.equal(fs.readFileSync(path.join(prefix, 'share', 'doc', 'pollcast', f), 'utf8'),
        fs.readFileSync(path.join(SRC, f), 'utf8'), f);
    }
    const c = await exec([path.join(prefix, 'bin', 'pollcast'), 'check-config',
      path.join(prefix, 'share', 'doc', 'pollcast', 'config.example.ini')]);
    assert.equal(c.code, 0, `${c.stdout}${c.stderr}`);
  });

  await t.step('at a terminal, pollcast says once where it listens', async () => {
    // The first command's last step, in a pseudo-terminal (script(1)); stopped after a while.
    const r = await exec(['script', '-qfec', BIN, '/dev/null'],
      { ms: T(2500), env: { POLLCAST_SERVER_LISTEN: '127.0.0.1:0' } });
    const said = r.stdout.split(/\r?\n/).filter((l) => /listening/.test(l));
    log(said.join('\n'));
    assert.equal(said.length, 1, `one start-up line, not:\n${r.stdout}`);
    assert.match(said[0], /info pollcast \d+\.\d+\.\d+ listening on 127\.0\.0\.1 port \d+ \(1 upstream; [^)]+\)/);
  });

  // The default run: no config file, the demo upstream, on a free port.
  const demo = await h.startPollcast('', { name: 'demo', args: [],
    env: { POLLCAST_SERVER_LISTEN: '127.0.0.1:0' } });
  const sub = (cmd) => cmd.replace(/(localhost|127\.0\.0\.1):8080/g, `127.0.0.1:${demo.port}`)
    .replace(/^\.\/build\/pollcast\b/, BIN).replace(/^pollcast\b/, BIN);

  await t.step('shell examples against the demo: curl and pollcast watch', async () => {
    for (const b of of('sh-demo')) {
      for (const line of b.body) {
        const cmd = sub(line.replace(/\s+#.*$/, ''));
        const once = /--count\b/.test(cmd);
        const argv = cmd.split(/\s+/);
        const r = await exec(argv, { ms: once ? T(15000) : T(3500) });
        log(`$ ${line}\n${r.stdout.slice(0, 300)}`);
        if (once) assert.equal(r.code, 0, `${line}: ${r.stderr}`);
        else assert.ok(r.timedOut, `${line} should run until stopped (exit ${r.code}: ${r.stderr})`);
        assert.ok(r.stdout.length > 0, `${line}: no output`);
        if (/^curl/.test(line)) {
          assert.match(r.stdout, /^retry: \d+\n\nid: [0-9a-z]+\.[0-9a-z]+\nevent: data\ndata: \{/);
          assert.match(r.stdout, /\nevent: patch\ndata: \[/);
        } else if (/--changes/.test(line)) {
          assert.match(r.stdout, /^\d\d:\d\d:\d\d (add|remove|replace|move|copy) \//m);
        } else if (/--jq \.prices\.ACME/.test(line)) {
          assert.match(r.stdout.trim().split('\n')[0], /^\d+(\.\d+)?$/);
        } else if (/-p \/prices/.test(line)) {
          assert.ok(JSON.parse(r.stdout).ACME > 0);
        } else {
          assert.match(r.stdout, /"prices"/);
        }
      }
    }
  });

  await t.step('the example output is a stream of the demo, consistent in itself', async () => {
    const [b] = of('sse-output');
    const text = b.body.join('\n');
    assert.match(text, /^retry: \d+\n\nid: [0-9a-z]+\.1\nevent: data\ndata: \{/);
    const events = text.split('\n\n').slice(1).map((e) => {
      const m = /^id: ([0-9a-z]+)\.([0-9a-z]+)\nevent: (data|patch)\ndata: (.*)$/.exec(e);
      assert.ok(m, `not an event: ${e}`);
      return { epoch: m[1], version: parseInt(m[2], 36), name: m[3], json: JSON.parse(m[4]) };
    });
    assert.ok(events.length >= 4, 'a data event and some patches');
    // The document has the shape of the demo's: the same members, symbols and order fields.
    const real = (await h.requestJson('GET', `${demo.base}/_demo/upstream.json`)).json;
    let doc = events[0].json;
    const keys = (o) => Object.keys(o).sort().join(',');
    assert.equal(keys(doc), keys(real), 'members of the document');
    assert.equal(keys(doc.prices), keys(real.prices), 'the symbols');
    for (const o of doc.orders) assert.equal(keys(o), keys(real.orders[0]), 'fields of an order');
    // Each patch applies to the document before it, one version and one second later; between
    // them they show every kind of operation the demo is there to show.
    const jsonpatch = createRequire(path.join(SRC, 'tests', 'oracle', 'package.json'))(
      'fast-json-patch');
    const kinds = new Set();
    events.slice(1).forEach((e, i) => {
      assert.equal(e.name, 'patch');
      assert.equal(e.epoch, events[0].epoch);
      assert.equal(e.version, events[0].version + i + 1);
      assert.ok(e.json.length <= 5, 'a few operations');
      e.json.forEach((o) => kinds.add(o.op));
      doc = jsonpatch.applyPatch(doc, e.json, true, false).newDocument;
      assert.equal(doc.tick, events[0].json.tick + i + 1);
    });
    assert.deepEqual([...kinds].sort(), ['add', 'move', 'remove', 'replace']);
  });

  await t.step('the browser snippet, in node with eventsource and fast-json-patch', async () => {
    const [b] = of('js-browser');
    const oracle = createRequire(path.join(SRC, 'tests', 'oracle', 'package.json'));
    const rendered = [];
    const ctx = vm.createContext({
      EventSource: oracle('eventsource').EventSource,
      jsonpatch: oracle('fast-json-patch'),
      render: (d) => rendered.push(JSON.parse(JSON.stringify(d))),
      console,
    });
    vm.runInContext(`${sub(b.body.join('\n'))}\nglobalThis.__es = es;`, ctx);
    const end = Date.now() + T(6000);
    while (rendered.length < 3 && Date.now() < end) await h.sleep(50);
    ctx.__es.close();
    assert.ok(rendered.length >= 3, `${rendered.length} renders`);
    const last = rendered[rendered.length - 1];
    assert.ok(last.prices && last.orders, 'a demo document');
    const direct = await h.requestJson('GET', `${demo.base}/_demo/upstream.json`);
    assert.deepEqual(Object.keys(last), Object.keys(direct.json));
  });

  await t.step('config snippets pass check-config; the check-config example runs', async () => {
    for (const b of of('ini')) {
      const file = path.join(dir, 'pollcast.ini');
      fs.writeFileSync(file, `${b.body.join('\n')}\n`);
      const r = await exec([BIN, 'check-config', file]);
      assert.equal(r.code, 0, `README.md:${b.line}: ${r.stdout}${r.stderr}`);
    }
    for (const b of of('sh-config')) {
      for (const line of b.body) {
        const r = await exec(sub(line).split(/\s+/), { cwd: dir });
        assert.equal(r.code, 0, `${line}: ${r.stderr}`);
      }
    }
  });

  await t.step('the push examples: a pollcast with their config, then each curl line', async () => {
    // The ini-push blocks are one config, run from a directory that holds the token file they
    // name; sh-push lines run in order, in bash, against it.
    const pdir = path.join(dir, 'push');
    fs.mkdirSync(pdir, { recursive: true });
    fs.writeFileSync(path.join(pdir, 'publisher.token'), 'readme-publisher-secret\n');
    const text = `${of('ini-push').map((b) => b.body.join('\n')).join('\n\n')}\n`;
    const pc = await h.startPollcast(text, { name: 'push', cwd: pdir,
      env: { POLLCAST_SERVER_LISTEN: '127.0.0.1:0' } });
    const subPush = (cmd) => cmd.replace(/(localhost|127\.0\.0\.1):8080/g, `127.0.0.1:${pc.port}`);
    assert.ok(of('sh-push').length > 0);
    for (const b of of('sh-push')) {
      for (const line of b.body) {
        const streaming = /curl -N\b/.test(line);
        const r = await exec(['bash', '-c', subPush(line)], { cwd: pdir,
          ms: streaming ? T(2000) : T(15000) });
        log(`$ ${line}\n${r.stdout.slice(0, 300)}`);
        if (streaming) {
          assert.ok(r.timedOut, `${line} should run until stopped (exit ${r.code}: ${r.stderr})`);
          assert.match(r.stdout, /event: data\ndata: \{"orders":\[\{"id":1,"qty":3\}\]\}/);
        } else {
          assert.equal(r.code, 0, `${line}: ${r.stdout}${r.stderr}`);
          if (/-X (PUT|PATCH)/.test(line)) assert.match(r.stdout, /^\{"id":"[0-9a-z]+\.[0-9a-z]+"\}$/);
          if (/\/refresh\b/.test(line)) assert.match(r.stdout, /^\{"refreshed":\d+\}$/);
          if (/Accept: application\/json/.test(line)) {
            assert.equal(r.stdout, '{"orders":[{"id":1,"qty":3}]}', 'the plain read');
          }
        }
      }
    }
    assert.equal(fs.readFileSync(path.join(pdir, 'orders.json'), 'utf8'),
      '{"orders":[{"id":1,"qty":3}]}', 'the state file holds the last document');
  });

  await t.step('the upstream-request example: POST body, query and OAuth2 reach the API',
    async () => {
      // The ini-upstream block runs with its API and token endpoint played by the scripted
      // upstream (https://api.example.com and https://auth.example.com point to it), which
      // answers only with a token it issued to the block's client; sh-upstream subscribes.
      const up = await h.startUpstream();
      const doc = { data: { orders: [{ id: 7, total: 12.5 }] } };
      await up.put('/graphql', doc);
      await up.mode('/graphql', 'normal', { require_token: true });
      await up.mode('/oauth/token', 'token', { client_id: 'pollcast', client_secret: 'replace-me',
        expires_in: 300 });
      const [ini] = of('ini-upstream');
      const text = ini.body.join('\n').replace(/https:\/\/(api|auth)\.example\.com/g,
        up.url('').replace(/\/$/, ''));
      const pc = await h.startPollcast(`${text}\n`, { name: 'upstream-requests',
        env: { POLLCAST_SERVER_LISTEN: '127.0.0.1:0' } });
      const subUp = (cmd) => cmd.replace(/(localhost|127\.0\.0\.1):8080/g, `127.0.0.1:${pc.port}`);
      assert.ok(of('sh-upstream').length > 0);
      for (const b of of('sh-upstream')) {
        for (const line of b.body) {
          const r = await exec(['bash', '-c', subUp(line)], { cwd: dir, ms: T(2000) });
          log(`$ ${line}\n${r.stdout.slice(0, 300)}`);
          assert.ok(r.timedOut, `${line} should run until stopped (exit ${r.code}: ${r.stderr})`);
          assert.ok(r.stdout.includes(`event: data\ndata: ${JSON.stringify(doc)}\n`),
            'the document as a data event');
        }
      }
      const api = await up.stats('/graphql');
      const last = api.requests[api.requests.length - 1];
      assert.equal(last.method, 'POST');
      assert.equal(last.body, '{"query":"{ orders(status: OPEN) { id total } }"}');
      assert.equal(last.content_type, 'application/json');
      assert.deepEqual(last.query, { tenant: ['acme'] });
      assert.match(last.authorization, /^Bearer \S+$/);
      assert.equal((await up.stats('/oauth/token')).count, 1, 'one token for the stream');
    });

  await t.step('the metrics list is what /metrics serves', async () => {
    const [b] = of('metrics-list');
    const listed = {};
    for (const line of b.body) {
      const m = /^(\w+)(?:\{(\w+)\})?\s+(counter|gauge|histogram)/.exec(line);
      assert.ok(m, `bad metrics line: ${line}`);
      listed[m[1]] = { label: m[2] || null, type: m[3] };
    }
    const real = await metrics(demo);
    assert.deepEqual(Object.keys(listed).sort(), real.order.slice().sort(),
      'README metrics list vs /metrics families');
    for (const [name, { label, type }] of Object.entries(listed)) {
      const f = real.families[name];
      assert.equal(f.type, type, name);
      if (type !== 'histogram') {
        const labels = new Set(f.samples.flatMap((s) => Object.keys(s.labels)));
        assert.deepEqual([...labels], label ? [label] : [], `labels of ${name}`);
      }
    }
  });

  await t.step('the log lines have the fields real lines have', async () => {
    const up = await h.startUpstream();
    await up.put('/prices', { p: 1 });
    const collect = async (fmt) => {
      const pc = await h.startPollcast({ server: { access_log: true, log_format: fmt },
        upstreams: { prices: { url: up.url('/prices'), interval: '100ms' } } },
      { name: `log-${fmt}` });
      const s = await h.openRaw(pc.base, '/streams/prices');
      await s.waitDoc({ p: 1 });
      await up.mode('/prices', 'status', { status: 503 });
      await waitLog(pc, /upstream failing/);
      await up.mode('/prices', 'normal');
      await waitLog(pc, /upstream recovered/, T(8000));
      s.close();
      await h.request('GET', `${pc.base}/streams/missing`);
      await waitLog(pc, /stream closed.*missing/);
      await pc.stop();
      return pc.stderrLines;
    };
    const keysOf = (line) => {
      if (line.startsWith('{')) {
        const o = JSON.parse(line);
        return { msg: o.msg, keys: Object.keys(o).sort().join(',') };
      }
      const m = /^\S+ \w+ (.*?)((?: [a-z_]+=\S+)*)$/.exec(line);
      return { msg: m[1], keys: ['level', 'msg', 'ts', ...(m[2].match(/[a-z_]+(?==)/g) || [])]
        .sort().join(',') };
    };
    const real = [...await collect('text'), ...await collect('json')].map(keysOf);
    const [b] = of('log-lines');
    for (const line of b.body) {
      const want = keysOf(line);
      assert.ok(real.some((r) => r.msg === want.msg && r.keys === want.keys),
        `no real line like: ${line} (${want.msg}: ${want.keys})`);
    }
  });

  await t.step('the reload example reloads', async () => {
    const [b] = of('sh-reload');
    const pc = await h.startPollcast({ upstreams: { demo: { url: 'builtin:demo' } } },
      { name: 'reload' });
    for (const line of b.body) {
      // pidof would also find other pollcast processes of a parallel test run.
      const cmd = line.replace('$(pidof pollcast)', String(pc.pid)).split(/\s+/);
      const r = await exec(cmd);
      assert.equal(r.code, 0, r.stderr);
    }
    await waitLog(pc, /config reloaded/);
  });

  await t.step('docker: the Dockerfile matches, the environment variable works', async () => {
    const [b] = of('docker');
    const dockerfile = fs.readFileSync(path.join(SRC, 'Dockerfile'), 'utf8');
    assert.match(dockerfile, /^EXPOSE 8080$/m);
    assert.match(dockerfile, /^HEALTHCHECK /m);
    assert.match(dockerfile, /\/etc\/pollcast\/pollcast\.ini/);
    fs.accessSync(path.join(SRC, 'scripts', 'docker-verify.sh'), fs.constants.X_OK);
    for (const line of b.body) assert.match(line, /^(docker (build|run) |sudo scripts\/docker-verify\.sh)/);
    const env = /-e (\w+)=(\S+)/.exec(b.body.join('\n'));
    const pc = await h.startPollcast('', { name: 'docker-env', args: [],
      env: { POLLCAST_SERVER_LISTEN: '127.0.0.1:0', [env[1]]: env[2] } });
    const r = await h.requestJson('GET', `${pc.base}/streams`);
    assert.ok(r.json.streams.some((s) => s.name === 'prices'), r.body);
  });

  await t.step('nginx: a real nginx with the snippet streams without buffering', async () => {
    const [b] = of('nginx');
    const text = b.body.join('\n');
    const rt = /proxy_read_timeout (\d+)(s|m|h)?;/.exec(text);
    const secs = Number(rt[1]) * ({ s: 1, m: 60, h: 3600 }[rt[2] || 's']);
    assert.ok(secs >= 30, 'proxy_read_timeout covers two keepalives (15 s)');
    for (const d of ['proxy_buffering off;', 'proxy_http_version 1.1;',
      'proxy_set_header Connection "";']) assert.ok(text.includes(d), d);
    const port = await freePort();
    const ndir = fs.mkdtempSync(path.join(dir, 'nginx-'));
    const conf = path.join(ndir, 'nginx.conf');
    fs.writeFileSync(conf, `master_process off;\npid ${ndir}/nginx.pid;\n` +
      `error_log ${ndir}/error.log;\nevents {}\nhttp {\n  access_log off;\n` +
      `  client_body_temp_path ${ndir}/b; proxy_temp_path ${ndir}/p;\n` +
      `  fastcgi_temp_path ${ndir}/f; uwsgi_temp_path ${ndir}/u; scgi_temp_path ${ndir}/s;\n` +
      `  server {\n    listen 127.0.0.1:${port};\n${sub(text)}\n  }\n}\n`);
    const nginx = h.track(spawn('nginx', ['-p', ndir, '-c', conf, '-g', 'daemon off;'],
      { stdio: ['ignore', 'pipe', 'pipe'] }));
    h.defer(() => {
      try {
        process.kill(nginx.pid, 'SIGTERM');
      } catch {
        // gone
      }
    });
    let up = false;
    for (let i = 0; i < 100 && !up; i++) {
      up = await h.request('GET', `http://127.0.0.1:${port}/healthz`).then((r) => r.status === 200,
        () => false);
      if (!up) await h.sleep(50);
    }
    assert.ok(up, `nginx did not come up: ${fs.readFileSync(`${ndir}/error.log`, 'utf8')}`);
    const s = await h.openRaw(`http://127.0.0.1:${port}`, '/streams/demo');
    assert.equal(s.status, 200);
    await s.waitEvent('data', T(3000));
    const t0 = Date.now();
    await s.waitEvent('patch', T(3000));
    log(`first patch through nginx after ${Date.now() - t0} ms`);
    s.close();
  });

  await t.step('the JSON Patch engine examples', async () => {
    fs.writeFileSync(path.join(dir, 'OLD.json'), '{"a":1,"list":[1,2,3]}');
    fs.writeFileSync(path.join(dir, 'NEW.json'), '{"a":2,"list":[1,3],"b":true}');
    fs.writeFileSync(path.join(dir, 'DOC.json'), '{"a":1}');
    fs.writeFileSync(path.join(dir, 'PATCH.json'), '[{"op":"add","path":"/b","value":[1]}]');
    for (const b of of('sh-engine')) {
      for (const line of b.body) {
        const r = await exec(sub(line.replace(/\s+#.*$/, '')).split(/\s+/), { cwd: dir });
        assert.equal(r.code, 0, `${line}: ${r.stderr}`);
        if (/ apply /.test(line)) assert.deepEqual(JSON.parse(r.stdout), { a: 1, b: [1] });
        else assert.ok(Array.isArray(JSON.parse(r.stdout)), line);
        if (/--repeat/.test(line)) assert.match(r.stderr, /^diff: median [\d.]+ ms; parse\+diff\+serialize: median [\d.]+ ms/m);
      }
    }
  });
}, { timeoutMs: 120000 });

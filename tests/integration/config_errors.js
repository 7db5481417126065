// Config errors: each kind is reported as `FILE:LINE: message` (one line on stderr) with exit
// status 2, both by `pollcast check-config FILE` and by `pollcast -c FILE` (which must not start
// listening). Environment overrides name their variable instead of a file and line; a missing
// file says so. A valid file passes check-config with its summary.
'use strict';

const path = require('node:path');
const h = require('./harness');
const { assert, log } = h;

// [name, file text, line of the error, message pattern]
const CASES = [
  ['unknown key', '[server]\nlisten = 127.0.0.1:0\nbogus = 1\n', 3,
    /^unknown key "bogus" in \[server\]$/],
  ['unknown key with a hint', '[upstream a]\nurl = http://x/\nintervall = 5s\n', 3,
    /^unknown key "intervall" in \[upstream a\] \(did you mean "interval"\?\)$/],
  ['bad duration', '[upstream a]\nurl = http://x/\ninterval = 5 parsecs\n', 3,
    /^interval: "5 parsecs" is not a duration/],
  ['duration out of range', '[upstream a]\nurl = http://x/\ninterval = 10ms\n', 3,
    /^interval: "10ms" is out of range \(100ms to 1d\)$/],
  ['missing url', '[server]\n\n[upstream a]\ninterval = 5s\n', 3,
    /^\[upstream a\]: missing required key "url"$/],
  ['bad listen', '[server]\nlisten = nowhere\n', 2, /^listen: "nowhere" is not a listen address/],
  ['listen port out of range', '[server]\nlisten = 127.0.0.1:99999\n', 2,
    /^listen: "127.0.0.1:99999" is not a listen address/],
  ['url not http', '[upstream a]\nurl = ftp://x/\n', 2,
    /^url: "ftp:\/\/x\/" is not an http:\/\/ or https:\/\/ URL$/],
  ['bad size', '[upstream a]\nurl = http://x/\nmax_body = lots\n', 3,
    /^max_body: "lots" is not a size/],
  ['number out of range', '[server]\nmax_connections = 3\n', 2,
    /^max_connections: "3" is out of range \(16 to 1048576\)$/],
  ['bad boolean', '[server]\naccess_log = maybe\n', 2, /^access_log: "maybe" is not a boolean/],
  ['bad choice', '[upstream a]\nurl = http://x/\nmode = push\n', 3,
    /^mode: "push" is not one of patch, snapshot$/],
  ['key outside a section', 'listen = 1\n', 1, /^key "listen" is outside any section/],
  ['unknown section', '[serv]\n', 1, /^unknown section \[serv\]/],
  ['section without ]', '[server\n', 1, /^section header without "\]"$/],
  ['duplicate key', '[server]\nlisten = 127.0.0.1:0\nlisten = 127.0.0.1:1\n', 3,
    /^duplicate key "listen" in \[server\] \(first set at line 2\)$/],
  ['duplicate upstream', '[upstream a]\nurl = http://x/\n[upstream a]\nurl = http://y/\n', 3,
    /^duplicate upstream "a" \(first at line 1\)$/],
  ['bad header line', '[upstream a]\nurl = http://x/\nheader = NoColon\n', 3,
    /^header: expected "Name: value"/],
  ['not a key = value line', '[server]\njunk line\n', 2,
    /^expected "key = value", a \[section\] or a comment$/],
  ['bad upstream name', '[upstream bad name!]\nurl = http://x/\n', 1,
    /^upstream name "bad name!" must be/],
  ['min above max', '[upstream a]\nurl = http://x/\nmin_interval = 5s\nmax_interval = 1s\n', 4,
    /^min_interval 5s is above max_interval 1s$/],
  ['line counting past comments and continuations',
    '# comment\n; another\n[server]\ncors_origin = https://a.example\n  https://b.example\n\n' +
    '[upstream a]\nurl = http://x/  ; trailing comment\nbackoff_max = forever\n', 9,
    /^backoff_max: "forever" is not a duration/],
  ['bad origin', '[server]\ncors_origin = app.example.com\n', 2,
    /^cors_origin: "app.example.com" is not an origin/],
  ['allow prefix without a path', '[allow]\nurl_prefix = https://api.example.com\n', 2,
    /^url_prefix: "https:\/\/api.example.com" needs a path/],
];

function escapeRe(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

h.run('config_errors', async (t) => {
  const dir = h.tmpDir();

  await t.step(`${CASES.length} kinds of error, by check-config and by -c`, async () => {
    await Promise.all(CASES.map(async ([name, text, line, re], i) => {
      const file = h.writeConfig(text, `case-${i}.ini`);
      for (const args of [['check-config', file], ['-c', file], ['serve', '-c', file]]) {
        const r = await h.runPollcast(args);
        const what = `${name} (pollcast ${args[0]})`;
        assert.equal(r.code, 2, `${what}: exit status; stderr: ${r.stderr}`);
        assert.equal(r.stdout, '', `${what}: nothing on stdout (not listening)`);
        const lines = r.stderr.split('\n').filter((l) => l !== '');
        assert.equal(lines.length, 1, `${what}: one line on stderr: ${r.stderr}`);
        const m = new RegExp(`^${escapeRe(file)}:(\\d+): (.*)$`).exec(lines[0]);
        assert.ok(m, `${what}: not "file:line: message": ${lines[0]}`);
        assert.equal(Number(m[1]), line, `${what}: line number in ${lines[0]}`);
        assert.match(m[2], re, `${what}: message`);
      }
    }));
  });

  const valid = h.writeConfig('[server]\nlisten = 127.0.0.1:0\n\n[upstream prices]\n' +
    'url = http://127.0.0.1:9/x\ninterval = 2s\n', 'valid.ini');

  await t.step('environment overrides name their variable', async () => {
    const cases = [
      [{ POLLCAST_SERVER_LISTEN: 'bad' }, /^POLLCAST_SERVER_LISTEN: listen: "bad" is not a listen address/],
      [{ POLLCAST_UPSTREAM_PRICES_INTERVAL: 'zz' }, /^POLLCAST_UPSTREAM_PRICES_INTERVAL: interval: "zz" is not a duration/],
      [{ POLLCAST_SERVER_NO_SUCH_KEY: '1' }, /^POLLCAST_SERVER_NO_SUCH_KEY: /],
    ];
    for (const [env, re] of cases) {
      for (const args of [['check-config', valid], ['-c', valid]]) {
        const r = await h.runPollcast(args, { env });
        assert.equal(r.code, 2, `${Object.keys(env)[0]} ${args[0]}: exit status: ${r.stderr}`);
        assert.equal(r.stdout, '');
        assert.match(r.stderr.trim(), re, `${args[0]} stderr`);
      }
    }
  });

  await t.step('a missing file: its name and the reason, exit 2', async () => {
    const missing = path.join(dir, 'missing.ini');
    for (const args of [['check-config', missing], ['-c', missing]]) {
      const r = await h.runPollcast(args);
      assert.equal(r.code, 2);
      assert.equal(r.stderr.trim(), `${missing}: cannot open: No such file or directory`);
    }
  });

  await t.step('a valid file passes check-config', async () => {
    const r = await h.runPollcast(['check-config', valid]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(),
      `${valid}: OK: 1 upstream, listening on 127.0.0.1:0, ad-hoc URLs off, auth off`);
    const ref = await h.runPollcast(['check-config', '--print-reference']);
    assert.equal(ref.code, 0);
    assert.match(ref.stdout, /max_body/);
    log('valid config accepted');
  });
}, { timeoutMs: 60000 });

#!/usr/bin/env node
// `pollcast watch` in a real terminal: tmux (on a private socket) runs it in a 100x30 pane; the
// test reads the screen with capture-pane. Checks the header (URL, state, last id), the indented
// document, the redraw in place after an upstream change with the changed line highlighted and
// the highlight gone later, clipping to a smaller window, the upstream-error state, and Ctrl-C
// ending it with status 0. tmux is required: without it the test fails.
// Usage: node tty_test.js POLLCAST_BINARY
'use strict';

const assert = require('assert');
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const h = require('./harness');

const bin = process.argv[2];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pollcast-tty-'));
const sock = path.join(dir, 'tmux.sock');

function tmux(...args) {
  return execFileSync('tmux', ['-S', sock, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function screen(escapes = false) {
  return tmux('capture-pane', '-p', ...(escapes ? ['-e'] : []), '-t', 'w');
}

async function waitScreen(pred, what, timeout = 5000) {
  let last = '';
  try {
    await h.until(() => pred((last = screen())), what, timeout);
  } catch (e) {
    h.fail(`${e.message}; the screen:\n${last}`);
  }
  return last;
}

h.main('tty_test', async () => {
  if (!bin) h.fail('usage: tty_test.js POLLCAST_BINARY');
  try {
    execFileSync('tmux', ['-V'], { stdio: 'ignore' });
  } catch (e) {
    h.fail('tmux is not installed: this test needs it (scripts/install-deps.sh installs tmux)');
  }
  const up = await h.startUpstream();
  await up.setDoc('/p', '{"prices":{"ACME":10.00,"GLOBX":20.50},"note":"hello"}');
  const pc = await h.startPollcast(bin, `[upstream p]
url = http://127.0.0.1:${up.port}/p
interval = 200ms
min_interval = 100ms
backoff_max = 1s
`);
  const url = `http://127.0.0.1:${pc.port}/streams/p`;
  const status = path.join(dir, 'status');
  const cmd = `'${bin}' watch '${url}'; echo "exit=$?" > '${status}'`;
  tmux('-f', '/dev/null', 'new-session', '-d', '-s', 'w', '-x', '100', '-y', '30', cmd);
  try {
    let s = await waitScreen((t) => t.includes('"ACME": 10.00'), 'the first document');
    const lines = s.split('\n');
    assert.match(lines[0], new RegExp(`^pollcast watch ${url.replace(/[.]/g, '\\.')} \\| live \\| id \\S+ \\| \\d\\d:\\d\\d:\\d\\d`));
    assert.deepStrictEqual(lines.slice(1, 8), ['{', '  "prices": {', '    "ACME": 10.00,', '    "GLOBX": 20.50', '  },', '  "note": "hello"', '}']);

    // A change: redrawn in place (the header is still the first line), the line highlighted.
    const t0 = Date.now();
    await up.setDoc('/p', '{"prices":{"ACME":10.25,"GLOBX":20.50},"note":"hello"}');
    s = await waitScreen((t) => t.includes('"ACME": 10.25'), 'the change', 3000);
    const shownMs = Date.now() - t0;
    assert.match(s.split('\n')[0], /^pollcast watch /);
    assert.ok(!s.includes('10.00'), 'the old version is gone:\n' + s);
    const esc = screen(true).split('\n');
    const acme = esc.find((l) => l.includes('"ACME": 10.25'));
    const globx = esc.find((l) => l.includes('"GLOBX"'));
    assert.match(acme, /\x1b\[[0-9;]*(1|33)m/, 'the changed line is highlighted: ' + JSON.stringify(acme));
    assert.doesNotMatch(globx, /\x1b\[[0-9;]*33m/, 'an unchanged line is not: ' + JSON.stringify(globx));
    // The highlight fades after two seconds.
    await h.until(() => !/\x1b\[[0-9;]*33m/.test(screen(true).split('\n').find((l) => l.includes('"ACME"')) || ''), 'the highlight to fade', 4000);

    // Upstream trouble shows in the header.
    await up.setMode({ path: '/p', mode: 'status', status: 502 });
    await waitScreen((t) => /\| upstream error: .*502/.test(t.split('\n')[0]), 'the upstream error state');
    assert.ok(screen().includes('"ACME": 10.25'), 'the last good document stays');
    await up.setMode({ path: '/p', mode: 'normal' });
    await waitScreen((t) => /\| live \(upstream recovered\) \|/.test(t.split('\n')[0]), 'recovery', 8000);

    // A window smaller than the document: clipped, with a count of the hidden lines.
    const many = {};
    for (let i = 0; i < 40; i++) many['k' + String(i).padStart(2, '0')] = i;
    await up.setDoc('/p', JSON.stringify(many));
    tmux('resize-window', '-t', 'w', '-x', '60', '-y', '12');
    s = await waitScreen((t) => t.includes('"k00": 0'), 'the long document');
    s = await waitScreen((t) => /^\.\.\. \d+ more lines$/m.test(t), 'the clipped view');
    assert.strictEqual(s.split('\n').filter((l) => l !== '').length, 11, s);
    assert.match(s, /^\.\.\. 33 more lines$/m);

    // Ctrl-C: exit status 0.
    tmux('send-keys', '-t', 'w', 'C-c');
    await h.until(() => fs.existsSync(status) && fs.readFileSync(status, 'utf8').trim() !== '', 'watch to exit', 3000);
    assert.strictEqual(fs.readFileSync(status, 'utf8').trim(), 'exit=0');
    console.log(`tty_test: change on screen in ${shownMs} ms`);
  } finally {
    try {
      tmux('kill-server');
    } catch (e) {
      /* the session ended with watch, and the server with it */
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// oracle.cli: the exit codes and messages of `pollcast diff` and `pollcast apply`, and the exact
// form of `diff --repeat N`'s timing line (the benchmark parses it).
//   diff, invalid JSON         exit 2, nothing on stdout, the file name and the byte offset
//                              where parsing stopped on stderr (0- or 1-based accepted)
//   diff, missing file, usage  exit 2, the file name on stderr
//   apply, unappliable patch   exit 1, nothing on stdout, the index of the failing op on stderr
//   apply, invalid JSON        exit 2, file name and offset on stderr
//   diff --repeat 3            exit 0, the patch on stdout, on stderr exactly
//                              "diff: median X ms; parse+diff+serialize: median Y ms"
//
// Usage: node tests/oracle/cli.js POLLCAST_BIN

import fs from 'node:fs';
import path from 'node:path';

import {
  Tally, clip, describeExit, makeTmpDir, parseArgs, pollcastBin, run,
} from './lib/harness.js';

const args = parseArgs();
const bin = pollcastBin(args);
const tally = new Tally('oracle.cli');
const tmp = makeTmpDir('cli');

function file(name, text) {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, text);
  return f;
}

// True when text holds n as a number of its own (not part of a longer number).
function hasNumber(text, n) {
  return new RegExp(`(^|[^0-9])${n}([^0-9]|$)`).test(text);
}

function show(r) {
  return `${describeExit(r)}, stdout ${clip(r.stdout, 100) || '(empty)'}, ` +
    `stderr ${clip(r.stderr, 200) || '(empty)'}`;
}

const good = file('good.json', '{"a":1,"list":[1,2]}');
const good2 = file('good2.json', '{"a":2,"list":[2,1]}');

// Invalid JSON: the text and the 0-based offset where a parser must stop.
const invalid = [
  ['double-comma.json', '{"a": 1,, "b": 2}', 8],
  ['truncated.json', '[1, 2', 5],
  ['trailing.json', '{"a":1} x', 8],
  ['empty.json', '', 0],
  ['bad-escape.json', '["ok", "\\q"]', 8],
  ['unclosed-string.json', '{"key": "value', 14],
];
for (const [name, text, offset] of invalid) {
  const f = file(name, text);
  for (const [which, argv] of [['OLD', ['diff', f, good]], ['NEW', ['diff', good, f]]]) {
    const r = await run(bin, argv);
    const m = /byte (\d+)/.exec(r.stderr);
    const ok = r.code === 2 && !r.timedOut && r.stdout === '' && r.stderr.includes(f) &&
      (hasNumber(r.stderr, offset) || hasNumber(r.stderr, offset + 1));
    tally.check(ok, `diff with invalid ${which} ${name} (${JSON.stringify(text)}): want exit 2, ` +
      `the file name and offset ${offset} on stderr${m ? ` (said byte ${m[1]})` : ''}; got ${show(r)}`);
  }
}

const missing = path.join(tmp, 'no-such-file.json');
for (const [what, argv] of [
  ['diff with missing OLD', ['diff', missing, good]],
  ['diff with missing NEW', ['diff', good, missing]],
  ['apply with missing DOC', ['apply', missing, file('p0.json', '[]')]],
  ['apply with missing PATCH', ['apply', good, missing]],
]) {
  const r = await run(bin, argv);
  const ok = r.code === 2 && !r.timedOut && r.stdout === '' && r.stderr.includes(missing);
  tally.check(ok, `${what}: want exit 2 and the file name on stderr; got ${show(r)}`);
}

for (const [what, argv] of [
  ['diff with one file', ['diff', good]],
  ['diff with three files', ['diff', good, good2, good]],
  ['diff --repeat 0', ['diff', good, good2, '--repeat', '0']],
  ['diff --repeat x', ['diff', good, good2, '--repeat', 'x']],
  ['apply with one file', ['apply', good]],
]) {
  const r = await run(bin, argv);
  const ok = r.code === 2 && !r.timedOut && r.stdout === '' && r.stderr.trim() !== '';
  tally.check(ok, `${what}: want exit 2 (usage) with a message; got ${show(r)}`);
}

// Unappliable patches: the failing op's index must be on stderr. Paths and values hold no
// digits, so that the index cannot be found by chance.
const unappliable = [
  ['remove of a missing member', [
    { op: 'add', path: '/b', value: true },
    { op: 'add', path: '/c', value: null },
    { op: 'remove', path: '/nope' }], 2],
  ['failed test', [
    { op: 'add', path: '/x', value: 'ten' },
    { op: 'add', path: '/y', value: 'twenty' },
    { op: 'replace', path: '/a', value: 'b' },
    { op: 'test', path: '/x', value: 'eleven' }], 3],
  ['move from a missing path', [
    { op: 'add', path: '/p', value: {} },
    { op: 'add', path: '/p/q', value: 'v' },
    { op: 'copy', from: '/p', path: '/r' },
    { op: 'remove', path: '/r/q' },
    { op: 'move', from: '/r/q', path: '/s' }], 4],
  ['add beyond the end of an array', [
    { op: 'add', path: '/b', value: true },
    { op: 'add', path: '/list/-', value: 'z' },
    { op: 'add', path: '/list/9', value: 'w' }], 2],
  ['unknown op', [{ op: 'frobnicate', path: '/a', value: 'v' }], 0],
  ['op without a path', [{ op: 'add', path: '/k', value: 'v' }, { op: 'add', value: 'v' }], 1],
];
for (const [what, patch, index] of unappliable) {
  const pf = file(`patch-${index}-${what.replace(/\W+/g, '-')}.json`, JSON.stringify(patch));
  const r = await run(bin, ['apply', good, pf]);
  const ok = r.code === 1 && !r.timedOut && r.stdout === '' && hasNumber(r.stderr, index);
  tally.check(ok, `apply, ${what}: want exit 1, nothing on stdout and op index ${index} on ` +
    `stderr; got ${show(r)}`);
}
{
  const bad = file('bad-patch.json', '[{"op":"add","path":"/z","value":1},]');
  const r = await run(bin, ['apply', good, bad]);
  const ok = r.code === 2 && !r.timedOut && r.stdout === '' && r.stderr.includes(bad) &&
    (hasNumber(r.stderr, 36) || hasNumber(r.stderr, 37));
  tally.check(ok, `apply with an invalid JSON patch: want exit 2, the file name and offset 36 ` +
    `on stderr; got ${show(r)}`);
}

// A successful diff and apply exit 0.
{
  const r = await run(bin, ['diff', good, good2]);
  tally.check(r.code === 0 && r.stdout.trim().startsWith('['),
    `diff of two valid files: want exit 0 and a patch; got ${show(r)}`);
  const pf = file('ok-patch.json', '[{"op":"replace","path":"/a","value":3}]');
  const a = await run(bin, ['apply', good, pf]);
  let out = null;
  try {
    out = JSON.parse(a.stdout);
  } catch {
    // Reported below.
  }
  tally.check(a.code === 0 && out !== null && out.a === 3 && out.list.length === 2,
    `apply of a valid patch: want exit 0 and {"a":3,"list":[1,2]}; got ${show(a)}`);
}

// The timing line of --repeat, which bench/ parses.
{
  const r = await run(bin, ['diff', good, good2, '--repeat', '3']);
  const re = /^diff: median \d+(\.\d+)? ms; parse\+diff\+serialize: median \d+(\.\d+)? ms\n$/;
  tally.check(r.code === 0 && re.test(r.stderr) && r.stdout.trim().startsWith('['),
    `diff --repeat 3: want exit 0, the patch on stdout and exactly one line "diff: median X ` +
    `ms; parse+diff+serialize: median Y ms" on stderr; got ${show(r)}`);
}

tally.finish();

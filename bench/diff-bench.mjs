// The diff benchmark: pollcast's diff against fast-json-patch `compare` and jsondiffpatch (with an
// objectHash and its RFC 6902 formatter), side by side in one run, on the same pairs:
//   - the reference pairs p1-p5 of shared/testdata/diff-pairs (with their ideal patch sizes);
//   - one seeded "next poll" of each corpus of shared/testdata/corpora (the mutator of the
//     property test, tests/oracle/lib/mutator.js);
//   - generated pathological pairs up to 8 MiB (reversed, shuffled, duplicate-heavy, deep,
//     wide, all-changed), for the worst case.
// Prints a table (see bench/README.md for the columns) and a summary against the targets of
// PRODUCT.md. A benchmark, not a test: it exits 0 whatever the numbers, 1 only when a tool
// could not run at all.
//
// Usage: node bench/diff-bench.mjs [POLLCAST_BIN] [--repeat=N] [--seed=S] [--only=REGEX]
//          [--no-pathological] [--timeout=SECONDS]
//   POLLCAST_BIN defaults to $POLLCAST_BIN; bench/diff.sh builds a Release binary and passes it.
//   --repeat: timed runs per measurement (default 15; fewer when one run is slow, see budget).
// The JavaScript tools run in child processes (one per pair and tool, with a time limit and a
// heap limit), so that one tool's garbage or blow-up does not slow or kill the others.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  TESTDATA, clip, describeExit, die, fastValidator, loadFastJsonPatch, loadOracle, makeTmpDir,
  parseArgs, run,
} from '../tests/oracle/lib/harness.js';
import * as L from '../tests/oracle/lib/ljson.js';
import { Mutator, makeRng, seedFrom } from '../tests/oracle/lib/mutator.js';

const SELF = fileURLToPath(import.meta.url);
const MIB = 1024 * 1024;

function median(v) {
  const s = [...v].sort((x, y) => x - y);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

// ---------------------------------------------------------------------------------------------
// Child mode: measure one JavaScript tool on one pair and print one JSON line.
//   node diff-bench.mjs --child=fjp|jdp OLD NEW --repeat=N --budget=MS
// diffMs: median of the diff step alone on already-parsed documents, producing the patch (for
// jsondiffpatch: diff + jsonpatch format). pollMs (fjp only): median of JSON.parse(NEW) +
// compare + JSON.stringify(patch), the per-poll analogue of pollcast's parse+diff+serialize.
// ok: the patch, applied by fast-json-patch to OLD, gives NEW (compared after JSON.parse).

async function child(args) {
  const [oldFile, newFile] = args.pos;
  const repeat = Number(args.opts.repeat || 15);
  const budget = Number(args.opts.budget || 5000);
  const oldText = fs.readFileSync(oldFile, 'utf8');
  const newText = fs.readFileSync(newFile, 'utf8');
  const a = JSON.parse(oldText);
  const b = JSON.parse(newText);
  const fjp = await loadFastJsonPatch();
  let diffOnce;
  if (args.opts.child === 'fjp') {
    diffOnce = () => fjp.compare(a, b);
  } else {
    const jdp = await loadOracle('jsondiffpatch');
    const fmt = await loadOracle('jsondiffpatch/formatters/jsonpatch');
    const differ = jdp.create({
      objectHash: (o) => (o && o.id !== undefined ? `id:${JSON.stringify(o.id)}` : JSON.stringify(o)),
      arrays: { detectMove: true, includeValueOnMove: false },
    });
    diffOnce = () => {
      const delta = differ.diff(a, b);
      return delta === undefined ? [] : fmt.format(delta);
    };
  }
  // Timed loop: at least one run (after one untimed warm-up run that also gives the patch),
  // then until `repeat` runs or the time budget is spent.
  const tStart = performance.now();
  const patch = diffOnce();
  const patchText = JSON.stringify(patch);
  const diffTimes = [];
  const deadline = tStart + budget;
  do {
    const t0 = performance.now();
    diffOnce();
    diffTimes.push(performance.now() - t0);
  } while (diffTimes.length < repeat && performance.now() < deadline);
  const pollTimes = [];
  if (args.opts.child === 'fjp') {
    const deadline2 = performance.now() + budget;
    do {
      const t0 = performance.now();
      const b2 = JSON.parse(newText);
      JSON.stringify(fjp.compare(a, b2));
      pollTimes.push(performance.now() - t0);
    } while (pollTimes.length < repeat && performance.now() < deadline2);
  }
  let ok = true;
  let why = '';
  try {
    const out = fjp.applyPatch(JSON.parse(oldText), JSON.parse(patchText), fastValidator(fjp))
      .newDocument;
    const d = L.firstDifference(out, b);
    if (d) {
      ok = false;
      why = `result differs at ${d}`;
    }
  } catch (e) {
    ok = false;
    why = `patch rejected: ${e.message.split('\n')[0]}`;
  }
  process.stdout.write(`${JSON.stringify({
    diffMs: median(diffTimes), pollMs: pollTimes.length ? median(pollTimes) : null,
    runs: diffTimes.length, patchBytes: Buffer.byteLength(patchText), ok, why,
  })}\n`);
}

// ---------------------------------------------------------------------------------------------
// Pairs.

// Writes a pair of texts into dir and returns its description.
function writePair(dir, name, kind, oldText, newText, ideal = null) {
  const oldFile = path.join(dir, `${name}.old.json`);
  const newFile = path.join(dir, `${name}.new.json`);
  fs.writeFileSync(oldFile, oldText);
  fs.writeFileSync(newFile, newText);
  return { name, kind, oldFile, newFile, bytes: Buffer.byteLength(newText), ideal };
}

function referencePairs() {
  const dir = path.join(TESTDATA, 'diff-pairs');
  const pairs = [];
  for (const f of fs.readdirSync(dir).sort()) {
    const m = /^(p[1-5])_.*\.src\.json$/.exec(f);
    if (!m) continue;
    const base = f.slice(0, -'.src.json'.length);
    const idealFile = path.join(dir, `${base}.ideal.json`);
    const ideal = fs.existsSync(idealFile)
      ? Buffer.byteLength(L.stringify(L.parse(fs.readFileSync(idealFile, 'utf8'))))
      : null;
    const newFile = path.join(dir, `${base}.dst.json`);
    pairs.push({
      name: base, kind: 'reference', oldFile: path.join(dir, f), newFile,
      bytes: fs.statSync(newFile).size, ideal,
    });
  }
  return pairs;
}

// One "next poll" of each corpus: the compact original, and the same after a few seeded edits
// (EDITS of them, of the kinds the property test uses).
const CORPUS_EDITS = 5;
function corpusPairs(dir, seed) {
  const cdir = path.join(TESTDATA, 'corpora');
  const pairs = [];
  for (const f of fs.readdirSync(cdir).filter((x) => x.endsWith('.json')).sort()) {
    const text = fs.readFileSync(path.join(cdir, f), 'utf8');
    let doc = L.parse(text);
    const oldText = L.stringify(doc);
    const m = new Mutator(makeRng(seedFrom(seed, 'bench', f)));
    doc = m.mutate(doc, CORPUS_EDITS);
    pairs.push(writePair(dir, f.replace(/\.json$/, ''), 'corpus', oldText, L.stringify(doc)));
  }
  return pairs;
}

function shuffle(rng, a) {
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
  return a;
}

// Pathological pairs, each side at most 8 MiB.
function pathologicalPairs(dir, seed, only) {
  const rng = makeRng(seedFrom(seed, 'pathological'));
  const out = [];
  const add = (name, a, b) => {
    if (only && !only.test(name)) return;
    const at = JSON.stringify(a);
    const bt = JSON.stringify(b);
    if (Buffer.byteLength(at) > 8 * MIB || Buffer.byteLength(bt) > 8 * MIB) {
      die(`generated pair ${name} exceeds 8 MiB`);
    }
    out.push(writePair(dir, name, 'pathological', at, bt));
  };

  // 100,000 objects with ids, reversed: every element moves.
  const rows = [];
  for (let i = 0; i < 100000; i++) rows.push({ id: i, v: `x${i}` });
  add('reverse-100k-objects', rows, [...rows].reverse());

  // 1,000,000 distinct integers, shuffled.
  const ints = [];
  for (let i = 0; i < 1000000; i++) ints.push(i);
  add('shuffle-1M-ints', ints, shuffle(rng, [...ints]));

  // 3,500,000 digits (10 distinct values): 1% of positions inserted or removed at random.
  const digits = [];
  for (let i = 0; i < 3500000; i++) digits.push(rng.int(10));
  const edited = [];
  for (const d of digits) {
    const r = rng.int(200);
    if (r === 0) continue;
    edited.push(d);
    if (r === 1) edited.push(rng.int(10));
  }
  add('duplicates-3.5M-digits', digits, edited);

  // Nesting 900 deep (pollcast parses up to 1000), a change at the bottom.
  const deep = (leaf) => {
    let v = { leaf, pad: 'p' };
    for (let i = 0; i < 900; i++) v = i % 2 ? { a: v, n: i } : [i, v];
    return v;
  };
  add('deep-900', deep(1), deep(2));

  // An object with 200,000 members; every 10th renamed, every 7th value changed.
  const wideA = {};
  const wideB = {};
  for (let i = 0; i < 200000; i++) {
    wideA[`key${i}`] = i;
    wideB[i % 10 === 0 ? `renamed${i}` : `key${i}`] = i % 7 === 0 ? -i : i;
  }
  add('wide-object-200k', wideA, wideB);

  // 50,000 API rows with ids, shuffled, 1% of them edited.
  const apiRows = [];
  for (let i = 0; apiRows.length < 50000; i++) {
    apiRows.push({
      id: 1000000 + i, name: `item ${i}`, price: (i * 37) % 1000 / 10, tags: ['a', 'b', `t${i % 13}`],
      vendor: { name: `vendor ${i % 97}`, rating: (i % 50) / 10 }, updated_at: '2024-05-20T12:00:00Z',
    });
  }
  const shuffled = shuffle(rng, apiRows.map((r) => structuredClone(r)));
  for (const r of shuffled) if (rng.int(100) === 0) r.price += 1;
  add('shuffle-50k-rows', apiRows, shuffled);

  // Everything different: two unrelated arrays of random rows, about 7 MiB each.
  const randomRows = (n) => {
    const a = [];
    for (let i = 0; i < n; i++) a.push({ k: rng.u32(), s: rng.u32().toString(36), f: rng.next() });
    return a;
  };
  add('all-different-7MiB', randomRows(110000), randomRows(110000));

  // Eight strings of one MiB, one character changed in each.
  const strs = [];
  for (let i = 0; i < 8; i++) strs.push('abcdefgh'.repeat(MIB / 8 - 1));
  add('long-strings-8MiB', strs, strs.map((s, i) => `${s.slice(0, 1000 * i)}Z${s.slice(1000 * i + 1)}`));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Measurements.

const TIMING_RE = /^diff: median ([0-9.]+) ms; parse\+diff\+serialize: median ([0-9.]+) ms$/m;

async function measurePollcast(bin, pair, repeat, timeoutMs) {
  // A first run gives the patch, its wall time and an estimate for choosing the run count.
  const first = await run(bin, ['diff', pair.oldFile, pair.newFile, '--repeat', '1'],
    { timeoutMs });
  if (first.code !== 0) return { error: `${describeExit(first)}: ${clip(first.stderr, 120)}` };
  const m1 = TIMING_RE.exec(first.stderr);
  if (!m1) return { error: `no timing line: ${clip(first.stderr, 120)}` };
  const est = Math.max(Number(m1[2]), 0.001);
  // Keep each measurement within a few seconds: fewer runs for slow pairs, more for fast ones.
  const n = Math.min(repeat * 20, Math.max(3, Math.floor(3000 / est)));
  const r = await run(bin, ['diff', pair.oldFile, pair.newFile, '--repeat', String(n)],
    { timeoutMs: timeoutMs * 4 });
  const m = TIMING_RE.exec(r.stderr);
  if (r.code !== 0 || !m) return { error: `${describeExit(r)}: ${clip(r.stderr, 120)}` };
  return {
    diffMs: Number(m[1]), pollMs: Number(m[2]), wallMs: first.ms, runs: n,
    patchText: first.stdout.trimEnd(), patchBytes: Buffer.byteLength(first.stdout.trimEnd()),
  };
}

async function measureJs(tool, pair, repeat, timeoutMs) {
  const r = await run(process.execPath, [
    '--max-old-space-size=2048', SELF, `--child=${tool}`, pair.oldFile, pair.newFile,
    `--repeat=${repeat}`, `--budget=${Math.min(5000, timeoutMs / 4)}`,
  ], { timeoutMs });
  if (r.timedOut) return { error: `timeout > ${timeoutMs / 1000} s` };
  if (r.code !== 0) {
    const oom = /heap out of memory|Allocation failed/i.test(r.stderr);
    return { error: oom ? 'out of memory' : `${describeExit(r)}: ${clip(r.stderr, 120)}` };
  }
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop());
  } catch {
    return { error: `bad output: ${clip(r.stdout, 120)}` };
  }
}

// Checks pollcast's patch with fast-json-patch, numbers compared by their text.
function checkPollcast(fjp, pair, patchText) {
  try {
    const out = fjp.applyPatch(L.parse(fs.readFileSync(pair.oldFile, 'utf8')), L.parse(patchText),
      fastValidator(fjp)).newDocument;
    const d = L.firstDifference(out, L.parse(fs.readFileSync(pair.newFile, 'utf8')));
    return d ? `result differs at ${d}` : '';
  } catch (e) {
    return `patch rejected: ${e.message.split('\n')[0]}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Output.

function fmtMs(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '-';
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  if (v >= 1) return v.toFixed(2);
  return v.toFixed(3);
}

function fmtBytes(v) {
  if (v === null || v === undefined) return '-';
  if (v >= 10 * MIB) return `${(v / MIB).toFixed(0)}M`;
  if (v >= MIB) return `${(v / MIB).toFixed(1)}M`;
  if (v >= 100 * 1024) return `${(v / 1024).toFixed(0)}k`;
  if (v >= 10 * 1024) return `${(v / 1024).toFixed(1)}k`;
  return String(v);
}

function cell(res, field, fmt) {
  if (!res) return '-';
  if (res.error) return res.error.startsWith('timeout') ? 'timeout' : res.error === 'out of memory' ? 'OOM' : 'error';
  const s = fmt(res[field]);
  return res.ok === false || res.bad ? `${s}!` : s;
}

// pollcast prints its medians in ms with 3 decimals: a median printed as 0.000 was below
// 0.0005 ms. Ratios use that bound (so they are lower bounds) and are shown as ">Nx".
const PC_RESOLUTION = 0.0005;
function speedRatio(r) {
  return r.fjp.diffMs / Math.max(r.pc.diffMs, PC_RESOLUTION);
}

function table(rows) {
  const head = ['pair', 'bytes', 'patch pc', 'fjp', 'jdp', 'ideal', 'diff ms pc', 'fjp', 'jdp',
    'fjp/pc', 'MB/s pc', 'fjp'];
  const lines = rows.map((r) => {
    const ratio = r.pc && !r.pc.error && r.fjp && !r.fjp.error ? speedRatio(r) : null;
    const mbs = (res, f) => (res && !res.error && res[f] ? (r.pair.bytes / 1e6) / (res[f] / 1e3) : null);
    return [
      r.pair.name, fmtBytes(r.pair.bytes),
      cell(r.pc, 'patchBytes', fmtBytes), cell(r.fjp, 'patchBytes', fmtBytes),
      cell(r.jdp, 'patchBytes', fmtBytes), fmtBytes(r.pair.ideal),
      cell(r.pc, 'diffMs', fmtMs), cell(r.fjp, 'diffMs', fmtMs), cell(r.jdp, 'diffMs', fmtMs),
      ratio === null ? '-' : `${r.pc.diffMs < PC_RESOLUTION ? '>' : ''}${ratio.toFixed(1)}x`,
      mbs(r.pc, 'pollMs') === null ? '-' : mbs(r.pc, 'pollMs').toFixed(0),
      mbs(r.fjp, 'pollMs') === null ? '-' : mbs(r.fjp, 'pollMs').toFixed(0),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmtLine = (l) => `| ${l.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(' | ')} |`;
  const out = [fmtLine(head), `|${widths.map((w, i) => (i === 0 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`)).join('|')}|`];
  for (const l of lines) out.push(fmtLine(l));
  return out.join('\n');
}

function machine() {
  let cpu = 'unknown CPU';
  try {
    const m = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpu = m[1];
  } catch {
    // Not Linux.
  }
  let nproc = os.cpus().length;
  try {
    nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim()) || nproc;
  } catch {
    // No nproc.
  }
  return { cpu, nproc, mem: `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB` };
}

// ---------------------------------------------------------------------------------------------
// Main.

async function main() {
  const args = parseArgs();
  const flags = new Set(args.pos.filter((a) => a.startsWith('--')));
  args.pos = args.pos.filter((a) => !a.startsWith('--'));
  if (args.opts.child) {
    await child(args);
    return;
  }
  const bin = args.pos[0] || process.env.POLLCAST_BIN;
  if (!bin || !fs.existsSync(bin)) die('pass the pollcast binary (or use bench/diff.sh, which builds one)');
  const repeat = Number(args.opts.repeat || 15);
  const seed = args.opts.seed || '20240601';
  const timeoutMs = Number(args.opts.timeout || 60) * 1000;
  const only = args.opts.only ? new RegExp(args.opts.only) : null;
  const fjp = await loadFastJsonPatch();
  await loadOracle('jsondiffpatch'); // fail early when node_modules is missing

  const mc = machine();
  let version = '';
  try {
    version = execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    // Older binaries without --version.
  }
  let commit = '';
  try {
    commit = execFileSync('git', ['-C', path.dirname(SELF), 'rev-parse', '--short', 'HEAD'],
      { encoding: 'utf8' }).trim();
  } catch {
    // Not a git checkout.
  }
  const fjpVer = JSON.parse(fs.readFileSync(new URL('../tests/oracle/node_modules/fast-json-patch/package.json', import.meta.url))).version;
  const jdpVer = JSON.parse(fs.readFileSync(new URL('../tests/oracle/node_modules/jsondiffpatch/package.json', import.meta.url))).version;
  process.stdout.write(`date: ${new Date().toISOString()}\n`);
  process.stdout.write(`machine: ${mc.cpu}, nproc ${mc.nproc}, ${mc.mem}, ${os.type()} ${os.release()}\n`);
  process.stdout.write(`pollcast: ${bin} ${version}${commit ? ` (commit ${commit})` : ''}\n`);
  process.stdout.write(`node ${process.version}, fast-json-patch ${fjpVer}, jsondiffpatch ${jdpVer}\n`);
  process.stdout.write(`seed ${seed}, --repeat ${repeat}\n\n`);

  const tmp = makeTmpDir('bench');
  let pairs = [...referencePairs(), ...corpusPairs(tmp, seed)];
  if (!flags.has('--no-pathological')) {
    pairs.push(...pathologicalPairs(tmp, seed, only));
  }
  if (only) pairs = pairs.filter((p) => only.test(p.name));

  const rows = [];
  for (const pair of pairs) {
    process.stderr.write(`  ${pair.name} ...\n`);
    const pc = await measurePollcast(bin, pair, repeat, timeoutMs);
    if (!pc.error) {
      const why = checkPollcast(fjp, pair, pc.patchText);
      if (why) {
        pc.bad = true;
        process.stderr.write(`  ! pollcast's patch for ${pair.name} is wrong: ${why}\n`);
      }
      delete pc.patchText;
    }
    const fj = await measureJs('fjp', pair, repeat, timeoutMs);
    const jd = await measureJs('jdp', pair, repeat, timeoutMs);
    for (const [name, res] of [['pollcast', pc], ['fast-json-patch', fj], ['jsondiffpatch', jd]]) {
      if (res.error) process.stderr.write(`  ! ${name} on ${pair.name}: ${res.error}\n`);
      if (res.ok === false) process.stderr.write(`  ! ${name}'s patch for ${pair.name} is wrong: ${res.why}\n`);
    }
    rows.push({ pair, pc, fjp: fj, jdp: jd });
  }

  process.stdout.write(`${table(rows)}\n\n`);
  process.stdout.write('(! after a value: that patch does not turn OLD into NEW; timeout/OOM: the ' +
    'tool did not finish within the limit)\n\n');

  // Summary against the targets.
  const ok = (r) => r && !r.error;
  const main = rows.filter((r) => r.pair.kind !== 'pathological' && ok(r.pc) && ok(r.fjp));
  if (main.length > 0) {
    const ratios = main.map(speedRatio);
    const geo = Math.exp(ratios.reduce((s, x) => s + Math.log(x), 0) / ratios.length);
    const worst = main[ratios.indexOf(Math.min(...ratios))];
    process.stdout.write(`diff step, fast-json-patch / pollcast (reference + corpus pairs): ` +
      `geometric mean ${geo.toFixed(1)}x, lowest ${Math.min(...ratios).toFixed(1)}x ` +
      `(${worst.pair.name}); target >= 3x\n`);
    const totalBytes = main.reduce((s, r) => s + r.pair.bytes, 0);
    const totalPoll = main.reduce((s, r) => s + r.pc.pollMs, 0);
    const mbs = main.map((r) => (r.pair.bytes / 1e6) / (r.pc.pollMs / 1e3));
    const slow = main[mbs.indexOf(Math.min(...mbs))];
    process.stdout.write(`per poll, pollcast parse+diff+serialize: ` +
      `${((totalBytes / 1e6) / (totalPoll / 1e3)).toFixed(0)} MB/s over all these pairs, lowest ` +
      `${Math.min(...mbs).toFixed(0)} MB/s (${slow.pair.name}); target >= 100 MB/s per core\n`);
  }
  const patho = rows.filter((r) => r.pair.kind === 'pathological' && ok(r.pc));
  if (patho.length > 0) {
    const worst = patho.reduce((w, r) => (Math.max(r.pc.pollMs, r.pc.wallMs) > Math.max(w.pc.pollMs, w.pc.wallMs) ? r : w));
    process.stdout.write(`worst case, pathological pairs: slowest is ${worst.pair.name}, ` +
      `parse+diff+serialize ${fmtMs(worst.pc.pollMs)} ms, whole \`pollcast diff\` process ` +
      `${fmtMs(worst.pc.wallMs)} ms; target <= 1000 ms\n`);
  }
  const minimal = rows.filter((r) => r.pair.ideal !== null && ok(r.pc));
  if (minimal.length > 0) {
    const over = minimal.filter((r) => r.pc.patchBytes > r.pair.ideal);
    process.stdout.write(`patch size, reference pairs: ${minimal.length - over.length} of ` +
      `${minimal.length} at or below the ideal` +
      `${over.length ? ` (over: ${over.map((r) => r.pair.name).join(', ')})` : ''}\n`);
  }
  const failed = rows.filter((r) => r.pc.error);
  if (failed.length === rows.length) process.exitCode = 1;
}

await main();

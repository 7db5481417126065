// oracle.property: a seeded property test of `pollcast diff`. Each document of
// shared/testdata/corpora goes through chains of random edits (lib/mutator.js: inserts,
// removals, moves and reorders in arrays, field edits, keys added, removed and renamed, type
// changes, edits inside moved elements, ...), like the successive responses of a polled API,
// restarting from the original every EPISODE pairs. For every pair (before, after):
//   - `pollcast diff before after` exits 0 and prints a JSON array;
//   - fast-json-patch applies it to before (validating each operation, with
//     harness.fastValidator) and gives exactly after;
//   - it is no larger than replacing the whole document ([{"op":"replace","path":"","value":...}]);
//   - a pair without edits gives exactly [].
//
// Number fidelity: the corpora hold integers beyond 2^53 and decimals with more digits than a
// double keeps, which JSON.parse would round. Every document here is read and written with
// lib/ljson.js, which keeps each number's exact text (as a marker string that fast-json-patch
// carries like any other value): the files pollcast reads hold the corpus's original number
// text, and the comparison of fast-json-patch's result with `after` compares numbers by text.
// So a patch that rounds a 64-bit id, or misses a change in its last digit, fails.
//
// Usage: node tests/oracle/property.js POLLCAST_BIN [--variant=-asan]
// Environment:
//   POLLCAST_ORACLE_SEED=N       seed (default 20240601); printed at start, same seed same pairs
//   POLLCAST_ORACLE_SCALE=F      multiplies the pair counts (default 1, or 0.2 with --variant=-asan)
//   POLLCAST_ORACLE_CORPORA=a,b  only these corpus files (a corpus's pairs do not depend on the
//                                others, so a failure reproduces with its corpus alone)
//   POLLCAST_ORACLE_KEEP=DIR     copy the files of failing pairs into DIR

import fs from 'node:fs';
import path from 'node:path';

import {
  Pool, TESTDATA, Tally, clip, describeExit, die, fastValidator, loadFastJsonPatch, makeTmpDir,
  parseArgs, pollcastBin, run,
} from './lib/harness.js';
import * as L from './lib/ljson.js';
import { Mutator, makeRng, seedFrom } from './lib/mutator.js';

const EPISODE = 10;
const ROOT_REPLACE_OVERHEAD = Buffer.byteLength('[{"op":"replace","path":"","value":}]');

const args = parseArgs();
const bin = pollcastBin(args);
const fjp = await loadFastJsonPatch();
const validate = fastValidator(fjp);
const seed = process.env.POLLCAST_ORACLE_SEED || '20240601';
const asan = args.opts.variant === '-asan';
const scale = Number(process.env.POLLCAST_ORACLE_SCALE || (asan ? 0.2 : 1));
if (!(scale > 0)) die(`POLLCAST_ORACLE_SCALE must be a positive number, not ${scale}`);
const keepDir = process.env.POLLCAST_ORACLE_KEEP;
const only = process.env.POLLCAST_ORACLE_CORPORA
  ? new Set(process.env.POLLCAST_ORACLE_CORPORA.split(','))
  : null;

// Pairs per corpus by size: many on small documents, few on the multi-megabyte ones, about
// 3000 in all at scale 1.
function pairsFor(bytes) {
  const base = bytes < 100e3 ? 550 : bytes < 300e3 ? 250 : bytes < 1e6 ? 100 : 30;
  return Math.max(1, Math.round(base * scale));
}

const tally = new Tally('oracle.property');
const tmp = makeTmpDir('property');
const pool = new Pool(2);
const corpusDir = path.join(TESTDATA, 'corpora');
const corpora = fs.readdirSync(corpusDir).filter((f) => f.endsWith('.json')).sort();
if (corpora.length === 0) die(`no corpora in ${corpusDir}`);

process.stdout.write(`seed ${seed} (POLLCAST_ORACLE_SEED), scale ${scale}, binary ${bin}\n`);

let failuresKept = 0;
function keep(tag, files) {
  if (!keepDir || failuresKept >= 20) return;
  failuresKept++;
  fs.mkdirSync(keepDir, { recursive: true });
  for (const [name, text] of Object.entries(files)) {
    fs.writeFileSync(path.join(keepDir, `${tag}.${name}`), text);
  }
}

// Checks one pair; the files are removed afterwards.
async function checkPair(p) {
  const { tag, beforeFile, afterFile, beforeText, afterText, nEdits, log } = p;
  const what = `${tag} (${nEdits} edits: ${clip(log.join(','), 200)})`;
  const repro = `reproduce: POLLCAST_ORACLE_SEED=${seed} POLLCAST_ORACLE_CORPORA=${p.corpus}` +
    (scale !== 1 ? ` POLLCAST_ORACLE_SCALE=${scale}` : '');
  const r = await run(bin, ['diff', beforeFile, afterFile], { timeoutMs: asan ? 120000 : 30000 });
  fs.rmSync(beforeFile, { force: true });
  fs.rmSync(afterFile, { force: true });
  let msg = null;
  let patch;
  if (r.code !== 0 || r.timedOut) {
    msg = `pollcast diff: ${describeExit(r)}: ${clip(r.stderr)}`;
  } else {
    try {
      patch = L.parse(r.stdout);
      if (!Array.isArray(patch)) msg = `the patch is not an array: ${clip(r.stdout)}`;
    } catch {
      msg = `pollcast diff printed invalid JSON: ${clip(r.stdout)}`;
    }
  }
  if (msg === null) {
    try {
      const out = fjp.applyPatch(L.parse(beforeText), patch, validate).newDocument;
      const diff = L.firstDifference(out, L.parse(afterText));
      if (diff) msg = `fast-json-patch's result differs from after at ${diff}`;
    } catch (e) {
      msg = `fast-json-patch rejects the patch: ${e.name}: ${clip(e.message, 300)}`;
    }
  }
  if (msg === null) {
    const patchBytes = Buffer.byteLength(r.stdout.trimEnd());
    const limit = Buffer.byteLength(afterText) + ROOT_REPLACE_OVERHEAD;
    if (nEdits === 0 && r.stdout.trim() !== '[]') {
      msg = `no edits, yet the patch is ${clip(r.stdout)}`;
    } else if (patchBytes > limit) {
      msg = `the patch (${patchBytes} bytes) is larger than replacing the document (${limit})`;
    }
  }
  if (msg !== null) {
    msg += `; patch ${clip(r.stdout, 400)}; ${repro}`;
    keep(tag.replace(/[^A-Za-z0-9_.-]/g, '_'), {
      'before.json': beforeText, 'after.json': afterText, 'patch.json': r.stdout,
    });
  }
  tally.check(msg === null, `${what}: ${msg}`);
}

let total = 0;
const editKinds = {};
for (const corpus of corpora) {
  if (only && !only.has(corpus)) continue;
  const original = fs.readFileSync(path.join(corpusDir, corpus), 'utf8');
  const count = pairsFor(Buffer.byteLength(original));
  const mutator = new Mutator(makeRng(seedFrom(seed, corpus)));
  const t0 = performance.now();
  let doc = null;
  let beforeText = null;
  for (let i = 0; i < count; i++) {
    if (i % EPISODE === 0) {
      doc = L.parse(original);
      beforeText = L.stringify(doc);
    }
    const nEdits = mutator.editCount();
    doc = mutator.mutate(doc, nEdits);
    for (const e of mutator.log) editKinds[e] = (editKinds[e] || 0) + 1;
    if (nEdits === 0) editKinds['(pairs without edits)'] = (editKinds['(pairs without edits)'] || 0) + 1;
    const afterText = L.stringify(doc);
    const base = path.join(tmp, `${corpus}.${i}`);
    const pair = {
      tag: `${corpus}#${i}`, corpus, nEdits, log: mutator.log, beforeText, afterText,
      beforeFile: `${base}.before.json`, afterFile: `${base}.after.json`,
    };
    fs.writeFileSync(pair.beforeFile, beforeText);
    fs.writeFileSync(pair.afterFile, afterText);
    await pool.add(() => checkPair(pair));
    beforeText = afterText;
    total++;
  }
  await pool.drain();
  const s = ((performance.now() - t0) / 1000).toFixed(1);
  process.stdout.write(`${corpus}: ${count} pairs in ${s} s\n`);
}
await pool.drain();
process.stdout.write(`${total} pairs; edits applied: ${Object.entries(editKinds)
  .filter(([k]) => !k.endsWith('(no-op)')).sort().map(([k, n]) => `${k} ${n}`).join(', ')}\n`);
tally.finish();

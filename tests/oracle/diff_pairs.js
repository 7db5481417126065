// oracle.diff_pairs: the reference pairs of shared/testdata/diff-pairs. For each NAME.src.json ->
// NAME.dst.json, `pollcast diff` must print a patch that fast-json-patch applies (validating) to
// src to give exactly dst, and that is no larger, in compact JSON bytes, than NAME.ideal.json
// where there is one (the smallest correct patch; p6 has none).
//
// Usage: node tests/oracle/diff_pairs.js POLLCAST_BIN

import fs from 'node:fs';
import path from 'node:path';

import {
  TESTDATA, Tally, clip, describeExit, die, fastValidator, loadFastJsonPatch, parseArgs,
  pollcastBin, run,
} from './lib/harness.js';
import * as L from './lib/ljson.js';

const args = parseArgs();
const bin = pollcastBin(args);
const fjp = await loadFastJsonPatch();
const validate = fastValidator(fjp);
const tally = new Tally('oracle.diff_pairs');
const dir = path.join(TESTDATA, 'diff-pairs');
const names = fs.readdirSync(dir)
  .filter((f) => f.endsWith('.src.json'))
  .map((f) => f.slice(0, -'.src.json'.length))
  .sort();
if (names.length < 6) die(`expected the 6 reference pairs in ${dir}, found ${names.length}`);

const rows = [];
for (const name of names) {
  const srcFile = path.join(dir, `${name}.src.json`);
  const dstFile = path.join(dir, `${name}.dst.json`);
  const idealFile = path.join(dir, `${name}.ideal.json`);
  const srcText = fs.readFileSync(srcFile, 'utf8');
  const dst = L.parse(fs.readFileSync(dstFile, 'utf8'));
  let ideal = null;
  if (fs.existsSync(idealFile)) {
    const idealPatch = L.parse(fs.readFileSync(idealFile, 'utf8'));
    ideal = Buffer.byteLength(L.stringify(idealPatch));
    // The test data itself: the ideal patch must be a correct patch.
    try {
      const out = fjp.applyPatch(L.parse(srcText), idealPatch, validate).newDocument;
      const diff = L.firstDifference(out, dst);
      if (diff) die(`test data: ${name}.ideal.json does not give dst: ${diff}`);
    } catch (e) {
      die(`test data: ${name}.ideal.json does not apply: ${e.message}`);
    }
  }

  const r = await run(bin, ['diff', srcFile, dstFile]);
  const row = { name, ideal, patch: '-' };
  rows.push(row);
  if (r.code !== 0 || r.timedOut) {
    tally.fail(`${name}: pollcast diff: ${describeExit(r)}: ${clip(r.stderr)}`);
    continue;
  }
  let patch;
  try {
    patch = L.parse(r.stdout);
  } catch {
    tally.fail(`${name}: pollcast diff printed invalid JSON: ${clip(r.stdout)}`);
    continue;
  }
  // The bytes pollcast wrote (compact by contract), without the final newline.
  const bytes = Buffer.byteLength(r.stdout.trimEnd());
  row.patch = bytes;
  let msg = null;
  try {
    if (!Array.isArray(patch)) throw new Error('the patch is not an array');
    const out = fjp.applyPatch(L.parse(srcText), patch, validate).newDocument;
    const diff = L.firstDifference(out, dst);
    if (diff) msg = `fast-json-patch's result differs from dst at ${diff}`;
  } catch (e) {
    msg = `fast-json-patch rejects the patch: ${e.message}`;
  }
  tally.check(msg === null, `${name}: ${msg}; patch ${clip(r.stdout)}`);
  if (ideal !== null) {
    tally.check(bytes <= ideal,
      `${name}: patch is ${bytes} bytes, the ideal is ${ideal}: ${clip(r.stdout, 600)}`);
  }
}

process.stdout.write('pair                              patch bytes   ideal bytes\n');
for (const r of rows) {
  process.stdout.write(`${r.name.padEnd(34)}${String(r.patch).padStart(11)}` +
    `${String(r.ideal ?? '-').padStart(14)}\n`);
}
tally.finish();

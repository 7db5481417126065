// oracle.json_patch_tests: every enabled record of json-patch-tests (tests.json, spec_tests.json)
// that has an `expected` is a pair (doc, expected). `pollcast diff doc expected` must print a
// patch that fast-json-patch (an independent RFC 6902 implementation) applies to doc, with
// validation, to give exactly expected; and `pollcast apply doc patch` must print expected too.
//
// Usage: node tests/oracle/json_patch_tests.js POLLCAST_BIN
// Documents go through ljson (lossless numbers): see lib/ljson.js.

import fs from 'node:fs';
import path from 'node:path';

import {
  Pool, TESTDATA, Tally, clip, describeExit, loadFastJsonPatch, makeTmpDir, parseArgs,
  pollcastBin, run,
} from './lib/harness.js';
import * as L from './lib/ljson.js';

const args = parseArgs();
const bin = pollcastBin(args);
const fjp = await loadFastJsonPatch();
const tally = new Tally('oracle.json_patch_tests');
const tmp = makeTmpDir('jpt');
const pool = new Pool(2);

async function roundTrip(where, rec, n) {
  const docFile = path.join(tmp, `${n}.doc.json`);
  const expFile = path.join(tmp, `${n}.expected.json`);
  const patchFile = path.join(tmp, `${n}.patch.json`);
  const docText = L.stringify(rec.doc);
  fs.writeFileSync(docFile, docText);
  fs.writeFileSync(expFile, L.stringify(rec.expected));
  const what = `${where} (doc ${clip(docText, 80)} -> ${clip(L.stringify(rec.expected), 80)})`;

  const d = await run(bin, ['diff', docFile, expFile]);
  if (d.code !== 0 || d.timedOut) {
    tally.fail(`${what}: pollcast diff: ${describeExit(d)}: ${clip(d.stderr)}`);
    tally.fail(`${what}: pollcast apply: not run (no patch)`);
    return;
  }
  let patch;
  try {
    patch = L.parse(d.stdout);
  } catch (e) {
    tally.fail(`${what}: pollcast diff printed invalid JSON: ${clip(d.stdout)}`);
    tally.fail(`${what}: pollcast apply: not run (no patch)`);
    return;
  }

  // fast-json-patch, validating every operation.
  let msg = null;
  if (!Array.isArray(patch)) {
    msg = `patch is not an array: ${clip(d.stdout)}`;
  } else {
    try {
      const out = fjp.applyPatch(fjp.deepClone(L.parse(docText)), patch, true).newDocument;
      const diff = L.firstDifference(out, rec.expected);
      if (diff) msg = `fast-json-patch result differs from expected at ${diff}`;
    } catch (e) {
      msg = `fast-json-patch rejects the patch: ${e.name}: ${clip(e.message, 200)}`;
    }
  }
  tally.check(msg === null, `${what}: diff + fast-json-patch: ${msg}; patch ${clip(d.stdout)}`);

  // pollcast's own applier on pollcast's patch.
  fs.writeFileSync(patchFile, d.stdout);
  const a = await run(bin, ['apply', docFile, patchFile]);
  if (a.code !== 0 || a.timedOut) {
    tally.fail(`${what}: pollcast apply of the diff: ${describeExit(a)}: ${clip(a.stderr)}`);
    return;
  }
  let out;
  try {
    out = L.parse(a.stdout);
  } catch {
    tally.fail(`${what}: pollcast apply printed invalid JSON: ${clip(a.stdout)}`);
    return;
  }
  const diff = L.firstDifference(out, rec.expected);
  tally.check(diff === null, `${what}: diff + pollcast apply: differs from expected at ${diff}`);
}

let pairs = 0;
for (const file of ['tests.json', 'spec_tests.json']) {
  const records = L.parse(fs.readFileSync(path.join(TESTDATA, 'json-patch-tests', file), 'utf8'));
  for (let i = 0; i < records.length; i++) {
    const rec = records[i];
    if (rec.disabled || !Object.prototype.hasOwnProperty.call(rec, 'expected')) continue;
    const where = `${file}[${i}]${rec.comment ? ` "${rec.comment}"` : ''}`;
    const n = pairs++;
    await pool.add(() => roundTrip(where, rec, n));
  }
}
await pool.drain();
if (pairs < 70) tally.fail(`only ${pairs} records with "expected" found in ${TESTDATA}`);
process.stdout.write(`${pairs} pairs from json-patch-tests, 2 checks each\n`);
tally.finish();

// oracle.apply_suite: `pollcast apply` on every enabled record of json-patch-tests as written.
// A record with `expected` must exit 0 and print expected; a record with `error` must exit 1
// (a patch that cannot be applied), print nothing on stdout and say why on stderr.
//
// Usage: node tests/oracle/apply_suite.js POLLCAST_BIN

import fs from 'node:fs';
import path from 'node:path';

import {
  Pool, TESTDATA, Tally, clip, describeExit, makeTmpDir, parseArgs, pollcastBin, run,
} from './lib/harness.js';
import * as L from './lib/ljson.js';

const args = parseArgs();
const bin = pollcastBin(args);
const tally = new Tally('oracle.apply_suite');
const tmp = makeTmpDir('apply');
const pool = new Pool(2);

async function applyRecord(where, rec, n) {
  const docFile = path.join(tmp, `${n}.doc.json`);
  const patchFile = path.join(tmp, `${n}.patch.json`);
  fs.writeFileSync(docFile, L.stringify(rec.doc));
  fs.writeFileSync(patchFile, L.stringify(rec.patch));
  const what = `${where} (patch ${clip(L.stringify(rec.patch), 120)})`;
  const r = await run(bin, ['apply', docFile, patchFile]);
  if (Object.prototype.hasOwnProperty.call(rec, 'expected')) {
    if (r.code !== 0 || r.timedOut) {
      tally.fail(`${what}: ${describeExit(r)}, expected success: ${clip(r.stderr)}`);
      return;
    }
    let out;
    try {
      out = L.parse(r.stdout);
    } catch {
      tally.fail(`${what}: printed invalid JSON: ${clip(r.stdout)}`);
      return;
    }
    const diff = L.firstDifference(out, rec.expected);
    tally.check(diff === null, `${what}: result differs from expected at ${diff}`);
  } else {
    const ok = r.code === 1 && !r.timedOut && r.stdout === '' && r.stderr.trim() !== '';
    tally.check(ok, `${what}: must fail (${rec.error}) with exit 1, a reason on stderr and ` +
      `nothing on stdout; got ${describeExit(r)}, stdout ${clip(r.stdout, 100) || '(empty)'}, ` +
      `stderr ${clip(r.stderr, 100) || '(empty)'}`);
  }
}

let n = 0;
for (const file of ['tests.json', 'spec_tests.json']) {
  const records = L.parse(fs.readFileSync(path.join(TESTDATA, 'json-patch-tests', file), 'utf8'));
  for (let i = 0; i < records.length; i++) {
    const rec = records[i];
    if (rec.disabled) continue;
    const where = `${file}[${i}]${rec.comment ? ` "${rec.comment}"` : ''}`;
    const k = n++;
    await pool.add(() => applyRecord(where, rec, k));
  }
}
await pool.drain();
if (n < 100) tally.fail(`only ${n} enabled records found in ${TESTDATA}`);
process.stdout.write(`${n} records from json-patch-tests\n`);
tally.finish();

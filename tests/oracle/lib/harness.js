// Shared plumbing of the oracle tests and the diff benchmark: where the pollcast binary, the
// shared test data and the npm oracles are; running pollcast with a time limit; a small worker
// pool; temporary directories removed at exit; a pass/fail tally that ends with the
// "N passed, N failed" line.
//
// Only node built-ins are imported here, so that a missing node_modules is reported as a
// failure with a clear message (see loadOracle) instead of a module resolution error.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ORACLE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const SRC_DIR = process.env.POLLCAST_SRC || path.resolve(ORACLE_DIR, '..', '..');
export const TESTDATA =
  process.env.POLLCAST_TESTDATA || path.resolve(SRC_DIR, '..', 'shared', 'testdata');

// Prints the message and exits with status 1: a broken setup is a failed test, never a skip.
export function die(msg) {
  process.stderr.write(`FAIL: ${msg}\n`);
  process.exit(1);
}

// The command line: positional arguments and --name=value options.
export function parseArgs(argv = process.argv.slice(2)) {
  const pos = [];
  const opts = {};
  for (const a of argv) {
    const m = /^--([a-z-]+)=(.*)$/s.exec(a);
    if (m) opts[m[1]] = m[2];
    else pos.push(a);
  }
  return { pos, opts };
}

// The pollcast binary: the first positional argument, else $POLLCAST_BIN. Dies when there is
// none or it is not executable.
export function pollcastBin(args) {
  const bin = args.pos[0] || process.env.POLLCAST_BIN;
  if (!bin) die('no pollcast binary: pass its path as the first argument or set POLLCAST_BIN');
  try {
    fs.accessSync(bin, fs.constants.X_OK);
  } catch {
    die(`pollcast binary ${bin} is missing or not executable (build it first)`);
  }
  return path.resolve(bin);
}

// Imports an npm package (or a subpath of one) installed in tests/oracle/node_modules, from any
// script of the repository (the benchmark in bench/ included). Dies with the install command
// when node_modules is missing.
export async function loadOracle(spec) {
  const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
  if (!fs.existsSync(path.join(ORACLE_DIR, 'node_modules', pkg, 'package.json'))) {
    die(`npm package ${pkg} is not installed in tests/oracle/node_modules: ` +
      'run scripts/install-deps.sh (it runs `npm ci` in tests/oracle)');
  }
  const require = createRequire(path.join(ORACLE_DIR, 'package.json'));
  return import(pathToFileURL(require.resolve(spec)).href);
}

// fast-json-patch's API object (its CommonJS exports).
export async function loadFastJsonPatch() {
  const m = await loadOracle('fast-json-patch');
  return m.default && m.default.applyPatch ? m.default : m;
}

// Child processes still running, stopped (by PID) when this process exits.
const children = new Set();
// Temporary directories, removed when this process exits.
const tmpDirs = new Set();

function cleanup() {
  for (const c of children) {
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  children.clear();
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
  tmpDirs.clear();
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    cleanup();
    process.exit(128 + (os.constants.signals[sig] || 1));
  });
}

// A new empty directory under the system's temporary directory, removed at exit.
export function makeTmpDir(tag = 'oracle') {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `pollcast-${tag}-`));
  tmpDirs.add(d);
  return d;
}

export function removeTmpDir(d) {
  fs.rmSync(d, { recursive: true, force: true });
  tmpDirs.delete(d);
}

// Runs bin with args; resolves (never rejects) with {code, signal, stdout, stderr, timedOut,
// ms}. stdout and stderr are strings (UTF-8). The process is killed after timeoutMs.
export function run(bin, args, { timeoutMs = 60000, input } = {}) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const out = [];
    const err = [];
    let timedOut = false;
    let child;
    try {
      child = spawn(bin, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    } catch (e) {
      resolve({ code: null, signal: null, stdout: '', stderr: String(e), timedOut, ms: 0 });
      return;
    }
    children.add(child);
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }, timeoutMs);
    child.stdout.on('data', (b) => out.push(b));
    child.stderr.on('data', (b) => err.push(b));
    if (input !== undefined) child.stdin.end(input);
    child.on('error', (e) => err.push(Buffer.from(String(e))));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
        ms: performance.now() - t0,
      });
    });
  });
}

// Describes how a run ended, for failure messages.
export function describeExit(r) {
  if (r.timedOut) return 'timed out';
  if (r.signal) return `killed by ${r.signal}`;
  return `exit ${r.code}`;
}

// At most n tasks at once: `await pool.add(fn)` waits for a free slot, starts fn() and returns
// (without waiting for fn to finish); `await pool.drain()` waits for everything started.
export class Pool {
  constructor(n) {
    this.n = n;
    this.active = new Set();
  }

  async add(fn) {
    while (this.active.size >= this.n) await Promise.race(this.active);
    const p = Promise.resolve()
      .then(fn)
      .catch((e) => {
        if (this.error === undefined) this.error = e;
      })
      .finally(() => this.active.delete(p));
    this.active.add(p);
  }

  // Rethrows the first error a task threw.
  async drain() {
    while (this.active.size > 0) await Promise.race(this.active);
    if (this.error !== undefined) throw this.error;
  }
}

// A tally of checks. fail() prints at once (up to maxPrinted messages); finish() prints the
// summary line and sets the exit status.
export class Tally {
  constructor(name, maxPrinted = Number(process.env.POLLCAST_ORACLE_MAX_PRINTED) || 40) {
    this.name = name;
    this.passed = 0;
    this.failed = 0;
    this.maxPrinted = maxPrinted;
    this.t0 = performance.now();
  }

  pass() {
    this.passed++;
  }

  fail(msg) {
    this.failed++;
    if (this.failed <= this.maxPrinted) process.stdout.write(`FAIL ${msg}\n`);
    else if (this.failed === this.maxPrinted + 1) {
      process.stdout.write('(further failures are counted, not printed)\n');
    }
  }

  check(ok, msg) {
    if (ok) this.pass();
    else this.fail(msg);
    return ok;
  }

  finish() {
    const s = ((performance.now() - this.t0) / 1000).toFixed(1);
    process.stdout.write(`${this.name} took ${s} s\n`);
    process.stdout.write(`${this.name}: ${this.passed} passed, ${this.failed} failed\n`);
    process.exitCode = this.failed > 0 || this.passed === 0 ? 1 : 0;
  }
}

// Shortens text for a message.
export function clip(s, n = 300) {
  s = String(s).trim();
  return s.length > n ? `${s.slice(0, n)}... (${s.length} chars)` : s;
}

// A validating function for fast-json-patch's applyPatch(doc, patch, validate) that checks what
// its built-in `true` checks, without its cost on large documents: for each move and copy, the
// built-in validator deep-clones the whole document to see whether `from` exists (seconds for a
// few hundred moves in a 700 kB document). This one resolves `from` by walking the pointer, and
// also refuses a move into its own child (RFC 6902 4.4), which fast-json-patch does not check.
// Everything else is delegated to fast-json-patch's validator.
export function fastValidator(fjp) {
  const resolves = (doc, pointer) => {
    if (pointer === '') return true;
    if (!pointer.startsWith('/')) return false;
    let v = doc;
    for (const raw of pointer.slice(1).split('/')) {
      const tok = raw.replace(/~1/g, '/').replace(/~0/g, '~');
      if (Array.isArray(v)) {
        if (!/^(0|[1-9][0-9]*)$/.test(tok) || Number(tok) >= v.length) return false;
        v = v[Number(tok)];
      } else if (v !== null && typeof v === 'object') {
        if (!Object.prototype.hasOwnProperty.call(v, tok)) return false;
        v = v[tok];
      } else {
        return false;
      }
    }
    return true;
  };
  return (op, index, doc, existing) => {
    if (op && (op.op === 'move' || op.op === 'copy') && doc !== undefined) {
      fjp.validator(op, index);
      if (!resolves(doc, op.from)) {
        throw new fjp.JsonPatchError(`${op.op} from a path that does not exist: ${op.from}`,
          'OPERATION_FROM_UNRESOLVABLE', index, op, doc);
      }
      if (op.op === 'move' && op.path.startsWith(`${op.from}/`)) {
        throw new fjp.JsonPatchError(`move into its own child: ${op.from} -> ${op.path}`,
          'OPERATION_PATH_ILLEGAL', index, op, doc);
      }
      return;
    }
    fjp.validator(op, index, doc, existing);
  };
}

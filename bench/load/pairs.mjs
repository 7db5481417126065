#!/usr/bin/env node
// 1 I/O thread against 2, run by run, beside what the machine's two CPUs did at the time.
//
//   node bench/load/pairs.mjs [--client idle|normal] FILE.jsonl...
//
// Reads the lines run.mjs printed, in order, and pairs each pollcast fan-out run at 2 I/O
// threads with the nearest 1-thread run before it, at most 3 lines back (same subscribers,
// commit, client priority and affinity, and "variant" where an A/B batch added one; the matrix
// runs nchan between them). For each pair: the 2-thread / 1-thread ratios of latency p50 and p99 and of CPU per
// event, and the lowest cpuprobe speed-up of the pair's four probes (before and after each run;
// 2.00: two busy CPUs did twice the work of one). Then the pairs in order of that speed-up, the
// median ratios of the lower and the upper half, and the correlation of ratio and speed-up.
// Pairs without probes (lines from before cpuprobe) are listed and left out of the halves.
// Last, against issue 13's targets (p50 and p99 ratio <= 0.6, CPU per event unchanged), over all
// pairs: each ratio's median with a distribution-free 95% interval (order statistics), and how
// many pairs fall on each side of the target with the sign test's one-sided p (no assumption
// about how the noise is shaped: a batch's pairs are only taken as independent).
import fs from 'node:fs';
import { cpuPerEvent, fmt, median, medianInterval, readRuns, signTest } from './stats.mjs';

const argv = process.argv.slice(2);
let client = null; // --client: only pairs whose load client ran at that priority
if (argv[0] === '--client') {
  client = argv[1];
  argv.splice(0, 2);
}
const runs = readRuns(fs, argv);
if (!runs.length) {
  process.stderr.write('usage: node bench/load/pairs.mjs [--client idle|normal] FILE.jsonl...\n');
  process.exit(2);
}

const ok = (r) => r.server === 'pollcast' && r.scenario === 'fanout' && !r.error && r.proc && r.latency_ms &&
  (!client || (r.client_priority || 'normal') === client);
const sameKind = (a, b) =>
  a.subs === b.subs && a.commit === b.commit && (a.client_priority || 'normal') === (b.client_priority || 'normal') &&
  (a.cpu_affinity || 'default') === (b.cpu_affinity || 'default') && (a.variant || '') === (b.variant || '');
const probes = (r, kind) =>
  ((r.machine && r.machine.cpu_parallel) || []).filter((x) => x && x[kind]).map((x) => x[kind].speedup);

const pairs = [];
const used = new Set();
for (let i = 1; i < runs.length; i++) {
  const two = runs[i];
  if (!ok(two) || Number(two.io_threads) !== 2) continue;
  // The matrix runs nchan between them: look back up to 3 lines.
  let j = i - 1;
  while (j >= Math.max(0, i - 3) && !(ok(runs[j]) && Number(runs[j].io_threads) === 1 && sameKind(runs[j], two) && !used.has(j))) j--;
  if (j < Math.max(0, i - 3)) continue;
  used.add(j);
  const one = runs[j];
  const alu = [...probes(one, 'alu'), ...probes(two, 'alu')];
  const sock = [...probes(one, 'sock'), ...probes(two, 'sock')];
  pairs.push({
    when: two.machine && two.machine.date,
    subs: two.subs,
    commit: two.commit,
    p50: [one.latency_ms.p50, two.latency_ms.p50],
    p99: [one.latency_ms.p99, two.latency_ms.p99],
    r50: two.latency_ms.p50 / one.latency_ms.p50,
    r99: two.latency_ms.p99 / one.latency_ms.p99,
    rcpu: cpuPerEvent(two) / cpuPerEvent(one),
    alu: alu.length ? Math.min(...alu) : NaN,
    sock: sock.length ? Math.min(...sock) : NaN,
  });
}
if (!pairs.length) {
  console.log('no pair of a 1-thread fan-out run followed by a 2-thread one');
  process.exit(0);
}

// Pearson's r of two equal-length lists.
const corr = (xs, ys) => {
  const n = xs.length;
  if (n < 3) return NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n, my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
    syy += (ys[i] - my) ** 2;
  }
  return sxy / Math.sqrt(sxx * syy);
};

console.log('| 2-thread run at (UTC) | subs | commit | p50 ms, 1 / 2 threads | p99 ms, 1 / 2 | p50 ratio | p99 ratio | CPU per event ratio | 2 CPUs / 1, alu | sock |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const p of pairs)
  console.log(`| ${(p.when || '').slice(11, 19)} | ${p.subs} | ${p.commit} | ${fmt(p.p50[0], 1)} / ${fmt(p.p50[1], 1)} | ` +
    `${fmt(p.p99[0], 1)} / ${fmt(p.p99[1], 1)} | ${fmt(p.r50)} | ${fmt(p.r99)} | ${fmt(p.rcpu)} | ${fmt(p.alu)} | ${fmt(p.sock)} |`);

const probed = pairs.filter((p) => Number.isFinite(p.alu)).sort((a, b) => a.alu - b.alu);
if (probed.length >= 2) {
  const half = Math.floor(probed.length / 2);
  const lo = probed.slice(0, half), hi = probed.slice(probed.length - half);
  const row = (name, l) =>
    console.log(`| ${name} | ${l.length} | ${fmt(median(l.map((p) => p.alu)))} | ${fmt(median(l.map((p) => p.sock)))} | ` +
      `${fmt(median(l.map((p) => p.r50)))} | ${fmt(median(l.map((p) => p.r99)))} | ${fmt(median(l.map((p) => p.rcpu)))} |`);
  console.log('\nPairs by the lowest alu speed-up of their probes (medians):\n');
  console.log('| pairs | n | 2 CPUs / 1, alu | sock | p50 ratio | p99 ratio | CPU per event ratio |');
  console.log('|---|---|---|---|---|---|---|');
  row('lower half', lo);
  row('upper half', hi);
  row('all', probed);
  const a = probed.map((p) => p.alu);
  console.log(`\nPearson r over ${probed.length} pairs, alu speed-up against: p50 ratio ${fmt(corr(a, probed.map((p) => p.r50)))}, ` +
    `p99 ratio ${fmt(corr(a, probed.map((p) => p.r99)))}, CPU per event ratio ${fmt(corr(a, probed.map((p) => p.rcpu)))}`);
}

const verdict = (name, xs, limit) => {
  const { n, past, pPast, pWithin } = signTest(xs, limit);
  const [lo, hi] = medianInterval(xs);
  const interval = Number.isFinite(lo) ? `${fmt(lo)} – ${fmt(hi)}` : '– (too few pairs)';
  console.log(`| ${name} | ${n} | ${fmt(median(xs))} | ${interval} | ${limit} | ${past} of ${n} | ` +
    `${fmt(pPast, 3)} | ${fmt(pWithin, 3)} |`);
};
console.log('\nAll pairs against the targets: the median ratio, its 95% interval, the pairs past the target, and the sign test\'s p\nthat the median is past the target (small: it is) or within it (small: it is):\n');
console.log('| ratio, 2 threads / 1 | pairs | median | 95% interval | target | pairs past it | p, past | p, within |');
console.log('|---|---|---|---|---|---|---|---|');
verdict('p50', pairs.map((p) => p.r50), 0.6);
verdict('p99', pairs.map((p) => p.r99), 0.6);
verdict('CPU per event', pairs.map((p) => p.rcpu), 1.0);

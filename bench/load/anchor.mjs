#!/usr/bin/env node
// What a second thread costs pollcast per event, beside what a second worker costs nchan in
// the same rounds: the anchor for issue 13's "CPU per event unchanged with 2 threads".
//
//   node bench/load/anchor.mjs [--scenario fanout|burst] [--subs N] [--client idle|normal] FILE.jsonl...
//
// Reads the lines run.mjs printed, in order, and keeps the runs of one scenario (fanout, or burst
// for the saturation runs of run.sh all) at N subscribers (10,000) whose load client ran at that
// priority (idle): pollcast at 1 and 2 I/O threads (io_cpu_affinity left at its default) and
// nchan at 1 and 2 workers. A round is a stretch of consecutive kept lines of one file and one
// pollcast commit holding each of the four once, in any order (the matrix of run.sh all runs
// them as pollcast 1, nchan 1, pollcast 2, nchan 2). For each round: CPU per event at 2 / at 1
// for each server, and the quotient of the two ratios, which is above 1.0 where pollcast's second
// thread costs more per event than nchan's second worker. Then each ratio's median with a
// distribution-free 95% interval and the sign test against 1.0.
import fs from 'node:fs';
import { cpuPerEvent, fmt, median, medianInterval, readRuns, signTest } from './stats.mjs';

const argv = process.argv.slice(2);
let subs = 10000, client = 'idle', scenario = 'fanout';
while (argv[0] && argv[0].startsWith('--')) {
  const [k, v] = argv.splice(0, 2);
  if (k === '--subs') subs = Number(v);
  else if (k === '--client') client = v;
  else if (k === '--scenario') scenario = v;
  else {
    process.stderr.write(`anchor.mjs: unknown option ${k}\n`);
    process.exit(2);
  }
}
if (!argv.length) {
  process.stderr.write('usage: node bench/load/anchor.mjs [--scenario fanout|burst] [--subs N] [--client idle|normal] FILE.jsonl...\n');
  process.exit(2);
}

const kindOf = (r) => {
  if (r.scenario !== scenario || r.subs !== subs || r.error || !r.proc || !r.latency_ms || !r.events_window) return null;
  if ((r.client_priority || 'normal') !== client || r.experiment || r.variant) return null;
  if (r.server === 'pollcast' && (r.cpu_affinity || 'default') === 'default' && [1, 2].includes(Number(r.io_threads)))
    return `p${Number(r.io_threads)}`;
  if (r.server === 'nchan' && [1, 2].includes(Number(r.workers))) return `n${Number(r.workers)}`;
  return null;
};

const rounds = [];
let cur = {}, curFile = null, curCommit = null;
const close = () => {
  if (cur.p1 && cur.p2 && cur.n1 && cur.n2) rounds.push(cur);
  cur = {};
};
for (const r of readRuns(fs, argv)) {
  const kind = kindOf(r);
  if (!kind) continue;
  const commit = kind[0] === 'p' ? r.commit : curCommit;
  if (r.file !== curFile || (curCommit && commit && commit !== curCommit) || cur[kind]) {
    close();
    curCommit = null;
  }
  curFile = r.file;
  if (kind[0] === 'p') curCommit = r.commit;
  cur[kind] = r;
}
close();
if (!rounds.length) {
  console.log(`no round of pollcast at 1 and 2 I/O threads and nchan at 1 and 2 workers (${scenario} ${subs}, client ${client})`);
  process.exit(0);
}

const rows = rounds.map((x) => {
  const pc = [cpuPerEvent(x.p1), cpuPerEvent(x.p2)], nc = [cpuPerEvent(x.n1), cpuPerEvent(x.n2)];
  const when = [x.p1, x.p2, x.n1, x.n2].map((r) => (r.machine && r.machine.date) || '').sort()[0];
  return {
    when, commit: x.p1.commit, pc, nc,
    rp: pc[1] / pc[0], rn: nc[1] / nc[0], rr: pc[1] / pc[0] / (nc[1] / nc[0]),
    p50: [x.p1, x.p2, x.n1, x.n2].map((r) => r.latency_ms.p50),
    others: Math.max(...[x.p1, x.p2, x.n1, x.n2].map((r) => Number(r.others_cores) || 0)),
  };
});

console.log(`${scenario} ${subs}, client ${client}: CPU-s per million events, each round's four runs\n`);
console.log('| round from (UTC) | commit | pollcast 1 / 2 threads | ratio | nchan 1 / 2 workers | ratio | pollcast ratio / nchan ratio | p50 ms: pollcast 1 / 2, nchan 1 / 2 | others, cores (max) |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const w of rows)
  console.log(`| ${w.when.slice(0, 10)} ${w.when.slice(11, 19)} | ${w.commit} | ${fmt(w.pc[0])} / ${fmt(w.pc[1])} | ${fmt(w.rp)} | ` +
    `${fmt(w.nc[0])} / ${fmt(w.nc[1])} | ${fmt(w.rn)} | ${fmt(w.rr)} | ${w.p50.map((v) => fmt(v, 1)).join(' / ')} | ${fmt(w.others)} |`);

const verdict = (name, xs) => {
  const { n, past, pPast, pWithin } = signTest(xs, 1.0);
  const [lo, hi] = medianInterval(xs);
  const interval = Number.isFinite(lo) ? `${fmt(lo)} – ${fmt(hi)}` : '– (too few rounds)';
  console.log(`| ${name} | ${n} | ${fmt(median(xs))} | ${interval} | ${past} of ${n} | ${fmt(pPast, 3)} | ${fmt(pWithin, 3)} |`);
};
console.log('\nOver all rounds: the median, its 95% interval, the rounds above 1.0, and the sign test\'s p that the\nmedian is above 1.0 (small: it is) or at most 1.0 (small: it is):\n');
console.log('| CPU per event | rounds | median | 95% interval | above 1.0 | p, above | p, at most |');
console.log('|---|---|---|---|---|---|---|');
verdict('pollcast, 2 threads / 1', rows.map((w) => w.rp));
verdict('nchan, 2 workers / 1', rows.map((w) => w.rn));
verdict('pollcast ratio / nchan ratio', rows.map((w) => w.rr));

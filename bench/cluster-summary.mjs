#!/usr/bin/env node
// Medians of bench/cluster.mjs runs (one JSON line each) as the Markdown table of bench/RESULTS.md.
//   node bench/cluster-summary.mjs bench/load/results/cluster-DATE.jsonl
import fs from 'node:fs';

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: cluster-summary.mjs FILE.jsonl\n');
  process.exit(2);
}
const runs = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const median = (xs) => {
  const s = xs.filter((x) => typeof x === 'number' && !Number.isNaN(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const f1 = (x) => (Number.isNaN(x) ? '–' : (Math.round(x * 10) / 10).toString());

const groups = new Map();
for (const r of runs) {
  const k = `${r.scenario}|${r.subs}`;
  if (!groups.has(k)) groups.set(k, []);
  groups.get(k).push(r);
}
process.stdout.write('| setup | subs | runs | latency p50 ms | p99 ms | CPU % per node | ' +
  'CPU % all nodes | Redis CPU % | Redis cmds per change (sent) | converged | errors | ' +
  'load avg |\n' +
  '|---|---|---|---|---|---|---|---|---|---|---|---|\n');
for (const [, rs] of groups) {
  const r0 = rs[0];
  const nodes = r0.nodes;
  const perNode = Array.from({ length: nodes }, (_, i) => median(rs.map((r) => r.node_cpu_pct[i])));
  const errors = rs.map((r) => r.clients.reduce((a, c) => a + (c.errors ? Object.values(c.errors)
    .reduce((x, y) => x + y, 0) : 1), 0));
  process.stdout.write(`| ${nodes === 1 && !r0.redis ? 'one node' : `${nodes} nodes + Redis`} | ` +
    `${r0.subs} | ${rs.length} | ${f1(median(rs.map((r) => r.latency_ms_worst_client.p50)))} | ` +
    `${f1(median(rs.map((r) => r.latency_ms_worst_client.p99)))} | ` +
    `${perNode.map(f1).join(' / ')} | ` +
    `${f1(median(rs.map((r) => r.node_cpu_pct.reduce((a, b) => a + b, 0))))} | ` +
    `${r0.redis ? f1(median(rs.map((r) => r.redis.cpu_pct))) : '–'} | ` +
    `${r0.redis ? `${f1(median(rs.map((r) => r.redis.commands_per_change)))} ` +
      `(${f1(median(rs.map((r) => r.redis.sent_per_change)))})` : '–'} | ` +
    `${rs.filter((r) => r.converged).length}/${rs.length} | ${Math.max(...errors)} | ` +
    `${f1(median(rs.map((r) => r.machine.loadavg1[0])))} |\n`);
}

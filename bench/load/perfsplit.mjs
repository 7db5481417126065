#!/usr/bin/env node
// Where a profiled pollcast's CPU went, by call chain (issue 13, round six).
//
//   node bench/load/perfsplit.mjs [--top N] A.data... [--vs B.data...]
//
// Reads `perf script` of each perf.data (made by profile.sh: cpu-clock samples with call
// chains) and puts each sample in one class by its chain:
//   receive   the receiving side's TCP run inside a send (net_rx_action, process_backlog): on
//             loopback a send also delivers the segment to the client and wakes it;
//   send      the rest of the send system call;
//   other     everything else: pollcast's code, libc, the loops' waits.
// Prints the samples of each class per group (the files before --vs, and after it), and the N
// (12) leaf functions of the send class whose samples differ most between the groups. Compare
// groups with the same number of events (the runs' JSON lines say how many).
import { spawnSync } from 'node:child_process';

const args = process.argv.slice(2);
let top = 12;
if (args[0] === '--top') {
  top = Number(args[1]);
  args.splice(0, 2);
}
const split = args.indexOf('--vs');
const groups = split < 0 ? [args] : [args.slice(0, split), args.slice(split + 1)];
if (!groups[0].length || (groups[1] && !groups[1].length) || !Number.isFinite(top)) {
  process.stderr.write('usage: node bench/load/perfsplit.mjs [--top N] A.data... [--vs B.data...]\n');
  process.exit(2);
}

const RECEIVE = new Set(['net_rx_action', 'process_backlog', '__netif_receive_skb_one_core']);
const SEND = new Set(['__sys_sendto', 'tcp_sendmsg', '__x64_sys_sendto']);

function classify(chain) {
  if (chain.some((f) => RECEIVE.has(f))) return 'receive';
  if (chain.some((f) => SEND.has(f))) return 'send';
  return 'other';
}

// Samples of one perf.data: [{ cls, leaf }].
function samples(file) {
  const p = spawnSync('perf', ['script', '-i', file, '-F', 'comm,ip,sym'], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
  });
  if (p.status !== 0) {
    process.stderr.write(`perfsplit: perf script -i ${file} failed: ${p.stderr}\n`);
    process.exit(1);
  }
  const out = [];
  let chain = null;
  const end = () => {
    if (chain && chain.length) out.push({ cls: classify(chain), leaf: chain[0] });
    chain = null;
  };
  for (const line of p.stdout.split('\n')) {
    if (!line.trim()) end();
    else if (!/^\s/.test(line)) {
      end();
      chain = [];
    } else if (chain) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 2) chain.push(f[1].replace(/\+0x[0-9a-f]+$/, ''));
    }
  }
  end();
  return out;
}

const tally = groups.map((files) => {
  const cls = { receive: 0, send: 0, other: 0 }, leaves = new Map();
  for (const f of files)
    for (const s of samples(f)) {
      cls[s.cls]++;
      if (s.cls === 'send') leaves.set(s.leaf, (leaves.get(s.leaf) || 0) + 1);
    }
  return { files, cls, leaves, all: cls.receive + cls.send + cls.other };
});

const ratio = (b, a) => (a ? (b / a).toFixed(2) : '–');
const [a, b] = tally;
console.log(`A: ${a.files.join(' ')}` + (b ? `\nB: ${b.files.join(' ')}` : ''));
console.log(b ? '\n| samples | A | B | B / A |\n|---|---|---|---|' : '\n| samples | A |\n|---|---|');
for (const k of ['receive', 'send', 'other', 'all']) {
  const va = k === 'all' ? a.all : a.cls[k];
  const vb = b ? (k === 'all' ? b.all : b.cls[k]) : null;
  console.log(b ? `| ${k} | ${va} | ${vb} | ${ratio(vb, va)} |` : `| ${k} | ${va} |`);
}
const names = new Set([...a.leaves.keys(), ...(b ? b.leaves.keys() : [])]);
const rows = [...names].map((n) => [n, a.leaves.get(n) || 0, b ? b.leaves.get(n) || 0 : 0]);
rows.sort(b ? (x, y) => Math.abs(y[2] - y[1]) - Math.abs(x[2] - x[1]) : (x, y) => y[1] - x[1]);
console.log(b ? `\nsend class, leaf functions that differ most:\n\n| function | A | B | B - A |\n|---|---|---|---|`
  : `\nsend class, leaf functions:\n\n| function | A |\n|---|---|`);
for (const [n, x, y] of rows.slice(0, top)) console.log(b ? `| ${n} | ${x} | ${y} | ${y - x} |` : `| ${n} | ${x} |`);

#!/usr/bin/env node
// Medians of repeated runs: reads the JSON lines run.mjs printed (files on the command line) and
// prints Markdown tables, pollcast beside nchan with the ratio of the two. A row is one scenario
// and setting on one server variant: pollcast at one io_threads ("default": the key left out) and
// one commit, nchan at one worker_processes; the I/O threads table compares them at 10,000
// subscribers (issue 13, item 3).
import fs from 'node:fs';

const rows = [];
for (const f of process.argv.slice(2))
  for (const line of fs.readFileSync(f, 'utf8').split('\n'))
    if (line.trim().startsWith('{')) {
      try {
        rows.push(JSON.parse(line));
      } catch {}
    }

const median = (xs) => {
  const v = xs.filter((x) => typeof x === 'number' && !Number.isNaN(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const fmt = (x, d = 1) => (typeof x !== 'number' || Number.isNaN(x) ? '–' : x.toFixed(d));
// One row per scenario and setting: pollers with changes, idle at another max_header_bytes,
// reconnect storms with another gap are rows of their own.
const changing = (r) => r.upstream && r.upstream.mode === 'request' && r.scenario.startsWith('pollers');
const key = (r) =>
  `${r.scenario}|${r.subs}|${r.hz}|${changing(r) ? 'change' : ''}|${r.max_header_bytes || ''}|${r.gap_s ?? ''}`;
// The server variant: pollcast's io_threads (lines from before the option: "default") and commit;
// nchan's worker_processes (older lines have it under publisher; 1 before that).
const threads = (r) =>
  r.server === 'nchan' ? (r.workers ?? (r.publisher && r.publisher.workers) ?? 1) : (r.io_threads ?? 'default');
// How the run was placed: the load client's priority (lines from before the option: normal) and
// the binding of pollcast's I/O threads or nginx's workers to CPUs (before the option: none for
// nchan; pollcast's "default" is its io_cpu_affinity default, auto since it exists).
// From 673d2fc on the idle client also yields the CPU every 32 events (sseload.c): "idle-yield".
// Lines record it as client_yield; the first of them (the matrix of 2026-12-07 05:46) only by the
// probe that came with it.
const clientYields = (r) => r.client_yield ?? Boolean(r.machine && r.machine.cpu_parallel);
const priority = (r) => (r.client_priority === 'idle' && clientYields(r) ? 'idle-yield' : r.client_priority || 'normal');
const affinity = (r) => r.cpu_affinity || (r.server === 'nchan' ? 'none' : 'default');
const placement = (r) => `${priority(r)}|${affinity(r)}`;
const variantKey = (r) =>
  (r.server === 'nchan' ? `nchan|${threads(r)}` : `pollcast|${threads(r)}|${r.commit || 'unknown'}`) + `|${placement(r)}`;
const placementLabel = (r) =>
  `, client ${priority(r)}` + (affinity(r) === 'default' ? '' : `, affinity ${affinity(r)}`);
const variantLabel = (r) =>
  (r.server === 'nchan' ? `nchan, workers ${threads(r)}` : `pollcast ${r.commit || '?'}, io_threads ${threads(r)}`) +
  placementLabel(r);
// Rows in scenario order, subscribers as numbers.
const keyOrder = (a, b) => {
  const [sa, na, ...ra] = a.split('|');
  const [sb, nb, ...rb] = b.split('|');
  return sa.localeCompare(sb) || Number(na) - Number(nb) || ra.join('|').localeCompare(rb.join('|'));
};
const label = (r) =>
  r.scenario + (changing(r) ? ' (changing)' : '') +
  (r.max_header_bytes ? `, max_header_bytes ${r.max_header_bytes}` : '') +
  (r.gap_s !== undefined ? `, gap ${r.gap_s} s` : '');

// Memory of the server: RSS for pollcast; for nginx, PSS summed over master and workers (the
// shared memory zone is mapped in both, RSS would count it twice).
const mem = (r, when) => (r.server === 'nchan' ? r.proc[`pss_${when}_kb`] : r.proc[`rss_${when}_kb`]);
const parallel = (r, kind) => {
  const p = ((r.machine && r.machine.cpu_parallel) || []).filter((x) => x && x[kind]).map((x) => x[kind].speedup);
  return p.length ? Math.min(...p) : NaN;
};
function metrics(r) {
  const ok = !r.error && r.proc;
  if (!ok) return null;
  return {
    p50: r.latency_ms.p50,
    p99: r.latency_ms.p99,
    max: r.latency_ms.max,
    // Each server's own measurement window (nchan's runs longer than SECS while it drains).
    evs: r.window_s ? r.events_window / r.window_s : NaN,
    mbs: r.bytes_per_s / 1e6,
    cpu: r.proc.cpu_pct,
    cpu_per_mev: r.events_window ? (r.proc.cpu_pct / 100) * r.window_s / (r.events_window / 1e6) : NaN,
    mem_mb: mem(r, 'end') / 1024,
    per_sub_kib: ((mem(r, 'end') - mem(r, 'before')) * 1024) / r.subs / 1024,
    conv: r.converged === true,
    conv_na: r.scenario.startsWith('idle') || r.scenario.startsWith('pollers'),
    // The load before the run started (after it, the run's own load is in it) and the CPU that
    // other processes used during the window, in cores.
    load: r.machine ? (r.machine.loadavg_before ?? (r.machine.loadavg1 || [NaN])[0]) : NaN,
    others: typeof r.others_cores === 'number' ? r.others_cores : NaN,
    client_cpu: typeof r.client_cpu_pct === 'number' ? r.client_cpu_pct : NaN,
    // cpuprobe before and after the run: how much the two CPUs did at once against one alone
    // (2.0: twice), the lower of the two; NaN on lines from before the probe.
    par_alu: parallel(r, 'alu'),
    par_sock: parallel(r, 'sock'),
    errors: Object.values(r.errors).reduce((a, b) => a + b, 0),
    connect_p99: r.connect_ms.p99,
    gaps: r.id_gaps,
    resets: r.data_events - r.conns,
  };
}

// groups: scenario key -> { sample, variants: variantKey -> [{ m, r }] }, pollcast's first.
const groups = new Map();
for (const r of rows) {
  const m = metrics(r);
  if (!m) continue;
  const k = key(r);
  if (!groups.has(k)) groups.set(k, { variants: new Map(), sample: r });
  const v = groups.get(k).variants;
  if (!v.has(variantKey(r))) v.set(variantKey(r), []);
  v.get(variantKey(r)).push({ m, r });
}
const variantsOf = (g, server) =>
  [...g.variants.entries()].filter(([vk]) => vk.startsWith(server + '|')).sort(([a], [b]) => a.localeCompare(b));
const med = (list, f) => median(list.map((x) => x.m[f]));

const commits = [...new Set(rows.filter((r) => r.server === 'pollcast').map((r) => r.commit || 'unknown'))];
const dates = rows.map((r) => r.machine && r.machine.date).filter(Boolean).sort();
const nchans = [...new Set(rows.filter((r) => r.server === 'nchan').map((r) => r.nchan_version || 'unrecorded'))];
console.log(`pollcast commit: ${commits.join(', ')}; nchan: ${nchans.join(', ')}; runs from ${dates[0]} to ${dates[dates.length - 1]}`);
console.log('pollcast io_threads "default": the key left out of the config (1 thread before the setting existed, the number of CPUs since); nchan workers: worker_processes. ' +
  'client idle: the load client ran as SCHED_IDLE, idle-yield: SCHED_IDLE and yielding the CPU every 32 events, normal: as any process; affinity none: pollcast\'s I/O threads (io_cpu_affinity = none) or nginx\'s workers not bound to CPUs (nchan with 2 workers otherwise has worker_cpu_affinity auto).\n');
console.log('| scenario | subs | changes/s | server | runs | latency p50 ms | p99 ms | events/s delivered | MB/s | CPU % | CPU-s per M events | memory MB | KiB per sub | converged | errors | client CPU % | load avg before | others, cores |');
console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
const order = [...groups.keys()].sort(keyOrder);
for (const k of order) {
  const g = groups.get(k);
  for (const [, l] of [...variantsOf(g, 'pollcast'), ...variantsOf(g, 'nchan')]) {
    const s = l[0].r;
    console.log(
      `| ${label(s)} | ${s.subs} | ${s.hz} | ${variantLabel(s)} | ${l.length} | ` +
        `${fmt(med(l, 'p50'), 2)} | ${fmt(med(l, 'p99'), 2)} | ${fmt(med(l, 'evs'), 0)} | ${fmt(med(l, 'mbs'), 2)} | ` +
        `${fmt(med(l, 'cpu'))} | ${fmt(med(l, 'cpu_per_mev'), 2)} | ${fmt(med(l, 'mem_mb'))} | ${s.scenario.startsWith('pollers') ? '–' : fmt(med(l, 'per_sub_kib'), 2)} | ` +
        `${l[0].m.conv_na ? 'n/a' : `${l.filter((x) => x.m.conv).length}/${l.length}`} | ${med(l, 'errors')} | ` +
        `${fmt(med(l, 'client_cpu'), 0)} | ${fmt(med(l, 'load'), 1)} | ${fmt(med(l, 'others'), 2)} |`,
    );
  }
}

// Ratios where both ran the same scenario: pollcast at N I/O threads against nchan at N workers,
// pollcast at its default against nchan at 1 worker (nchan's default).
const nOf = (t) => (t === 'default' ? 1 : Number(t));
console.log('\n| scenario | subs | pollcast / nchan | latency p50 | p99 | events/s | CPU | CPU per event | memory |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const k of order) {
  const g = groups.get(k);
  for (const [, pl] of variantsOf(g, 'pollcast'))
    for (const [, nl] of variantsOf(g, 'nchan')) {
      if (nOf(threads(pl[0].r)) !== Number(threads(nl[0].r))) continue;
      if (priority(pl[0].r) !== priority(nl[0].r)) continue;
      const r = (f) => med(pl, f) / med(nl, f);
      console.log(`| ${label(g.sample)} | ${g.sample.subs} | ${variantLabel(pl[0].r)} / workers ${threads(nl[0].r)} | ` +
        `${fmt(r('p50'), 2)} | ${fmt(r('p99'), 2)} | ${fmt(r('evs'), 2)} | ${fmt(r('cpu'), 2)} | ${fmt(r('cpu_per_mev'), 2)} | ${fmt(r('mem_mb'), 2)} |`);
    }
}

// I/O threads (issue 13, item 3): at 10,000 subscribers, pollcast 2 threads against 1 (target:
// p50 and p99 <= 0.6, CPU per event unchanged) and pollcast N threads against nchan N workers
// (target: below 1), each from the medians above.
const ioRows = [];
for (const k of order) {
  const g = groups.get(k);
  if (g.sample.subs !== 10000) continue;
  const byCommit = new Map();
  for (const [, l] of variantsOf(g, 'pollcast')) {
    const t = threads(l[0].r);
    if (t === 'default') continue;
    // One comparison per commit, client priority and pollcast's affinity.
    const c = `${l[0].r.commit || 'unknown'}${placementLabel(l[0].r)}`;
    if (!byCommit.has(c)) byCommit.set(c, new Map());
    byCommit.get(c).set(Number(t), l);
  }
  // nchan at each worker count, by client priority.
  const nchanN = new Map(variantsOf(g, 'nchan').map(([, l]) => [`${Number(threads(l[0].r))}|${priority(l[0].r)}`, l]));
  const line = (what, a, b) =>
    ioRows.push(`| ${label(g.sample)} | ${g.sample.subs} | ${what} | ${a.length}, ${b.length} | ` +
      ['p50', 'p99', 'cpu_per_mev', 'cpu', 'evs'].map((f) => fmt(med(a, f) / med(b, f), 2)).join(' | ') +
      ` | ${fmt(median([...a, ...b].map((x) => x.m.par_alu)), 2)} / ${fmt(median([...a, ...b].map((x) => x.m.par_sock)), 2)} |`);
  for (const [c, byN] of byCommit) {
    if (byN.has(1) && byN.has(2)) line(`pollcast ${c}: 2 threads / 1 thread`, byN.get(2), byN.get(1));
    for (const n of [1, 2]) {
      const nk = byN.has(n) ? `${n}|${priority(byN.get(n)[0].r)}` : '';
      if (byN.has(n) && nchanN.has(nk)) line(`pollcast ${c} ${n} thread${n > 1 ? 's' : ''} / nchan ${n} worker${n > 1 ? 's' : ''}`, byN.get(n), nchanN.get(nk));
    }
  }
}
if (ioRows.length) {
  console.log('\nI/O threads at 10,000 subscribers (ratios of medians; targets: 2 threads / 1 thread p50 and p99 <= 0.6, CPU per event ~1; pollcast / nchan at the same N < 1):\n');
  console.log('The last column: what the machine\'s first two CPUs did at once against one alone (cpuprobe, median over both sides\' runs, alu / sock; 2.00 is twice, – before the probe).\n');
  console.log('| scenario | subs | ratio | runs | latency p50 | p99 | CPU per event | CPU % | events/s | 2 CPUs / 1 |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const l of ioRows) console.log(l);
}

// The reconnect storm: every client drops, stays away gap_s, and reconnects with Last-Event-ID.
const storms = [...groups.entries()].filter(([, g]) => g.sample.scenario === 'reconnect');
if (storms.length) {
  console.log('\n| reconnect storm | subs | server | runs | back within s (median, max) | first event within s | resumed | fresh snapshot | lost events | duplicates | reconnect p99 ms | failed |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const [, g] of storms)
    for (const server of ['pollcast', 'nchan']) {
      for (const [, vl] of variantsOf(g, server)) {
      const l = vl.filter((x) => x.r.storm);
      if (!l.length) continue;
      const st = (f) => l.map((x) => x.r.storm[f]);
      const sum = (f) => st(f).reduce((a, b) => a + b, 0);
      console.log(`| gap ${g.sample.gap_s} s | ${g.sample.subs} | ${variantLabel(l[0].r)} | ${l.length} | ` +
        `${fmt(median(st('streaming_again_s')), 2)}, ${fmt(Math.max(...st('streaming_again_s')), 2)} | ` +
        `${fmt(median(st('all_first_event_s')), 2)} | ${sum('resumed')} | ${sum('fresh')} | ` +
        `${sum('lost_events')} | ${sum('duplicates')} | ${fmt(median(l.map((x) => x.r.storm.connect_ms.p99)), 1)} | ${sum('failed')} |`);
      }
    }
}

for (const r of rows.filter((x) => x.scenario.startsWith('pollers'))) {
  const u = r.upstream;
  console.log(`\n${r.scenario} (${u.mode}, ${variantLabel(r)}): ${u.paths} upstreams, CPU ${r.proc.cpu_pct}%, latency p50 ${r.latency_ms.p50} ms, requests per upstream in ${r.secs}s: ` +
    `${u.per_path_requests.min}..${u.per_path_requests.max} (expected ${u.per_path_requests.expected}), ` +
    `interval observed p50 ${u.interval_ms_observed.p50} ms, min ${u.interval_ms_observed.min}, max ${u.interval_ms_observed.max}`);
}

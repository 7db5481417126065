// Small statistics for the load kit's A/B batches: medians, a distribution-free 95% interval
// for a median, and the one-sided sign test. No assumption about how the noise is shaped; the
// runs of a batch are only taken as independent.

export const median = (xs) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!v.length) return NaN;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};

// P(X >= k) for X ~ Binomial(n, 1/2).
export const tailAtLeast = (n, k) => {
  let c = 1, sum = 0; // c: n choose i
  for (let i = 0; i <= n; i++) {
    if (i >= k) sum += c;
    c = (c * (n - i)) / (i + 1);
  }
  return sum / 2 ** n;
};

// The widest order statistics [x_k, x_(n-k+1)] (1-based) that still hold the median with at
// least 95%: the largest k with P(X < k) <= 2.5%. [NaN, NaN] when there are too few values.
export const medianInterval = (xs) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b), n = v.length;
  let k = 0;
  while (k + 1 <= n && 1 - tailAtLeast(n, k + 1) <= 0.025) k++;
  return k >= 1 ? [v[k - 1], v[n - k]] : [NaN, NaN];
};

// xs against a limit: how many are past it (greater), and the sign test's one-sided p that the
// median is past the limit (pPast: small when it is) or within it (pWithin: small when it is).
// Values exactly at the limit count as within.
export const signTest = (xs, limit) => {
  const v = xs.filter(Number.isFinite), n = v.length, past = v.filter((x) => x > limit).length;
  return { n, past, pPast: tailAtLeast(n, past), pWithin: 1 - tailAtLeast(n, past + 1) };
};

export const fmt = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '–');

// CPU seconds per million delivered events of one run.mjs line.
export const cpuPerEvent = (r) => ((r.proc.cpu_pct / 100) * r.window_s) / (r.events_window / 1e6);

// The JSON lines of run.mjs in the files given, in order.
export const readRuns = (fs, files) => {
  const runs = [];
  for (const f of files)
    for (const line of fs.readFileSync(f, 'utf8').split('\n'))
      if (line.trim().startsWith('{')) {
        try {
          runs.push({ ...JSON.parse(line), file: f });
        } catch {}
      }
  return runs;
};

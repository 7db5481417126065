// A strict parser of the Prometheus text exposition format (version 0.0.4), written from the
// format's specification to check pollcast's /metrics independently of pollcast's writer:
// every line is a HELP, a TYPE, a comment or a sample; names and label names have the allowed
// characters; label values use only the \\, \" and \n escapes; values are Go floats (+Inf, -Inf,
// NaN); a family's TYPE comes once and before its samples, which are contiguous; no series
// appears twice; counters are not negative; histograms have cumulative, ordered le buckets
// ending with +Inf equal to _count, and a _sum. Throws with the line number on any violation.
'use strict';

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FLOAT_RE = /^[+-]?(?:Inf|NaN|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)$/;

function parseFloatStrict(s, where) {
  if (!FLOAT_RE.test(s)) throw new Error(`${where}: bad value ${JSON.stringify(s)}`);
  if (/Inf$/.test(s)) return s.startsWith('-') ? -Infinity : Infinity;
  if (/NaN$/.test(s)) return NaN;
  return Number(s);
}

// Reads {name="value",...} starting at s[i] === '{'; returns [labels, index after '}'].
function parseLabels(s, i, where) {
  const labels = {};
  i++;
  for (;;) {
    if (s[i] === '}') return [labels, i + 1];
    const m = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(s.slice(i));
    if (!m) throw new Error(`${where}: bad label name at ${s.slice(i, i + 20)}`);
    const name = m[0];
    i += name.length;
    if (s[i] !== '=' || s[i + 1] !== '"') throw new Error(`${where}: expected =" after ${name}`);
    i += 2;
    let v = '';
    for (;;) {
      if (i >= s.length) throw new Error(`${where}: unterminated label value`);
      const ch = s[i];
      if (ch === '"') break;
      if (ch === '\\') {
        const e = s[i + 1];
        if (e === '\\') v += '\\';
        else if (e === '"') v += '"';
        else if (e === 'n') v += '\n';
        else throw new Error(`${where}: bad escape \\${e} in a label value`);
        i += 2;
      } else {
        v += ch;
        i++;
      }
    }
    i++;
    if (name in labels) throw new Error(`${where}: label ${name} twice`);
    labels[name] = v;
    if (s[i] === ',') i++;
    else if (s[i] !== '}') throw new Error(`${where}: expected , or } after a label`);
  }
}

// Returns {families: {name: {type, help, samples: [{name, labels, value}]}}, samples: [...]}.
function parse(text) {
  if (text.length && !text.endsWith('\n')) throw new Error('the exposition does not end in \\n');
  const families = {};
  const order = [];
  const seen = new Set();
  let current = null;
  const family = (name) => {
    if (!families[name]) {
      families[name] = { name, type: 'untyped', help: null, samples: [], typed: false };
      order.push(name);
    }
    return families[name];
  };
  // The family a sample belongs to: histogram and summary samples carry suffixes.
  const familyOf = (name) => {
    for (const suffix of ['_bucket', '_sum', '_count']) {
      if (name.endsWith(suffix)) {
        const base = name.slice(0, -suffix.length);
        if (families[base] && ['histogram', 'summary'].includes(families[base].type)) return base;
      }
    }
    return name;
  };
  const closed = new Set();
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((line, idx) => {
    const where = `line ${idx + 1}`;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const [, kind, name, rest = ''] = m;
      if (!NAME_RE.test(name)) throw new Error(`${where}: bad metric name ${name}`);
      const f = family(name);
      if (kind === 'HELP') {
        if (f.help !== null) throw new Error(`${where}: second HELP for ${name}`);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw new Error(`${where}: bad escape in HELP`);
        f.help = rest.replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
      } else {
        if (f.typed) throw new Error(`${where}: second TYPE for ${name}`);
        if (f.samples.length) throw new Error(`${where}: TYPE for ${name} after its samples`);
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest)) {
          throw new Error(`${where}: bad type ${rest}`);
        }
        f.type = rest;
        f.typed = true;
      }
      return;
    }
    if (line.trim() === '') throw new Error(`${where}: empty line`);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
    if (!m) throw new Error(`${where}: not a sample: ${line}`);
    const name = m[1];
    let i = name.length;
    let labels = {};
    if (line[i] === '{') [labels, i] = parseLabels(line, i, where);
    if (line[i] !== ' ') throw new Error(`${where}: expected a space before the value`);
    const parts = line.slice(i + 1).split(' ');
    if (parts.length < 1 || parts.length > 2) throw new Error(`${where}: bad value part`);
    const value = parseFloatStrict(parts[0], where);
    if (parts.length === 2 && !/^-?\d+$/.test(parts[1])) throw new Error(`${where}: bad timestamp`);
    const fname = familyOf(name);
    const f = family(fname);
    if (current !== fname) {
      if (closed.has(fname)) throw new Error(`${where}: samples of ${fname} are not contiguous`);
      if (current) closed.add(current);
      current = fname;
    }
    const series = name + JSON.stringify(Object.entries(labels).sort());
    if (seen.has(series)) throw new Error(`${where}: series ${series} twice`);
    seen.add(series);
    if (f.type === 'counter' && !(value >= 0)) throw new Error(`${where}: negative counter`);
    if (f.type === 'histogram' && name === fname) {
      throw new Error(`${where}: histogram sample without a suffix`);
    }
    f.samples.push({ name, labels, value });
  });
  for (const name of order) {
    const f = families[name];
    if (f.type !== 'histogram') continue;
    const buckets = f.samples.filter((s) => s.name === `${name}_bucket`);
    if (!buckets.length) throw new Error(`${name}: histogram without buckets`);
    let prevLe = -Infinity;
    let prev = 0;
    for (const b of buckets) {
      if (!('le' in b.labels)) throw new Error(`${name}: bucket without le`);
      const le = parseFloatStrict(b.labels.le, `${name} le`);
      if (!(le > prevLe)) throw new Error(`${name}: le not increasing at ${b.labels.le}`);
      if (b.value < prev) throw new Error(`${name}: buckets not cumulative at le=${b.labels.le}`);
      prevLe = le;
      prev = b.value;
    }
    if (prevLe !== Infinity) throw new Error(`${name}: no +Inf bucket`);
    const count = f.samples.find((s) => s.name === `${name}_count`);
    const sum = f.samples.find((s) => s.name === `${name}_sum`);
    if (!count || !sum) throw new Error(`${name}: _count or _sum missing`);
    if (count.value !== prev) throw new Error(`${name}: +Inf bucket ${prev} != _count ${count.value}`);
  }
  return { families, order };
}

// The value of one series: value(parsed, 'name', {label: 'x'}); undefined when absent.
function value(parsed, name, labels = {}) {
  for (const f of Object.values(parsed.families)) {
    for (const s of f.samples) {
      if (s.name !== name) continue;
      const keys = Object.keys(labels);
      if (keys.length === Object.keys(s.labels).length && keys.every((k) => s.labels[k] === labels[k])) {
        return s.value;
      }
    }
  }
  return undefined;
}

module.exports = { parse, value };

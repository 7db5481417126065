// A seeded mutator of JSON documents for the property test and the diff benchmark: given a
// document (in ljson's lossless form, numbers as number strings) and a PRNG, it applies a random
// sequence of edits of the kinds an API's successive responses show: field edits, inserts,
// removals, moves, reorders and duplicates inside arrays, keys added, removed and renamed, type
// changes, subtrees replaced, edits deep inside moved elements. Same seed, same document: same
// edits, on every machine (only integer arithmetic on the PRNG's 32-bit outputs).

import { NUM, isNum, num } from './ljson.js';

// sfc32 seeded through splitmix32-style mixing of a 32-bit seed; small, fast, good enough.
export function makeRng(seed) {
  let s = seed >>> 0;
  const mix = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = mix();
  let b = mix();
  let c = mix();
  let d = mix();
  const u32 = () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  for (let i = 0; i < 12; i++) u32();
  const rng = {
    u32,
    // A float in [0, 1).
    next: () => u32() / 4294967296,
    // An integer in [0, n).
    int: (n) => (n <= 0 ? 0 : Math.floor((u32() / 4294967296) * n)),
    chance: (p) => u32() / 4294967296 < p,
    pick: (arr) => arr[Math.floor((u32() / 4294967296) * arr.length)],
    // A new independent generator derived from this one (for per-corpus streams).
    fork: () => makeRng(u32()),
  };
  return rng;
}

// Hashes a string (a corpus name, a seed given as text) into a 32-bit seed.
export function seedFrom(...parts) {
  let h = 0x811c9dc5;
  for (const ch of parts.join('\u0001')) {
    h ^= ch.codePointAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

// Values that stress fidelity and escaping when they land in a patch.
const SPECIAL_NUMBERS = [
  '0', '-0', '1', '-1', '0.1', '1.10', '1.0', '1e400', '-1e400', '1E+2', '2.5e-3', '1e-7',
  '9007199254740993', '-9007199254740993', '18446744073709551615', '12345678901234567890123',
  '3.141592653589793238462643383279', '0.30000000000000004', '100', '1000000',
];
const WORDS = [
  'alpha', 'beta', 'gamma', 'delta', 'ok', 'error', 'pending', 'done', 'ACME', 'acme', 'x', '',
  'héllo wörld', '日本語テキスト', 'emoji 😀 🎉', 'tab\there', 'line\nbreak', 'quote"inside',
  'back\\slash', 'slash/and~tilde', 'a\u0000b', 'ctl\u0001\u001f', '\u2028sep\u2029', ' spaced ',
  'https://example.com/a?b=c&d=e', '<b>html</b>', 'ünïcödé', 'Z̤̈a̤l̈g̈o', '\ud83d\ude00',
];
const KEYS = [
  'id', 'name', 'value', 'price', 'status', 'items', 'meta', 'a/b', 'm~n', '~1', '~0x', '/', '~',
  '', 'quote"d', 'back\\slash', 'ключ', '😀', 'tab\tkey', 'nul\u0000key', 'Name', 'NAME', '0',
  '10', '-', 'a b', 'é', 'e\u0301', '$ref', '@type', 'key.with.dots', 'x_y',
];

// Kinds of edits with their relative weights.
const EDITS = [
  ['editLeaf', 24], ['arrayInsert', 12], ['arrayRemove', 11], ['arrayMove', 10],
  ['arrayReorder', 4], ['arrayDuplicate', 3], ['addKey', 8], ['removeKey', 8], ['renameKey', 6],
  ['typeChange', 6], ['replaceSubtree', 3], ['nestedEdit', 6], ['reorderKeys', 2],
];
const EDIT_TOTAL = EDITS.reduce((s, e) => s + e[1], 0);

function isContainer(v) {
  return v !== null && typeof v === 'object';
}

// True when v has fewer than limit values in all (itself included); stops counting at limit.
function smallerThan(v, limit) {
  let n = 0;
  const stack = [v];
  while (stack.length > 0) {
    const x = stack.pop();
    n++;
    if (!isContainer(x)) continue;
    const items = Array.isArray(x) ? x : Object.values(x);
    if (n + stack.length + items.length >= limit) return false;
    for (const c of items) stack.push(c);
  }
  return n < limit;
}

function clone(v) {
  return isContainer(v) ? structuredClone(v) : v;
}

export class Mutator {
  constructor(rng) {
    this.rng = rng;
    this.log = [];
  }

  // Returns the mutated document: doc is changed in place, but the root may be replaced, so
  // always use the return value. nEdits edits are applied; their names are in this.log.
  mutate(doc, nEdits) {
    this.log = [];
    const holder = { root: doc };
    for (let i = 0; i < nEdits; i++) {
      let r = this.rng.int(EDIT_TOTAL);
      let name = EDITS[0][0];
      for (const [n, w] of EDITS) {
        if (r < w) {
          name = n;
          break;
        }
        r -= w;
      }
      this.log.push(this[name](holder) ? name : `${name}(no-op)`);
    }
    return holder.root;
  }

  // A number of edits for one "poll": mostly a few, sometimes many.
  editCount() {
    const r = this.rng.next();
    if (r < 0.02) return 0;
    if (r < 0.55) return 1 + this.rng.int(3);
    if (r < 0.9) return 3 + this.rng.int(10);
    return 15 + this.rng.int(50);
  }

  // Walks down from the root along random children and returns the visited containers as a
  // list of {parent, key, node} (the root's parent is the holder, key 'root').
  walk(holder) {
    const trail = [];
    let parent = holder;
    let key = 'root';
    let node = holder.root;
    while (isContainer(node)) {
      trail.push({ parent, key, node });
      if (trail.length > 1 && this.rng.chance(0.15)) break;
      const keys = Array.isArray(node) ? null : Object.keys(node);
      const n = keys ? keys.length : node.length;
      if (n === 0) break;
      // A few tries to find a container child; stop here when there seems to be none.
      let next = null;
      for (let t = 0; t < 4 && next === null; t++) {
        const i = this.rng.int(n);
        const k = keys ? keys[i] : i;
        if (isContainer(node[k])) next = k;
      }
      if (next === null) break;
      parent = node;
      key = next;
      node = node[next];
    }
    return trail;
  }

  // A random container satisfying pred (deepest of the walk that does), or null.
  pickContainer(holder, pred) {
    for (let attempt = 0; attempt < 6; attempt++) {
      const trail = this.walk(holder).filter((t) => pred(t.node));
      if (trail.length > 0) {
        // Prefer deep nodes, where most real changes happen, but not always.
        return this.rng.chance(0.7) ? trail[trail.length - 1] : this.rng.pick(trail);
      }
    }
    return null;
  }

  pickArray(holder, nonEmpty = false) {
    return this.pickContainer(holder, (n) => Array.isArray(n) && (!nonEmpty || n.length > 0));
  }

  pickObject(holder, nonEmpty = false) {
    return this.pickContainer(
      holder,
      (n) => !Array.isArray(n) && (!nonEmpty || Object.keys(n).length > 0),
    );
  }

  randomNumber() {
    const r = this.rng.next();
    if (r < 0.3) return num(this.rng.pick(SPECIAL_NUMBERS));
    if (r < 0.7) return num(String(this.rng.int(100000) - 1000));
    const whole = this.rng.int(100000);
    const frac = String(this.rng.int(1000000)).padStart(6, '0').replace(/0+$/, '') || '5';
    return num(`${this.rng.chance(0.2) ? '-' : ''}${whole}.${frac}`);
  }

  randomString() {
    if (this.rng.chance(0.5)) return this.rng.pick(WORDS);
    let s = '';
    const n = this.rng.int(24);
    for (let i = 0; i < n; i++) s += String.fromCharCode(32 + this.rng.int(95));
    return s;
  }

  randomScalar() {
    const r = this.rng.int(10);
    if (r < 4) return this.randomNumber();
    if (r < 8) return this.randomString();
    if (r === 8) return this.rng.chance(0.5);
    return null;
  }

  randomValue(depth = 0) {
    const r = this.rng.next();
    if (depth >= 3 || r < 0.6) return this.randomScalar();
    if (r < 0.8) {
      const a = [];
      const n = this.rng.int(5);
      for (let i = 0; i < n; i++) a.push(this.randomValue(depth + 1));
      return a;
    }
    const o = {};
    const n = this.rng.int(5);
    for (let i = 0; i < n; i++) o[this.freshKey(o)] = this.randomValue(depth + 1);
    return o;
  }

  // A key not yet in obj.
  freshKey(obj) {
    for (let t = 0; t < 20; t++) {
      const k = this.rng.chance(0.6)
        ? this.rng.pick(KEYS)
        : `k${this.rng.int(1000000).toString(36)}`;
      if (!Object.prototype.hasOwnProperty.call(obj, k)) return k;
    }
    return `k${this.rng.u32().toString(36)}_${Object.keys(obj).length}`;
  }

  // A value like v but different: same type for scalars most of the time.
  changedScalar(v) {
    if (isNum(v)) {
      const t = v.slice(NUM.length);
      if (/^-?\d{1,15}$/.test(t) && this.rng.chance(0.6)) {
        return num(String(Number(t) + 1 + this.rng.int(10)));
      }
      // A change in the last digit of a long number must be seen too.
      if (/\d$/.test(t) && this.rng.chance(0.5)) {
        const last = Number(t[t.length - 1]);
        return num(t.slice(0, -1) + String((last + 1 + this.rng.int(8)) % 10));
      }
      return this.randomNumber();
    }
    if (typeof v === 'string') {
      const r = this.rng.int(3);
      if (r === 0) return v + this.rng.pick(['!', ' ', 'é', '😀', '"', '\\', '\n', 'x']);
      if (r === 1 && v.length > 0) return v.slice(0, this.rng.int(v.length));
      const s = this.randomString();
      return s === v ? s + '.' : s;
    }
    if (typeof v === 'boolean') return !v;
    return this.randomScalar();
  }

  // A value of another JSON type than v.
  otherType(v) {
    const kinds = ['number', 'string', 'bool', 'null', 'array', 'object'];
    const mine = v === null ? 'null' : Array.isArray(v) ? 'array' : isNum(v) ? 'number'
      : typeof v === 'boolean' ? 'bool' : typeof v === 'string' ? 'string' : 'object';
    let k = mine;
    while (k === mine) k = this.rng.pick(kinds);
    switch (k) {
      case 'number': return this.randomNumber();
      case 'string': return isNum(v) ? v.slice(NUM.length) : this.randomString();
      case 'bool': return this.rng.chance(0.5);
      case 'null': return null;
      // The same content in another container type is a classic trap for a differ.
      case 'array': return isContainer(v) ? Object.values(v) : [v];
      default: return isContainer(v) ? Object.assign({}, v) : { value: v };
    }
  }

  // Changes a scalar: tries the containers of a walk from the deepest up, a few random members
  // each.
  editLeaf(holder) {
    if (!isContainer(holder.root)) {
      holder.root = this.changedScalar(holder.root);
      return true;
    }
    const trail = this.walk(holder);
    for (let d = trail.length - 1; d >= 0; d--) {
      const node = trail[d].node;
      const keys = Array.isArray(node) ? null : Object.keys(node);
      const n = keys ? keys.length : node.length;
      for (let t = 0; t < 6 && n > 0; t++) {
        const i = this.rng.int(n);
        const k = keys ? keys[i] : i;
        if (!isContainer(node[k])) {
          node[k] = this.changedScalar(node[k]);
          return true;
        }
      }
    }
    return false;
  }

  // A new element for array a: usually a sibling's copy with a field changed (a new row of
  // the same shape, as APIs return), sometimes anything.
  newElement(a) {
    const model = a.length > 0 ? this.rng.pick(a) : undefined;
    if (model !== undefined && smallerThan(model, 1000) && this.rng.chance(0.7)) {
      const v = clone(model);
      if (isContainer(v)) {
        const h = { root: v };
        this.editLeaf(h);
        if (!Array.isArray(v) && Object.prototype.hasOwnProperty.call(v, 'id')) {
          v.id = isNum(v.id) ? num(String(100000000 + this.rng.int(100000000)))
            : `new-${this.rng.u32().toString(36)}`;
        }
        return h.root;
      }
      return this.changedScalar(v);
    }
    return this.randomValue();
  }

  arrayInsert(holder) {
    const c = this.pickArray(holder);
    if (!c) return false;
    const a = c.node;
    const count = this.rng.chance(0.8) ? 1 : 2 + this.rng.int(5);
    const r = this.rng.int(4);
    const at = r === 0 ? 0 : r === 1 ? a.length : this.rng.int(a.length + 1);
    const items = [];
    for (let i = 0; i < count; i++) items.push(this.newElement(a));
    a.splice(at, 0, ...items);
    return true;
  }

  arrayRemove(holder) {
    const c = this.pickArray(holder, true);
    if (!c) return false;
    const a = c.node;
    const at = this.rng.int(a.length);
    const count = this.rng.chance(0.8) ? 1 : 1 + this.rng.int(Math.min(8, a.length - at));
    if (!smallerThan(a[at], 300) && !this.rng.chance(0.05)) return false;
    a.splice(at, count);
    return true;
  }

  arrayMove(holder) {
    const c = this.pickContainer(holder, (n) => Array.isArray(n) && n.length > 1);
    if (!c) return false;
    const a = c.node;
    const from = this.rng.int(a.length);
    const [v] = a.splice(from, 1);
    let to = this.rng.int(a.length + 1);
    if (to === from) to = (to + 1) % (a.length + 1);
    a.splice(to, 0, v);
    return true;
  }

  arrayReorder(holder) {
    const c = this.pickContainer(holder, (n) => Array.isArray(n) && n.length > 1);
    if (!c) return false;
    const a = c.node;
    const len = Math.min(a.length, 2 + this.rng.int(9));
    const at = this.rng.int(a.length - len + 1);
    const part = a.slice(at, at + len);
    const r = this.rng.int(3);
    if (r === 0) {
      part.reverse();
    } else if (r === 1) {
      for (let i = part.length - 1; i > 0; i--) {
        const j = this.rng.int(i + 1);
        [part[i], part[j]] = [part[j], part[i]];
      }
    } else {
      [part[0], part[part.length - 1]] = [part[part.length - 1], part[0]];
    }
    a.splice(at, len, ...part);
    return true;
  }

  arrayDuplicate(holder) {
    const c = this.pickArray(holder, true);
    if (!c) return false;
    const a = c.node;
    const src = a[this.rng.int(a.length)];
    if (!smallerThan(src, 1000)) return false;
    a.splice(this.rng.int(a.length + 1), 0, clone(src));
    return true;
  }

  addKey(holder) {
    const c = this.pickObject(holder);
    if (!c) return false;
    c.node[this.freshKey(c.node)] = this.rng.chance(0.7) ? this.randomScalar() : this.randomValue();
    return true;
  }

  removeKey(holder) {
    const c = this.pickObject(holder, true);
    if (!c) return false;
    const k = this.rng.pick(Object.keys(c.node));
    // Dropping a huge subtree is a legitimate edit but would shrink the document to nothing
    // after a few pairs: allow it rarely.
    if (!smallerThan(c.node[k], 300) && !this.rng.chance(0.05)) return false;
    delete c.node[k];
    return true;
  }

  // Rebuilds obj's members in the given key order, keeping obj's identity.
  static rebuild(obj, entries) {
    for (const k of Object.keys(obj)) delete obj[k];
    for (const [k, v] of entries) obj[k] = v;
  }

  renameKey(holder) {
    const c = this.pickObject(holder, true);
    if (!c) return false;
    const keys = Object.keys(c.node);
    const old = this.rng.pick(keys);
    // Often a near name (case change, suffix), the renames that happen in real APIs.
    const candidates = [old.toUpperCase(), old.toLowerCase(), `${old}_v2`, `${old}/x`, `~${old}`];
    let nk = this.rng.chance(0.6) ? this.rng.pick(candidates) : this.freshKey(c.node);
    if (Object.prototype.hasOwnProperty.call(c.node, nk)) nk = this.freshKey(c.node);
    Mutator.rebuild(c.node, Object.entries(c.node).map(([k, v]) => [k === old ? nk : k, v]));
    return true;
  }

  reorderKeys(holder) {
    const c = this.pickObject(holder, true);
    if (!c) return false;
    const entries = Object.entries(c.node);
    for (let i = entries.length - 1; i > 0; i--) {
      const j = this.rng.int(i + 1);
      [entries[i], entries[j]] = [entries[j], entries[i]];
    }
    Mutator.rebuild(c.node, entries);
    return true;
  }

  // Containers of the walk that are small enough to be replaced whole (so that a document does
  // not collapse into a scalar after a few edits; the root only when the whole document is small).
  replaceable(holder) {
    return this.walk(holder).filter((t) => smallerThan(t.node, 300));
  }

  // Replaces a random value (most often a scalar, sometimes a small container, the root of a
  // small document) by a value of another type.
  typeChange(holder) {
    if (!isContainer(holder.root)) {
      holder.root = this.otherType(holder.root);
      return true;
    }
    const small = this.replaceable(holder);
    if (small.length > 0 && this.rng.chance(0.3)) {
      const t = this.rng.pick(small);
      t.parent[t.key] = this.otherType(t.node);
      return true;
    }
    const trail = this.walk(holder);
    const node = trail[trail.length - 1].node;
    const keys = Array.isArray(node) ? null : Object.keys(node);
    const n = keys ? keys.length : node.length;
    if (n === 0) return false;
    const k = keys ? this.rng.pick(keys) : this.rng.int(n);
    if (isContainer(node[k]) && !smallerThan(node[k], 300)) return false;
    node[k] = this.otherType(node[k]);
    return true;
  }

  replaceSubtree(holder) {
    const small = this.replaceable(holder).filter((t) => t.key !== 'root');
    if (small.length === 0) return false;
    const t = this.rng.pick(small);
    t.parent[t.key] = this.randomValue(1);
    return true;
  }

  // Edits inside an element of an array and moves that element: a changed row that also
  // changed its rank, the case that identity matching must get right.
  nestedEdit(holder) {
    const c = this.pickContainer(
      holder,
      (n) => Array.isArray(n) && n.length > 1 && n.some(isContainer),
    );
    if (!c) return false;
    const a = c.node;
    let i = this.rng.int(a.length);
    for (let t = 0; t < 8 && !isContainer(a[i]); t++) i = this.rng.int(a.length);
    if (!isContainer(a[i])) return false;
    const h = { root: a[i] };
    const edits = 1 + this.rng.int(3);
    for (let e = 0; e < edits; e++) {
      this[this.rng.pick(['editLeaf', 'addKey', 'removeKey', 'arrayInsert', 'arrayRemove'])](h);
    }
    a.splice(i, 1);
    a.splice(this.rng.int(a.length + 1), 0, h.root);
    return true;
  }
}
